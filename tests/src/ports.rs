//! Free loopback ports for the servers a scenario starts.
//!
//! A port is found by binding `127.0.0.1:0` and is never handed out twice by this process,
//! so scenarios running in parallel threads do not collide with each other. The server that
//! receives the port binds it moments later; the readiness wait catches the rare loss of
//! that race to another program.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A loopback port that is free now and that this process has not handed out before.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|err| panic!("cannot bind 127.0.0.1:0 to find a free port: {err}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|err| panic!("local_addr of a bound listener: {err}"))
            .port();
        let mut taken = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.insert(port) {
            return port;
        }
    }
    panic!("no free loopback port found in 1000 attempts")
}

/// `preferred` if it is free on loopback (and not handed out yet), else a random free port.
/// For the demo's friendly fixed ports.
pub fn preferred_or_free(preferred: u16) -> u16 {
    if port_is_free(preferred) {
        let mut taken = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if taken.insert(preferred) {
            return preferred;
        }
    }
    free_port()
}

/// Whether `port` can be bound on 127.0.0.1 right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port that is free now, below Linux's default ephemeral range (32768-60999) so that no
/// outgoing connection is given it meanwhile, and not yet handed out — nor marked handed out:
/// pass it to [`preferred_or_free`] (e.g. `PreferredPorts::listen`) when the server that binds
/// it starts. For a port that must be known long before that (Pulp's `CONTENT_ORIGIN` names
/// the Envoy listener a minute before Envoy starts).
pub fn free_port_for_later() -> u16 {
    const FIRST: u16 = 20000;
    const COUNT: u16 = 12000;
    let offset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default()
        % u32::from(COUNT);
    let taken = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    (0..COUNT)
        .map(|i| FIRST + u16::try_from((offset + u32::from(i)) % u32::from(COUNT)).unwrap_or(0))
        .find(|port| !taken.contains(port) && port_is_free(*port))
        .unwrap_or_else(|| panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT))
}
