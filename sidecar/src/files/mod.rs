//! The Files API the sidecar serves behind the filter (`/v1/files…` and the internal
//! file-context endpoint): settings, the stored file record, ids, and the storage backends.
//!
//! * [`api`] — the HTTP handlers (OpenAI object shapes).
//! * [`store_local`] — files on local disk (the default).
//! * [`store_s3`] — files in an S3 bucket (`S3_FILES_BUCKET`).
//! * [`extract`] — text extraction for chat context.
//! * [`context`] — the file-context endpoint: extraction within time, concurrency and memory
//!   limits.
//! * [`pdf_worker`] — PDF text in a child process the sidecar can kill.
//!
//! Metadata lives with every object (a JSON file next to it, or S3 object metadata), so a
//! restart loses nothing; nothing is kept only in memory.

pub mod api;
pub mod context;
pub mod extract;
pub mod pdf_worker;
pub mod store_local;
pub mod store_s3;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::AsyncRead;

/// The `purpose` values OpenAI accepts.
pub const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];
/// Default local storage directory (`FILES_DIR`), relative to the working directory.
pub const DEFAULT_FILES_DIR: &str = "data/files";
/// Default largest upload (`FILES_MAX_BYTES`): 512 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// Default cap of one file's extracted text (`FILE_CONTEXT_MAX_BYTES`).
pub const DEFAULT_CONTEXT_MAX_BYTES: usize = 200_000;
/// Default time for one file-context answer (`FILE_CONTEXT_TIMEOUT_MS`); the filter waits
/// 10 s.
pub const DEFAULT_CONTEXT_TIMEOUT_MS: u64 = 9_500;
/// Default address-space limit of a PDF extraction process (`FILE_CONTEXT_PDF_MEMORY_BYTES`).
pub const DEFAULT_PDF_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
/// Random alphanumerics in a file id after `file-`.
pub const ID_RANDOM_LEN: usize = 24;
/// Where uploads are spooled before they are stored, under the files directory.
pub const UPLOADS_SUBDIR: &str = ".uploads";

/// Where and how files are stored, from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesSettings {
    /// `S3_FILES_BUCKET`: store in S3 when set.
    pub bucket: Option<String>,
    /// `S3_FILES_PREFIX`: key prefix in the bucket (ends with `/` when not empty).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL_S3`: an S3-compatible endpoint (path-style addressing is forced).
    pub s3_endpoint: Option<String>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// `FILES_DIR`: local storage (and, with S3, where uploads are spooled), absolute.
    pub dir: PathBuf,
    /// `FILES_MAX_BYTES`: largest file accepted.
    pub max_bytes: u64,
    /// `FILE_CONTEXT_MAX_BYTES`: cap of one file's extracted text.
    pub context_max_bytes: usize,
    /// `FILE_CONTEXT_TIMEOUT_MS`: time for one file-context answer; extraction stops then.
    pub context_timeout: Duration,
    /// `FILE_CONTEXT_MAX_DEPTH`: deepest JSON/XML/PDF nesting extracted.
    pub context_max_depth: usize,
    /// `FILE_CONTEXT_CONCURRENCY`: extractions running at once (default: half the CPUs).
    pub context_concurrency: usize,
    /// `FILE_CONTEXT_PDF_MEMORY_BYTES`: address-space limit of a PDF extraction process.
    pub context_pdf_memory: u64,
}

impl FilesSettings {
    /// Reads the settings; `env` looks up a variable (empty counts as unset), `cwd` makes
    /// `FILES_DIR` absolute.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>, cwd: &Path) -> Result<Self, String> {
        let get = |name: &str| {
            env(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let bucket = get("S3_FILES_BUCKET");
        if let Some(b) = &bucket {
            let ok = b.len() >= 3
                && b.len() <= 63
                && b.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                });
            if !ok {
                return Err(format!(
                    "S3_FILES_BUCKET `{b}` is not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens)"
                ));
            }
        }
        let mut prefix = get("S3_FILES_PREFIX")
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        let dir = PathBuf::from(get("FILES_DIR").unwrap_or_else(|| DEFAULT_FILES_DIR.into()));
        let dir = if dir.is_absolute() {
            dir
        } else {
            cwd.join(dir)
        };
        let dir: PathBuf = dir
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect();
        let max_bytes = match get("FILES_MAX_BYTES") {
            None => DEFAULT_MAX_BYTES,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "FILES_MAX_BYTES `{v}` is not a positive whole number"
                    ))
                }
            },
        };
        let context_max_bytes = match get("FILE_CONTEXT_MAX_BYTES") {
            None => DEFAULT_CONTEXT_MAX_BYTES,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "FILE_CONTEXT_MAX_BYTES `{v}` is not a positive whole number"
                    ))
                }
            },
        };
        let number = |name: &str, value: Option<String>, default: u64| match value {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{name} `{v}` is not a positive whole number")),
            },
        };
        let timeout_ms = number(
            "FILE_CONTEXT_TIMEOUT_MS",
            get("FILE_CONTEXT_TIMEOUT_MS"),
            DEFAULT_CONTEXT_TIMEOUT_MS,
        )?;
        let depth = number(
            "FILE_CONTEXT_MAX_DEPTH",
            get("FILE_CONTEXT_MAX_DEPTH"),
            extract::budget::DEFAULT_MAX_DEPTH as u64,
        )?;
        let concurrency = number(
            "FILE_CONTEXT_CONCURRENCY",
            get("FILE_CONTEXT_CONCURRENCY"),
            default_concurrency() as u64,
        )?;
        let pdf_memory = number(
            "FILE_CONTEXT_PDF_MEMORY_BYTES",
            get("FILE_CONTEXT_PDF_MEMORY_BYTES"),
            DEFAULT_PDF_MEMORY_BYTES,
        )?;
        Ok(FilesSettings {
            bucket,
            prefix,
            s3_endpoint: get("AWS_ENDPOINT_URL_S3"),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            dir,
            max_bytes,
            context_max_bytes,
            context_timeout: Duration::from_millis(timeout_ms),
            context_max_depth: usize::try_from(depth).unwrap_or(usize::MAX),
            context_concurrency: usize::try_from(concurrency).unwrap_or(usize::MAX),
            context_pdf_memory: pdf_memory,
        })
    }

    /// One line for the log and `unigate config check`: the limits of text extraction.
    pub fn describe_context(&self) -> String {
        format!(
            "at most {} bytes of text per file, {} ms per request, nesting depth {}, {} extraction(s) at once, {} MiB per PDF process",
            self.context_max_bytes,
            self.context_timeout.as_millis(),
            self.context_max_depth,
            self.context_concurrency,
            self.context_pdf_memory >> 20
        )
    }

    /// Where uploads are spooled while they arrive.
    pub fn uploads_dir(&self) -> PathBuf {
        self.dir.join(UPLOADS_SUBDIR)
    }

    /// One line for the log: where files go.
    pub fn describe(&self) -> String {
        match &self.bucket {
            Some(b) => format!(
                "s3://{b}/{}{}",
                self.prefix,
                self.s3_endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            ),
            None => self.dir.display().to_string(),
        }
    }
}

/// One stored file's record (kept with the object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// `file-…`.
    pub id: String,
    /// The owner (hash of the client key, or `anonymous`).
    pub owner: String,
    /// The name the client gave.
    pub filename: String,
    /// One of [`PURPOSES`].
    pub purpose: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Unix seconds of the upload.
    pub created_at: u64,
    /// Unix nanoseconds of the upload (orders files uploaded within one second).
    #[serde(default)]
    pub created_ns: u64,
    /// Content type (from the extension, the upload's part header, or sniffed).
    pub content_type: String,
}

impl FileMeta {
    /// The key files are listed by: upload time, then id.
    pub fn order_key(&self) -> (u64, &str) {
        let ns = if self.created_ns > 0 {
            self.created_ns
        } else {
            self.created_at.saturating_mul(1_000_000_000)
        };
        (ns, &self.id)
    }

    /// The OpenAI `FileObject`.
    pub fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": null,
            "status_details": null,
        })
    }
}

/// Why storage could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No such file for this owner.
    NotFound,
    /// The backend failed (disk, network, credentials); the message is for the log (it may
    /// name paths and buckets), never for a client.
    Unavailable(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "no such file"),
            StoreError::Unavailable(m) => write!(f, "{m}"),
        }
    }
}

/// A stored file's bytes, read as they are needed.
pub type FileReader = Pin<Box<dyn AsyncRead + Send>>;

/// The result of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Everything works.
    pub ok: bool,
    /// Details (no secrets).
    pub details: Value,
}

/// The storage backend.
pub enum Store {
    /// Local disk.
    Local(store_local::LocalStore),
    /// An S3 bucket.
    S3(store_s3::S3Store),
}

impl Store {
    /// Stores a spooled upload (moved or copied away; the caller removes what is left).
    pub async fn put(&self, meta: &FileMeta, spooled: &Path) -> Result<(), StoreError> {
        match self {
            Store::Local(s) => s.put(meta, spooled).await,
            Store::S3(s) => s.put(meta, spooled).await,
        }
    }

    /// The record of `id` if `owner` owns it.
    pub async fn get(&self, owner: &str, id: &str) -> Result<FileMeta, StoreError> {
        match self {
            Store::Local(s) => s.get(owner, id).await,
            Store::S3(s) => s.get(owner, id).await,
        }
    }

    /// Every file of `owner` (any order).
    pub async fn list(&self, owner: &str) -> Result<Vec<FileMeta>, StoreError> {
        match self {
            Store::Local(s) => s.list(owner).await,
            Store::S3(s) => s.list(owner).await,
        }
    }

    /// The record and a reader of the bytes (at most `limit` bytes when given).
    pub async fn open(
        &self,
        owner: &str,
        id: &str,
        limit: Option<u64>,
    ) -> Result<(FileMeta, FileReader), StoreError> {
        match self {
            Store::Local(s) => s.open(owner, id, limit).await,
            Store::S3(s) => s.open(owner, id, limit).await,
        }
    }

    /// Deletes `id` if `owner` owns it.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Local(s) => s.delete(owner, id).await,
            Store::S3(s) => s.delete(owner, id).await,
        }
    }

    /// Whether storage (and, for S3, the credentials) work.
    pub async fn health(&self) -> Health {
        match self {
            Store::Local(s) => s.health().await,
            Store::S3(s) => s.health().await,
        }
    }
}

/// Half the CPUs this process may use, at least one: extraction leaves room for Envoy.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// The Files API's state: settings, storage, and the extraction slots.
pub struct Files {
    /// The settings.
    pub settings: FilesSettings,
    /// The backend.
    pub store: Store,
    /// Extractions running now (at most `FILE_CONTEXT_CONCURRENCY`).
    pub extractions: context::Slots,
}

impl Files {
    /// Builds the backend the settings ask for; `credentials` signs S3 requests.
    pub async fn new(
        settings: FilesSettings,
        credentials: aws_credential_types::provider::SharedCredentialsProvider,
    ) -> Result<Files, String> {
        // Directories are created on the first upload, not here: a sidecar that never stores
        // a file leaves no trace.
        store_local::clean_spool(&settings.uploads_dir());
        let store = match &settings.bucket {
            Some(_) => Store::S3(store_s3::S3Store::new(&settings, credentials).await?),
            None => Store::Local(store_local::LocalStore::new(settings.dir.clone())?),
        };
        let extractions = context::Slots::new(settings.context_concurrency);
        Ok(Files {
            settings,
            store,
            extractions,
        })
    }
}

/// A new file id: `file-` and [`ID_RANDOM_LEN`] alphanumerics from the OS random generator.
pub fn new_id() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::from("file-");
    let mut buf = [0u8; 64];
    while out.len() < 5 + ID_RANDOM_LEN {
        getrandom::fill(&mut buf)
            .map_err(|e| format!("the OS random number generator failed: {e}"))?;
        for b in buf {
            // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
            if b < 248 && out.len() < 5 + ID_RANDOM_LEN {
                if let Some(c) = ALPHABET.get(usize::from(b % 62)) {
                    out.push(char::from(*c));
                }
            }
        }
    }
    Ok(out)
}

/// Whether `id` has the shape of a file id (so it is safe in a path or an object key).
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("file-").is_some_and(|r| {
        !r.is_empty() && r.len() <= 64 && r.chars().all(|c| c.is_ascii_alphanumeric())
    })
}

/// Whether an owner id is safe in a path or an object key.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 64
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The content type for a file: known extensions first, then the type the upload declared,
/// then `application/octet-stream`.
pub fn content_type_for(filename: &str, declared: Option<&str>) -> String {
    let ext = Path::new(filename)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let by_ext = match ext.as_str() {
        "txt" | "text" | "log" => Some("text/plain"),
        "csv" => Some("text/csv"),
        "tsv" => Some("text/tab-separated-values"),
        "json" => Some("application/json"),
        "jsonl" | "ndjson" => Some("application/jsonl"),
        "html" | "htm" => Some("text/html"),
        "xml" => Some("application/xml"),
        "md" | "markdown" => Some("text/markdown"),
        "yaml" | "yml" => Some("application/yaml"),
        "pdf" => Some("application/pdf"),
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        "zip" => Some("application/zip"),
        "gz" => Some("application/gzip"),
        _ => None,
    };
    if let Some(t) = by_ext {
        return t.to_string();
    }
    let declared = declared
        .map(|d| d.split(';').next().unwrap_or(d).trim().to_ascii_lowercase())
        .filter(|d| {
            !d.is_empty()
                && d != "application/octet-stream"
                && d.len() <= 100
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/+-.".contains(c))
                && d.contains('/')
        });
    declared.unwrap_or_else(|| "application/octet-stream".to_string())
}

/// Nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<FilesSettings, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FilesSettings::from_env(&|k| map.get(k).cloned(), Path::new("/srv"))
    }

    #[test]
    fn settings() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.bucket, None);
        assert_eq!(s.dir, PathBuf::from("/srv/data/files"));
        assert_eq!(s.max_bytes, 512 * 1024 * 1024);
        assert_eq!(s.context_max_bytes, 200_000);
        assert_eq!(s.context_timeout, Duration::from_millis(9_500));
        assert_eq!(s.context_max_depth, 128);
        assert!(s.context_concurrency >= 1);
        assert_eq!(s.context_pdf_memory, 512 << 20);
        let s = parse(&[
            ("S3_FILES_BUCKET", "my-bucket"),
            ("S3_FILES_PREFIX", "/gw/files/"),
            ("FILES_DIR", "./x"),
            ("FILES_MAX_BYTES", "10"),
            ("FILE_CONTEXT_MAX_BYTES", "5"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("FILE_CONTEXT_TIMEOUT_MS", "3000"),
            ("FILE_CONTEXT_MAX_DEPTH", "16"),
            ("FILE_CONTEXT_CONCURRENCY", "3"),
            ("FILE_CONTEXT_PDF_MEMORY_BYTES", "1000000"),
        ])
        .unwrap();
        assert_eq!(
            s.describe_context(),
            "at most 5 bytes of text per file, 3000 ms per request, nesting depth 16, 3 extraction(s) at once, 0 MiB per PDF process"
        );
        assert_eq!(s.prefix, "gw/files/");
        assert_eq!(s.dir, PathBuf::from("/srv/x"));
        assert_eq!((s.max_bytes, s.context_max_bytes), (10, 5));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s.describe(), "s3://my-bucket/gw/files/");
        assert!(parse(&[("S3_FILES_BUCKET", "Bad_Bucket")]).is_err());
        assert!(parse(&[("FILES_MAX_BYTES", "0")]).is_err());
        assert!(parse(&[("FILE_CONTEXT_MAX_BYTES", "x")]).is_err());
        for var in [
            "FILE_CONTEXT_TIMEOUT_MS",
            "FILE_CONTEXT_MAX_DEPTH",
            "FILE_CONTEXT_CONCURRENCY",
            "FILE_CONTEXT_PDF_MEMORY_BYTES",
        ] {
            let e = parse(&[(var, "0")]).unwrap_err();
            assert!(e.contains(var), "{e}");
        }
    }

    #[test]
    fn ids() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 5 + ID_RANDOM_LEN);
        assert!(valid_id(&a));
        assert_ne!(a, new_id().unwrap());
        assert!(!valid_id("file-"));
        assert!(!valid_id("file-../x"));
        assert!(!valid_id("abc"));
        assert!(valid_owner("0123abcd0123abcd") && valid_owner("anonymous"));
        assert!(!valid_owner("../x") && !valid_owner(""));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type_for("a.CSV", Some("text/plain")), "text/csv");
        assert_eq!(
            content_type_for("a", Some("text/x-rst; charset=utf-8")),
            "text/x-rst"
        );
        assert_eq!(
            content_type_for("a", Some("application/octet-stream")),
            "application/octet-stream"
        );
        assert_eq!(content_type_for("a.bin", None), "application/octet-stream");
        assert_eq!(
            content_type_for("a", Some("bad type\r\n")),
            "application/octet-stream"
        );
    }

    #[test]
    fn file_object() {
        let m = FileMeta {
            id: "file-abc".into(),
            owner: "o".into(),
            filename: "a.txt".into(),
            purpose: "user_data".into(),
            bytes: 3,
            created_at: 7,
            created_ns: 7_000_000_001,
            content_type: "text/plain".into(),
        };
        let v = m.object();
        assert_eq!(v["object"], "file");
        assert_eq!(v["status"], "processed");
        assert!(v["expires_at"].is_null() && v["status_details"].is_null());
        assert!(v.get("owner").is_none());
    }
}
