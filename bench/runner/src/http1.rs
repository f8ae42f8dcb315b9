//! A minimal HTTP/1.1 keep-alive client over one TCP connection, for measurements that time
//! every request (curl's process start would dwarf a sub-millisecond answer) or send a large
//! body without copying it to a file first.
//!
//! It speaks only what the bench's servers answer: a status line, headers, and a body framed by
//! `Content-Length` (no chunked encoding, no 1xx, no redirects). Anything else is an error,
//! never a guess.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest response head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;

/// A response: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection to `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Connection {
    pub fn open(port: u16, timeout: Duration) -> Result<Connection, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .map_err(|err| format!("connect 127.0.0.1:{port}: {err}"))?;
        stream
            .set_nodelay(true)
            .and_then(|()| stream.set_read_timeout(Some(timeout)))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|err| format!("socket options: {err}"))?;
        Ok(Connection {
            reader: BufReader::new(stream),
            port,
        })
    }

    /// Sends one request and reads its response. `headers` are `(name, value)` pairs.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .map_err(|err| format!("{method} {path}: send: {err}"))?;
        let mut head = Vec::new();
        loop {
            let before = head.len();
            let read = self
                .reader
                .read_until(b'\n', &mut head)
                .map_err(|err| format!("{method} {path}: read: {err}"))?;
            if read == 0 {
                return Err(format!("{method} {path}: connection closed"));
            }
            if head.len() > MAX_HEAD {
                return Err(format!(
                    "{method} {path}: response head over {MAX_HEAD} bytes"
                ));
            }
            if head.get(before..) == Some(b"\r\n") {
                break;
            }
        }
        let (status, length) =
            parse_head(&head).map_err(|err| format!("{method} {path}: {err}"))?;
        let mut body = vec![0; length];
        self.reader
            .read_exact(&mut body)
            .map_err(|err| format!("{method} {path}: read body: {err}"))?;
        Ok(Response { status, body })
    }
}

/// The status and `Content-Length` of a response head (status line, headers, empty line).
pub fn parse_head(head: &[u8]) -> Result<(u16, usize), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line.split(' ').collect::<Vec<_>>().as_slice() {
        ["HTTP/1.1", code, ..] if code.len() == 3 => code
            .parse::<u16>()
            .map_err(|err| format!("status {code:?}: {err}"))?,
        _ => return Err(format!("unexpected status line {status_line:?}")),
    };
    let mut length = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!("unsupported transfer-encoding {}", value.trim()));
        }
        if name.eq_ignore_ascii_case("content-length") {
            let value = value.trim();
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|err| format!("content-length {value:?}: {err}"))?,
            );
        }
    }
    let length = length.ok_or("response has no content-length")?;
    if !(200..300).contains(&status) && !(400..600).contains(&status) {
        return Err(format!("unexpected status {status}"));
    }
    Ok((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ndate: x\r\n\r\n";
        assert_eq!(parse_head(head), Ok((200, 2)));
        let head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 120\r\n\r\n";
        assert_eq!(parse_head(head), Ok((404, 120)));
    }

    #[test]
    fn what_it_does_not_speak_is_an_error() {
        for (name, head) in [
            ("no length", &b"HTTP/1.1 200 OK\r\n\r\n"[..]),
            (
                "chunked",
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
            ("http/1.0", b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"),
            (
                "interim",
                b"HTTP/1.1 100 Continue\r\ncontent-length: 0\r\n\r\n",
            ),
            (
                "redirect",
                b"HTTP/1.1 302 Found\r\ncontent-length: 0\r\n\r\n",
            ),
            (
                "bad length",
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
            ),
            ("bad header", b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n"),
        ] {
            assert!(parse_head(head).is_err(), "{name}");
        }
    }

    #[test]
    fn a_round_trip_over_a_real_socket_keeps_the_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            for answer in ["first", "second"] {
                let mut line = String::new();
                let mut length = 0;
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                reader.get_mut().write_all(reply.as_bytes()).unwrap();
            }
        });
        let mut connection = Connection::open(port, Duration::from_secs(5)).unwrap();
        let first = connection.request("PUT", "/x", &[], b"body").unwrap();
        assert_eq!(
            first,
            Response {
                status: 200,
                body: b"first".to_vec()
            }
        );
        let second = connection.request("GET", "/y", &[("a", "b")], b"").unwrap();
        assert_eq!(second.body, b"second");
        server.join().unwrap();
    }
}
