//! TLS for both listeners (rustls, ring provider, TLS 1.2 and 1.3 only, the provider's modern
//! AEAD suites), with certificate reload and optional client-certificate verification.
//!
//! The certificate is served through a resolver whose key can be swapped: `SIGHUP` and a
//! change of the files' modification times (checked every 10 s) reload it. New handshakes use
//! the new certificate; open connections are not touched. A reload that fails (half-written
//! file, key not matching) keeps the old certificate and logs why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

const WATCH_INTERVAL: Duration = Duration::from_secs(10);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate {} is not valid PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected PEM CERTIFICATE blocks)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        format!(
            "the key {} does not fit the certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })
}

fn mtimes(paths: &[&Path]) -> Vec<Option<SystemTime>> {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// Serves the current certificate; [`Self::reload`] swaps it.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: RwLock<Vec<Option<SystemTime>>>,
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, String> {
        let key = load_key(cert_path, key_path)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(key)),
            stamps: RwLock::new(mtimes(&[cert_path, key_path])),
        }))
    }

    /// Re-reads the files; on failure the previous certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let key = load_key(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(key);
        *self.stamps.write() = mtimes(&[&self.cert_path, &self.key_path]);
        Ok(())
    }

    fn changed_on_disk(&self) -> bool {
        *self.stamps.read() != mtimes(&[&self.cert_path, &self.key_path])
    }

    /// Reloads on SIGHUP and when the files change, until `stop`.
    pub fn watch(self: &Arc<Self>, stop: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hup_fut = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hup_fut = std::future::pending::<()>();
                let reason = tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = hup_fut => "SIGHUP",
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {
                        if !me.changed_on_disk() { continue; }
                        "file change"
                    }
                };
                match me.reload() {
                    Ok(()) => {
                        tracing::info!(reason, cert = %me.cert_path.display(), "TLS certificate reloaded")
                    }
                    Err(e) => tracing::error!(
                        reason,
                        "TLS certificate not reloaded, keeping the previous one: {e}"
                    ),
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// A rustls server configuration using `cert` (and requiring client certificates signed by
/// `client_ca` when given).
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read the client CA bundle {}: {e}", ca.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "the client CA bundle {} is not valid PEM: {e}",
                        ca.display()
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "the client CA bundle {} holds no usable certificate",
                    ca.display()
                ));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client certificate verification setup failed: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
