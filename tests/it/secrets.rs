//! The files the real binary writes (store, SQLite companions, snapshots, their directories)
//! are private whatever the umask.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;

use super::harness::*;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "a2asnap"))
        .collect()
}

#[tokio::test]
async fn state_files_are_private_whatever_the_umask() {
    for store in ["redb", "sqlite"] {
        let tmp = tempfile::tempdir().unwrap();
        let (state, backups) = (tmp.path().join("state"), tmp.path().join("backups"));
        let backups_env = backups.display().to_string();
        let env = [
            ("A2A_STORE", store),
            ("A2A_BACKUP_DIR", backups_env.as_str()),
        ];
        let mut b = TestBinary::serve_with_umask(&state, &env, "022").await;
        // A write (SQLite keeps its -wal and -shm while open) and a snapshot.
        let (s, v) = post(
            &b.rest("/agents/echo/invoke"),
            json!({"input": echo_input("x", 1, 0), "wait": true}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = post(&b.rest("/admin/backups"), json!({})).await;
        assert_eq!(s, 201, "{v}");
        let files: Vec<std::path::PathBuf> = match store {
            "redb" => vec![state.join("a2a-mcp.redb")],
            _ => ["", "-wal", "-shm", ".lock"]
                .iter()
                .map(|x| state.join(format!("a2a-mcp.sqlite{x}")))
                .collect(),
        };
        let snaps = snapshots(&backups);
        assert_eq!(snaps.len(), 1, "{store}");
        assert_eq!(mode(&state), 0o700, "{store}: the data dir");
        assert_eq!(mode(&backups), 0o700, "{store}: the backup dir");
        for f in files.iter().chain(&snaps) {
            assert_eq!(mode(f), 0o600, "{store}: {}", f.display());
        }
        assert!(b.sigterm_and_wait().await.success());

        // Left open by hand (or by an older version): tightened at the next start, logged.
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&state, 0o755);
        set(&backups, 0o755);
        set(&files[0], 0o644);
        set(&snaps[0], 0o644);
        let mut b = TestBinary::serve_with_umask(&state, &env, "022").await;
        assert_eq!((mode(&state), mode(&backups)), (0o700, 0o700), "{store}");
        assert_eq!(
            (mode(&files[0]), mode(&snaps[0])),
            (0o600, 0o600),
            "{store}"
        );
        let log = b.stderr_tail.lock().join("\n");
        assert!(log.contains("tightened"), "{store}: {log}");
        assert!(b.sigterm_and_wait().await.success());
    }
}
