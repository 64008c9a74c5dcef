//! Bench-only reference: the smallest hyper 1 server sending the same bytes as the service's
//! `/health` (status, headers, body), with no routing, middleware, rate limiting or logging. It
//! is the ceiling the service is measured against in `bench/service.sh`; it is never shipped.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "application/json; charset=utf-8")
        .header("x-app-version", "bench")
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header(
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        )
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from_static(
            br#"{"region":"local","status":"healthy","version":"bench"}"#,
        )))
        .expect("static response is valid"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8081);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
