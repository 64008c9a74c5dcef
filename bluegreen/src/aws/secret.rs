//! The test route's secret: the value of the header that lets a request through the test
//! listener's rule to the new colour. It lives in SSM Parameter Store (a SecureString that
//! Terraform creates in the lock's region) and is read once per promote; it is sent on test
//! probes and handed to hooks, and never printed, logged or journalled.

use std::fmt;

use thiserror::Error;

use super::CallError;
use crate::config::TestTraffic;

/// The header test traffic carries, with its secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct TestRoute {
    pub header: String,
    value: String,
}

impl TestRoute {
    pub fn new(header: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            header: header.into(),
            value: value.into(),
        }
    }

    /// The secret itself, for the one request header and the hooks' environment.
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Never the value: a `{:?}` in a log line or an error must not leak it.
impl fmt::Debug for TestRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TestRoute {{ header: {:?}, value: <redacted> }}",
            self.header
        )
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "the test route's secret {parameter} does not exist in {region}; apply terraform/ for this \
         environment (it creates the parameter), or fix [test_traffic].parameter in the \
         environment file"
    )]
    Missing { parameter: String, region: String },
    #[error(
        "the test route's secret {parameter} in {region} is empty or not a value an ALB rule can \
         match (16-128 letters and digits); set it again with Terraform"
    )]
    Unusable { parameter: String, region: String },
    #[error("reading the test route's secret {parameter}: {source}")]
    Call {
        parameter: String,
        #[source]
        source: CallError,
    },
}

/// Reads the secret with decryption from `ssm` (a client for the lock's region).
pub async fn read(
    ssm: &aws_sdk_ssm::Client,
    region: &str,
    t: &TestTraffic,
) -> Result<TestRoute, SecretError> {
    let out = ssm
        .get_parameter()
        .name(&t.parameter)
        .with_decryption(true)
        .send()
        .await;
    let value = match out {
        Ok(out) => out
            .parameter()
            .and_then(|p| p.value())
            .unwrap_or_default()
            .to_owned(),
        Err(e) => {
            let err = CallError::new("GetParameter", region, &e);
            return Err(if err.is("ParameterNotFound") {
                SecretError::Missing {
                    parameter: t.parameter.clone(),
                    region: region.to_owned(),
                }
            } else {
                SecretError::Call {
                    parameter: t.parameter.clone(),
                    source: err,
                }
            });
        }
    };
    if !usable(&value) {
        return Err(SecretError::Unusable {
            parameter: t.parameter.clone(),
            region: region.to_owned(),
        });
    }
    Ok(TestRoute::new(&t.header, value))
}

/// An ALB http-header condition compares case-insensitively and treats `*` and `?` as
/// wildcards: a value of letters and digits, long enough to guess at no rate an ALB allows.
fn usable(v: &str) -> bool {
    (16..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let t = TestRoute::new("X-Bluegreen-Test", "s3cretvalue0123456789");
        let shown = format!("{t:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("X-Bluegreen-Test"), "{shown}");
    }

    #[test]
    fn only_long_alphanumeric_values_are_usable() {
        for (v, ok) in [
            ("abcdefghij0123456789", true),
            ("short", false),
            ("", false),
            ("abcdefghij012345678*", false),
            ("abcdefghij 123456789", false),
            (&"a".repeat(128), true),
            (&"a".repeat(129), false),
        ] {
            assert_eq!(usable(v), ok, "{v:?}");
        }
    }
}
