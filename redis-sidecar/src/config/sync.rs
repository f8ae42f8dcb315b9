//! `sync` settings: the source (a file or Pulp), the sidecar to publish to and its sync
//! secret, and the guards. Parsed as text by clap and validated here in one pass that reports
//! every bad setting at once, reading every file they name (secrets, password, CA and client
//! certificate) so that a bad file is reported before anything is contacted. Secrets come
//! from files (named by flag or environment), never from the command line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rustls::ClientConfig;

use super::{number, read_secret, read_trimmed, ConfigError, Secret};
use crate::client_tls::{check_base_url, client_config, ClientIdentity};
use crate::sync_job::PulpSettings;

/// `sync` settings exactly as given; see [`SyncConfig::from_args`].
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// A JSON or YAML (`.yaml`/`.yml`) document in the Katello shapes or the native snapshot
    /// shape to publish. Excludes --from-pulp.
    #[arg(long, env = "RG_SYNC_FROM_FILE", value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Pulp's base URL (e.g. https://pulp.example.com): its container distributions and
    /// their pull roles are published. Excludes --from-file.
    #[arg(long, env = "RG_SYNC_FROM_PULP", value_name = "URL")]
    pub from_pulp: Option<String>,
    /// Pulp username for Basic authentication (with --pulp-password-file) [default: none].
    #[arg(long, env = "RG_PULP_USERNAME")]
    pub pulp_username: Option<String>,
    /// File holding the Pulp password (trailing newline removed).
    #[arg(long, env = "RG_PULP_PASSWORD_FILE", value_name = "PATH")]
    pub pulp_password_file: Option<PathBuf>,
    /// PEM CA certificate(s) Pulp's server certificate must chain to [default: the system
    /// trust store].
    #[arg(long, env = "RG_PULP_CA_FILE", value_name = "PATH")]
    pub pulp_ca_file: Option<PathBuf>,
    /// PEM client certificate chain presented to Pulp [default: none].
    #[arg(long, env = "RG_PULP_CLIENT_CERT_FILE", value_name = "PATH")]
    pub pulp_client_cert_file: Option<PathBuf>,
    /// PEM private key of --pulp-client-cert-file.
    #[arg(long, env = "RG_PULP_CLIENT_KEY_FILE", value_name = "PATH")]
    pub pulp_client_key_file: Option<PathBuf>,
    /// The sidecar whose `PUT /v1/snapshot` publishes.
    #[arg(long, env = "RG_SIDECAR_URL", default_value = "http://127.0.0.1:8081")]
    pub sidecar_url: String,
    /// PEM CA certificate(s) an https sidecar's certificate must chain to [default: the
    /// system trust store].
    #[arg(long, env = "RG_SIDECAR_CA_FILE", value_name = "PATH")]
    pub sidecar_ca_file: Option<PathBuf>,
    /// File holding the sidecar's sync secret (the one `serve` reads). Required.
    #[arg(long, env = "RG_SYNC_SECRET_FILE", value_name = "PATH")]
    pub sync_secret_file: Option<PathBuf>,
    /// Refuse to publish (exit 3) when more than this percentage of the published
    /// repositories would disappear (0..=100; 100 never refuses).
    #[arg(long, env = "RG_SYNC_MAX_SHRINK_PERCENT", default_value = "50")]
    pub max_shrink_percent: String,
    /// Publish even when the shrink guard refuses, or when the source has no repository.
    #[arg(long)]
    pub force: bool,
    /// Print what would change and publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Bound on connecting and on each request to Pulp and to the sidecar, in milliseconds
    /// (1..=600000).
    #[arg(long, env = "RG_SYNC_TIMEOUT_MS", default_value = "30000")]
    pub timeout_ms: String,
}

/// Where the job reads what to publish.
#[derive(Debug, Clone)]
pub enum SyncSource {
    File(PathBuf),
    Pulp(PulpSettings),
}

/// Validated `sync` settings.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub source: SyncSource,
    /// Base URL without a trailing slash.
    pub sidecar_url: String,
    pub sidecar_tls: Arc<ClientConfig>,
    pub sync_secret: Secret,
    pub max_shrink_percent: u8,
    pub force: bool,
    pub dry_run: bool,
    pub timeout: Duration,
}

impl SyncConfig {
    /// Validates every setting, reading the files they name, and reports all problems.
    pub fn from_args(args: &SyncArgs) -> Result<SyncConfig, ConfigError> {
        let mut problems = Vec::new();
        let timeout = number(
            &mut problems,
            "--timeout-ms/RG_SYNC_TIMEOUT_MS",
            &args.timeout_ms,
            1,
            600_000,
        )
        .map(Duration::from_millis);
        let shrink = number(
            &mut problems,
            "--max-shrink-percent/RG_SYNC_MAX_SHRINK_PERCENT",
            &args.max_shrink_percent,
            0,
            100,
        )
        .and_then(|n| u8::try_from(n).ok());
        let sync_secret = match &args.sync_secret_file {
            None => {
                problems.push("--sync-secret-file/RG_SYNC_SECRET_FILE is required".into());
                None
            }
            Some(path) => read_secret(path)
                .map_err(|e| problems.push(format!("--sync-secret-file/RG_SYNC_SECRET_FILE {e}")))
                .ok(),
        };
        let sidecar_url = args.sidecar_url.trim_end_matches('/').to_owned();
        if let Err(reason) = check_base_url(&sidecar_url) {
            problems.push(format!(
                "--sidecar-url/RG_SIDECAR_URL {sidecar_url:?}: {reason}"
            ));
        }
        let sidecar_tls = tls_for(
            &mut problems,
            "--sidecar-ca-file/RG_SIDECAR_CA_FILE",
            &sidecar_url,
            args.sidecar_ca_file.as_deref(),
            None,
        );
        let source = source(args, &mut problems, timeout);
        match (source, sidecar_tls, sync_secret, shrink, timeout) {
            (
                Some(source),
                Some(sidecar_tls),
                Some(sync_secret),
                Some(max_shrink_percent),
                Some(timeout),
            ) if problems.is_empty() => Ok(SyncConfig {
                source,
                sidecar_url,
                sidecar_tls,
                sync_secret,
                max_shrink_percent,
                force: args.force,
                dry_run: args.dry_run,
                timeout,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// `--from-file` or `--from-pulp` with its credentials.
fn source(
    args: &SyncArgs,
    problems: &mut Vec<String>,
    timeout: Option<Duration>,
) -> Option<SyncSource> {
    let pulp_only = [
        (
            "--pulp-username/RG_PULP_USERNAME",
            args.pulp_username.is_some(),
        ),
        (
            "--pulp-password-file/RG_PULP_PASSWORD_FILE",
            args.pulp_password_file.is_some(),
        ),
        (
            "--pulp-ca-file/RG_PULP_CA_FILE",
            args.pulp_ca_file.is_some(),
        ),
        (
            "--pulp-client-cert-file/RG_PULP_CLIENT_CERT_FILE",
            args.pulp_client_cert_file.is_some(),
        ),
        (
            "--pulp-client-key-file/RG_PULP_CLIENT_KEY_FILE",
            args.pulp_client_key_file.is_some(),
        ),
    ];
    match (&args.from_file, &args.from_pulp) {
        (None, None) => {
            problems.push(
                "give a source: --from-file/RG_SYNC_FROM_FILE or --from-pulp/RG_SYNC_FROM_PULP"
                    .into(),
            );
            None
        }
        (Some(_), Some(_)) => {
            problems.push(
                "--from-file/RG_SYNC_FROM_FILE and --from-pulp/RG_SYNC_FROM_PULP exclude each \
                 other"
                    .into(),
            );
            None
        }
        (Some(path), None) => {
            for (flag, given) in pulp_only {
                if given {
                    problems.push(format!("{flag} needs --from-pulp/RG_SYNC_FROM_PULP"));
                }
            }
            Some(SyncSource::File(path.clone()))
        }
        (None, Some(url)) => pulp(args, url, problems, timeout).map(SyncSource::Pulp),
    }
}

fn pulp(
    args: &SyncArgs,
    url: &str,
    problems: &mut Vec<String>,
    timeout: Option<Duration>,
) -> Option<PulpSettings> {
    let url = url.trim_end_matches('/').to_owned();
    if let Err(reason) = check_base_url(&url) {
        problems.push(format!("--from-pulp/RG_SYNC_FROM_PULP {url:?}: {reason}"));
    }
    let basic = match (&args.pulp_username, &args.pulp_password_file) {
        (None, None) => Some(None),
        (Some(username), Some(path)) => read_password(path)
            .map(|password| Some((username.clone(), password)))
            .map_err(|e| problems.push(format!("--pulp-password-file/RG_PULP_PASSWORD_FILE {e}")))
            .ok(),
        _ => {
            problems.push(
                "--pulp-username/RG_PULP_USERNAME and --pulp-password-file/RG_PULP_PASSWORD_FILE \
                 go together"
                    .into(),
            );
            None
        }
    };
    let identity = match (&args.pulp_client_cert_file, &args.pulp_client_key_file) {
        (None, None) => Some(None),
        (Some(cert_file), Some(key_file)) => Some(Some(ClientIdentity {
            cert_file,
            key_file,
        })),
        _ => {
            problems.push(
                "--pulp-client-cert-file/RG_PULP_CLIENT_CERT_FILE and \
                 --pulp-client-key-file/RG_PULP_CLIENT_KEY_FILE go together"
                    .into(),
            );
            None
        }
    };
    if let (Some(None), Some(None)) = (&basic, &identity) {
        problems.push(
            "--from-pulp/RG_SYNC_FROM_PULP needs credentials: --pulp-username with \
             --pulp-password-file, or a client certificate"
                .into(),
        );
    }
    let tls = tls_for(
        problems,
        "--pulp-ca-file/--pulp-client-cert-file",
        &url,
        args.pulp_ca_file.as_deref(),
        identity.flatten(),
    );
    Some(PulpSettings {
        url,
        tls: tls?,
        basic: basic?,
        timeout: timeout?,
    })
}

/// The TLS client configuration for `url`: the CA file (else the system trust store) and the
/// identity; a plain-http URL with neither needs no trust store at all.
fn tls_for(
    problems: &mut Vec<String>,
    flags: &str,
    url: &str,
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Option<Arc<ClientConfig>> {
    let plain = url.starts_with("http://") && ca_file.is_none() && identity.is_none();
    let built = if plain {
        crate::client_tls::plain_http()
    } else {
        client_config(ca_file, identity)
    };
    built
        .map_err(|errors| {
            problems.extend(errors.iter().map(|e| format!("{flags}: {e}")));
        })
        .ok()
}

/// A password file: its content less trailing line breaks; never empty.
fn read_password(path: &Path) -> Result<Secret, String> {
    let bytes = read_trimmed(path)?;
    if bytes.is_empty() {
        return Err(format!("{}: the file is empty", path.display()));
    }
    Ok(Secret(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> SyncArgs {
        let mut argv = vec!["registry-gate-sidecar", "sync"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Sync(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "short\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let short = short.display().to_string();
        let empty = empty.display().to_string();
        struct Row {
            case: &'static str,
            args: Vec<&'static str>,
            problems: &'static [&'static str],
        }
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let rows = [
            Row {
                case: "nothing given",
                args: vec![],
                problems: &[
                    "--sync-secret-file/RG_SYNC_SECRET_FILE is required",
                    "give a source",
                ],
            },
            Row {
                case: "both sources, bad numbers, a short secret",
                args: vec![
                    "--from-file",
                    "x.json",
                    "--from-pulp",
                    "https://pulp",
                    "--sync-secret-file",
                    leak(short.clone()),
                    "--max-shrink-percent",
                    "101",
                    "--timeout-ms",
                    "soon",
                ],
                problems: &[
                    "--timeout-ms",
                    "--max-shrink-percent",
                    "at least 16 bytes",
                    "exclude each other",
                ],
            },
            Row {
                case: "Pulp flags with a file, a bad sidecar URL",
                args: vec![
                    "--from-file",
                    "x.json",
                    "--pulp-username",
                    "admin",
                    "--sidecar-url",
                    "ftp://sidecar",
                    "--sync-secret-file",
                    leak(short.clone()),
                ],
                problems: &[
                    "at least 16 bytes",
                    "--sidecar-url/RG_SIDECAR_URL",
                    "--pulp-username/RG_PULP_USERNAME needs --from-pulp",
                ],
            },
            Row {
                case: "Pulp without credentials",
                args: vec![
                    "--from-pulp",
                    "http://pulp",
                    "--sync-secret-file",
                    leak(short.clone()),
                ],
                problems: &["at least 16 bytes", "needs credentials"],
            },
            Row {
                case: "Pulp half credentials and an empty password",
                args: vec![
                    "--from-pulp",
                    "http://pulp",
                    "--pulp-client-cert-file",
                    "c.pem",
                    "--pulp-username",
                    "admin",
                    "--pulp-password-file",
                    leak(empty.clone()),
                    "--sync-secret-file",
                    leak(short.clone()),
                ],
                problems: &["at least 16 bytes", "the file is empty", "go together"],
            },
        ];
        for row in rows {
            let error = SyncConfig::from_args(&parse(&row.args)).unwrap_err();
            assert_eq!(
                error.problems.len(),
                row.problems.len(),
                "{}: {error}",
                row.case
            );
            for (problem, needle) in error.problems.iter().zip(row.problems) {
                assert!(
                    problem.contains(needle),
                    "{}: {problem:?} lacks {needle:?}",
                    row.case
                );
            }
            assert!(
                !error.to_string().contains("short\n"),
                "{}: secret echoed",
                row.case
            );
        }
    }

    #[test]
    fn defaults_and_a_pulp_source() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef0123\n").unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "pw with space\n").unwrap();
        let config = SyncConfig::from_args(&parse(&[
            "--from-pulp",
            "http://pulp.example.com:24817/",
            "--pulp-username",
            "admin",
            "--pulp-password-file",
            password.to_str().unwrap(),
            "--sync-secret-file",
            secret.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(config.sidecar_url, "http://127.0.0.1:8081");
        assert_eq!(config.max_shrink_percent, 50);
        assert_eq!(config.timeout, Duration::from_secs(30));
        assert!(!config.force && !config.dry_run);
        assert_eq!(config.sync_secret.0, b"0123456789abcdef0123");
        let SyncSource::Pulp(pulp) = config.source else {
            panic!("not a Pulp source");
        };
        assert_eq!(pulp.url, "http://pulp.example.com:24817");
        let (user, password) = pulp.basic.unwrap();
        assert_eq!(
            (user.as_str(), password.0.as_slice()),
            ("admin", &b"pw with space"[..])
        );
    }
}
