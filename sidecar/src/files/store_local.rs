//! Files on local disk: `FILES_DIR/<owner>/<id>` holds the bytes and `<id>.json` next to it
//! the record.
//!
//! Writes are atomic: an upload is spooled under `FILES_DIR/.uploads`, renamed into place,
//! and becomes visible only when its record is renamed into place last (written to a
//! temporary name and synced first). A crash at any point leaves either nothing visible or a
//! complete file; leftovers are invisible and removed at the next start.

use super::{valid_id, valid_owner, FileMeta, FileReader, Health, StoreError};
use serde_json::json;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;

/// Leftovers (spooled uploads, records being written, bytes without a record) older than
/// this are removed at start-up; younger ones may belong to another process's upload.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// The local store.
pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    /// A store in `dir` (created on the first upload); removes leftovers of interrupted
    /// uploads.
    pub fn new(dir: PathBuf) -> Result<LocalStore, String> {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("FILES_DIR {} is not a directory", dir.display()));
        }
        let store = LocalStore { dir };
        store.remove_orphans();
        Ok(store)
    }

    fn owner_dir(&self, owner: &str) -> PathBuf {
        self.dir.join(owner)
    }

    fn paths(&self, owner: &str, id: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        if !valid_owner(owner) || !valid_id(id) {
            return Err(StoreError::NotFound);
        }
        let d = self.owner_dir(owner);
        Ok((d.join(id), d.join(format!("{id}.json"))))
    }

    /// Moves the spooled bytes into place, then commits the record.
    pub async fn put(&self, meta: &FileMeta, spooled: &Path) -> Result<(), StoreError> {
        let (data, record) = self.paths(&meta.owner, &meta.id)?;
        let dir = self.owner_dir(&meta.owner);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| unavailable("create the owner directory", &e))?;
        tokio::fs::rename(spooled, &data)
            .await
            .map_err(|e| unavailable("move the upload into place", &e))?;
        let tmp = dir.join(format!(".{}.json.tmp", meta.id));
        let body = serde_json::to_vec_pretty(meta)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode the file record: {e}")))?;
        let written = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            tokio::io::AsyncWriteExt::write_all(&mut f, &body).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &record).await?;
            // The rename itself is durable once the directory is synced.
            if let Ok(d) = tokio::fs::File::open(&dir).await {
                let _ = d.sync_all().await;
            }
            Ok::<(), std::io::Error>(())
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            let _ = tokio::fs::remove_file(&data).await;
            return Err(unavailable("write the file record", &e));
        }
        Ok(())
    }

    /// The record of `id` for `owner`.
    pub async fn get(&self, owner: &str, id: &str) -> Result<FileMeta, StoreError> {
        let (data, record) = self.paths(owner, id)?;
        let meta = read_record(&record).await?.ok_or(StoreError::NotFound)?;
        if meta.owner != owner || meta.id != id {
            return Err(StoreError::NotFound);
        }
        match tokio::fs::metadata(&data).await {
            Ok(_) => Ok(meta),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::NotFound),
            Err(e) => Err(unavailable("read the file", &e)),
        }
    }

    /// Every record of `owner`.
    pub async fn list(&self, owner: &str) -> Result<Vec<FileMeta>, StoreError> {
        if !valid_owner(owner) {
            return Ok(Vec::new());
        }
        let mut entries = match tokio::fs::read_dir(self.owner_dir(owner)).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable("list the files directory", &e)),
        };
        let mut out = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| unavailable("list the files directory", &e))?
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if !valid_id(id) {
                continue;
            }
            match read_record(&entry.path()).await {
                Ok(Some(m)) if m.owner == owner && m.id == id => out.push(m),
                Ok(_) => {}
                Err(e) => tracing::warn!(file = %name, error = %e, "unreadable file record"),
            }
        }
        Ok(out)
    }

    /// The record and a reader of the bytes.
    pub async fn open(
        &self,
        owner: &str,
        id: &str,
        limit: Option<u64>,
    ) -> Result<(FileMeta, FileReader), StoreError> {
        let meta = self.get(owner, id).await?;
        let (data, _) = self.paths(owner, id)?;
        let file = match tokio::fs::File::open(&data).await {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(unavailable("open the file", &e)),
        };
        let reader: FileReader = match limit {
            Some(n) => Box::pin(file.take(n)),
            None => Box::pin(file),
        };
        Ok((meta, reader))
    }

    /// Removes the record (the file disappears at once), then the bytes.
    pub async fn delete(&self, owner: &str, id: &str) -> Result<(), StoreError> {
        self.get(owner, id).await?;
        let (data, record) = self.paths(owner, id)?;
        match tokio::fs::remove_file(&record).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound),
            Err(e) => return Err(unavailable("delete the file record", &e)),
        }
        if let Err(e) = tokio::fs::remove_file(&data).await {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(id, error = %e, "file record deleted, its bytes could not be");
            }
        }
        Ok(())
    }

    /// Whether the directory can be written.
    pub async fn health(&self) -> Health {
        let probe = self
            .dir
            .join(super::UPLOADS_SUBDIR)
            .join(format!(".health-{}", std::process::id()));
        let result = async {
            tokio::fs::create_dir_all(self.dir.join(super::UPLOADS_SUBDIR)).await?;
            tokio::fs::write(&probe, b"ok").await?;
            tokio::fs::remove_file(&probe).await
        }
        .await;
        let dir = self.dir.display().to_string();
        match result {
            Ok(()) => Health {
                ok: true,
                details: json!({"backend": "local", "dir": dir, "writable": true}),
            },
            Err(e) => Health {
                ok: false,
                details: json!({"backend": "local", "dir": dir, "writable": false,
                    "error": format!("cannot write to FILES_DIR: {e}")}),
            },
        }
    }

    /// Removes records being written and bytes without a record, when old enough.
    fn remove_orphans(&self) {
        let Ok(owners) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for owner in owners.flatten() {
            let path = owner.path();
            let name = owner.file_name();
            if !path.is_dir() || !name.to_str().is_some_and(valid_owner) {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&path) else {
                continue;
            };
            for f in files.flatten() {
                let fname = f.file_name();
                let Some(fname) = fname.to_str() else {
                    continue;
                };
                let orphan = if fname.starts_with('.') && fname.ends_with(".json.tmp") {
                    true
                } else if valid_id(fname) {
                    !path.join(format!("{fname}.json")).exists()
                } else {
                    false
                };
                if orphan && old(&f.path()) {
                    tracing::info!(file = %f.path().display(), "removing the leftover of an interrupted upload");
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
    }
}

/// Removes spooled uploads left by a crash (old enough not to be in progress).
pub fn clean_spool(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let is_part = e.file_name().to_str().is_some_and(|n| n.ends_with(".part"));
        if is_part && old(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether a file was last modified more than [`LEFTOVER_AGE`] ago.
fn old(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > LEFTOVER_AGE)
}

/// Reads a record; `None` when it does not exist.
async fn read_record(path: &Path) -> Result<Option<FileMeta>, StoreError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Unavailable(format!(
                "the file record {} is damaged: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(unavailable("read the file record", &e)),
    }
}

/// A storage failure, with what was being done.
fn unavailable(what: &str, e: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("file storage error: cannot {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: &str, id: &str) -> FileMeta {
        FileMeta {
            id: id.into(),
            owner: owner.into(),
            filename: "a.txt".into(),
            purpose: "user_data".into(),
            bytes: 5,
            created_at: 1,
            created_ns: 0,
            content_type: "text/plain".into(),
        }
    }

    #[tokio::test]
    async fn round_trip_and_isolation() {
        let dir = std::env::temp_dir().join(format!("unigate-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = LocalStore::new(dir.clone()).unwrap();
        std::fs::create_dir_all(dir.join(".uploads")).unwrap();
        let spool = dir.join(".uploads/x.part");
        std::fs::write(&spool, b"hello").unwrap();
        let id = super::super::new_id().unwrap();
        s.put(&meta("owner1", &id), &spool).await.unwrap();
        assert!(!spool.exists());
        assert_eq!(s.get("owner1", &id).await.unwrap().bytes, 5);
        assert_eq!(s.get("owner2", &id).await, Err(StoreError::NotFound));
        assert_eq!(s.list("owner1").await.unwrap().len(), 1);
        assert!(s.list("owner2").await.unwrap().is_empty());
        let (_, mut r) = s.open("owner1", &id, Some(3)).await.unwrap();
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, b"hel");
        assert_eq!(s.delete("owner2", &id).await, Err(StoreError::NotFound));
        s.delete("owner1", &id).await.unwrap();
        assert_eq!(s.get("owner1", &id).await, Err(StoreError::NotFound));
        assert_eq!(s.get("owner1", "../etc").await, Err(StoreError::NotFound));
        assert!(s.health().await.ok);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
