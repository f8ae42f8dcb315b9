//! TLS for the sidecar's outbound HTTPS clients (Katello for logins, Pulp and the sidecar for
//! the sync job): the trust roots (a PEM CA file, else the system trust store) and an optional
//! client certificate, built into one rustls client configuration (ring provider, ALPN
//! `http/1.1`).
//!
//! It only reads files; it must never contact anything, and never print key material in an
//! error (errors name the file and what is wrong with it).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// The client certificate and key presented to a server.
#[derive(Debug, Clone, Copy)]
pub struct ClientIdentity<'a> {
    pub cert_file: &'a Path,
    pub key_file: &'a Path,
}

/// Why a client TLS configuration could not be built; every variant names the file at fault.
#[derive(Debug, Error)]
pub enum ClientTlsError {
    #[error("{path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("{0}")]
    Identity(String),
    #[error("the system trust store has no usable certificate: {0}")]
    SystemRoots(String),
}

/// A reqwest client builder over `tls`, bounded by `timeout` (connecting and each whole
/// request), that never follows a redirect (it would carry credentials elsewhere).
pub fn http_client(tls: &ClientConfig, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("registry-gate-sidecar/", env!("CARGO_PKG_VERSION")))
}

/// Checks a server's base URL: http or https, without credentials, query or fragment (a
/// path is allowed). The reason when it is not.
pub fn check_base_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if !matches!(parsed.scheme(), "https" | "http") => {
            Err("expected an https:// (or http://) URL".into())
        }
        Ok(parsed) if parsed.query().is_some() || parsed.fragment().is_some() => {
            Err("must not have a query or fragment".into())
        }
        Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            Err("must not carry credentials".into())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// The configuration trusting `ca_file` (else the system trust store) and presenting
/// `identity`; every problem found is reported.
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<Arc<ClientConfig>, Vec<ClientTlsError>> {
    let mut problems = Vec::new();
    let roots = roots(ca_file).map_err(|e| problems.push(e)).ok();
    let identity = match identity.map(read_identity).transpose() {
        Ok(identity) => Some(identity),
        Err(e) => {
            problems.push(ClientTlsError::Identity(e));
            None
        }
    };
    let (Some(roots), Some(identity)) = (roots, identity) else {
        return Err(problems);
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![ClientTlsError::Identity(e.to_string())])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| vec![ClientTlsError::Identity(e.to_string())])?,
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// A configuration for a client that only ever speaks plain http (reqwest still wants one):
/// it trusts nothing, so no https server can be reached with it.
pub fn plain_http() -> Result<Arc<ClientConfig>, Vec<ClientTlsError>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| vec![ClientTlsError::Identity(e.to_string())])?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, ClientTlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca = |reason: String| ClientTlsError::Ca {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca(e.to_string()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ca("no usable PEM certificate in the file".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                let reason = found
                    .errors
                    .first()
                    .map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(ClientTlsError::SystemRoots(reason));
            }
        }
    }
    Ok(store)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_identity(files: ClientIdentity<'_>) -> Result<Identity, String> {
    let chain = CertificateDer::pem_file_iter(files.cert_file)
        .map_err(|e| format!("{}: {e}", files.cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", files.cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no PEM certificate in the file",
            files.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(files.key_file)
        .map_err(|e| format!("{}: {e}", files.key_file.display()))?;
    Ok((chain, key))
}
