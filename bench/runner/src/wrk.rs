//! wrk as the load generator: the Lua script that makes it print its summary as
//! `bench <key> <value>` lines, the command line, and the parser for those lines.
//!
//! It must never turn a missing figure into a zero: a key wrk did not print is an error.

use std::path::Path;
use std::process::Command;

/// wrk's `done()` hook: exact figures (latency in µs from its histogram), one per line.
pub const SCRIPT: &str = r#"-- registry-gate `make bench`: print wrk's summary for the runner to parse.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("bench requests %d\n", summary.requests))
  io.write(string.format("bench duration_us %d\n", summary.duration))
  io.write(string.format("bench p50_us %d\n", latency:percentile(50)))
  io.write(string.format("bench p99_us %d\n", latency:percentile(99)))
  io.write(string.format("bench errors_connect %d\n", e.connect))
  io.write(string.format("bench errors_read %d\n", e.read))
  io.write(string.format("bench errors_write %d\n", e.write))
  io.write(string.format("bench errors_status %d\n", e.status))
  io.write(string.format("bench errors_timeout %d\n", e.timeout))
end
"#;

/// Hooks put before [`SCRIPT`] when every request must carry the next token of a pool: the
/// pool file (one token per line) is `args[1]`, the `Accept` value `args[2]`. Tokens are
/// taken in order, round and round, so a pool larger than the filter's token cache makes
/// every request the first use of its token there.
pub const POOL_HOOKS: &str = r#"-- registry-gate `make bench`: a token from the pool per request.
local tokens = {}
local accept = ""
local at = 0
init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  if #tokens == 0 then error("no tokens in " .. args[1]) end
  accept = args[2]
end
request = function()
  at = at % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[at], ["Accept"] = accept })
end
"#;

/// One wrk run's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Responses received (any status).
    pub requests: u64,
    pub duration_us: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// Responses with a status above 399.
    pub status_errors: u64,
}

impl Summary {
    pub fn requests_per_sec(&self) -> f64 {
        if self.duration_us == 0 {
            return 0.0;
        }
        self.requests as f64 * 1e6 / self.duration_us as f64
    }
}

/// Parses the `bench <key> <value>` lines [`SCRIPT`] prints; other lines are ignored.
pub fn parse(stdout: &str) -> Result<Summary, String> {
    let mut values = std::collections::BTreeMap::new();
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("bench") {
            continue;
        }
        let (Some(key), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("malformed wrk summary line {line:?}"));
        };
        let value: u64 = value
            .parse()
            .map_err(|err| format!("wrk summary {key} = {value:?}: {err}"))?;
        values.insert(key.to_owned(), value);
    }
    let mut missing = Vec::new();
    let mut get = |key: &str| {
        values.get(key).copied().unwrap_or_else(|| {
            missing.push(key.to_owned());
            0
        })
    };
    let summary = Summary {
        requests: get("requests"),
        duration_us: get("duration_us"),
        p50_us: get("p50_us"),
        p99_us: get("p99_us"),
        socket_errors: get("errors_connect")
            + get("errors_read")
            + get("errors_write")
            + get("errors_timeout"),
        status_errors: get("errors_status"),
    };
    if missing.is_empty() {
        Ok(summary)
    } else {
        Err(format!(
            "wrk printed no {} (was it run with the bench script?)",
            missing.join(", ")
        ))
    }
}

/// What one wrk run is told.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub wrk: &'a Path,
    pub script: &'a Path,
    /// CPU list for `taskset -c`.
    pub cpus: &'a str,
    pub connections: u32,
    pub seconds: u64,
    pub headers: &'a [(&'a str, String)],
    pub url: &'a str,
    /// Arguments for the script (after `--`).
    pub script_args: &'a [String],
}

/// Runs wrk (one thread, keep-alive HTTP/1.1) pinned with taskset; its parsed summary.
pub fn run(load: &Load<'_>) -> Result<Summary, String> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(load.cpus)
        .arg(load.wrk)
        .arg("-t1")
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(load.script);
    for (name, value) in load.headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(load.url);
    if !load.script_args.is_empty() {
        cmd.arg("--").args(load.script_args);
    }
    let output = cmd
        .output()
        .map_err(|err| format!("run {}: {err}", load.wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk exited {}: {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    parse(&stdout).map_err(|err| format!("{err}; wrk said:\n{stdout}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "Running 5s test @ http://127.0.0.1:10000/v2/team/private/manifests/latest
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us  101.00us   4.00ms   90.00%
    Req/Sec    52.10k     1.00k   54.00k    80.00%
  260500 requests in 5.00s, 20.12MB read
Requests/sec:  52090.12
Transfer/sec:      4.02MB
bench requests 260500
bench duration_us 5000900
bench p50_us 598
bench p99_us 1210
bench errors_connect 0
bench errors_read 1
bench errors_write 0
bench errors_status 3
bench errors_timeout 2
";

    #[test]
    fn parses_the_script_lines_and_ignores_wrk_s_own_report() {
        let summary = parse(REAL).unwrap();
        assert_eq!(
            summary,
            Summary {
                requests: 260_500,
                duration_us: 5_000_900,
                p50_us: 598,
                p99_us: 1210,
                socket_errors: 3,
                status_errors: 3,
            }
        );
        let rps = summary.requests_per_sec();
        assert!((rps - 52_090.6).abs() < 1.0, "{rps}");
    }

    #[test]
    fn a_missing_key_is_an_error_not_a_zero() {
        let without_p99: String = REAL
            .lines()
            .filter(|l| !l.starts_with("bench p99_us"))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = parse(&without_p99).unwrap_err();
        assert!(err.contains("p99_us"), "{err}");
        let err = parse("Requests/sec: 5\n").unwrap_err();
        assert!(err.contains("requests"), "{err}");
    }

    #[test]
    fn malformed_lines_are_errors() {
        for (name, text) in [
            ("not a number", "bench requests many\n"),
            ("negative", "bench requests -1\n"),
            ("no value", "bench requests\n"),
            ("extra word", "bench requests 1 2\n"),
        ] {
            assert!(parse(text).is_err(), "{name}: {text:?} parsed");
        }
    }

    #[test]
    fn zero_duration_gives_zero_rate() {
        let summary = Summary {
            requests: 10,
            duration_us: 0,
            p50_us: 0,
            p99_us: 0,
            socket_errors: 0,
            status_errors: 0,
        };
        assert_eq!(summary.requests_per_sec(), 0.0);
    }
}
