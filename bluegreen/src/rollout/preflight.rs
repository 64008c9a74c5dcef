//! What each region looks like now, read without changing anything, and the checks that refuse
//! a promote before it starts.

use super::common::digest_of;
use super::{Env, Error};
use crate::aws::ecs::{self, Release, Service, TaskSet};
use crate::aws::elb::{self, Colour, Topology, Weights};
use crate::aws::{RegionClients, alarms};
use crate::config::RegionPlan;

/// One region as AWS reports it, with its live colour resolved.
#[derive(Debug, Clone)]
pub struct RegionState {
    pub plan: RegionPlan,
    pub c: RegionClients,
    pub topo: Topology,
    pub weights: Weights,
    /// The colour production points at before this deployment (for a first deployment, the
    /// colour with no targets that the ALB answers 503 from).
    pub live: Colour,
    pub service: Service,
    /// What production serves before this deployment; `None`: nothing yet, this is the
    /// region's first deployment.
    pub previous: Option<Live>,
    /// What the new release is made from: the live release's task definition and where it
    /// takes traffic, or for a first deployment the family Terraform registered.
    pub base: Base,
    /// Healthy targets of the live colour at the start: the new colour must reach at least this.
    pub live_healthy: usize,
    /// Other runs' task sets on the idle colour, carrying no traffic (see `inspect`).
    pub leftovers: Vec<TaskSet>,
}

/// The release production serves: its task set and what runs in it.
#[derive(Debug, Clone)]
pub struct Live {
    pub task_set: TaskSet,
    pub release: Release,
}

/// The task definition a new revision is registered from, and the container and port its task
/// set registers with the target group.
#[derive(Debug, Clone)]
pub struct Base {
    pub task_definition: String,
    pub container: String,
    pub port: i32,
}

impl RegionState {
    pub fn idle(&self) -> Colour {
        self.live.other()
    }

    pub fn name(&self) -> &str {
        &self.plan.region
    }

    /// No release serves this region yet.
    pub fn first_deployment(&self) -> bool {
        self.previous.is_none()
    }

    /// The digest the live release runs (`…@sha256:…`), if pinned by digest.
    pub fn live_digest(&self) -> Option<&str> {
        digest_of(&self.previous.as_ref()?.release.image)
    }

    /// The live release's version, if it says one.
    pub fn live_version(&self) -> Option<&str> {
        self.previous.as_ref()?.release.version.as_deref()
    }
}

/// Reads one region. `previous` is the live colour a journal recorded for an unfinished
/// deployment (its weights may be split); without it, exactly one colour must carry 100%.
pub async fn inspect(
    env: &Env,
    plan: &RegionPlan,
    previous: Option<Colour>,
    deployment: &str,
) -> Result<RegionState, String> {
    let c = env.clients.region(&plan.region).clone();
    let region = &plan.region;
    let topo = elb::discover(&c, plan).await.map_err(|e| e.to_string())?;
    elb::check_test_route(&topo, plan).map_err(|e| e.to_string())?;
    let weights = elb::weights(&c, &topo, plan)
        .await
        .map_err(|e| e.to_string())?;
    if weights.blue + weights.green != 100 {
        return Err(format!(
            "the production listener on port {} in {region} forwards with weights {weights}, which \
             do not sum to 100; bluegreen never leaves a listener so, so someone changed it by hand: \
             set it back to 100/0 on the colour that should serve, then retry",
            plan.listener_port
        ));
    }
    let live = match previous.or(weights.live()) {
        Some(colour) => colour,
        None => {
            return Err(format!(
                "both colours carry production traffic in {region} ({weights}); a deployment is \
                 unfinished: run `bluegreen rollback -e {env}` (or `bluegreen continue -e {env}`)",
                env = env.plan.env
            ));
        }
    };
    let service = ecs::describe(&c, &plan.cluster, &plan.service)
        .await
        .map_err(|e| e.to_string())?;
    let idle_tg = topo.target_group(live.other()).to_owned();
    // Task sets on the idle colour from other runs (a run that stopped during cleanup, or a
    // manual one): they carry no traffic, and the deployment removes them under its lock.
    let leftovers: Vec<ecs::TaskSet> = service
        .task_sets
        .iter()
        .filter(|t| {
            t.target_group.as_deref() == Some(idle_tg.as_str())
                && t.external_id.as_deref() != Some(deployment)
                && weights.of(live.other()) == 0
        })
        .cloned()
        .collect();
    let (previous, base, live_healthy) = what_serves(&c, plan, &topo, &service, live, env).await?;
    Ok(RegionState {
        plan: plan.clone(),
        c,
        topo,
        weights,
        live,
        service,
        previous,
        base,
        live_healthy,
        leftovers,
    })
}

/// What production serves on `live` (`None`: no release yet), what the new release is made
/// from, and how many healthy targets the live colour has.
async fn what_serves(
    c: &RegionClients,
    plan: &RegionPlan,
    topo: &Topology,
    service: &Service,
    live: Colour,
    env: &Env,
) -> Result<(Option<Live>, Base, usize), String> {
    let region = &plan.region;
    let live_tg = topo.target_group(live);
    let previous = match service.task_set_on(live_tg).cloned() {
        Some(task_set) => {
            let release = ecs::release_of(c, &task_set.task_definition, plan.container.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            Some(Live { task_set, release })
        }
        None => None,
    };
    let health = elb::target_health(c, live_tg)
        .await
        .map_err(|e| e.to_string())?;
    let base = match &previous {
        Some(l) => Base {
            task_definition: l.task_set.task_definition.clone(),
            container: l
                .task_set
                .container_name
                .clone()
                .unwrap_or_else(|| l.release.container.clone()),
            port: l.task_set.container_port.or(l.release.port).unwrap_or(8080),
        },
        None if health.registered() > 0 => {
            return Err(format!(
                "no task set of the ECS service {} serves the live {live} target group in \
                 {region}, yet it has {} registered target(s): something outside bluegreen serves \
                 production there, so this is no first deployment; deregister those targets or \
                 check the service (`bluegreen status -e {}`)",
                plan.service,
                health.registered(),
                env.plan.env
            ));
        }
        None => first_deployment_base(c, plan, service, env).await?,
    };
    Ok((previous, base, health.healthy))
}

/// A region with no task set on the colour production points at has no release yet (a fresh
/// `terraform apply`): its first one is registered from the family Terraform made, and runs
/// where the service's tags say.
async fn first_deployment_base(
    c: &RegionClients,
    plan: &RegionPlan,
    service: &Service,
    env: &Env,
) -> Result<Base, String> {
    let region = &plan.region;
    let Some(family) = &plan.task_family else {
        return Err(format!(
            "no live release in {region} (no task set serves production): a first deployment \
             needs task_family in [regions.{region}] of {}, the task definition family \
             terraform/modules/region registers",
            env.plan.file.display()
        ));
    };
    if !service.has_placement() {
        return Err(format!(
            "no live release in {region}, and the ECS service {} has no {} tag to say which \
             subnets a first task set runs in; apply terraform/modules/region (it tags the \
             service with {}, {}, {} and {})",
            plan.service,
            ecs::SUBNETS_TAG,
            ecs::SUBNETS_TAG,
            ecs::SECURITY_GROUPS_TAG,
            ecs::PUBLIC_IP_TAG,
            ecs::LAUNCH_TYPE_TAG
        ));
    }
    let template = ecs::release_of(c, family, plan.container.as_deref())
        .await
        .map_err(|e| format!("the first deployment's task definition family {family}: {e}"))?;
    let port = template.port.ok_or_else(|| {
        format!(
            "container {} of {} has no port mapping, so its task set cannot register with a \
             target group; add portMappings to the task definition",
            template.container, template.task_definition
        )
    })?;
    Ok(Base {
        task_definition: template.task_definition,
        container: template.container,
        port,
    })
}

/// Every region of the plan, read in parallel; all problems are reported together.
pub async fn inspect_all(
    env: &Env,
    previous: &std::collections::BTreeMap<String, Colour>,
    deployment: &str,
) -> Result<Vec<RegionState>, Error> {
    let results = futures_util::future::join_all(env.plan.regions.values().map(|p| async move {
        (
            p.region.clone(),
            inspect(env, p, previous.get(&p.region).copied(), deployment).await,
        )
    }))
    .await;
    let mut states = Vec::new();
    let mut problems = Vec::new();
    for (region, r) in results {
        match r {
            Ok(s) => states.push(s),
            Err(e) => problems.push(format!("{region}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(states)
    } else {
        Err(Error::Refused(format!(
            "preflight refused; nothing was changed:\n  {}",
            problems.join("\n  ")
        )))
    }
}

/// Alarms already in ALARM before the start (they would fail the gate at once, and an alarm stuck
/// in ALARM must not silently block deploying the fix: the operator decides with the override).
pub async fn alarms_firing(states: &[RegionState]) -> Result<Vec<String>, Error> {
    let mut firing = Vec::new();
    for s in states {
        let found = alarms::firing(&s.c, &s.plan.alarms)
            .await
            .map_err(|e| Error::Refused(format!("preflight refused; nothing was changed: {e}")))?;
        firing.extend(found.into_iter().map(|a| {
            format!(
                "{} in {} ({})",
                a.name,
                s.plan.region,
                a.reason.unwrap_or_default()
            )
        }));
    }
    Ok(firing)
}

/// What production serves in one region now, if it is settled on one colour: the task set on
/// that colour and its image. `None` when the weights are split or no task set serves it.
pub async fn serving(env: &Env, plan: &RegionPlan) -> Result<Option<(TaskSet, String)>, String> {
    let c = env.clients.region(&plan.region);
    let topo = elb::discover(c, plan).await.map_err(|e| e.to_string())?;
    let weights = elb::weights(c, &topo, plan)
        .await
        .map_err(|e| e.to_string())?;
    let Some(live) = weights.live() else {
        return Ok(None);
    };
    let service = ecs::describe(c, &plan.cluster, &plan.service)
        .await
        .map_err(|e| e.to_string())?;
    let Some(ts) = service.task_set_on(topo.target_group(live)).cloned() else {
        return Ok(None);
    };
    let release = ecs::release_of(c, &ts.task_definition, plan.container.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((ts, release.image)))
}
