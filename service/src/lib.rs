//! The hello service bluegreen ships: a small JSON API whose every answer names the release
//! (version) and the region that produced it, so a deployment can be verified from outside.

pub mod config;
pub mod cors;
pub mod healthcheck;
pub mod ratelimit;

use std::future::Future;
use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::hyper::body::Bytes;
use salvo::prelude::*;
use serde_json::json;

pub use config::{AppInfo, Config, ConfigError, RateLimit};
pub use cors::Cors;
use ratelimit::{Decision, Limiter, client_key};

/// The header every response carries, so a client (or `curl -I`) sees which release answered.
pub const VERSION_HEADER: &str = "x-app-version";

/// A strict policy for a JSON API: it loads nothing, and nothing may frame it.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The routes, without the cross-cutting hoops (see [`service`]).
///
/// The answers depend only on the process's configuration, so each body is serialized once here
/// and every request gets a reference-counted copy.
pub fn router(info: &AppInfo) -> Router {
    let index = json!({
        "message": "Hello from bluegreen",
        "version": info.version,
        "region": info.region,
        "instance": info.instance,
    });
    let hello = json!({
        "message": "hello world",
        "version": info.version,
        "region": info.region,
    });
    let health = json!({
        "status": "healthy",
        "version": info.version,
        "region": info.region,
    });
    Router::new()
        .get(JsonBody::new(&index))
        .push(Router::with_path("hello").get(JsonBody::new(&hello)))
        .push(Router::with_path("health").get(JsonBody::new(&health)))
}

/// The whole service: routes plus logging, security headers, optional rate limiting and
/// JSON errors, applied to every request including unknown paths. No CORS.
pub fn service(info: AppInfo, rate_limit: Option<RateLimit>) -> Service {
    service_with(info, rate_limit, None)
}

/// [`service`] with cross-origin reads allowed as `cors` says (see [`cors`]).
pub fn service_with(info: AppInfo, rate_limit: Option<RateLimit>, cors: Option<Cors>) -> Service {
    let version = HeaderValue::from_str(&info.version)
        .expect("Config validated APP_VERSION as a header value");
    Service::new(router(&info)).hoop(Edge {
        info,
        version,
        limiter: rate_limit.map(Limiter::new),
        cors,
    })
}

/// Serves on an already bound listener until `shutdown` resolves, then drains: no new
/// connections, in-flight requests finish, and after `config.drain_timeout` the rest are cut.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = salvo::conn::tcp::TcpAcceptor::try_from(listener)?;
    let server = Server::new(acceptor);
    let handle = server.handle();
    let drain = config.drain_timeout;
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(drain_timeout_ms = drain.as_millis() as u64, "draining");
        handle.stop_graceful(Some(drain));
    });
    server
        .try_serve(service_with(
            config.info.clone(),
            config.rate_limit,
            config.cors.clone(),
        ))
        .await
}

/// A fixed JSON answer, serialized once.
struct JsonBody(Bytes);

impl JsonBody {
    fn new(value: &serde_json::Value) -> Self {
        Self(Bytes::from(value.to_string()))
    }
}

#[async_trait]
impl Handler for JsonBody {
    async fn handle(
        &self,
        _req: &mut Request,
        _depot: &mut Depot,
        res: &mut Response,
        _ctrl: &mut FlowCtrl,
    ) {
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        // Cloning `Bytes` bumps a reference count; the body is never copied.
        res.body(self.0.clone());
    }
}

/// What every request passes through, in order: rate limit, a CORS preflight or the route,
/// JSON for any error without a body, the version, security and CORS headers, and one
/// access-log line.
struct Edge {
    info: AppInfo,
    version: HeaderValue,
    limiter: Option<Limiter>,
    cors: Option<Cors>,
}

#[async_trait]
impl Handler for Edge {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let started = Instant::now();
        // The client address costs an allocation; work it out only when something uses it.
        let log_enabled = tracing::enabled!(tracing::Level::INFO);
        let client = (log_enabled || self.limiter.is_some()).then(|| {
            let forwarded_for = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            client_key(
                forwarded_for,
                req.remote_addr().ip().map(|ip| ip.to_string()),
            )
        });

        let decision = match (&self.limiter, &client) {
            (Some(limiter), Some(client)) => limiter.check(client, started),
            _ => Decision::Allow,
        };
        let preflight = self
            .cors
            .as_ref()
            .filter(|_| cors::is_preflight(req.method(), req.headers()));
        match (decision, preflight) {
            // Answered here: the routes serve no OPTIONS.
            (Decision::Allow, Some(c)) => {
                ctrl.skip_rest();
                match c.preflight(req.headers()) {
                    Some(headers) => {
                        res.status_code(StatusCode::NO_CONTENT);
                        res.headers_mut().extend(headers);
                    }
                    None => {
                        res.status_code(StatusCode::FORBIDDEN);
                    }
                }
            }
            (Decision::Allow, None) => {
                ctrl.call_next(req, depot, res).await;
            }
            (Decision::Deny { retry_after }, _) => {
                ctrl.skip_rest();
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                res.status_code(StatusCode::TOO_MANY_REQUESTS);
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
        }

        let status = res.status_code.unwrap_or(StatusCode::OK);
        if res.body.is_none() && (status.is_client_error() || status.is_server_error()) {
            res.render(Json(json!({
                "error": status.canonical_reason().unwrap_or("error"),
                "status": status.as_u16(),
                "path": req.uri().path(),
                "version": self.info.version,
                "region": self.info.region,
            })));
        }

        let over_https = req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
            || req.scheme() == &salvo::http::uri::Scheme::HTTPS;
        let headers = res.headers_mut();
        headers.insert(VERSION_HEADER, self.version.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        // Answers change with every release; a cache in between would hide a rollout.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if over_https {
            headers.insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
        if let (Some(c), None) = (&self.cors, preflight) {
            c.response_headers(req.headers(), headers);
        }

        if log_enabled {
            tracing::info!(
                method = %req.method(),
                path = req.uri().path(),
                status = status.as_u16(),
                latency_us = started.elapsed().as_micros() as u64,
                client = client.as_deref().unwrap_or_default(),
                "request"
            );
        }
    }
}
