//! Who we are: the caller identity every command checks before it changes anything.

use aws_config::SdkConfig;
use serde::Serialize;
use thiserror::Error;

use super::CallError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum IdentityError {
    #[error(
        "the credentials in use belong to account {actual} ({arn}), but environment {env} deploys to \
         account {expected}; use credentials or a role for {expected} (role_arn in the environment file)"
    )]
    WrongAccount {
        env: String,
        expected: String,
        actual: String,
        arn: String,
    },
    #[error(
        "cannot establish who is calling AWS: {0}; check the credentials (AWS_PROFILE, \
         AWS_ACCESS_KEY_ID, SSO login, or the CI role) and that they have not expired"
    )]
    Unknown(CallError),
}

/// GetCallerIdentity with `config`'s credentials.
pub async fn whoami(config: &SdkConfig) -> Result<Identity, IdentityError> {
    let region = config
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let out = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| IdentityError::Unknown(CallError::new("GetCallerIdentity", &region, &e)))?;
    Ok(Identity {
        account: out.account().unwrap_or_default().to_owned(),
        arn: out.arn().unwrap_or_default().to_owned(),
    })
}

/// Refuses unless `identity` is in `expected`'s account.
pub fn expect_account(identity: &Identity, expected: &str, env: &str) -> Result<(), IdentityError> {
    if identity.account == expected {
        Ok(())
    } else {
        Err(IdentityError::WrongAccount {
            env: env.to_owned(),
            expected: expected.to_owned(),
            actual: identity.account.clone(),
            arn: identity.arn.clone(),
        })
    }
}
