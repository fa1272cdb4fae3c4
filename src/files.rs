//! The hub's own files are private: state and snapshot files are created `0600` in `0700`
//! directories, whatever the process umask.
//!
//! What the hub writes holds secrets (API key hashes, push webhook tokens, agent env values
//! and headers, request inputs and results: SECURITY.md), so nothing it creates may be
//! readable by other users of the host: the data directory, the store files (redb; SQLite's
//! database file, whose `-wal`/`-shm` companions SQLite creates with the database file's
//! mode, and our lock file), the backup directory, snapshots and their temporary files.
//! Modes are set explicitly at creation, not left to the umask (a service outside systemd
//! usually runs with 022, which would make them world-readable).
//!
//! Files and directories from an older run that are open to group or others are tightened
//! (group and other bits cleared) when they are opened, with a log line. A directory the
//! process does not own, or one with the sticky bit (such as `/tmp`), is never changed: the
//! log says to restrict it by hand.
//!
//! Called by the store backends when they open their files, by the snapshot writer, and by
//! `serve` at start. Blocking (small metadata calls); no other state.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories the hub creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the hub creates.
pub const FILE_MODE: u32 = 0o600;

/// Makes sure `dir` exists and only its owner can use it: created (with missing parents)
/// `0700`, or tightened when it exists and is open to others.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            tighten(dir, &m);
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)?;
            // The umask may have taken bits the owner needs; set the mode exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        }
        Err(e) => Err(e),
    }
}

/// Makes sure the file `path` exists (created empty, `0600`) and is not open to others
/// (an existing one is tightened). For store files, before their engine opens them.
pub fn private_file(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(f) => f.set_permissions(fs::Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tighten_existing(path);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Opens `path` for writing, created `0600` (truncated when it exists, and then tightened).
/// For snapshots and other files written whole.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

/// Opens (creating `0600` when missing) a file for writing without truncating it, e.g. a
/// lock file; an existing one open to others is tightened.
pub fn open_private(path: &Path) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    if let Ok(m) = f.metadata() {
        tighten(path, &m);
    }
    Ok(f)
}

/// Tightens `path` when it exists and is open to others (e.g. a SQLite `-wal` left by an
/// older run); a missing path is fine.
pub fn tighten_existing(path: &Path) {
    if let Ok(m) = fs::metadata(path) {
        tighten(path, &m);
    }
}

/// Clears the group and other bits of `path` (described by `meta`) when any is set, with a
/// log line; leaves alone, with a warning, what this process does not own or a sticky
/// directory.
fn tighten(path: &Path, meta: &fs::Metadata) {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let what = if meta.is_dir() { "directory" } else { "file" };
    let own = meta.uid() == nix::unistd::geteuid().as_raw();
    if !own || (meta.is_dir() && mode & 0o1000 != 0) {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "this {what} holds hub state (secrets) and is open to other users, but it is shared or not this user's own, so it is left as it is; restrict it (e.g. chmod go= or use a private directory)"
        );
        return;
    }
    let tight = mode & !0o077;
    match fs::set_permissions(path, fs::Permissions::from_mode(tight)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            from = %format!("{mode:04o}"),
            to = %format!("{tight:04o}"),
            "tightened the permissions of a {what} that holds hub state (it was open to other users)"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "this {what} holds hub state and is open to other users, and its mode cannot be changed: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_private_and_loose_ones_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("store");
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        private_file(&f).unwrap();
        assert_eq!((mode(&dir), mode(&f)), (0o700, 0o600));
        let g = dir.join("snap");
        fs::write(&g, b"x").unwrap();
        fs::set_permissions(&g, fs::Permissions::from_mode(0o666)).unwrap();
        drop(create_private(&g).unwrap());
        assert_eq!(mode(&g), 0o600);
        assert!(private_dir(&f).is_err(), "a file is not a directory");
    }
}
