//! ECR's scan findings for a release, as ECR keeps them: per image manifest. A multi-platform
//! release is an image index, which ECR never scans (DescribeImageScanFindings on it is
//! ScanNotFoundException); each platform manifest has its own scan, IN_PROGRESS for a while after
//! the push, then COMPLETE with findings, or FAILED / UNSUPPORTED_IMAGE. Attestation manifests
//! in an index (platform `unknown/unknown`) are not images and are not judged.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::CallError;
use super::registry::SourceImage;
use crate::config::Severity;

/// One image manifest of a release: its digest and platform (`linux/arm64`, or `image` for a
/// single-platform release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub digest: String,
    pub name: String,
}

#[derive(Deserialize)]
struct IndexDoc {
    #[serde(default)]
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    platform: Option<PlatformDoc>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// The manifests of `image` that ECR scans: every platform of an index but its attestations,
/// or the one manifest of a single-platform image.
pub fn platforms(image: &SourceImage) -> Vec<Platform> {
    if image.children.is_empty() {
        return vec![Platform {
            digest: image.digest().to_owned(),
            name: "image".into(),
        }];
    }
    let doc: IndexDoc = serde_json::from_slice(&image.top.bytes).unwrap_or(IndexDoc {
        manifests: Vec::new(),
    });
    doc.manifests
        .into_iter()
        .filter(|m| {
            let attestation = m
                .annotations
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest");
            let unknown = m
                .platform
                .as_ref()
                .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
            !attestation && !unknown
        })
        .map(|m| Platform {
            name: m.platform.map_or_else(
                || "unknown platform".to_owned(),
                |p| match p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                },
            ),
            digest: m.digest,
        })
        .collect()
}

/// One manifest's scan as ECR reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Not done yet (`IN_PROGRESS`, `PENDING`).
    InProgress,
    /// Done: findings counted by severity.
    Complete(BTreeMap<String, i32>),
    /// Never will be, as things stand: `FAILED`, `UNSUPPORTED_IMAGE`, or no scan at all.
    Unscanned { status: String, description: String },
}

/// DescribeImageScanFindings for one manifest.
pub async fn scan_of(
    ecr: &aws_sdk_ecr::Client,
    region: &str,
    repo: &str,
    digest: &str,
) -> Result<Scan, CallError> {
    let out = ecr
        .describe_image_scan_findings()
        .repository_name(repo)
        .image_id(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_digest(digest)
                .build(),
        )
        // The severity counts summarise the whole scan; the findings themselves are not needed.
        .max_results(1)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let err = CallError::new("DescribeImageScanFindings", region, &e);
            if err.is("ScanNotFoundException") {
                return Ok(Scan::Unscanned {
                    status: "NO_SCAN".into(),
                    description: "ECR has no scan of it (is scan on push on for the repository?)"
                        .into(),
                });
            }
            return Err(err);
        }
    };
    let status = out.image_scan_status();
    let code = status
        .and_then(|s| s.status())
        .map_or("", |s| s.as_str())
        .to_owned();
    // With enhanced scanning, findings can arrive after a COMPLETE that has none yet (no
    // completion time): not done until ECR says when it completed.
    let completed = out
        .image_scan_findings()
        .and_then(|f| f.image_scan_completed_at())
        .is_some();
    Ok(match code.as_str() {
        "IN_PROGRESS" | "PENDING" => Scan::InProgress,
        "COMPLETE" | "ACTIVE" if !completed => Scan::InProgress,
        "COMPLETE" | "ACTIVE" => Scan::Complete(
            out.image_scan_findings()
                .and_then(|f| f.finding_severity_counts())
                .map(|m| m.iter().map(|(k, v)| (k.as_str().to_owned(), *v)).collect())
                .unwrap_or_default(),
        ),
        _ => Scan::Unscanned {
            description: status
                .and_then(|s| s.description())
                .unwrap_or("no description")
                .to_owned(),
            status: if code.is_empty() {
                "UNKNOWN".into()
            } else {
                code
            },
        },
    })
}

/// What the scan gate says of a release's platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// These platforms are still being scanned.
    Wait(Vec<String>),
    Refuse(String),
}

/// The scan gate over every platform: refused at once when a platform has findings at or above
/// `threshold` or cannot be scanned; otherwise wait while any is in progress.
pub fn verdict(repository: &str, scans: &[(Platform, Scan)], threshold: Severity) -> Verdict {
    let mut over = Vec::new();
    let mut unscanned = Vec::new();
    let mut waiting = Vec::new();
    for (p, scan) in scans {
        match scan {
            Scan::Complete(counts) => {
                let found: Vec<String> = counts
                    .iter()
                    .filter(|(sev, n)| {
                        **n > 0 && Severity::parse(sev).is_some_and(|s| s >= threshold)
                    })
                    .map(|(sev, n)| format!("{n} {sev}"))
                    .collect();
                if !found.is_empty() {
                    over.push(format!("{} ({}): {}", p.name, p.digest, found.join(", ")));
                }
            }
            Scan::InProgress => waiting.push(p.name.clone()),
            Scan::Unscanned {
                status,
                description,
            } => unscanned.push(format!(
                "{} ({}): {status}, {description}",
                p.name, p.digest
            )),
        }
    }
    let threshold = threshold.as_str();
    if scans.is_empty() {
        return Verdict::Refuse(format!(
            "{repository}'s image index names no platform image to judge (only attestations, or \
             an index bluegreen cannot read); pass --allow-findings to promote it unscanned"
        ));
    }
    if !over.is_empty() {
        return Verdict::Refuse(format!(
            "{repository} has scan findings at or above {threshold} in {}; fix them and release a \
             new version, or pass --allow-findings to promote anyway",
            over.join("; ")
        ));
    }
    if !unscanned.is_empty() {
        return Verdict::Refuse(format!(
            "{repository} is not scanned, so its findings at or above {threshold} are unknown: {}; \
             pass --allow-findings to promote it unscanned, or set scan_threshold = \"none\" in \
             [strategy] for this environment",
            unscanned.join("; ")
        ));
    }
    if waiting.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Wait(waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Platform {
        Platform {
            digest: format!("sha256:{name}"),
            name: name.into(),
        }
    }

    fn done(pairs: &[(&str, i32)]) -> Scan {
        Scan::Complete(pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    #[test]
    fn the_gate_judges_every_platform() {
        let unsupported = Scan::Unscanned {
            status: "UNSUPPORTED_IMAGE".into(),
            description: "UnsupportedImageError".into(),
        };
        // (case, each platform's scan, threshold, what the verdict says)
        type Case = (&'static str, Vec<(Platform, Scan)>, Severity, &'static str);
        let cases: Vec<Case> = vec![
            (
                "clean",
                vec![(p("amd64"), done(&[])), (p("arm64"), done(&[("LOW", 3)]))],
                Severity::Critical,
                "pass",
            ),
            (
                "under the threshold",
                vec![(p("amd64"), done(&[("HIGH", 1)]))],
                Severity::Critical,
                "pass",
            ),
            (
                "findings on one platform",
                vec![
                    (p("amd64"), done(&[])),
                    (p("arm64"), done(&[("CRITICAL", 2)])),
                ],
                Severity::Critical,
                "arm64 (sha256:arm64): 2 CRITICAL",
            ),
            (
                "at the threshold",
                vec![(p("amd64"), done(&[("HIGH", 1), ("UNTRIAGED", 4)]))],
                Severity::High,
                "1 HIGH",
            ),
            (
                "still scanning",
                vec![(p("amd64"), done(&[])), (p("arm64"), Scan::InProgress)],
                Severity::Critical,
                "wait arm64",
            ),
            (
                "findings beat waiting",
                vec![
                    (p("amd64"), done(&[("CRITICAL", 1)])),
                    (p("arm64"), Scan::InProgress),
                ],
                Severity::Critical,
                "1 CRITICAL",
            ),
            (
                "unsupported",
                vec![(p("amd64"), unsupported.clone())],
                Severity::Critical,
                "UNSUPPORTED_IMAGE, UnsupportedImageError",
            ),
            (
                "unsupported beats waiting",
                vec![(p("amd64"), unsupported), (p("arm64"), Scan::InProgress)],
                Severity::Critical,
                "--allow-findings",
            ),
            (
                "nothing to judge",
                vec![],
                Severity::Critical,
                "names no platform image",
            ),
        ];
        for (case, scans, threshold, says) in cases {
            let v = verdict("hello", &scans, threshold);
            let said = match &v {
                Verdict::Pass => "pass".to_owned(),
                Verdict::Wait(w) => format!("wait {}", w.join(" ")),
                Verdict::Refuse(m) => m.clone(),
            };
            assert!(said.contains(says), "{case}: {said}");
        }
    }
}
