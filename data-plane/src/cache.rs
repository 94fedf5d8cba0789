//! The snapshot cache (`--cache-dir`): the last applied snapshot on disk, so a proxy restarted
//! while every control plane is down routes at once instead of answering 503.
//!
//! For: the cache file's format, reading it (every way it can be wrong is a [`CacheError`] naming
//! the file), writing it atomically (a temporary file in the same directory, fsync, rename, fsync
//! of the directory), and the background [`Writer`] that keeps the file at the newest applied
//! snapshot without slowing the stream client.
//! Not for: deciding whether a snapshot is good (the cached one goes through the same
//! `State::apply` as a pushed one) or when to write (`state` offers every snapshot it applied).
//!
//! File layout (`DIR/snapshot.bin`):
//!
//! ```text
//! MAGIC (16 bytes) | SHA-256 of PAYLOAD (32 bytes) | PAYLOAD
//! ```
//!
//! PAYLOAD is the protobuf encoding of a `RouteUpdate` with the snapshot's `version`, an empty
//! nonce and the `snapshot` body. The checksum catches a file cut short at a field boundary,
//! which protobuf alone would decode as a smaller snapshot.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_proto::v1::{route_update, RouteUpdate, Snapshot};
use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::watch;

/// Name of the cache file inside `--cache-dir`.
pub(crate) const FILE_NAME: &str = "snapshot.bin";
/// First bytes of every cache file: what it is and the layout's version.
const MAGIC: &[u8; 16] = b"berth-snapshot1\n";
const CHECKSUM_LEN: usize = 32;

/// Why the cache file could not be read or written. Each names the file.
#[derive(Debug, Error)]
pub(crate) enum CacheError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: not a berth-proxy snapshot cache (it does not start with {:?})", path.display(), String::from_utf8_lossy(MAGIC))]
    NotACache { path: PathBuf },
    #[error("{}: the checksum does not match the content ({len} bytes): the file is corrupt or cut short", path.display())]
    Checksum { path: PathBuf, len: usize },
    #[error("{}: the snapshot does not decode: {source}", path.display())]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
    #[error("{}: holds no snapshot", path.display())]
    NoSnapshot { path: PathBuf },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// A snapshot read back from the cache.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CachedSnapshot {
    pub version: String,
    pub snapshot: Snapshot,
}

/// The cache directory and the file in it.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotCache {
    dir: PathBuf,
    file: PathBuf,
}

impl SnapshotCache {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let file = dir.join(FILE_NAME);
        Self { dir, file }
    }

    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Reads the cached snapshot; `Ok(None)` when there is no cache file yet.
    pub(crate) fn load(&self) -> Result<Option<CachedSnapshot>, CacheError> {
        let bytes = match std::fs::read(&self.file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CacheError::Read {
                    path: self.file.clone(),
                    source,
                })
            }
        };
        decode(&self.file, &bytes).map(Some)
    }

    /// Removes temporary files a write cut short by a crash left behind; returns how many.
    pub(crate) fn remove_stale_temporaries(&self) -> usize {
        let prefix = format!(".{FILE_NAME}.tmp-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }

    /// Replaces the cache file with `snapshot` at `version`, atomically: a reader (or a crash)
    /// sees either the old file or the new one, whole.
    pub(crate) fn store(&self, version: &str, snapshot: &Snapshot) -> Result<(), CacheError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bytes = encode(version, snapshot);
        let temp = self.dir.join(format!(
            ".{FILE_NAME}.tmp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_synced(&temp, &bytes).and_then(|()| std::fs::rename(&temp, &self.file));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(CacheError::Write {
                path: self.file.clone(),
                source,
            });
        }
        // The rename is durable once the directory is synced; a failure here only risks losing
        // the newest file in a crash, so it is not an error.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::options().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn encode(version: &str, snapshot: &Snapshot) -> Vec<u8> {
    let update = RouteUpdate {
        version: version.to_owned(),
        nonce: String::new(),
        body: Some(route_update::Body::Snapshot(snapshot.clone())),
    };
    let payload = update.encode_to_vec();
    let mut bytes = Vec::with_capacity(MAGIC.len() + CHECKSUM_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&Sha256::digest(&payload));
    bytes.extend_from_slice(&payload);
    bytes
}

fn decode(path: &Path, bytes: &[u8]) -> Result<CachedSnapshot, CacheError> {
    let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) else {
        return Err(CacheError::NotACache {
            path: path.to_owned(),
        });
    };
    let checksum_ok = rest.len() >= CHECKSUM_LEN && {
        let (checksum, payload) = rest.split_at(CHECKSUM_LEN);
        Sha256::digest(payload).as_slice() == checksum
    };
    if !checksum_ok {
        return Err(CacheError::Checksum {
            path: path.to_owned(),
            len: bytes.len(),
        });
    }
    let update = RouteUpdate::decode(&rest[CHECKSUM_LEN..]).map_err(|source| CacheError::Decode {
        path: path.to_owned(),
        source,
    })?;
    match update.body {
        Some(route_update::Body::Snapshot(snapshot)) if !update.version.is_empty() => Ok(CachedSnapshot {
            version: update.version,
            snapshot,
        }),
        _ => Err(CacheError::NoSnapshot {
            path: path.to_owned(),
        }),
    }
}

/// One applied snapshot waiting to be written.
#[derive(Debug)]
struct Pending {
    version: String,
    snapshot: Snapshot,
}

/// Hands applied snapshots to a background task that writes them to the cache, newest first:
/// offers made while a write is under way collapse into the newest, and the stream client never
/// waits for the disk.
#[derive(Debug)]
pub(crate) struct Writer {
    latest: watch::Sender<Option<Arc<Pending>>>,
}

impl Writer {
    /// Starts the writing task on the current runtime. `written` is the version already in the
    /// file (the one read at start), which is not written again.
    pub(crate) fn spawn(cache: SnapshotCache, written: Option<String>) -> Self {
        let (latest, mut pending) = watch::channel::<Option<Arc<Pending>>>(None);
        tokio::spawn(async move {
            let mut written = written;
            while pending.changed().await.is_ok() {
                let Some(next) = pending.borrow_and_update().clone() else {
                    continue;
                };
                if written.as_deref() == Some(next.version.as_str()) {
                    continue;
                }
                let (job_cache, job) = (cache.clone(), next.clone());
                let result =
                    tokio::task::spawn_blocking(move || job_cache.store(&job.version, &job.snapshot)).await;
                match result {
                    Ok(Ok(())) => {
                        crate::metrics::global().cache_written(true);
                        tracing::info!(version = %next.version, file = %cache.file().display(), "snapshot cached");
                        written = Some(next.version.clone());
                    }
                    Ok(Err(error)) => {
                        crate::metrics::global().cache_written(false);
                        tracing::warn!(%error, "cannot cache the snapshot; a restart without a control plane will not have it")
                    }
                    Err(error) => {
                        crate::metrics::global().cache_written(false);
                        tracing::warn!(%error, "the snapshot cache writer failed")
                    }
                }
            }
        });
        Self { latest }
    }

    /// Queues `snapshot` at `version` to be written; returns at once.
    pub(crate) fn offer(&self, version: &str, snapshot: &Snapshot) {
        self.latest.send_replace(Some(Arc::new(Pending {
            version: version.to_owned(),
            snapshot: snapshot.clone(),
        })));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::testing::{cluster, endpoint, host, route, snapshot};

    /// A fresh directory under the system's temporary directory, removed by the test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-proxy-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    }

    fn web(address: &str) -> Snapshot {
        snapshot(
            vec![route("web", host("web.example"), "web")],
            vec![cluster("web", vec![endpoint(address, 80, 1)])],
        )
    }

    #[test]
    fn round_trip() {
        let dir = scratch("round-trip");
        let cache = SnapshotCache::new(&dir);
        assert!(cache.load().expect("no file is no error").is_none());
        cache.store("v1", &web("127.0.0.1")).expect("stored");
        let loaded = cache.load().expect("loads").expect("present");
        assert_eq!(
            loaded,
            CachedSnapshot {
                version: "v1".into(),
                snapshot: web("127.0.0.1")
            }
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn replace_is_atomic_and_leaves_no_temporary_file() {
        let dir = scratch("replace");
        let cache = SnapshotCache::new(&dir);
        cache.store("v1", &web("127.0.0.1")).expect("stored");
        cache.store("v2", &web("127.0.0.2")).expect("replaced");
        let loaded = cache.load().expect("loads").expect("present");
        assert_eq!(loaded.version, "v2");
        assert_eq!(loaded.snapshot, web("127.0.0.2"));
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [FILE_NAME], "only the cache file remains");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = scratch("stale");
        let cache = SnapshotCache::new(&dir);
        cache.store("v1", &web("127.0.0.1")).expect("stored");
        std::fs::write(dir.join(format!(".{FILE_NAME}.tmp-1-0")), b"half").expect("written");
        std::fs::write(dir.join("unrelated"), b"keep").expect("written");
        assert_eq!(cache.remove_stale_temporaries(), 1);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [FILE_NAME, "unrelated"]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = scratch("failed-write");
        let cache = SnapshotCache::new(&dir);
        cache.store("v1", &web("127.0.0.1")).expect("stored");
        // A directory in the way of the rename: the write fails, the old file is untouched.
        let blocked = SnapshotCache::new(dir.join("missing-subdir"));
        let error = blocked
            .store("v2", &web("127.0.0.2"))
            .expect_err("no such directory");
        assert!(error.to_string().contains("missing-subdir"), "{error}");
        assert_eq!(cache.load().expect("loads").expect("present").version, "v1");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = scratch("corrupt");
        let cache = SnapshotCache::new(&dir);
        let good = encode("v1", &web("127.0.0.1"));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"garbage".to_vec(), "not a berth-proxy snapshot cache"),
            (Vec::new(), "not a berth-proxy snapshot cache"),
            (good[..good.len() - 3].to_vec(), "checksum does not match"),
            (good[..MAGIC.len() + 4].to_vec(), "checksum does not match"),
            (
                {
                    let mut flipped = good.clone();
                    let last = flipped.len() - 1;
                    flipped[last] ^= 0xff;
                    flipped
                },
                "checksum does not match",
            ),
            (
                {
                    let payload = [0xffu8, 0xff, 0xff];
                    let mut bytes = MAGIC.to_vec();
                    bytes.extend_from_slice(&Sha256::digest(payload));
                    bytes.extend_from_slice(&payload);
                    bytes
                },
                "does not decode",
            ),
            (
                {
                    let mut bytes = MAGIC.to_vec();
                    bytes.extend_from_slice(&Sha256::digest([]));
                    bytes
                },
                "holds no snapshot",
            ),
        ];
        for (bytes, expected) in cases {
            std::fs::write(cache.file(), &bytes).expect("written");
            let error = cache.load().expect_err("corrupt");
            let text = error.to_string();
            assert!(text.contains(expected), "expected {expected:?} in {text}");
            assert!(text.contains(&cache.file().display().to_string()), "{text}");
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = scratch("unreadable");
        // A directory where the file should be cannot be read as a file.
        std::fs::create_dir_all(dir.join(FILE_NAME)).expect("directory in the way");
        let error = SnapshotCache::new(&dir).load().expect_err("unreadable");
        assert!(error.to_string().contains("cannot read"), "{error}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[tokio::test]
    async fn writer_keeps_the_newest_and_skips_the_version_already_written() {
        let dir = scratch("writer");
        let cache = SnapshotCache::new(&dir);
        let writer = Writer::spawn(cache.clone(), Some("v0".into()));
        writer.offer("v0", &web("127.0.0.9"));
        writer.offer("v1", &web("127.0.0.1"));
        writer.offer("v2", &web("127.0.0.2"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Ok(Some(cached)) = cache.load() {
                if cached.version == "v2" {
                    assert_eq!(cached.snapshot, web("127.0.0.2"));
                    break;
                }
            }
            assert!(std::time::Instant::now() < deadline, "v2 was never written");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
