//! The region-level AWS layer (ELBv2, ECS, CloudWatch) against the local stand-in's real tasks.

mod support;

use std::time::Duration;

use aws_sdk_cloudwatch::types::StateValue;
use bluegreen::aws::elb::{self, Colour, ElbError, Weights};
use bluegreen::aws::{RegionClients, alarms, ecs};
use bluegreen::config::RegionPlan;
use serde_json::{Value, json};
use support::*;

const REGION: &str = "eu-west-1";

fn plan() -> RegionPlan {
    let spec = region_spec(REGION, 18000, 2);
    let s = |k: &str| spec[k].as_str().unwrap().to_owned();
    RegionPlan {
        region: REGION.into(),
        cluster: s("cluster"),
        service: s("service"),
        load_balancer: s("load_balancer"),
        listener_port: 18000,
        test_listener_port: 18001,
        blue_target_group: s("blue_target_group"),
        green_target_group: s("green_target_group"),
        alarms: vec![format!("hello-{REGION}-5xx")],
        probe_path: "/health".into(),
        container: None,
        task_family: None,
        test_header: TEST_HEADER.into(),
        probe: bluegreen::config::Probe::Http,
    }
}

/// A stand-in with one region of account B bootstrapped on v1.1.0, and bluegreen's clients for it.
async fn region(aws: &LocalAws) -> (RegionClients, Value) {
    let seeded = aws.seed_service(ACCOUNT_B, REGION, "hello", "v1.1.0").await;
    let out = aws
        .bootstrap(json!({
            "account": ACCOUNT_B, "image": seeded["image"], "app_version": "v1.1.0",
            "repository": "hello", "regions": [region_spec(REGION, 18000, 2)],
            "test_traffic": test_traffic_spec(),
        }))
        .await;
    let cfg = aws.sdk_as(ACCOUNT_B, REGION).await;
    (
        RegionClients::new(&cfg, REGION),
        out["regions"][REGION].clone(),
    )
}

/// Readiness as promote judges it: at least `n` targets in green, all healthy.
async fn green_healthy(c: &RegionClients, t: &elb::Topology, n: usize) -> ecs::Readiness {
    match elb::target_health(c, &t.green_target_group_arn).await {
        Ok(h) if h.healthy >= n && h.all_healthy() => ecs::Readiness::Ready,
        Ok(h) => ecs::Readiness::NotYet(h.to_string()),
        Err(e) => ecs::Readiness::NotYet(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_topology_and_weights_round_trip() {
    let aws = LocalAws::start();
    let (c, boot) = region(&aws).await;
    let p = plan();
    let t = elb::discover(&c, &p).await.unwrap();
    assert_eq!(t.listener_arn, boot["listener_arn"]);
    assert_eq!(t.test_listener_arn, boot["test_listener_arn"]);
    assert_eq!(t.test_rule_arn.as_deref(), boot["test_rule_arn"].as_str());
    assert!(!t.test_default_forwards);
    elb::check_test_route(&t, &p).unwrap();
    assert_eq!(t.blue_target_group_arn, boot["blue_target_group_arn"]);
    assert_eq!(t.dns_name, boot["dns_name"]);

    let w = elb::weights(&c, &t, &p).await.unwrap();
    assert_eq!(
        w,
        Weights {
            blue: 100,
            green: 0
        }
    );
    assert_eq!(w.live(), Some(Colour::Blue));
    for green in [10u8, 50, 99, 100, 0] {
        let want = Weights::with(Colour::Green, green);
        elb::set_weights(&c, &t, want).await.unwrap();
        assert_eq!(elb::weights(&c, &t, &p).await.unwrap(), want);
    }

    // Weights that do not sum to 100 are refused before any call: the listener keeps its state.
    let err = elb::set_weights(
        &c,
        &t,
        Weights {
            blue: 60,
            green: 60,
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ElbError::BadWeights { .. }), "{err}");
    assert_eq!(
        elb::weights(&c, &t, &p).await.unwrap(),
        Weights {
            blue: 100,
            green: 0
        }
    );

    elb::point_test_route(&c, &t, Colour::Green).await.unwrap();
    assert_eq!(
        elb::test_weights(&c, &t, &p).await.unwrap(),
        Some(Weights {
            blue: 0,
            green: 100
        })
    );
}

/// The test listener as terraform/modules/region makes it: a fixed 404 for every request but
/// those whose header matches the rule, compared as an ALB compares (name and value
/// case-insensitively); ModifyRule moves only the rule's forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_route_admits_only_requests_with_the_secret_header() {
    let aws = LocalAws::start();
    let (c, boot) = region(&aws).await;
    let p = plan();
    let t = elb::discover(&c, &p).await.unwrap();
    let url = format!("http://{}:18001/health", boot["dns_name"].as_str().unwrap());
    let http = reqwest::Client::new();
    let status = |header: Option<(&'static str, String)>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let mut req = http.get(&url);
            if let Some((k, v)) = header {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status().as_u16()
        }
    };
    eventually(
        "the live release behind the test route",
        Duration::from_secs(30),
        || async {
            (status(Some((TEST_HEADER, TEST_SECRET.to_owned()))).await == 200).then_some(())
        },
    )
    .await;
    assert_eq!(
        status(None).await,
        404,
        "no header: the listener's fixed response"
    );
    assert_eq!(status(Some((TEST_HEADER, "wrong".into()))).await, 404);
    assert_eq!(status(Some(("X-Other", TEST_SECRET.into()))).await, 404);
    assert_eq!(
        status(Some(("x-bluegreen-test", TEST_SECRET.to_uppercase()))).await,
        200,
        "ALB compares header names and values case-insensitively"
    );

    // bluegreen finds the rule by the header's name, whatever its case in the file.
    let mut lower = plan();
    lower.test_header = "x-BLUEGREEN-test".into();
    let t2 = elb::discover(&c, &lower).await.unwrap();
    assert_eq!(t2.test_rule_arn, t.test_rule_arn);

    // A rule for another header is not the test route, and a listener that forwards without
    // the header is refused before a promote.
    let mut other = plan();
    other.test_header = "X-Something-Else".into();
    let t3 = elb::discover(&c, &other).await.unwrap();
    let err = elb::check_test_route(&t3, &other).unwrap_err().to_string();
    assert!(
        err.contains("has no rule with an http-header condition"),
        "{err}"
    );
    let open = elb::Topology {
        test_default_forwards: true,
        ..t.clone()
    };
    let err = elb::check_test_route(&open, &p).unwrap_err().to_string();
    assert!(
        err.contains("forwards requests without the test header"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_resources_and_unweighted_listeners_are_named() {
    let aws = LocalAws::start();
    let (c, boot) = region(&aws).await;
    let mut p = plan();
    p.load_balancer = "no-such-alb".into();
    let err = elb::discover(&c, &p).await.unwrap_err().to_string();
    assert!(
        err.starts_with("load balancer no-such-alb does not exist in eu-west-1"),
        "{err}"
    );

    let mut p = plan();
    p.test_listener_port = 9999;
    let err = elb::discover(&c, &p).await.unwrap_err().to_string();
    assert!(err.contains("test listener on port 9999"), "{err}");

    let mut p = plan();
    p.green_target_group = "hello-missing-green".into();
    let err = elb::discover(&c, &p).await.unwrap_err().to_string();
    assert!(
        err.starts_with("target group hello-missing-green does not exist"),
        "{err}"
    );

    // A listener forwarding to one group only is not something bluegreen can shift.
    let p = plan();
    let t = elb::discover(&c, &p).await.unwrap();
    c.elb
        .modify_listener()
        .listener_arn(&t.listener_arn)
        .default_actions(
            aws_sdk_elasticloadbalancingv2::types::Action::builder()
                .r#type(aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum::Forward)
                .target_group_arn(boot["blue_target_group_arn"].as_str().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let err = elb::weights(&c, &t, &p).await.unwrap_err();
    assert!(matches!(err, ElbError::NotWeighted { .. }), "{err}");
    assert!(err.to_string().contains("port 18000"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_set_lifecycle_on_real_tasks() {
    let aws = LocalAws::start();
    let (c, _) = region(&aws).await;
    let p = plan();
    let t = elb::discover(&c, &p).await.unwrap();

    let svc = ecs::describe(&c, &p.cluster, &p.service).await.unwrap();
    assert_eq!(svc.desired_count, 2);
    let live = svc.task_set_on(&t.blue_target_group_arn).unwrap().clone();
    assert_eq!(live.status, "PRIMARY");
    let release = ecs::release_of(&c, &live.task_definition, None)
        .await
        .unwrap();
    assert_eq!(release.version.as_deref(), Some("v1.1.0"));
    assert_eq!(release.container, "app");

    // The new revision differs only in image and version.
    let v2 = aws.seed_service(ACCOUNT_B, REGION, "hello", "v1.2.0").await;
    let image = v2["image"].as_str().unwrap();
    let td = ecs::clone_task_definition(&c, &live.task_definition, None, image, "v1.2.0")
        .await
        .unwrap();
    assert_ne!(td, live.task_definition);
    let new_release = ecs::release_of(&c, &td, Some("app")).await.unwrap();
    assert_eq!(new_release.image, image);
    assert_eq!(new_release.version.as_deref(), Some("v1.2.0"));

    // Created once; a re-run with the same deployment id reuses it.
    let created = ecs::ensure_task_set(
        &c,
        &svc,
        &ecs::TaskSetSpec {
            cluster: &p.cluster,
            service: &p.service,
            deployment: "d-1",
            purpose: ecs::Purpose::Release,
            task_definition: &td,
            target_group: &t.green_target_group_arn,
            container: "app",
            port: 8080,
            scale: 100.0,
        },
    )
    .await
    .unwrap();
    assert!(matches!(created, ecs::Ensure::Created(_)));
    let svc = ecs::describe(&c, &p.cluster, &p.service).await.unwrap();
    let again = ecs::ensure_task_set(
        &c,
        &svc,
        &ecs::TaskSetSpec {
            cluster: &p.cluster,
            service: &p.service,
            deployment: "d-1",
            purpose: ecs::Purpose::Release,
            task_definition: &td,
            target_group: &t.green_target_group_arn,
            container: "app",
            port: 8080,
            scale: 100.0,
        },
    )
    .await
    .unwrap();
    assert!(matches!(again, ecs::Ensure::Reused(_)));
    assert_eq!(again.task_set().arn, created.task_set().arn);
    assert_eq!(svc.task_sets.len(), 2);

    let green_arn = created.task_set().arn.clone();
    let ready = ecs::wait_steady(
        &c,
        &p.cluster,
        &p.service,
        &green_arn,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || green_healthy(&c, &t, 2),
    )
    .await
    .unwrap();
    assert_eq!((ready.running, ready.computed_desired), (2, 2));

    // A killed task shows in the health summary with its reason.
    let victim = aws
        .tasks()
        .await
        .into_iter()
        .find(|task| task["task_set_arn"] == green_arn.as_str())
        .unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &victim["pid"].to_string()])
        .status()
        .unwrap();
    let summary = eventually(
        "the killed task to be reported",
        Duration::from_secs(10),
        || async {
            let s = elb::target_health(&c, &t.green_target_group_arn)
                .await
                .unwrap();
            (s.unhealthy == 1).then_some(s)
        },
    )
    .await;
    let text = summary.to_string();
    assert!(text.starts_with("1 healthy, 1 unhealthy"), "{text}");
    assert!(
        text.contains(&format!(
            "{}:8080 Target.FailedHealthChecks",
            victim["ip"].as_str().unwrap()
        )),
        "{text}"
    );

    // Primary, scale the old one away, delete it; deleting twice is fine.
    ecs::make_primary(&c, &p.cluster, &p.service, &green_arn)
        .await
        .unwrap();
    ecs::scale(&c, &p.cluster, &p.service, &live.arn, 0.0)
        .await
        .unwrap();
    ecs::delete(&c, &p.cluster, &p.service, &live.arn)
        .await
        .unwrap();
    ecs::delete(&c, &p.cluster, &p.service, &live.arn)
        .await
        .unwrap();
    let svc = ecs::describe(&c, &p.cluster, &p.service).await.unwrap();
    assert_eq!(svc.task_sets.len(), 1);
    assert_eq!(svc.task_sets[0].arn, green_arn);
    assert_eq!(svc.task_sets[0].status, "PRIMARY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_bad_release_ends_at_the_deadline_with_the_reason() {
    let aws = LocalAws::start();
    let (c, _) = region(&aws).await;
    let p = plan();
    let t = elb::discover(&c, &p).await.unwrap();
    let svc = ecs::describe(&c, &p.cluster, &p.service).await.unwrap();
    let live = svc.task_set_on(&t.blue_target_group_arn).unwrap().clone();
    let bad = aws
        .seed(
            json!({"account": ACCOUNT_B, "region": REGION, "repository": "hello",
                     "tag": "v1.2.1", "argv": bad_release_argv()}),
        )
        .await;
    let td = ecs::clone_task_definition(
        &c,
        &live.task_definition,
        None,
        bad["image"].as_str().unwrap(),
        "v1.2.1",
    )
    .await
    .unwrap();
    let ts = ecs::ensure_task_set(
        &c,
        &svc,
        &ecs::TaskSetSpec {
            cluster: &p.cluster,
            service: &p.service,
            deployment: "d-bad",
            purpose: ecs::Purpose::Release,
            task_definition: &td,
            target_group: &t.green_target_group_arn,
            container: "app",
            port: 8080,
            scale: 100.0,
        },
    )
    .await
    .unwrap();
    let err = ecs::wait_steady(
        &c,
        &p.cluster,
        &p.service,
        &ts.task_set().arn,
        Duration::from_secs(3),
        Duration::from_millis(100),
        || green_healthy(&c, &t, 1),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("did not become ready ("), "{msg}");
    assert!(msg.contains("in eu-west-1"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_the_external_controller_is_refused() {
    let aws = LocalAws::start();
    let (c, _) = region(&aws).await;
    c.ecs
        .create_service()
        .cluster(format!("hello-{REGION}"))
        .service_name("rolling")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    let err = ecs::describe(&c, &format!("hello-{REGION}"), "rolling")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("uses the ECS deployment controller; bluegreen needs EXTERNAL"),
        "{err}"
    );
    let err = ecs::describe(&c, &format!("hello-{REGION}"), "nope")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("service nope of cluster hello-eu-west-1 does not exist in eu-west-1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_in_alarm_are_reported_and_unknown_alarms_refused() {
    let aws = LocalAws::start();
    let (c, _) = region(&aws).await;
    let name = format!("hello-{REGION}-5xx");
    let names = vec![name.clone()];
    assert!(alarms::firing(&c, &names).await.unwrap().is_empty());
    assert_eq!(alarms::states(&c, &names).await.unwrap()[0].state, "OK");
    c.cloudwatch
        .set_alarm_state()
        .alarm_name(&name)
        .state_value(StateValue::Alarm)
        .state_reason("5xx over threshold")
        .send()
        .await
        .unwrap();
    let firing = alarms::firing(&c, &names).await.unwrap();
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0].reason.as_deref(), Some("5xx over threshold"));
    let err = alarms::states(&c, &[name, "hello-typo".into()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("alarm(s) hello-typo do not exist in eu-west-1"),
        "{err}"
    );
}
