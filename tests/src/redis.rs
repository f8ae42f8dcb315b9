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
