//! The ECS side of a region: the service (EXTERNAL deployment controller) and its task sets, one
//! per live release, and task definitions cloned with a new image pinned by digest.

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DeploymentControllerType, KeyValuePair, LaunchType,
    LoadBalancer, NetworkConfiguration, Scale, ScaleUnit, ServiceField, StabilityStatus,
};
use serde::Serialize;
use thiserror::Error;

use super::{CallError, RegionClients};

/// The environment variable through which the app learns its release.
pub const VERSION_VAR: &str = "APP_VERSION";

/// The service tags that say where a region's first task set runs (terraform/modules/region
/// sets them): with the EXTERNAL controller the network lives on task sets, and before the first
/// release there is none to copy it from. Tag values cannot hold commas: ids are space-separated.
pub const SUBNETS_TAG: &str = "bluegreen:subnets";
pub const SECURITY_GROUPS_TAG: &str = "bluegreen:security-groups";
pub const PUBLIC_IP_TAG: &str = "bluegreen:assign-public-ip";
pub const LAUNCH_TYPE_TAG: &str = "bluegreen:launch-type";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSet {
    pub arn: String,
    pub id: String,
    /// PRIMARY, ACTIVE or DRAINING.
    pub status: String,
    pub task_definition: String,
    pub target_group: Option<String>,
    pub container_name: Option<String>,
    pub container_port: Option<i32>,
    pub scale_percent: f64,
    pub computed_desired: i32,
    pub running: i32,
    pub pending: i32,
    pub steady: bool,
    /// The deployment that created it (bluegreen sets its id here).
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub arn: String,
    pub desired_count: i32,
    pub task_sets: Vec<TaskSet>,
    #[serde(skip)]
    network: Option<aws_sdk_ecs::types::NetworkConfiguration>,
    #[serde(skip)]
    launch_type: Option<aws_sdk_ecs::types::LaunchType>,
}

/// Where a task set runs: from the service's task sets, else from its tags (see `SUBNETS_TAG`).
fn placement(
    svc: &aws_sdk_ecs::types::Service,
    sets: &[aws_sdk_ecs::types::TaskSet],
) -> (Option<NetworkConfiguration>, Option<LaunchType>) {
    if let Some(t) = sets.first() {
        return (t.network_configuration().cloned(), t.launch_type().cloned());
    }
    let tag = |k: &str| {
        svc.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_owned)
    };
    let ids = |k: &str| -> Vec<String> {
        tag(k)
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let subnets = ids(SUBNETS_TAG);
    let network = (!subnets.is_empty()).then(|| {
        let public = tag(PUBLIC_IP_TAG).is_some_and(|v| v.eq_ignore_ascii_case("ENABLED"));
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(subnets))
            .set_security_groups(Some(ids(SECURITY_GROUPS_TAG)))
            .assign_public_ip(if public {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .expect("subnets are set");
        NetworkConfiguration::builder()
            .awsvpc_configuration(vpc)
            .build()
    });
    let launch = Some(LaunchType::from(
        tag(LAUNCH_TYPE_TAG).as_deref().unwrap_or("FARGATE"),
    ));
    (network, launch)
}

impl Service {
    /// Whether a new task set knows where to run (a network configuration from a task set or
    /// from the service's tags).
    pub fn has_placement(&self) -> bool {
        self.network.is_some()
    }

    /// The task set serving `target_group`, preferring the PRIMARY one.
    pub fn task_set_on(&self, target_group: &str) -> Option<&TaskSet> {
        let mut on: Vec<&TaskSet> = self
            .task_sets
            .iter()
            .filter(|t| t.target_group.as_deref() == Some(target_group))
            .collect();
        on.sort_by_key(|t| t.status != "PRIMARY");
        on.first().copied()
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EcsError {
    #[error(
        "service {service} of cluster {cluster} does not exist in {region}; check cluster/service in the environment file, or apply terraform/"
    )]
    MissingService {
        region: String,
        cluster: String,
        service: String,
    },
    #[error(
        "service {service} in {region} uses the {controller} deployment controller; bluegreen needs EXTERNAL (terraform/modules/region sets it)"
    )]
    NotExternal {
        region: String,
        service: String,
        controller: String,
    },
    #[error(
        "task definition {task_definition} in {region} has {count} containers and the environment file names none; set `container` for {region}"
    )]
    WhichContainer {
        region: String,
        task_definition: String,
        count: usize,
    },
    #[error("task definition {task_definition} in {region} has no container named {container}")]
    NoSuchContainer {
        region: String,
        task_definition: String,
        container: String,
    },
    #[error(
        "task set {task_set} in {region} did not become ready ({waited} waited): {running} of {desired} tasks running; {detail}"
    )]
    NotReady {
        region: String,
        task_set: String,
        waited: String,
        running: i32,
        desired: i32,
        detail: String,
    },
    #[error(transparent)]
    Call(#[from] CallError),
}

fn task_set_of(t: &aws_sdk_ecs::types::TaskSet) -> TaskSet {
    let lb = t.load_balancers().first();
    TaskSet {
        arn: t.task_set_arn().unwrap_or_default().to_owned(),
        id: t.id().unwrap_or_default().to_owned(),
        status: t.status().unwrap_or_default().to_owned(),
        task_definition: t.task_definition().unwrap_or_default().to_owned(),
        target_group: lb.and_then(|l| l.target_group_arn()).map(str::to_owned),
        container_name: lb.and_then(|l| l.container_name()).map(str::to_owned),
        container_port: lb.and_then(|l| l.container_port()),
        scale_percent: t.scale().map_or(0.0, |s| s.value()),
        computed_desired: t.computed_desired_count(),
        running: t.running_count(),
        pending: t.pending_count(),
        steady: t.stability_status() == Some(&StabilityStatus::SteadyState),
        external_id: t.external_id().filter(|s| !s.is_empty()).map(str::to_owned),
    }
}

/// The service and all its task sets.
pub async fn describe(
    c: &RegionClients,
    cluster: &str,
    service: &str,
) -> Result<Service, EcsError> {
    let out = c
        .ecs
        .describe_services()
        .cluster(cluster)
        .services(service)
        .include(ServiceField::Tags)
        .send()
        .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            let err = CallError::new("DescribeServices", &c.region, &e);
            if err.is("ClusterNotFoundException") {
                return Err(EcsError::MissingService {
                    region: c.region.clone(),
                    cluster: cluster.into(),
                    service: service.into(),
                });
            }
            return Err(err.into());
        }
    };
    let Some(svc) = out
        .services()
        .iter()
        .find(|s| s.status() != Some("INACTIVE"))
    else {
        return Err(EcsError::MissingService {
            region: c.region.clone(),
            cluster: cluster.into(),
            service: service.into(),
        });
    };
    let controller = svc
        .deployment_controller()
        .map(|d| d.r#type().clone())
        .unwrap_or(DeploymentControllerType::Ecs);
    if controller != DeploymentControllerType::External {
        return Err(EcsError::NotExternal {
            region: c.region.clone(),
            service: service.into(),
            controller: controller.as_str().to_owned(),
        });
    }
    let sets = c
        .ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeTaskSets", &c.region, &e))?;
    let raw = sets.task_sets();
    let (network, launch_type) = placement(svc, raw);
    Ok(Service {
        arn: svc.service_arn().unwrap_or_default().to_owned(),
        desired_count: svc.desired_count(),
        task_sets: raw.iter().map(task_set_of).collect(),
        network,
        launch_type,
    })
}

/// The image and version of `container` (or the only container) in a task definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub task_definition: String,
    pub container: String,
    pub image: String,
    pub version: Option<String>,
    /// The container's first port mapping: the port a first task set registers with its
    /// target group.
    pub port: Option<i32>,
}

pub async fn release_of(
    c: &RegionClients,
    task_definition: &str,
    container: Option<&str>,
) -> Result<Release, EcsError> {
    let td = describe_task_definition(c, task_definition).await?;
    let def = pick_container(c, task_definition, td.container_definitions(), container)?;
    Ok(Release {
        task_definition: td
            .task_definition_arn()
            .unwrap_or(task_definition)
            .to_owned(),
        container: def.name().unwrap_or_default().to_owned(),
        image: def.image().unwrap_or_default().to_owned(),
        version: def
            .environment()
            .iter()
            .find(|kv| kv.name() == Some(VERSION_VAR))
            .and_then(|kv| kv.value())
            .map(str::to_owned),
        port: def.port_mappings().first().and_then(|m| m.container_port()),
    })
}

async fn describe_task_definition(
    c: &RegionClients,
    arn: &str,
) -> Result<aws_sdk_ecs::types::TaskDefinition, EcsError> {
    let out = c
        .ecs
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeTaskDefinition", &c.region, &e))?;
    Ok(out.task_definition().cloned().ok_or_else(|| CallError {
        call: "DescribeTaskDefinition",
        region: c.region.clone(),
        code: None,
        message: format!("no task definition {arn} in the answer"),
    })?)
}

fn pick_container<'a>(
    c: &RegionClients,
    task_definition: &str,
    defs: &'a [aws_sdk_ecs::types::ContainerDefinition],
    name: Option<&str>,
) -> Result<&'a aws_sdk_ecs::types::ContainerDefinition, EcsError> {
    match name {
        Some(n) => {
            defs.iter()
                .find(|d| d.name() == Some(n))
                .ok_or_else(|| EcsError::NoSuchContainer {
                    region: c.region.clone(),
                    task_definition: task_definition.into(),
                    container: n.into(),
                })
        }
        None if defs.len() == 1 => Ok(&defs[0]),
        None => Err(EcsError::WhichContainer {
            region: c.region.clone(),
            task_definition: task_definition.into(),
            count: defs.len(),
        }),
    }
}

/// Registers a new revision of `live` that differs only in the container's image (pinned as
/// `image`, e.g. `repo@sha256:…`) and its `APP_VERSION`. Returns the new revision's ARN.
pub async fn clone_task_definition(
    c: &RegionClients,
    live: &str,
    container: Option<&str>,
    image: &str,
    version: &str,
) -> Result<String, EcsError> {
    let td = describe_task_definition(c, live).await?;
    let target = pick_container(c, live, td.container_definitions(), container)?
        .name()
        .map(str::to_owned);
    let defs: Vec<_> = td
        .container_definitions()
        .iter()
        .map(|d| {
            if d.name().map(str::to_owned) != target {
                return d.clone();
            }
            let mut env: Vec<KeyValuePair> = d
                .environment()
                .iter()
                .filter(|kv| kv.name() != Some(VERSION_VAR))
                .cloned()
                .collect();
            env.push(
                KeyValuePair::builder()
                    .name(VERSION_VAR)
                    .value(version)
                    .build(),
            );
            let mut d = d.clone();
            d.image = Some(image.to_owned());
            d.environment = Some(env);
            d
        })
        .collect();
    let out = c
        .ecs
        .register_task_definition()
        .family(td.family().unwrap_or_default())
        .set_task_role_arn(td.task_role_arn().map(str::to_owned))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_owned))
        .set_network_mode(td.network_mode().cloned())
        .set_container_definitions(Some(defs))
        .set_volumes(Some(td.volumes().to_vec()))
        .set_placement_constraints(Some(td.placement_constraints().to_vec()))
        .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
        .set_cpu(td.cpu().map(str::to_owned))
        .set_memory(td.memory().map(str::to_owned))
        .set_pid_mode(td.pid_mode().cloned())
        .set_ipc_mode(td.ipc_mode().cloned())
        .set_proxy_configuration(td.proxy_configuration().cloned())
        .set_ephemeral_storage(td.ephemeral_storage().cloned())
        .set_runtime_platform(td.runtime_platform().cloned())
        .send()
        .await
        .map_err(|e| CallError::new("RegisterTaskDefinition", &c.region, &e))?;
    Ok(out
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap_or_default()
        .to_owned())
}

/// What to do about a deployment's task set: make it, or use the one a previous run made.
#[derive(Debug, Clone, PartialEq)]
pub enum Ensure {
    Created(TaskSet),
    Reused(TaskSet),
}

impl Ensure {
    pub fn task_set(&self) -> &TaskSet {
        match self {
            Self::Created(t) | Self::Reused(t) => t,
        }
    }
}

/// Why a deployment creates a task set. ECS treats `clientToken` as an idempotency key: the
/// same token with other parameters is an error, so each intent has a token of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The new release, on the idle colour.
    Release,
    /// The previous release, recreated by a rollback.
    Restore,
}

/// What `ensure_task_set` makes: `deployment` is the task set's external id (whose it is).
#[derive(Debug, Clone)]
pub struct TaskSetSpec<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
    pub deployment: &'a str,
    pub purpose: Purpose,
    pub task_definition: &'a str,
    pub target_group: &'a str,
    pub container: &'a str,
    pub port: i32,
    pub scale: f64,
}

impl TaskSetSpec<'_> {
    /// The CreateTaskSet `clientToken`: one per (deployment, region, purpose, target group, task
    /// definition), so a retry of the same intent gets the same task set and two intents never
    /// share a token. 32 hex characters (ECS allows up to 36 ASCII characters).
    pub fn client_token(&self, region: &str) -> String {
        use sha2::{Digest, Sha256};
        let intent = format!(
            "{}\n{region}\n{:?}\n{}\n{}",
            self.deployment, self.purpose, self.target_group, self.task_definition
        );
        let hash = format!("{:x}", Sha256::digest(intent.as_bytes()));
        hash[..32].to_owned()
    }
}

/// The task set `spec` describes, created only if the service does not have it already (this
/// deployment's, on that target group). Network configuration and launch type are copied from
/// the service, so the new release runs where the old one does.
pub async fn ensure_task_set(
    c: &RegionClients,
    service: &Service,
    spec: &TaskSetSpec<'_>,
) -> Result<Ensure, EcsError> {
    if let Some(existing) = service.task_sets.iter().find(|t| {
        t.external_id.as_deref() == Some(spec.deployment)
            && t.target_group.as_deref() == Some(spec.target_group)
    }) {
        return Ok(Ensure::Reused(existing.clone()));
    }
    let out = c
        .ecs
        .create_task_set()
        .cluster(spec.cluster)
        .service(spec.service)
        .task_definition(spec.task_definition)
        .external_id(spec.deployment)
        .set_network_configuration(service.network.clone())
        .set_launch_type(service.launch_type.clone())
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(spec.target_group)
                .container_name(spec.container)
                .container_port(spec.port)
                .build(),
        )
        .scale(
            Scale::builder()
                .value(spec.scale)
                .unit(ScaleUnit::Percent)
                .build(),
        )
        .client_token(spec.client_token(&c.region))
        .send()
        .await
        .map_err(|e| CallError::new("CreateTaskSet", &c.region, &e))?;
    Ok(Ensure::Created(task_set_of(
        out.task_set().expect("CreateTaskSet returns the task set"),
    )))
}

pub async fn task_set(
    c: &RegionClients,
    cluster: &str,
    service: &str,
    arn: &str,
) -> Result<Option<TaskSet>, EcsError> {
    let out = c
        .ecs
        .describe_task_sets()
        .cluster(cluster)
        .service(service)
        .task_sets(arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeTaskSets", &c.region, &e))?;
    Ok(out.task_sets().first().map(task_set_of))
}

pub async fn scale(
    c: &RegionClients,
    cluster: &str,
    service: &str,
    arn: &str,
    percent: f64,
) -> Result<(), EcsError> {
    c.ecs
        .update_task_set()
        .cluster(cluster)
        .service(service)
        .task_set(arn)
        .scale(
            Scale::builder()
                .value(percent)
                .unit(ScaleUnit::Percent)
                .build(),
        )
        .send()
        .await
        .map_err(|e| CallError::new("UpdateTaskSet", &c.region, &e))?;
    Ok(())
}

pub async fn make_primary(
    c: &RegionClients,
    cluster: &str,
    service: &str,
    arn: &str,
) -> Result<(), EcsError> {
    c.ecs
        .update_service_primary_task_set()
        .cluster(cluster)
        .service(service)
        .primary_task_set(arn)
        .send()
        .await
        .map_err(|e| CallError::new("UpdateServicePrimaryTaskSet", &c.region, &e))?;
    Ok(())
}

/// Deletes a task set; one already gone counts as deleted.
pub async fn delete(
    c: &RegionClients,
    cluster: &str,
    service: &str,
    arn: &str,
) -> Result<(), EcsError> {
    match c
        .ecs
        .delete_task_set()
        .cluster(cluster)
        .service(service)
        .task_set(arn)
        .force(true)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = CallError::new("DeleteTaskSet", &c.region, &e);
            if err.is("TaskSetNotFoundException") {
                Ok(())
            } else {
                Err(err.into())
            }
        }
    }
}

/// What a readiness check says on one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet; the reason is reported if the deadline passes.
    NotYet(String),
    /// It will not get better by waiting (e.g. targets failing health checks): stop now.
    Failed(String),
}

/// Polls until the task set runs all its tasks, ECS calls it steady and `check` says ready, or
/// until `timeout`; stops at once when `check` reports a terminal failure or the set is gone.
pub async fn wait_steady<F, Fut>(
    c: &RegionClients,
    cluster: &str,
    service: &str,
    arn: &str,
    timeout: Duration,
    poll: Duration,
    mut check: F,
) -> Result<TaskSet, EcsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Readiness>,
{
    let started = Instant::now();
    loop {
        let current = task_set(c, cluster, service, arn).await?;
        let (running, desired) = current
            .as_ref()
            .map_or((0, 0), |t| (t.running, t.computed_desired));
        let (terminal, detail) = match &current {
            None => (true, "the task set no longer exists".to_owned()),
            Some(ts) => match check().await {
                Readiness::Failed(why) => (true, why),
                Readiness::NotYet(why) => (false, why),
                Readiness::Ready
                    if ts.steady
                        && ts.running == ts.computed_desired
                        && ts.computed_desired > 0 =>
                {
                    return Ok(ts.clone());
                }
                Readiness::Ready => (false, format!("{} pending, not steady yet", ts.pending)),
            },
        };
        tracing::debug!(region = %c.region, task_set = arn, running, desired, %detail, "waiting for steady state");
        if terminal || started.elapsed() >= timeout {
            return Err(EcsError::NotReady {
                region: c.region.clone(),
                task_set: arn.rsplit('/').next().unwrap_or(arn).to_owned(),
                waited: format!("{:.1}s", started.elapsed().as_secs_f64()),
                running,
                desired,
                detail,
            });
        }
        tokio::time::sleep(poll.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(purpose: Purpose, tg: &'a str, td: &'a str) -> TaskSetSpec<'a> {
        TaskSetSpec {
            cluster: "c",
            service: "s",
            deployment: "20261201T000000Z-abcdef",
            purpose,
            task_definition: td,
            target_group: tg,
            container: "app",
            port: 8080,
            scale: 100.0,
        }
    }

    #[test]
    fn client_tokens_differ_per_intent_and_repeat_per_retry() {
        let release = spec(Purpose::Release, "tg/green", "td:2");
        let token = release.client_token("us-east-1");
        assert_eq!(
            token,
            release.client_token("us-east-1"),
            "a retry reuses it"
        );
        assert!(token.len() <= 36 && token.bytes().all(|b| (33..=126).contains(&b)));
        for other in [
            spec(Purpose::Restore, "tg/blue", "td:1").client_token("us-east-1"),
            spec(Purpose::Release, "tg/green", "td:3").client_token("us-east-1"),
            spec(Purpose::Release, "tg/blue", "td:2").client_token("us-east-1"),
            release.client_token("eu-west-1"),
        ] {
            assert_ne!(token, other);
        }
    }
}
