//! One region's promote, phase by phase: register → task set → ready → test traffic → shift and
//! bake each step → primary. Each phase is a function that takes the previous phase's result
//! and returns its own, so what a phase needs arrives from the one before it. Every phase is
//! idempotent and journals itself before the next acts on it, so a re-run (`continue`, or a
//! resume) picks up where the journal says.

use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Env;
use super::analysis::{Look, Verdict, Watch};
use super::common::run_hook;
use super::gate;
use super::preflight::RegionState;
use super::tracker::Tracker;
use crate::aws::ecs::{self, TaskSet};
use crate::aws::elb::{self, Weights};
use crate::aws::journal::RegionPhase;
use crate::aws::secret::TestRoute;
use crate::config::{OnInconclusive, Probe, TEST_TRAFFIC_WINDOW, Until};

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

/// What every phase of one wave shares.
pub struct Run<'a> {
    pub env: &'a Env,
    pub tracker: &'a Tracker,
    pub version: &'a str,
    /// `<registry host>/<repo>@sha256:…` for this region.
    pub image: String,
    pub until: Option<Until>,
    pub cancel: CancellationToken,
    /// The header and secret that reach the new colour through the test listener.
    pub test_route: &'a TestRoute,
}

/// The new task definition is registered.
struct Registered {
    task_definition: String,
}

/// The new task set exists on the idle colour, at full size.
struct Created {
    task_set: TaskSet,
}

/// The new task set runs every task, every target healthy.
struct Ready {
    task_set: TaskSet,
}

/// The test route reaches the new release, which answered its version.
struct Tested {
    task_set: TaskSet,
}

/// Every traffic step baked; production is 100% on the new release.
struct Baked {
    task_set: TaskSet,
}

pub async fn promote(run: &Run<'_>, s: &RegionState) -> Result<Ended, Stop> {
    let span = tracing::info_span!("region", deployment = %run.env.deployment, region = s.name());
    async {
        let registered = register(run, s).await?;
        let ready = wait_ready(run, s, create_task_set(run, s, registered).await?).await?;
        if run.until == Some(Until::Ready) {
            return Ok(Ended::Paused);
        }
        let tested = test_traffic(run, s, ready).await?;
        if pauses_before_production(run.until, s.first_deployment()) {
            return Ok(Ended::Paused);
        }
        let Some(baked) = shift(run, s, tested).await? else {
            return Ok(Ended::Paused);
        };
        make_primary(run, s, baked).await?;
        Ok(Ended::Done)
    }
    .instrument(span)
    .await
}

/// Whether `--until` stops a region after test traffic, before production moves. A first
/// deployment goes from 0 to 100% in one step (see `steps`), so stopping at a lower step
/// stops before it: never further than asked.
fn pauses_before_production(until: Option<Until>, first_deployment: bool) -> bool {
    match until {
        Some(Until::TestTraffic) => true,
        Some(Until::Weight(w)) => first_deployment && w < 100,
        _ => false,
    }
}

/// The production steps of a region. A first deployment has nothing on the other colour (its
/// target group has no targets, and a weighted forward does not fail over between groups), so
/// any split would answer 503 for the old share: production goes to 100% in one step, after
/// the same readiness and test-traffic gates, and bakes as the final step does.
fn steps(strategy: &[u8], first_deployment: bool) -> Vec<u8> {
    if first_deployment {
        vec![100]
    } else {
        strategy.to_vec()
    }
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
    unless_cancelled(cancel, tokio::time::sleep(d)).await
}

fn fail(e: impl ToString) -> Stop {
    Stop::Failed(e.to_string())
}

/// Journals that the region reached `phase`; a write that fails stops the region (nothing
/// proceeds on a journal that does not say where it is).
async fn advance(
    run: &Run<'_>,
    region: &str,
    phase: RegionPhase,
    f: impl FnOnce(&mut crate::aws::journal::RegionRecord),
) -> Result<(), Stop> {
    run.tracker
        .advance(region, phase, f)
        .await
        .map_err(|e| fail(format!("the journal could not record {phase}: {e}")))
}

/// Step 1: The new task definition: the live one with the image pinned by digest.
async fn register(run: &Run<'_>, s: &RegionState) -> Result<Registered, Stop> {
    let r = s.name();
    let task_definition = match run.tracker.region(r).await.new_task_definition {
        Some(td) => td,
        None => {
            let td = ecs::clone_task_definition(
                &s.c,
                &s.base.task_definition,
                s.plan.container.as_deref(),
                &run.image,
                run.version,
            )
            .await
            .map_err(fail)?;
            advance(run, r, RegionPhase::Registered, |x| {
                x.new_task_definition = Some(td.clone());
            })
            .await?;
            td
        }
    };
    run.env.reporter.event(
        Some(r),
        "register",
        format!("task definition {}", last_part(&task_definition)),
    );
    Ok(Registered { task_definition })
}

/// Step 2: The task set on the idle colour, at full size before it takes any traffic.
async fn create_task_set(
    run: &Run<'_>,
    s: &RegionState,
    registered: Registered,
) -> Result<Created, Stop> {
    let (r, idle) = (s.name(), s.idle());
    let svc = ecs::describe(&s.c, &s.plan.cluster, &s.plan.service)
        .await
        .map_err(fail)?;
    let spec = ecs::TaskSetSpec {
        cluster: &s.plan.cluster,
        service: &s.plan.service,
        deployment: &run.env.deployment,
        purpose: ecs::Purpose::Release,
        task_definition: &registered.task_definition,
        target_group: s.topo.target_group(idle),
        container: &s.base.container,
        port: s.base.port,
        scale: 100.0,
    };
    let ensured = ecs::ensure_task_set(&s.c, &svc, &spec)
        .await
        .map_err(fail)?;
    let task_set = ensured.task_set().clone();
    advance(run, r, RegionPhase::Created, |x| {
        x.new_task_set = Some(task_set.arn.clone());
    })
    .await?;
    let how = match ensured {
        ecs::Ensure::Created(_) => "created",
        ecs::Ensure::Reused(_) => "reusing",
    };
    run.env.reporter.event(
        Some(r),
        "task-set",
        format!("{how} task set {} on {idle} at 100%", task_set.id),
    );
    Ok(Created { task_set })
}

/// Step 3: Until it runs every task and every target is healthy (at least as many as the live
/// colour has), or the deadline.
async fn wait_ready(run: &Run<'_>, s: &RegionState, created: Created) -> Result<Ready, Stop> {
    let (r, idle, st) = (s.name(), s.idle(), &run.env.plan.strategy);
    let ts = created.task_set;
    run.env.reporter.waiting(
        Some(r),
        "ready",
        format!("task set {} running and healthy on {idle}", ts.id),
        st.ready_timeout,
    );
    let check = tokio::sync::Mutex::new(gate::ReadyCheck::new(&s.c, s, idle));
    let waited = unless_cancelled(
        &run.cancel,
        ecs::wait_steady(
            &s.c,
            &s.plan.cluster,
            &s.plan.service,
            &ts.arn,
            st.ready_timeout,
            st.poll,
            || async { check.lock().await.poll().await },
        ),
    )
    .await?;
    let ready = waited.map_err(|e| fail(format!("{e}; traffic stayed on {}", s.live)))?;
    advance(run, r, RegionPhase::Ready, |_| {}).await?;
    run.env.reporter.event(
        Some(r),
        "ready",
        format!(
            "{} of {} tasks running, targets healthy",
            ready.running, ready.computed_desired
        ),
    );
    Ok(Ready { task_set: ts })
}

/// Step 4: The test route (the test listener's header rule) on the new colour, probed with the
/// secret header until it answers the new version; then the `pre_traffic` hook.
async fn test_traffic(run: &Run<'_>, s: &RegionState, ready: Ready) -> Result<Tested, Stop> {
    let (r, idle, env) = (s.name(), s.idle(), run.env);
    elb::point_test_route(&s.c, &s.topo, idle)
        .await
        .map_err(fail)?;
    let url = gate::url(
        &s.topo.dns_name,
        s.plan.test_listener_port,
        &s.plan.probe_path,
    );
    if s.plan.probe == Probe::Http {
        probe_test_route(run, s, &url).await?;
    }
    if let Some(hook) = &env.plan.hooks.pre_traffic {
        run_hook(
            env,
            hook,
            r,
            run.version,
            &url,
            "pre_traffic",
            Some(run.test_route),
        )
        .await
        .map_err(Stop::Failed)?;
    }
    advance(run, r, RegionPhase::TestTraffic, |_| {}).await?;
    let said = match s.plan.probe {
        Probe::Http => format!("{url} answers {}", run.version),
        Probe::None => format!(
            "the test route points at {idle}; not probed (probe = \"none\"): the gate judges \
             through AWS APIs only"
        ),
    };
    env.reporter.event(Some(r), "test-traffic", said);
    Ok(Tested {
        task_set: ready.task_set,
    })
}

/// Probes the test route with the secret header until it answers the new version, for up to
/// `TEST_TRAFFIC_WINDOW` (a listener change takes a moment to reach every ALB node).
async fn probe_test_route(run: &Run<'_>, s: &RegionState, url: &str) -> Result<(), Stop> {
    let env = run.env;
    let started = Instant::now();
    loop {
        let probed = unless_cancelled(
            &run.cancel,
            gate::probe_version(&env.http, url, Some(run.test_route), run.version, 3),
        )
        .await?;
        match probed {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() < TEST_TRAFFIC_WINDOW => {
                env.reporter
                    .event(Some(s.name()), "test-traffic", format!("{e}; retrying"));
                pause(&run.cancel, env.plan.strategy.poll).await?;
            }
            Err(e) => return Err(fail(format!("pre-traffic check failed: {e}"))),
        }
    }
}

/// Step 5: Production in steps; after each, a bake with the gate every poll. `None`: paused at
/// `--until`. Steps the journal shows done are not repeated.
async fn shift(run: &Run<'_>, s: &RegionState, tested: Tested) -> Result<Option<Baked>, Stop> {
    let r = s.name();
    let done = run.tracker.region(r).await;
    if s.first_deployment() && done.weight == 0 {
        run.env.reporter.event(
            Some(r),
            "shift",
            format!(
                "first deployment: production goes to {} in one step (the other colour has no \
                 targets to share traffic with)",
                s.idle()
            ),
        );
    }
    let mut watch = analysis_watch(run, s);
    let mut inconclusive = None;
    // The verdict on the step before, journaled with the write that starts the next one.
    let mut verdict: Option<String> = None;
    for step in steps(&run.env.plan.strategy.steps, s.first_deployment()) {
        let baked_before =
            step < done.weight || (step == done.weight && done.phase.reached(RegionPhase::Baked));
        if baked_before {
            continue;
        }
        elb::set_weights(&s.c, &s.topo, Weights::with(s.idle(), step))
            .await
            .map_err(fail)?;
        if step == 100
            && let Some(w) = watch.as_mut()
        {
            w.previous_stopped(SystemTime::now());
        }
        run.tracker
            .update_region(r, |x| {
                x.weight = step;
                x.phase = RegionPhase::Shifting;
                if verdict.is_some() {
                    x.gate = verdict.take();
                }
            })
            .await
            .map_err(|e| fail(format!("the journal could not record {step}%: {e}")))?;
        // What `history` keeps is the last step's outcome.
        inconclusive = bake(run, s, &tested.task_set, step, watch.as_mut()).await?;
        verdict = Some(step_verdict(
            step,
            watch.as_ref(),
            inconclusive.as_deref(),
            s.plan.probe,
        ));
        if run.until == Some(Until::Weight(step)) {
            // Paused here: the step's verdict is journaled now, not with a next step.
            run.tracker
                .update_region(r, |x| x.gate = verdict)
                .await
                .map_err(|e| fail(format!("the journal could not record {step}%: {e}")))?;
            return Ok(None);
        }
    }
    let analysis = watch.as_ref().map(|w| w.summary(inconclusive.as_deref()));
    advance(run, r, RegionPhase::Baked, |x| {
        x.analysis = analysis;
        if verdict.is_some() {
            x.gate = verdict;
        }
    })
    .await?;
    post_shift(run, s).await?;
    Ok(Some(Baked {
        task_set: tested.task_set,
    }))
}

/// The `post_shift` hook, once the region is baked at 100%.
async fn post_shift(run: &Run<'_>, s: &RegionState) -> Result<(), Stop> {
    let Some(hook) = &run.env.plan.hooks.post_shift else {
        return Ok(());
    };
    let prod = gate::url(&s.topo.dns_name, s.plan.listener_port, &s.plan.probe_path);
    run_hook(
        run.env,
        hook,
        s.name(),
        run.version,
        &prod,
        "post_shift",
        Some(run.test_route),
    )
    .await
    .map_err(Stop::Failed)
}

/// The gate's verdict on a step whose bake passed: what the analysis compared last, or that the
/// other gates (tasks, health, alarms, probe) were the gate.
fn step_verdict(
    step: u8,
    watch: Option<&Watch>,
    inconclusive: Option<&str>,
    probe: crate::config::Probe,
) -> String {
    match watch {
        Some(w) if w.last().is_some() || inconclusive.is_some() => {
            format!("{step}% passed: {}", w.summary(inconclusive))
        }
        _ if probe == crate::config::Probe::None => {
            format!("{step}% passed: tasks, health, alarms")
        }
        _ => format!("{step}% passed: tasks, health, alarms, probe"),
    }
}

/// The analysis of this region's rollout, unless it is off or there is nothing to compare with.
fn analysis_watch(run: &Run<'_>, s: &RegionState) -> Option<Watch> {
    let policy = &run.env.plan.strategy.analysis;
    let steps = &run.env.plan.strategy.steps;
    let why_not = if !policy.enabled {
        "off ([strategy.analysis] enabled = false, or --analysis off)"
    } else if s.first_deployment() {
        "nothing to compare with: the region has no previous release"
    } else if steps.iter().all(|&w| w == 100) {
        "nothing to compare with: production moves to 100% in one step, so the previous release \
         takes no traffic beside the new one"
    } else {
        return Some(Watch::new(SystemTime::now(), steps.len()));
    };
    run.env.reporter.event(
        Some(s.name()),
        "analysis",
        format!("traffic analysis {why_not}"),
    );
    None
}

/// The bake after one step: the gate every poll until the bake time has passed, with the
/// traffic analysis beside it. A bake whose analysis lacks requests at its end goes on up to
/// `max_extension`; `Some(note)`: it ended inconclusive and `on_inconclusive` let it proceed.
async fn bake(
    run: &Run<'_>,
    s: &RegionState,
    ts: &TaskSet,
    step: u8,
    mut watch: Option<&mut Watch>,
) -> Result<Option<String>, Stop> {
    let (st, idle, full) = (&run.env.plan.strategy, s.idle(), step == 100);
    let bake = if full { st.final_bake } else { st.bake };
    run.env.reporter.waiting(
        Some(s.name()),
        if full { "final-bake" } else { "bake" },
        format!(
            "{step}% of traffic on {idle}; gate every {}",
            humantime::format_duration(st.poll)
        ),
        bake,
    );
    let deadline = Instant::now() + bake;
    let mut extended = false;
    loop {
        let look = if Instant::now() >= deadline {
            Look::Final
        } else {
            Look::Interim
        };
        // Read-only, so another region's failure may drop it mid-flight: a rollback never
        // waits for this region's poll to come back.
        let (gate, verdict) = unless_cancelled(&run.cancel, async {
            tokio::join!(
                gate::check(&run.env.http, s, &ts.arn, run.version, full),
                analyse(run, s, watch.as_deref_mut(), look, step),
            )
        })
        .await?;
        gate.map_err(|e| fail(format!("gate failed at {step}% on {idle}: {e}")))?;
        if let Some(Verdict::Fail(why)) = &verdict {
            // `history` keeps this message, the comparison that decided included.
            return Err(fail(format!(
                "traffic analysis failed at {step}% on {idle}: {why}; {}",
                watch
                    .as_deref()
                    .and_then(Watch::last)
                    .map_or(String::new(), ToString::to_string)
            )));
        }
        if look == Look::Final {
            let Some(Verdict::NotEnough(why)) = verdict else {
                return Ok(None);
            };
            if Instant::now() >= deadline + st.analysis.max_extension {
                return inconclusive(run, s, step, &why);
            }
            if !extended {
                extended = true;
                run.env.reporter.waiting(
                    Some(s.name()),
                    "analysis",
                    format!(
                        "{step}% on {idle}: not enough traffic to judge yet ({why}); bake extended"
                    ),
                    st.analysis.max_extension,
                );
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        pause(
            &run.cancel,
            if left.is_zero() {
                st.poll
            } else {
                st.poll.min(left)
            },
        )
        .await?;
    }
}

/// One look of the analysis, reported when its window is new; `None`: the analysis is off or has
/// nothing to compare. Metrics that cannot be read fail the gate, as any gate call does.
async fn analyse(
    run: &Run<'_>,
    s: &RegionState,
    watch: Option<&mut Watch>,
    look: Look,
    share: u8,
) -> Option<Verdict> {
    let policy = &run.env.plan.strategy.analysis;
    let watch = watch?;
    if !watch.compares(policy) {
        // Resumed at 100%: the previous colour took no traffic beside the new one in this run.
        return None;
    }
    Some(match watch.look(s, policy, look).await {
        Ok(Some(l)) => {
            if l.fresh {
                let c = &l.comparison;
                let point = crate::report::ChartPoint {
                    seconds: c.window_seconds,
                    share,
                    new_rate: c.new.error_rate() * 100.0,
                    previous_rate: c.previous.error_rate() * 100.0,
                };
                run.env
                    .reporter
                    .analysis(s.name(), point, &c.to_string(), c);
            }
            l.comparison.verdict
        }
        Ok(None) => Verdict::NotEnough(format!(
            "no metrics period has settled yet (period {}, settle {})",
            humantime::format_duration(policy.period),
            humantime::format_duration(policy.settle)
        )),
        // The SDK has retried what AWS may answer differently next time; what is left (access
        // denied, a period AWS refuses) would leave every step unjudged.
        Err(e) => Verdict::Fail(format!(
            "the metrics could not be read: {e}; the deploy role needs cloudwatch:GetMetricData \
             (terraform/: statement TrafficAnalysis), or promote with --analysis off"
        )),
    })
}

/// The bake has run its extension without enough traffic: `on_inconclusive` decides.
fn inconclusive(
    run: &Run<'_>,
    s: &RegionState,
    step: u8,
    why: &str,
) -> Result<Option<String>, Stop> {
    let policy = &run.env.plan.strategy.analysis;
    let extension = humantime::format_duration(policy.max_extension);
    match policy.on_inconclusive {
        OnInconclusive::Rollback => Err(fail(format!(
            "traffic analysis inconclusive at {step}% on {} after extending the bake by \
             {extension}: {why}; on_inconclusive = \"rollback\"",
            s.idle()
        ))),
        OnInconclusive::Proceed => {
            let note = format!(
                "{why} after extending the bake by {extension}; proceeded (on_inconclusive = \"proceed\": \
                 health, tasks, alarms and probes were the gate)"
            );
            run.env.reporter.warn(
                Some(s.name()),
                "analysis",
                format!("inconclusive at {step}%: {note}"),
            );
            Ok(Some(note))
        }
    }
}

/// Step 6: The new task set becomes primary. The old one stays scaled until every wave is done, so
/// a shared rollback anywhere is still one ModifyListener here.
async fn make_primary(run: &Run<'_>, s: &RegionState, baked: Baked) -> Result<(), Stop> {
    ecs::make_primary(&s.c, &s.plan.cluster, &s.plan.service, &baked.task_set.arn)
        .await
        .map_err(fail)?;
    advance(run, s.name(), RegionPhase::Promoted, |_| {}).await?;
    run.env.reporter.event(
        Some(s.name()),
        "promoted",
        format!("{} serves 100% on {}", run.version, s.idle()),
    );
    Ok(())
}

/// After every wave: the old task set (if the region had a release before) is scaled away and
/// deleted.
pub async fn cleanup(env: &Env, tracker: &Tracker, s: &RegionState) -> Result<(), String> {
    if let Some(old) = &s.previous {
        let old = &old.task_set;
        ecs::scale(&s.c, &s.plan.cluster, &s.plan.service, &old.arn, 0.0)
            .await
            .map_err(|e| e.to_string())?;
        ecs::delete(&s.c, &s.plan.cluster, &s.plan.service, &old.arn)
            .await
            .map_err(|e| e.to_string())?;
        env.reporter.event(
            Some(s.name()),
            "cleanup",
            format!("deleted the previous task set {} on {}", old.id, s.live),
        );
    }
    tracker
        .advance(s.name(), RegionPhase::Cleaned, |_| {})
        .await
        .map_err(|e| format!("the journal could not record cleaned: {e}"))
}

fn last_part(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_deployment_goes_to_production_in_one_step() {
        let strategy = [10, 50, 100];
        assert_eq!(steps(&strategy, false), vec![10, 50, 100]);
        assert_eq!(steps(&strategy, true), vec![100]);
    }

    #[test]
    fn until_never_lets_a_region_go_further_than_asked() {
        use Until::*;
        let cases = [
            // (until, first deployment, pauses after test traffic)
            (None, false, false),
            (None, true, false),
            (Some(Ready), false, false),
            (Some(TestTraffic), false, true),
            (Some(TestTraffic), true, true),
            (Some(Weight(10)), false, false),
            (Some(Weight(10)), true, true),
            (Some(Weight(50)), true, true),
            (Some(Weight(100)), true, false),
            (Some(Weight(100)), false, false),
        ];
        for (until, first, pauses) in cases {
            assert_eq!(
                pauses_before_production(until, first),
                pauses,
                "{until:?}, first deployment {first}"
            );
        }
    }
}
