//! Putting regions back on the previous release, from any state. What to do is decided from what
//! AWS says now plus the journal's record of the deployment.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::region::Tracker;
use super::{Env, Error, gate};
use crate::aws::ecs;
use crate::aws::elb::{self, Colour, Weights};
use crate::aws::lock::{self, LockError, Record, RegionRecord};
use crate::config::RegionPlan;

/// One region's rollback, in the order that keeps the critical path short: if the previous task
/// set still runs, production goes back to it with one ModifyListener before anything else; if it
/// is gone (rollback after a completed promote), it is recreated from the journal's task
/// definition and must be healthy before traffic moves.
///
/// `flipped`: production was already put back on the previous colour by the caller (a promote's
/// own rollback, which knows the topology and that the previous task set still runs); the rest
/// (test listener, primary, cleanup) follows here.
pub async fn region(
    env: &Env,
    plan: &RegionPlan,
    rec: &RegionRecord,
    rollback_id: &str,
    flipped: bool,
) -> Result<String, String> {
    let c = env.clients.region(&plan.region);
    let r = &plan.region;
    let Some(prev) = rec.previous_colour.as_deref().and_then(Colour::parse) else {
        return Ok("untouched".into());
    };
    let topo = elb::discover(c, plan).await.map_err(|e| e.to_string())?;
    let svc = ecs::describe(c, &plan.cluster, &plan.service)
        .await
        .map_err(|e| e.to_string())?;
    let prev_tg = topo.target_group(prev).to_owned();
    let running = svc
        .task_set_on(&prev_tg)
        .filter(|t| t.scale_percent > 0.0)
        .cloned();
    let still_running = running.is_some();
    let (ts, how) = match running {
        // Still running: nothing stands between the decision and the one ModifyListener below.
        Some(ts) => (ts, "traffic returned"),
        None => {
            let td = rec.previous_task_definition.clone().ok_or_else(|| {
                format!("the previous task set on {prev} is gone and the journal has no task definition for it")
            })?;
            // The container and port the release was served on: from its task definition and
            // from the task set that replaced it (same container, same port).
            let container = ecs::release_of(c, &td, plan.container.as_deref())
                .await
                .map_err(|e| e.to_string())?
                .container;
            let port = svc
                .task_sets
                .iter()
                .find_map(|t| t.container_port)
                .unwrap_or(8080);
            let ensured = ecs::ensure_task_set(
                c,
                &plan.cluster,
                &svc,
                &plan.service,
                rollback_id,
                &td,
                &prev_tg,
                &container,
                port,
                100.0,
            )
            .await
            .map_err(|e| e.to_string())?;
            let ts = ensured.task_set().clone();
            env.reporter.waiting(
                Some(r),
                "rollback",
                format!("recreated previous release as task set {} on {prev}; waiting for it to be healthy", ts.id),
                env.plan.strategy.ready_timeout,
            );
            ecs::wait_steady(
                c,
                &plan.cluster,
                &plan.service,
                &ts.arn,
                env.plan.strategy.ready_timeout,
                env.plan.strategy.poll,
                || async {
                    match elb::target_health(c, &prev_tg).await {
                        Ok(h) if h.all_healthy() => ecs::Readiness::Ready,
                        Ok(h) => ecs::Readiness::NotYet(h.to_string()),
                        Err(e) => ecs::Readiness::NotYet(e.to_string()),
                    }
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            (ts, "previous release recreated")
        }
    };
    if !(flipped && still_running) {
        production_back(env, c, &topo, prev)
            .await
            .map_err(|e| e.to_string())?;
    }
    // From here on production is safe; a failure says so, so nobody is paged for a live outage
    // that is not there.
    let after = |e: &dyn std::fmt::Display| format!("production is back on {prev} (100%), but {e}");
    elb::point_test_listener(c, &topo, prev)
        .await
        .map_err(|e| after(&e))?;
    ecs::make_primary(c, &plan.cluster, &plan.service, &ts.arn)
        .await
        .map_err(|e| after(&e))?;
    for other in svc.task_sets.iter().filter(|t| t.arn != ts.arn) {
        ecs::scale(c, &plan.cluster, &plan.service, &other.arn, 0.0)
            .await
            .map_err(|e| after(&e))?;
        ecs::delete(c, &plan.cluster, &plan.service, &other.arn)
            .await
            .map_err(|e| after(&e))?;
    }
    Ok(how.into())
}

/// The critical path of a rollback: all of the region's production traffic back on `prev`, with
/// one ModifyListener, said as an event.
pub async fn production_back(
    env: &Env,
    c: &crate::aws::RegionClients,
    topo: &elb::Topology,
    prev: Colour,
) -> Result<(), elb::ElbError> {
    elb::set_weights(c, topo, Weights::with(prev, 100)).await?;
    env.reporter.event(
        Some(&c.region),
        "rollback",
        format!("production back on {prev} (100%)"),
    );
    Ok(())
}

/// Rolls back `regions` of `tracker`'s deployment in parallel; returns per-region results.
/// `flipped`: the regions whose production listener the caller already put back (see `region`).
pub async fn regions(
    env: &Env,
    tracker: &Tracker,
    regions: &[String],
    rollback_id: &str,
    flipped: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, Result<String, String>> {
    let record = tracker.snapshot().await;
    let started = Instant::now();
    let results = futures_util::future::join_all(regions.iter().map(|r| {
        let rec = record.regions.get(r).cloned().unwrap_or_default();
        let plan = env.plan.regions[r].clone();
        async move {
            let _ = tracker
                .update_region(&plan.region, |x| x.phase = "rolling-back".into())
                .await;
            let out = region(
                env,
                &plan,
                &rec,
                rollback_id,
                flipped.contains(&plan.region),
            )
            .await;
            let phase = if out.is_ok() {
                "rolled-back"
            } else {
                "rollback-failed"
            };
            let _ = tracker
                .update_region(&plan.region, |x| {
                    x.phase = phase.into();
                    x.weight = 0;
                })
                .await;
            (plan.region.clone(), out)
        }
    }))
    .await;
    env.reporter.event(
        None,
        "rollback",
        format!(
            "{} region(s) handled in {:.1}s",
            regions.len(),
            started.elapsed().as_secs_f64()
        ),
    );
    if let Some(hook) = &env.plan.hooks.on_rollback {
        for r in regions {
            let plan = &env.plan.regions[r];
            let c = env.clients.region(r);
            let url = match elb::discover(c, plan).await {
                Ok(t) => gate::url(&t.dns_name, plan.listener_port, &plan.probe_path),
                Err(_) => String::new(),
            };
            if let Err(e) =
                super::region::run_hook(env, hook, r, &record.version, &url, "on_rollback").await
            {
                env.reporter.warn(Some(r), "hook", e);
            }
        }
    }
    results.into_iter().collect()
}

/// Regions a deployment changed: a task definition or task set was created, or weights moved.
pub fn touched(record: &Record) -> Vec<String> {
    record
        .regions
        .iter()
        .filter(|(_, r)| {
            r.new_task_set.is_some() || r.new_task_definition.is_some() || r.weight > 0
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Whether a promote still shapes what runs: it completed, is unfinished, or its rollback did not
/// finish. A rolled-back promote, or one that failed before deploying anything, does not.
pub fn in_effect(r: &Record) -> bool {
    r.kind == "promote"
        && matches!(
            r.outcome.as_deref(),
            None | Some("promoted") | Some("rollback-failed")
        )
}

/// The newest promote still in effect (what `rollback` undoes).
pub async fn latest_in_effect(env: &Env) -> Result<Option<Record>, Error> {
    let history = env
        .journal
        .history(50)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok(history.into_iter().find(in_effect))
}

/// The newest promote in the journal.
pub async fn latest_promote(env: &Env) -> Result<Option<Record>, Error> {
    let history = env
        .journal
        .history(25)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok(history.into_iter().find(|r| r.kind == "promote"))
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackResult {
    pub env: String,
    pub deployment: Option<String>,
    pub version: Option<String>,
    pub nothing_to_do: bool,
    pub regions: BTreeMap<String, String>,
}

impl std::fmt::Display for RollbackResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.nothing_to_do {
            return writeln!(f, "{}: nothing to roll back", self.env);
        }
        writeln!(
            f,
            "{}: rolled back deployment {} of {}",
            self.env,
            self.deployment.as_deref().unwrap_or("?"),
            self.version.as_deref().unwrap_or("?")
        )?;
        for (r, how) in &self.regions {
            writeln!(f, "  {r}: {how}")?;
        }
        Ok(())
    }
}

/// `bluegreen rollback`: the newest promote is undone in every region it touched — mid-way, after
/// a crash, or after it completed. A lock held by that very deployment (a dead or running
/// promote) is taken over; one held by another deployment refuses.
pub async fn command(env: &Env) -> Result<RollbackResult, Error> {
    let Some(mut record) = latest_in_effect(env).await? else {
        return Ok(RollbackResult {
            env: env.plan.env.clone(),
            deployment: None,
            version: None,
            nothing_to_do: true,
            regions: BTreeMap::new(),
        });
    };
    let caller = env.identity.arn.clone();
    match env
        .lock
        .acquire(&env.deployment, &caller, &record.version)
        .await
    {
        Ok(_) => {}
        Err(LockError::Held { holder, .. }) if holder.deployment == record.id => {
            env.reporter.warn(
                None,
                "lock",
                format!(
                    "taking the lock over from deployment {} to roll it back",
                    holder.deployment
                ),
            );
            env.lock
                .force_unlock()
                .await
                .map_err(|e| Error::Failed(e.to_string()))?;
            env.lock
                .acquire(&env.deployment, &caller, &record.version)
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    let completed = record.outcome.as_deref() == Some("promoted");
    let targets: Vec<String> = if completed {
        record.regions.keys().cloned().collect()
    } else {
        touched(&record)
    };
    env.reporter.event(
        None,
        "rollback",
        format!(
            "rolling back deployment {} of {} ({}) in {}",
            record.id,
            record.version,
            if completed { "completed" } else { "unfinished" },
            if targets.is_empty() {
                "no region".to_owned()
            } else {
                targets.join(", ")
            }
        ),
    );
    record.phase = "rolling-back".into();
    let tracker = Tracker::new(env.journal.clone(), record.clone());
    let results = regions(
        env,
        &tracker,
        &targets,
        &env.deployment,
        &std::collections::BTreeSet::new(),
    )
    .await;
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(r, x)| x.as_ref().err().map(|e| format!("{r}: {e}")))
        .collect();
    let _ = tracker
        .update(|x| {
            x.phase = if failed.is_empty() {
                "rolled-back".into()
            } else {
                "rollback-failed".into()
            };
            x.outcome = Some(if failed.is_empty() {
                "rolled-back".into()
            } else {
                "rollback-failed".into()
            });
            x.ended_ms = Some(lock::now_ms());
            x.message = Some(if failed.is_empty() {
                "rolled back by `bluegreen rollback`".into()
            } else {
                failed.join("; ")
            });
        })
        .await;
    let _ = env.lock.release(&env.deployment).await;
    if !failed.is_empty() {
        return Err(Error::Failed(format!(
            "rollback did not finish in {}; run `bluegreen rollback -e {}` again, and check `bluegreen status -e {}`",
            failed.join("; "),
            env.plan.env,
            env.plan.env
        )));
    }
    Ok(RollbackResult {
        env: env.plan.env.clone(),
        deployment: Some(record.id),
        version: Some(record.version),
        nothing_to_do: false,
        regions: results
            .into_iter()
            .map(|(r, x)| (r, x.unwrap_or_default()))
            .collect(),
    })
}
