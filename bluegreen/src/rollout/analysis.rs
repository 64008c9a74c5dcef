//! The traffic analysis: during every bake, the new colour's real traffic against the previous
//! colour's, read from the ALB's metrics for the same window (one `GetMetricData` per region per
//! new window), and a verdict: pass, fail, or not enough data yet.
//!
//! The verdict (`judge`) is a pure function of the two samples and the policy:
//! - Nothing is judged until each colour has `min_requests` in the window.
//! - **Errors** (target 5xx plus connection errors) fail the new colour when its error rate is
//!   higher than the previous colour's by more than `error_increase_pct` percentage points *and*
//!   the difference is significant. The test is exact and conditional: if both colours failed at
//!   the same rate, each of the E failed requests would be the new colour's with probability
//!   q = new requests / all requests, so the chance of the new colour having at least its count
//!   is the binomial tail P(Bin(E, q) ≥ e_new). That holds for small counts, where a normal
//!   approximation does not (one error in 100 requests against none in 900 is a 1-in-10 event,
//!   not a 3-sigma one).
//!   (For two error *proportions* the exact conditional test is Fisher's; with requests counted
//!   as arrivals this is its Poisson form, slightly more conservative.)
//! - A bake looks at every new window, and looking often would find a chance difference sooner
//!   or later. So a look before a step's end (`Look::Interim`) fails only at p < 0.001 (the
//!   Haybittle–Peto rule); the look at a step's end (`Look::Final`) at p < (1 − `confidence`) /
//!   the number of steps (Bonferroni over the step ends), never looser than an interim look.
//! - **Latency** fails when the new colour's median (every look) or p99 (a step's end only: a
//!   p99 of a hundred requests is their second slowest) exceeds the previous colour's times
//!   `latency_ratio` and by more than `latency_increase` (both: a ratio alone would fail 1 ms →
//!   2 ms).

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use super::preflight::RegionState;
use crate::aws::elb::Colour;
use crate::aws::metrics::{self, Sample, Window};
use crate::config::Analysis;

/// p-value an interim look must beat to fail a release (Haybittle–Peto).
pub const INTERIM_P: f64 = 0.001;

/// Whether a look is the bake's last (its own threshold) or one before it (a stricter one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Interim,
    Final,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail(String),
    NotEnough(String),
}

/// The p-value a look must beat to fail a release: a step's end shares 1 − `confidence` with the
/// other `steps` ends; a look before it uses the Haybittle–Peto bar, or the step's end's if
/// that is stricter.
pub fn alpha(policy: &Analysis, look: Look, steps: usize) -> f64 {
    let end = (1.0 - policy.confidence) / steps.max(1) as f64;
    match look {
        Look::Final => end,
        Look::Interim => INTERIM_P.min(end),
    }
}

/// The verdict on the new colour's sample against the previous colour's, at a look of a
/// rollout of `steps` steps.
pub fn judge(
    policy: &Analysis,
    new: &Sample,
    previous: &Sample,
    look: Look,
    steps: usize,
) -> Verdict {
    if new.requests < policy.min_requests || previous.requests < policy.min_requests {
        return Verdict::NotEnough(format!(
            "{} and {} requests in the window; each colour needs {} (min_requests)",
            new.requests, previous.requests, policy.min_requests
        ));
    }
    let alpha = alpha(policy, look, steps);
    let increase = (new.error_rate() - previous.error_rate()) * 100.0;
    if increase > policy.error_increase_pct {
        let p = worse_by_chance(
            new.errors(),
            new.requests,
            previous.errors(),
            previous.requests,
        );
        if p < alpha {
            return Verdict::Fail(format!(
                "error rate {:.2}% against {:.2}% (+{increase:.2} points, more than {} allowed; \
                 p = {} < {})",
                new.error_rate() * 100.0,
                previous.error_rate() * 100.0,
                policy.error_increase_pct,
                show_p(p),
                show_p(alpha),
            ));
        }
    }
    // The median at every look: a release slower on every answer shows there from the first
    // hundred requests. The p99 at a step's end only: the tail needs the step's requests.
    let mut quantiles = vec![("p50", new.p50, previous.p50)];
    if look == Look::Final {
        quantiles.push(("p99", new.p99, previous.p99));
    }
    for (name, n, p) in quantiles {
        if let Some(why) = slower(policy, name, n, p) {
            return Verdict::Fail(why);
        }
    }
    Verdict::Pass
}

/// Whether the new colour's `name` latency `new` is worse than `previous` by both the ratio and
/// the floor.
fn slower(
    policy: &Analysis,
    name: &str,
    new: Option<f64>,
    previous: Option<f64>,
) -> Option<String> {
    let (n, p) = (new?, previous?);
    let floor = policy.latency_increase.as_secs_f64();
    (n > p * policy.latency_ratio && n - p > floor).then(|| {
        format!(
            "{name} latency {} against {} (more than {}× and +{})",
            ms(n),
            ms(p),
            policy.latency_ratio,
            ms(floor)
        )
    })
}

/// P(Bin(errors, q) ≥ new_errors) with q = new_requests / all requests: the chance that the new
/// colour has at least `new_errors` of all the errors if both colours fail at the same rate.
pub fn worse_by_chance(
    new_errors: u64,
    new_requests: u64,
    old_errors: u64,
    old_requests: u64,
) -> f64 {
    let total = new_errors + old_errors;
    let all = new_requests + old_requests;
    if new_errors == 0 || all == 0 {
        return 1.0;
    }
    let q = new_requests as f64 / all as f64;
    if q >= 1.0 {
        return 1.0;
    }
    // log pmf(i) by the recurrence pmf(i+1) = pmf(i) · (E−i)/(i+1) · q/(1−q), summed in log space
    // (pmf(0) = (1−q)^E underflows for large E).
    let (lq, lnq) = (q.ln(), (1.0 - q).ln());
    let mut log_pmf = total as f64 * lnq;
    let mut terms = Vec::new();
    for i in 0..=total {
        if i >= new_errors {
            terms.push(log_pmf);
        }
        if i < total {
            log_pmf += ((total - i) as f64).ln() - ((i + 1) as f64).ln() + lq - lnq;
        }
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - top).exp()).sum();
    (top + sum.ln()).exp().min(1.0)
}

fn show_p(p: f64) -> String {
    if p < 0.0001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1000.0)
}

/// One look's numbers, both colours side by side, and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub new_colour: Colour,
    pub previous_colour: Colour,
    pub new: Sample,
    pub previous: Sample,
    /// Seconds of metrics the window covers.
    pub window_seconds: u64,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |c: Colour, s: &Sample| {
            format!(
                "{c} {} req, {:.2}% errors, p99 {}",
                s.requests,
                s.error_rate() * 100.0,
                s.p99.map_or("-".to_owned(), ms)
            )
        };
        write!(
            f,
            "{} | {} over {}s",
            side(self.new_colour, &self.new),
            side(self.previous_colour, &self.previous),
            self.window_seconds
        )
    }
}

/// One region's analysis through a rollout: the window starts when production first reaches
/// the new colour in this run and grows with every settled period, until the previous colour
/// stops taking traffic (the step to 100%): only traffic both colours served at once is compared.
pub struct Watch {
    start: SystemTime,
    until: Option<SystemTime>,
    steps: usize,
    /// The last window read, its comparison, and the look that read it.
    last: Option<(Window, Comparison, Look)>,
}

impl Watch {
    /// `steps`: how many step ends the rollout has (each gets a share of 1 − confidence).
    pub fn new(start: SystemTime, steps: usize) -> Self {
        Self {
            start,
            until: None,
            steps,
            last: None,
        }
    }

    /// The previous colour takes no more traffic from `at` (production moved to 100%).
    pub fn previous_stopped(&mut self, at: SystemTime) {
        self.until.get_or_insert(at);
    }

    /// Whether both colours took traffic at once in this run (not so when it resumed at 100%).
    pub fn compares(&self, policy: &Analysis) -> bool {
        self.until
            .is_none_or(|u| u.duration_since(self.start).unwrap_or_default() >= policy.period)
    }

    /// The latest comparison, if any window has settled.
    pub fn last(&self) -> Option<&Comparison> {
        self.last.as_ref().map(|(_, c, _)| c)
    }

    /// What `history` keeps: the last comparison and its verdict, or why there was none.
    pub fn summary(&self, inconclusive: Option<&str>) -> String {
        match (self.last(), inconclusive) {
            (Some(c), Some(note)) => format!("{c}: inconclusive, {note}"),
            (Some(c), None) => format!("{c}: {}", verdict_word(&c.verdict)),
            (None, Some(note)) => format!("no metrics: inconclusive, {note}"),
            (None, None) => "no metrics settled".to_owned(),
        }
    }

    /// Looks at the settled window: `None` until one period has settled. A new window is
    /// fetched; one already fetched is fetched again once, at the first step-end look that finds
    /// it (CloudWatch may still add late datapoints to it), so a bake extended for traffic does
    /// not re-read an unchanged window every poll. `fresh`: the window is new since the last look.
    pub async fn look(
        &mut self,
        s: &RegionState,
        policy: &Analysis,
        look: Look,
    ) -> Result<Option<Looked>, String> {
        let now = SystemTime::now();
        let Some(window) =
            Window::settled(self.start, now, self.until, policy.period, policy.settle)
        else {
            return Ok(None);
        };
        let (new_colour, previous_colour) = (s.idle(), s.live);
        let fresh = self.last.as_ref().is_none_or(|(w, _, _)| *w != window);
        let (new, previous) = match &self.last {
            // Read again once, at the first step-end look after interim ones, for datapoints
            // CloudWatch added late; otherwise the window's numbers stand.
            Some((_, c, read)) if !fresh && (look == Look::Interim || *read == Look::Final) => {
                (c.new, c.previous)
            }
            _ => {
                let [new, previous] = metrics::compare(
                    &s.c,
                    &s.topo.load_balancer_arn,
                    [
                        s.topo.target_group(new_colour),
                        s.topo.target_group(previous_colour),
                    ],
                    window,
                )
                .await
                .map_err(|e| e.to_string())?;
                (new, previous)
            }
        };
        let comparison = Comparison {
            new_colour,
            previous_colour,
            new,
            previous,
            window_seconds: window.seconds(),
            verdict: judge(policy, &new, &previous, look, self.steps),
        };
        let read = match &self.last {
            Some((_, _, read)) if !fresh && look == Look::Interim => *read,
            _ => look,
        };
        self.last = Some((window, comparison.clone(), read));
        Ok(Some(Looked { comparison, fresh }))
    }
}

/// One look: the comparison, and whether its window is new.
pub struct Looked {
    pub comparison: Comparison,
    pub fresh: bool,
}

fn verdict_word(v: &Verdict) -> String {
    match v {
        Verdict::Pass => "pass".into(),
        Verdict::Fail(why) => format!("fail, {why}"),
        Verdict::NotEnough(why) => format!("not enough data, {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample whose median is 1 ms and whose p99 is `p99_ms`.
    fn sample(requests: u64, errors: u64, p99_ms: u64) -> Sample {
        Sample {
            requests,
            target_5xx: errors,
            p50: Some(0.001),
            p99: Some(p99_ms as f64 / 1000.0),
            ..Sample::default()
        }
    }

    fn kind(v: &Verdict) -> &'static str {
        match v {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::NotEnough(_) => "not-enough",
        }
    }

    /// (new requests, errors, p99 ms; previous requests, errors, p99 ms; look; verdict; why)
    type Case = (
        u64,
        u64,
        u64,
        u64,
        u64,
        u64,
        Look,
        &'static str,
        &'static str,
    );

    fn check(cases: &[Case]) {
        let p = Analysis::default();
        for &(n, ne, np, o, oe, op, look, want, why) in cases {
            let got = judge(&p, &sample(n, ne, np), &sample(o, oe, op), look, 1);
            assert_eq!(kind(&got), want, "{why}: {got:?}");
        }
    }

    #[test]
    #[rustfmt::skip] // one row per case
    fn error_verdicts() {
        use Look::*;
        check(&[
            (50, 0, 5, 900, 0, 5, Final, "not-enough", "new colour under min_requests"),
            (500, 0, 5, 60, 0, 5, Final, "not-enough", "previous under min_requests"),
            (100, 0, 5, 900, 0, 5, Final, "pass", "no errors anywhere"),
            (100, 1, 5, 900, 0, 5, Final, "pass", "1 error in 100 against none: p = 0.1"),
            (100, 5, 5, 900, 0, 5, Final, "fail", "5% against none: p = 1e-5"),
            (100, 5, 5, 900, 0, 5, Interim, "fail", "1e-5 beats the interim bar too"),
            (100, 3, 5, 900, 0, 5, Final, "fail", "3 of 100 against none: p = 0.001"),
            (150, 3, 5, 850, 0, 5, Interim, "pass", "p = 0.0034: not below 0.001"),
            (150, 3, 5, 850, 0, 5, Final, "fail", "p = 0.0034: below the final 0.01"),
            (1000, 12, 5, 9000, 90, 5, Final, "pass", "1.2% against 1.0%: within 0.5 points"),
            (1000, 30, 5, 9000, 90, 5, Final, "fail", "3% against 1%: significant"),
            (200, 6, 5, 200, 2, 5, Final, "pass", "3% against 1% on 200 each: chance"),
        ]);
    }

    #[test]
    #[rustfmt::skip] // one row per case
    fn latency_verdicts() {
        use Look::*;
        check(&[
            (100, 0, 320, 900, 0, 20, Final, "fail", "+300 ms at p99"),
            (100, 0, 120, 900, 0, 20, Final, "fail", "+100 ms at p99"),
            (100, 0, 320, 900, 0, 20, Interim, "pass", "latency waits for the step's end"),
            (100, 0, 2, 900, 0, 1, Final, "pass", "2 ms against 1 ms: under the 50 ms floor"),
            (100, 0, 140, 900, 0, 100, Final, "pass", "1.4×: under the ratio"),
            (100, 0, 160, 900, 0, 100, Final, "fail", "1.6× and +60 ms"),
        ]);
        // A median 300 ms slower fails at any look.
        let p = Analysis::default();
        let slow = Sample { p50: Some(0.305), ..sample(100, 0, 320) };
        for look in [Look::Interim, Look::Final] {
            let v = judge(&p, &slow, &sample(900, 0, 20), look, 1);
            assert!(matches!(&v, Verdict::Fail(why) if why.starts_with("p50 latency 305 ms against 1 ms")), "{v:?}");
        }
    }

    #[test]
    fn a_failure_names_both_colours_numbers_and_the_threshold() {
        let p = Analysis::default();
        let v = judge(&p, &sample(100, 5, 5), &sample(900, 0, 5), Look::Final, 1);
        let Verdict::Fail(why) = v else {
            panic!("{v:?}")
        };
        assert!(why.contains("5.00% against 0.00%"), "{why}");
        assert!(why.contains("more than 0.5 allowed"), "{why}");
        assert!(why.contains("< 0.0100"), "{why}");
    }

    #[test]
    fn step_ends_share_the_confidence_and_no_look_is_looser_than_an_interim_one() {
        let p = Analysis::default();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(alpha(&p, Look::Final, 1), 0.01));
        assert!(close(alpha(&p, Look::Final, 3), 0.01 / 3.0));
        assert!(close(alpha(&p, Look::Interim, 3), INTERIM_P));
        let strict = Analysis {
            confidence: 0.9999,
            ..Analysis::default()
        };
        assert!(close(alpha(&strict, Look::Final, 1), 0.0001));
        assert!(close(alpha(&strict, Look::Interim, 1), 0.0001));
        // Against none in 850, 5 errors in 150 (p = 7.6e-5) fail every step end of a 4-step
        // rollout; 3 (p = 0.0034) fail a one-step rollout's end (0.01) but not a 4-step one's
        // (0.0025).
        let fails = |e: u64, steps: usize| {
            matches!(
                judge(
                    &p,
                    &sample(150, e, 5),
                    &sample(850, 0, 5),
                    Look::Final,
                    steps
                ),
                Verdict::Fail(_)
            )
        };
        assert!(fails(5, 4));
        assert!(fails(3, 1));
        assert!(!fails(3, 4));
    }

    #[test]
    fn the_tail_is_exact_for_small_counts() {
        // All of E errors on the new colour: q^E.
        assert!((worse_by_chance(1, 100, 0, 900) - 0.1).abs() < 1e-12);
        assert!((worse_by_chance(2, 100, 0, 900) - 0.01).abs() < 1e-12);
        // Half the traffic, 1 of 2 errors: P(X ≥ 1) = 1 − 0.25.
        assert!((worse_by_chance(1, 100, 1, 100) - 0.75).abs() < 1e-12);
        assert_eq!(worse_by_chance(0, 100, 5, 900), 1.0);
        // Large counts neither underflow nor exceed 1.
        let p = worse_by_chance(600, 10_000, 4_000, 90_000);
        assert!(p > 0.0 && p < 1e-6, "{p}");
        assert!(worse_by_chance(400, 10_000, 3_600, 90_000) <= 1.0);
    }

    #[test]
    fn a_comparison_reads_side_by_side() {
        let c = Comparison {
            new_colour: Colour::Green,
            previous_colour: Colour::Blue,
            new: sample(100, 5, 312),
            previous: sample(900, 0, 4),
            window_seconds: 120,
            verdict: Verdict::Pass,
        };
        assert_eq!(
            c.to_string(),
            "green 100 req, 5.00% errors, p99 312 ms | blue 900 req, 0.00% errors, p99 4 ms over 120s"
        );
    }
}
