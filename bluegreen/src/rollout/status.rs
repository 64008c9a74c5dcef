//! `bluegreen status` (what runs where now), `bluegreen plan` (what promote would do) and
//! `bluegreen history` — all read-only.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::common::{digest_of, short_digest, source_image};
use super::decide::paused;
use super::{Env, Error, preflight};
use crate::aws::ecs;
use crate::aws::elb::{self, Colour, HealthSummary, Weights};
use crate::aws::journal::{Outcome, Record};
use crate::aws::lock::{self, Holder};

#[derive(Debug, Clone, Serialize)]
pub struct TaskSetStatus {
    pub id: String,
    pub colour: Option<Colour>,
    pub status: String,
    pub version: Option<String>,
    pub digest: Option<String>,
    pub running: i32,
    pub desired: i32,
    pub steady: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionStatus {
    pub region: String,
    /// The production endpoint (`http(s)://<alb>:<port><probe_path>`).
    pub endpoint: Option<String>,
    pub live: Option<Colour>,
    pub weights: Option<Weights>,
    /// The colour the test route (the test listener's header rule) forwards to.
    pub test_route: Option<Colour>,
    /// Production points at a colour no task set serves: the region has no release (a fresh
    /// `terraform apply`, or a rolled-back first release) and its ALB answers 503.
    pub no_release: bool,
    pub task_sets: Vec<TaskSetStatus>,
    pub health: BTreeMap<String, HealthSummary>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub env: String,
    pub account: String,
    pub lock: Option<Holder>,
    pub latest: Option<Record>,
    pub regions: Vec<RegionStatus>,
    /// What an operator should run next, when the environment is not settled.
    pub next: Option<String>,
}

/// Releases read from task definitions, by task definition ARN: a revision never changes, so
/// `status --watch` reads each once.
pub type Releases = std::sync::Mutex<BTreeMap<String, ecs::Release>>;

async fn release(
    c: &crate::aws::RegionClients,
    td: &str,
    container: Option<&str>,
    releases: &Releases,
) -> Option<ecs::Release> {
    let known = releases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(td)
        .cloned();
    if known.is_some() {
        return known;
    }
    // An error is not cached: the next look asks again.
    let r = ecs::release_of(c, td, container).await.ok()?;
    releases
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(td.to_owned(), r.clone());
    Some(r)
}

async fn region_status(
    env: &Env,
    plan: &crate::config::RegionPlan,
    releases: &Releases,
) -> RegionStatus {
    let mut out = RegionStatus {
        region: plan.region.clone(),
        endpoint: None,
        live: None,
        weights: None,
        test_route: None,
        no_release: false,
        task_sets: Vec::new(),
        health: BTreeMap::new(),
        error: None,
    };
    let c = env.clients.region(&plan.region);
    let result: Result<(), String> = async {
        let topo = elb::discover(c, plan).await.map_err(|e| e.to_string())?;
        out.endpoint = Some(super::gate::url(
            &topo.dns_name,
            plan.listener_port,
            &plan.probe_path,
        ));
        let w = elb::weights(c, &topo, plan)
            .await
            .map_err(|e| e.to_string())?;
        out.weights = Some(w);
        out.live = w.live();
        out.test_route = elb::test_weights(c, &topo, plan)
            .await
            .ok()
            .flatten()
            .and_then(|t| t.live());
        for colour in [Colour::Blue, Colour::Green] {
            let h = elb::target_health(c, topo.target_group(colour))
                .await
                .map_err(|e| e.to_string())?;
            out.health.insert(colour.as_str().into(), h);
        }
        let svc = ecs::describe(c, &plan.cluster, &plan.service)
            .await
            .map_err(|e| e.to_string())?;
        for ts in &svc.task_sets {
            let release =
                release(c, &ts.task_definition, plan.container.as_deref(), releases).await;
            out.task_sets.push(TaskSetStatus {
                id: ts.id.clone(),
                colour: ts.target_group.as_deref().and_then(|t| topo.colour_of(t)),
                status: ts.status.clone(),
                version: release.as_ref().and_then(|r| r.version.clone()),
                digest: release
                    .as_ref()
                    .and_then(|r| digest_of(&r.image).map(str::to_owned)),
                running: ts.running,
                desired: ts.computed_desired,
                steady: ts.steady,
            });
        }
        out.task_sets.sort_by_key(|t| t.colour.map(|c| c.as_str()));
        out.no_release = out
            .live
            .is_some_and(|live| svc.task_set_on(topo.target_group(live)).is_none());
        Ok(())
    }
    .await;
    out.error = result.err();
    out
}

pub async fn status(env: &Env) -> Result<Status, Error> {
    status_with(env, &Releases::default()).await
}

/// `status`, reading each task definition's release from `releases` when it is there.
pub async fn status_with(env: &Env, releases: &Releases) -> Result<Status, Error> {
    // Every region, the lock and the journal at once.
    let (regions, lock, latest) = tokio::join!(
        futures_util::future::join_all(
            env.plan
                .regions
                .values()
                .map(|p| region_status(env, p, releases))
        ),
        env.lock.holder(),
        env.journal.history(1),
    );
    let lock = lock.map_err(|e| Error::Failed(e.to_string()))?;
    let latest = latest.map_err(|e| Error::Failed(e.to_string()))?.pop();
    let next = next_step(
        &env.plan.env,
        lock.as_ref(),
        latest.as_ref(),
        &regions,
        lock::now_ms(),
    );
    Ok(Status {
        env: env.plan.env.clone(),
        account: env.plan.account_id.clone(),
        lock,
        latest,
        regions,
        next,
    })
}

/// The command that settles an environment left unsettled, from the journal's latest record, the
/// lock and what the regions' listeners say; None when it is settled or a deployment is running.
fn next_step(
    env: &str,
    lock: Option<&Holder>,
    latest: Option<&Record>,
    regions: &[RegionStatus],
    now_ms: u64,
) -> Option<String> {
    if let Some(r) = latest {
        match r.outcome {
            Some(Outcome::RollbackFailed) => {
                return Some(format!(
                    "`bluegreen rollback -e {env}`: the rollback of deployment {} did not finish",
                    r.id
                ));
            }
            None if paused(r) => {
                return Some(format!(
                    "`bluegreen continue -e {env}` finishes deployment {} of {}; `bluegreen rollback -e {env}` aborts it",
                    r.id, r.version
                ));
            }
            None => {
                let running =
                    lock.is_some_and(|h| h.deployment == r.id && !h.kept && !h.expired(now_ms));
                if running {
                    return None;
                }
                return Some(format!(
                    "deployment {} of {} stopped at phase {}: `bluegreen rollback -e {env}` puts every region back; `bluegreen promote {} -e {env}` rolls back and starts again",
                    r.id, r.version, r.phase, r.version
                ));
            }
            Some(_) => {}
        }
    }
    let split: Vec<&str> = regions
        .iter()
        .filter(|r| r.live.is_none() && r.weights.is_some())
        .map(|r| r.region.as_str())
        .collect();
    (!split.is_empty()).then(|| {
        format!(
            "both colours carry production traffic in {} with no deployment running: set the production listener back to 100% on the colour that should serve",
            split.join(", ")
        )
    })
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "environment {} (account {})", self.env, self.account)?;
        match &self.lock {
            Some(h) if h.expired(lock::now_ms()) => writeln!(f, "lock: expired, last held by {h}")?,
            Some(h) => writeln!(f, "lock: held by {h}")?,
            None => writeln!(f, "lock: free")?,
        }
        if let Some(r) = &self.latest {
            writeln!(
                f,
                "last deployment: {} {} of {} — {}",
                r.id,
                r.kind,
                r.version,
                r.outcome
                    .map_or(format!("unfinished, at {}", r.phase), |o| o.to_string())
            )?;
        }
        if let Some(next) = &self.next {
            writeln!(f, "next: {next}")?;
        }
        for r in &self.regions {
            writeln!(f)?;
            let live = match (r.live, r.weights) {
                (Some(c), _) => format!("live {c}"),
                (None, Some(w)) => format!("SPLIT {w}"),
                (None, None) => "unknown".into(),
            };
            writeln!(
                f,
                "{}: {live}; test route on {}",
                r.region,
                r.test_route.map_or("?".into(), |c| c.to_string())
            )?;
            if r.no_release {
                writeln!(
                    f,
                    "  no release: production points at {}, which no task set serves, so the ALB \
                     answers 503 (a first deployment puts the release on the other colour)",
                    r.live.map_or("?".into(), |c| c.to_string())
                )?;
            }
            if let Some(e) = &r.error {
                writeln!(f, "  error: {e}")?;
                continue;
            }
            for ts in &r.task_sets {
                writeln!(
                    f,
                    "  {:<6} {:<8} {:<10} {:<21} {}/{} running{}  {}",
                    ts.colour.map_or("?".into(), |c| c.to_string()),
                    ts.status,
                    ts.version.as_deref().unwrap_or("?"),
                    ts.digest.as_deref().map_or("?", short_digest),
                    ts.running,
                    ts.desired,
                    if ts.steady { ", steady" } else { "" },
                    ts.id
                )?;
            }
            for (colour, h) in &r.health {
                writeln!(f, "  {colour:<6} targets: {h}")?;
            }
        }
        Ok(())
    }
}

/// The changes promote would make, in order, from a read-only preflight.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub env: String,
    pub version: String,
    pub digest: String,
    pub steps: Vec<String>,
    /// The longest the promote may run (`Plan::worst_case`), for sizing a CI session.
    pub worst_case_seconds: u64,
    /// Each region's settings as resolved from the file (`[defaults]` filled in).
    pub regions: BTreeMap<String, String>,
}

/// Each region's resolved settings, for `validate` and `plan`.
fn resolved_regions(p: &crate::config::Plan) -> BTreeMap<String, String> {
    p.regions
        .iter()
        .map(|(r, plan)| (r.clone(), plan.describe()))
        .collect()
}

fn write_regions(f: &mut fmt::Formatter<'_>, regions: &BTreeMap<String, String>) -> fmt::Result {
    writeln!(f, "  regions ([defaults] filled in):")?;
    for (r, line) in regions {
        writeln!(f, "    {r}: {line}")?;
    }
    Ok(())
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: promote {} ({}) to {}",
            self.version, self.digest, self.env
        )?;
        write_regions(f, &self.regions)?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(f, "{:>3}. {s}", i + 1)?;
        }
        writeln!(
            f,
            "worst case: {} (every wave's ready timeout, test traffic and bakes, plus the copy and cleanup)",
            humantime::format_duration(std::time::Duration::from_secs(self.worst_case_seconds))
        )
    }
}

pub async fn plan(env: &Env, version: &str, allow_findings: bool) -> Result<PlanReport, Error> {
    let image = source_image(env, version, allow_findings).await?;
    let states = preflight::inspect_all(env, &BTreeMap::new(), &env.deployment).await?;
    let p = &env.plan;
    let mut steps = vec![
        format!(
            "acquire the lock of {} ({} in {})",
            p.env, p.lock.table, p.lock.region
        ),
        format!(
            "copy {}:{version} ({} platform(s)) from {}/{} to {} in {}",
            p.source.repository,
            image.children.len().max(1),
            p.source.account_id,
            p.source.region,
            p.repository,
            p.waves.concat().join(", ")
        ),
    ];
    for (i, wave) in p.waves.iter().enumerate() {
        steps.push(format!("wave {}: {}, in parallel", i + 1, wave.join(", ")));
        for r in wave {
            let s = states
                .iter()
                .find(|s| s.name() == r)
                .expect("inspected every region");
            // Read-only: the registry's address comes with an ECR token.
            let host =
                crate::aws::registry::Registry::from_ecr(&s.c.ecr, r, env.registry_http.clone())
                    .await
                    .map_or_else(|_| "<registry>".to_owned(), |reg| reg.host().to_owned());
            let image_ref = format!("{host}/{}@{}", p.repository, short_digest(image.digest()));
            steps.extend(region_steps(p, s, &image_ref, version));
        }
    }
    steps.push(
        "every region: delete the previous task set; journal promoted; release the lock".into(),
    );
    Ok(PlanReport {
        env: p.env.clone(),
        version: version.to_owned(),
        digest: image.digest().to_owned(),
        steps,
        worst_case_seconds: p.worst_case().as_secs(),
        regions: resolved_regions(p),
    })
}

/// What promote does in one region, in order (a first deployment says so and has one step).
fn region_steps(
    p: &crate::config::Plan,
    s: &preflight::RegionState,
    image_ref: &str,
    version: &str,
) -> Vec<String> {
    let (r, idle, st) = (s.name(), s.idle(), &p.strategy);
    let d = |x| humantime::format_duration(x).to_string();
    let from = s
        .base
        .task_definition
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let live = match &s.previous {
        Some(l) => format!(
            "live: {} on {}",
            l.release.version.as_deref().unwrap_or("?"),
            s.live
        ),
        None => format!(
            "no live release: first deployment; production points at {}, which has no targets",
            s.live
        ),
    };
    let mut steps = vec![
        format!(
            "{r}: register a new revision of {from} with image {image_ref} and APP_VERSION={version} ({live})"
        ),
        format!(
            "{r}: create a task set on {idle} at 100%; wait up to {} for it to run and be healthy",
            d(st.ready_timeout)
        ),
        format!(
            "{r}: point the test route (:{} with the {} header) at {idle}; probe {} for {version}",
            s.plan.test_listener_port, p.test_traffic.header, s.plan.probe_path
        ),
    ];
    if s.first_deployment() {
        steps.push(format!(
            "{r}: production 100% on {idle} in one step (first deployment), bake {} with the gate every {}",
            d(st.final_bake),
            d(st.poll)
        ));
    } else {
        let judged = analysis_plan(&st.analysis, s.live);
        for &step in &st.steps {
            let bake = if step == 100 { st.final_bake } else { st.bake };
            steps.push(format!(
                "{r}: production {step}% on {idle}, bake {} with the gate every {}{judged}",
                d(bake),
                d(st.poll)
            ));
        }
    }
    steps.push(format!("{r}: make the {idle} task set primary"));
    steps
}

/// How a bake's traffic analysis is described in a plan step ("" when it is off).
fn analysis_plan(a: &crate::config::Analysis, previous: crate::aws::elb::Colour) -> String {
    if !a.enabled {
        return String::new();
    }
    let more = if a.max_extension.is_zero() {
        String::new()
    } else {
        format!(
            "up to {} more, then ",
            humantime::format_duration(a.max_extension)
        )
    };
    format!(
        " and the traffic analysis against {previous} (ALB metrics in {} periods; with fewer than \
         {} requests a colour: {more}{})",
        humantime::format_duration(a.period),
        a.min_requests,
        a.on_inconclusive.as_str()
    )
}

/// `bluegreen validate`: the environment file as bluegreen resolved it, read without AWS.
#[derive(Debug, Clone, Serialize)]
pub struct Validated {
    pub env: String,
    pub file: String,
    pub account: String,
    pub waves: Vec<Vec<String>>,
    pub steps: Vec<u8>,
    pub test_header: String,
    /// The longest a promote may run (`Plan::worst_case`): what a CI session must cover.
    pub worst_case_seconds: u64,
    /// Each region's settings as resolved from the file (`[defaults]` filled in).
    pub regions: BTreeMap<String, String>,
}

impl Validated {
    pub fn of(p: &crate::config::Plan) -> Self {
        Self {
            env: p.env.clone(),
            file: p.file.display().to_string(),
            account: p.account_id.clone(),
            waves: p.waves.clone(),
            steps: p.strategy.steps.clone(),
            test_header: p.test_traffic.header.clone(),
            worst_case_seconds: p.worst_case().as_secs(),
            regions: resolved_regions(p),
        }
    }
}

impl fmt::Display for Validated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: valid ({} in account {})",
            self.file, self.env, self.account
        )?;
        for (i, w) in self.waves.iter().enumerate() {
            writeln!(f, "  wave {}: {}", i + 1, w.join(", "))?;
        }
        let steps: Vec<String> = self.steps.iter().map(|s| format!("{s}%")).collect();
        writeln!(f, "  steps: {}", steps.join(", "))?;
        writeln!(f, "  test traffic: the {} header", self.test_header)?;
        write_regions(f, &self.regions)?;
        writeln!(
            f,
            "  worst case of a promote: {}",
            humantime::format_duration(std::time::Duration::from_secs(self.worst_case_seconds))
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub env: String,
    pub deployments: Vec<Record>,
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.deployments.is_empty() {
            return writeln!(f, "{}: no deployments yet", self.env);
        }
        for r in &self.deployments {
            writeln!(
                f,
                "{}  {:<8} {:<12} {:<12} {}{}",
                lock::rfc3339(r.started_ms),
                r.kind,
                r.version,
                r.outcome.map_or("unfinished".to_owned(), |o| o.to_string()),
                r.id,
                r.message
                    .as_deref()
                    .map_or(String::new(), |m| format!("  ({m})"))
            )?;
        }
        Ok(())
    }
}

pub async fn history(env: &Env, limit: i32) -> Result<History, Error> {
    Ok(History {
        env: env.plan.env.clone(),
        deployments: env
            .journal
            .history(limit)
            .await
            .map_err(|e| Error::Failed(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::journal::Phase;

    fn region(name: &str, blue: i32, green: i32) -> RegionStatus {
        let weights = Weights { blue, green };
        RegionStatus {
            region: name.into(),
            endpoint: None,
            live: weights.live(),
            weights: Some(weights),
            test_route: None,
            no_release: false,
            task_sets: Vec::new(),
            health: BTreeMap::new(),
            error: None,
        }
    }

    fn record(phase: Phase, outcome: Option<Outcome>) -> Record {
        Record {
            id: "d1".into(),
            version: "v1.2.0".into(),
            phase,
            outcome,
            ..Record::default()
        }
    }

    fn holder(deployment: &str, expires_ms: u64) -> Holder {
        Holder {
            deployment: deployment.into(),
            subject: deployment.into(),
            kept: false,
            owner: "ci".into(),
            version: "v1.2.0".into(),
            acquired_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn a_settled_environment_needs_nothing() {
        let settled = [region("us-east-1", 100, 0)];
        let done = record(Phase::Promoted, Some(Outcome::Promoted));
        assert_eq!(next_step("prod", None, Some(&done), &settled, 10), None);
        assert_eq!(next_step("prod", None, None, &settled, 10), None);
    }

    #[test]
    fn a_running_deployment_is_left_alone() {
        let mid = [region("us-east-1", 50, 50)];
        let running = record(Phase::Deploying, None);
        let lock = holder("d1", 20);
        assert_eq!(
            next_step("prod", Some(&lock), Some(&running), &mid, 10),
            None
        );
    }

    #[test]
    fn an_unsettled_environment_names_the_command() {
        let mid = [region("us-east-1", 50, 50)];
        let cases = [
            (
                record(Phase::RollbackFailed, Some(Outcome::RollbackFailed)),
                None,
                "`bluegreen rollback -e prod`: the rollback of deployment d1 did not finish",
            ),
            (
                record(Phase::Paused, None),
                Some(holder("d1", 20)),
                "`bluegreen continue -e prod` finishes deployment d1",
            ),
            (
                record(Phase::Deploying, None),
                Some(holder("d1", 5)),
                "stopped at phase deploying: `bluegreen rollback -e prod` puts every region back",
            ),
            (
                record(Phase::Deploying, None),
                None,
                "`bluegreen promote v1.2.0 -e prod` rolls back and starts again",
            ),
            (
                record(Phase::Promoted, Some(Outcome::Promoted)),
                None,
                "both colours carry production traffic in us-east-1",
            ),
            (
                record(Phase::Cleaning, None),
                Some(Holder {
                    kept: true,
                    ..holder("d1", 20)
                }),
                "deployment d1 of v1.2.0 stopped at phase cleaning",
            ),
        ];
        for (latest, lock, says) in cases {
            let next = next_step("prod", lock.as_ref(), Some(&latest), &mid, 10)
                .unwrap_or_else(|| panic!("{latest:?}: no next step"));
            assert!(next.contains(says), "{latest:?}: {next}");
        }
    }
}
