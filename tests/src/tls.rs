//! Runtime TLS material: a throwaway CA, a server certificate for `127.0.0.1` and
//! `localhost` and a client certificate (for mutual TLS, e.g. the sidecar calling the Katello
//! stand-in), both signed by it.
//!
//! The CA certificate is written as `ca.crt` into a directory of its own, the layout that
//! `skopeo --src-cert-dir`, `podman --cert-dir` (containers/image: `*.crt` are CAs) and
//! `curl --cacert <dir>/ca.crt` accept. The server key never leaves the scenario directory.
//!
//! [`generate_with_clients`] also issues client certificates from the same CA (for mutual TLS,
//! e.g. Foreman's certificate towards a smart proxy): `clients/<cn>.crt` and `.key`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

#[derive(Debug, Clone)]
pub struct Tls {
    /// Directory holding only `ca.crt`: pass it as a containers/image cert dir.
    pub cert_dir: PathBuf,
    /// `<cert_dir>/ca.crt`, for `curl --cacert`.
    pub ca_cert: PathBuf,
    /// PEM server certificate (leaf) for Envoy.
    pub server_cert: PathBuf,
    /// PEM PKCS#8 server key for Envoy.
    pub server_key: PathBuf,
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}

/// A client certificate issued by the scenario's CA.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The subject CN.
    pub cn: String,
    /// PEM certificate (leaf).
    pub cert: PathBuf,
    /// PEM PKCS#8 key.
    pub key: PathBuf,
}

/// Generates the CA and the server certificate under `dir` (`dir/certs/ca.crt`,
/// `dir/server.crt`, `dir/server.key`).
pub fn generate(dir: &Path) -> Tls {
    generate_with_clients(dir, &[]).0
}

/// [`generate`], plus one client certificate (`clientAuth`) per CN in `client_cns`, in
/// `dir/clients/<cn>.crt` and `dir/clients/<cn>.key`, in the order given.
pub fn generate_with_clients(dir: &Path, client_cns: &[&str]) -> (Tls, Vec<ClientCert>) {
    let cert_dir = dir.join("certs");
    std::fs::create_dir_all(&cert_dir)
        .unwrap_or_else(|err| panic!("create {}: {err}", cert_dir.display()));

    let ca_key = KeyPair::generate().unwrap_or_else(|err| panic!("CA key: {err}"));
    let mut ca_params = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "registry-gate test CA");
    ca_params.distinguished_name = ca_name;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .unwrap_or_else(|err| panic!("self-sign CA: {err}"));

    let server_key = KeyPair::generate().unwrap_or_else(|err| panic!("server key: {err}"));
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "localhost");
    params.distinguished_name = name;
    params.subject_alt_names = vec![
        SanType::DnsName(
            "localhost"
                .to_owned()
                .try_into()
                .unwrap_or_else(|err| panic!("SAN localhost: {err}")),
        ),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    ];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .unwrap_or_else(|err| panic!("sign server certificate: {err}"));

    let tls = Tls {
        ca_cert: cert_dir.join("ca.crt"),
        cert_dir,
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    write(&tls.ca_cert, &ca_cert.pem());
    write(&tls.server_cert, &server_cert.pem());
    write(&tls.server_key, &server_key.serialize_pem());

    let clients_dir = dir.join("clients");
    let clients = client_cns
        .iter()
        .map(|cn| {
            std::fs::create_dir_all(&clients_dir)
                .unwrap_or_else(|err| panic!("create {}: {err}", clients_dir.display()));
            let key = KeyPair::generate().unwrap_or_else(|err| panic!("client key {cn}: {err}"));
            let mut params = CertificateParams::default();
            let mut name = DistinguishedName::new();
            name.push(DnType::CommonName, *cn);
            params.distinguished_name = name;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params
                .signed_by(&key, &ca_cert, &ca_key)
                .unwrap_or_else(|err| panic!("sign client certificate {cn}: {err}"));
            let client = ClientCert {
                cn: (*cn).to_owned(),
                cert: clients_dir.join(format!("{cn}.crt")),
                key: clients_dir.join(format!("{cn}.key")),
            };
            write(&client.cert, &cert.pem());
            write(&client.key, &key.serialize_pem());
            client
        })
        .collect();
    (tls, clients)
}
