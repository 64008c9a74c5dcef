//! Every route, header and error path, through salvo's TestClient on the real service.

use salvo::prelude::*;
use salvo::test::{ResponseExt, TestClient};
use serde_json::Value;
use service::{AppInfo, RateLimit, VERSION_HEADER, service};

const BASE: &str = "http://127.0.0.1:8080";

fn info() -> AppInfo {
    AppInfo {
        version: "v1.2.0".into(),
        region: "eu-west-1".into(),
        instance: "task-abc".into(),
    }
}

fn app() -> Service {
    service(info(), None)
}

async fn get_json(svc: &Service, path: &str) -> (StatusCode, Value, salvo::http::HeaderMap) {
    let mut res = TestClient::get(format!("{BASE}{path}")).send(svc).await;
    let status = res.status_code.expect("status set");
    let headers = res.headers().clone();
    let body: Value = res.take_json().await.expect("JSON body");
    (status, body, headers)
}

#[tokio::test]
async fn index_names_version_region_and_instance() {
    let (status, body, _) = get_json(&app(), "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "Hello from bluegreen");
    assert_eq!(body["version"], "v1.2.0");
    assert_eq!(body["region"], "eu-west-1");
    assert_eq!(body["instance"], "task-abc");
}

#[tokio::test]
async fn hello_says_hello_world() {
    let (status, body, _) = get_json(&app(), "/hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"], "hello world");
    assert_eq!(body["version"], "v1.2.0");
    assert_eq!(body["region"], "eu-west-1");
}

#[tokio::test]
async fn health_reports_healthy_and_version() {
    let (status, body, headers) = get_json(&app(), "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], "v1.2.0");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn unknown_path_is_a_json_404_with_version() {
    let (status, body, headers) = get_json(&app(), "/no/such/thing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], 404);
    assert_eq!(body["error"], "Not Found");
    assert_eq!(body["path"], "/no/such/thing");
    assert_eq!(body["version"], "v1.2.0");
    assert_eq!(headers[VERSION_HEADER], "v1.2.0");
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let mut res = TestClient::post(format!("{BASE}/health"))
        .send(&app())
        .await;
    assert_eq!(res.status_code, Some(StatusCode::METHOD_NOT_ALLOWED));
    assert_eq!(res.headers()[VERSION_HEADER], "v1.2.0");
    let body: Value = res.take_json().await.unwrap();
    assert_eq!(body["status"], 405);
}

#[tokio::test]
async fn every_answer_carries_version_and_security_headers() {
    let svc = app();
    for path in ["/", "/hello", "/health", "/missing"] {
        let res = TestClient::get(format!("{BASE}{path}")).send(&svc).await;
        let h = res.headers();
        assert_eq!(h[VERSION_HEADER], "v1.2.0", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            !h.contains_key("strict-transport-security"),
            "{path}: HSTS over plain HTTP"
        );
    }
}

#[tokio::test]
async fn hsts_only_when_the_alb_saw_https() {
    let svc = app();
    let res = TestClient::get(format!("{BASE}/"))
        .add_header("x-forwarded-proto", "https", true)
        .send(&svc)
        .await;
    let hsts = res.headers()["strict-transport-security"].to_str().unwrap();
    assert!(hsts.contains("max-age=31536000"), "{hsts}");

    let res = TestClient::get(format!("{BASE}/"))
        .add_header("x-forwarded-proto", "http", true)
        .send(&svc)
        .await;
    assert!(!res.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn head_request_has_headers_and_no_body() {
    let mut res = TestClient::head(format!("{BASE}/health"))
        .send(&app())
        .await;
    assert_eq!(res.headers()[VERSION_HEADER], "v1.2.0");
    assert_eq!(res.take_string().await.unwrap(), "");
}

#[tokio::test]
async fn rate_limit_is_off_by_default() {
    let svc = app();
    for _ in 0..50 {
        let res = TestClient::get(format!("{BASE}/hello"))
            .add_header("x-forwarded-for", "203.0.113.9", true)
            .send(&svc)
            .await;
        assert_eq!(res.status_code, Some(StatusCode::OK));
    }
}

#[tokio::test]
async fn rate_limit_answers_429_per_client_with_retry_after() {
    let svc = service(
        info(),
        Some(RateLimit {
            per_second: 1,
            burst: 2,
        }),
    );
    let send = |ip: &'static str| {
        TestClient::get(format!("{BASE}/hello"))
            .add_header("x-forwarded-for", ip, true)
            .send(&svc)
    };
    assert_eq!(send("203.0.113.1").await.status_code, Some(StatusCode::OK));
    assert_eq!(send("203.0.113.1").await.status_code, Some(StatusCode::OK));
    let mut limited = send("203.0.113.1").await;
    assert_eq!(limited.status_code, Some(StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()[VERSION_HEADER], "v1.2.0");
    let body: Value = limited.take_json().await.unwrap();
    assert_eq!(body["status"], 429);
    // Another client is not affected by the first one's bucket.
    assert_eq!(send("203.0.113.2").await.status_code, Some(StatusCode::OK));
}

#[tokio::test]
async fn rate_limit_ignores_a_forged_leftmost_forwarded_for() {
    let svc = service(
        info(),
        Some(RateLimit {
            per_second: 1,
            burst: 1,
        }),
    );
    // The client rotates a fake first hop; the ALB-appended last hop stays the same.
    let first = TestClient::get(format!("{BASE}/"))
        .add_header("x-forwarded-for", "1.1.1.1, 198.51.100.4", true)
        .send(&svc)
        .await;
    assert_eq!(first.status_code, Some(StatusCode::OK));
    let second = TestClient::get(format!("{BASE}/"))
        .add_header("x-forwarded-for", "2.2.2.2, 198.51.100.4", true)
        .send(&svc)
        .await;
    assert_eq!(second.status_code, Some(StatusCode::TOO_MANY_REQUESTS));
}

// ---- CORS (CORS_ALLOWED_ORIGINS) ----------------------------------------------------------

const PAGE: &str = "https://app.example.com";

fn cors_app(allowed: &str) -> Service {
    service::service_with(info(), None, Some(service::Cors::parse(allowed).unwrap()))
}

async fn preflight(
    svc: &Service,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> salvo::Response {
    let mut req = TestClient::options(format!("{BASE}/hello"))
        .add_header("origin", origin, true)
        .add_header("access-control-request-method", method, true);
    if let Some(h) = headers {
        req = req.add_header("access-control-request-headers", h, true);
    }
    req.send(svc).await
}

#[tokio::test]
async fn without_cors_configured_no_cors_headers_and_options_is_405() {
    let svc = app();
    let res = TestClient::get(format!("{BASE}/hello"))
        .add_header("origin", PAGE, true)
        .send(&svc)
        .await;
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    assert!(!res.headers().contains_key("vary"));
    let res = preflight(&svc, PAGE, "GET", None).await;
    assert_eq!(res.status_code, Some(StatusCode::METHOD_NOT_ALLOWED));
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn an_allowed_origin_reads_answers_and_the_version_header() {
    let svc = cors_app("https://app.example.com, http://localhost:3000");
    for path in ["/", "/hello", "/health", "/missing"] {
        let res = TestClient::get(format!("{BASE}{path}"))
            .add_header("origin", PAGE, true)
            .send(&svc)
            .await;
        let h = res.headers();
        assert_eq!(h["access-control-allow-origin"], PAGE, "{path}");
        assert_eq!(h["access-control-expose-headers"], VERSION_HEADER, "{path}");
        assert_eq!(h["vary"], "origin", "{path}");
        assert!(
            !h.contains_key("access-control-allow-credentials"),
            "{path}"
        );
        assert_eq!(h[VERSION_HEADER], "v1.2.0", "{path}");
    }
    // Another origin gets no permission (the browser hides the answer), but the same Vary.
    let res = TestClient::get(format!("{BASE}/hello"))
        .add_header("origin", "https://evil.example.com", true)
        .send(&svc)
        .await;
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    assert_eq!(res.headers()["vary"], "origin");
    // No Origin: a same-origin or non-browser request, answered as always.
    let res = TestClient::get(format!("{BASE}/hello")).send(&svc).await;
    assert_eq!(res.status_code, Some(StatusCode::OK));
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn preflights_are_answered_per_the_fetch_standard() {
    let svc = cors_app(PAGE);
    let res = preflight(&svc, PAGE, "GET", Some("content-type, x-request-id")).await;
    assert_eq!(res.status_code, Some(StatusCode::NO_CONTENT));
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], PAGE);
    assert_eq!(h["access-control-allow-methods"], "GET, HEAD, OPTIONS");
    assert_eq!(
        h["access-control-allow-headers"],
        "content-type, x-request-id"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        h["vary"]
            .to_str()
            .unwrap()
            .contains("access-control-request-method")
    );
    assert_eq!(h[VERSION_HEADER], "v1.2.0");

    // A method the API does not serve: the allowed methods say so and the browser stops.
    let res = preflight(&svc, PAGE, "DELETE", None).await;
    assert_eq!(
        res.headers()["access-control-allow-methods"],
        "GET, HEAD, OPTIONS"
    );
    // An origin not on the list: 403 and no CORS headers.
    let mut res = preflight(&svc, "https://evil.example.com", "GET", None).await;
    assert_eq!(res.status_code, Some(StatusCode::FORBIDDEN));
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    let body: Value = res.take_json().await.unwrap();
    assert_eq!(body["status"], 403);
    // An OPTIONS without Access-Control-Request-Method is not a preflight.
    let res = TestClient::options(format!("{BASE}/hello"))
        .add_header("origin", PAGE, true)
        .send(&svc)
        .await;
    assert_eq!(res.status_code, Some(StatusCode::METHOD_NOT_ALLOWED));
}

#[tokio::test]
async fn any_origin_with_star() {
    let svc = cors_app("*");
    let res = TestClient::get(format!("{BASE}/hello"))
        .add_header("origin", "https://anything.example", true)
        .send(&svc)
        .await;
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert!(!res.headers().contains_key("vary"));
    let res = preflight(&svc, "https://anything.example", "GET", None).await;
    assert_eq!(res.status_code, Some(StatusCode::NO_CONTENT));
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}
