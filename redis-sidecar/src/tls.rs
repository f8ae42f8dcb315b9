//! Optional TLS on the sidecar's listener: loading the PEM certificate chain and private key
//! into a rustls server configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`), and a
//! [`TlsListener`] that axum serves exactly like a plain `TcpListener`.
//!
//! With a client CA, clients may present a certificate (as smart-proxy's listener does, a
//! client without one still connects); a presented certificate must chain to that CA or the
//! handshake fails. The subject CN of a verified certificate reaches handlers as
//! [`ClientCertificate`]; deciding what it may do is the API's business.
//!
//! Handshakes run in their own tasks, each bounded by [`HANDSHAKE_TIMEOUT`], so a slow or
//! silent client never holds up accepting others; a connection that does not complete a TLS
//! handshake (plain HTTP included) is closed without an HTTP answer. This module must never
//! serve a byte in clear text once TLS is configured, never log key material, and never panic
//! on a bad file or a bad client (files are checked at startup as configuration errors).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Completed handshakes waiting for the server to pick them up.
const ACCEPTED_BACKLOG: usize = 64;

/// Why the TLS files could not be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("client CA file {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A loaded server configuration; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1) and checks that they belong together; with `client_ca`, client certificates
    /// chaining to one of its PEM certificates are verified and their subjects passed on.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        client_ca: Option<&Path>,
    ) -> Result<Tls, TlsError> {
        let certificate = |reason: String| TlsError::Certificate {
            path: cert_file.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(cert_file)
            .map_err(|e| certificate(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(certificate("no PEM certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| TlsError::Key {
            path: key_file.to_path_buf(),
            reason: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        // The server speaks HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// Wraps a bound listener: from now on it yields only connections that completed a TLS
    /// handshake.
    pub fn listen(&self, listener: TcpListener) -> TlsListener {
        let local = listener.local_addr();
        let acceptor = TlsAcceptor::from(Arc::clone(&self.config));
        let (tx, rx) = mpsc::channel(ACCEPTED_BACKLOG);
        let task = tokio::spawn(accept_loop(listener, acceptor, tx));
        TlsListener { rx, local, task }
    }
}

/// Verifies client certificates against the CA bundle at `path`; clients without one are
/// let through to the application, which decides (smart-proxy's listener does the same).
fn client_verifier(
    path: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let problem = |reason: String| TlsError::ClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(|e| problem(e.to_string()))? {
        roots
            .add(certificate.map_err(|e| problem(e.to_string()))?)
            .map_err(|e| problem(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(problem("no PEM certificate in the file".into()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| problem(e.to_string()))
}

/// The subject common name of the verified client certificate of a connection, if the client
/// presented one (only TLS connections with a configured client CA ever carry one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate(pub Option<String>);

impl ClientCertificate {
    /// The one CN of a DER certificate's subject; `None` when it has none, several (which one
    /// names the client would be a guess, and the filter refuses them too), one that is not
    /// text, or does not parse (the handshake already verified it).
    fn of(certificate: &[u8]) -> ClientCertificate {
        let cn = x509_parser::parse_x509_certificate(certificate)
            .ok()
            .and_then(|(_, parsed)| {
                let mut names = parsed.subject().iter_common_name();
                match (names.next(), names.next()) {
                    (Some(cn), None) => cn.as_str().ok().map(str::to_owned),
                    _ => None,
                }
            });
        ClientCertificate(cn)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientCertificate {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, session) = stream.io().get_ref();
        session
            .peer_certificates()
            .and_then(<[CertificateDer<'_>]>::first)
            .map(|certificate| ClientCertificate::of(certificate.as_ref()))
            .unwrap_or_default()
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ClientCertificate {
    fn connect_info(_: IncomingStream<'_, TcpListener>) -> Self {
        ClientCertificate(None)
    }
}

/// A listener of TLS connections, for `axum::serve`. Dropping it stops accepting and closes
/// the socket.
#[derive(Debug)]
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
    task: JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some(accepted) = self.rx.recv().await {
                return accepted;
            }
            // The accept loop ended (it only does when the socket failed for good): there is
            // nothing more to accept, so wait for the shutdown that must follow.
            tracing::error!("the TLS accept loop stopped; no more connections are accepted");
            std::future::pending::<()>().await;
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(address) => Ok(*address),
            Err(error) => Err(std::io::Error::new(error.kind(), error.to_string())),
        }
    }
}

/// Accepts TCP connections and hands each to its own handshake task.
async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    accepted: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                // As axum does for plain TCP: per-connection errors (e.g. out of file
                // descriptors) are transient; back off briefly and go on.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if accepted.is_closed() {
            return;
        }
        let acceptor = acceptor.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = accepted.send((tls, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_names: &[&str]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::OrganizationName, "ACME");
        // rcgen keeps one value per type: a second CN goes in under CN's OID (2.5.4.3) as a
        // custom type, which is the same attribute to any reader.
        for (index, cn) in common_names.iter().enumerate() {
            let kind = if index == 0 {
                rcgen::DnType::CommonName
            } else {
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 3])
            };
            name.push(kind, *cn);
        }
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("sign").der().to_vec()
    }

    #[test]
    fn a_client_is_named_by_its_one_cn() {
        assert_eq!(
            ClientCertificate::of(&certificate(&["sync-job"])),
            ClientCertificate(Some("sync-job".into()))
        );
        assert_eq!(
            ClientCertificate::of(&certificate(&[])),
            ClientCertificate(None)
        );
        assert_eq!(
            ClientCertificate::of(&certificate(&["victim", "attacker"])),
            ClientCertificate(None),
            "two CNs name nobody"
        );
        assert_eq!(ClientCertificate::of(b"not DER"), ClientCertificate(None));
    }
}
