//! TLS with a test CA made here (rcgen): real clients (curl, the Python MCP SDK, a wss
//! WebSocket), plain HTTP refused, certificate reload without dropping connections, mTLS.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;

use super::harness::*;

struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "a2a-mcp test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues a leaf certificate into `<name>.pem` / `<name>.key`.
    fn leaf(&self, name: &str, cn: &str, client: bool) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // Write to temporary names and rename: a watcher never sees half a file.
        let (pem, k) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(self.path("tmp.pem"), cert.pem()).unwrap();
        std::fs::write(self.path("tmp.key"), key.serialize_pem()).unwrap();
        std::fs::rename(self.path("tmp.key"), &k).unwrap();
        std::fs::rename(self.path("tmp.pem"), &pem).unwrap();
    }
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_wss_and_mcp_over_tls_with_a_test_ca() {
    let pki = Pki::new();
    pki.leaf("server", "server-one", false);
    let (cert, key) = (p(&pki.path("server.pem")), p(&pki.path("server.key")));
    let th = TestHub::start_with(&[("tls_cert", &cert), ("tls_key", &key)]).await;
    let ca = p(&pki.path("ca.pem"));
    let base = format!("https://127.0.0.1:{}", th.api.port());
    // curl with the test CA: 200, HSTS.
    let (ok, out) = curl(&["--cacert", &ca, "-i", &format!("{base}/api/v1/agents")]);
    assert!(ok, "{out}");
    assert!(
        out.starts_with("HTTP/2 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    assert!(
        out.to_lowercase().contains("strict-transport-security"),
        "{out}"
    );
    // Without trusting the CA: refused by the client.
    let (ok, _) = curl(&[&format!("{base}/api/v1/agents")]);
    assert!(!ok);
    // Plain HTTP to the TLS port fails.
    let (ok, out) = curl(&[&format!("http://127.0.0.1:{}/api/v1/agents", th.api.port())]);
    assert!(
        !ok || !out.contains("\"agents\""),
        "plain HTTP must not be served: {out}"
    );
    // The ops port speaks TLS too.
    let (ok, out) = curl(&[
        "--cacert",
        &ca,
        &format!("https://127.0.0.1:{}/healthz", th.ops.port()),
    ]);
    assert!(ok && out.contains("\"ok\":true"), "{out}");
    // TLS 1.1 is refused.
    let (ok, _) = curl(&[
        "--cacert",
        &ca,
        "--tls-max",
        "1.1",
        &format!("{base}/api/v1/agents"),
    ]);
    assert!(!ok, "TLS 1.1 must be refused");
    // The Python MCP SDK over https and a wss stream.
    let out = run_python(
        "tls_check.py",
        &[base.replace("127.0.0.1", "localhost"), ca.clone()],
    )
    .await;
    assert!(out.contains("OK"));
    // The CLI talks https to a running server: an admin command (the store is held by the
    // server, so it goes through the admin API) and the stdio bridge, trusting the test CA
    // through SSL_CERT_FILE.
    let https = format!("https://localhost:{}", th.api.port());
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(th.dir.path())
        .args([
            "keys", "create", "--role", "viewer", "--label", "over-tls", "--url", &https,
        ])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let key = printed
        .split_whitespace()
        .find(|w| w.starts_with("a2a_"))
        .unwrap_or_else(|| panic!("no key printed: {printed}"))
        .to_string();
    // (Now that a key exists, keys are required: the bridge sends it.)
    let mut bridge = tokio::process::Command::new(BIN)
        .args([
            "stdio",
            "--remote",
            &format!("{https}/mcp"),
            "--token",
            &key,
        ])
        .env("SSL_CERT_FILE", &ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let stdin = bridge.stdin.as_mut().unwrap();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"}}});
        stdin
            .write_all(format!("{init}\n").as_bytes())
            .await
            .unwrap();
    }
    let stdout = bridge.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the bridge answered within 10 s")
        .unwrap()
        .expect("a line");
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    drop(bridge);
    th.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_keeps_open_connections() {
    let pki = Pki::new();
    pki.leaf("server", "server-one", false);
    let dir = tempfile::tempdir().unwrap();
    let cert = p(&pki.path("server.pem"));
    let key = p(&pki.path("server.key"));
    let mut b = TestBinary::serve(
        dir.path(),
        &[("A2A_TLS_CERT", &cert), ("A2A_TLS_KEY", &key)],
    )
    .await;
    let ca = p(&pki.path("ca.pem"));
    let base = format!("https://127.0.0.1:{}", b.api.port());
    let subject = || {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject",
                b.api.port()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(subject().contains("server-one"));
    // A long request followed over SSE on a connection opened before the reload.
    let (ok, out) = curl(&[
        "--cacert",
        &ca,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        &json!({"input": echo_input("through the reload", 3, 700)}).to_string(),
        &format!("{base}/api/v1/agents/echo/invoke"),
    ]);
    assert!(ok, "{out}");
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    let follower = tokio::process::Command::new("curl")
        .args([
            "-sSN",
            "--max-time",
            "20",
            "--cacert",
            &ca,
            &format!("{base}/api/v1/requests/{id}/events"),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Rotate the certificate and send SIGHUP.
    pki.leaf("server", "server-two", false);
    if let Some(pid) = b.child.id() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
    let mut rotated = false;
    for _ in 0..50 {
        if subject().contains("server-two") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "new connections get the new certificate");
    let out = follower.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("event:final"),
        "the stream opened before the reload finished: {text}"
    );
    // A broken certificate file is not loaded; the server keeps the previous one.
    std::fs::write(pki.path("server.pem"), "not a certificate").unwrap();
    if let Some(pid) = b.child.id() {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(subject().contains("server-two"));
    let status = b.sigterm_and_wait().await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    pki.leaf("server", "server", false);
    pki.leaf("client", "client", true);
    let (cert, key, ca) = (
        p(&pki.path("server.pem")),
        p(&pki.path("server.key")),
        p(&pki.path("ca.pem")),
    );
    let th = TestHub::start_with(&[
        ("tls_cert", &cert),
        ("tls_key", &key),
        ("tls_client_ca", &ca),
    ])
    .await;
    let url = format!("https://127.0.0.1:{}/api/v1/agents", th.api.port());
    let (ok, _) = curl(&["--cacert", &ca, &url]);
    assert!(!ok, "no client certificate: refused");
    let (ok, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &p(&pki.path("client.pem")),
        "--key",
        &p(&pki.path("client.key")),
        &url,
    ]);
    assert!(ok && out.contains("\"agents\""), "{out}");
    th.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_configuration_stops_startup_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "nope").unwrap();
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--stream-port", "0", "--metrics-port", "0", "serve"])
        .env("A2A_BACKUP_DIR", dir.path().join("backup"))
        .env("A2A_TLS_CERT", &bogus)
        .env("A2A_TLS_KEY", &bogus)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus.pem"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["check-config"])
        .env("A2A_TLS_CERT", &bogus)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a certificate without a key is a configuration error"
    );
}
