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

/// Whether `identity` is a session of `role_arn` (`arn:aws:sts::<acct>:assumed-role/<name>/<session>`).
pub fn is_role(identity: &Identity, role_arn: &str) -> bool {
    let Some((_, name)) = role_arn.split_once(":role/") else {
        return false;
    };
    let name = name.rsplit('/').next().unwrap_or(name);
    role_arn.contains(&format!("::{}:", identity.account))
        && identity
            .arn
            .split_once(":assumed-role/")
            .is_some_and(|(_, rest)| rest.split('/').next() == Some(name))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_of_the_role_is_recognised() {
        let me = Identity {
            account: "222222222222".into(),
            arn: "arn:aws:sts::222222222222:assumed-role/bluegreen-deploy-prod/GitHubActions"
                .into(),
        };
        assert!(is_role(
            &me,
            "arn:aws:iam::222222222222:role/bluegreen-deploy-prod"
        ));
        assert!(is_role(
            &me,
            "arn:aws:iam::222222222222:role/ci/bluegreen-deploy-prod"
        ));
        assert!(!is_role(&me, "arn:aws:iam::222222222222:role/other"));
        assert!(!is_role(
            &me,
            "arn:aws:iam::333333333333:role/bluegreen-deploy-prod"
        ));
        let user = Identity {
            account: "222222222222".into(),
            arn: "arn:aws:iam::222222222222:user/alice".into(),
        };
        assert!(!is_role(
            &user,
            "arn:aws:iam::222222222222:role/bluegreen-deploy-prod"
        ));
    }
}
