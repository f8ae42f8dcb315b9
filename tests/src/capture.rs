//! A capturing HTTP/1.1 server on loopback: records every request it gets (method, target,
//! headers, body bytes) and answers each with what the test's reply function says.
//!
//! It stands in for a server that a component under test calls, so a test can assert the
//! exact bytes on the wire. It understands only what such callers send: one request per
//! connection or keep-alive requests with `Content-Length` bodies (no chunked bodies), and it
//! answers with `Connection: close`. It must never be used where a real server is available.
//! [`CaptureServer::concurrent`] serves each connection on its own thread, for callers that
//! need many answers in flight at once.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// One request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRequest {
    pub method: String,
    /// The request target exactly as sent (path and query).
    pub target: String,
    /// Header names as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CapturedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Wait this long before sending the body's last byte: the answer stays in flight.
    pub stall: Option<Duration>,
}

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            content_type: None,
            body: Vec::new(),
            stall: None,
        }
    }

    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: Some("application/json".to_owned()),
            body: body.as_bytes().to_vec(),
            stall: None,
        }
    }

    /// This reply, its last byte sent only after `stall`.
    pub fn stalled(self, stall: Duration) -> Reply {
        Reply {
            stall: Some(stall),
            ..self
        }
    }
}

type ReplyFn = Box<dyn Fn(&CapturedRequest) -> Reply + Send>;

/// The running server; it stops when dropped.
pub struct CaptureServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<CapturedRequest>>>,
    reply: Arc<Mutex<ReplyFn>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for CaptureServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl CaptureServer {
    /// Listens on a free loopback port and answers every request with `reply(request)`, one
    /// connection after the other.
    pub fn start(reply: impl Fn(&CapturedRequest) -> Reply + Send + 'static) -> CaptureServer {
        CaptureServer::listen(reply, false)
    }

    /// Like [`CaptureServer::start`], serving every connection on a thread of its own.
    pub fn concurrent(reply: impl Fn(&CapturedRequest) -> Reply + Send + 'static) -> CaptureServer {
        CaptureServer::listen(reply, true)
    }

    fn listen(
        reply: impl Fn(&CapturedRequest) -> Reply + Send + 'static,
        concurrent: bool,
    ) -> CaptureServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("capture server: bind 127.0.0.1:0: {err}"));
        let port = listener.local_addr().expect("bound listener").port();
        let server = CaptureServer {
            port,
            requests: Arc::default(),
            reply: Arc::new(Mutex::new(Box::new(reply))),
            stop: Arc::default(),
        };
        let (requests, reply, stop) = (
            Arc::clone(&server.requests),
            Arc::clone(&server.reply),
            Arc::clone(&server.stop),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                if concurrent {
                    let (requests, reply) = (Arc::clone(&requests), Arc::clone(&reply));
                    std::thread::spawn(move || {
                        if let Err(err) = serve(stream, &requests, &reply) {
                            eprintln!("[capture] connection ended: {err}");
                        }
                    });
                } else if let Err(err) = serve(stream, &requests, &reply) {
                    eprintln!("[capture] connection ended: {err}");
                }
            }
        });
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers from now on with `reply(request)`.
    pub fn set_reply(&self, reply: impl Fn(&CapturedRequest) -> Reply + Send + 'static) {
        *self.reply.lock().unwrap_or_else(PoisonError::into_inner) = Box::new(reply);
    }

    /// The requests received since the last call, oldest first.
    pub fn take(&self) -> Vec<CapturedRequest> {
        std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(
            &(Ipv4Addr::LOCALHOST, self.port).into(),
            Duration::from_millis(200),
        );
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<CapturedRequest>>,
    reply: &Mutex<ReplyFn>,
) -> Result<(), String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Ok(()); // a bare connect (readiness probe, or the wake-up on drop)
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).map_err(|e| e.to_string())?;
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("bad header line {header:?}"))?;
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let mut request = CapturedRequest {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let length: usize = request
        .header("content-length")
        .map(|v| v.parse().map_err(|e| format!("content-length {v:?}: {e}")))
        .transpose()?
        .unwrap_or(0);
    request.body = vec![0; length];
    reader
        .read_exact(&mut request.body)
        .map_err(|e| e.to_string())?;

    let answer = (reply.lock().unwrap_or_else(PoisonError::into_inner))(&request);
    requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request);
    let mut out = format!(
        "HTTP/1.1 {} Capture\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    if let Some(content_type) = &answer.content_type {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str("\r\n");
    let mut stream = stream;
    let (body, last) = match answer.stall {
        Some(_) if !answer.body.is_empty() => answer.body.split_at(answer.body.len() - 1),
        _ => (answer.body.as_slice(), &[][..]),
    };
    stream
        .write_all(out.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| e.to_string())?;
    if let Some(stall) = answer.stall {
        std::thread::sleep(stall);
    }
    stream.write_all(last).map_err(|e| e.to_string())
}
