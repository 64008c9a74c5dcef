//! `bluegreen promote` and `bluegreen continue`: preflight, lock, journal, image promotion, then
//! the regions wave by wave with one shared rollback on the first failure anywhere.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::preflight::{self, RegionState};
use super::region::{self, Ended, Run, Stop, Tracker, Until};
use super::rollback;
use super::{Env, Error, heartbeat, validate_version};
use crate::aws::ecs;
use crate::aws::elb::Colour;
use crate::aws::lock::{self, Record, RegionRecord};
use crate::aws::registry::{self, Registry, RegistryError, SourceImage};

/// How long a paused deployment keeps the lock without a running process.
pub const PAUSE_HOLD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub version: String,
    pub until: Option<Until>,
    pub allow_findings: bool,
    pub ignore_alarms: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionResult {
    pub previous_version: Option<String>,
    pub colour: Colour,
    pub phase: String,
    pub weight: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromoteResult {
    pub env: String,
    pub deployment: String,
    pub version: String,
    pub digest: String,
    /// `promoted`, `paused` or `nothing-to-do`.
    pub outcome: String,
    pub regions: BTreeMap<String, RegionResult>,
    pub copied_blobs: usize,
    pub copied_bytes: u64,
    pub elapsed_ms: u64,
}

impl std::fmt::Display for PromoteResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.outcome.as_str() {
            "nothing-to-do" => "already live everywhere; nothing to do",
            "paused" => "paused; resume with `bluegreen continue`, abort with `bluegreen rollback`",
            _ => "promoted",
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

pub fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

/// Resolves the release in the source registry and applies the scan gate.
pub async fn source_image(
    env: &Env,
    version: &str,
    allow_findings: bool,
) -> Result<SourceImage, Error> {
    let src = &env.plan.source;
    let ecr = aws_sdk_ecr::Client::new(
        &env.source
            .to_builder()
            .region(aws_config::Region::new(src.region.clone()))
            .build(),
    );
    let registry = Registry::from_ecr_for(
        &ecr,
        &src.region,
        Some(&src.account_id),
        env.registry_http.clone(),
    )
    .await
    .map_err(|e| Error::Refused(format!("preflight refused; nothing was changed: {e}")))?;
    let image = registry::resolve(&registry, &src.repository, version)
        .await
        .map_err(|e| match e {
            RegistryError::MissingTag { .. } => Error::Refused(e.to_string()),
            other => Error::Refused(format!("preflight refused; nothing was changed: {other}")),
        })?;
    if let (Some(threshold), false) = (env.plan.strategy.scan_threshold, allow_findings) {
        let counts = registry::scan_counts(&ecr, &src.region, &src.repository, image.digest())
            .await
            .map_err(|e| {
                Error::Refused(format!("preflight refused; cannot read scan findings: {e}"))
            })?;
        registry::scan_gate(&counts, threshold, &src.repository, image.digest())
            .map_err(|e| Error::Refused(e.to_string()))?;
    }
    Ok(image)
}

fn record_for(env: &Env, version: &str, digest: &str, states: &[RegionState]) -> Record {
    Record {
        id: env.deployment.clone(),
        env: env.plan.env.clone(),
        kind: "promote".into(),
        version: version.to_owned(),
        digest: Some(digest.to_owned()),
        caller: env.identity.arn.clone(),
        started_ms: lock::now_ms(),
        ended_ms: None,
        phase: "starting".into(),
        outcome: None,
        message: None,
        regions: states
            .iter()
            .map(|s| {
                (
                    s.plan.region.clone(),
                    RegionRecord {
                        phase: "pending".into(),
                        previous_task_definition: Some(s.live_task_set.task_definition.clone()),
                        previous_task_set: Some(s.live_task_set.arn.clone()),
                        previous_colour: Some(s.live.as_str().into()),
                        ..Default::default()
                    },
                )
            })
            .collect(),
    }
}

/// `bluegreen promote <version>`.
pub async fn promote(
    env: &Env,
    opts: &Options,
    interrupt: CancellationToken,
) -> Result<PromoteResult, Error> {
    let started = Instant::now();
    validate_version(&opts.version)?;
    let rep = &env.reporter;
    rep.event(
        None,
        "preflight",
        format!(
            "{} → {} as {}",
            opts.version, env.plan.env, env.identity.arn
        ),
    );

    // An expired holder is a run that died; its lock is taken over below, or cleared when
    // there turns out to be nothing to do.
    let stale = env
        .lock
        .holder()
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    if let Some(h) = &stale
        && !h.expired(lock::now_ms())
    {
        return Err(Error::LockHeld(Box::new(
            crate::aws::lock::LockError::Held {
                env: env.plan.env.clone(),
                holder: h.clone(),
            },
        )));
    }
    if let Some(last) = rollback::latest_promote(env).await?
        && last.outcome.is_none()
    {
        if last.version != opts.version {
            return Err(Error::Refused(format!(
                "deployment {} of {} is unfinished (phase {}); finish or abort it first: \
                 `bluegreen continue -e {env}` or `bluegreen rollback -e {env}`",
                last.id,
                last.version,
                last.phase,
                env = env.plan.env
            )));
        }
        // Decided, and said: the same release again after a crash starts clean.
        rep.warn(
            None,
            "resume",
            format!(
                "deployment {} of {} stopped at phase {} without finishing; rolling it back before \
                 starting clean",
                last.id, last.version, last.phase
            ),
        );
        rollback::command(env).await?;
    }

    let image = source_image(env, &opts.version, opts.allow_findings).await?;
    rep.event(
        None,
        "preflight",
        format!(
            "{}:{} is {}",
            env.plan.source.repository,
            opts.version,
            image.digest()
        ),
    );
    let states = preflight::inspect_all(env, &BTreeMap::new(), &env.deployment).await?;
    let firing = preflight::alarms_firing(&states).await?;
    if !firing.is_empty() {
        if opts.ignore_alarms {
            rep.warn(
                None,
                "preflight",
                format!("alarms in ALARM, ignored as asked: {}", firing.join("; ")),
            );
        } else {
            return Err(Error::Refused(format!(
                "alarms already in ALARM before the start: {}; fix them, or pass --ignore-alarms if the \
                 release is the fix",
                firing.join("; ")
            )));
        }
    }
    let targets = target_registries(env, &states)
        .await
        .map_err(|e| Error::Refused(format!("preflight refused; nothing was changed: {e}")))?;
    check_target_tags(env, &targets, &image).await?;
    if states
        .iter()
        .all(|s| s.live_digest() == Some(image.digest()))
    {
        if let Some(h) = stale {
            // Only that dead run's lock: the delete is conditional on its deployment id.
            env.lock.release(&h.deployment).await?;
            rep.event(
                None,
                "lock",
                format!(
                    "removed the expired lock left by deployment {}",
                    h.deployment
                ),
            );
        }
        if states.iter().any(|s| !s.leftovers.is_empty()) {
            env.lock
                .acquire(&env.deployment, &env.identity.arn, &opts.version)
                .await?;
            let removed = remove_leftovers(env, &states).await;
            let _ = env.lock.release(&env.deployment).await;
            removed?;
        }
        return Ok(PromoteResult {
            env: env.plan.env.clone(),
            deployment: env.deployment.clone(),
            version: opts.version.clone(),
            digest: image.digest().to_owned(),
            outcome: "nothing-to-do".into(),
            regions: results(&states, &Record::default()),
            copied_blobs: 0,
            copied_bytes: 0,
            elapsed_ms: started.elapsed().as_millis() as u64,
        });
    }

    env.lock
        .acquire(&env.deployment, &env.identity.arn, &opts.version)
        .await?;
    if let Err(e) = remove_leftovers(env, &states).await {
        let _ = env.lock.release(&env.deployment).await;
        return Err(e);
    }
    let tracker = Tracker::new(
        env.journal.clone(),
        record_for(env, &opts.version, image.digest(), &states),
    );
    tracker.update(|_| {}).await.map_err(Error::Failed)?;
    execute(
        env, &tracker, &image, targets, states, opts.until, interrupt, started,
    )
    .await
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

/// `bluegreen continue`: resumes the paused or unfinished promote in the journal.
pub async fn resume(
    env: &Env,
    record: Record,
    interrupt: CancellationToken,
) -> Result<PromoteResult, Error> {
    let started = Instant::now();
    env.lock
        .acquire(&env.deployment, &env.identity.arn, &record.version)
        .await?;
    let image = source_image(env, &record.version, true).await?;
    if record.digest.as_deref() != Some(image.digest()) {
        let _ = env.lock.release(&env.deployment).await;
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
    let states = match preflight::inspect_all(env, &previous, &env.deployment).await {
        Ok(s) => s,
        Err(e) => {
            let _ = env.lock.release(&env.deployment).await;
            return Err(e);
        }
    };
    // A paused deployment's idle colour is its own; anything else there is not ours to judge.
    if let Some((s, t)) = states
        .iter()
        .find_map(|s| s.leftovers.first().map(|t| (s, t)))
    {
        let _ = env.lock.release(&env.deployment).await;
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
    let targets = match target_registries(env, &states).await {
        Ok(t) => t,
        Err(e) => {
            let _ = env.lock.release(&env.deployment).await;
            return Err(Error::Failed(format!(
                "image promotion failed in {e}; nothing further was deployed"
            )));
        }
    };
    let tracker = Tracker::new(env.journal.clone(), record);
    execute(
        env, &tracker, &image, targets, states, None, interrupt, started,
    )
    .await
}

/// Image promotion, then the waves, then cleanup, under a held lock.
#[allow(clippy::too_many_arguments)]
async fn execute(
    env: &Env,
    tracker: &Tracker,
    image: &SourceImage,
    targets: Vec<(String, Registry)>,
    states: Vec<RegionState>,
    until: Option<Until>,
    interrupt: CancellationToken,
    started: Instant,
) -> Result<PromoteResult, Error> {
    let rep = &env.reporter;
    let version = tracker.snapshot().await.version;
    let stop = CancellationToken::new();
    let lost = CancellationToken::new();
    let beat = heartbeat(
        env.lock.clone(),
        env.deployment.clone(),
        lost.clone(),
        rep.clone(),
    );
    let watcher = {
        let (stop, lost, interrupt) = (stop.clone(), lost.clone(), interrupt.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.cancelled() => {}
                _ = lost.cancelled() => {}
            }
            stop.cancel();
        })
    };
    let finish = |beat: tokio::task::JoinHandle<()>, watcher: tokio::task::JoinHandle<()>| {
        beat.abort();
        watcher.abort();
    };

    // 1. The image, into every region's registry, verified by digest.
    let _ = tracker.update(|r| r.phase = "copying".into()).await;
    rep.event(
        None,
        "copy",
        format!(
            "{}@{} to {} region(s)",
            image.repository,
            short_digest(image.digest()),
            targets.len()
        ),
    );
    let copies = registry::copy_all(image, &targets, &env.plan.repository, 4, 4).await;
    let mut blobs = 0;
    let mut bytes = 0;
    let mut copy_errors = Vec::new();
    for (r, c) in &copies {
        match c {
            Ok(rep_) => {
                blobs += rep_.blobs_copied;
                bytes += rep_.bytes_copied;
                rep.event(
                    Some(r),
                    "copy",
                    format!(
                        "{} blobs copied ({} bytes), {} present, {} mounted{}",
                        rep_.blobs_copied,
                        rep_.bytes_copied,
                        rep_.blobs_skipped,
                        rep_.blobs_mounted,
                        if rep_.already_present {
                            "; tag already there"
                        } else {
                            ""
                        }
                    ),
                );
            }
            Err(e) => copy_errors.push(format!("{r}: {e}")),
        }
    }
    if !copy_errors.is_empty() {
        finish(beat, watcher);
        return Err(end_failed(
            env,
            tracker,
            format!(
                "image promotion failed; nothing was deployed: {}",
                copy_errors.join("; ")
            ),
        )
        .await);
    }
    let _ = tracker.update(|r| r.phase = "deploying".into()).await;

    // 2. Waves in order; regions of a wave at once.
    let by_region: BTreeMap<&str, &RegionState> = states.iter().map(|s| (s.name(), s)).collect();
    let mut paused = false;
    for (i, wave) in env.plan.waves.iter().enumerate() {
        let record = tracker.snapshot().await;
        if wave.iter().all(|r| {
            region::phase_rank(
                &record
                    .regions
                    .get(r)
                    .map(|x| x.phase.clone())
                    .unwrap_or_default(),
            ) >= region::phase_rank("promoted")
        }) {
            continue;
        }
        rep.event(
            None,
            "wave",
            format!(
                "wave {}/{}: {}",
                i + 1,
                env.plan.waves.len(),
                wave.join(", ")
            ),
        );
        let wave_stop = stop.child_token();
        let outcomes = futures_util::future::join_all(wave.iter().map(|r| {
            let s = by_region[r.as_str()];
            let target = targets
                .iter()
                .find(|(n, _)| n == r)
                .map(|(_, t)| t.host().to_owned())
                .unwrap_or_default();
            let run = Run {
                env,
                tracker,
                version: &version,
                image: format!("{target}/{}@{}", env.plan.repository, image.digest()),
                until,
                cancel: wave_stop.clone(),
            };
            let wave_stop = wave_stop.clone();
            async move {
                let out = region::promote(&run, s).await;
                if let Err(Stop::Failed(e)) = &out {
                    env.reporter.warn(Some(s.name()), "failed", e);
                    wave_stop.cancel();
                }
                (s.name().to_owned(), out)
            }
        }))
        .await;
        let failures: Vec<String> = outcomes
            .iter()
            .filter_map(|(r, o)| match o {
                Err(Stop::Failed(e)) => Some(format!("{r}: {e}")),
                _ => None,
            })
            .collect();
        let cancelled = outcomes
            .iter()
            .any(|(_, o)| matches!(o, Err(Stop::Cancelled)));
        if lost.is_cancelled() {
            finish(beat, watcher);
            return Err(Error::Failed(format!(
                "deployment {} lost the lock of {} (another process took it over, e.g. `bluegreen rollback`); stopped without touching anything further",
                env.deployment, env.plan.env
            )));
        }
        if !failures.is_empty() || cancelled {
            let interrupted = failures.is_empty();
            let reason = if interrupted {
                "interrupted".to_owned()
            } else {
                failures.join("; ")
            };
            let touched = rollback::touched(&tracker.snapshot().await);
            rep.warn(
                None,
                "rollback",
                format!(
                    "{}returning {} to the previous release",
                    if interrupted { "interrupted; " } else { "" },
                    touched.join(", ")
                ),
            );
            // The decision is made: production goes back first, one ModifyListener per touched
            // region, all at once, with the topology this run already knows. The previous task
            // sets still run at full scale (they go only after every wave), so they can take it.
            let flips = futures_util::future::join_all(
                states
                    .iter()
                    .filter(|s| {
                        touched.iter().any(|t| t == s.name()) && s.live_task_set.scale_percent > 0.0
                    })
                    .map(|s| async move {
                        (
                            s,
                            rollback::production_back(env, &s.c, &s.topo, s.live).await,
                        )
                    }),
            )
            .await;
            let mut flipped = std::collections::BTreeSet::new();
            for (s, res) in flips {
                match res {
                    Ok(()) => {
                        flipped.insert(s.name().to_owned());
                    }
                    Err(e) => rep.warn(Some(s.name()), "rollback", e),
                }
            }
            let results =
                rollback::regions(env, tracker, &touched, &env.deployment, &flipped).await;
            let broken: Vec<String> = results
                .iter()
                .filter_map(|(r, x)| x.as_ref().err().map(|e| format!("{r}: {e}")))
                .collect();
            let outcome = if broken.is_empty() {
                "rolled-back"
            } else {
                "rollback-failed"
            };
            let _ = tracker
                .update(|x| {
                    x.phase = outcome.into();
                    x.outcome = Some(outcome.into());
                    x.ended_ms = Some(lock::now_ms());
                    x.message = Some(reason.clone());
                })
                .await;
            finish(beat, watcher);
            if !broken.is_empty() {
                return Err(Error::Failed(format!(
                    "{reason}; the rollback did not finish in {}; run `bluegreen rollback -e {}` (lock kept)",
                    broken.join("; "),
                    env.plan.env
                )));
            }
            let _ = env.lock.release(&env.deployment).await;
            let msg = format!(
                "{reason}; every touched region ({}) is back on its previous release",
                touched.join(", ")
            );
            return Err(if interrupted {
                Error::Interrupted(msg)
            } else {
                Error::RolledBack(msg)
            });
        }
        if outcomes.iter().any(|(_, o)| matches!(o, Ok(Ended::Paused))) {
            paused = true;
            break;
        }
    }

    if paused {
        let _ = tracker.update(|r| r.phase = "paused".into()).await;
        finish(beat, watcher);
        env.lock
            .hold_for(&env.deployment, PAUSE_HOLD)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?;
        return Ok(result(
            env, tracker, image, &states, "paused", blobs, bytes, started,
        )
        .await);
    }

    // 3. Every wave done: the previous task sets go.
    let mut left = Vec::new();
    for s in &states {
        if let Err(e) = region::cleanup(env, tracker, s).await {
            rep.warn(Some(s.name()), "cleanup", &e);
            left.push(format!("{}: {e}", s.name()));
        }
    }
    let _ = tracker
        .update(|x| {
            x.phase = "promoted".into();
            x.outcome = Some("promoted".into());
            x.ended_ms = Some(lock::now_ms());
        })
        .await;
    finish(beat, watcher);
    let _ = env.lock.release(&env.deployment).await;
    if !left.is_empty() {
        // The release is live; only the old task sets remain. Not exit 0: promote's promise is
        // one task set per region.
        return Err(Error::Failed(format!(
            "{version} serves 100% everywhere, but removing the previous task set failed ({}); \
             it stays idle on the other colour; run `bluegreen promote {version} -e {env}` again \
             to remove it",
            left.join("; "),
            version = image.tag,
            env = env.plan.env
        )));
    }
    Ok(result(
        env, tracker, image, &states, "promoted", blobs, bytes, started,
    )
    .await)
}

async fn end_failed(env: &Env, tracker: &Tracker, message: String) -> Error {
    let _ = tracker
        .update(|x| {
            x.phase = "failed".into();
            x.outcome = Some("failed".into());
            x.ended_ms = Some(lock::now_ms());
            x.message = Some(message.clone());
        })
        .await;
    let _ = env.lock.release(&env.deployment).await;
    Error::Failed(message)
}

fn results(states: &[RegionState], record: &Record) -> BTreeMap<String, RegionResult> {
    states
        .iter()
        .map(|s| {
            let rec = record.regions.get(s.name()).cloned().unwrap_or_default();
            let on_new = rec.weight > 0;
            (
                s.name().to_owned(),
                RegionResult {
                    previous_version: s.live_release.version.clone(),
                    colour: if on_new && rec.weight == 100 {
                        s.idle()
                    } else {
                        s.live
                    },
                    phase: if rec.phase.is_empty() {
                        "live".into()
                    } else {
                        rec.phase.clone()
                    },
                    weight: rec.weight,
                },
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn result(
    env: &Env,
    tracker: &Tracker,
    image: &SourceImage,
    states: &[RegionState],
    outcome: &str,
    blobs: usize,
    bytes: u64,
    started: Instant,
) -> PromoteResult {
    let record = tracker.snapshot().await;
    PromoteResult {
        env: env.plan.env.clone(),
        deployment: env.deployment.clone(),
        version: record.version.clone(),
        digest: image.digest().to_owned(),
        outcome: outcome.into(),
        regions: results(states, &record),
        copied_blobs: blobs,
        copied_bytes: bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
    }
}
