//! Where object bytes live, through `object_store`: a directory of the local file system or an
//! S3-compatible bucket.
//!
//! Bytes are stored under a key of their own (`objects/<version>`, a fresh UUID per upload),
//! never under the object's name: a name cannot reach outside its place whatever it holds
//! (`..`, separators, encoded or not), a move renames the metadata row only, and an upload that
//! replaces an object writes new bytes beside the old ones, so readers of the old version are
//! never handed half of the new one. The metadata row (`storage.objects.version`) is committed
//! only after the bytes are complete (and, on the local file system, synced to disk), so no row
//! is ever visible without its bytes; bytes without a row (an upload cut short by a crash, or
//! the old version of a replaced object) are collected by [`crate::gc`].
//!
//! Memory stays bounded whatever the size of an object: uploads go out in parts of
//! [`PART_BYTES`] (at most [`PARTS_IN_FLIGHT`] at once), downloads stream.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::{Digest, Md5};
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::config::BackendConfig;
use crate::error::{StorageError, StorageResult};
use crate::limits::{PART_BYTES, PARTS_IN_FLIGHT};

/// Where versions live under the backend's root.
const VERSIONS: &str = "objects";

/// A download's bytes.
pub type ByteStream = futures::stream::BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes read from a local file per blocking read of a download. `object_store`'s own stream
/// reads 8 KiB per blocking task, which held local downloads to about a tenth of the disk's
/// pace; one block in flight per download bounds the memory.
const READ_BLOCK_BYTES: u64 = 1 << 20;

/// `range` of a local file, a block at a time (positional reads on the blocking pool).
fn file_stream(file: std::fs::File, range: Range<u64>) -> ByteStream {
    let file = Arc::new(file);
    futures::stream::try_unfold(range, move |range| {
        let file = file.clone();
        async move {
            if range.start >= range.end {
                return Ok(None);
            }
            let n = (range.end - range.start).min(READ_BLOCK_BYTES);
            let at = range.start;
            let block = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; n as usize];
                file.read_exact_at(&mut buf, at).map(|()| Bytes::from(buf))
            })
            .await
            .map_err(std::io::Error::other)??;
            Ok(Some((block, at + n..range.end)))
        }
    })
    .boxed()
}

/// What an upload stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub size: u64,
    /// Hex MD5 of the bytes (the ETag, as S3 gives it for single-part objects).
    pub md5: String,
}

/// Why the bytes of an upload did not arrive.
#[derive(Debug)]
pub enum BodyError {
    /// The client's body failed (connection cut, bad multipart framing).
    Client(String),
    /// The body went over the limit.
    TooLarge(u64),
    /// The object store failed.
    Backend(String),
}

pub struct Backend {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local backend (to sync files and sweep unfinished uploads).
    local_root: Option<PathBuf>,
    /// Prefix of every key (S3: a folder of a shared bucket).
    prefix: String,
    pub description: String,
}

impl Backend {
    pub fn open(config: &BackendConfig) -> Result<Backend, String> {
        match config {
            BackendConfig::Local(dir) => {
                std::fs::create_dir_all(dir.join(VERSIONS))
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| format!("storage directory {}: {e}", dir.display()))?;
                Ok(Backend {
                    store: Arc::new(store),
                    local_root: Some(dir.clone()),
                    prefix: String::new(),
                    description: format!("local {}", dir.display()),
                })
            }
            BackendConfig::S3 { bucket, endpoint, region, prefix } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                let endpoint = endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                if let Some(e) = endpoint {
                    b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                let store = b.build().map_err(|e| format!("S3 storage settings: {e}"))?;
                let prefix = prefix.trim_matches('/').to_string();
                Ok(Backend {
                    store: Arc::new(store),
                    local_root: None,
                    description: format!("s3://{bucket}/{prefix}"),
                    prefix,
                })
            }
        }
    }

    fn root(&self) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(VERSIONS)
        } else {
            StorePath::from(format!("{}/{VERSIONS}", self.prefix))
        }
    }

    fn key(&self, version: &str) -> StorePath {
        self.root().join(version)
    }

    /// Stores `body` as `version`, at most `limit` bytes (over it: nothing is left behind and
    /// the error says so).
    pub async fn put<S, E>(&self, version: &str, mut body: S, limit: u64) -> Result<Stored, BodyError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let key = self.key(version);
        let mut digest = Md5::new();
        let mut size = 0u64;
        let mut head: Vec<Bytes> = Vec::new();
        let mut head_len = 0usize;
        let mut upload: Option<WriteMultipart> = None;
        loop {
            let chunk = match body.next().await {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    if let Some(u) = upload {
                        let _ = u.abort().await;
                    }
                    return Err(BodyError::Client(e.to_string()));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                if let Some(u) = upload {
                    let _ = u.abort().await;
                }
                return Err(BodyError::TooLarge(limit));
            }
            digest.update(&chunk);
            match upload.as_mut() {
                Some(u) => {
                    if let Err(e) = u.wait_for_capacity(PARTS_IN_FLIGHT).await {
                        return Err(BodyError::Backend(e.to_string()));
                    }
                    u.put(chunk);
                }
                None => {
                    head_len += chunk.len();
                    head.push(chunk);
                    if head_len >= PART_BYTES {
                        let started = self.store.put_multipart(&key).await;
                        let mut u = match started {
                            Ok(u) => WriteMultipart::new_with_chunk_size(u, PART_BYTES),
                            Err(e) => return Err(BodyError::Backend(e.to_string())),
                        };
                        for b in head.drain(..) {
                            u.put(b);
                        }
                        upload = Some(u);
                    }
                }
            }
        }
        let done = match upload {
            Some(u) => u.finish().await.map(|_| ()),
            None => self.store.put(&key, PutPayload::from_iter(head)).await.map(|_| ()),
        };
        if let Err(e) = done {
            return Err(BodyError::Backend(e.to_string()));
        }
        if let Err(e) = self.sync(version).await {
            let _ = self.delete(version).await;
            return Err(BodyError::Backend(e));
        }
        Ok(Stored { size, md5: hex(&digest.finalize()) })
    }

    /// On the local file system: the file and its directory reach the disk before the metadata
    /// row that names them is committed.
    async fn sync(&self, version: &str) -> Result<(), String> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let dir = root.join(VERSIONS);
        let file = dir.join(version);
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)
                .and_then(|f| f.sync_all())
                .and_then(|_| std::fs::File::open(&dir))
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("cannot sync {}: {e}", file.display()))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The bytes of `version` (all, or `range`), as a stream.
    pub async fn get(&self, version: &str, range: Option<Range<u64>>) -> StorageResult<ByteStream> {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let got = self.store.get_opts(&self.key(version), opts).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => StorageError::object_not_found(),
            other => StorageError::backend(other),
        })?;
        Ok(match got.payload {
            GetResultPayload::File(file, _) => file_stream(file, got.range),
            GetResultPayload::Stream(s) => s.map(|r| r.map_err(std::io::Error::other)).boxed(),
        })
    }

    /// Deletes the bytes of `version` (absent bytes are not an error).
    pub async fn delete(&self, version: &str) -> StorageResult<()> {
        match self.store.delete(&self.key(version)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::backend(e)),
        }
    }

    /// Copies the bytes of `from` to a new version `to`.
    pub async fn copy(&self, from: &str, to: &str) -> StorageResult<()> {
        self.store.copy(&self.key(from), &self.key(to)).await.map_err(StorageError::backend)?;
        self.sync(to).await.map_err(StorageError::backend)
    }

    /// Every stored version with its last modification (seconds since the epoch).
    pub async fn versions(&self) -> StorageResult<Vec<(String, i64)>> {
        let mut out = Vec::new();
        let mut list = self.store.list(Some(&self.root()));
        while let Some(meta) = list.next().await {
            let meta = meta.map_err(StorageError::backend)?;
            if let Some(name) = meta.location.filename() {
                out.push((name.to_string(), meta.last_modified.timestamp()));
            }
        }
        Ok(out)
    }

    /// Local file system: removes the staging files of uploads a crash cut short (`<key>#<n>`)
    /// older than `older_than` (seconds since the epoch); the count removed.
    pub fn sweep_staging(&self, older_than: i64) -> usize {
        let Some(root) = &self.local_root else { return 0 };
        let Ok(dir) = std::fs::read_dir(root.join(VERSIONS)) else { return 0 };
        let mut removed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| (d.as_secs() as i64) < older_than);
            if name.contains('#') && old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    fn chunks(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from(p))))
    }

    #[tokio::test]
    async fn uploads_stream_in_parts_and_leave_nothing_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backend::open(&BackendConfig::Local(dir.path().to_path_buf())).unwrap();
        // Small: one request.
        let s = b.put("v1", chunks(vec![b"hello ".to_vec(), b"world".to_vec()]), 100).await.unwrap();
        assert_eq!((s.size, s.md5.as_str()), (11, "5eb63bbbe01eeed093cb22bb8f5acdc3"));
        // Large: parts.
        let big: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 3 << 20]).collect();
        let s = b.put("v2", chunks(big), 1 << 30).await.unwrap();
        assert_eq!(s.size, 15 << 20);
        let all = |s: ByteStream| async move {
            s.try_fold(Vec::new(), |mut v, b| async move {
                v.extend_from_slice(&b);
                Ok(v)
            })
            .await
            .unwrap()
        };
        assert_eq!(all(b.get("v2", Some(0..4)).await.unwrap()).await, [0, 0, 0, 0]);
        assert_eq!(all(b.get("v2", Some((15 << 20) - 2..15 << 20)).await.unwrap()).await, [4, 4]);
        // A range over several read blocks, starting and ending inside them.
        let mid = all(b.get("v2", Some((3 << 20) - 2..(6 << 20) + 2)).await.unwrap()).await;
        let mut want = vec![0u8, 0];
        want.extend(std::iter::repeat_n(1u8, 3 << 20));
        want.extend([2, 2]);
        assert!(mid == want, "{} bytes", mid.len());
        assert_eq!(all(b.get("v2", None).await.unwrap()).await.len(), 15 << 20);
        // Over the limit, in the middle of a multipart upload: nothing stays.
        let big: Vec<Vec<u8>> = (0..5).map(|_| vec![1u8; 3 << 20]).collect();
        assert!(matches!(b.put("v3", chunks(big), 10 << 20).await, Err(BodyError::TooLarge(_))));
        let mut names: Vec<String> = b.versions().await.unwrap().into_iter().map(|(v, _)| v).collect();
        names.sort();
        assert_eq!(names, ["v1", "v2"]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(VERSIONS)).unwrap().flatten().collect();
        assert_eq!(leftovers.len(), 2, "no staging file stays behind");
        b.delete("v1").await.unwrap();
        b.delete("v1").await.unwrap();
        assert!(matches!(b.get("v1", None).await, Err(e) if e.status == 404));
    }
}
