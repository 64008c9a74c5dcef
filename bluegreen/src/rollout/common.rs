//! What `promote`, `plan`, `status` and `rollback` share: the release in the source registry,
//! digests as people read them, and hooks.

use super::{Env, Error};
use crate::aws::registry::{self, Registry, RegistryError, SourceImage};

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

/// Runs a hook command with the deployment's facts in its environment; non-zero fails.
pub async fn run_hook(
    env: &Env,
    argv: &[String],
    region: &str,
    version: &str,
    url: &str,
    name: &str,
) -> Result<(), String> {
    env.reporter
        .event(Some(region), "hook", format!("{name}: {}", argv.join(" ")));
    let out = tokio::process::Command::new(&argv[0])
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
    let tail = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    Err(format!(
        "{name} hook {:?} exited with {}: {tail}",
        argv[0], out.status
    ))
}
