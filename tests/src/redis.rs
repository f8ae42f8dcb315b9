//! Redis for the sidecar: `redis-server` on loopback with persistence off, so every scenario
//! starts from an empty store and leaves nothing behind.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

#[derive(Debug)]
pub struct Redis {
    pub process: Process,
    pub port: u16,
}

/// One inline `PING`, expecting `+PONG`.
fn ping(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .map_err(|err| format!("connect {addr}: {err}"))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|err| err.to_string())?;
    stream
        .write_all(b"PING\r\n")
        .map_err(|err| format!("write PING: {err}"))?;
    let mut buf = [0u8; 64];
    let n = stream
        .read(&mut buf)
        .map_err(|err| format!("read PING reply: {err}"))?;
    let reply = String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned();
    if reply.starts_with("+PONG") {
        Ok(())
    } else {
        Err(format!("PING answered {reply:?}"))
    }
}

impl Redis {
    pub fn start(dir: &Path, port: u16) -> Redis {
        let data = dir.join("redis-data");
        std::fs::create_dir_all(&data)
            .unwrap_or_else(|err| panic!("create {}: {err}", data.display()));
        let mut cmd = Command::new(crate::paths::redis_server());
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&data)
            .arg("--daemonize")
            .arg("no");
        let mut process = Process::spawn("redis", cmd, dir);
        process.wait_ready("PING = PONG", Duration::from_secs(15), || ping(port));
        Redis { process, port }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A Redis reply, as the harness reads it (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk reply (`None` for a nil or any other kind).
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Reply::Bulk(bytes) => bytes,
            _ => None,
        }
    }
}

/// One connection for the harness's own reads and faults (`GET`, `INFO`, `FLUSHALL`, ...):
/// the store as it is, not as the sidecar reports it.
#[derive(Debug)]
pub struct Connection {
    reader: std::io::BufReader<TcpStream>,
}

impl Connection {
    pub fn open(port: u16) -> Result<Connection, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            .map_err(|err| format!("connect {addr}: {err}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|err| err.to_string())?;
        Ok(Connection {
            reader: std::io::BufReader::new(stream),
        })
    }

    /// Sends one command and reads its reply.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.reader
            .get_mut()
            .write_all(&out)
            .map_err(|err| format!("send to Redis: {err}"))?;
        read_reply(&mut self.reader)
    }
}

fn read_line(reader: &mut impl std::io::BufRead) -> Result<String, String> {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .map_err(|err| format!("read from Redis: {err}"))?;
    if n == 0 {
        return Err("Redis closed the connection".into());
    }
    Ok(line.trim_end_matches("\r\n").to_owned())
}

fn read_reply(reader: &mut impl std::io::BufRead) -> Result<Reply, String> {
    let line = read_line(reader)?;
    let (kind, rest) = line.split_at_checked(1).ok_or("empty Redis reply")?;
    let number = || -> Result<i64, String> {
        rest.parse()
            .map_err(|_| format!("bad Redis length or integer {rest:?}"))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Integer(number()?)),
        "$" => match usize::try_from(number()?) {
            Err(_) => Ok(Reply::Bulk(None)),
            Ok(len) => {
                let mut bytes = vec![0u8; len + 2];
                reader
                    .read_exact(&mut bytes)
                    .map_err(|err| format!("read from Redis: {err}"))?;
                bytes.truncate(len);
                Ok(Reply::Bulk(Some(bytes)))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Ok(Reply::Array(Vec::new())),
            Ok(len) => (0..len)
                .map(|_| read_reply(reader))
                .collect::<Result<_, _>>()
                .map(Reply::Array),
        },
        other => Err(format!("unknown Redis reply type {other:?} in {line:?}")),
    }
}
