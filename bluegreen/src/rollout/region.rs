//! One region's promote, phase by phase. Every phase is idempotent and records itself in the
//! journal before moving on, so a re-run (`continue`, or a resume) picks up where it stopped.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::Env;
use super::gate;
use super::preflight::RegionState;
use crate::aws::ecs;
use crate::aws::elb::{self, Weights};
use crate::aws::lock::{Journal, Record, RegionRecord};

/// Where `--until` stops a promote (lock held, state journaled) for `continue` to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    Ready,
    TestTraffic,
    Weight(u8),
}

impl Until {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ready" => Ok(Self::Ready),
            "test-traffic" => Ok(Self::TestTraffic),
            w => w
                .trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|w| (1..=100).contains(w))
                .map(Self::Weight)
                .ok_or_else(|| {
                    format!(
                        "{s:?} is not a phase; use ready, test-traffic, or a weight step such as 10"
                    )
                }),
        }
    }
}

/// The deployment's journal record, shared by the regions running at once; every change is
/// written through before the phase it records is acted on further.
pub struct Tracker {
    journal: Journal,
    record: Mutex<Record>,
}

impl Tracker {
    pub fn new(journal: Journal, record: Record) -> Self {
        Self {
            journal,
            record: Mutex::new(record),
        }
    }

    pub async fn snapshot(&self) -> Record {
        self.record.lock().await.clone()
    }

    pub async fn region(&self, region: &str) -> RegionRecord {
        self.record
            .lock()
            .await
            .regions
            .get(region)
            .cloned()
            .unwrap_or_default()
    }

    /// Applies `f` to the record and writes it. A failed write is returned: nothing proceeds on
    /// a journal that does not say where it is.
    pub async fn update(&self, f: impl FnOnce(&mut Record)) -> Result<(), String> {
        let mut r = self.record.lock().await;
        f(&mut r);
        self.journal.write(&r).await.map_err(|e| e.to_string())
    }

    pub async fn update_region(
        &self,
        region: &str,
        f: impl FnOnce(&mut RegionRecord),
    ) -> Result<(), String> {
        self.update(|r| f(r.regions.entry(region.to_owned()).or_default()))
            .await
    }
}

/// How a region's promote ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Fully shifted and baked; the new task set is primary.
    Done,
    /// Stopped at `--until`.
    Paused,
}

/// Why a region stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Failed(String),
    Cancelled,
}

pub struct Run<'a> {
    pub env: &'a Env,
    pub tracker: &'a Tracker,
    pub version: &'a str,
    /// `<registry host>/<repo>@sha256:…` per region.
    pub image: String,
    pub until: Option<Until>,
    pub cancel: CancellationToken,
}

/// Runs a read-only `f` unless cancelled first (then `f` is dropped where it is).
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = T>,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        out = f => Ok(out),
    }
}

/// Sleeps `d` unless cancelled first.
async fn pause(cancel: &CancellationToken, d: Duration) -> Result<(), Stop> {
    tokio::select! {
        _ = cancel.cancelled() => Err(Stop::Cancelled),
        _ = tokio::time::sleep(d) => Ok(()),
    }
}

fn fail(e: impl ToString) -> Stop {
    Stop::Failed(e.to_string())
}

pub async fn promote(run: &Run<'_>, s: &RegionState) -> Result<Ended, Stop> {
    let env = run.env;
    let r = s.name();
    let rep = &env.reporter;
    let strategy = &env.plan.strategy;
    let idle = s.idle();
    let rec = run.tracker.region(r).await;
    let phase_at_least = |p: &str| phase_rank(&rec.phase) >= phase_rank(p);

    // 1. Register the new task definition: the live one with the image pinned by digest.
    let td = match rec.new_task_definition.clone() {
        Some(td) => td,
        None => {
            let td = ecs::clone_task_definition(
                &s.c,
                &s.live_task_set.task_definition,
                s.plan.container.as_deref(),
                &run.image,
                run.version,
            )
            .await
            .map_err(fail)?;
            run.tracker
                .update_region(r, |x| {
                    x.new_task_definition = Some(td.clone());
                    x.phase = "registered".into();
                })
                .await
                .map_err(Stop::Failed)?;
            td
        }
    };
    rep.event(
        Some(r),
        "register",
        format!("task definition {}", short(&td)),
    );

    // 2. The task set on the idle colour, at full size before it takes any traffic.
    let svc = ecs::describe(&s.c, &s.plan.cluster, &s.plan.service)
        .await
        .map_err(fail)?;
    let ensured = ecs::ensure_task_set(
        &s.c,
        &s.plan.cluster,
        &svc,
        &s.plan.service,
        &env.deployment,
        &td,
        s.topo.target_group(idle),
        s.live_task_set
            .container_name
            .as_deref()
            .unwrap_or(&s.live_release.container),
        s.live_task_set.container_port.unwrap_or(8080),
        100.0,
    )
    .await
    .map_err(fail)?;
    let ts = ensured.task_set().clone();
    if !phase_at_least("created") {
        run.tracker
            .update_region(r, |x| {
                x.new_task_set = Some(ts.arn.clone());
                x.phase = "created".into();
            })
            .await
            .map_err(Stop::Failed)?;
    }
    rep.event(
        Some(r),
        "task-set",
        format!(
            "{} task set {} on {idle} at 100%",
            if matches!(ensured, ecs::Ensure::Created(_)) {
                "created"
            } else {
                "reusing"
            },
            ts.id
        ),
    );

    // 3. Wait until it runs every task and every target is healthy.
    rep.waiting(
        Some(r),
        "ready",
        format!("task set {} running and healthy on {idle}", ts.id),
        strategy.ready_timeout,
    );
    let check = tokio::sync::Mutex::new(gate::ReadyCheck::new(&s.c, s, idle));
    let waited = tokio::select! {
        _ = run.cancel.cancelled() => return Err(Stop::Cancelled),
        w = ecs::wait_steady(&s.c, &s.plan.cluster, &s.plan.service, &ts.arn,
                             strategy.ready_timeout, strategy.poll,
                             || async { check.lock().await.poll().await }) => w,
    };
    let ready = waited.map_err(|e| fail(format!("{e}; traffic stayed on {}", s.live)))?;
    if !phase_at_least("ready") {
        run.tracker
            .update_region(r, |x| x.phase = "ready".into())
            .await
            .map_err(Stop::Failed)?;
    }
    rep.event(
        Some(r),
        "ready",
        format!(
            "{} of {} tasks running, targets healthy",
            ready.running, ready.computed_desired
        ),
    );
    if run.until == Some(Until::Ready) {
        return Ok(Ended::Paused);
    }

    // 4. Test traffic: the test listener on the new colour, probed for the new version.
    elb::point_test_listener(&s.c, &s.topo, idle)
        .await
        .map_err(fail)?;
    let test_url = gate::url(
        &s.topo.dns_name,
        s.plan.test_listener_port,
        &s.plan.probe_path,
    );
    let started = Instant::now();
    loop {
        let probed = unless_cancelled(
            &run.cancel,
            gate::probe_version(&env.http, &test_url, run.version, 3),
        )
        .await?;
        match probed {
            Ok(()) => break,
            // A listener change takes a moment to reach every ALB node.
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                rep.event(Some(r), "test-traffic", format!("{e}; retrying"));
                pause(&run.cancel, strategy.poll).await?;
            }
            Err(e) => return Err(fail(format!("pre-traffic check failed: {e}"))),
        }
    }
    if let Some(hook) = &env.plan.hooks.pre_traffic {
        run_hook(env, hook, r, run.version, &test_url, "pre_traffic")
            .await
            .map_err(Stop::Failed)?;
    }
    if !phase_at_least("test-traffic") {
        run.tracker
            .update_region(r, |x| x.phase = "test-traffic".into())
            .await
            .map_err(Stop::Failed)?;
    }
    rep.event(
        Some(r),
        "test-traffic",
        format!("{test_url} answers {}", run.version),
    );
    if run.until == Some(Until::TestTraffic) {
        return Ok(Ended::Paused);
    }

    // 5. Shift in steps; after each, bake with the gate evaluated every poll.
    let done_weight = run.tracker.region(r).await.weight;
    for &step in &strategy.steps {
        if step < done_weight || (step == done_weight && rec.phase == "baked") {
            continue;
        }
        elb::set_weights(&s.c, &s.topo, Weights::with(idle, step))
            .await
            .map_err(fail)?;
        run.tracker
            .update_region(r, |x| {
                x.weight = step;
                x.phase = "shifting".into();
            })
            .await
            .map_err(Stop::Failed)?;
        let full = step == 100;
        let bake = if full {
            strategy.final_bake
        } else {
            strategy.bake
        };
        rep.waiting(
            Some(r),
            if full { "final-bake" } else { "bake" },
            format!(
                "{step}% of traffic on {idle}; gate every {}",
                humantime::format_duration(strategy.poll)
            ),
            bake,
        );
        let deadline = Instant::now() + bake;
        loop {
            // Read-only, so another region's failure may drop it mid-flight: a rollback never
            // waits for this region's poll to come back.
            unless_cancelled(
                &run.cancel,
                gate::check(&env.http, s, &ts.arn, run.version, full),
            )
            .await?
            .map_err(|e| fail(format!("gate failed at {step}% on {idle}: {e}")))?;
            if Instant::now() >= deadline {
                break;
            }
            pause(
                &run.cancel,
                strategy
                    .poll
                    .min(deadline.saturating_duration_since(Instant::now())),
            )
            .await?;
        }
        if run.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        if run.until == Some(Until::Weight(step)) && !full {
            return Ok(Ended::Paused);
        }
    }
    run.tracker
        .update_region(r, |x| x.phase = "baked".into())
        .await
        .map_err(Stop::Failed)?;
    if let Some(hook) = &env.plan.hooks.post_shift {
        let prod = gate::url(&s.topo.dns_name, s.plan.listener_port, &s.plan.probe_path);
        run_hook(env, hook, r, run.version, &prod, "post_shift")
            .await
            .map_err(Stop::Failed)?;
    }

    // 6. The new task set becomes primary; the old one stays scaled until every wave is done,
    // so a shared rollback anywhere is still one ModifyListener here.
    ecs::make_primary(&s.c, &s.plan.cluster, &s.plan.service, &ts.arn)
        .await
        .map_err(fail)?;
    run.tracker
        .update_region(r, |x| x.phase = "promoted".into())
        .await
        .map_err(Stop::Failed)?;
    rep.event(
        Some(r),
        "promoted",
        format!("{} serves 100% on {idle}", run.version),
    );
    Ok(Ended::Done)
}

/// The order of a region's phases, for resuming.
pub fn phase_rank(p: &str) -> u8 {
    match p {
        "registered" => 1,
        "created" => 2,
        "ready" => 3,
        "test-traffic" => 4,
        "shifting" => 5,
        "baked" => 6,
        "promoted" => 7,
        "cleaned" => 8,
        _ => 0,
    }
}

/// After every wave: the old task sets are scaled away and deleted.
pub async fn cleanup(env: &Env, tracker: &Tracker, s: &RegionState) -> Result<(), String> {
    let r = s.name();
    ecs::scale(
        &s.c,
        &s.plan.cluster,
        &s.plan.service,
        &s.live_task_set.arn,
        0.0,
    )
    .await
    .map_err(|e| e.to_string())?;
    ecs::delete(&s.c, &s.plan.cluster, &s.plan.service, &s.live_task_set.arn)
        .await
        .map_err(|e| e.to_string())?;
    tracker
        .update_region(r, |x| x.phase = "cleaned".into())
        .await?;
    env.reporter.event(
        Some(r),
        "cleanup",
        format!(
            "deleted the previous task set {} on {}",
            s.live_task_set.id, s.live
        ),
    );
    Ok(())
}

fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Runs a hook command with the deployment's facts in its environment; non-zero fails.
pub async fn run_hook(
    env: &Env,
    argv: &[String],
    region: &str,
    version: &str,
    url: &str,
    name: &str,
) -> Result<(), String> {
    env.reporter
        .event(Some(region), "hook", format!("{name}: {}", argv.join(" ")));
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("BLUEGREEN_ENV", &env.plan.env)
        .env("BLUEGREEN_REGION", region)
        .env("BLUEGREEN_VERSION", version)
        .env("BLUEGREEN_URL", url)
        .env("BLUEGREEN_DEPLOYMENT", &env.deployment)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{name} hook {:?} could not start: {e}", argv[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        let tail: String = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        Err(format!(
            "{name} hook {:?} exited with {}: {tail}",
            argv[0], out.status
        ))
    }
}
