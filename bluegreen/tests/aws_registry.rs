//! Image promotion over the OCI distribution API, with ECR authentication, against the stand-in's
//! real registries (one per account and region).

mod support;

use std::time::Duration;

use bluegreen::aws::registry::{self, Registry, RegistryError};
use serde_json::json;
use support::*;

const SOURCE_REGION: &str = "us-east-1";
const TARGETS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

async fn registry_of(aws: &LocalAws, account: &str, region: &str) -> Registry {
    let cfg = aws.sdk_as(account, region).await;
    Registry::from_ecr(&aws_sdk_ecr::Client::new(&cfg), region, aws.http.clone())
        .await
        .unwrap()
}

/// A two-platform index with 5 layers per platform in account A (preprod's registry).
async fn seed_release(aws: &LocalAws, tag: &str) -> String {
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": SOURCE_REGION, "repository": "hello",
                     "tag": tag, "argv": ["true"], "layers": 5, "layer_size": 65536,
                     "platforms": ["linux/amd64", "linux/arm64"]}),
        )
        .await;
    seeded["digest"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotes_a_two_platform_image_to_three_regions_of_another_account() {
    let aws = LocalAws::start();
    let digest = seed_release(&aws, "v1.2.0").await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    assert_eq!(image.digest(), digest);
    assert_eq!(image.children.len(), 2);

    let mut targets = Vec::new();
    for region in TARGETS {
        targets.push((
            region.to_owned(),
            registry_of(&aws, ACCOUNT_B, region).await,
        ));
    }
    // All regions at once, as promote does.
    let reports = registry::copy_all(&image, &targets, "hello", 3, 4).await;
    for ((region, target), (name, report)) in targets.iter().zip(reports) {
        assert_eq!(&name, region);
        let report = report.unwrap();
        assert_eq!(report.digest, digest, "{region}");
        assert!(!report.already_present);
        assert_eq!(report.blobs, 12, "2 platforms × (5 layers + config)");
        assert_eq!(report.blobs_copied, 12, "{region}: {report:?}");
        assert!(report.bytes_copied >= 2 * 5 * 65536, "{report:?}");
        assert_eq!(report.manifests, 3, "two platform manifests and the index");
        // The target resolves the tag to the same digest, and ECR there knows the image.
        let landed = target.manifest("hello", "v1.2.0").await.unwrap().unwrap();
        assert_eq!(landed.digest, digest);
        let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_B, region).await);
        let described = ecr
            .describe_images()
            .repository_name("hello")
            .image_ids(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_tag("v1.2.0")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            described.image_details()[0].image_digest(),
            Some(digest.as_str())
        );
    }

    // A second run copies nothing: the tag already has this digest.
    for (region, target) in &targets {
        let again = registry::copy(&image, target, "hello", 4).await.unwrap();
        assert!(again.already_present, "{region}");
        assert_eq!(
            (again.blobs_copied, again.bytes_copied, again.manifests),
            (0, 0, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_already_in_the_target_are_skipped_not_copied() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let target = registry_of(&aws, ACCOUNT_B, "eu-west-1").await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    registry::copy(&image, &target, "hello", 4).await.unwrap();

    // The same bytes under a new tag (a re-tag, or a rebuild that changed nothing): every blob is
    // found by HEAD, only the manifests are written.
    let mut retag = image.clone();
    retag.tag = "v1.2.0-rc".into();
    let report = registry::copy(&retag, &target, "hello", 4).await.unwrap();
    assert_eq!(report.blobs, 12);
    assert_eq!(report.blobs_skipped, 12, "{report:?}");
    assert_eq!((report.blobs_copied, report.bytes_copied), (0, 0));
    assert_eq!(
        report.manifests, 1,
        "children exist already; only the tag is written"
    );
}

/// ECR mounts a blob from another repository of the same registry only when the registry's
/// BLOB_MOUNTING account setting is ENABLED; otherwise the mount request starts a normal upload
/// and the bytes stream through the client. The copy is right either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_in_the_same_registry_are_mounted_across_repositories_only_when_enabled() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();

    let report = registry::copy(&image, &source, "hello-copied", 4)
        .await
        .unwrap();
    assert_eq!(
        report.blobs_mounted, 0,
        "mounted while disabled: {report:?}"
    );
    assert_eq!(report.blobs_copied, 12, "{report:?}");

    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, SOURCE_REGION).await);
    ecr.put_account_setting()
        .name("BLOB_MOUNTING")
        .value("ENABLED")
        .send()
        .await
        .unwrap();
    let report = registry::copy(&image, &source, "hello-mirror", 4)
        .await
        .unwrap();
    assert_eq!(report.blobs_mounted, 12, "{report:?}");
    assert_eq!((report.blobs_copied, report.bytes_copied), (0, 0));
    for repo in ["hello-copied", "hello-mirror"] {
        assert_eq!(
            source
                .manifest(repo, "v1.2.0")
                .await
                .unwrap()
                .unwrap()
                .digest,
            image.digest(),
            "{repo}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_that_points_elsewhere_in_the_target_is_refused_and_left_alone() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    // prod already has a *different* v1.2.0.
    let other = aws
        .seed(
            json!({"account": ACCOUNT_B, "region": "eu-west-1", "repository": "hello",
                     "tag": "v1.2.0", "argv": ["true"]}),
        )
        .await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let target = registry_of(&aws, ACCOUNT_B, "eu-west-1").await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    let err = registry::copy(&image, &target, "hello", 4)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::TagConflict { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(other["digest"].as_str().unwrap()), "{msg}");
    assert!(msg.contains(image.digest()), "{msg}");
    assert!(msg.contains("tags are immutable"), "{msg}");
    assert_eq!(
        target
            .manifest("hello", "v1.2.0")
            .await
            .unwrap()
            .unwrap()
            .digest,
        other["digest"].as_str().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_tag_is_refused_naming_registry_repository_and_tag() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let err = registry::resolve(&source, "hello", "v9.9.9")
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::MissingTag { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("hello:v9.9.9 does not exist in {}", source.host())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_refused_by_the_registry() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    let good = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let bad = Registry::new(
        &format!("http://{}", good.host()),
        "AWS:wrong",
        aws.http.clone(),
    );
    let err = registry::resolve(&bad, "hello", "v1.2.0")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(err.contains(good.host()), "{err}");
}

/// ECR keeps findings per image manifest: a fresh push is IN_PROGRESS, then COMPLETE with its
/// findings; an index is never scanned (ScanNotFoundException, read as unscanned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_findings_are_read_per_platform_manifest() {
    use bluegreen::aws::scan::{self, Scan};
    let aws = LocalAws::start();
    let seeded = aws
        .seed(
            json!({"account": ACCOUNT_A, "region": SOURCE_REGION, "repository": "hello",
                     "tag": "v1.2.0", "argv": [service_binary()],
                     "platforms": ["linux/amd64", "linux/arm64"]}),
        )
        .await;
    let index = seeded["digest"].as_str().unwrap().to_owned();
    // Platform manifests in the order they were asked for.
    let arm = seeded["platform_digests"][1].as_str().unwrap().to_owned();
    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_A, SOURCE_REGION).await);
    let scan_of = |d: String| {
        let ecr = ecr.clone();
        async move {
            scan::scan_of(&ecr, SOURCE_REGION, "hello", &d)
                .await
                .unwrap()
        }
    };
    assert!(
        matches!(scan_of(index.clone()).await, Scan::Unscanned { status, .. } if status == "NO_SCAN"),
        "an index has no scan of its own"
    );
    let done = eventually("arm64 scanned", Duration::from_secs(20), || {
        let arm = arm.clone();
        async move {
            match scan_of(arm).await {
                Scan::InProgress => None,
                other => Some(other),
            }
        }
    })
    .await;
    assert_eq!(done, Scan::Complete(Default::default()));
    aws.control_post(
        "scan-findings",
        json!({"account": ACCOUNT_A, "region": SOURCE_REGION, "repository": "hello",
               "digest": arm, "counts": {"CRITICAL": 2, "LOW": 5}}),
    )
    .await;
    let Scan::Complete(counts) = scan_of(arm.clone()).await else {
        panic!("not complete");
    };
    assert_eq!(counts.get("CRITICAL"), Some(&2));
    assert_eq!(counts.get("LOW"), Some(&5));
    let err = scan::scan_of(&ecr, SOURCE_REGION, "hello", "sha256:0000")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("DescribeImageScanFindings in us-east-1 failed"),
        "{err}"
    );
}

/// Nothing of `tag` in the target: no tag in its registry, no image in its ECR.
async fn assert_nothing_registered(aws: &LocalAws, target: &Registry, region: &str, tag: &str) {
    assert_eq!(
        target
            .manifest("hello", tag)
            .await
            .unwrap()
            .map(|m| m.digest),
        None,
        "{region}: the tag exists after a failed copy"
    );
    let ecr = aws_sdk_ecr::Client::new(&aws.sdk_as(ACCOUNT_B, region).await);
    let images = ecr
        .describe_images()
        .repository_name("hello")
        .send()
        .await
        .map(|o| o.image_details().len())
        .unwrap_or(0);
    assert_eq!(
        images, 0,
        "{region}: ECR lists an image after a failed copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_copy_fails_naming_the_blob_and_registers_nothing() {
    let aws = LocalAws::start();
    aws.seed(
        json!({"account": ACCOUNT_A, "region": SOURCE_REGION, "repository": "hello",
                    "tag": "v1.2.0", "argv": ["true"], "layers": 4, "layer_size": 1_048_576}),
    )
    .await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    let target = registry_of(&aws, ACCOUNT_B, "eu-west-1").await;
    // Layers come from the layer bucket the registry redirects to (stand-in extension 8): about
    // one and a half layers get through, then every connection of the bucket is cut.
    aws.control_post("settings", json!({"bucket_cut_after": 1_500_000}))
        .await;
    let err = registry::copy(&image, &target, "hello", 4)
        .await
        .unwrap_err()
        .to_string();
    eprintln!("the copy failed as it should: {err}");
    // Wherever the cut lands (before the answer, or mid-body while the upload streams it), the
    // error names the source registry and the blob.
    assert!(
        err.starts_with(&format!("{}: GET blob sha256:", source.host())),
        "names the source and the blob: {err}"
    );
    assert_nothing_registered(&aws, &target, "eu-west-1", "v1.2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_served_with_the_wrong_bytes_fails_naming_the_source_and_registers_nothing() {
    let aws = LocalAws::start();
    seed_release(&aws, "v1.2.0").await;
    let source = registry_of(&aws, ACCOUNT_A, SOURCE_REGION).await;
    let image = registry::resolve(&source, "hello", "v1.2.0").await.unwrap();
    // Corrupt one layer where the source registry stores it: it still serves it under its digest.
    let doc: serde_json::Value = serde_json::from_slice(&image.children[0].bytes).unwrap();
    let layer = doc["layers"][2]["digest"].as_str().unwrap().to_owned();
    let hex = layer.trim_start_matches("sha256:");
    let path = aws.dir.join(format!(
        "registries/{ACCOUNT_A}-{SOURCE_REGION}/data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let len = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    std::fs::write(&path, vec![0x5a; len as usize]).unwrap();

    let target = registry_of(&aws, ACCOUNT_B, "eu-west-1").await;
    let err = registry::copy(&image, &target, "hello", 4)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(
        err.starts_with(&format!("{} served blob hello@{layer}", source.host())),
        "{err}"
    );
    assert!(err.contains("refusing to copy a corrupted"), "{err}");
    assert_nothing_registered(&aws, &target, "eu-west-1", "v1.2.0").await;
}
