//! Files in an S3 bucket (or an S3-compatible server): object `<prefix><owner>/<id>`, with the
//! record in the object's metadata (`x-amz-meta-unigate-*`) and its content type.
//!
//! An object only appears when its upload completes: small files go up in one `PutObject`,
//! larger ones as a multipart upload (8 MiB parts read from the spooled file, never held in
//! memory whole) that is completed last and aborted on any failure. Listing reads the keys
//! under the owner's prefix and each object's metadata once (records never change, so they
//! are cached by key).

use super::{valid_id, valid_owner, FileMeta, FileReader, FilesSettings, Health, StoreError};
use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use unigate_core::endpoints::percent_decode;

/// Files up to this size go up in one request.
pub const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Concurrent metadata reads while listing.
const LIST_CONCURRENCY: usize = 16;
/// Records cached at most (a cache full of them is simply emptied).
const CACHE_MAX: usize = 100_000;

/// The S3 store.
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    region: String,
    credentials: SharedCredentialsProvider,
    cache: Mutex<HashMap<String, FileMeta>>,
}

impl S3Store {
    /// A client for the bucket in the settings, signing with `credentials`.
    pub async fn new(
        settings: &FilesSettings,
        credentials: SharedCredentialsProvider,
    ) -> Result<S3Store, String> {
        let bucket = settings
            .bucket
            .clone()
            .ok_or_else(|| "S3_FILES_BUCKET is not set".to_string())?;
        let region = settings.region.clone().ok_or_else(|| {
            format!("S3_FILES_BUCKET={bucket} needs AWS_REGION (the bucket's region)")
        })?;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.clone()))
            .credentials_provider(credentials.clone())
            .load()
            .await;
        let timeouts = aws_smithy_types::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .build();
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .timeout_config(timeouts)
            // Many S3-compatible servers reject the newer default checksum trailers.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(e) = &settings.s3_endpoint {
            conf = conf.endpoint_url(e).force_path_style(true);
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket,
            prefix: settings.prefix.clone(),
            endpoint: settings.s3_endpoint.clone(),
            region,
            credentials,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn owner_prefix(&self, owner: &str) -> String {
        format!("{}{owner}/", self.prefix)
    }

    fn key(&self, owner: &str, id: &str) -> Result<String, StoreError> {
        if !valid_owner(owner) || !valid_id(id) {
            return Err(StoreError::NotFound);
        }
        Ok(format!("{}{id}", self.owner_prefix(owner)))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, FileMeta>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Uploads the spooled file; the object appears only once the upload is complete.
    pub async fn put(&self, meta: &FileMeta, spooled: &Path) -> Result<(), StoreError> {
        let key = self.key(&meta.owner, &meta.id)?;
        let metadata = to_metadata(meta);
        if meta.bytes <= SINGLE_PUT_MAX {
            let body = ByteStream::from_path(spooled)
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot read the upload: {e}")))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(&meta.content_type)
                .content_length(i64::try_from(meta.bytes).unwrap_or(i64::MAX))
                .set_metadata(Some(metadata))
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("PutObject", &e))?;
        } else {
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(&meta.content_type)
                .set_metadata(Some(metadata))
                .send()
                .await
                .map_err(|e| s3_error("CreateMultipartUpload", &e))?;
            let upload_id = created
                .upload_id()
                .ok_or_else(|| StoreError::Unavailable("S3 returned no upload id".into()))?
                .to_string();
            if let Err(e) = self
                .upload_parts(&key, &upload_id, meta.bytes, spooled)
                .await
            {
                let abort = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(a) = abort {
                    tracing::warn!(key, error = %DisplayErrorContext(&a), "cannot abort an S3 multipart upload (a bucket lifecycle rule for incomplete uploads cleans it up)");
                }
                return Err(e);
            }
        }
        self.cache().remove(&key);
        Ok(())
    }

    /// Uploads every part, then completes the upload.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        size: u64,
        spooled: &Path,
    ) -> Result<(), StoreError> {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let len = PART_SIZE.min(size - offset);
            let body = ByteStream::read_from()
                .path(spooled)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot read the upload: {e}")))?;
            let out = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(i64::try_from(len).unwrap_or(i64::MAX))
                .body(body)
                .send()
                .await
                .map_err(|e| s3_error("UploadPart", &e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", &e))?;
        Ok(())
    }

    /// The record of `id` for `owner`.
    pub async fn get(&self, owner: &str, id: &str) -> Result<FileMeta, StoreError> {
        let key = self.key(owner, id)?;
        self.head(&key, owner, id).await
    }

    /// The record of one object (cached).
    async fn head(&self, key: &str, owner: &str, id: &str) -> Result<FileMeta, StoreError> {
        if let Some(m) = self.cache().get(key) {
            return Ok(m.clone());
        }
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| match status(&e) {
                Some(404) => StoreError::NotFound,
                _ => s3_error("HeadObject", &e),
            })?;
        let meta = from_metadata(
            owner,
            id,
            out.metadata(),
            out.content_type(),
            out.content_length(),
        )
        .ok_or(StoreError::NotFound)?;
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_string(), meta.clone());
        Ok(meta)
    }

    /// Every record of `owner`.
    pub async fn list(&self, owner: &str) -> Result<Vec<FileMeta>, StoreError> {
        if !valid_owner(owner) {
            return Ok(Vec::new());
        }
        let prefix = self.owner_prefix(owner);
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", &e))?;
            for o in out.contents() {
                if let Some(id) = o.key().and_then(|k| k.strip_prefix(&prefix)) {
                    if valid_id(id) {
                        keys.push(id.to_string());
                    }
                }
            }
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        let results: Vec<Result<FileMeta, StoreError>> = futures_util::stream::iter(keys)
            .map(|id| async move {
                let key = format!("{prefix}{id}", prefix = self.owner_prefix(owner));
                self.head(&key, owner, &id).await
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;
        let mut out = Vec::new();
        for r in results {
            match r {
                Ok(m) => out.push(m),
                // Deleted since it was listed.
                Err(StoreError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The record and a reader of the bytes (a ranged GET when `limit` is given).
    pub async fn open(
        &self,
        owner: &str,
        id: &str,
        limit: Option<u64>,
    ) -> Result<(FileMeta, FileReader), StoreError> {
        let meta = self.get(owner, id).await?;
        let key = self.key(owner, id)?;
        let mut req = self.client.get_object().bucket(&self.bucket).key(&key);
        match limit {
            Some(0) => return Ok((meta, Box::pin(tokio::io::empty()))),
            Some(n) if n < meta.bytes => req = req.range(format!("bytes=0-{}", n - 1)),
            _ => {}
        }
        let out = req.send().await.map_err(|e| match status(&e) {
            Some(404) => StoreError::NotFound,
            _ => s3_error("GetObject", &e),
        })?;
        Ok((meta, Box::pin(out.body.into_async_read())))
    }

    /// Deletes `id` if `owner` owns it.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<(), StoreError> {
        let key = self.key(owner, id)?;
        self.head(&key, owner, id).await?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", &e))?;
        self.cache().remove(&key);
        Ok(())
    }

    /// Credentials resolve and the bucket answers `HeadBucket`.
    pub async fn health(&self) -> Health {
        let creds = tokio::time::timeout(
            Duration::from_secs(5),
            self.credentials.provide_credentials(),
        )
        .await;
        let credentials = match creds {
            Ok(Ok(c)) => json!({"ok": true, "source": crate::credentials::describe_sources(&c)}),
            Ok(Err(e)) => json!({"ok": false, "error": crate::credentials::error_chain(&e)}),
            Err(_) => {
                json!({"ok": false, "error": "resolving AWS credentials took longer than 5 s"})
            }
        };
        let head = tokio::time::timeout(
            Duration::from_secs(10),
            self.client.head_bucket().bucket(&self.bucket).send(),
        )
        .await;
        let bucket = match head {
            Ok(Ok(_)) => json!({"ok": true}),
            Ok(Err(e)) => {
                let why = match status(&e) {
                    Some(403) => {
                        "access denied (check the credentials and the bucket policy)".to_string()
                    }
                    Some(404) => "the bucket does not exist".to_string(),
                    Some(301) => "the bucket is in another region than AWS_REGION".to_string(),
                    _ => format!("{}", DisplayErrorContext(&e)),
                };
                json!({"ok": false, "error": why})
            }
            Err(_) => json!({"ok": false, "error": "HeadBucket took longer than 10 s"}),
        };
        let ok = credentials.get("ok") == Some(&Value::Bool(true))
            && bucket.get("ok") == Some(&Value::Bool(true));
        Health {
            ok,
            details: json!({
                "backend": "s3",
                "bucket": self.bucket,
                "prefix": self.prefix,
                "region": self.region,
                "endpoint": self.endpoint,
                "credentials": credentials,
                "bucket_reachable": bucket,
            }),
        }
    }
}

/// The HTTP status of a failed S3 call, when it got that far.
fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// A failed S3 call as a storage error (with the service's error code when there is one).
fn s3_error<E>(op: &str, e: &SdkError<E, HttpResponse>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let detail = match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            format!(
                "{} ({})",
                err.code().unwrap_or("error"),
                err.message().unwrap_or("no message")
            )
        }
        other => format!("{}", DisplayErrorContext(other)),
    };
    StoreError::Unavailable(format!("S3 {op} failed: {detail}"))
}

/// Metadata written with each object.
fn to_metadata(m: &FileMeta) -> HashMap<String, String> {
    HashMap::from([
        ("unigate-owner".to_string(), m.owner.clone()),
        ("unigate-filename".to_string(), percent_encode(&m.filename)),
        ("unigate-purpose".to_string(), m.purpose.clone()),
        ("unigate-bytes".to_string(), m.bytes.to_string()),
        ("unigate-created-at".to_string(), m.created_at.to_string()),
        ("unigate-created-ns".to_string(), m.created_ns.to_string()),
    ])
}

/// The record from an object's metadata; `None` if it is not one of ours or not `owner`'s.
fn from_metadata(
    owner: &str,
    id: &str,
    md: Option<&HashMap<String, String>>,
    content_type: Option<&str>,
    length: Option<i64>,
) -> Option<FileMeta> {
    let md = md?;
    if md.get("unigate-owner")? != owner {
        return None;
    }
    let bytes = md
        .get("unigate-bytes")
        .and_then(|b| b.parse().ok())
        .or_else(|| length.and_then(|l| u64::try_from(l).ok()))?;
    Some(FileMeta {
        id: id.to_string(),
        owner: owner.to_string(),
        filename: percent_decode(md.get("unigate-filename")?),
        purpose: md.get("unigate-purpose")?.clone(),
        bytes,
        created_at: md
            .get("unigate-created-at")
            .and_then(|c| c.parse().ok())
            .unwrap_or_default(),
        created_ns: md
            .get("unigate-created-ns")
            .and_then(|c| c.parse().ok())
            .unwrap_or_default(),
        content_type: content_type
            .unwrap_or("application/octet-stream")
            .to_string(),
    })
}

/// Percent-encodes everything but unreserved ASCII (S3 metadata must be ASCII); `unigate_core::endpoints::percent_decode` reverses it.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~ ".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trip() {
        let m = FileMeta {
            id: "file-x".into(),
            owner: "o1".into(),
            filename: "Résumé 100%/x.txt".into(),
            purpose: "user_data".into(),
            bytes: 12,
            created_at: 99,
            created_ns: 99_000_000_005,
            content_type: "text/plain".into(),
        };
        let md = to_metadata(&m);
        assert!(md.values().all(|v| v.is_ascii()));
        let back = from_metadata("o1", "file-x", Some(&md), Some("text/plain"), Some(12)).unwrap();
        assert_eq!(back, m);
        assert!(from_metadata("o2", "file-x", Some(&md), None, None).is_none());
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
