//! The file system and clock seen by the kernel.
//!
//! Everything the kernel writes goes through [`Vfs`], so tests can fail the N-th write or fsync,
//! report a full disk, and drop bytes that were written but never synced (a simulated power
//! loss). [`StdVfs`] is the real thing; [`FaultyVfs`] wraps it for tests.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

pub trait VfsFile: Send {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// fdatasync: data (and the size) reach stable storage.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates to `len` bytes; later writes append at `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

pub trait Vfs: Send + Sync + 'static {
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Files and directories directly inside `dir`, sorted by name.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &Path) -> bool;
    /// Opens for appending at the end, creating the file if missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Creates (or truncates) for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory, making creations, renames and removals in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdVfs;

struct StdFile(File);

impl VfsFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.0.set_len(len)?;
        self.0.seek(io::SeekFrom::Start(len))?;
        Ok(())
    }
}

impl Vfs for StdVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            out.push(entry?.path());
        }
        out.sort();
        Ok(out)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        use std::io::Seek;
        let mut f = OpenOptions::new().create(true).read(true).write(true).truncate(false).open(path)?;
        f.seek(io::SeekFrom::End(0))?;
        Ok(Box::new(StdFile(f)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(StdFile(File::create(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Fault injection around [`StdVfs`] for tests.
///
/// Counts every `write_all`, `sync_data`/`sync_dir` and `rename`; `fail_write_at(n)` makes the
/// n-th write (1-based, counted from the call) fail with ENOSPC, `fail_sync_at(n)` the n-th
/// fsync with EIO, `fail_rename_at(n)` the n-th rename with EIO (nothing renamed), and
/// `set_disk_full(true)` fails every write until cleared. `drop_unsynced()` truncates every file
/// written through it back to its last synced length, as a power loss would.
#[derive(Default, Clone)]
pub struct FaultyVfs {
    inner: Arc<FaultState>,
}

#[derive(Default)]
struct FaultState {
    writes: AtomicU64,
    syncs: AtomicU64,
    renames: AtomicU64,
    fail_write_at: AtomicU64,
    fail_sync_at: AtomicU64,
    fail_rename_at: AtomicU64,
    disk_full: AtomicBool,
    /// path -> (written length, synced length)
    files: Mutex<HashMap<PathBuf, (u64, u64)>>,
}

impl FaultyVfs {
    pub fn new() -> FaultyVfs {
        FaultyVfs::default()
    }
    pub fn fail_write_at(&self, n: u64) {
        let now = self.inner.writes.load(Ordering::SeqCst);
        self.inner.fail_write_at.store(now + n, Ordering::SeqCst);
    }
    pub fn fail_sync_at(&self, n: u64) {
        let now = self.inner.syncs.load(Ordering::SeqCst);
        self.inner.fail_sync_at.store(now + n, Ordering::SeqCst);
    }
    pub fn fail_rename_at(&self, n: u64) {
        let now = self.inner.renames.load(Ordering::SeqCst);
        self.inner.fail_rename_at.store(now + n, Ordering::SeqCst);
    }
    /// Writes, syncs and renames so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = &self.inner;
        (s.writes.load(Ordering::SeqCst), s.syncs.load(Ordering::SeqCst), s.renames.load(Ordering::SeqCst))
    }
    pub fn set_disk_full(&self, full: bool) {
        self.inner.disk_full.store(full, Ordering::SeqCst);
    }
    pub fn sync_count(&self) -> u64 {
        self.inner.syncs.load(Ordering::SeqCst)
    }
    /// Truncates every file written through this VFS to its synced length.
    pub fn drop_unsynced(&self) -> io::Result<()> {
        let files = self.inner.files.lock();
        for (path, (_, synced)) in files.iter() {
            if path.exists() {
                OpenOptions::new().write(true).open(path)?.set_len(*synced)?;
            }
        }
        Ok(())
    }
}

struct FaultyFile {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    state: Arc<FaultState>,
}

impl VfsFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let n = self.state.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if self.state.disk_full.load(Ordering::SeqCst) || self.state.fail_write_at.load(Ordering::SeqCst) == n {
            // A real full disk may accept part of the buffer before failing.
            let half = &buf[..buf.len() / 2];
            self.file.write_all(half)?;
            self.state.files.lock().entry(self.path.clone()).or_default().0 += half.len() as u64;
            return Err(io::Error::from_raw_os_error(28));
        }
        self.file.write_all(buf)?;
        self.state.files.lock().entry(self.path.clone()).or_default().0 += buf.len() as u64;
        Ok(())
    }
    fn sync_data(&mut self) -> io::Result<()> {
        let n = self.state.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.state.fail_sync_at.load(Ordering::SeqCst) == n {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()?;
        let mut files = self.state.files.lock();
        let e = files.entry(self.path.clone()).or_default();
        e.1 = e.0;
        Ok(())
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        let mut files = self.state.files.lock();
        let e = files.entry(self.path.clone()).or_default();
        e.0 = len;
        e.1 = e.1.min(len);
        Ok(())
    }
}

impl Vfs for FaultyVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        StdVfs.create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdVfs.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdVfs.read(path)
    }
    fn exists(&self, path: &Path) -> bool {
        StdVfs.exists(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let file = StdVfs.open_append(path)?;
        self.inner.files.lock().entry(path.to_path_buf()).or_insert((len, len));
        Ok(Box::new(FaultyFile { path: path.to_path_buf(), file, state: self.inner.clone() }))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let file = StdVfs.create(path)?;
        self.inner.files.lock().insert(path.to_path_buf(), (0, 0));
        Ok(Box::new(FaultyFile { path: path.to_path_buf(), file, state: self.inner.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let n = self.inner.renames.fetch_add(1, Ordering::SeqCst) + 1;
        if self.inner.fail_rename_at.load(Ordering::SeqCst) == n {
            return Err(io::Error::from_raw_os_error(5));
        }
        StdVfs.rename(from, to)?;
        let mut files = self.inner.files.lock();
        if let Some(v) = files.remove(from) {
            files.insert(to.to_path_buf(), v);
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.files.lock().remove(path);
        StdVfs.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        StdVfs.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let n = self.inner.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if self.inner.fail_sync_at.load(Ordering::SeqCst) == n {
            return Err(io::Error::from_raw_os_error(5));
        }
        StdVfs.sync_dir(path)
    }
}

/// Wall-clock time for commit timestamps in the change feed and checkpoint intervals.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock tests step by hand.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicU64);

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
