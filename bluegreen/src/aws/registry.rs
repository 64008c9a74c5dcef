//! Image promotion without docker: ECR authentication, then the OCI distribution API (the path
//! crane, skopeo and regctl use) to copy `repo:tag` by digest, all platforms, from the source
//! registry to each target registry.
//!
//! Per target: an existing tag with the same digest is success with nothing copied; with another
//! digest it is an error (tags are immutable). Otherwise blobs already present are skipped
//! (HEAD), blobs in the same registry are mounted across repositories, the rest stream from
//! source to target through a PATCH upload without ever holding a layer in memory; child
//! manifests go by digest, the tag last; and the target digest is verified to equal the source.

use std::sync::Arc;

use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::{CallError, error_chain};

/// Every manifest type we copy: OCI and Docker v2, single-platform and multi-platform.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{registry}: {what} failed: {message}")]
    Http {
        registry: String,
        what: String,
        message: String,
    },
    #[error(
        "{repository}:{tag} does not exist in {registry}; push it first (the release workflow builds it), or check the version"
    )]
    MissingTag {
        registry: String,
        repository: String,
        tag: String,
    },
    #[error(
        "{repository}:{tag} in {registry} already points to {existing}, not {wanted}; tags are immutable, \
         so release a new version instead of re-using {tag}"
    )]
    TagConflict {
        registry: String,
        repository: String,
        tag: String,
        existing: String,
        wanted: String,
    },
    #[error(
        "{registry} served {reference} with digest {actual}, expected {expected}; refusing to copy a corrupted or substituted image"
    )]
    DigestMismatch {
        registry: String,
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{registry}: unsupported manifest type {media_type:?} for {reference}")]
    Unsupported {
        registry: String,
        reference: String,
        media_type: String,
    },
    #[error(transparent)]
    Auth(#[from] CallError),
}

/// A registry reached with ECR credentials.
#[derive(Debug, Clone)]
pub struct Registry {
    base: String,
    authorization: String,
    http: reqwest::Client,
}

/// A manifest (or index) as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    digest: String,
}

/// What one copy did, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    pub registry: String,
    pub digest: String,
    pub media_type: String,
    /// The tag already pointed to this digest: nothing was written.
    pub already_present: bool,
    pub manifests: usize,
    pub blobs: usize,
    pub blobs_skipped: usize,
    pub blobs_mounted: usize,
    pub blobs_copied: usize,
    pub bytes_copied: u64,
}

/// The HTTP client for registries: connecting is bounded, and so is any single read stalling,
/// but not a whole transfer, which for a large layer may rightly take minutes.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(16)
        .build()
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

impl Registry {
    /// The registry of `ecr`'s account and region, from GetAuthorizationToken: the token decodes
    /// to `AWS:<password>` for basic auth, `proxyEndpoint` is the registry's URL.
    pub async fn from_ecr(
        ecr: &aws_sdk_ecr::Client,
        region: &str,
        http: reqwest::Client,
    ) -> Result<Self, RegistryError> {
        Self::from_ecr_for(ecr, region, None, http).await
    }

    /// Like `from_ecr`, for the registry of `account` (another account's, read cross-account).
    pub async fn from_ecr_for(
        ecr: &aws_sdk_ecr::Client,
        region: &str,
        account: Option<&str>,
        http: reqwest::Client,
    ) -> Result<Self, RegistryError> {
        #[allow(deprecated)] // registryIds is deprecated for same-account use, needed cross-account
        let out = ecr
            .get_authorization_token()
            .set_registry_ids(account.map(|a| vec![a.to_owned()]))
            .send()
            .await
            .map_err(|e| CallError::new("GetAuthorizationToken", region, &e))?;
        let data = out.authorization_data().first().ok_or_else(|| CallError {
            call: "GetAuthorizationToken",
            region: region.to_owned(),
            code: None,
            message: "no authorization data in the answer".into(),
        })?;
        let token = data.authorization_token().unwrap_or_default();
        // Validate now so a bad token fails here, naming ECR, not at the first blob.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| s.contains(':'))
            .ok_or_else(|| CallError {
                call: "GetAuthorizationToken",
                region: region.to_owned(),
                code: None,
                message: "the token is not base64 user:password".into(),
            })?;
        let endpoint = data.proxy_endpoint().unwrap_or_default();
        Ok(Self::new(endpoint, &decoded, http))
    }

    /// `base` like `https://123.dkr.ecr.us-east-1.amazonaws.com`; `credentials` as `user:password`.
    pub fn new(base: &str, credentials: &str, http: reqwest::Client) -> Self {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", base.trim_end_matches('/'))
        };
        Self {
            base,
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            http,
        }
    }

    /// The registry's host (and port), as it appears in image references.
    pub fn host(&self) -> &str {
        self.base.split_once("://").map_or(&self.base, |(_, h)| h)
    }

    fn err(&self, what: impl Into<String>, message: impl Into<String>) -> RegistryError {
        RegistryError::Http {
            registry: self.host().to_owned(),
            what: what.into(),
            message: message.into(),
        }
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(header::AUTHORIZATION, &self.authorization)
    }

    async fn send(
        &self,
        what: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        req.send()
            .await
            .map_err(|e| self.err(what, error_chain(&e)))
    }

    /// Fails with the registry's own words for anything but the expected statuses.
    async fn expect(
        &self,
        what: &str,
        res: reqwest::Response,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, RegistryError> {
        if ok.contains(&res.status()) {
            return Ok(res);
        }
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        Err(self.err(
            what,
            format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>().trim()
            ),
        ))
    }

    /// The manifest `reference` (tag or digest) points to, or None if there is none.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, RegistryError> {
        let what = format!("GET {repo}:{reference}");
        let res = self
            .send(
                &what,
                self.request(
                    Method::GET,
                    &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(header::ACCEPT, MANIFEST_TYPES.join(", ")),
            )
            .await?;
        if res.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let res = self.expect(&what, res, &[StatusCode::OK]).await?;
        let header_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = res
            .bytes()
            .await
            .map_err(|e| self.err(&what, error_chain(&e)))?
            .to_vec();
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::DigestMismatch {
                registry: self.host().to_owned(),
                reference: format!("{repo}@{reference}"),
                expected: reference.to_owned(),
                actual: digest,
            });
        }
        let doc: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| self.err(&what, format!("not a manifest: {e}")))?;
        let media_type = doc
            .media_type
            .or(header_type)
            .unwrap_or_else(|| MANIFEST_TYPES[1].to_owned());
        Ok(Some(Manifest {
            digest,
            media_type,
            bytes,
        }))
    }

    async fn has(&self, repo: &str, kind: &str, digest: &str) -> Result<bool, RegistryError> {
        let what = format!("HEAD {repo} {kind} {digest}");
        let mut req = self.request(
            Method::HEAD,
            &format!("{}/v2/{repo}/{kind}/{digest}", self.base),
        );
        if kind == "manifests" {
            req = req.header(header::ACCEPT, MANIFEST_TYPES.join(", "));
        }
        let res = self.send(&what, req).await?;
        match res.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.expect(&what, res, &[]).await.unwrap_err()),
        }
    }

    async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<String, RegistryError> {
        let what = format!("PUT {repo}:{reference}");
        let res = self
            .send(
                &what,
                self.request(
                    Method::PUT,
                    &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                )
                .header(header::CONTENT_TYPE, &m.media_type)
                .body(m.bytes.clone()),
            )
            .await?;
        let res = self
            .expect(&what, res, &[StatusCode::CREATED, StatusCode::OK])
            .await?;
        Ok(res
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map_or_else(|| m.digest.clone(), str::to_owned))
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// Tries to mount `digest` from `from` in the same registry. Returns the upload URL to use
    /// instead when the registry declined (it then opened a normal upload).
    async fn mount_or_start(
        &self,
        repo: &str,
        digest: &str,
        from: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let url = match from {
            Some(from) => format!(
                "{}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}",
                self.base
            ),
            None => format!("{}/v2/{repo}/blobs/uploads/", self.base),
        };
        let what = format!("start upload of {digest} to {repo}");
        let res = self.send(&what, self.request(Method::POST, &url)).await?;
        let res = self
            .expect(&what, res, &[StatusCode::CREATED, StatusCode::ACCEPTED])
            .await?;
        if res.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.err(&what, "no Location header on the upload"))?;
        Ok(Some(self.absolute(location)))
    }

    /// Streams `digest` from `source` into an upload opened on this registry: PATCH with the
    /// body as it arrives, then PUT with the digest, which the registry verifies.
    async fn stream_blob(
        &self,
        source: &Registry,
        from_repo: &str,
        repo: &str,
        digest: &str,
        upload: String,
    ) -> Result<u64, RegistryError> {
        let get_what = format!("GET blob {digest} from {from_repo}");
        let res = source
            .send(
                &get_what,
                source.request(
                    Method::GET,
                    &format!("{}/v2/{from_repo}/blobs/{digest}", source.base),
                ),
            )
            .await?;
        let res = source.expect(&get_what, res, &[StatusCode::OK]).await?;
        let length = res.content_length();
        // What came through, seen on the way: bytes counted and hashed (bytes that do not match
        // the digest the source named are never committed to the target, and the error names
        // the source that served them), and the source's error if it broke mid-transfer.
        let tap: Arc<std::sync::Mutex<Tap>> = Arc::default();
        let (on_chunk, on_error) = (tap.clone(), tap.clone());
        let stream = res
            .bytes_stream()
            .inspect_ok(move |chunk| Tap::lock(&on_chunk).seen(chunk))
            .inspect_err(move |e| Tap::lock(&on_error).broke = Some(error_chain(e)));
        let what = format!("upload {digest} to {repo}");
        let mut patch = self
            .request(Method::PATCH, &upload)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(len) = length {
            patch = patch.header(header::CONTENT_LENGTH, len);
        }
        let res = match self.send(&what, patch).await {
            Ok(res) => res,
            Err(e) => {
                let tap = Tap::lock(&tap);
                return Err(match &tap.broke {
                    Some(cause) => source.err(
                        get_what,
                        format!("the connection broke after {} bytes: {cause}", tap.bytes),
                    ),
                    None => e,
                });
            }
        };
        let res = self
            .expect(&what, res, &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT])
            .await?;
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map_or(upload, |l| self.absolute(l));
        let (served, bytes) = {
            let mut tap = Tap::lock(&tap);
            let hash = std::mem::take(&mut tap.hash).finalize();
            (format!("sha256:{hash:x}"), tap.bytes)
        };
        self.commit_blob(source, from_repo, repo, digest, &served, &location)
            .await?;
        Ok(bytes)
    }

    /// Commits an upload whose bytes hashed to `served`, if that is the `digest` the source
    /// named; otherwise cancels it and names the source that served the wrong bytes.
    async fn commit_blob(
        &self,
        source: &Registry,
        from_repo: &str,
        repo: &str,
        digest: &str,
        served: &str,
        location: &str,
    ) -> Result<(), RegistryError> {
        if served != digest {
            // Best effort: the upload would expire by itself; cancelling frees it now.
            let _ = self.request(Method::DELETE, location).send().await;
            return Err(RegistryError::DigestMismatch {
                registry: source.host().to_owned(),
                reference: format!("blob {from_repo}@{digest}"),
                expected: digest.to_owned(),
                actual: served.to_owned(),
            });
        }
        let what = format!("upload {digest} to {repo}");
        let sep = if location.contains('?') { '&' } else { '?' };
        let res = self
            .send(
                &what,
                self.request(Method::PUT, &format!("{location}{sep}digest={digest}"))
                    .header(header::CONTENT_LENGTH, 0),
            )
            .await?;
        self.expect(&what, res, &[StatusCode::CREATED]).await?;
        Ok(())
    }
}

/// A blob's bytes as they stream from source to target.
#[derive(Default)]
struct Tap {
    bytes: u64,
    hash: Sha256,
    broke: Option<String>,
}

impl Tap {
    fn lock(tap: &std::sync::Mutex<Tap>) -> std::sync::MutexGuard<'_, Tap> {
        tap.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn seen(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.hash.update(chunk);
    }
}

/// What a copy needs from the source, resolved once and shared by every target.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub registry: Registry,
    pub repository: String,
    pub tag: String,
    pub top: Manifest,
    /// Child manifests of an index, in index order (empty for a single-platform image).
    pub children: Vec<Manifest>,
}

impl SourceImage {
    pub fn digest(&self) -> &str {
        &self.top.digest
    }
}

/// Resolves `repo:tag` in the source registry, with every child manifest of an index.
pub async fn resolve(
    source: &Registry,
    repo: &str,
    tag: &str,
) -> Result<SourceImage, RegistryError> {
    let top = source
        .manifest(repo, tag)
        .await?
        .ok_or_else(|| RegistryError::MissingTag {
            registry: source.host().to_owned(),
            repository: repo.to_owned(),
            tag: tag.to_owned(),
        })?;
    let doc: ManifestDoc = serde_json::from_slice(&top.bytes).expect("checked when fetched");
    let mut children = Vec::new();
    for child in &doc.manifests {
        let m = source.manifest(repo, &child.digest).await?.ok_or_else(|| {
            source.err(
                format!("GET {repo}@{}", child.digest),
                "the index names a manifest the registry does not have",
            )
        })?;
        children.push(m);
    }
    Ok(SourceImage {
        registry: source.clone(),
        repository: repo.to_owned(),
        tag: tag.to_owned(),
        top,
        children,
    })
}

/// Every blob of every platform of `image`, once; a manifest with none is not an image.
fn blobs_of(image: &SourceImage) -> Result<Vec<Descriptor>, RegistryError> {
    let mut blobs: Vec<Descriptor> = Vec::new();
    let manifests: Vec<&Manifest> = if image.children.is_empty() {
        vec![&image.top]
    } else {
        image.children.iter().collect()
    };
    for m in &manifests {
        let doc: ManifestDoc = serde_json::from_slice(&m.bytes).expect("checked when fetched");
        if doc.config.is_none() && doc.layers.is_empty() {
            return Err(RegistryError::Unsupported {
                registry: image.registry.host().to_owned(),
                reference: format!("{}@{}", image.repository, m.digest),
                media_type: m.media_type.clone(),
            });
        }
        for d in doc.config.into_iter().chain(doc.layers) {
            if !blobs.iter().any(|b| b.digest == d.digest) {
                blobs.push(d);
            }
        }
    }
    Ok(blobs)
}

/// What happened to one blob in a copy.
enum Moved {
    /// The target had it.
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Streamed through, this many bytes.
    Copied(u64),
}

/// One blob of `image` into `target`'s `repo`: found by HEAD, mounted when the registry allows
/// it (same registry only), or streamed from the source.
async fn move_blob(
    image: &SourceImage,
    target: &Registry,
    repo: &str,
    digest: &str,
) -> Result<Moved, RegistryError> {
    if target.has(repo, "blobs", digest).await? {
        return Ok(Moved::Present);
    }
    let same_registry = image.registry.base == target.base;
    let from = same_registry.then_some(image.repository.as_str());
    Ok(match target.mount_or_start(repo, digest, from).await? {
        None => Moved::Mounted,
        Some(upload) => Moved::Copied(
            target
                .stream_blob(&image.registry, &image.repository, repo, digest, upload)
                .await?,
        ),
    })
}

/// Copies `image` into `target`'s `repo:tag` (see the module doc). `parallel` bounds the blobs
/// in flight at once.
pub async fn copy(
    image: &SourceImage,
    target: &Registry,
    repo: &str,
    parallel: usize,
) -> Result<CopyReport, RegistryError> {
    let mut report = CopyReport {
        registry: target.host().to_owned(),
        digest: image.top.digest.clone(),
        media_type: image.top.media_type.clone(),
        ..Default::default()
    };
    if let Some(existing) = target.manifest(repo, &image.tag).await? {
        if existing.digest == image.top.digest {
            report.already_present = true;
            return Ok(report);
        }
        return Err(RegistryError::TagConflict {
            registry: target.host().to_owned(),
            repository: repo.to_owned(),
            tag: image.tag.clone(),
            existing: existing.digest,
            wanted: image.top.digest.clone(),
        });
    }

    let blobs = blobs_of(image)?;
    report.blobs = blobs.len();

    let moved: Vec<Moved> = futures_util::stream::iter(
        blobs
            .iter()
            .map(|b| move_blob(image, target, repo, &b.digest)),
    )
    .buffer_unordered(parallel.max(1))
    .try_collect()
    .await?;
    for m in &moved {
        match m {
            Moved::Present => report.blobs_skipped += 1,
            Moved::Mounted => report.blobs_mounted += 1,
            Moved::Copied(n) => {
                report.blobs_copied += 1;
                report.bytes_copied += n;
            }
        }
    }

    // Children by digest, then the tag: a reader never sees a tag whose parts are missing.
    for child in &image.children {
        if !target.has(repo, "manifests", &child.digest).await? {
            target.put_manifest(repo, &child.digest, child).await?;
            report.manifests += 1;
        }
    }
    target.put_manifest(repo, &image.tag, &image.top).await?;
    report.manifests += 1;

    let landed = target
        .manifest(repo, &image.tag)
        .await?
        .map(|m| m.digest)
        .unwrap_or_default();
    if landed != image.top.digest {
        return Err(RegistryError::DigestMismatch {
            registry: target.host().to_owned(),
            reference: format!("{repo}:{}", image.tag),
            expected: image.top.digest.clone(),
            actual: landed,
        });
    }
    Ok(report)
}

/// Copies `image` to every target at once, at most `regions` targets and `blobs` blobs per
/// target in flight. Every target's result is returned, in `targets` order, so the caller sees
/// all failures, not only the first.
pub async fn copy_all(
    image: &SourceImage,
    targets: &[(String, Registry)],
    repo: &str,
    regions: usize,
    blobs: usize,
) -> Vec<(String, Result<CopyReport, RegistryError>)> {
    let mut out: Vec<(usize, String, Result<CopyReport, RegistryError>)> =
        futures_util::stream::iter(targets.iter().enumerate().map(
            |(i, (name, target))| async move {
                (i, name.clone(), copy(image, target, repo, blobs).await)
            },
        ))
        .buffer_unordered(regions.max(1))
        .collect()
        .await;
    out.sort_by_key(|(i, _, _)| *i);
    out.into_iter().map(|(_, name, r)| (name, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn registry_urls_default_to_https_and_keep_the_host() {
        let http = reqwest::Client::new();
        let r = Registry::new(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "AWS:x",
            http.clone(),
        );
        assert_eq!(
            r.base,
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(r.host(), "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        let local = Registry::new("http://127.0.0.1:5000/", "AWS:x", http);
        assert_eq!(local.host(), "127.0.0.1:5000");
        assert_eq!(
            local.absolute("/v2/x/blobs/uploads/1"),
            "http://127.0.0.1:5000/v2/x/blobs/uploads/1"
        );
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
