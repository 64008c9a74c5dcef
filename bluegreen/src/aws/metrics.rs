//! The ALB's per-target-group CloudWatch metrics for both colours over one window, in one
//! `GetMetricData` call: what the traffic analysis (`rollout::analysis`) judges.
//!
//! ALB metrics live in `AWS/ApplicationELB` with the dimensions `LoadBalancer` (`app/<name>/<id>`,
//! the end of the load balancer's ARN) and `TargetGroup` (`targetgroup/<name>/<id>`); a target
//! group's metrics exist only with both (TargetGroup alone has no data). They come in 60-second
//! periods, only for periods with requests, and the newest minute or two are incomplete. See
//! <https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html>.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StatusCode};
use serde::Serialize;

use super::{CallError, RegionClients};

pub const NAMESPACE: &str = "AWS/ApplicationELB";

/// What one target group served in the window. Times are in seconds, as CloudWatch has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    pub requests: u64,
    pub target_5xx: u64,
    pub target_4xx: u64,
    pub connection_errors: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

impl Sample {
    /// Requests the target group failed: its targets' 5xx answers plus connections it could not
    /// make (the load balancer answers those with 502).
    pub fn errors(&self) -> u64 {
        self.target_5xx + self.connection_errors
    }

    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors() as f64 / self.requests as f64
        }
    }
}

/// The window a query covers: whole periods from `from` up to `to`, both on the period grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: u64,
    pub to: u64,
}

impl Window {
    /// The whole periods, on CloudWatch's grid of `period`, from the first that starts at or
    /// after `start` (nothing from before the new colour took production traffic) to the last
    /// that ends by `end - settle` (the newest metrics are incomplete) and by `until` (when the
    /// previous colour stopped taking traffic, if it has); `None` until one period fits.
    pub fn settled(
        start: SystemTime,
        end: SystemTime,
        until: Option<SystemTime>,
        period: Duration,
        settle: Duration,
    ) -> Option<Self> {
        let p = period.as_secs().max(1);
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let from = secs(start).div_ceil(p) * p;
        let mut last = secs(end).saturating_sub(settle.as_secs());
        if let Some(u) = until {
            last = last.min(secs(u));
        }
        let to = last / p * p;
        (to > from).then_some(Self { from, to })
    }

    pub fn seconds(&self) -> u64 {
        self.to - self.from
    }
}

/// The `LoadBalancer` dimension value of a load balancer ARN.
pub fn load_balancer_dimension(arn: &str) -> &str {
    arn.split_once(":loadbalancer/").map_or(arn, |(_, d)| d)
}

/// The `TargetGroup` dimension value of a target group ARN.
pub fn target_group_dimension(arn: &str) -> &str {
    arn.rsplit_once(':').map_or(arn, |(_, d)| d)
}

const STATS: [(&str, &str, &str); 6] = [
    ("req", "RequestCount", "Sum"),
    ("e5", "HTTPCode_Target_5XX_Count", "Sum"),
    ("e4", "HTTPCode_Target_4XX_Count", "Sum"),
    ("conn", "TargetConnectionErrorCount", "Sum"),
    ("p50", "TargetResponseTime", "p50"),
    ("p99", "TargetResponseTime", "p99"),
];

/// Both target groups' samples over `window`, one GetMetricData call: one period spanning the
/// whole window, so the percentiles are over every request in it. Index 0 is `groups[0]`.
pub async fn compare(
    c: &RegionClients,
    load_balancer_arn: &str,
    groups: [&str; 2],
    window: Window,
) -> Result<[Sample; 2], CallError> {
    let lb = load_balancer_dimension(load_balancer_arn);
    let period = i32::try_from(window.seconds()).unwrap_or(i32::MAX);
    let queries: Vec<MetricDataQuery> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, tg)| {
            STATS.map(|(id, name, stat)| query(&format!("{id}_{i}"), lb, tg, name, stat, period))
        })
        .collect();
    let mut samples = [Sample::default(); 2];
    let mut token: Option<String> = None;
    loop {
        let out = c
            .cloudwatch
            .get_metric_data()
            .start_time(DateTime::from_secs(window.from as i64))
            .end_time(DateTime::from_secs(window.to as i64))
            .set_metric_data_queries(Some(queries.clone()))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| CallError::new("GetMetricData", &c.region, &e))?;
        for r in out.metric_data_results() {
            // PartialData only means more pages (followed below); anything else is no answer,
            // never zero errors.
            if let Some(code @ (StatusCode::InternalError | StatusCode::Forbidden)) =
                r.status_code()
            {
                return Err(CallError {
                    call: "GetMetricData",
                    region: c.region.clone(),
                    code: Some(code.as_str().to_owned()),
                    message: format!("query {} answered {code}", r.id().unwrap_or("?")),
                });
            }
            let Some((id, i)) = r.id().and_then(|id| id.rsplit_once('_')) else {
                continue;
            };
            let Some(s) = i.parse::<usize>().ok().and_then(|i| samples.get_mut(i)) else {
                continue;
            };
            absorb(s, id, r.values());
        }
        match out.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(samples),
        }
    }
}

fn query(id: &str, lb: &str, tg: &str, name: &str, stat: &str, period: i32) -> MetricDataQuery {
    let dims = [
        ("LoadBalancer", lb),
        ("TargetGroup", target_group_dimension(tg)),
    ]
    .map(|(n, v)| Dimension::builder().name(n).value(v).build());
    MetricDataQuery::builder()
        .id(id)
        .return_data(true)
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace(NAMESPACE)
                        .metric_name(name)
                        .set_dimensions(Some(dims.to_vec()))
                        .build(),
                )
                .period(period)
                .stat(stat)
                .build(),
        )
        .build()
}

/// Adds one query's datapoints to a sample. Counts are summed; a window is one period, so a
/// percentile has at most one datapoint (the highest is kept if CloudWatch splits it).
fn absorb(s: &mut Sample, id: &str, values: &[f64]) {
    let sum = values.iter().sum::<f64>().round().max(0.0) as u64;
    let max = values.iter().copied().reduce(f64::max);
    match id {
        "req" => s.requests += sum,
        "e5" => s.target_5xx += sum,
        "e4" => s.target_4xx += sum,
        "conn" => s.connection_errors += sum,
        "p50" => s.p50 = max.or(s.p50),
        "p99" => s.p99 = max.or(s.p99),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_are_the_ends_of_the_arns() {
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/my-lb/50dc6c495c0c9188"
            ),
            "app/my-lb/50dc6c495c0c9188"
        );
        assert_eq!(
            target_group_dimension(
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
            ),
            "targetgroup/my-targets/73e2d6bc24d8a067"
        );
    }

    #[test]
    fn a_window_is_whole_settled_periods() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let minute = Duration::from_secs(60);
        let settle = Duration::from_secs(120);
        // Exposed at 10:00:30, now 10:04:10: from 10:01:00 (the minute before mixes in traffic
        // from before the exposure) to 10:02:00 (settled by then).
        assert_eq!(
            Window::settled(at(36030), at(36250), None, minute, settle),
            Some(Window {
                from: 36060,
                to: 36120
            })
        );
        // Nothing settled yet.
        assert_eq!(
            Window::settled(at(36030), at(36200), None, minute, settle),
            None
        );
        let second = Duration::from_secs(1);
        assert_eq!(
            Window::settled(at(10), at(13), None, second, second),
            Some(Window { from: 10, to: 12 })
        );
        // The previous colour stopped taking traffic at 10:03:30: the window ends at 10:03:00.
        assert_eq!(
            Window::settled(at(36030), at(36600), Some(at(36210)), minute, settle),
            Some(Window {
                from: 36060,
                to: 36180
            })
        );
    }

    #[test]
    fn datapoints_add_up() {
        let mut s = Sample::default();
        absorb(&mut s, "req", &[100.0, 50.0]);
        absorb(&mut s, "e5", &[3.0]);
        absorb(&mut s, "conn", &[2.0]);
        absorb(&mut s, "p99", &[0.2, 0.4]);
        absorb(&mut s, "e4", &[]);
        assert_eq!(s.requests, 150);
        assert_eq!(s.errors(), 5);
        assert_eq!(s.target_4xx, 0);
        assert_eq!(s.p99, Some(0.4));
        assert_eq!(s.p50, None);
        assert!((s.error_rate() - 5.0 / 150.0).abs() < 1e-12);
    }
}
