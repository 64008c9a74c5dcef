//! Measurement entry points for `bench/` that run bluegreen's own code paths in isolation,
//! against whatever `AWS_ENDPOINT_URL` names (the stand-in in `bench/`):
//!
//!   bench copy <source-account> <source-region> <repo> <tag> <target-account> <regions,...> <target-repo>
//!       The promote's image copy: ECR tokens, resolve, then `copy_all` to every region at once
//!       with the promote's parallelism. Prints one JSON line.
//!   bench modify-listener <account> <regions,...> <name-prefix> <port> <test-port> <n>
//!       `n` rounds of bluegreen's `set_weights` (one ModifyListener), one per region at once,
//!       each writing the production listener's current weights again (a no-op change): the
//!       call bluegreen makes per region to shift or roll back. A region's load balancer is
//!       `<prefix><region>`, its target groups `<prefix><region>-blue` and `-green`, as the
//!       stand-in's bootstrap names them. Prints one JSON line with the times of a round.
//!
//! Accounts are reached by AssumeRole into `arn:aws:iam::<account>:role/bench`.

use std::time::Instant;

use bluegreen::aws::{self, Settings, registry};
use serde_json::json;

async fn config(account: &str, region: &str) -> aws_config::SdkConfig {
    let settings = Settings {
        max_attempts: 1,
        ..Settings::default()
    };
    let base = aws::base_config(&settings, region).await;
    aws::assume_role(
        &base,
        &format!("arn:aws:iam::{account}:role/bench"),
        "bench",
    )
    .await
}

fn usage() -> ! {
    eprintln!(
        "usage: bench copy <source-account> <source-region> <repo> <tag> <target-account> <regions,...> <target-repo>\n       \
         bench modify-listener <account> <regions,...> <name-prefix> <port> <test-port> <n>"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["copy", args @ ..] => copy(args).await,
        [
            "modify-listener",
            account,
            regions,
            prefix,
            port,
            test_port,
            n,
        ] => {
            let port: u16 = port.parse().unwrap_or_else(|_| usage());
            let test_port: u16 = test_port.parse().unwrap_or_else(|_| usage());
            let n: usize = n.parse().unwrap_or_else(|_| usage());
            modify_listener(account, regions, prefix, (port, test_port), n).await
        }
        _ => usage(),
    }
}

async fn copy(args: &[&str]) {
    let [
        src_account,
        src_region,
        repo,
        tag,
        dst_account,
        regions,
        dst_repo,
    ] = args
    else {
        usage()
    };
    let http = registry::http_client().expect("HTTP client");
    let started = Instant::now();
    let src_cfg = config(src_account, src_region).await;
    let source = registry::Registry::from_ecr(
        &aws_sdk_ecr::Client::new(&src_cfg),
        src_region,
        http.clone(),
    )
    .await
    .expect("source registry");
    let image = registry::resolve(&source, repo, tag)
        .await
        .expect("resolve");
    let mut targets = Vec::new();
    for r in regions.split(',') {
        let cfg = config(dst_account, r).await;
        let reg = registry::Registry::from_ecr(&aws_sdk_ecr::Client::new(&cfg), r, http.clone())
            .await
            .expect("target registry");
        targets.push((r.to_owned(), reg));
    }
    // The same bounds as promote: 4 regions and 4 blobs per region in flight.
    let reports = registry::copy_all(&image, &targets, dst_repo, 4, 4).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    let mut bytes = 0;
    for (r, rep) in reports {
        let rep = rep.unwrap_or_else(|e| panic!("{r}: {e}"));
        bytes += rep.bytes_copied;
        out.push(
            json!({"region": r, "blobs": rep.blobs, "copied": rep.blobs_copied,
                        "skipped": rep.blobs_skipped, "bytes": rep.bytes_copied,
                        "already_present": rep.already_present}),
        );
    }
    println!(
        "{}",
        json!({"digest": image.digest(), "seconds": elapsed, "blob_bytes": bytes, "regions": out})
    );
}

async fn modify_listener(account: &str, regions: &str, prefix: &str, ports: (u16, u16), n: usize) {
    use bluegreen::aws::{Clients, elb};
    let regions: Vec<&str> = regions.split(',').collect();
    let clients = Clients::new(&config(account, regions[0]).await, regions.iter().copied());
    let mut listeners = Vec::new();
    for r in &regions {
        // Only the load balancer, listener and target group names are read here.
        let plan = bluegreen::config::RegionPlan {
            region: (*r).to_owned(),
            cluster: String::new(),
            service: String::new(),
            load_balancer: format!("{prefix}{r}"),
            listener_port: ports.0,
            test_listener_port: ports.1,
            blue_target_group: format!("{prefix}{r}-blue"),
            green_target_group: format!("{prefix}{r}-green"),
            alarms: Vec::new(),
            probe_path: "/health".into(),
            container: None,
            task_family: None,
            test_header: "X-Bluegreen-Test".into(),
            probe: bluegreen::config::Probe::Http,
        };
        let c = clients.region(r);
        let topo = elb::discover(c, &plan).await.expect("load balancer");
        let weights = elb::weights(c, &topo, &plan)
            .await
            .expect("weighted forward");
        listeners.push((c, topo, weights));
    }
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        // Every region at once, as a rollback flips them.
        for res in futures_util::future::join_all(
            listeners
                .iter()
                .map(|(c, topo, w)| elb::set_weights(c, topo, *w)),
        )
        .await
        {
            res.expect("ModifyListener");
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"n": n, "regions": listeners.len(), "median_ms": ms[n / 2], "min_ms": ms[0], "max_ms": ms[n - 1]})
    );
}
