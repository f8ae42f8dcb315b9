//! HTTP requests through real curl: what a client on the wire does, over HTTP/1.1 or HTTP/2
//! (ALPN over TLS), against Envoy's listener, its admin port and the sidecar.
//!
//! A transport failure (refused, reset, TLS error, timeout) is an `Err` with curl's message;
//! any HTTP status is an `Ok(Response)`. It must never follow redirects or normalise the path
//! unless asked: tests need to see exactly what the gateway answered.

use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The protocol curl is told to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http1,
    Http2,
}

impl HttpVersion {
    /// Both, for scenarios that must hold over either protocol.
    pub const ALL: [HttpVersion; 2] = [HttpVersion::Http1, HttpVersion::Http2];

    fn curl_flag(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "--http1.1",
            HttpVersion::Http2 => "--http2",
        }
    }

    /// What curl's `%{http_version}` reports for this protocol.
    pub fn wire_name(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }
}

impl std::fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HttpVersion::Http1 => "HTTP/1.1",
            HttpVersion::Http2 => "HTTP/2",
        })
    }
}

/// Credentials a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

#[derive(Debug, Clone)]
pub struct Request {
    url: String,
    method: String,
    version: Option<HttpVersion>,
    /// Header values as bytes: tests send values that are not UTF-8.
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    cacert: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    client_cert: Option<(PathBuf, PathBuf)>,
    path_as_is: bool,
    timeout: Duration,
}

impl Request {
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }

    pub fn new(method: &str, url: impl Into<String>) -> Request {
        Request {
            url: url.into(),
            method: method.to_owned(),
            version: None,
            headers: Vec::new(),
            body: None,
            cacert: None,
            client_cert: None,
            path_as_is: false,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn version(mut self, version: HttpVersion) -> Request {
        self.version = Some(version);
        self
    }

    pub fn header(self, name: &str, value: &str) -> Request {
        self.header_bytes(name, value.as_bytes())
    }

    /// A header whose value is sent exactly as these bytes (curl passes them through).
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Request {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    pub fn auth(self, auth: Auth<'_>) -> Request {
        match auth {
            Auth::Anonymous => self,
            Auth::Basic(user, password) => {
                use base64::Engine as _;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                self.header("Authorization", &format!("Basic {encoded}"))
            }
            Auth::Bearer(token) => self.header("Authorization", &format!("Bearer {token}")),
        }
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    pub fn cacert(mut self, path: &Path) -> Request {
        self.cacert = Some(path.to_path_buf());
        self
    }

    /// Present this client certificate (`--cert`, `--key`).
    pub fn client_cert(mut self, cert: &Path, key: &Path) -> Request {
        self.client_cert = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Send `..` and `//` exactly as written (curl squashes dot segments by default).
    pub fn path_as_is(mut self) -> Request {
        self.path_as_is = true;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = timeout;
        self
    }

    /// Runs curl. `Err` only when no HTTP response arrived.
    pub fn send(&self) -> Result<Response, String> {
        let scratch = tempfile::tempdir().map_err(|err| format!("temp dir for curl: {err}"))?;
        let headers_file = scratch.path().join("headers");
        let body_file = scratch.path().join("body");
        let mut cmd = Command::new(crate::paths::curl());
        cmd.arg("--silent")
            .arg("--show-error")
            .arg("--max-time")
            .arg(format!("{:.3}", self.timeout.as_secs_f64()))
            .arg("--request")
            .arg(&self.method)
            .arg("--dump-header")
            .arg(&headers_file)
            .arg("--output")
            .arg(&body_file)
            .arg("--write-out")
            .arg("%{http_code} %{http_version}");
        if let Some(version) = self.version {
            cmd.arg(version.curl_flag());
        }
        if let Some(cacert) = &self.cacert {
            cmd.arg("--cacert").arg(cacert);
        }
        if let Some((cert, key)) = &self.client_cert {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if self.path_as_is {
            cmd.arg("--path-as-is");
        }
        for (name, value) in &self.headers {
            let mut line = format!("{name}: ").into_bytes();
            line.extend_from_slice(value);
            cmd.arg("--header").arg(std::ffi::OsString::from_vec(line));
        }
        if let Some(body) = &self.body {
            let body_in = scratch.path().join("request-body");
            std::fs::write(&body_in, body).map_err(|err| format!("write request body: {err}"))?;
            cmd.arg("--data-binary")
                .arg(format!("@{}", body_in.display()));
        }
        cmd.arg("--").arg(&self.url);
        let output = cmd
            .output()
            .map_err(|err| format!("run curl for {} {}: {err}", self.method, self.url))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let mut written = stdout.split_whitespace();
        let status: u16 = written.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let http_version = written.next().unwrap_or("").to_owned();
        if !output.status.success() || status == 0 {
            return Err(format!(
                "curl {} {} failed ({}): {}",
                self.method,
                self.url,
                output.status,
                stderr.trim()
            ));
        }
        let raw_headers = std::fs::read(&headers_file).unwrap_or_default();
        let body = std::fs::read(&body_file).unwrap_or_default();
        Ok(Response {
            status,
            http_version,
            headers: parse_last_header_block(&String::from_utf8_lossy(&raw_headers)),
            body,
        })
    }

    /// [`Request::send`], panicking on a transport failure.
    pub fn send_ok(&self) -> Response {
        self.send().unwrap_or_else(|err| panic!("{err}"))
    }
}

/// Header names lower-cased, from the final response (after any `100 Continue`).
fn parse_last_header_block(raw: &str) -> Vec<(String, String)> {
    let normalized = raw.replace("\r\n", "\n");
    let block = normalized
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    block
        .lines()
        .skip(1) // status line
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// As curl reports it: `1.1` or `2`.
    pub http_version: String,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "response body is not JSON ({err}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// One line for assertion messages.
    pub fn summary(&self) -> String {
        let text = self.text();
        let mut body: String = text.chars().take(600).collect();
        if body.len() < text.len() {
            body.push('…');
        }
        format!(
            "HTTP/{} {} headers={:?} body={body:?}",
            self.http_version, self.status, self.headers
        )
    }
}
