//! What `promote`, `plan`, `status` and `rollback` share: the release in the source registry and
//! its scan gate, the journal's latest promote, digests as people read them, and hooks.

use std::time::{Duration, Instant};

use super::{Env, Error};
use crate::aws::journal::Record;
use crate::aws::registry::{self, Registry, RegistryError, SourceImage};
use crate::aws::scan;
use crate::aws::secret::TestRoute;
use crate::config::Severity;

/// `sha256:0123456789ab`: enough of a digest to tell releases apart in a line of output.
pub fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

/// The digest an image reference is pinned to (`…@sha256:…`), if any.
pub fn digest_of(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, d)| d)
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
    let refused = |e: &dyn std::fmt::Display| {
        Error::Refused(format!("preflight refused; nothing was changed: {e}"))
    };
    let registry = Registry::from_ecr_for(
        &ecr,
        &src.region,
        Some(&src.account_id),
        env.registry_http.clone(),
    )
    .await
    .map_err(|e| refused(&e))?;
    let image = registry::resolve(&registry, &src.repository, version)
        .await
        .map_err(|e| match e {
            RegistryError::MissingTag { .. } => Error::Refused(e.to_string()),
            other => refused(&other),
        })?;
    if let (Some(threshold), false) = (env.plan.strategy.scan_threshold, allow_findings) {
        scan_gate(env, &ecr, &image, threshold).await?;
    }
    Ok(image)
}

/// The scan gate over every platform of the release, waiting up to `scan_wait` while ECR is
/// still scanning a fresh push (said as a live line), refusing at once on findings at or above
/// `threshold` or on a platform ECR cannot scan.
async fn scan_gate(
    env: &Env,
    ecr: &aws_sdk_ecr::Client,
    image: &SourceImage,
    threshold: Severity,
) -> Result<(), Error> {
    let src = &env.plan.source;
    let platforms = scan::platforms(image);
    let wait = env.plan.strategy.scan_wait;
    let deadline = Instant::now() + wait;
    let every = env
        .plan
        .strategy
        .poll
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut said = false;
    loop {
        let scans = futures_util::future::try_join_all(platforms.iter().map(|p| async move {
            let scan = scan::scan_of(ecr, &src.region, &src.repository, &p.digest).await?;
            Ok::<_, crate::aws::CallError>((p.clone(), scan))
        }))
        .await
        .map_err(|e| {
            Error::Refused(format!("preflight refused; cannot read scan findings: {e}"))
        })?;
        let waiting = match scan::verdict(&src.repository, &scans, threshold) {
            scan::Verdict::Pass => return Ok(()),
            scan::Verdict::Refuse(m) => return Err(Error::Refused(m)),
            scan::Verdict::Wait(w) => w,
        };
        if Instant::now() >= deadline {
            return Err(Error::Refused(format!(
                "{}@{} is still being scanned by ECR ({}) after {}; retry shortly, raise \
                 scan_wait in [strategy], or pass --allow-findings to promote it unscanned",
                src.repository,
                image.digest(),
                waiting.join(", "),
                humantime::format_duration(wait)
            )));
        }
        if !said {
            env.reporter.waiting(
                None,
                "scan",
                format!("ECR is scanning {} of {}", waiting.join(", "), image.tag),
                wait,
            );
            said = true;
        }
        tokio::time::sleep(every.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

/// The newest promote in the journal.
pub async fn latest_promote(env: &Env) -> Result<Option<Record>, Error> {
    let history = env
        .journal
        .history(1)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?;
    Ok(history.into_iter().next())
}

/// Runs a hook command with the deployment's facts in its environment; non-zero fails. With
/// `test`, the hook can reach the new colour through the test listener: the header's name is
/// in `BLUEGREEN_TEST_HEADER` and its secret value in `BLUEGREEN_TEST_HEADER_VALUE`.
pub async fn run_hook(
    env: &Env,
    argv: &[String],
    region: &str,
    version: &str,
    url: &str,
    name: &str,
    test: Option<&TestRoute>,
) -> Result<(), String> {
    env.reporter
        .event(Some(region), "hook", format!("{name}: {}", argv.join(" ")));
    let mut cmd = tokio::process::Command::new(&argv[0]);
    if let Some(t) = test {
        cmd.env("BLUEGREEN_TEST_HEADER", &t.header)
            .env("BLUEGREEN_TEST_HEADER_VALUE", t.value());
    }
    let out = cmd
        .args(&argv[1..])
        .env("BLUEGREEN_ENV", &env.plan.env)
        .env("BLUEGREEN_REGION", region)
        .env("BLUEGREEN_VERSION", version)
        .env("BLUEGREEN_URL", url)
        .env("BLUEGREEN_DEPLOYMENT", &env.deployment)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{name} hook {:?} could not start: {e}", argv[0]))?;
    if out.status.success() {
        return Ok(());
    }
    let mut tail = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    // A hook that traced its own commands (`set -x`, `curl -v`) may echo the secret.
    if let Some(t) = test {
        tail = tail.replace(t.value(), "<redacted>");
    }
    Err(format!(
        "{name} hook {:?} exited with {}: {tail}",
        argv[0], out.status
    ))
}
