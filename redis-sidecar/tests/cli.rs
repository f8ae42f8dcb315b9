//! The built binary: `keygen`, exit code 2 with every bad setting listed, environment
//! variables, and a graceful stop on SIGTERM.

// A test crate: its helper functions fail loudly too (clippy.toml covers only `#[test]`s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/harness.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Redis, DEADLINE};
use registry_gate_sidecar::keys::KeyAlgorithm;

const BINARY: &str = env!("CARGO_BIN_EXE_registry-gate-sidecar");

#[test]
fn keygen_writes_a_private_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.pem");
    let output = Command::new(BINARY)
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = registry_gate_sidecar::keys::SigningKey::load(&path, None).unwrap();
    assert_eq!(key.algorithm(), KeyAlgorithm::ES256, "the default");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(key.kid()), "{stdout}");
    assert!(stdout.contains("ES256 key"), "{stdout}");

    let again = Command::new(BINARY)
        .args(["keygen", "--algorithm", "EdDSA", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), pem, "unchanged");
}

#[test]
fn keygen_takes_the_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    for (name, algorithm) in [
        ("ES256", KeyAlgorithm::ES256),
        ("EdDSA", KeyAlgorithm::EdDSA),
    ] {
        let path = dir.path().join(format!("{name}.pem"));
        let output = Command::new(BINARY)
            .args(["keygen", "--algorithm", name, "--out"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let key = registry_gate_sidecar::keys::SigningKey::load(&path, None).unwrap();
        assert_eq!(key.algorithm(), algorithm, "{name}");
        // An Ed25519 key can be a publisher key: keygen prints its public half, as the
        // filters' `publisher_keys` name it.
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        let shown = printed
            .lines()
            .find_map(|line| line.strip_prefix("publisher key: "));
        match key.publisher() {
            Some(publisher) => {
                assert_eq!(
                    shown,
                    Some(publisher.public().to_string().as_str()),
                    "{printed}"
                );
            }
            None => assert_eq!(shown, None, "{printed}"),
        }
    }
    let path = dir.path().join("rsa.pem");
    let output = Command::new(BINARY)
        .args(["keygen", "--algorithm", "RS256", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("[possible values: ES256, EdDSA]"),
        "{stderr}"
    );
    assert!(!path.exists(), "nothing written");

    let help = Command::new(BINARY)
        .args(["keygen", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: ES256]"), "{help}");
}

#[test]
fn bad_configuration_exits_2_listing_every_problem() {
    let output = Command::new(BINARY)
        .arg("serve")
        .env("RG_REDIS_POOL_SIZE", "lots")
        .env("RG_TOKEN_TTL_SECS", "5")
        .env("RG_LISTEN", "not-an-address")
        .env_remove("RG_SIGNING_KEY")
        .env_remove("RG_SYNC_SECRET_FILE")
        .env_remove("RG_READ_SECRET_FILE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "RG_REDIS_POOL_SIZE",
        "RG_TOKEN_TTL_SECS",
        "RG_LISTEN",
        "RG_SIGNING_KEY is required",
        "RG_SYNC_SECRET_FILE is required",
        "RG_READ_SECRET_FILE is required",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    assert!(Command::new(BINARY)
        .args(["keygen", "--out"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let publisher = dir.path().join("publisher.pem");
    assert!(Command::new(BINARY)
        .args(["keygen", "--algorithm", "EdDSA", "--out"])
        .arg(&publisher)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "a-long-enough-sync-secret\n").unwrap();
    let read_secret = dir.path().join("read-secret");
    std::fs::write(&read_secret, "a-long-enough-read-secret\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BINARY)
        .arg("serve")
        .env("RG_LISTEN", format!("127.0.0.1:{port}"))
        .env("RG_REDIS_URL", redis.url())
        .env("RG_SIGNING_KEY", &key)
        .env("RG_PUBLISHER_KEY", &publisher)
        .env("RG_SYNC_SECRET_FILE", &secret)
        .env("RG_READ_SECRET_FILE", &read_secret)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            if response.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(started.elapsed() < DEADLINE, "sidecar never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < DEADLINE, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
