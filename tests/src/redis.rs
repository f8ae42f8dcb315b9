//! Redis for the sidecar: `redis-server` on loopback with persistence off, so every scenario
//! starts from an empty store and leaves nothing behind — one server ([`Redis`]), or a primary
//! with replicas watched by Redis Sentinels ([`Replicated`]) for failover scenarios.
//!
//! [`Replicated`] runs Redis's own replication and Sentinel (Debian's `redis-server` and
//! `redis-sentinel`), never anything home-made, with failure detection shortened to about a
//! second. Its helpers crash the primary (SIGKILL), force a `SENTINEL FAILOVER`, wait until
//! every sentinel names a new primary, and count the clients a server holds. Every wait polls
//! with a deadline.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::ports::free_port;
use crate::process::Process;
use crate::wait::wait_until;

#[derive(Debug)]
pub struct Redis {
    pub process: Process,
    pub port: u16,
}

/// One inline `PING`, expecting `+PONG` (servers and sentinels alike).
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
        Redis::start_named(dir, "redis", port, &[])
    }

    /// A server logging to `<dir>/<name>.log` with its data in `<dir>/<name>-data`, started
    /// with `extra` arguments after the standard ones (e.g. `--replicaof 127.0.0.1 <port>`).
    pub fn start_named(dir: &Path, name: &str, port: u16, extra: &[String]) -> Redis {
        let data = dir.join(format!("{name}-data"));
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
            .arg("no")
            .args(extra);
        let mut process = Process::spawn(name, cmd, dir);
        process.wait_ready("PING = PONG", Duration::from_secs(15), || ping(port));
        Redis { process, port }
    }

    /// `redis://127.0.0.1:<port>/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A synchronous connection to a server or sentinel on loopback.
pub fn connect(port: u16) -> Result<redis::Connection, String> {
    let client = redis::Client::open(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let connection = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    connection
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    Ok(connection)
}

/// One command on a fresh connection to `port`.
pub fn query<T: redis::FromRedisValue>(port: u16, command: &[&str]) -> Result<T, String> {
    let (name, args) = command.split_first().expect("a command has a name");
    let mut connection = connect(port)?;
    redis::cmd(name)
        .arg(args)
        .query(&mut connection)
        .map_err(|e| format!("{} on port {port}: {e}", command.join(" ")))
}

/// How many clients of `port` are `CLIENT SETNAME`d `name` (normal clients only: neither
/// replicas nor the sentinels' links count).
pub fn clients_named(port: u16, name: &str) -> Result<usize, String> {
    let list: String = query(port, &["CLIENT", "LIST", "TYPE", "normal"])?;
    let needle = format!(" name={name} ");
    Ok(list.lines().filter(|line| line.contains(&needle)).count())
}

/// The role `ROLE` reports: `master`, `slave` or `sentinel`.
pub fn role(port: u16) -> Result<String, String> {
    let reply: Vec<redis::Value> = query(port, &["ROLE"])?;
    match reply.first() {
        Some(redis::Value::BulkString(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        other => Err(format!("ROLE on port {port} answered {other:?}")),
    }
}

/// Shape and timing of a [`Replicated`] set.
#[derive(Debug, Clone)]
pub struct ReplicatedOptions {
    /// The master name the sentinels monitor.
    pub master: String,
    pub replicas: usize,
    pub sentinels: usize,
    /// Sentinels that must agree the primary is down before a failover.
    pub quorum: usize,
    /// `sentinel down-after-milliseconds`.
    pub down_after: Duration,
    /// `sentinel failover-timeout`.
    pub failover_timeout: Duration,
}

impl Default for ReplicatedOptions {
    /// A primary, one replica and three sentinels (quorum two), down after one second.
    fn default() -> Self {
        ReplicatedOptions {
            master: "registry-gate".into(),
            replicas: 1,
            sentinels: 3,
            quorum: 2,
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(3000),
        }
    }
}

/// A Redis primary with replicas and the sentinels that watch them, on loopback ports.
/// Every process stops when this drops.
#[derive(Debug)]
pub struct Replicated {
    options: ReplicatedOptions,
    /// Data servers, the first started as the primary. Killed ones stay (stopped) so their
    /// logs remain readable.
    pub servers: Vec<Redis>,
    pub sentinels: Vec<Redis>,
    dir: PathBuf,
}

/// How long a failover, a resync or the sentinels' discovery may take in a test.
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

impl Replicated {
    /// Starts the primary, its replicas (waiting until they are in sync) and the sentinels
    /// (waiting until each knows every replica and every other sentinel, so a failover can
    /// start at once).
    pub fn start(dir: &Path, options: ReplicatedOptions) -> Replicated {
        let primary_port = free_port();
        let mut servers = vec![Redis::start_named(dir, "redis-primary", primary_port, &[])];
        for i in 0..options.replicas {
            let extra = [
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                primary_port.to_string(),
            ];
            servers.push(Redis::start_named(
                dir,
                &format!("redis-replica-{i}"),
                free_port(),
                &extra,
            ));
        }
        let set = Replicated {
            sentinels: Vec::new(),
            servers,
            options,
            dir: dir.to_path_buf(),
        };
        set.wait_for_replicas(primary_port, set.options.replicas);
        let mut set = set;
        for i in 0..set.options.sentinels {
            let sentinel = set.start_sentinel(i, primary_port);
            set.sentinels.push(sentinel);
        }
        let (replicas, others) = (set.options.replicas, set.options.sentinels - 1);
        let master = set.options.master.clone();
        for sentinel in &set.sentinels {
            let port = sentinel.port;
            wait_until(
                "the sentinels know every replica and each other",
                FAILOVER_DEADLINE,
                || {
                    let known: Vec<redis::Value> = query(port, &["SENTINEL", "REPLICAS", &master])?;
                    let peers: Vec<redis::Value> =
                        query(port, &["SENTINEL", "SENTINELS", &master])?;
                    if known.len() >= replicas && peers.len() >= others {
                        Ok(())
                    } else {
                        Err(format!(
                            "sentinel {port} knows {} replicas and {} sentinels",
                            known.len(),
                            peers.len()
                        ))
                    }
                },
            );
        }
        set
    }

    fn start_sentinel(&self, index: usize, primary_port: u16) -> Redis {
        let port = free_port();
        let name = format!("redis-sentinel-{index}");
        let options = &self.options;
        let master = &options.master;
        // Sentinel rewrites its configuration file, so each one has its own.
        let config = self.dir.join(format!("{name}.conf"));
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
             sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n\
             sentinel down-after-milliseconds {master} {down}\n\
             sentinel failover-timeout {master} {failover}\n\
             sentinel parallel-syncs {master} 1\n",
            dir = self.dir.display(),
            quorum = options.quorum,
            down = options.down_after.as_millis(),
            failover = options.failover_timeout.as_millis(),
        );
        std::fs::write(&config, text)
            .unwrap_or_else(|err| panic!("write {}: {err}", config.display()));
        let mut cmd = Command::new(crate::paths::redis_sentinel());
        cmd.arg(&config);
        let mut process = Process::spawn(&name, cmd, &self.dir);
        process.wait_ready("PING = PONG", Duration::from_secs(15), || ping(port));
        Redis { process, port }
    }

    /// The master name the sentinels monitor.
    pub fn master(&self) -> &str {
        &self.options.master
    }

    /// `127.0.0.1:<port>,...` of every sentinel: the sidecar's `--redis-sentinels`.
    pub fn sentinel_list(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The sidecar flags that point it at this set.
    pub fn sidecar_args(&self) -> Vec<String> {
        vec![
            "--redis-sentinels".into(),
            self.sentinel_list(),
            "--redis-sentinel-master".into(),
            self.options.master.clone(),
        ]
    }

    /// Ports of the data servers still running.
    pub fn server_ports(&mut self) -> Vec<u16> {
        self.servers
            .iter_mut()
            .filter_map(|s| s.process.exited().is_none().then_some(s.port))
            .collect()
    }

    /// The primary as the first answering sentinel names it.
    pub fn primary(&self) -> Result<u16, String> {
        let mut last = String::from("no sentinel");
        for sentinel in &self.sentinels {
            match self.named_by(sentinel.port) {
                Ok(port) => return Ok(port),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    fn named_by(&self, sentinel: u16) -> Result<u16, String> {
        let (_, port): (String, u16) = query(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.options.master],
        )?;
        Ok(port)
    }

    /// SIGKILLs the current primary; returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self
            .primary()
            .unwrap_or_else(|e| panic!("no primary to kill: {e}"));
        let server = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .unwrap_or_else(|| panic!("the sentinels name port {port}, not a server of this set"));
        server.process.kill();
        port
    }

    /// `SENTINEL FAILOVER <master>` on the first sentinel (a failover without waiting for
    /// agreement); returns the old primary's port.
    pub fn force_failover(&self) -> u16 {
        let old = self.primary().unwrap_or_else(|e| panic!("no primary: {e}"));
        let sentinel = self.sentinels.first().expect("at least one sentinel");
        let _: () = query(
            sentinel.port,
            &["SENTINEL", "FAILOVER", &self.options.master],
        )
        .unwrap_or_else(|e| panic!("SENTINEL FAILOVER refused: {e}"));
        old
    }

    /// Waits until every sentinel names the same primary other than `old` and that server's
    /// `ROLE` says `master`; returns its port.
    pub fn wait_for_new_primary(&self, old: u16) -> u16 {
        wait_until(
            "a new primary named by every sentinel",
            FAILOVER_DEADLINE,
            || {
                let named: Vec<u16> = self
                    .sentinels
                    .iter()
                    .map(|s| self.named_by(s.port))
                    .collect::<Result<_, _>>()?;
                let first = *named.first().ok_or("no sentinel")?;
                if first == old || named.iter().any(|p| *p != first) {
                    return Err(format!("the sentinels name {named:?} (old primary {old})"));
                }
                match role(first)?.as_str() {
                    "master" => Ok(first),
                    other => Err(format!("{first} is named but its ROLE is {other}")),
                }
            },
        )
    }

    /// Waits until `primary` has at least `replicas` replicas online.
    pub fn wait_for_replicas(&self, primary: u16, replicas: usize) {
        wait_until("the replicas to be in sync", FAILOVER_DEADLINE, || {
            let info: String = query(primary, &["INFO", "replication"])?;
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online >= replicas {
                Ok(())
            } else {
                Err(format!("{online} of {replicas} replicas online:\n{info}"))
            }
        });
    }
}
