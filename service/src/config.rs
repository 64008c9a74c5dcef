//! The service's configuration, read once from the environment and validated before anything binds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use thiserror::Error;

use crate::cors::Cors;

/// Everything the service needs to know about where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub bind: SocketAddr,
    pub info: AppInfo,
    /// How long in-flight requests may take to finish after SIGTERM. ECS waits 30 s
    /// (`stopTimeout`) before SIGKILL, so the default stays well below it.
    pub drain_timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    /// Origins whose pages may read the answers (`CORS_ALLOWED_ORIGINS`); `None`: no CORS.
    pub cors: Option<Cors>,
}

/// What every answer tells the caller about the release that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub version: String,
    pub region: String,
    pub instance: String,
}

/// Per-client token bucket: `per_second` requests refill each second, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    ///
    /// Variables: `PORT`, `BIND_ADDR`, `APP_VERSION`, `AWS_REGION` (or `AWS_DEFAULT_REGION`),
    /// `HOSTNAME`, `DRAIN_TIMEOUT`, `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`,
    /// `CORS_ALLOWED_ORIGINS`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // An empty variable is treated as unset: ECS task definitions and shells both produce them.
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let port =
            match get("PORT") {
                None => DEFAULT_PORT,
                Some(v) => v.trim().parse::<u16>().ok().filter(|p| *p != 0).ok_or(
                    ConfigError::Invalid {
                        name: "PORT",
                        value: v,
                        expected: "a TCP port number from 1 to 65535",
                    },
                )?,
            };
        let ip = match get("BIND_ADDR") {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(v) => v
                .trim()
                .parse::<IpAddr>()
                .map_err(|_| ConfigError::Invalid {
                    name: "BIND_ADDR",
                    value: v,
                    expected: "an IP address such as 0.0.0.0 or 127.0.0.1",
                })?,
        };

        let version = get("APP_VERSION").unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        // The version travels in the `x-app-version` header, so it must be a valid header value.
        if version.len() > 128 || !version.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::Invalid {
                name: "APP_VERSION",
                value: version,
                expected: "at most 128 printable ASCII characters without spaces, e.g. v1.2.0",
            });
        }
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "local".to_owned());
        let instance = get("HOSTNAME")
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_owned());

        let drain_timeout = match get("DRAIN_TIMEOUT") {
            None => DEFAULT_DRAIN,
            Some(v) => humantime::parse_duration(v.trim())
                .ok()
                .filter(|d| *d <= Duration::from_secs(3600))
                .ok_or(ConfigError::Invalid {
                    name: "DRAIN_TIMEOUT",
                    value: v,
                    expected: "a duration such as 10s or 500ms, at most 1h",
                })?,
        };

        let positive =
            |name: &'static str| -> Result<Option<u32>, ConfigError> {
                get(name)
                    .map(|v| {
                        v.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or(
                            ConfigError::Invalid {
                                name,
                                value: v,
                                expected: "a whole number greater than 0",
                            },
                        )
                    })
                    .transpose()
            };
        let rate_limit = match (
            positive("RATE_LIMIT_PER_SECOND")?,
            positive("RATE_LIMIT_BURST")?,
        ) {
            (None, None) => None,
            (Some(per_second), burst) => Some(RateLimit {
                per_second,
                burst: burst.unwrap_or(per_second.saturating_mul(2)),
            }),
            (None, Some(burst)) => {
                return Err(ConfigError::Invalid {
                    name: "RATE_LIMIT_BURST",
                    value: burst.to_string(),
                    expected: "to be set together with RATE_LIMIT_PER_SECOND, which turns rate limiting on",
                });
            }
        };

        let cors = match get("CORS_ALLOWED_ORIGINS") {
            None => None,
            Some(v) => Some(Cors::parse(&v).map_err(|_| ConfigError::Invalid {
                name: "CORS_ALLOWED_ORIGINS",
                value: v,
                expected: "* or a comma-separated list of origins as browsers send them, e.g. \
                           https://app.example.com,http://localhost:3000 (no path, no trailing slash)",
            })?),
        };

        Ok(Config {
            bind: SocketAddr::new(ip, port),
            info: AppInfo {
                version,
                region,
                instance,
            },
            drain_timeout,
            rate_limit,
            cors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let c = load(&[("HOSTNAME", "h1")]).unwrap();
        assert_eq!(c.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(c.info.region, "local");
        assert_eq!(c.info.instance, "h1");
        assert_eq!(c.drain_timeout, Duration::from_secs(10));
        assert_eq!(c.rate_limit, None);
        assert_eq!(c.cors, None);
    }

    #[test]
    fn reads_every_variable() {
        let c = load(&[
            ("PORT", "9000"),
            ("BIND_ADDR", "127.0.0.1"),
            ("APP_VERSION", "v1.2.0"),
            ("AWS_REGION", "eu-west-1"),
            ("HOSTNAME", "task-1"),
            ("DRAIN_TIMEOUT", "2500ms"),
            ("RATE_LIMIT_PER_SECOND", "5"),
            ("CORS_ALLOWED_ORIGINS", "https://app.example.com"),
        ])
        .unwrap();
        assert_eq!(
            c.cors,
            Some(Cors::Origins(vec!["https://app.example.com".into()]))
        );
        assert_eq!(c.bind, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.info.version, "v1.2.0");
        assert_eq!(c.info.region, "eu-west-1");
        assert_eq!(c.drain_timeout, Duration::from_millis(2500));
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                per_second: 5,
                burst: 10
            })
        );
    }

    #[test]
    fn falls_back_to_aws_default_region() {
        let c = load(&[("AWS_DEFAULT_REGION", "ap-southeast-2")]).unwrap();
        assert_eq!(c.info.region, "ap-southeast-2");
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_allowed() {
        for (vars, name) in [
            (vec![("PORT", "abc")], "PORT"),
            (vec![("PORT", "0")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("BIND_ADDR", "localhost:1")], "BIND_ADDR"),
            (vec![("APP_VERSION", "v1 2")], "APP_VERSION"),
            (vec![("DRAIN_TIMEOUT", "soon")], "DRAIN_TIMEOUT"),
            (vec![("DRAIN_TIMEOUT", "2h")], "DRAIN_TIMEOUT"),
            (
                vec![("RATE_LIMIT_PER_SECOND", "-1")],
                "RATE_LIMIT_PER_SECOND",
            ),
            (vec![("RATE_LIMIT_BURST", "3")], "RATE_LIMIT_BURST"),
            (
                vec![("CORS_ALLOWED_ORIGINS", "https://a.example.com/")],
                "CORS_ALLOWED_ORIGINS",
            ),
        ] {
            let err = load(&vars).unwrap_err();
            let ConfigError::Invalid { name: got, .. } = &err;
            assert_eq!(*got, name, "{vars:?} blamed the wrong variable: {err}");
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn empty_values_count_as_unset() {
        let c = load(&[("PORT", ""), ("APP_VERSION", " ")]).unwrap();
        assert_eq!(c.bind.port(), DEFAULT_PORT);
        assert_eq!(c.info.version, env!("CARGO_PKG_VERSION"));
    }
}
