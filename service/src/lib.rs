//! The hello service bluegreen ships: a small JSON API whose every answer names the release
//! (version) and the region that produced it, so a deployment can be verified from outside.

pub mod config;
pub mod healthcheck;
pub mod ratelimit;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use serde_json::json;

pub use config::{AppInfo, Config, ConfigError, RateLimit};
use ratelimit::{Decision, Limiter, client_key};

/// The header every response carries, so a client (or `curl -I`) sees which release answered.
pub const VERSION_HEADER: &str = "x-app-version";

/// A strict policy for a JSON API: it loads nothing, and nothing may frame it.
const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The routes, without the cross-cutting hoops (see [`service`]).
pub fn router() -> Router {
    Router::new()
        .get(index)
        .push(Router::with_path("hello").get(hello))
        .push(Router::with_path("health").get(health))
}

/// The whole service: routes plus logging, security headers, optional rate limiting and
/// JSON errors, applied to every request including unknown paths.
pub fn service(info: AppInfo, rate_limit: Option<RateLimit>) -> Service {
    let info = Arc::new(info);
    let version = HeaderValue::from_str(&info.version)
        .expect("Config validated APP_VERSION as a header value");
    Service::new(router()).hoop(Edge {
        info,
        version,
        limiter: rate_limit.map(Limiter::new),
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
        .try_serve(service(config.info.clone(), config.rate_limit))
        .await
}

fn info(depot: &Depot) -> &AppInfo {
    let Ok(info) = depot.get_typed::<Arc<AppInfo>>() else {
        panic!("the Edge hoop injects AppInfo before any route runs");
    };
    info
}

#[handler]
async fn index(depot: &mut Depot, res: &mut Response) {
    let info = info(depot);
    res.render(Json(json!({
        "message": "Hello from bluegreen",
        "version": info.version,
        "region": info.region,
        "instance": info.instance,
    })));
}

#[handler]
async fn hello(depot: &mut Depot, res: &mut Response) {
    let info = info(depot);
    res.render(Json(json!({
        "message": "hello world",
        "version": info.version,
        "region": info.region,
    })));
}

#[handler]
async fn health(depot: &mut Depot, res: &mut Response) {
    let info = info(depot);
    res.render(Json(json!({
        "status": "healthy",
        "version": info.version,
        "region": info.region,
    })));
}

/// What every request passes through, in order: rate limit, the route, JSON for any error
/// without a body, the version and security headers, and one access-log line.
struct Edge {
    info: Arc<AppInfo>,
    version: HeaderValue,
    limiter: Option<Limiter>,
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
        let forwarded_for = req
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let client = client_key(
            forwarded_for,
            req.remote_addr().ip().map(|ip| ip.to_string()),
        );
        depot.insert_typed(self.info.clone());

        let decision = match &self.limiter {
            Some(limiter) => limiter.check(&client, started),
            None => Decision::Allow,
        };
        match decision {
            Decision::Allow => {
                ctrl.call_next(req, depot, res).await;
            }
            Decision::Deny { retry_after } => {
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

        tracing::info!(
            method = %req.method(),
            path = req.uri().path(),
            status = status.as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            client = %client,
            "request"
        );
    }
}
