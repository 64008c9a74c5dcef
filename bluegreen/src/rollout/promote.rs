//! `bluegreen promote` and `bluegreen continue`: preflight, lock, journal, image promotion, then
//! the regions wave by wave with one shared rollback on the first failure anywhere, then the
//! previous task sets go. Each step is a function taking what the one before produced.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::common::{self, short_digest, source_image};
use super::decide::{self, Asked, Decision};
use super::guard::Held;
use super::preflight::{self, RegionState};
use super::region::{self, Ended, Run, Stop};
use super::rollback;
use super::tracker::Tracker;
use super::{Env, Error};
use crate::aws::ecs;
use crate::aws::elb::Colour;
use crate::aws::journal::{Outcome, Phase, Record, RegionPhase, RegionRecord};
use crate::aws::lock::{self, Holder};
use crate::aws::registry::{self, Registry, RegistryError, SourceImage};
use crate::aws::secret::TestRoute;
use crate::config::Until;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub version: String,
    pub until: Option<Until>,
    pub allow_findings: bool,
    pub ignore_alarms: bool,
}

/// How a promote ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromoteOutcome {
    Promoted,
    /// Stopped at `--until`, lock held, for `continue`.
    Paused,
    /// The release already served everywhere.
    NothingToDo,
}

impl std::fmt::Display for PromoteOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Promoted => "promoted",
            Self::Paused => "paused",
            Self::NothingToDo => "nothing-to-do",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionResult {
    pub previous_version: Option<String>,
    pub colour: Colour,
    /// The region's journal phase, or `live` when this deployment did nothing there.
    pub phase: String,
    pub weight: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromoteResult {
    pub env: String,
    pub deployment: String,
    pub version: String,
    pub digest: String,
    pub outcome: PromoteOutcome,
    pub regions: BTreeMap<String, RegionResult>,
    pub copied_blobs: usize,
    pub copied_bytes: u64,
    pub elapsed_ms: u64,
}

impl std::fmt::Display for PromoteResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.outcome {
            PromoteOutcome::NothingToDo => "already live everywhere; nothing to do",
            PromoteOutcome::Paused => {
                "paused; resume with `bluegreen continue`, abort with `bluegreen rollback`"
            }
            PromoteOutcome::Promoted => "promoted",
        };
        writeln!(
            f,
            "{} {} ({}) in {}: {what} [{}, {:.1}s]",
            self.version,
            short_digest(&self.digest),
            self.deployment,
            self.env,
            self.outcome,
            self.elapsed_ms as f64 / 1000.0
        )?;
        for (r, x) in &self.regions {
            writeln!(
                f,
                "  {r:<16} {:<6} {:>3}%  {:<12} (was {})",
                x.colour,
                x.weight,
                x.phase,
                x.previous_version.as_deref().unwrap_or("?")
            )?;
        }
        Ok(())
    }
}

/// What preflight found, read without changing anything.
struct Prepared {
    image: SourceImage,
    states: Vec<RegionState>,
    targets: Vec<(String, Registry)>,
    test_route: TestRoute,
}

/// One deployment under a held lock: everything the phases after preflight share.
struct Deploy<'a> {
    env: &'a Env,
    tracker: Tracker,
    prepared: Prepared,
    until: Option<Until>,
    /// Cancelled on SIGINT/SIGTERM or when the lock is lost.
    stop: CancellationToken,
    lost: CancellationToken,
    started: Instant,
}

/// Bytes and blobs the copy moved.
#[derive(Debug, Clone, Copy, Default)]
struct Copied {
    blobs: usize,
    bytes: u64,
}

/// `bluegreen promote <version>`.
pub async fn promote(
    env: &Env,
    opts: &Options,
    interrupt: CancellationToken,
) -> Result<PromoteResult, Error> {
    let started = Instant::now();
    env.reporter.event(
        None,
        "preflight",
        format!(
            "{} → {} as {}",
            opts.version, env.plan.env, env.identity.arn
        ),
    );
    unlocked_or_expired(env).await?;
    settle_latest(env, &opts.version).await?;
    // An expired holder is a run that died; its lock is taken over below, or cleared when
    // there turns out to be nothing to do. Read after settling, which may have taken it over.
    let stale = unlocked_or_expired(env).await?;
    let prepared = prepare(env, &opts.version, opts.allow_findings, opts.ignore_alarms).await?;
    if prepared
        .states
        .iter()
        .all(|s| s.live_digest() == Some(prepared.image.digest()))
    {
        return nothing_to_do(env, stale, prepared, &opts.version, started).await;
    }
    if interrupt.is_cancelled() {
        return Err(Error::Interrupted(
            "interrupted during preflight; nothing was changed".into(),
        ));
    }
    let held = Held::acquire(env, &env.deployment, &opts.version).await?;
    let begun = begin(env, &prepared, &opts.version)
        .await
        .map(|tracker| (tracker, prepared));
    run_held(env, held, begun, opts.until, &interrupt, started).await
}

/// The deployment under `held` (when it could begin), then the hold ended by the lock rule.
async fn run_held(
    env: &Env,
    held: Held,
    begun: Result<(Tracker, Prepared), Error>,
    until: Option<Until>,
    interrupt: &CancellationToken,
    started: Instant,
) -> Result<PromoteResult, Error> {
    let out = match begun {
        Ok((tracker, prepared)) => {
            let d = Deploy {
                env,
                tracker,
                prepared,
                until,
                stop: stop_on(interrupt, &held),
                lost: held.lost(),
                started,
            };
            execute(&d).await
        }
        Err(e) => Err(e),
    };
    let keep = keeps_lock(&out);
    held.settle(out, keep).await
}

/// The lock rule (see `super`): kept when paused for `continue`, or when AWS is left needing a
/// human; released otherwise.
fn keeps_lock(out: &Result<PromoteResult, Error>) -> bool {
    match out {
        Ok(r) => r.outcome == PromoteOutcome::Paused,
        Err(e) => e.keeps_lock(),
    }
}

/// Cancelled on an interrupt or a lost lock.
fn stop_on(interrupt: &CancellationToken, held: &Held) -> CancellationToken {
    let stop = CancellationToken::new();
    let (s, i, l) = (stop.clone(), interrupt.clone(), held.lost());
    tokio::spawn(async move {
        tokio::select! {
            _ = i.cancelled() => {}
            _ = l.cancelled() => {}
        }
        s.cancel();
    });
    stop
}

/// The lock's holder if it is a run that died (lease expired); refused if a live one holds it.
async fn unlocked_or_expired(env: &Env) -> Result<Option<Holder>, Error> {
    refuse_holder_if(env, |h| !h.expired(lock::now_ms())).await
}

/// The lock's holder, or the refusal `LockHeld` when `refuse` says so of it.
async fn refuse_holder_if(
    env: &Env,
    refuse: impl Fn(&Holder) -> bool,
) -> Result<Option<Holder>, Error> {
    let holder = env
        .lock
        .holder()
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    match holder {
        Some(h) if refuse(&h) => Err(Error::LockHeld(Box::new(lock::LockError::Held {
            env: env.plan.env.clone(),
            holder: h,
        }))),
        other => Ok(other),
    }
}

/// What AWS says now about each region of `record`: whether it serves the record's digest at
/// 100% as primary. Regions the file no longer has are `Unknown`.
pub async fn observe(env: &Env, record: &Record) -> BTreeMap<String, decide::RegionNow> {
    let digest = record.digest.clone().unwrap_or_default();
    let reads = record.regions.keys().map(|r| {
        let digest = digest.clone();
        async move {
            let Some(plan) = env.plan.regions.get(r) else {
                return (r.clone(), decide::RegionNow::Unknown);
            };
            let now = match preflight::serving(env, plan).await {
                Ok(Some((ts, release)))
                    if ts.status == "PRIMARY" && common::digest_of(&release) == Some(&digest) =>
                {
                    decide::RegionNow::ServesRelease
                }
                Ok(_) => decide::RegionNow::Other,
                Err(_) => decide::RegionNow::Unknown,
            };
            (r.clone(), now)
        }
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .collect()
}

/// Settles the journal's latest promote before a new one starts (see `decide::decide`).
async fn settle_latest(env: &Env, version: &str) -> Result<(), Error> {
    let Some(last) = common::latest_promote(env).await? else {
        return Ok(());
    };
    let now = if last.outcome.is_none() {
        observe(env, &last).await
    } else {
        BTreeMap::new()
    };
    match decide::decide(&env.plan.env, Asked::Promote { version }, Some(&last), &now) {
        Decision::Proceed | Decision::Resume => Ok(()),
        Decision::Refuse(m) => Err(Error::Refused(m)),
        Decision::RecordPromoted => record_promoted(env, last).await,
        Decision::RollBackFirst => {
            // Decided, and said: the same release again after a crash starts clean.
            env.reporter.warn(
                None,
                "resume",
                format!(
                    "deployment {} of {} stopped at phase {} without finishing; rolling it back \
                     before starting clean",
                    last.id, last.version, last.phase
                ),
            );
            // Promoting the same release again is consent to undoing its first try, also where
            // that try was a region's first release (the region is off the air until it is
            // deployed again moments later).
            rollback::command(env, &[], true).await.map(|_| ())
        }
    }
}

/// An unfinished record whose release AWS shows finished everywhere: the journal missed its
/// end, so it is written now, under the lock; nothing in AWS changes.
async fn record_promoted(env: &Env, mut record: Record) -> Result<(), Error> {
    let held = Held::take_over(env, &record.id, &record.version).await?;
    env.reporter.warn(
        None,
        "journal",
        format!(
            "deployment {} of {} serves 100% as primary in every region, but its journal stopped at \
             phase {}; recording it as promoted",
            record.id, record.version, record.phase
        ),
    );
    record.end(
        Phase::Promoted,
        Outcome::Promoted,
        Some("recorded from what AWS showed after the journal missed the end".into()),
    );
    let written = env.journal.write(&record).await.map_err(|e| {
        Error::Unsettled(format!(
            "{} serves 100% in every region, but the journal still cannot record it: {e}; run \
             `bluegreen continue -e {}` once DynamoDB answers (lock kept)",
            record.version, env.plan.env
        ))
    });
    let keep = written.is_err();
    held.settle(written, keep).await
}

/// Preflight: the release and its scan findings, every region, the alarms, the registries and
/// their tags. Refuses (nothing changed) on anything that would stop the promote later.
async fn prepare(
    env: &Env,
    version: &str,
    allow_findings: bool,
    ignore_alarms: bool,
) -> Result<Prepared, Error> {
    let image = source_image(env, version, allow_findings).await?;
    env.reporter.event(
        None,
        "preflight",
        format!(
            "{}:{version} is {}",
            env.plan.source.repository,
            image.digest()
        ),
    );
    let states = preflight::inspect_all(env, &BTreeMap::new(), &env.deployment).await?;
    say_first_deployments(env, &states);
    check_alarms(env, &states, ignore_alarms).await?;
    let test_route = env.test_route().await?;
    let targets = target_registries(env, &states)
        .await
        .map_err(|e| Error::Refused(format!("preflight refused; nothing was changed: {e}")))?;
    check_target_tags(env, &targets, &image).await?;
    Ok(Prepared {
        image,
        states,
        targets,
        test_route,
    })
}

/// Says which regions have no live release: their first deployment goes to 100% in one step.
fn say_first_deployments(env: &Env, states: &[RegionState]) {
    for s in states.iter().filter(|s| s.first_deployment()) {
        env.reporter.event(
            Some(s.name()),
            "preflight",
            format!(
                "no live release in {}: first deployment (the new task set goes on {}, which \
                 production does not point at, and production moves to it in one step after \
                 its gates)",
                s.name(),
                s.idle()
            ),
        );
    }
}

/// Alarms already in ALARM refuse the start unless `--ignore-alarms` (the release is the fix).
async fn check_alarms(env: &Env, states: &[RegionState], ignore: bool) -> Result<(), Error> {
    let firing = preflight::alarms_firing(states).await?;
    match (firing.is_empty(), ignore) {
        (true, _) => Ok(()),
        (false, true) => {
            env.reporter.warn(
                None,
                "preflight",
                format!("alarms in ALARM, ignored as asked: {}", firing.join("; ")),
            );
            Ok(())
        }
        (false, false) => Err(Error::Refused(format!(
            "alarms already in ALARM before the start: {}; fix them, or pass --ignore-alarms if the \
             release is the fix",
            firing.join("; ")
        ))),
    }
}

/// The release already serves everywhere: a dead run's expired lock is cleared, and task sets
/// left on the idle colour are removed under the lock.
async fn nothing_to_do(
    env: &Env,
    stale: Option<Holder>,
    prepared: Prepared,
    version: &str,
    started: Instant,
) -> Result<PromoteResult, Error> {
    if let Some(h) = stale {
        // Only that dead run's lock: the delete is conditional on its deployment id.
        env.lock.release(&h.deployment).await?;
        env.reporter.event(
            None,
            "lock",
            format!(
                "removed the expired lock left by deployment {}",
                h.deployment
            ),
        );
    }
    let states = &prepared.states;
    if states.iter().any(|s| !s.leftovers.is_empty()) {
        let held = Held::acquire(env, &env.deployment, version).await?;
        let removed = remove_leftovers(env, states).await;
        held.release().await;
        removed?;
    }
    Ok(PromoteResult {
        env: env.plan.env.clone(),
        deployment: env.deployment.clone(),
        version: version.to_owned(),
        digest: prepared.image.digest().to_owned(),
        outcome: PromoteOutcome::NothingToDo,
        regions: results(states, &Record::default()),
        copied_blobs: 0,
        copied_bytes: 0,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Under the lock, before anything deploys: leftovers on the idle colour go, and the journal
/// record is written (a journal that cannot be written stops here, nothing changed).
async fn begin(env: &Env, prepared: &Prepared, version: &str) -> Result<Tracker, Error> {
    remove_leftovers(env, &prepared.states).await?;
    let record = record_for(env, version, prepared.image.digest(), &prepared.states);
    let tracker = Tracker::new(env.journal.clone(), record);
    tracker.update(|_| {}).await.map_err(|e| {
        Error::Failed(format!(
            "the journal could not record the start of deployment {}: {e}; nothing was deployed",
            env.deployment
        ))
    })?;
    Ok(tracker)
}

fn record_for(env: &Env, version: &str, digest: &str, states: &[RegionState]) -> Record {
    Record {
        id: env.deployment.clone(),
        env: env.plan.env.clone(),
        version: version.to_owned(),
        digest: Some(digest.to_owned()),
        caller: env.identity.arn.clone(),
        started_ms: lock::now_ms(),
        regions: states
            .iter()
            .map(|s| {
                (
                    s.plan.region.clone(),
                    RegionRecord {
                        // A first deployment records the colour and no task set (see
                        // `RegionRecord::first_deployment`).
                        previous_task_definition: s
                            .previous
                            .as_ref()
                            .map(|l| l.task_set.task_definition.clone()),
                        previous_task_set: s.previous.as_ref().map(|l| l.task_set.arn.clone()),
                        previous_colour: Some(s.live.as_str().into()),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        ..Record::default()
    }
}

/// `bluegreen continue`: settles the journal's unfinished promote — resumes it from where its
/// journal says, or records it promoted when AWS shows it finished.
pub async fn resume(env: &Env, interrupt: CancellationToken) -> Result<PromoteResult, Error> {
    let started = Instant::now();
    let latest = common::latest_promote(env).await?;
    let now = match &latest {
        Some(r) if r.outcome.is_none() => observe(env, r).await,
        _ => BTreeMap::new(),
    };
    let decision = decide::decide(&env.plan.env, Asked::Continue, latest.as_ref(), &now);
    let record = match (decision, latest) {
        (Decision::Refuse(m), _) => return Err(Error::Refused(m)),
        (_, None) => unreachable!("decide refuses `continue` without a record"),
        (Decision::RecordPromoted, Some(r)) => {
            let version = r.version.clone();
            record_promoted(env, r).await?;
            let prepared = prepare(env, &version, true, true).await?;
            return nothing_to_do(env, None, prepared, &version, started).await;
        }
        (_, Some(r)) => r,
    };
    // The resumed run acts as the deployment it continues: its lock, its task sets' ids.
    let env = &env.acting_as(&record.id);
    not_running(env, &record).await?;
    let prepared = resumable(env, &record).await?;
    let held = Held::acquire(env, &record.id, &record.version).await?;
    let begun = Ok((Tracker::new(env.journal.clone(), record), prepared));
    run_held(env, held, begun, None, &interrupt, started).await
}

/// Refuses to resume a deployment whose own run still holds the lock alive (not kept, not
/// expired): it is running somewhere else.
async fn not_running(env: &Env, record: &Record) -> Result<(), Error> {
    refuse_holder_if(env, |h| {
        h.deployment == record.id && !h.kept && !h.expired(lock::now_ms())
    })
    .await
    .map(|_| ())
}

/// A region that had a release when the deployment started must still have it: resuming it as
/// a first deployment would move production in one step.
fn refuse_lost_previous(env: &Env, record: &Record, states: &[RegionState]) -> Result<(), Error> {
    let lost = states.iter().find(|s| {
        s.first_deployment()
            && record
                .regions
                .get(s.name())
                .is_some_and(|x| !x.first_deployment())
    });
    match lost {
        None => Ok(()),
        Some(s) => Err(Error::Refused(format!(
            "the task set that served {} in {} before deployment {} is gone; it cannot be resumed: \
             run `bluegreen rollback -e {}` (it recreates the previous release from the journal)",
            s.live,
            s.name(),
            record.id,
            env.plan.env
        ))),
    }
}

/// Preflight for `continue`: the same digest, the regions read with their recorded live
/// colours, and no task set on the idle colour that is not this deployment's.
async fn resumable(env: &Env, record: &Record) -> Result<Prepared, Error> {
    if let Some(r) = record
        .regions
        .keys()
        .find(|r| !env.plan.regions.contains_key(*r))
    {
        return Err(Error::Refused(format!(
            "deployment {} of {} includes {r}, which the environment file for {env} no longer has; \
             restore its [regions.{r}] table to continue, or roll the deployment back",
            record.id,
            record.version,
            env = env.plan.env
        )));
    }
    let image = source_image(env, &record.version, true).await?;
    if record.digest.as_deref() != Some(image.digest()) {
        return Err(Error::Refused(format!(
            "{}:{} now resolves to {}, but deployment {} started with {}; run `bluegreen rollback -e {}`",
            env.plan.source.repository,
            record.version,
            image.digest(),
            record.id,
            record.digest.as_deref().unwrap_or("?"),
            env.plan.env
        )));
    }
    let previous: BTreeMap<String, Colour> = record
        .regions
        .iter()
        .filter_map(|(r, x)| Some((r.clone(), Colour::parse(x.previous_colour.as_deref()?)?)))
        .collect();
    let states = preflight::inspect_all(env, &previous, &env.deployment).await?;
    refuse_lost_previous(env, record, &states)?;
    if let Some((s, t)) = states
        .iter()
        .find_map(|s| s.leftovers.first().map(|t| (s, t)))
    {
        return Err(Error::Refused(format!(
            "task set {} on the idle {} target group in {} is not deployment {}'s; run \
             `bluegreen rollback -e {}` to abandon the deployment instead",
            t.id,
            s.idle(),
            s.name(),
            record.id,
            env.plan.env
        )));
    }
    env.reporter.event(
        None,
        "continue",
        format!(
            "resuming deployment {} of {} from phase {}",
            record.id, record.version, record.phase
        ),
    );
    let test_route = env.test_route().await?;
    let targets = target_registries(env, &states).await.map_err(|e| {
        Error::Failed(format!(
            "image promotion failed in {e}; nothing further was deployed"
        ))
    })?;
    Ok(Prepared {
        image,
        states,
        targets,
        test_route,
    })
}

/// Image promotion, then the waves, then cleanup.
async fn execute(d: &Deploy<'_>) -> Result<PromoteResult, Error> {
    let copied = copy_image(d).await?;
    journal_phase(d, Phase::Deploying).await?;
    match run_waves(d).await? {
        Ended::Paused => {
            journal_phase(d, Phase::Paused).await?;
            Ok(result(d, PromoteOutcome::Paused, copied).await)
        }
        Ended::Done => finish_promoted(d, copied).await,
    }
}

/// Records a deployment-wide phase. Before any region changed (copying, deploying) a failure
/// is plain; after, AWS needs a human and the error says what it holds.
async fn journal_phase(d: &Deploy<'_>, phase: Phase) -> Result<(), Error> {
    let Err(e) = d.tracker.update(|r| r.phase = phase).await else {
        return Ok(());
    };
    let touched = decide::touched(&d.tracker.snapshot().await);
    Err(match phase {
        Phase::Copying | Phase::Deploying if touched.is_empty() => Error::Failed(format!(
            "the journal could not record phase {phase} of deployment {}: {e}; nothing was deployed",
            d.env.deployment
        )),
        _ => Error::Unsettled(journal_missed(d, &format!("phase {phase}"), &e.to_string())),
    })
}

/// What AWS holds and what the journal missed, for an operator to act on.
fn journal_missed(d: &Deploy<'_>, what: &str, error: &str) -> String {
    format!(
        "the journal of deployment {} could not record {what}: {error}; AWS is as the last \
         events above say; run `bluegreen status -e {env}`, then `bluegreen continue -e {env}` or \
         `bluegreen rollback -e {env}` (lock kept)",
        d.env.deployment,
        env = d.env.plan.env
    )
}

/// Step 1: The image, into every region's registry, verified by digest. A failed copy ends the
/// deployment before anything was deployed.
async fn copy_image(d: &Deploy<'_>) -> Result<Copied, Error> {
    let (env, image, targets) = (d.env, &d.prepared.image, &d.prepared.targets);
    journal_phase(d, Phase::Copying).await?;
    env.reporter.event(
        None,
        "copy",
        format!(
            "{}@{} to {} region(s)",
            image.repository,
            short_digest(image.digest()),
            targets.len()
        ),
    );
    let copies = registry::copy_all(image, targets, &env.plan.repository, 4, 4).await;
    let mut copied = Copied::default();
    let mut errors = Vec::new();
    for (r, c) in &copies {
        match c {
            Ok(x) => {
                copied.blobs += x.blobs_copied;
                copied.bytes += x.bytes_copied;
                env.reporter.event(
                    Some(r),
                    "copy",
                    format!(
                        "{} blobs copied ({} bytes), {} present, {} mounted{}",
                        x.blobs_copied,
                        x.bytes_copied,
                        x.blobs_skipped,
                        x.blobs_mounted,
                        if x.already_present {
                            "; tag already there"
                        } else {
                            ""
                        }
                    ),
                );
            }
            Err(e) => errors.push(format!("{r}: {e}")),
        }
    }
    if errors.is_empty() {
        return Ok(copied);
    }
    let touched = decide::touched(&d.tracker.snapshot().await);
    if !touched.is_empty() {
        // A resumed deployment: regions already run it, so the record stays open for
        // `continue` or `rollback`.
        return Err(Error::Unsettled(format!(
            "image promotion failed: {}; deployment {} already changed {}; run `bluegreen continue \
             -e {env}` once the registries answer, or `bluegreen rollback -e {env}` (lock kept)",
            errors.join("; "),
            d.env.deployment,
            touched.join(", "),
            env = d.env.plan.env
        )));
    }
    let message = format!(
        "image promotion failed; nothing was deployed: {}",
        errors.join("; ")
    );
    let recorded = d
        .tracker
        .update(|x| x.end(Phase::Failed, Outcome::Failed, Some(message.clone())))
        .await;
    Err(match recorded {
        Ok(()) => Error::Failed(message),
        // Nothing was deployed, so nothing needs a human but the record.
        Err(e) => Error::Failed(format!("{message}; the journal could not record it: {e}")),
    })
}

/// Step 2: Waves in order, the regions of a wave at once; a wave the journal shows promoted is
/// skipped. The first failure anywhere rolls back every touched region.
async fn run_waves(d: &Deploy<'_>) -> Result<Ended, Error> {
    let waves = &d.env.plan.waves;
    for (i, wave) in waves.iter().enumerate() {
        let record = d.tracker.snapshot().await;
        let done = |r: &String| {
            record
                .regions
                .get(r)
                .is_some_and(|x| x.phase.reached(RegionPhase::Promoted))
        };
        if wave.iter().all(done) {
            continue;
        }
        d.env.reporter.event(
            None,
            "wave",
            format!("wave {}/{}: {}", i + 1, waves.len(), wave.join(", ")),
        );
        let outcomes = run_wave(d, wave).await;
        if d.lost.is_cancelled() {
            return Err(Error::Failed(format!(
                "deployment {} lost the lock of {} (another process took it over, e.g. `bluegreen rollback`); stopped without touching anything further",
                d.env.deployment, d.env.plan.env
            )));
        }
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|(r, o)| match o {
                Err(Stop::Failed(e)) => Some(format!("{r}: {e}")),
                _ => None,
            })
            .collect();
        let cancelled = outcomes.iter().any(|(_, o)| o == &Err(Stop::Cancelled));
        if !failures.is_empty() || cancelled {
            return Err(shared_rollback(d, failures).await);
        }
        if outcomes.iter().any(|(_, o)| o == &Ok(Ended::Paused)) {
            return Ok(Ended::Paused);
        }
    }
    Ok(Ended::Done)
}

/// One wave's regions at once; a region that fails stops the others at once.
async fn run_wave(d: &Deploy<'_>, wave: &[String]) -> Vec<(String, Result<Ended, Stop>)> {
    let wave_stop = d.stop.child_token();
    let version = &d.tracker.snapshot().await.version;
    let image = &d.prepared.image;
    futures_util::future::join_all(wave.iter().map(|r| {
        let s = d
            .prepared
            .states
            .iter()
            .find(|s| s.name() == r)
            .expect("preflight read every region of the plan");
        let host = d
            .prepared
            .targets
            .iter()
            .find(|(n, _)| n == r)
            .map(|(_, t)| t.host().to_owned())
            .expect("a registry for every region of the plan");
        let run = Run {
            env: d.env,
            tracker: &d.tracker,
            version,
            image: format!("{host}/{}@{}", d.env.plan.repository, image.digest()),
            until: d.until,
            cancel: wave_stop.clone(),
            test_route: &d.prepared.test_route,
        };
        let wave_stop = wave_stop.clone();
        async move {
            let out = region::promote(&run, s).await;
            if let Err(Stop::Failed(e)) = &out {
                run.env.reporter.warn(Some(s.name()), "failed", e);
                wave_stop.cancel();
            }
            (s.name().to_owned(), out)
        }
    }))
    .await
}

/// Every touched region back on its previous release: production first, one ModifyListener per
/// region, all at once, with the topology this run already knows (the previous task sets still
/// run at full scale until every wave is done, so they can take it); then each region's
/// rollback. `failures` empty: interrupted.
async fn shared_rollback(d: &Deploy<'_>, failures: Vec<String>) -> Error {
    let env = d.env;
    let interrupted = failures.is_empty();
    let reason = if interrupted {
        "interrupted".to_owned()
    } else {
        failures.join("; ")
    };
    let touched = decide::touched(&d.tracker.snapshot().await);
    env.reporter.warn(
        None,
        "rollback",
        format!(
            "{}returning {} to the previous release",
            if interrupted { "interrupted; " } else { "" },
            touched.join(", ")
        ),
    );
    let flipped = fast_flip(d, &touched).await;
    let results = rollback::regions(env, &d.tracker, &touched, &flipped).await;
    let broken: Vec<String> = results
        .iter()
        .filter_map(|(r, x)| x.as_ref().err().map(|e| format!("{r}: {e}")))
        .collect();
    let (phase, outcome) = if broken.is_empty() {
        (Phase::RolledBack, Outcome::RolledBack)
    } else {
        (Phase::RollbackFailed, Outcome::RollbackFailed)
    };
    let recorded = d
        .tracker
        .update(|x| x.end(phase, outcome, Some(reason.clone())))
        .await;
    let env_name = &env.plan.env;
    if !broken.is_empty() {
        return Error::Unsettled(format!(
            "{reason}; the rollback did not finish in {}; run `bluegreen rollback -e {env_name}` (lock kept)",
            broken.join("; ")
        ));
    }
    let msg = format!(
        "{reason}; every touched region ({}) is back on its previous release",
        touched.join(", ")
    );
    match recorded {
        Err(e) => Error::Unsettled(format!(
            "{msg}, but the journal could not record it ({e}); run `bluegreen rollback -e {env_name}` \
             to record it (lock kept)"
        )),
        Ok(()) if interrupted => Error::Interrupted(msg),
        Ok(()) => Error::RolledBack(msg),
    }
}

/// Production back on the previous colour in every touched region whose previous task set still
/// runs (or that had no release: it goes back to answering 503), all at once; returns the
/// regions flipped.
async fn fast_flip(d: &Deploy<'_>, touched: &[String]) -> BTreeSet<String> {
    let flips = futures_util::future::join_all(
        d.prepared
            .states
            .iter()
            .filter(|s| {
                touched.iter().any(|t| t == s.name())
                    && s.previous
                        .as_ref()
                        .is_none_or(|l| l.task_set.scale_percent > 0.0)
            })
            .map(|s| async move {
                let flipped = rollback::production_back(d.env, &s.c, &s.topo, s.live).await;
                (s, flipped)
            }),
    )
    .await;
    let mut flipped = BTreeSet::new();
    for (s, res) in flips {
        match res {
            Ok(()) => {
                flipped.insert(s.name().to_owned());
            }
            Err(e) => d.env.reporter.warn(Some(s.name()), "rollback", e),
        }
    }
    flipped
}

/// Step 3: Every wave done: the previous task sets go, and the journal says promoted. A journal that
/// cannot say it leaves the lock kept and the command names what AWS holds.
async fn finish_promoted(d: &Deploy<'_>, copied: Copied) -> Result<PromoteResult, Error> {
    let (env, version) = (d.env, &d.prepared.image.tag);
    journal_phase(d, Phase::Cleaning).await?;
    let mut left = Vec::new();
    for s in &d.prepared.states {
        if let Err(e) = region::cleanup(env, &d.tracker, s).await {
            env.reporter.warn(Some(s.name()), "cleanup", &e);
            left.push(format!("{}: {e}", s.name()));
        }
    }
    let recorded = d
        .tracker
        .update(|x| x.end(Phase::Promoted, Outcome::Promoted, None))
        .await;
    if let Err(e) = recorded {
        return Err(Error::Unsettled(format!(
            "{version} serves 100% as primary in every region, but the journal could not record \
             that deployment {} was promoted: {e}; run `bluegreen continue -e {}` to record it (lock kept)",
            env.deployment, env.plan.env
        )));
    }
    if !left.is_empty() {
        // The release is live; only the old task sets remain. Not exit 0: promote's promise is
        // one task set per region.
        return Err(Error::Failed(format!(
            "{version} serves 100% everywhere, but removing the previous task set failed ({}); \
             it stays idle on the other colour; run `bluegreen promote {version} -e {env}` again \
             to remove it",
            left.join("; "),
            env = env.plan.env
        )));
    }
    Ok(result(d, PromoteOutcome::Promoted, copied).await)
}

fn results(states: &[RegionState], record: &Record) -> BTreeMap<String, RegionResult> {
    states
        .iter()
        .map(|s| {
            let rec = record.regions.get(s.name()).cloned().unwrap_or_default();
            let result = RegionResult {
                previous_version: s.live_version().map(str::to_owned),
                colour: if rec.weight == 100 { s.idle() } else { s.live },
                phase: if rec.phase == RegionPhase::Pending {
                    "live".into()
                } else {
                    rec.phase.to_string()
                },
                weight: rec.weight,
            };
            (s.name().to_owned(), result)
        })
        .collect()
}

async fn result(d: &Deploy<'_>, outcome: PromoteOutcome, copied: Copied) -> PromoteResult {
    let record = d.tracker.snapshot().await;
    PromoteResult {
        env: d.env.plan.env.clone(),
        deployment: d.env.deployment.clone(),
        version: record.version.clone(),
        digest: d.prepared.image.digest().to_owned(),
        outcome,
        regions: results(&d.prepared.states, &record),
        copied_blobs: copied.blobs,
        copied_bytes: copied.bytes,
        elapsed_ms: d.started.elapsed().as_millis() as u64,
    }
}

/// Every region's registry, from one ECR token per region, fetched at once; the error names the
/// region.
async fn target_registries(
    env: &Env,
    states: &[RegionState],
) -> Result<Vec<(String, Registry)>, String> {
    futures_util::future::join_all(states.iter().map(|s| async move {
        Registry::from_ecr(&s.c.ecr, s.name(), env.registry_http.clone())
            .await
            .map(|t| (s.name().to_owned(), t))
            .map_err(|e| format!("{}: {e}", s.name()))
    }))
    .await
    .into_iter()
    .collect()
}

/// Tags are immutable: a target registry where the tag already names another digest refuses
/// the promote here, before anything changes, rather than in the middle of the copy.
async fn check_target_tags(
    env: &Env,
    targets: &[(String, Registry)],
    image: &SourceImage,
) -> Result<(), Error> {
    let repo = &env.plan.repository;
    let found = futures_util::future::join_all(targets.iter().map(|(r, target)| async move {
        let existing = target.manifest(repo, &image.tag).await?;
        Ok::<_, RegistryError>((r, target, existing.map(|m| m.digest)))
    }))
    .await;
    let mut conflicts = Vec::new();
    for f in found {
        match f {
            Ok((r, target, Some(d))) if d != image.digest() => {
                conflicts.push(format!("{r} ({}) has {d}", target.host()));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Refused(format!(
                    "preflight refused; nothing was changed: {e}"
                )));
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{repo}:{tag} already exists in the target with another digest than the source's {}: {}; \
         tags are immutable, so release a new version instead of re-using {tag}",
        image.digest(),
        conflicts.join(", "),
        tag = image.tag
    )))
}

/// Removes other runs' task sets on the idle colour (`RegionState::leftovers`: no traffic),
/// saying each; the caller holds the lock.
async fn remove_leftovers(env: &Env, states: &[RegionState]) -> Result<(), Error> {
    let mut failed = Vec::new();
    for s in states {
        for t in &s.leftovers {
            let done = async {
                ecs::scale(&s.c, &s.plan.cluster, &s.plan.service, &t.arn, 0.0).await?;
                ecs::delete(&s.c, &s.plan.cluster, &s.plan.service, &t.arn).await
            }
            .await;
            match done {
                Ok(()) => env.reporter.event(
                    Some(s.name()),
                    "cleanup",
                    format!(
                        "removed task set {} left on the idle {} colour by {} (no traffic)",
                        t.id,
                        s.idle(),
                        t.external_id
                            .as_deref()
                            .map_or("another run".to_owned(), |d| format!("deployment {d}"))
                    ),
                ),
                Err(e) => failed.push(format!("{}: {e}", s.name())),
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Failed(format!(
            "removing task sets left on the idle colour failed: {}",
            failed.join("; ")
        )))
    }
}
