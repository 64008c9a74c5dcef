//! The ALB side of a region: its production listener, the test listener and its header rule,
//! the twin target groups, the weighted forwards that say which colour is live and which one
//! test traffic reaches, and target health.

use std::fmt;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Rule, TargetGroupTuple, TargetHealthStateEnum,
};
use serde::Serialize;
use thiserror::Error;

use super::{CallError, RegionClients};
use crate::config::RegionPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn other(self) -> Self {
        match self {
            Self::Blue => Self::Green,
            Self::Green => Self::Blue,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "blue" => Some(Self::Blue),
            "green" => Some(Self::Green),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blue => "blue",
            Self::Green => "green",
        }
    }
}

impl fmt::Display for Colour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ALB resources of one region, found by the names in the environment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub region: String,
    pub load_balancer_arn: String,
    pub dns_name: String,
    pub listener_arn: String,
    pub listener_port: u16,
    pub test_listener_arn: String,
    pub test_listener_port: u16,
    /// The test listener's rule that forwards requests carrying the test header (`None`: the
    /// listener has none, which `check_test_route` refuses before a promote).
    pub test_rule_arn: Option<String>,
    /// The test listener's default action forwards to a target group: requests without the
    /// header would reach a colour (`check_test_route` refuses it).
    pub test_default_forwards: bool,
    pub blue_target_group_arn: String,
    pub green_target_group_arn: String,
}

impl Topology {
    pub fn target_group(&self, colour: Colour) -> &str {
        match colour {
            Colour::Blue => &self.blue_target_group_arn,
            Colour::Green => &self.green_target_group_arn,
        }
    }

    pub fn colour_of(&self, target_group_arn: &str) -> Option<Colour> {
        if target_group_arn == self.blue_target_group_arn {
            Some(Colour::Blue)
        } else if target_group_arn == self.green_target_group_arn {
            Some(Colour::Green)
        } else {
            None
        }
    }
}

/// Production weights of the two colours, as the listener's forward action holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub blue: i32,
    pub green: i32,
}

impl Weights {
    /// `percent` of traffic on `colour`, the rest on the other.
    pub fn with(colour: Colour, percent: u8) -> Self {
        let p = i32::from(percent.min(100));
        match colour {
            Colour::Blue => Self {
                blue: p,
                green: 100 - p,
            },
            Colour::Green => Self {
                blue: 100 - p,
                green: p,
            },
        }
    }

    pub fn of(&self, colour: Colour) -> i32 {
        match colour {
            Colour::Blue => self.blue,
            Colour::Green => self.green,
        }
    }

    /// The colour carrying all traffic, if exactly one does.
    pub fn live(&self) -> Option<Colour> {
        match (self.blue, self.green) {
            (100, 0) => Some(Colour::Blue),
            (0, 100) => Some(Colour::Green),
            _ => None,
        }
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blue {} / green {}", self.blue, self.green)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ElbError {
    #[error("{what} {name} does not exist in {region}; {hint}")]
    Missing {
        what: &'static str,
        name: String,
        region: String,
        hint: String,
    },
    #[error(
        "the listener on port {port} of {load_balancer} in {region} is not a weighted forward to \
         exactly {blue} and {green} (it has {found}); make it one (terraform/modules/region does)"
    )]
    NotWeighted {
        region: String,
        load_balancer: String,
        port: u16,
        blue: String,
        green: String,
        found: String,
    },
    #[error(
        "the test listener on port {port} of {load_balancer} in {region} {problem}; test traffic must \
         reach the new colour only with the {header} header: apply terraform/modules/region (its \
         test listener answers 404 unless a rule's http-header condition matches the secret)"
    )]
    TestRoute {
        region: String,
        load_balancer: String,
        port: u16,
        header: String,
        problem: String,
    },
    #[error("refusing to set weights {weights} in {region}: they must sum to 100")]
    BadWeights { region: String, weights: Weights },
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Finds the load balancer, both listeners and both target groups named in `plan`.
pub async fn discover(c: &RegionClients, plan: &RegionPlan) -> Result<Topology, ElbError> {
    let lb = load_balancer(c, plan).await?;
    let lb_arn = lb.load_balancer_arn().unwrap_or_default().to_owned();
    let listeners = listeners(c, plan, &lb_arn).await?;
    // Three independent reads at once: a rollback's first step waits for one round trip.
    let (test_rule_arn, blue, green) = tokio::join!(
        test_rule(c, &listeners.test, &plan.test_header),
        target_group_arn(c, &plan.blue_target_group),
        target_group_arn(c, &plan.green_target_group),
    );
    let (test_rule_arn, blue, green) = (test_rule_arn?, blue?, green?);
    Ok(Topology {
        region: c.region.clone(),
        load_balancer_arn: lb_arn,
        dns_name: lb.dns_name().unwrap_or_default().to_owned(),
        listener_arn: listeners.production,
        listener_port: plan.listener_port,
        test_listener_arn: listeners.test,
        test_listener_port: plan.test_listener_port,
        test_rule_arn,
        test_default_forwards: listeners.test_default_forwards,
        blue_target_group_arn: blue,
        green_target_group_arn: green,
    })
}

/// The load balancer called `plan.load_balancer`; a missing one says which key to check.
async fn load_balancer(
    c: &RegionClients,
    plan: &RegionPlan,
) -> Result<aws_sdk_elasticloadbalancingv2::types::LoadBalancer, ElbError> {
    let region = &c.region;
    let lbs = c
        .elb
        .describe_load_balancers()
        .names(&plan.load_balancer)
        .send()
        .await;
    let lb = match lbs {
        Ok(out) => out.load_balancers().first().cloned(),
        Err(e) => {
            let err = CallError::new("DescribeLoadBalancers", region, &e);
            if err.is("LoadBalancerNotFound") {
                None
            } else {
                return Err(err.into());
            }
        }
    };
    lb.ok_or_else(|| ElbError::Missing {
        what: "load balancer",
        name: plan.load_balancer.clone(),
        region: region.clone(),
        hint: "check load_balancer in the environment file, or apply terraform/ for this region"
            .into(),
    })
}

/// The production and test listeners of a load balancer, found by the file's ports.
struct Listeners {
    production: String,
    test: String,
    /// The test listener's default action forwards (see `Topology::test_default_forwards`).
    test_default_forwards: bool,
}

async fn listeners(
    c: &RegionClients,
    plan: &RegionPlan,
    lb_arn: &str,
) -> Result<Listeners, ElbError> {
    let out = c
        .elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeListeners", &c.region, &e))?;
    let find = |port: u16, what: &'static str, key: &str| {
        out.listeners()
            .iter()
            .find(|l| l.port() == Some(i32::from(port)))
            .ok_or_else(|| ElbError::Missing {
                what,
                name: format!("on port {port} of {}", plan.load_balancer),
                region: c.region.clone(),
                hint: format!("check {key} in the environment file"),
            })
    };
    let production = find(plan.listener_port, "production listener", "listener_port")?;
    let test = find(
        plan.test_listener_port,
        "test listener",
        "test_listener_port",
    )?;
    Ok(Listeners {
        production: production.listener_arn().unwrap_or_default().to_owned(),
        test: test.listener_arn().unwrap_or_default().to_owned(),
        test_default_forwards: test
            .default_actions()
            .first()
            .is_some_and(|a| a.r#type() == Some(&ActionTypeEnum::Forward)),
    })
}

/// The test listener's rule whose http-header condition names `header` (header names compare
/// case-insensitively, as the ALB compares them).
async fn test_rule(
    c: &RegionClients,
    listener_arn: &str,
    header: &str,
) -> Result<Option<String>, ElbError> {
    let out = c
        .elb
        .describe_rules()
        .listener_arn(listener_arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeRules", &c.region, &e))?;
    Ok(out
        .rules()
        .iter()
        .filter(|r| r.is_default() != Some(true))
        .find(|r| matches_header(r, header))
        .and_then(|r| r.rule_arn().map(str::to_owned)))
}

fn matches_header(rule: &Rule, header: &str) -> bool {
    rule.conditions().iter().any(|c| {
        c.field() == Some("http-header")
            && c.http_header_config()
                .and_then(|h| h.http_header_name())
                .is_some_and(|n| n.eq_ignore_ascii_case(header))
    })
}

/// Refuses a test listener that lets requests without the header through, or has no rule for
/// it: the new release must take no request before its gates but the ones bluegreen sends.
pub fn check_test_route(t: &Topology, plan: &RegionPlan) -> Result<(), ElbError> {
    let problem = if t.test_default_forwards {
        "forwards requests without the test header to a target group"
    } else if t.test_rule_arn.is_none() {
        "has no rule with an http-header condition on the test header"
    } else {
        return Ok(());
    };
    Err(ElbError::TestRoute {
        region: t.region.clone(),
        load_balancer: plan.load_balancer.clone(),
        port: t.test_listener_port,
        header: plan.test_header.clone(),
        problem: problem.into(),
    })
}

/// The ARN of the target group called `name`; a missing one says which key to check.
async fn target_group_arn(c: &RegionClients, name: &str) -> Result<String, ElbError> {
    let out = c.elb.describe_target_groups().names(name).send().await;
    let arn = match out {
        Ok(out) => out
            .target_groups()
            .first()
            .and_then(|t| t.target_group_arn().map(str::to_owned)),
        Err(e) => {
            let err = CallError::new("DescribeTargetGroups", &c.region, &e);
            if !err.is("TargetGroupNotFound") {
                return Err(err.into());
            }
            None
        }
    };
    arn.ok_or_else(|| ElbError::Missing {
        what: "target group",
        name: name.to_owned(),
        region: c.region.clone(),
        hint: "check blue_target_group/green_target_group in the environment file".into(),
    })
}

/// The production listener's weights, checked to be a forward to exactly the twin groups.
pub async fn weights(
    c: &RegionClients,
    t: &Topology,
    plan: &RegionPlan,
) -> Result<Weights, ElbError> {
    forward_weights(c, t, plan, &t.listener_arn, t.listener_port).await
}

/// The test route's weights (it forwards to one colour at a time); `None` without a test rule.
pub async fn test_weights(
    c: &RegionClients,
    t: &Topology,
    plan: &RegionPlan,
) -> Result<Option<Weights>, ElbError> {
    let Some(rule) = &t.test_rule_arn else {
        return Ok(None);
    };
    let out = c
        .elb
        .describe_rules()
        .rule_arns(rule)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeRules", &c.region, &e))?;
    let action = out.rules().first().and_then(|r| r.actions().first());
    read_forward(c, t, plan, action, t.test_listener_port).map(Some)
}

async fn forward_weights(
    c: &RegionClients,
    t: &Topology,
    plan: &RegionPlan,
    listener_arn: &str,
    port: u16,
) -> Result<Weights, ElbError> {
    let out = c
        .elb
        .describe_listeners()
        .listener_arns(listener_arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeListeners", &c.region, &e))?;
    let action = out
        .listeners()
        .first()
        .and_then(|l| l.default_actions().first());
    read_forward(c, t, plan, action, port)
}

/// A weighted forward to exactly the twin groups, as weights; anything else is `NotWeighted`.
fn read_forward(
    c: &RegionClients,
    t: &Topology,
    plan: &RegionPlan,
    action: Option<&Action>,
    port: u16,
) -> Result<Weights, ElbError> {
    let not_weighted = |found: String| ElbError::NotWeighted {
        region: c.region.clone(),
        load_balancer: plan.load_balancer.clone(),
        port,
        blue: plan.blue_target_group.clone(),
        green: plan.green_target_group.clone(),
        found,
    };
    let Some(action) = action else {
        return Err(not_weighted("no default action".into()));
    };
    if action.r#type() != Some(&ActionTypeEnum::Forward) {
        return Err(not_weighted(format!(
            "a {} action",
            action.r#type().map_or("missing", |t| t.as_str())
        )));
    }
    let groups: Vec<(String, i32)> = match action.forward_config() {
        Some(f) => f
            .target_groups()
            .iter()
            .map(|g| {
                (
                    g.target_group_arn().unwrap_or_default().to_owned(),
                    g.weight().unwrap_or(1),
                )
            })
            .collect(),
        None => action
            .target_group_arn()
            .map(|a| vec![(a.to_owned(), 1)])
            .unwrap_or_default(),
    };
    let mut w = Weights { blue: 0, green: 0 };
    let (mut saw_blue, mut saw_green) = (false, false);
    for (arn, weight) in &groups {
        match t.colour_of(arn) {
            Some(Colour::Blue) => {
                saw_blue = true;
                w.blue = *weight;
            }
            Some(Colour::Green) => {
                saw_green = true;
                w.green = *weight;
            }
            None => {
                return Err(not_weighted(format!(
                    "a forward to {}",
                    arn.rsplit(':').next().unwrap_or(arn)
                )));
            }
        }
    }
    if groups.len() != 2 || !saw_blue || !saw_green {
        return Err(not_weighted(format!(
            "a forward to {} target group(s)",
            groups.len()
        )));
    }
    Ok(w)
}

/// Sets both production weights with one ModifyListener. Refuses anything that does not sum to
/// 100 or would name other groups, so the listener can never be left half-written.
pub async fn set_weights(c: &RegionClients, t: &Topology, w: Weights) -> Result<(), ElbError> {
    let action = forward(c, t, w)?;
    c.elb
        .modify_listener()
        .listener_arn(&t.listener_arn)
        .default_actions(action)
        .send()
        .await
        .map_err(|e| CallError::new("ModifyListener", &c.region, &e))?;
    Ok(())
}

/// Points the test route (the test listener's header rule) at one colour with one ModifyRule;
/// its condition stays as Terraform made it.
pub async fn point_test_route(
    c: &RegionClients,
    t: &Topology,
    colour: Colour,
) -> Result<(), ElbError> {
    let Some(rule) = &t.test_rule_arn else {
        return Err(ElbError::Missing {
            what: "test route rule",
            name: format!("on the test listener port {}", t.test_listener_port),
            region: c.region.clone(),
            hint: "apply terraform/modules/region (it creates the header rule)".into(),
        });
    };
    let action = forward(c, t, Weights::with(colour, 100))?;
    c.elb
        .modify_rule()
        .rule_arn(rule)
        .actions(action)
        .send()
        .await
        .map_err(|e| CallError::new("ModifyRule", &c.region, &e))?;
    Ok(())
}

/// A weighted forward to exactly the twin groups. Refuses anything that does not sum to 100,
/// so a listener or rule can never be left half-written.
fn forward(c: &RegionClients, t: &Topology, w: Weights) -> Result<Action, ElbError> {
    if w.blue < 0 || w.green < 0 || w.blue + w.green != 100 {
        return Err(ElbError::BadWeights {
            region: c.region.clone(),
            weights: w,
        });
    }
    let forward = ForwardActionConfig::builder()
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(&t.blue_target_group_arn)
                .weight(w.blue)
                .build(),
        )
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(&t.green_target_group_arn)
                .weight(w.green)
                .build(),
        )
        .build();
    Ok(Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .forward_config(forward)
        .build())
}

/// One target's health as the ALB reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetState {
    pub id: String,
    pub port: i32,
    pub state: String,
    pub reason: Option<String>,
    pub description: Option<String>,
}

/// A target group's health, counted by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HealthSummary {
    pub healthy: usize,
    pub unhealthy: usize,
    pub initial: usize,
    pub draining: usize,
    pub other: usize,
    pub targets: Vec<TargetState>,
}

impl HealthSummary {
    /// Targets that take traffic or are about to (everything but draining and unused).
    pub fn registered(&self) -> usize {
        self.healthy + self.unhealthy + self.initial + self.other
    }

    pub fn all_healthy(&self) -> bool {
        self.registered() > 0 && self.healthy == self.registered()
    }
}

impl fmt::Display for HealthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} healthy, {} unhealthy, {} initial, {} draining",
            self.healthy, self.unhealthy, self.initial, self.draining
        )?;
        let reasons: Vec<String> = self
            .targets
            .iter()
            .filter(|t| t.state == "unhealthy")
            .map(|t| format!("{}:{} {}", t.id, t.port, t.reason.as_deref().unwrap_or("?")))
            .collect();
        if !reasons.is_empty() {
            write!(f, " ({})", reasons.join(", "))?;
        }
        Ok(())
    }
}

pub async fn target_health(c: &RegionClients, tg_arn: &str) -> Result<HealthSummary, ElbError> {
    let out = c
        .elb
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await
        .map_err(|e| CallError::new("DescribeTargetHealth", &c.region, &e))?;
    let mut s = HealthSummary::default();
    for d in out.target_health_descriptions() {
        let h = d.target_health();
        let state = h.and_then(|h| h.state()).cloned();
        match state {
            Some(TargetHealthStateEnum::Healthy) => s.healthy += 1,
            Some(TargetHealthStateEnum::Unhealthy) => s.unhealthy += 1,
            Some(TargetHealthStateEnum::Initial) => s.initial += 1,
            Some(TargetHealthStateEnum::Draining) => s.draining += 1,
            _ => s.other += 1,
        }
        s.targets.push(TargetState {
            id: d
                .target()
                .and_then(|t| t.id())
                .unwrap_or_default()
                .to_owned(),
            port: d.target().and_then(|t| t.port()).unwrap_or_default(),
            state: state.map_or("unknown".into(), |s| s.as_str().to_owned()),
            reason: h.and_then(|h| h.reason()).map(|r| r.as_str().to_owned()),
            description: h.and_then(|h| h.description()).map(str::to_owned),
        });
    }
    Ok(s)
}
