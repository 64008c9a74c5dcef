//! The local AWS stand-in, driven with the AWS SDK for Rust directly (not bluegreen): it must
//! behave like AWS where bluegreen depends on it, including the failures.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_ecs::types::{
    ContainerDefinition, KeyValuePair, LoadBalancer, PortMapping, Scale, ScaleUnit,
};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, TargetDescription, TargetGroupTuple,
};
use base64::Engine;
use serde_json::{Value, json};
use support::*;

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

async fn bootstrap_one(aws: &LocalAws, account: &str, region: &str, desired: u32) -> Value {
    let seeded = aws.seed_service(account, region, "hello", "v1.1.0").await;
    let out = aws
        .bootstrap(json!({
            "account": account,
            "image": seeded["image"],
            "app_version": "v1.1.0",
            "repository": "hello",
            "regions": [region_spec(region, 18000, desired)],
        }))
        .await;
    out["regions"][region].clone()
}

/// `GET http://<alb>:<port>/health` → (status, version).
async fn via_alb(http: &reqwest::Client, dns: &str, port: u16) -> Result<(u16, String), String> {
    let res = http
        .get(format!("http://{dns}:{port}/health"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        body["version"].as_str().unwrap_or_default().to_owned(),
    ))
}

async fn target_states(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    tg: &str,
) -> Vec<(String, i32, String, String)> {
    elb.describe_target_health()
        .target_group_arn(tg)
        .send()
        .await
        .expect("DescribeTargetHealth")
        .target_health_descriptions()
        .iter()
        .map(|d| {
            let t = d.target().unwrap();
            let h = d.target_health().unwrap();
            (
                t.id().unwrap_or_default().to_owned(),
                t.port().unwrap_or_default(),
                h.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                h.reason()
                    .map(|r| r.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

async fn healthy_targets(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    tg: &str,
    n: usize,
) -> Vec<(String, i32)> {
    eventually(
        &format!("{n} healthy targets in {tg}"),
        Duration::from_secs(30),
        || async {
            let states = target_states(elb, tg).await;
            let healthy: Vec<_> = states
                .iter()
                .filter(|s| s.2 == "healthy")
                .map(|s| (s.0.clone(), s.1))
                .collect();
            (healthy.len() == n && states.len() == n).then_some(healthy)
        },
    )
    .await
}

async fn set_weights(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
    blue: (&str, i32),
    green: (&str, i32),
) {
    let forward = ForwardActionConfig::builder()
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(blue.0)
                .weight(blue.1)
                .build(),
        )
        .target_groups(
            TargetGroupTuple::builder()
                .target_group_arn(green.0)
                .weight(green.1)
                .build(),
        )
        .build();
    elb.modify_listener()
        .listener_arn(listener)
        .default_actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(forward)
                .build(),
        )
        .send()
        .await
        .expect("ModifyListener");
}

async fn read_weights(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    listener: &str,
) -> HashMap<String, i32> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener)
        .send()
        .await
        .expect("DescribeListeners");
    let action = &out.listeners()[0].default_actions()[0];
    action
        .forward_config()
        .expect("a weighted forward")
        .target_groups()
        .iter()
        .map(|t| {
            (
                t.target_group_arn().unwrap().to_owned(),
                t.weight().unwrap(),
            )
        })
        .collect()
}

/// Registers a task definition running `image` as `version` and creates a task set for it on
/// `tg_arn` at 100%.
async fn green_task_set(
    ecs: &aws_sdk_ecs::Client,
    region: &str,
    image: &str,
    version: &str,
    tg_arn: &str,
    subnets: &[Value],
) -> String {
    let td = ecs
        .register_task_definition()
        .family("hello")
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image(image)
                .essential(true)
                .port_mappings(PortMapping::builder().container_port(8080).build())
                .environment(
                    KeyValuePair::builder()
                        .name("APP_VERSION")
                        .value(version)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("RegisterTaskDefinition");
    let td_arn = td
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_owned();
    let subnets: Vec<String> = subnets
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    ecs.create_task_set()
        .cluster(format!("hello-{region}"))
        .service("hello")
        .task_definition(td_arn)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(
            aws_sdk_ecs::types::NetworkConfiguration::builder()
                .awsvpc_configuration(
                    aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                        .set_subnets(Some(subnets))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(tg_arn)
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .scale(
            Scale::builder()
                .value(100.0)
                .unit(ScaleUnit::Percent)
                .build(),
        )
        .send()
        .await
        .expect("CreateTaskSet")
        .task_set()
        .unwrap()
        .task_set_arn()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_three_regions_bootstrap_and_assume_role_lands_in_the_other_account() {
    let aws = LocalAws::start();
    let mut albs = Vec::new();
    for account in [ACCOUNT_A, ACCOUNT_B] {
        let seeded = aws
            .seed_service(account, "us-east-1", "hello", "v1.1.0")
            .await;
        let regions: Vec<Value> = REGIONS.iter().map(|r| region_spec(r, 18000, 1)).collect();
        let out = aws
            .bootstrap(json!({
                "account": account, "image": seeded["image"], "app_version": "v1.1.0",
                "repository": "hello",
                "lock_table": {"name": "bluegreen-lock", "region": "us-east-1"},
                "regions": regions,
            }))
            .await;
        for region in REGIONS {
            albs.push((
                account,
                region,
                out["regions"][region]["dns_name"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ));
        }
    }

    // AssumeRole lands in the second account.
    let b = aws.sdk_as(ACCOUNT_B, "eu-west-1").await;
    let who = aws_sdk_sts::Client::new(&b)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.account(), Some(ACCOUNT_B));

    // Each account sees only its own load balancers.
    for account in [ACCOUNT_A, ACCOUNT_B] {
        for region in REGIONS {
            let cfg = aws.sdk_as(account, region).await;
            let lbs = aws_sdk_elasticloadbalancingv2::Client::new(&cfg)
                .describe_load_balancers()
                .send()
                .await
                .unwrap();
            let arns: Vec<_> = lbs
                .load_balancers()
                .iter()
                .map(|l| l.load_balancer_arn().unwrap().to_owned())
                .collect();
            assert_eq!(arns.len(), 1, "{account}/{region}: {arns:?}");
            assert!(
                arns[0].contains(&format!(":{region}:{account}:")),
                "{arns:?}"
            );
        }
    }

    // Six ALB addresses, all distinct, each serving its own region's live release.
    let distinct: BTreeSet<_> = albs.iter().map(|a| &a.2).collect();
    assert_eq!(distinct.len(), 6, "{albs:?}");
    for (account, region, dns) in &albs {
        let body: Value = eventually(
            &format!("{account}/{region} ALB at {dns} to answer"),
            Duration::from_secs(30),
            || async {
                let res = aws
                    .http
                    .get(format!("http://{dns}:18000/"))
                    .send()
                    .await
                    .ok()?;
                (res.status() == 200).then_some(res.json::<Value>().await.ok()?)
            },
        )
        .await;
        assert_eq!(body["region"], *region);
        assert_eq!(body["version"], "v1.1.0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_set_runs_real_tasks_that_scale_die_and_turn_unhealthy() {
    let aws = LocalAws::start();
    let region = "us-east-1";
    let topo = bootstrap_one(&aws, ACCOUNT_A, region, 3).await;
    let cfg = aws.sdk_as(ACCOUNT_A, region).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let blue = topo["blue_target_group_arn"].as_str().unwrap();

    // 3 tasks (desired 3 × 100%), each a healthy target answering with the task definition's version.
    let targets = healthy_targets(&elb, blue, 3).await;
    for (ip, port) in &targets {
        let body: Value = aws
            .http
            .get(format!("http://{ip}:{port}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "healthy");
        assert_eq!(body["version"], "v1.1.0");
    }
    let ts = eventually(
        "the task set to be steady",
        Duration::from_secs(10),
        || async {
            let out = ecs
                .describe_task_sets()
                .cluster(format!("hello-{region}"))
                .service("hello")
                .send()
                .await
                .unwrap();
            let ts = out.task_sets()[0].clone();
            (ts.stability_status().map(|s| s.as_str()) == Some("STEADY_STATE")).then_some(ts)
        },
    )
    .await;
    assert_eq!(ts.running_count(), 3);
    assert_eq!(ts.computed_desired_count(), 3);

    // Killing one task: the ALB reports it unhealthy, with a reason.
    let victim = aws
        .tasks()
        .await
        .into_iter()
        .find(|t| t["alive"] == true)
        .expect("a running task");
    let ip = victim["ip"].as_str().unwrap().to_owned();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim["pid"].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let reason = eventually(
        "the killed task's target to turn unhealthy",
        Duration::from_secs(10),
        || async {
            target_states(&elb, blue)
                .await
                .into_iter()
                .find(|s| s.0 == ip && s.2 == "unhealthy")
                .map(|s| s.3)
        },
    )
    .await;
    assert_eq!(reason, "Target.FailedHealthChecks");

    // Scaling to 0 stops every task and deregisters every target.
    let ts_arn = ts.task_set_arn().unwrap();
    ecs.update_task_set()
        .cluster(format!("hello-{region}"))
        .service("hello")
        .task_set(ts_arn)
        .scale(Scale::builder().value(0.0).unit(ScaleUnit::Percent).build())
        .send()
        .await
        .unwrap();
    eventually("every task to stop", Duration::from_secs(20), || async {
        let alive = aws
            .tasks()
            .await
            .iter()
            .filter(|t| t["task_set_arn"] == ts_arn)
            .count();
        let registered = target_states(&elb, blue)
            .await
            .into_iter()
            .filter(|s| s.2 != "draining")
            .count();
        (alive == 0 && registered == 0).then_some(())
    })
    .await;
    let out = ecs
        .describe_task_sets()
        .cluster(format!("hello-{region}"))
        .service("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(out.task_sets()[0].running_count(), 0);
    assert_eq!(out.task_sets()[0].computed_desired_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_never_gets_healthy_targets() {
    let aws = LocalAws::start();
    let region = "eu-west-1";
    let topo = bootstrap_one(&aws, ACCOUNT_A, region, 2).await;
    let cfg = aws.sdk_as(ACCOUNT_A, region).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let green = topo["green_target_group_arn"].as_str().unwrap();
    let subnets = topo["subnets"].as_array().unwrap();

    // /health answers 500: targets turn unhealthy with ResponseCodeMismatch.
    let bad = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": region, "repository": "hello",
                     "tag": "v1.2.1", "argv": bad_release_argv()}),
        )
        .await;
    let ts = green_task_set(
        &ecs,
        region,
        bad["image"].as_str().unwrap(),
        "v1.2.1",
        green,
        subnets,
    )
    .await;
    let reasons = eventually(
        "the bad release's targets to be unhealthy",
        Duration::from_secs(20),
        || async {
            let s = target_states(&elb, green).await;
            (s.len() == 2 && s.iter().all(|t| t.2 == "unhealthy"))
                .then(|| s.into_iter().map(|t| t.3).collect::<Vec<_>>())
        },
    )
    .await;
    assert!(
        reasons.iter().all(|r| r == "Target.ResponseCodeMismatch"),
        "{reasons:?}"
    );
    ecs.delete_task_set()
        .cluster(format!("hello-{region}"))
        .service("hello")
        .task_set(&ts)
        .send()
        .await
        .unwrap();

    // Crashes at start: over several health intervals nothing in green is ever healthy and the
    // task set never reaches a steady state.
    let crash = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": region, "repository": "hello",
                     "tag": "v1.2.2", "argv": bad_release_argv(), "env": {"BAD_MODE": "crash"}}),
        )
        .await;
    let ts = green_task_set(
        &ecs,
        region,
        crash["image"].as_str().unwrap(),
        "v1.2.2",
        green,
        subnets,
    )
    .await;
    for _ in 0..30 {
        let states = target_states(&elb, green).await;
        assert!(
            states.iter().all(|s| s.2 != "healthy"),
            "a crashing release got a healthy target: {states:?}"
        );
        let out = ecs
            .describe_task_sets()
            .cluster(format!("hello-{region}"))
            .service("hello")
            .task_sets(&ts)
            .send()
            .await
            .unwrap();
        let set = &out.task_sets()[0];
        assert_ne!(
            set.stability_status().map(|s| s.as_str()),
            Some("STEADY_STATE")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = aws.status().await["events"].to_string();
    assert!(events.contains("exited with 3"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_image_is_pulled_by_digest_with_the_ecr_token_and_refused_without() {
    let aws = LocalAws::start();
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_B, "region": "eu-west-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"], "layers": 5, "layer_size": 4096,
                     "platforms": ["linux/amd64", "linux/arm64"]}),
        )
        .await;
    let digest = seeded["digest"].as_str().unwrap();
    let cfg = aws.sdk_as(ACCOUNT_B, "eu-west-1").await;
    let auth = aws_sdk_ecr::Client::new(&cfg)
        .get_authorization_token()
        .send()
        .await
        .unwrap();
    let data = &auth.authorization_data()[0];
    let endpoint = data.proxy_endpoint().unwrap();
    assert_eq!(endpoint, seeded["registry"]);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token().unwrap())
        .unwrap();
    let (user, pass) = std::str::from_utf8(&decoded)
        .unwrap()
        .split_once(':')
        .unwrap();
    assert_eq!(user, "AWS");

    let index_url = format!("{endpoint}/v2/hello/manifests/{digest}");
    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    let res = aws
        .http
        .get(&index_url)
        .basic_auth(user, Some(pass))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["docker-content-digest"], digest);
    let index: Value = res.json().await.unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);

    // A platform manifest by digest, and a layer whose bytes hash to its digest.
    let child = children[1]["digest"].as_str().unwrap();
    let manifest: Value = aws
        .http
        .get(format!("{endpoint}/v2/hello/manifests/{child}"))
        .basic_auth(user, Some(pass))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 5);
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = aws
        .http
        .get(format!("{endpoint}/v2/hello/blobs/{layer}"))
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&blob)?;
            c.wait_with_output()
        })
        .unwrap();
    let sum = String::from_utf8(out.stdout).unwrap();
    assert_eq!(format!("sha256:{}", &sum[..64]), layer);

    // No credentials, or the wrong password: refused.
    let anonymous = aws.http.get(&index_url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = aws
        .http
        .get(&index_url)
        .basic_auth("AWS", Some("not-the-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_weights_round_trip_and_traffic_follows_them_without_a_failed_request() {
    let aws = LocalAws::start();
    let region = "us-east-1";
    let topo = bootstrap_one(&aws, ACCOUNT_A, region, 2).await;
    let cfg = aws.sdk_as(ACCOUNT_A, region).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let ecs = aws_sdk_ecs::Client::new(&cfg);
    let blue = topo["blue_target_group_arn"].as_str().unwrap().to_owned();
    let green = topo["green_target_group_arn"].as_str().unwrap().to_owned();
    let listener = topo["listener_arn"].as_str().unwrap().to_owned();
    let dns = topo["dns_name"].as_str().unwrap().to_owned();

    let v2 = aws.seed_service(ACCOUNT_A, region, "hello", "v1.2.0").await;
    green_task_set(
        &ecs,
        region,
        v2["image"].as_str().unwrap(),
        "v1.2.0",
        &green,
        topo["subnets"].as_array().unwrap(),
    )
    .await;
    healthy_targets(&elb, &blue, 2).await;
    healthy_targets(&elb, &green, 2).await;

    let count_versions = |n: usize| {
        let (http, dns) = (aws.http.clone(), dns.clone());
        async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..n {
                let (status, version) = via_alb(&http, &dns, 18000).await.unwrap();
                assert_eq!(status, 200);
                *seen.entry(version).or_default() += 1;
            }
            seen
        }
    };

    for (b, g) in [(100, 0), (0, 100), (50, 50), (10, 90), (1, 999)] {
        set_weights(&elb, &listener, (&blue, b), (&green, g)).await;
        let weights = read_weights(&elb, &listener).await;
        assert_eq!(weights[&blue], b, "blue weight after ModifyListener");
        assert_eq!(weights[&green], g, "green weight after ModifyListener");
    }

    set_weights(&elb, &listener, (&blue, 100), (&green, 0)).await;
    assert_eq!(
        count_versions(60).await,
        HashMap::from([("v1.1.0".into(), 60)])
    );
    set_weights(&elb, &listener, (&blue, 0), (&green, 100)).await;
    assert_eq!(
        count_versions(60).await,
        HashMap::from([("v1.2.0".into(), 60)])
    );
    set_weights(&elb, &listener, (&blue, 50), (&green, 50)).await;
    let mix = count_versions(400).await;
    let green_share = *mix.get("v1.2.0").unwrap_or(&0) as f64 / 400.0;
    assert!((0.38..=0.62).contains(&green_share), "50/50 gave {mix:?}");

    // Continuous load while the weights move: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        let (http, dns) = (aws.http.clone(), dns.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match via_alb(&http, &dns, 18000).await {
                    Ok((200, v)) if v == "v1.1.0" || v == "v1.2.0" => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
            }
        }));
    }
    for (b, g) in [(90, 10), (50, 50), (0, 100), (100, 0), (25, 75), (100, 0)] {
        tokio::time::sleep(Duration::from_millis(250)).await;
        set_weights(&elb, &listener, (&blue, b), (&green, g)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let served = ok.load(Ordering::SeqCst);
    assert!(served > 100, "only {served} requests went through");
    eprintln!("{served} requests during 6 weight changes, 0 failed; 50/50 mix {mix:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_authorization_token_in_each_account_and_region_leads_to_that_registry() {
    let aws = LocalAws::start();
    let mut tokens = Vec::new();
    for account in [ACCOUNT_A, ACCOUNT_B] {
        for region in REGIONS {
            let cfg = aws.sdk_as(account, region).await;
            let auth = aws_sdk_ecr::Client::new(&cfg)
                .get_authorization_token()
                .send()
                .await
                .unwrap();
            let d = &auth.authorization_data()[0];
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(d.authorization_token().unwrap())
                .unwrap();
            let pass = String::from_utf8(decoded).unwrap()[4..].to_owned();
            tokens.push((d.proxy_endpoint().unwrap().to_owned(), pass));
        }
    }
    let endpoints: BTreeSet<_> = tokens.iter().map(|t| &t.0).collect();
    assert_eq!(
        endpoints.len(),
        6,
        "one registry per account and region: {tokens:?}"
    );
    let registries = aws.status().await["registries"].clone();
    for (i, (endpoint, pass)) in tokens.iter().enumerate() {
        let account = if i < 3 { ACCOUNT_A } else { ACCOUNT_B };
        assert_eq!(
            registries[format!("{account}/{}", REGIONS[i % 3])],
            *endpoint
        );
        let own = aws
            .http
            .get(format!("{endpoint}/v2/"))
            .basic_auth("AWS", Some(pass))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200, "{endpoint} refused its own token");
        let other = &tokens[(i + 1) % tokens.len()].0;
        let foreign = aws
            .http
            .get(format!("{other}/v2/"))
            .basic_auth("AWS", Some(pass))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 401, "{other} accepted {endpoint}'s token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistered_targets_drain_before_they_disappear() {
    let aws = LocalAws::start();
    let region = "ap-southeast-2";
    let topo = bootstrap_one(&aws, ACCOUNT_B, region, 1).await;
    let cfg = aws.sdk_as(ACCOUNT_B, region).await;
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&cfg);
    let blue = topo["blue_target_group_arn"].as_str().unwrap();
    let (ip, port) = healthy_targets(&elb, blue, 1).await.remove(0);
    elb.deregister_targets()
        .target_group_arn(blue)
        .targets(TargetDescription::builder().id(&ip).port(port).build())
        .send()
        .await
        .unwrap();
    let states = target_states(&elb, blue).await;
    assert!(
        states
            .iter()
            .any(|s| s.0 == ip && s.2 == "draining" && s.3 == "Target.DeregistrationInProgress"),
        "{states:?}"
    );
}

/// The registry of `account`/`region` as ECR hands it out: (proxyEndpoint, user, password).
async fn registry_login(aws: &LocalAws, account: &str, region: &str) -> (String, String, String) {
    let cfg = aws.sdk_as(account, region).await;
    let auth = aws_sdk_ecr::Client::new(&cfg)
        .get_authorization_token()
        .send()
        .await
        .expect("GetAuthorizationToken");
    let data = &auth.authorization_data()[0];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token().unwrap())
        .unwrap();
    let (user, pass) = std::str::from_utf8(&decoded)
        .unwrap()
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .unwrap();
    (data.proxy_endpoint().unwrap().to_owned(), user, pass)
}

/// The first layer of platform manifest `digest` in `repo`.
async fn first_layer(
    http: &reqwest::Client,
    (endpoint, user, pass): &(String, String, String),
    repo: &str,
    digest: &str,
) -> String {
    let manifest: Value = http
        .get(format!("{endpoint}/v2/{repo}/manifests/{digest}"))
        .basic_auth(user, Some(pass))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    manifest["layers"][0]["digest"].as_str().unwrap().to_owned()
}

/// (status, description) of a manifest's scan, and its severity counts as `SEVERITY` → n.
async fn scan_of(
    ecr: &aws_sdk_ecr::Client,
    repo: &str,
    digest: &str,
) -> (
    String,
    Option<String>,
    std::collections::BTreeMap<String, i32>,
) {
    let out = ecr
        .describe_image_scan_findings()
        .repository_name(repo)
        .image_id(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_digest(digest)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeImageScanFindings {digest}: {e:?}"));
    let status = out
        .image_scan_status()
        .expect("a scanned manifest has a status");
    let counts = out
        .image_scan_findings()
        .and_then(|f| f.finding_severity_counts())
        .map(|m| m.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect())
        .unwrap_or_default();
    (
        status.status().unwrap().as_str().to_owned(),
        status.description().map(str::to_owned),
        counts,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_index_is_never_scanned_its_platform_manifests_are() {
    use aws_sdk_ecr::error::ProvideErrorMetadata;
    use aws_sdk_ecr::operation::describe_image_scan_findings::DescribeImageScanFindingsError;
    use aws_sdk_ecr::operation::start_image_scan::StartImageScanError;

    let aws = LocalAws::start();
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"],
                     "platforms": ["linux/amd64", "linux/arm64"]}),
        )
        .await;
    let index = seeded["digest"].as_str().unwrap().to_owned();
    let amd64 = seeded["platform_digests"][0].as_str().unwrap().to_owned();
    let arm64 = seeded["platform_digests"][1].as_str().unwrap().to_owned();
    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, "us-east-1").await);
    let by_digest = |d: &str| {
        aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(d)
            .build()
    };

    // The index: no scan to describe, and none can be started.
    let err = ecr
        .describe_image_scan_findings()
        .repository_name("hello")
        .image_id(by_digest(&index))
        .send()
        .await
        .expect_err("an index has no scan findings")
        .into_service_error();
    assert!(
        matches!(
            err,
            DescribeImageScanFindingsError::ScanNotFoundException(_)
        ),
        "{err:?}"
    );
    let err = ecr
        .start_image_scan()
        .repository_name("hello")
        .image_id(by_digest(&index))
        .send()
        .await
        .expect_err("an index cannot be scanned")
        .into_service_error();
    assert!(
        matches!(err, StartImageScanError::UnsupportedImageTypeException(_)),
        "{err:?}"
    );
    assert!(
        err.message().unwrap_or_default().contains(
            "An artifact with media type 'application/vnd.oci.image.index.v1+json' cannot be scanned"
        ),
        "{err:?}"
    );

    // Findings cannot be set on the index; the control API names its platform manifests.
    let res = aws
        .http
        .post(format!("{}/_localaws/scan-findings", aws.endpoint))
        .json(
            &json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                      "digest": index, "counts": {"CRITICAL": 1}}),
        )
        .send()
        .await
        .unwrap();
    assert!(!res.status().is_success());
    let body: Value = res.json().await.unwrap();
    let msg = body["error"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("is an image index"), "{msg}");
    assert!(msg.contains(&arm64), "{msg}");

    // Findings on one platform (picked through the index) stay on that platform.
    aws.control_post(
        "scan-findings",
        json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
               "digest": index, "platform": "linux/arm64", "counts": {"CRITICAL": 2, "LOW": 3}}),
    )
    .await;
    let (status, description, counts) = eventually(
        "the arm64 manifest's scan to complete",
        Duration::from_secs(20),
        || async {
            let s = scan_of(&ecr, "hello", &arm64).await;
            (s.0 == "COMPLETE").then_some(s)
        },
    )
    .await;
    assert_eq!(
        description.as_deref(),
        Some("The scan was completed successfully.")
    );
    assert_eq!(counts.get("CRITICAL"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("LOW"), Some(&3), "{counts:?}");
    assert_eq!(status, "COMPLETE");
    let amd = eventually(
        "the amd64 manifest's scan to complete",
        Duration::from_secs(20),
        || async {
            let s = scan_of(&ecr, "hello", &amd64).await;
            (s.0 == "COMPLETE").then_some(s)
        },
    )
    .await;
    assert!(amd.2.is_empty(), "amd64 got arm64's findings: {:?}", amd.2);

    // DescribeImages: each platform manifest is an (untagged) image with a scan status; the
    // tagged index has none.
    let images = ecr
        .describe_images()
        .repository_name("hello")
        .send()
        .await
        .unwrap();
    let details = images.image_details();
    assert_eq!(details.len(), 3, "{details:?}");
    for d in details {
        let digest = d.image_digest().unwrap();
        if digest == index {
            assert!(d.image_scan_status().is_none(), "{d:?}");
            assert_eq!(d.image_tags(), ["v1.2.0".to_owned()]);
        } else {
            assert!(digest == amd64 || digest == arm64, "{d:?}");
            let status = d
                .image_scan_status()
                .expect("a platform manifest is scanned");
            assert_eq!(status.status().map(|s| s.as_str()), Some("COMPLETE"));
            assert!(d.image_tags().is_empty(), "{d:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_push_is_scanned_in_progress_first_and_can_fail() {
    let aws = LocalAws::start();
    aws.control_post("settings", json!({"scan_delay": 5.0}))
        .await;
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"]}),
        )
        .await;
    let digest = seeded["digest"].as_str().unwrap().to_owned();
    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, "us-east-1").await);

    // Right after the push: in progress, no findings yet, even with findings set for it.
    aws.control_post(
        "scan-findings",
        json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
               "digest": digest, "counts": {"CRITICAL": 1}}),
    )
    .await;
    let (status, _, counts) = scan_of(&ecr, "hello", &digest).await;
    assert_eq!(status, "IN_PROGRESS");
    assert!(counts.is_empty(), "{counts:?}");
    let listed = ecr
        .describe_images()
        .repository_name("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.image_details()[0]
            .image_scan_status()
            .and_then(|s| s.status())
            .map(|s| s.as_str()),
        Some("IN_PROGRESS")
    );

    // Then complete, with the findings.
    let counts = eventually("the scan to complete", Duration::from_secs(30), || async {
        let s = scan_of(&ecr, "hello", &digest).await;
        (s.0 == "COMPLETE").then_some(s.2)
    })
    .await;
    assert_eq!(counts.get("CRITICAL"), Some(&1), "{counts:?}");

    // A scan that failed: a status and a description, no findings.
    aws.control_post(
        "scan-findings",
        json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
               "digest": digest, "status": "FAILED"}),
    )
    .await;
    let (status, description, counts) = scan_of(&ecr, "hello", &digest).await;
    assert_eq!(status, "FAILED");
    assert!(
        description
            .unwrap_or_default()
            .starts_with("UnsupportedImageError"),
        "{status}"
    );
    assert!(counts.is_empty(), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_get_redirects_to_a_presigned_url_that_refuses_the_registry_credentials() {
    let aws = LocalAws::start();
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_B, "region": "eu-west-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"], "layer_size": 65536}),
        )
        .await;
    let login = registry_login(&aws, ACCOUNT_B, "eu-west-1").await;
    let (endpoint, user, pass) = &login;
    let layer = first_layer(
        &aws.http,
        &login,
        "hello",
        seeded["digest"].as_str().unwrap(),
    )
    .await;
    let blob_url = format!("{endpoint}/v2/hello/blobs/{layer}");
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // HEAD is answered by the registry itself.
    let head = manual
        .head(&blob_url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["docker-content-digest"], layer.as_str());

    // GET is a 307 to another host, pre-signed.
    let redirect = manual
        .get(&blob_url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    let target = reqwest::Url::parse(&location).unwrap();
    let registry = reqwest::Url::parse(endpoint).unwrap();
    assert_ne!(
        (target.host_str(), target.port()),
        (registry.host_str(), registry.port()),
        "the layer URL must be on another host: {location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires="), "{location}");

    // The registry's credentials sent along: refused, as S3 refuses two auth mechanisms.
    let both = manual
        .get(&location)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let body = both.text().await.unwrap();
    assert!(body.contains("<Code>InvalidArgument</Code>"), "{body}");
    assert!(body.contains("Only one auth mechanism allowed"), "{body}");

    // Without them: the bytes of the layer.
    let bytes = manual
        .get(&location)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bluegreen::aws::registry::sha256_digest(&bytes), layer);

    // The URL is for GET only, and only as signed.
    let head = manual.head(&location).send().await.unwrap();
    assert_eq!(head.status(), 403);
    let mut tampered = location.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let res = manual.get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("<Code>SignatureDoesNotMatch</Code>"),
        "{body}"
    );

    // A client that follows redirects as reqwest does (Authorization dropped across hosts) just
    // gets the layer.
    let followed = aws
        .http
        .get(&blob_url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(
        bluegreen::aws::registry::sha256_digest(&followed.bytes().await.unwrap()),
        layer
    );

    // An expired URL.
    aws.control_post("settings", json!({"blob_url_expiry": 1.0}))
        .await;
    let short = manual
        .get(&blob_url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    let short = short.headers()["location"].to_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let res = manual.get(&short).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("<Message>Request has expired</Message>"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_mount_across_repositories_only_with_blob_mounting_enabled() {
    use aws_sdk_ecr::error::ProvideErrorMetadata;

    let aws = LocalAws::start();
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": "us-east-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"]}),
        )
        .await;
    let login = registry_login(&aws, ACCOUNT_A, "us-east-1").await;
    let (endpoint, user, pass) = &login;
    let layer = first_layer(
        &aws.http,
        &login,
        "hello",
        seeded["digest"].as_str().unwrap(),
    )
    .await;
    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, "us-east-1").await);
    let mount = |repo: &str| {
        aws.http
            .post(format!(
                "{endpoint}/v2/{repo}/blobs/uploads/?mount={layer}&from=hello"
            ))
            .basic_auth(user, Some(pass))
            .send()
    };

    // Off unless enabled: the mount request opens a plain upload.
    let setting = ecr
        .get_account_setting()
        .name("BLOB_MOUNTING")
        .send()
        .await
        .unwrap();
    assert_eq!(setting.value(), Some("DISABLED"));
    let res = mount("mirror-a").await.unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.headers().contains_key("location"));
    let res = aws
        .http
        .head(format!("{endpoint}/v2/mirror-a/blobs/{layer}"))
        .basic_auth(user, Some(pass))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "the blob was mounted with mounting disabled"
    );

    // Enabled: mounted (201, the blob's own URL).
    let put = ecr
        .put_account_setting()
        .name("BLOB_MOUNTING")
        .value("ENABLED")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (put.name(), put.value()),
        (Some("BLOB_MOUNTING"), Some("ENABLED"))
    );
    let res = mount("mirror-b").await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/v2/mirror-b/blobs/{layer}")),
        "{:?}",
        res.headers()
    );

    // The setting is the registry's: another region's is still off.
    let other = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, "eu-west-1").await)
        .get_account_setting()
        .name("BLOB_MOUNTING")
        .send()
        .await
        .unwrap();
    assert_eq!(other.value(), Some("DISABLED"));

    // Only ENABLED and DISABLED are values.
    let err = ecr
        .put_account_setting()
        .name("BLOB_MOUNTING")
        .value("YES")
        .send()
        .await
        .expect_err("YES is no value of BLOB_MOUNTING")
        .into_service_error();
    assert_eq!(err.code(), Some("InvalidParameterException"), "{err:?}");

    // Disabled again: plain uploads again.
    ecr.put_account_setting()
        .name("BLOB_MOUNTING")
        .value("DISABLED")
        .send()
        .await
        .unwrap();
    assert_eq!(mount("mirror-c").await.unwrap().status(), 202);
}
