//! Readiness and propagation waits: poll a condition until it holds or a deadline passes.
//!
//! This is the only place the harness sleeps, and only between polls of a condition. It must
//! never be used as a bare delay before an assertion: the condition is the assertion.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The pause between polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `probe` until it returns `Ok`, and returns that value with the time it took.
/// `Err(String)` says why it is not there yet; on timeout the last reason is in the error.
pub fn poll<T>(
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<(T, Duration), String> {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match probe() {
            Ok(value) => return Ok((value, start.elapsed())),
            Err(reason) => {
                if start.elapsed() >= timeout {
                    return Err(format!(
                        "still not true after {:.1?} ({attempts} attempts); last: {reason}",
                        start.elapsed()
                    ));
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`poll`], but panics naming `what` when the deadline passes.
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Result<T, String>) -> T {
    match poll(timeout, probe) {
        Ok((value, _)) => value,
        Err(err) => panic!("timed out waiting for {what}: {err}"),
    }
}

/// Whether a TCP connection to `addr` succeeds now.
pub fn tcp_accepts(addr: SocketAddr) -> Result<(), String> {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .map(drop)
        .map_err(|err| format!("connect {addr}: {err}"))
}

/// A readiness probe: `GET http://127.0.0.1:<port><path>` answers 200.
pub fn http_ok(port: u16, path: &str) -> Result<(), String> {
    tcp_accepts(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    let resp = crate::http::Request::get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()?;
    if resp.status == 200 {
        Ok(())
    } else {
        Err(resp.summary())
    }
}
