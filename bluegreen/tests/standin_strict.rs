//! The stand-in where it is as strict as AWS and moto alone is not (tools/localaws/README.md,
//! extensions 10-14): CreateTaskSet client tokens, request rate limits, STS sessions that end,
//! GitHub Actions' OIDC sign-in, and task sets only on target groups a load balancer routes to. The first tests drive the stand-in with the AWS SDK for Rust;
//! the last ones run `bluegreen` itself against it.

mod support;

use std::time::{Duration, Instant, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig};
use aws_sdk_ecs::error::ProvideErrorMetadata;
use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentController, DeploymentControllerType, Scale, ScaleUnit,
};
use aws_sdk_sts::config::Credentials;
use serde_json::{Value, json};
use support::*;

const DEPLOY_ROLE: &str = "arn:aws:iam::222222222222:role/bluegreen-deploy-prod";

const FAST: &str = "steps = [50, 100]\nbake = \"300ms\"\nfinal_bake = \"300ms\"\npoll = \"100ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

/// The error code of a failed call, or "ok".
fn code_of<T, E: ProvideErrorMetadata>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.code().unwrap_or("(no code)").to_owned(),
    }
}

/// SDK configuration with `creds` against the stand-in, with `retry` (the harness's `sdk` has
/// retries off and fixed credentials).
async fn sdk_config(
    aws: &LocalAws,
    region: &str,
    creds: Credentials,
    retry: RetryConfig,
) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(&aws.endpoint)
        .credentials_provider(creds)
        .retry_config(retry)
        .load()
        .await
}

/// A session of `role` (AssumeRole with the harness's static keys): its credentials and when
/// STS says it ends.
async fn session(aws: &LocalAws, role: &str) -> (Credentials, SystemTime) {
    let out = aws_sdk_sts::Client::new(&aws.sdk("us-east-1").await)
        .assume_role()
        .role_arn(role)
        .role_session_name("standin-strict")
        .send()
        .await
        .expect("AssumeRole");
    let c = out.credentials().expect("credentials");
    let ends = SystemTime::try_from(*c.expiration()).expect("an Expiration in range");
    (
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            Some(ends),
            "standin-strict",
        ),
        ends,
    )
}

/// Log entries since `since` with `flag` (`"throttled"`, `"expired"`) set, as `Action@region`.
async fn flagged(aws: &LocalAws, since: usize, flag: &str) -> Vec<String> {
    aws.calls_since(since, |e| e[flag] == json!(true)).await
}

async fn count_action(aws: &LocalAws, since: usize, action: &str) -> usize {
    let (_, log) = aws.requests(since).await;
    log.iter()
        .filter(|e| e["action"] == action && e["status"] == 200)
        .count()
}

/// A JWT from the stand-in's GitHub token endpoint, as a job with `id-token: write` gets it.
async fn github_token(aws: &LocalAws, job: &Value, audience: &str) -> String {
    let url = format!(
        "{}&audience={audience}",
        job["request_url"].as_str().unwrap()
    );
    let res = aws
        .http
        .get(&url)
        .bearer_auth(job["request_token"].as_str().unwrap())
        .send()
        .await
        .expect("GitHub's token endpoint");
    assert_eq!(res.status(), 200, "{url}");
    let body: Value = res.json().await.unwrap();
    body["value"].as_str().expect("a value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_task_set_replays_a_client_token_and_refuses_it_with_other_parameters() {
    let aws = LocalAws::start();
    let ecs = aws_sdk_ecs::Client::new(&aws.sdk("us-east-1").await);
    ecs.create_cluster().cluster_name("c").send().await.unwrap();
    let mut tds = Vec::new();
    for image in ["hello:1", "hello:2"] {
        let td = ecs
            .register_task_definition()
            .family("hello")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("app")
                    .image(image)
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        tds.push(
            td.task_definition()
                .unwrap()
                .task_definition_arn()
                .unwrap()
                .to_owned(),
        );
    }
    ecs.create_service()
        .cluster("c")
        .service_name("s")
        .desired_count(0)
        .deployment_controller(
            DeploymentController::builder()
                .r#type(DeploymentControllerType::External)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let create = |td: &str, token: &str| {
        ecs.create_task_set()
            .cluster("c")
            .service("s")
            .task_definition(td)
            .external_id("20261124T071700Z-3fa9c2")
            .scale(Scale::builder().value(0.0).unit(ScaleUnit::Percent).build())
            .client_token(token)
            .send()
    };

    // A retry with the same token and parameters is the same task set, not a second one.
    let first = create(&tds[0], "20261124T071700Z-3fa9c2").await.unwrap();
    let again = create(&tds[0], "20261124T071700Z-3fa9c2").await.unwrap();
    assert_eq!(
        first.task_set().unwrap().id(),
        again.task_set().unwrap().id()
    );
    let sets = ecs
        .describe_task_sets()
        .cluster("c")
        .service("s")
        .send()
        .await
        .unwrap();
    assert_eq!(sets.task_sets().len(), 1, "{sets:?}");

    // The same token for another intent (bluegreen's rollback within one run did this) fails.
    let other = create(&tds[1], "20261124T071700Z-3fa9c2").await;
    assert_eq!(code_of(&other), "InvalidParameterException", "{other:?}");

    // Up to 36 ASCII characters in 33-126.
    assert_eq!(
        code_of(&create(&tds[0], &"x".repeat(37)).await),
        "InvalidParameterException"
    );
    assert_eq!(
        code_of(&create(&tds[0], "with space").await),
        "InvalidParameterException"
    );
    assert_eq!(code_of(&create(&tds[0], &"y".repeat(36)).await), "ok");
}

/// ECS refuses a task set whose target group no listener or rule of a load balancer forwards to
/// (weight 0 counts as associated): what the removed Terraform provisioner raced into.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_set_needs_a_target_group_a_load_balancer_routes_to() {
    let aws = LocalAws::start();
    let seeded = aws
        .seed_service(ACCOUNT_B, "us-east-1", "hello", "v1.1.0")
        .await;
    let out = aws
        .bootstrap(json!({
            "account": ACCOUNT_B, "image": seeded["image"], "app_version": "v1.1.0",
            "repository": "hello", "test_traffic": test_traffic_spec(),
            "regions": [region_spec("us-east-1", 18000, 1)],
        }))
        .await;
    let boot = &out["regions"]["us-east-1"];
    let cfg = aws.sdk_as(ACCOUNT_B, "us-east-1").await;
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let orphan = elb
        .create_target_group()
        .name("hello-orphan")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(8080)
        .vpc_id(boot["vpc"].as_str().unwrap())
        .target_type(aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Ip)
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_owned();
    let create = |tg: String| {
        ecs.create_task_set()
            .cluster("hello-us-east-1")
            .service("hello")
            .task_definition(boot["task_definition_arn"].as_str().unwrap())
            .load_balancers(
                aws_sdk_ecs::types::LoadBalancer::builder()
                    .target_group_arn(tg)
                    .container_name("app")
                    .container_port(8080)
                    .build(),
            )
            .scale(Scale::builder().value(0.0).unit(ScaleUnit::Percent).build())
            .send()
    };
    let refused = create(orphan.clone()).await;
    assert_eq!(code_of(&refused), "InvalidParameterException");
    let message = refused.unwrap_err().into_service_error().to_string();
    assert!(
        message.contains("does not have an associated load balancer"),
        "{message}"
    );
    // Green carries weight 0 in the production listener: associated.
    let green = boot["green_target_group_arn"].as_str().unwrap().to_owned();
    assert_eq!(code_of(&create(green).await), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_checks_duration_seconds_as_aws_does() {
    let aws = LocalAws::start();
    let sts = aws_sdk_sts::Client::new(&aws.sdk("us-east-1").await);
    for (seconds, expected) in [
        (60, "ValidationError"),
        (43201, "ValidationError"),
        (900, "ok"),
    ] {
        let r = sts
            .assume_role()
            .role_arn(DEPLOY_ROLE)
            .role_session_name("standin-strict")
            .duration_seconds(seconds)
            .send()
            .await;
        assert_eq!(code_of(&r), expected, "DurationSeconds {seconds}: {r:?}");
    }
    // Role chaining: a session may assume another role for an hour at most.
    let (creds, _) = session(&aws, DEPLOY_ROLE).await;
    let chained = aws_sdk_sts::Client::new(
        &sdk_config(&aws, "us-east-1", creds, RetryConfig::disabled()).await,
    );
    let r = chained
        .assume_role()
        .role_arn("arn:aws:iam::111111111111:role/bluegreen-ecr-read-prod")
        .role_session_name("standin-strict")
        .duration_seconds(3601)
        .send()
        .await;
    assert_eq!(code_of(&r), "ValidationError", "{r:?}");
    let message = r
        .as_ref()
        .err()
        .and_then(|e| e.message())
        .unwrap_or_default();
    assert!(message.contains("role chaining"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_an_ended_session_is_expired_token_in_each_protocol() {
    let aws = LocalAws::start();
    aws.control_post("sts", json!({"session_seconds": 3})).await;
    let since = aws.requests(0).await.0;
    let issued = SystemTime::now();
    let (creds, ends) = session(&aws, DEPLOY_ROLE).await;
    let lifetime = ends.duration_since(issued).unwrap_or_default();
    assert!(
        lifetime <= Duration::from_secs(4),
        "Expiration says the real end ({lifetime:?})"
    );
    let cfg = sdk_config(&aws, "eu-west-1", creds, RetryConfig::disabled()).await;
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let sts = aws_sdk_sts::Client::new(&cfg);
    assert_eq!(code_of(&ecs.list_clusters().send().await), "ok");

    let wait = ends.duration_since(SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(300)).await;
    assert_eq!(
        code_of(&ecs.list_clusters().send().await),
        "ExpiredTokenException"
    );
    assert_eq!(
        code_of(&elb.describe_load_balancers().send().await),
        "ExpiredToken"
    );
    assert_eq!(
        code_of(&sts.get_caller_identity().send().await),
        "ExpiredToken"
    );
    assert_eq!(
        flagged(&aws, since, "expired").await,
        [
            "ListClusters@eu-west-1",
            "DescribeLoadBalancers@eu-west-1",
            "GetCallerIdentity@eu-west-1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assume_role_provider_renews_short_sessions_without_a_failed_call() {
    let aws = LocalAws::start();
    // 12 s sessions: the SDK's cache renews 5-10 s before Expiration.
    aws.control_post("sts", json!({"session_seconds": 12}))
        .await;
    let since = aws.requests(0).await.0;
    let base = aws.sdk("eu-west-1").await;
    let cfg = bluegreen::aws::assume_role(&base, DEPLOY_ROLE, "renewal-test").await;
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(25) {
        ecs.list_clusters()
            .send()
            .await
            .expect("every call runs on a live session");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let renewals = count_action(&aws, since, "AssumeRole").await;
    assert!(
        renewals >= 3,
        "25 s on 12 s sessions took {renewals} AssumeRole calls"
    );
    assert!(flagged(&aws, since, "expired").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_off_by_default_and_follows_the_elb_buckets_when_on() {
    let aws = LocalAws::start();
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk("eu-west-1").await);
    for _ in 0..60 {
        elb.describe_load_balancers()
            .send()
            .await
            .expect("no limits by default");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = aws.requests(0).await.0;
    aws.control_post("throttling", json!({"enabled": true, "reset": true}))
        .await;
    // ELBv2: Describe* 40 tokens, refilled by 10 each second (and the account bucket likewise).
    let started = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..60 {
        codes.push(code_of(&elb.describe_load_balancers().send().await));
    }
    assert!(
        codes[..40].iter().all(|c| c == "ok"),
        "the first 40 pass: {codes:?}"
    );
    assert!(codes.iter().any(|c| c == "Throttling"), "{codes:?}");
    assert!(!flagged(&aws, since, "throttled").await.is_empty());
    // The account bucket is shared: a mutating call is refused too while it is empty (unless a
    // whole second passed and refilled it).
    let r = elb
        .create_target_group()
        .name("tg-x")
        .protocol(aws_sdk_elasticloadbalancingv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id("vpc-1")
        .send()
        .await;
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(code_of(&r), "Throttling", "{r:?}");
    }
    // Another region has buckets of its own.
    let other = aws_sdk_elasticloadbalancingv2::Client::new(&aws.sdk("us-east-1").await);
    assert_eq!(code_of(&other.describe_load_balancers().send().await), "ok");
    // The SDK's standard retries ride it out, as on AWS.
    let retrying = aws_sdk_elasticloadbalancingv2::Client::new(
        &sdk_config(
            &aws,
            "eu-west-1",
            Credentials::new("testing", "testing", None, None, "t"),
            RetryConfig::standard().with_max_attempts(10),
        )
        .await,
    );
    for _ in 0..30 {
        retrying
            .describe_load_balancers()
            .send()
            .await
            .expect("retried until a token is there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_oidc_token_assumes_the_role_until_it_expires() {
    let aws = LocalAws::start();
    let job = aws
        .control_post(
            "github-oidc",
            json!({"repository": "octo-org/hello", "environment": "prod", "ttl_seconds": 3,
                   "accounts": [ACCOUNT_B]}),
        )
        .await;
    assert_eq!(job["sub"], "repo:octo-org/hello:environment:prod");
    let sts = aws_sdk_sts::Client::new(&aws.sdk("us-east-1").await);
    let token = github_token(&aws, &job, "sts.amazonaws.com").await;
    let out = sts
        .assume_role_with_web_identity()
        .role_arn(DEPLOY_ROLE)
        .role_session_name("GitHubActions")
        .web_identity_token(&token)
        .send()
        .await
        .expect("AssumeRoleWithWebIdentity with GitHub's token");
    assert!(
        out.assumed_role_user()
            .unwrap()
            .arn()
            .contains(":222222222222:assumed-role/bluegreen-deploy-prod/"),
        "{out:?}"
    );
    let wrong_audience = github_token(&aws, &job, "https://github.com/octo-org").await;
    let r = sts
        .assume_role_with_web_identity()
        .role_arn(DEPLOY_ROLE)
        .role_session_name("GitHubActions")
        .web_identity_token(wrong_audience)
        .send()
        .await;
    assert_eq!(code_of(&r), "InvalidIdentityToken", "{r:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = sts
        .assume_role_with_web_identity()
        .role_arn(DEPLOY_ROLE)
        .role_session_name("GitHubActions")
        .web_identity_token(&token)
        .send()
        .await;
    assert_eq!(code_of(&r), "ExpiredTokenException", "{r:?}");
}

const LONG_BAKES: &str = "steps = [50, 100]\nbake = \"8s\"\nfinal_bake = \"8s\"\npoll = \"200ms\"\nready_timeout = \"30s\"\nscan_threshold = \"CRITICAL\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_outlives_its_sts_sessions() {
    let prod = Prod::start(LONG_BAKES, "").await;
    prod.aws
        .control_post("sts", json!({"session_seconds": 12}))
        .await;
    let since = prod.aws.requests(0).await.0;
    let (code, out, err) = prod.run(&["promote", "v1.2.0"]);
    prod.aws
        .control_post("sts", json!({"session_seconds": null}))
        .await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(flagged(&prod.aws, since, "expired").await.is_empty());
    let renewals = count_action(&prod.aws, since, "AssumeRole").await;
    assert!(
        renewals >= 4,
        "a ~40 s promote on 12 s sessions assumed roles {renewals} times"
    );
    prod.assert_everywhere("v1.2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promote_completes_under_aws_request_rate_limits() {
    let prod = Prod::start(FAST, "").await;
    prod.aws
        .control_post("throttling", json!({"enabled": true, "reset": true}))
        .await;
    let since = prod.aws.requests(0).await.0;
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env("BLUEGREEN_AWS_MAX_ATTEMPTS", "5")
        .output()
        .unwrap();
    prod.aws
        .control_post("throttling", json!({"enabled": false}))
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    let throttled = flagged(&prod.aws, since, "throttled").await;
    eprintln!("throttled calls during the promote: {throttled:?}");
    assert_eq!(out.status.code(), Some(0), "stderr:\n{err}");
    prod.assert_everywhere("v1.2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluegreen_signs_in_with_a_web_identity_token_file_and_an_expired_one_is_refused() {
    let prod = Prod::start(FAST, "").await;
    for (ttl, ok) in [(600, true), (0, false)] {
        let job = prod
            .aws
            .control_post(
                "github-oidc",
                json!({"repository": "octo-org/hello", "environment": "prod",
                       "ttl_seconds": ttl, "accounts": [ACCOUNT_B]}),
            )
            .await;
        let token = github_token(&prod.aws, &job, "sts.amazonaws.com").await;
        let file = prod.aws.dir.join(format!("web-identity-{ttl}.jwt"));
        std::fs::write(&file, token).unwrap();
        let out = prod
            .command(&["status"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_ENDPOINT_URL_STS", &prod.aws.endpoint)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &file)
            .env("AWS_ROLE_ARN", DEPLOY_ROLE)
            .env("AWS_ROLE_SESSION_NAME", "GitHubActions")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert_eq!(out.status.code(), Some(0), "stderr:\n{err}");
        } else {
            assert_ne!(out.status.code(), Some(0), "stderr:\n{err}");
            assert!(
                err.contains("ExpiredToken") || err.to_lowercase().contains("expired"),
                "stderr:\n{err}"
            );
        }
    }
}

/// bluegreen's own GitHub Actions OIDC provider (`aws::credentials::GithubOidc`, read from
/// ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN) renews its session through the token endpoint for as
/// long as the promote runs, with no static keys at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_github_actions_a_promote_renews_its_oidc_session() {
    let prod = Prod::start(LONG_BAKES, "").await;
    let job = prod
        .aws
        .control_post(
            "github-oidc",
            json!({"repository": "octo-org/hello", "environment": "prod", "accounts": [ACCOUNT_B]}),
        )
        .await;
    prod.aws
        .control_post("sts", json!({"session_seconds": 12}))
        .await;
    let since = prod.aws.requests(0).await.0;
    let out = prod
        .command(&["promote", "v1.2.0"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            job["request_url"].as_str().unwrap(),
        )
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            job["request_token"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    prod.aws
        .control_post("sts", json!({"session_seconds": null}))
        .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{err}");
    assert!(flagged(&prod.aws, since, "expired").await.is_empty());
    let exchanges = count_action(&prod.aws, since, "AssumeRoleWithWebIdentity").await;
    assert!(
        exchanges >= 3,
        "{exchanges} AssumeRoleWithWebIdentity calls in a ~40 s promote"
    );
    prod.assert_everywhere("v1.2.0").await;
}
