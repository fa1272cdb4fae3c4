//! Snapshots: one file per snapshot, the same format for every backend.
//!
//! Layout: `A2ASNAP1` magic, a zstd stream of length-prefixed postcard records, the manifest
//! (JSON), the manifest's length (u32 LE) and the `A2AEND01` magic. The manifest records the
//! format version, product and schema versions, the source backend, the creation time,
//! record counts per kind and the SHA-256 of the compressed section. A snapshot is written to
//! a temporary name, fsynced and renamed into place, so a final name never holds half a file.
//! Snapshots hold every secret the store holds (API key hashes, push webhook tokens, agent env
//! values and headers, request inputs and results): they are created `0600` in a `0700`
//! directory ([`crate::files`]), and [`secure_dir`] tightens older ones at start.
//!
//! Consistency comes from [`Store::export`] (one read transaction / repeatable-read view):
//! writers keep going while a snapshot is taken. Restoring writes the records into a fresh
//! store (see [`restore`]); because the format is backend-neutral, a snapshot of one backend
//! restores into another — which is also how data moves between backends.

pub mod restore;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{AgentRecord, Event, IdempotencyRecord, RequestRecord, SessionRecord, rfc3339};
use crate::store::{Aux, DynStore, Record, StoreError};

pub const MAGIC: &[u8; 8] = b"A2ASNAP1";
pub const END_MAGIC: &[u8; 8] = b"A2AEND01";
/// Snapshot format written by this build (manifest `formatVersion`).
pub const FORMAT_VERSION: u32 = 1;
/// File name extension of snapshots.
pub const EXTENSION: &str = "a2asnap";
/// Largest manifest accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_MANIFEST: u32 = 1 << 20;
/// Largest single record accepted when reading.
const MAX_RECORD: u32 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

pub type BackupResult<T> = Result<T, BackupError>;

fn io_err(what: &str, path: &Path, e: std::io::Error) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

fn invalid(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Invalid {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// One record in a snapshot. Agents travel as JSON text (their schemas are free-form JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum SnapRecord {
    Agent(String),
    Session(SessionRecord),
    Request(RequestRecord),
    Event(Event),
    Idempotency(IdempotencyRecord),
    Aux {
        table: String,
        key: String,
        value: Vec<u8>,
    },
}

impl SnapRecord {
    fn from_record(r: Record) -> Result<Self, StoreError> {
        Ok(match r {
            Record::Agent(a) => SnapRecord::Agent(
                serde_json::to_string(&a).map_err(|e| StoreError::Other(e.to_string()))?,
            ),
            Record::Session(s) => SnapRecord::Session(s),
            Record::Request(r) => SnapRecord::Request(r),
            Record::Event(e) => SnapRecord::Event(e),
            Record::Idempotency(i) => SnapRecord::Idempotency(i),
            Record::Aux { table, key, value } => SnapRecord::Aux {
                table: table.name().to_string(),
                key,
                value,
            },
        })
    }

    fn into_record(self) -> Result<Record, String> {
        Ok(match self {
            SnapRecord::Agent(json) => Record::Agent(
                serde_json::from_str::<AgentRecord>(&json)
                    .map_err(|e| format!("an agent record does not decode: {e}"))?,
            ),
            SnapRecord::Session(s) => Record::Session(s),
            SnapRecord::Request(r) => Record::Request(r),
            SnapRecord::Event(e) => Record::Event(e),
            SnapRecord::Idempotency(i) => Record::Idempotency(i),
            SnapRecord::Aux { table, key, value } => Record::Aux {
                table: Aux::from_name(&table)
                    .ok_or_else(|| format!("unknown auxiliary table {table:?}"))?,
                key,
                value,
            },
        })
    }

    fn kind(&self) -> String {
        match self {
            SnapRecord::Agent(_) => "agents".into(),
            SnapRecord::Session(_) => "sessions".into(),
            SnapRecord::Request(_) => "requests".into(),
            SnapRecord::Event(_) => "events".into(),
            SnapRecord::Idempotency(_) => "idempotency_keys".into(),
            SnapRecord::Aux { table, .. } => table.clone(),
        }
    }
}

/// What a snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub product_version: String,
    pub schema_version: u64,
    pub source_backend: String,
    pub created_at: String,
    pub created_at_ms: i64,
    /// Records per kind (`agents`, `sessions`, `requests`, `events`, `idempotency_keys`, and
    /// one entry per auxiliary table).
    pub counts: BTreeMap<String, u64>,
    pub records: u64,
    pub content_sha256: String,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
}

/// A snapshot on disk.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub size: u64,
    pub manifest: Manifest,
}

/// Counts and hashes the bytes that pass through.
struct Tally<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `a2a-mcp-20261129T002600123Z.a2asnap`
pub fn file_name(created_at_ms: i64) -> String {
    let t = rfc3339(created_at_ms)
        .replace(['-', ':'], "")
        .replace('.', "");
    format!("a2a-mcp-{t}.{EXTENSION}")
}

/// Takes a snapshot of `store` into `dir`, stamped `created_at_ms`. Blocking: call it from a
/// blocking thread inside a Tokio runtime (`spawn_blocking`). `progress` gets the number of records written so far, now and then.
pub fn create(
    store: &DynStore,
    schema_version: u64,
    dir: &Path,
    created_at_ms: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> BackupResult<SnapshotInfo> {
    crate::files::private_dir(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let name = file_name(created_at_ms);
    let final_path = dir.join(&name);
    let tmp_path = dir.join(format!(".{name}.tmp"));
    let result = write_snapshot(store, schema_version, &tmp_path, created_at_ms, progress);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    std::fs::rename(&tmp_path, &final_path).map_err(|e| io_err("cannot rename", &tmp_path, e))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    let size = std::fs::metadata(&final_path)
        .map_err(|e| io_err("cannot stat", &final_path, e))?
        .len();
    Ok(SnapshotInfo {
        path: final_path,
        size,
        manifest,
    })
}

fn write_snapshot(
    store: &DynStore,
    schema_version: u64,
    path: &Path,
    created_at_ms: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> BackupResult<Manifest> {
    let file = crate::files::create_private(path).map_err(|e| io_err("cannot create", path, e))?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC)
        .map_err(|e| io_err("cannot write", path, e))?;
    let tally = Tally {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut enc = zstd::stream::write::Encoder::new(tally, 3)
        .map_err(|e| io_err("cannot start compressing", path, e))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut uncompressed = 0u64;
    let handle = tokio::runtime::Handle::current();
    let export = handle.block_on(store.export(&mut |r: Record| {
        let rec = SnapRecord::from_record(r)?;
        *counts.entry(rec.kind()).or_insert(0) += 1;
        let bytes = postcard::to_stdvec(&rec).map_err(|e| StoreError::Other(e.to_string()))?;
        enc.write_all(&(bytes.len() as u32).to_le_bytes())
            .and_then(|()| enc.write_all(&bytes))
            .map_err(|e| StoreError::Unavailable(format!("writing the snapshot failed: {e}")))?;
        uncompressed += 4 + bytes.len() as u64;
        records += 1;
        if records.is_multiple_of(50_000) {
            progress(records);
        }
        Ok(())
    }));
    export?;
    let tally = enc
        .finish()
        .map_err(|e| io_err("cannot finish compressing", path, e))?;
    let Tally {
        inner: mut out,
        hasher,
        bytes: compressed,
    } = tally;
    let manifest = Manifest {
        format: "a2a-mcp-snapshot".into(),
        format_version: FORMAT_VERSION,
        product_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        source_backend: store.backend().into(),
        created_at: rfc3339(created_at_ms),
        created_at_ms,
        counts,
        records,
        content_sha256: hex::encode(hasher.finalize()),
        compressed_bytes: compressed,
        uncompressed_bytes: uncompressed,
    };
    let m = serde_json::to_vec(&manifest).map_err(|e| BackupError::Io(e.to_string()))?;
    out.write_all(&m)
        .and_then(|()| out.write_all(&(m.len() as u32).to_le_bytes()))
        .and_then(|()| out.write_all(END_MAGIC))
        .map_err(|e| io_err("cannot write", path, e))?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("cannot flush", path, e.into_error()))?;
    file.sync_all()
        .map_err(|e| io_err("cannot fsync", path, e))?;
    progress(records);
    Ok(manifest)
}

/// Reads the manifest from the end of a snapshot (cheap; checks the framing only).
pub fn read_manifest(path: &Path) -> BackupResult<(Manifest, u64)> {
    let mut f = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let size = f
        .metadata()
        .map_err(|e| io_err("cannot stat", path, e))?
        .len();
    if size < (MAGIC.len() + 4 + END_MAGIC.len()) as u64 {
        return Err(invalid(path, "too short to be a snapshot (truncated?)"));
    }
    let mut head = [0u8; 8];
    f.read_exact(&mut head)
        .map_err(|e| io_err("cannot read", path, e))?;
    if &head != MAGIC {
        return Err(invalid(path, "not an a2a-mcp snapshot (bad magic)"));
    }
    f.seek(SeekFrom::End(-12))
        .map_err(|e| io_err("cannot read", path, e))?;
    let mut tail = [0u8; 12];
    f.read_exact(&mut tail)
        .map_err(|e| io_err("cannot read", path, e))?;
    if &tail[4..] != END_MAGIC {
        return Err(invalid(
            path,
            "the end marker is missing (truncated or damaged)",
        ));
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    if len > MAX_MANIFEST || u64::from(len) + 20 > size {
        return Err(invalid(path, "the manifest length is impossible (damaged)"));
    }
    f.seek(SeekFrom::End(-12 - i64::from(len)))
        .map_err(|e| io_err("cannot read", path, e))?;
    let mut m = vec![0u8; len as usize];
    f.read_exact(&mut m)
        .map_err(|e| io_err("cannot read", path, e))?;
    let manifest: Manifest = serde_json::from_slice(&m)
        .map_err(|e| invalid(path, format!("the manifest does not decode: {e}")))?;
    if manifest.format != "a2a-mcp-snapshot" {
        return Err(invalid(
            path,
            "the manifest is not an a2a-mcp snapshot manifest",
        ));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(invalid(
            path,
            format!(
                "snapshot format {} is newer than this a2a-mcp {} knows ({FORMAT_VERSION}); use a newer binary",
                manifest.format_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    let body_len = size - 8 - 12 - u64::from(len);
    if body_len != manifest.compressed_bytes {
        return Err(invalid(
            path,
            format!(
                "the content is {body_len} bytes but the manifest says {} (truncated or damaged)",
                manifest.compressed_bytes
            ),
        ));
    }
    Ok((manifest, size))
}

/// Checks the checksum and decodes every record, handing each to `each`. Returns the
/// manifest. Any corruption is an error that names the file and what is wrong.
pub fn read(
    path: &Path,
    each: &mut dyn FnMut(Record) -> BackupResult<()>,
) -> BackupResult<Manifest> {
    let (manifest, _) = read_manifest(path)?;
    // Pass 1: the checksum over the compressed section.
    let mut f = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    f.seek(SeekFrom::Start(8))
        .map_err(|e| io_err("cannot read", path, e))?;
    let mut hasher = Sha256::new();
    let mut left = manifest.compressed_bytes;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..want])
            .map_err(|e| io_err("cannot read", path, e))?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    if hex::encode(hasher.finalize()) != manifest.content_sha256 {
        return Err(invalid(path, "checksum mismatch: the content is damaged"));
    }
    // Pass 2: decode every record.
    f.seek(SeekFrom::Start(8))
        .map_err(|e| io_err("cannot read", path, e))?;
    let section = BufReader::new(f).take(manifest.compressed_bytes);
    let mut dec = zstd::stream::read::Decoder::new(section)
        .map_err(|e| invalid(path, format!("the content does not decompress: {e}")))?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 0u64;
    let mut len_buf = [0u8; 4];
    loop {
        match dec.read_exact(&mut len_buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                return Err(invalid(
                    path,
                    format!("the content does not decompress: {e}"),
                ));
            }
        }
        let len = u32::from_le_bytes(len_buf);
        if len > MAX_RECORD {
            return Err(invalid(
                path,
                format!("record {n} has an impossible length"),
            ));
        }
        let mut rec = vec![0u8; len as usize];
        dec.read_exact(&mut rec)
            .map_err(|e| invalid(path, format!("record {n} is cut short: {e}")))?;
        let snap: SnapRecord = postcard::from_bytes(&rec)
            .map_err(|e| invalid(path, format!("record {n} does not decode: {e}")))?;
        *counts.entry(snap.kind()).or_insert(0) += 1;
        let record = snap
            .into_record()
            .map_err(|e| invalid(path, format!("record {n}: {e}")))?;
        each(record)?;
        n += 1;
    }
    if n != manifest.records || counts != manifest.counts {
        return Err(invalid(
            path,
            format!(
                "holds {n} records but the manifest says {} (damaged)",
                manifest.records
            ),
        ));
    }
    Ok(manifest)
}

/// Verifies a snapshot completely (checksum and every record).
pub fn verify(path: &Path) -> BackupResult<Manifest> {
    read(path, &mut |_| Ok(()))
}

/// The snapshots in `dir`, oldest first (files that are not snapshots are skipped; damaged
/// snapshots are listed with their error).
pub fn list(dir: &Path) -> BackupResult<Vec<Result<SnapshotInfo, (PathBuf, String)>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot read", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_snap = path.extension().is_some_and(|x| x == EXTENSION)
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !is_snap {
            continue;
        }
        match read_manifest(&path) {
            Ok((manifest, size)) => out.push(Ok(SnapshotInfo {
                path,
                size,
                manifest,
            })),
            Err(e) => out.push(Err((path, e.to_string()))),
        }
    }
    out.sort_by_key(|r| match r {
        Ok(s) => (s.manifest.created_at_ms, s.path.clone()),
        Err((p, _)) => (i64::MIN, p.clone()),
    });
    Ok(out)
}

/// At start: when the backup directory exists, it and every snapshot in it are tightened to
/// owner-only (snapshots made by an older version, or copied in, may be world-readable). A
/// missing directory is left to the first snapshot to create.
pub fn secure_dir(dir: &Path) -> BackupResult<()> {
    if !dir.exists() {
        return Ok(());
    }
    crate::files::private_dir(dir).map_err(|e| io_err("cannot secure", dir, e))?;
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("cannot read", dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == EXTENSION) {
            crate::files::tighten_existing(&path);
        }
    }
    Ok(())
}

/// The newest snapshot in `dir` whose manifest reads (what `restore --latest` takes and what
/// the next scheduled backup is timed from).
pub fn newest(dir: &Path) -> BackupResult<Option<SnapshotInfo>> {
    Ok(list(dir)?.into_iter().flatten().next_back())
}

/// Deletes snapshots created before `now - retention_days`, never the newest one. Returns
/// the deleted (or, with `dry_run`, the deletable) paths.
pub fn prune(
    dir: &Path,
    retention_days: u64,
    now_ms: i64,
    dry_run: bool,
) -> BackupResult<Vec<PathBuf>> {
    let cutoff = now_ms - (retention_days as i64) * 86_400_000;
    let snapshots: Vec<SnapshotInfo> = list(dir)?.into_iter().flatten().collect();
    let Some(newest) = snapshots.iter().map(|s| s.manifest.created_at_ms).max() else {
        return Ok(Vec::new());
    };
    let mut gone = Vec::new();
    for s in snapshots {
        if s.manifest.created_at_ms < cutoff && s.manifest.created_at_ms != newest {
            if !dry_run {
                std::fs::remove_file(&s.path).map_err(|e| io_err("cannot delete", &s.path, e))?;
            }
            gone.push(s.path);
        }
    }
    Ok(gone)
}

/// One file of a backup directory as the hub lists it: the snapshot (or why its manifest is
/// unreadable) and, when asked for, the result of a complete check. The API renders it as
/// `api::views::BackupView`.
#[derive(Debug, Clone)]
pub struct BackupListing {
    pub path: PathBuf,
    pub snapshot: Result<SnapshotInfo, String>,
    /// `Some` when the listing was asked to verify: `Err` says why the check failed.
    pub verified: Option<Result<(), String>>,
}
