//! What the bench reads from `/proc`: a process's CPU time (`/proc/<pid>/stat` utime + stime,
//! in clock ticks) and resident memory (`/proc/<pid>/status` VmRSS), and the machine's CPU
//! model, kernel and load for the report.
//!
//! Parsing is separate from reading so it is unit-tested on fixed text. It must never guess a
//! field: an unexpected layout is an error.

use std::process::Command;

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks.
pub fn parse_cpu_ticks(stat: &str) -> Result<u64, String> {
    // The command name (field 2) is in parentheses and may hold spaces or `)`: count fields
    // from the last `)`. What follows starts with field 3 (state).
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 1..))
        .ok_or_else(|| format!("no `)` in /proc stat line {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |number: usize| -> Result<u64, String> {
        let value = number
            .checked_sub(3)
            .and_then(|i| fields.get(i))
            .ok_or_else(|| format!("/proc stat has no field {number}: {stat:?}"))?;
        value
            .parse()
            .map_err(|err| format!("/proc stat field {number} = {value:?}: {err}"))
    };
    Ok(field(14)? + field(15)?)
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
pub fn parse_vm_rss_kib(status: &str) -> Result<u64, String> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc status")?;
    let mut words = line.split_whitespace().skip(1);
    match (words.next(), words.next()) {
        (Some(value), Some("kB")) => value
            .parse()
            .map_err(|err| format!("VmRSS {value:?}: {err}")),
        _ => Err(format!("unexpected VmRSS line {line:?}")),
    }
}

/// The first `model name` in `/proc/cpuinfo`.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|err| format!("read {path}: {err}"))
}

pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    parse_cpu_ticks(&read(&format!("/proc/{pid}/stat"))?)
}

pub fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    parse_vm_rss_kib(&read(&format!("/proc/{pid}/status"))?)
}

/// Clock ticks per second (`getconf CLK_TCK`).
pub fn clock_ticks_per_sec() -> Result<u64, String> {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .map_err(|err| format!("run getconf CLK_TCK: {err}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    match text.trim().parse::<u64>() {
        Ok(ticks) if ticks > 0 && output.status.success() => Ok(ticks),
        _ => Err(format!("getconf CLK_TCK said {text:?}")),
    }
}

pub fn cpu_model() -> String {
    read("/proc/cpuinfo")
        .ok()
        .and_then(|text| parse_cpu_model(&text))
        .unwrap_or_else(|| "unknown".to_owned())
}

pub fn kernel() -> String {
    read("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub fn load_average() -> String {
    read("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        let stat =
            "4242 (envoy) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 567 0 0 20 0 9 0 100 1 2";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 1234 + 567);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_fields() {
        let stat = "7 (wrk (x) y) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 1 2";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 30);
    }

    #[test]
    fn a_short_or_garbled_stat_line_is_an_error() {
        for (name, stat) in [
            ("empty", ""),
            ("no parenthesis", "1 envoy S 1 2 3"),
            ("too few fields", "1 (envoy) S 1 2 3"),
            (
                "not a number",
                "1 (envoy) S 1 1 1 0 -1 0 0 0 0 0 x 5 0 0 20 0 1 0 5 1 2",
            ),
        ] {
            assert!(parse_cpu_ticks(stat).is_err(), "{name}: {stat:?}");
        }
    }

    #[test]
    fn vm_rss_in_kib() {
        let status = "Name:\tenvoy\nVmPeak:\t  200000 kB\nVmRSS:\t   88660 kB\nThreads:\t9\n";
        assert_eq!(parse_vm_rss_kib(status).unwrap(), 88_660);
        assert!(parse_vm_rss_kib("Name:\tenvoy\n").is_err(), "no VmRSS line");
        assert!(
            parse_vm_rss_kib("VmRSS:\t 12 MB\n").is_err(),
            "unit other than kB"
        );
        assert!(parse_vm_rss_kib("VmRSS:\t x kB\n").is_err(), "not a number");
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor\t: 0\n"), None);
    }
}
