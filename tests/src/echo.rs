//! An upstream that echoes what reached it: every request is answered `200` with its request
//! head (header lines, lower-cased) as the body, one request per connection. Tests put it in
//! the registry's place to see exactly which headers Envoy forwarded.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;

use crate::http::{HttpVersion, Request};

/// Starts the echo upstream on a free loopback port; it runs until the test process ends.
pub fn start() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|err| panic!("bind the echo upstream: {err}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|err| panic!("echo upstream address: {err}"))
        .port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let mut head = String::new();
            let mut reader = BufReader::new(read_half);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{head}",
                head.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

/// The lines of an echoed `head` for header `name` (lower-case).
pub fn header_lines<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}:");
    head.lines()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

/// An anonymous public pull through the Envoy at `base` (trusting `ca`) whose client claims to
/// be alice reaches the echo upstream as `anonymous`, its claim replaced.
pub fn assert_forged_identity_becomes_anonymous(base: &str, ca: &Path, version: HttpVersion) {
    let resp = Request::get(format!("{base}/v2/library/public/tags/list"))
        .version(version)
        .cacert(ca)
        .header("x-registry-gate-identity", "user:alice")
        .send_ok();
    assert_eq!(
        header_lines(&resp.text(), "x-registry-gate-identity"),
        ["x-registry-gate-identity: anonymous"],
        "anonymous public pull claiming alice, {version}: {}",
        resp.summary()
    );
}
