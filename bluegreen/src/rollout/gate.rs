//! The gate evaluated before and during every traffic step: the new colour's target health,
//! the configured alarms, and an HTTP probe that checks the version answering.
//!
//! Per poll it makes three AWS calls per region, all at once (DescribeTargetHealth,
//! DescribeTaskSets, and DescribeAlarms unless no alarms are configured), and one HTTP request
//! unless the region says `probe = "none"`. The traffic analysis (`analysis`) runs beside it.

use std::time::Duration;

use super::preflight::RegionState;
use crate::aws::elb::{self, Colour};
use crate::aws::secret::TestRoute;
use crate::aws::{RegionClients, alarms};
use crate::config::Probe;

/// `http(s)://<alb>:<port><path>`; port 443 means HTTPS.
pub fn url(dns: &str, port: u16, path: &str) -> String {
    let scheme = if port == 443 { "https" } else { "http" };
    format!("{scheme}://{dns}:{port}{path}")
}

/// GETs `url`, with the test route's header when given; Ok(version) on HTTP 200 with a JSON
/// body (the version it reports, if any). Errors name the URL, never the header's value.
pub async fn probe(
    http: &reqwest::Client,
    url: &str,
    test: Option<&TestRoute>,
) -> Result<Option<String>, String> {
    let mut req = http.get(url).timeout(Duration::from_secs(5));
    if let Some(t) = test {
        req = req.header(t.header.as_str(), t.value());
    }
    let res = req.send().await.map_err(|e| {
        // reqwest's error names the URL only; strip it to be sure nothing else leaks.
        format!("probe {url}: {}", crate::aws::error_chain(&e.without_url()))
    })?;
    let status = res.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("probe {url} answered HTTP {status}"));
    }
    let header_version = res
        .headers()
        .get("x-app-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    Ok(body["version"]
        .as_str()
        .map(str::to_owned)
        .or(header_version))
}

/// Probes until `needed` answers in a row are 200 and report `version`.
pub async fn probe_version(
    http: &reqwest::Client,
    url: &str,
    test: Option<&TestRoute>,
    version: &str,
    needed: usize,
) -> Result<(), String> {
    for _ in 0..needed {
        match probe(http, url, test).await? {
            Some(v) if v == version => {}
            other => {
                return Err(format!(
                    "probe {url} reports version {}, expected {version}",
                    other.as_deref().unwrap_or("none")
                ));
            }
        }
    }
    Ok(())
}

/// Polls in a row with unhealthy targets after which readiness gives up: the ALB has already
/// applied its own unhealthy threshold, so this is a release failing its health checks.
pub const UNHEALTHY_POLLS: u32 = 3;

/// Readiness of the new colour for `ecs::wait_steady`, failing fast on targets that keep failing
/// their health checks instead of waiting for the deadline.
pub struct ReadyCheck<'a> {
    pub c: &'a RegionClients,
    pub s: &'a RegionState,
    pub colour: Colour,
    unhealthy_polls: u32,
}

impl<'a> ReadyCheck<'a> {
    pub fn new(c: &'a RegionClients, s: &'a RegionState, colour: Colour) -> Self {
        Self {
            c,
            s,
            colour,
            unhealthy_polls: 0,
        }
    }

    pub async fn poll(&mut self) -> crate::aws::ecs::Readiness {
        use crate::aws::ecs::Readiness;
        let h = match elb::target_health(self.c, self.s.topo.target_group(self.colour)).await {
            Ok(h) => h,
            Err(e) => return Readiness::NotYet(e.to_string()),
        };
        if h.unhealthy > 0 {
            self.unhealthy_polls += 1;
            if self.unhealthy_polls >= UNHEALTHY_POLLS {
                return Readiness::Failed(format!(
                    "{} targets keep failing health checks: {h}",
                    self.colour
                ));
            }
        } else {
            self.unhealthy_polls = 0;
        }
        // One DescribeTargetHealth per poll: judge the summary already fetched.
        match judge(&h, self.s, self.colour) {
            Ok(()) => Readiness::Ready,
            Err(why) => Readiness::NotYet(why),
        }
    }
}

/// The new colour is ready to take traffic: every registered target healthy, and at least as
/// many as the live colour had (so traffic never moves to a smaller fleet).
pub async fn colour_ready(
    c: &RegionClients,
    s: &RegionState,
    colour: Colour,
) -> Result<(), String> {
    let h = elb::target_health(c, s.topo.target_group(colour))
        .await
        .map_err(|e| e.to_string())?;
    judge(&h, s, colour)
}

/// Whether a health summary of `colour` is enough to carry traffic (see `colour_ready`).
fn judge(h: &elb::HealthSummary, s: &RegionState, colour: Colour) -> Result<(), String> {
    if h.all_healthy() && h.healthy >= s.live_healthy.max(1) {
        Ok(())
    } else {
        Err(format!(
            "{colour} target health: {h}; need all healthy and at least {}",
            s.live_healthy.max(1)
        ))
    }
}

/// One evaluation during a bake: three AWS calls and one HTTP probe, all at once, so a poll
/// costs one round trip of time. `task_set`: the new release's task set. `full`: the new release
/// has all traffic, so the production probe must report its version too.
pub async fn check(
    http: &reqwest::Client,
    s: &RegionState,
    task_set: &str,
    version: &str,
    full: bool,
) -> Result<(), String> {
    let result = evaluate(http, s, task_set, version, full).await;
    tracing::debug!(region = s.name(), full, ?result, "gate");
    result
}

async fn evaluate(
    http: &reqwest::Client,
    s: &RegionState,
    task_set: &str,
    version: &str,
    full: bool,
) -> Result<(), String> {
    let url = url(&s.topo.dns_name, s.plan.listener_port, &s.plan.probe_path);
    let probed = async {
        match s.plan.probe {
            Probe::Http => probe(http, &url, None).await.map(Some),
            Probe::None => Ok(None),
        }
    };
    let (health, tasks, firing, answered) = tokio::join!(
        colour_ready(&s.c, s, s.idle()),
        crate::aws::ecs::task_set(&s.c, &s.plan.cluster, &s.plan.service, task_set),
        alarms::firing(&s.c, &s.plan.alarms),
        probed,
    );
    // Most specific first: a stopped task explains the failed checks and 502s that follow it.
    match tasks.map_err(|e| e.to_string())? {
        None => return Err(format!("task set {task_set} is gone")),
        Some(t) if t.running < t.computed_desired => {
            // ECS notices a stopped task before the load balancer's health checks do.
            return Err(format!(
                "task set {}: {} of {} tasks running (a task stopped)",
                t.id, t.running, t.computed_desired
            ));
        }
        Some(_) => {}
    }
    health?;
    if let Some(a) = firing.map_err(|e| e.to_string())?.first() {
        return Err(format!(
            "alarm {} is in ALARM ({})",
            a.name,
            a.reason.as_deref().unwrap_or("no reason given")
        ));
    }
    // `None`: not probed (probe = "none").
    let Some(answered) = answered? else {
        return Ok(());
    };
    if full && answered.as_deref() != Some(version) {
        return Err(format!(
            "production answers version {} at {url}, expected {version}",
            answered.as_deref().unwrap_or("none")
        ));
    }
    Ok(())
}
