//! Putting regions back on the previous release, from any state. What to do is decided from what
//! AWS says now plus the journal's record of the deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use super::common::run_hook;
use super::decide::{self, RollbackPlan};
use super::guard::Held;
use super::tracker::Tracker;
use super::{Env, Error, gate};
use crate::aws::RegionClients;
use crate::aws::ecs::{self, Service, TaskSet};
use crate::aws::elb::{self, Colour, Topology, Weights};
use crate::aws::journal::{Outcome, Phase, Record, RegionPhase, RegionRecord};
use crate::config::RegionPlan;

/// One region's rollback, in the order that keeps the critical path short: if the previous task
/// set still runs, production goes back to it with one ModifyListener before anything else; if it
/// is gone (rollback after a completed promote), it is recreated from the journal's task
/// definition and must be healthy before traffic moves.
///
/// `flipped`: production was already put back on the previous colour by the caller (a promote's
/// own rollback, which knows the topology and that the previous task set still runs); the rest
/// (test listener, primary, cleanup) follows here. A recreated task set is this rollback run's
/// (`env.deployment` names it).
pub async fn region(
    env: &Env,
    plan: &RegionPlan,
    rec: &RegionRecord,
    flipped: bool,
) -> Result<String, String> {
    let c = env.clients.region(&plan.region);
    let Some(prev) = rec.previous_colour.as_deref().and_then(Colour::parse) else {
        return Ok("untouched".into());
    };
    let topo = elb::discover(c, plan).await.map_err(|e| e.to_string())?;
    let svc = ecs::describe(c, &plan.cluster, &plan.service)
        .await
        .map_err(|e| e.to_string())?;
    if rec.first_deployment() {
        return off_air(env, c, plan, &topo, &svc, prev, flipped).await;
    }
    let running = svc
        .task_set_on(topo.target_group(prev))
        .filter(|t| t.scale_percent > 0.0)
        .cloned();
    let (ts, how) = match running {
        // Still running: nothing stands between the decision and the one ModifyListener below.
        Some(ts) => (ts, "traffic returned"),
        None => (
            recreate_previous(env, c, plan, &topo, &svc, rec, prev).await?,
            "previous release recreated",
        ),
    };
    if !(flipped && how == "traffic returned") {
        production_back(env, c, &topo, prev)
            .await
            .map_err(|e| e.to_string())?;
    }
    settle(c, plan, &topo, &svc, &ts, prev).await?;
    Ok(how.into())
}

/// Rolling back a region's first release: production goes back to the colour it pointed at
/// before, which has no targets (the ALB answers 503 there, as it did before the release), the
/// test route follows it, and every task set of the service is removed.
async fn off_air(
    env: &Env,
    c: &RegionClients,
    plan: &RegionPlan,
    topo: &Topology,
    svc: &Service,
    prev: Colour,
    flipped: bool,
) -> Result<String, String> {
    if !flipped {
        production_back(env, c, topo, prev)
            .await
            .map_err(|e| e.to_string())?;
    }
    let after = |e: &dyn std::fmt::Display| {
        format!("production is back on {prev} (no release: the ALB answers 503), but {e}")
    };
    if topo.test_rule_arn.is_some() {
        elb::point_test_route(c, topo, prev)
            .await
            .map_err(|e| after(&e))?;
    }
    for ts in &svc.task_sets {
        ecs::scale(c, &plan.cluster, &plan.service, &ts.arn, 0.0)
            .await
            .map_err(|e| after(&e))?;
        ecs::delete(c, &plan.cluster, &plan.service, &ts.arn)
            .await
            .map_err(|e| after(&e))?;
    }
    Ok("taken off the air (its first release was rolled back; the ALB answers 503)".into())
}

/// The previous release's task set is gone (rollback after a completed promote): it is created
/// again from the journal's task definition, on the previous colour, and must be healthy before
/// production moves to it.
async fn recreate_previous(
    env: &Env,
    c: &RegionClients,
    plan: &RegionPlan,
    topo: &Topology,
    svc: &Service,
    rec: &RegionRecord,
    prev: Colour,
) -> Result<TaskSet, String> {
    let prev_tg = topo.target_group(prev);
    let td = rec.previous_task_definition.clone().ok_or_else(|| {
        format!(
            "the previous task set on {prev} is gone and the journal has no task definition for it"
        )
    })?;
    // The container and port the release was served on: from its task definition and from the
    // task set that replaced it (same container, same port).
    let container = ecs::release_of(c, &td, plan.container.as_deref())
        .await
        .map_err(|e| e.to_string())?
        .container;
    let port = svc
        .task_sets
        .iter()
        .find_map(|t| t.container_port)
        .unwrap_or(8080);
    let spec = ecs::TaskSetSpec {
        cluster: &plan.cluster,
        service: &plan.service,
        deployment: &env.deployment,
        purpose: ecs::Purpose::Restore,
        task_definition: &td,
        target_group: prev_tg,
        container: &container,
        port,
        scale: 100.0,
    };
    let ensured = ecs::ensure_task_set(c, svc, &spec)
        .await
        .map_err(|e| e.to_string())?;
    let ts = ensured.task_set().clone();
    let st = &env.plan.strategy;
    env.reporter.waiting(
        Some(&plan.region),
        "rollback",
        format!(
            "recreated previous release as task set {} on {prev}; waiting for it to be healthy",
            ts.id
        ),
        st.ready_timeout,
    );
    let healthy = || async {
        match elb::target_health(c, prev_tg).await {
            Ok(h) if h.all_healthy() => ecs::Readiness::Ready,
            Ok(h) => ecs::Readiness::NotYet(h.to_string()),
            Err(e) => ecs::Readiness::NotYet(e.to_string()),
        }
    };
    ecs::wait_steady(
        c,
        &plan.cluster,
        &plan.service,
        &ts.arn,
        st.ready_timeout,
        st.poll,
        healthy,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(ts)
}

/// After production is back: the test route, the primary task set, and every other task set
/// removed. Production is safe by now, and a failure says so, so nobody is paged for a live
/// outage that is not there.
async fn settle(
    c: &RegionClients,
    plan: &RegionPlan,
    topo: &Topology,
    svc: &Service,
    ts: &TaskSet,
    prev: Colour,
) -> Result<(), String> {
    let after = |e: &dyn std::fmt::Display| format!("production is back on {prev} (100%), but {e}");
    // A stack from before the test route had no rule: nothing to point back.
    if topo.test_rule_arn.is_some() {
        elb::point_test_route(c, topo, prev)
            .await
            .map_err(|e| after(&e))?;
    }
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
    Ok(())
}

/// The critical path of a rollback: all of the region's production traffic back on `prev`, with
/// one ModifyListener, said as an event.
pub async fn production_back(
    env: &Env,
    c: &RegionClients,
    topo: &Topology,
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
/// Production moves first; the journal follows, and a journal that cannot follow is a region
/// result error ("…, but the journal could not record it"), never a reason to leave production
/// where it is. A region the environment file lacks is an error naming it (`decide::
/// rollback_plan` refuses those before anything moves). `flipped`: the regions whose production
/// listener the caller already put back (see `region`).
pub async fn regions(
    env: &Env,
    tracker: &Tracker,
    regions: &[String],
    flipped: &BTreeSet<String>,
) -> BTreeMap<String, Result<String, String>> {
    let record = tracker.snapshot().await;
    let started = Instant::now();
    let marked = tracker.update(|x| x.phase = Phase::RollingBack).await.err();
    let results = futures_util::future::join_all(regions.iter().map(|r| {
        let rec = record.regions.get(r).cloned().unwrap_or_default();
        let marked = &marked;
        async move {
            let out = match env.plan.regions.get(r) {
                Some(plan) => region(env, plan, &rec, flipped.contains(r)).await,
                None => Err(format!(
                    "{r} is not in the environment file; restore its [regions.{r}] table"
                )),
            };
            let phase = match out {
                Ok(_) => RegionPhase::RolledBack,
                Err(_) => RegionPhase::RollbackFailed,
            };
            let recorded = tracker
                .update_region(r, |x| {
                    x.phase = phase;
                    x.weight = 0;
                })
                .await;
            let missed = recorded.err().or_else(|| marked.clone());
            let out = match (out, missed) {
                (Ok(how), Some(e)) => {
                    Err(format!("{how}, but the journal could not record it: {e}"))
                }
                (out, _) => out,
            };
            (r.clone(), out)
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
    on_rollback_hooks(env, regions, &record.version).await;
    results.into_iter().collect()
}

/// The `on_rollback` hook once per region rolled back; a failing hook is said, not fatal.
async fn on_rollback_hooks(env: &Env, regions: &[String], version: &str) {
    let Some(hook) = &env.plan.hooks.on_rollback else {
        return;
    };
    for r in regions {
        let Some(plan) = env.plan.regions.get(r) else {
            continue;
        };
        let url = match elb::discover(env.clients.region(r), plan).await {
            Ok(t) => gate::url(&t.dns_name, plan.listener_port, &plan.probe_path),
            Err(_) => String::new(),
        };
        if let Err(e) = run_hook(env, hook, r, version, &url, "on_rollback", None).await {
            env.reporter.warn(Some(r), "hook", e);
        }
    }
}

/// The newest promote still in effect (what `rollback` undoes).
pub async fn latest_in_effect(env: &Env) -> Result<Option<Record>, Error> {
    let history = env
        .journal
        .history(50)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok(history.into_iter().find(decide::in_effect))
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackResult {
    pub env: String,
    pub deployment: Option<String>,
    pub version: Option<String>,
    pub nothing_to_do: bool,
    pub regions: BTreeMap<String, String>,
    /// Regions the deployment changed that `--region` left out: still on its release.
    pub skipped: Vec<String>,
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
        for r in &self.skipped {
            writeln!(
                f,
                "  {r}: not rolled back (left out with --region); the lock stays"
            )?;
        }
        Ok(())
    }
}

/// `bluegreen rollback`: the newest promote is undone in every region it touched (or the ones
/// `only` names) — mid-way, after a crash, or after it completed. A lock held for that very
/// deployment (a running or dead promote, an unfinished rollback) is taken over; one held for
/// another deployment refuses.
///
/// Rolling back a region's first release takes it off the air, so that needs `yes`.
pub async fn command(env: &Env, only: &[String], yes: bool) -> Result<RollbackResult, Error> {
    let latest = latest_in_effect(env).await?;
    let in_file: BTreeSet<String> = env.plan.regions.keys().cloned().collect();
    let plan = decide::rollback_plan(&env.plan.env, latest.as_ref(), &in_file, only)
        .map_err(Error::Refused)?;
    if let (Some(r), RollbackPlan::Regions { targets, .. }) = (&latest, &plan)
        && let Some(refusal) = decide::off_air_refusal(&env.plan.env, r, targets, yes)
    {
        return Err(Error::Refused(refusal));
    }
    let (record, RollbackPlan::Regions { targets, skipped }) = (latest, plan) else {
        return Ok(RollbackResult {
            env: env.plan.env.clone(),
            deployment: None,
            version: None,
            nothing_to_do: true,
            regions: BTreeMap::new(),
            skipped: Vec::new(),
        });
    };
    let mut record = record.expect("a plan with regions comes from a record");
    let held = Held::take_over(env, &record.id, &record.version).await?;
    env.reporter.event(
        None,
        "rollback",
        format!(
            "rolling back deployment {} of {} ({}) in {}",
            record.id,
            record.version,
            if record.outcome == Some(Outcome::Promoted) {
                "completed"
            } else {
                "unfinished"
            },
            if targets.is_empty() {
                "no region".to_owned()
            } else {
                targets.join(", ")
            }
        ),
    );
    record.phase = Phase::RollingBack;
    let tracker = Tracker::new(env.journal.clone(), record);
    let results = regions(env, &tracker, &targets, &BTreeSet::new()).await;
    let out = conclude(env, &tracker, results, skipped).await;
    let keep = out
        .as_ref()
        .map_or_else(Error::keeps_lock, |r| !r.skipped.is_empty());
    held.settle(out, keep).await
}

/// Journals how the rollback ended and says it. Regions left out with `--region` leave the
/// record unfinished (phase rolling-back, no outcome), so `status` says to run `rollback`
/// again and the next one still sees them.
async fn conclude(
    env: &Env,
    tracker: &Tracker,
    results: BTreeMap<String, Result<String, String>>,
    skipped: Vec<String>,
) -> Result<RollbackResult, Error> {
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(r, x)| x.as_ref().err().map(|e| format!("{r}: {e}")))
        .collect();
    let recorded = tracker
        .update(|x| match (failed.is_empty(), skipped.is_empty()) {
            (false, _) => x.end(
                Phase::RollbackFailed,
                Outcome::RollbackFailed,
                Some(failed.join("; ")),
            ),
            (true, true) => x.end(
                Phase::RolledBack,
                Outcome::RolledBack,
                Some("rolled back by `bluegreen rollback`".into()),
            ),
            (true, false) => {
                x.phase = Phase::RollingBack;
                x.outcome = None;
                x.ended_ms = None;
            }
        })
        .await;
    let env_name = &env.plan.env;
    if !failed.is_empty() {
        return Err(Error::Unsettled(format!(
            "rollback did not finish in {}; run `bluegreen rollback -e {env_name}` again, and check \
             `bluegreen status -e {env_name}` (lock kept)",
            failed.join("; "),
        )));
    }
    if let Err(e) = recorded {
        return Err(Error::Unsettled(format!(
            "every region is back on its previous release ({}), but the journal could not record \
             it: {e}; run `bluegreen rollback -e {env_name}` again to record it (lock kept)",
            results.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let record = tracker.snapshot().await;
    Ok(RollbackResult {
        env: env_name.clone(),
        deployment: Some(record.id),
        version: Some(record.version),
        nothing_to_do: false,
        regions: results
            .into_iter()
            .map(|(r, x)| (r, x.unwrap_or_default()))
            .collect(),
        skipped,
    })
}
