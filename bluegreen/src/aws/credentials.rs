//! How long the credentials in use last, and a source that never runs out in GitHub Actions.
//!
//! A promote can outlive one STS session (a prod rollout with long bakes runs for an hour or
//! more). Sources that refresh themselves (an assumed role over long-lived or refreshing
//! credentials, a profile, SSO, web identity, GitHub's OIDC below) are fine for any length; a
//! fixed session in the environment (`AWS_SESSION_TOKEN`, as `configure-aws-credentials` leaves
//! it) ends when it ends, and a rollout that would outlast it is refused up front.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, error::CredentialsError, future};

/// What bluegreen knows of how long its credentials last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifetime {
    /// Renewed before they expire, by `how`.
    Refreshing(&'static str),
    /// Long-lived access keys: they do not expire.
    Unlimited,
    /// A fixed session: it ends at `expires` when known (`AWS_CREDENTIAL_EXPIRATION`, RFC 3339,
    /// as the AWS SDK for JavaScript reads it).
    Fixed { expires: Option<SystemTime> },
}

/// What `Lifetime::Refreshing` says of the GitHub Actions OIDC provider.
pub const GITHUB_OIDC: &str = "GitHub Actions OIDC";

/// The variable that says when fixed session credentials in the environment expire.
pub const EXPIRATION_VAR: &str = "AWS_CREDENTIAL_EXPIRATION";

/// The lifetime of the standard chain's credentials, from what the environment shows: the
/// chain's first source is the environment variables when `AWS_ACCESS_KEY_ID` is set; anything
/// else (profile, SSO, process, web identity) refreshes itself.
pub fn of_environment(var: impl Fn(&str) -> Option<String>) -> Lifetime {
    // Blank counts as unset, as the SDK reads it (configure-aws-credentials clears with '').
    let var = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    if var("AWS_ACCESS_KEY_ID").is_none() {
        return Lifetime::Refreshing("the AWS profile, SSO or web identity");
    }
    if var("AWS_SESSION_TOKEN").is_none() {
        return Lifetime::Unlimited;
    }
    let expires = var(EXPIRATION_VAR).and_then(|v| humantime::parse_rfc3339_weak(v.trim()).ok());
    Lifetime::Fixed { expires }
}

/// An assumed role renews its session with the credentials it was assumed with: it lasts as long
/// as they do.
pub fn assumed_over(base: Lifetime) -> Lifetime {
    match base {
        Lifetime::Fixed { expires } => Lifetime::Fixed { expires },
        _ => Lifetime::Refreshing("the assumed role's provider"),
    }
}

/// A warning for a fixed session whose end is unknown, when the rollout may outlast the one
/// hour `configure-aws-credentials` gives by default.
pub fn unknown_end(lifetime: &Lifetime, worst: Duration) -> Option<String> {
    let Lifetime::Fixed { expires: None } = lifetime else {
        return None;
    };
    (worst > Duration::from_secs(3600)).then(|| {
        format!(
            "the AWS credentials in use are a fixed session whose end bluegreen cannot see, and this \
             rollout may take up to {}; sessions from configure-aws-credentials last 1h unless \
             role-duration-seconds says otherwise: export {EXPIRATION_VAR} so bluegreen can check, \
             or use credentials that refresh",
            humantime::format_duration(Duration::from_secs(worst.as_secs()))
        )
    })
}

/// Refuses a rollout that may run for up to `worst` on credentials that end before it could
/// finish; says the numbers and what to do.
pub fn check(lifetime: &Lifetime, worst: Duration, now: SystemTime) -> Result<(), String> {
    let Lifetime::Fixed {
        expires: Some(expires),
    } = lifetime
    else {
        return Ok(());
    };
    let left = expires.duration_since(now).unwrap_or(Duration::ZERO);
    if left >= worst {
        return Ok(());
    }
    let round = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
    Err(format!(
        "the AWS credentials in use are a fixed session ending at {} (in {}), but this rollout may \
         take up to {} (every wave's ready timeout and bakes, plus the copy and cleanup); use \
         credentials that refresh (give the GitHub job `id-token: write` so bluegreen assumes the \
         role through OIDC itself, with role_arn in the environment file, or a profile/SSO), or a longer session (configure-aws-credentials \
         `role-duration-seconds: {}` or more, within the role's max_session_duration)",
        humantime::format_rfc3339_seconds(*expires),
        round(left),
        round(worst),
        (worst.as_secs().div_ceil(60) * 60).min(43_200)
    ))
}

/// GitHub Actions' OIDC token, exchanged for a session of `role_arn` with
/// AssumeRoleWithWebIdentity, again whenever the session nears its end: a rollout of any length
/// never depends on one session. Available in a job with `permissions: id-token: write`.
#[derive(Debug, Clone)]
pub struct GithubOidc {
    request_url: String,
    request_token: String,
    role_arn: String,
    session: String,
    sts: aws_sdk_sts::Client,
    http: reqwest::Client,
}

impl GithubOidc {
    /// From `ACTIONS_ID_TOKEN_REQUEST_URL` and `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, when GitHub set
    /// them.
    pub fn from_env(base: &SdkConfig, role_arn: &str, session: &str) -> Option<Self> {
        let request_url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL").ok()?;
        let request_token = std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN").ok()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .ok()?;
        Some(Self {
            request_url,
            request_token,
            role_arn: role_arn.to_owned(),
            session: super::session_name(session),
            sts: aws_sdk_sts::Client::new(base),
            http,
        })
    }

    /// `base` acting as the role through this provider (the SDK caches and renews it).
    pub fn config(self, base: &SdkConfig) -> SdkConfig {
        base.to_builder()
            .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(self))
            .build()
    }

    async fn token(&self) -> Result<String, CredentialsError> {
        let sep = if self.request_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{sep}audience=sts.amazonaws.com", self.request_url);
        let fail = |what: String| {
            CredentialsError::provider_error(format!("GitHub's OIDC token request {what}"))
        };
        let res = self
            .http
            .get(&url)
            .bearer_auth(&self.request_token)
            .send()
            .await
            .map_err(|e| fail(format!("failed: {e}")))?;
        if !res.status().is_success() {
            return Err(fail(format!("answered HTTP {}", res.status())));
        }
        let body: serde_json::Value = res
            .json()
            .await
            .map_err(|e| fail(format!("answered no JSON: {e}")))?;
        body["value"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| fail("answered no `value`".into()))
    }

    async fn load(&self) -> provider::Result {
        let token = self.token().await?;
        let out = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session)
            .web_identity_token(token)
            .send()
            .await
            .map_err(|e| {
                CredentialsError::provider_error(format!(
                    "AssumeRoleWithWebIdentity into {} failed: {}",
                    self.role_arn,
                    super::error_chain(&e)
                ))
            })?;
        let c = out.credentials().ok_or_else(|| {
            CredentialsError::provider_error("AssumeRoleWithWebIdentity returned no credentials")
        })?;
        let expires = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expires,
            "GitHubActionsOidc",
        ))
    }
}

impl ProvideCredentials for GithubOidc {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_environment_says_how_long_credentials_last() {
        assert!(matches!(of_environment(env(&[])), Lifetime::Refreshing(_)));
        assert_eq!(
            of_environment(env(&[("AWS_ACCESS_KEY_ID", "AKID")])),
            Lifetime::Unlimited
        );
        assert_eq!(
            of_environment(env(&[
                ("AWS_ACCESS_KEY_ID", "A"),
                ("AWS_SESSION_TOKEN", "t")
            ])),
            Lifetime::Fixed { expires: None }
        );
        let at = humantime::parse_rfc3339("2026-12-01T21:00:00Z").unwrap();
        assert_eq!(
            of_environment(env(&[
                ("AWS_ACCESS_KEY_ID", "A"),
                ("AWS_SESSION_TOKEN", "t"),
                ("AWS_CREDENTIAL_EXPIRATION", "2026-12-01T21:00:00Z"),
            ])),
            Lifetime::Fixed { expires: Some(at) }
        );
        assert_eq!(
            assumed_over(Lifetime::Fixed { expires: Some(at) }),
            Lifetime::Fixed { expires: Some(at) }
        );
        assert!(matches!(
            assumed_over(Lifetime::Unlimited),
            Lifetime::Refreshing(_)
        ));
    }

    #[test]
    fn a_rollout_longer_than_a_fixed_session_is_refused_with_the_numbers() {
        let now = humantime::parse_rfc3339("2026-12-01T20:00:00Z").unwrap();
        let hour = Duration::from_secs(3600);
        let ends = |after: u64| Lifetime::Fixed {
            expires: Some(now + Duration::from_secs(after)),
        };
        let cases = [
            (Lifetime::Refreshing("x"), true),
            (Lifetime::Unlimited, true),
            (Lifetime::Fixed { expires: None }, true),
            (ends(3600), true),
            (ends(3599), false),
            (ends(0), false),
        ];
        for (lifetime, ok) in cases {
            assert_eq!(check(&lifetime, hour, now).is_ok(), ok, "{lifetime:?}");
        }
        let err = check(&ends(2520), hour + Duration::from_secs(300), now).unwrap_err();
        assert!(
            err.contains("ending at 2026-12-01T20:42:00Z (in 42m)")
                && err.contains("up to 1h 5m")
                && err.contains("role-duration-seconds: 3900"),
            "{err}"
        );
    }
}
