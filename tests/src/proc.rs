//! Child processes owned by a test: output captured to a log file, killed by pid on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A child process started by the test. Dropping it kills it (SIGKILL to its own pid) and reaps
/// it; if the test is panicking, its log is printed to help the reader.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `program` with `args` and extra environment `env`, logging to target/e2e/logs.
    pub fn spawn(name: &str, program: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Proc> {
        let dir = crate::workspace_root().join("target").join("e2e").join("logs");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!(
            "{name}-{}-{}.log",
            std::process::id(),
            crate::fastish_id()
        ));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        command.env(
            "RUST_LOG",
            std::env::var("BERTH_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running: started, not killed by this handle, and neither
    /// exited nor a zombie waiting to be reaped (read from `/proc/<pid>/stat`).
    pub fn running(&self) -> bool {
        let Some(pid) = self.pid() else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // The state follows the command name, which is in parentheses and may hold spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, None | Some("Z" | "X"))
    }

    /// Everything the process wrote so far.
    pub fn logs(&self) -> String {
        format!(
            "--- log of {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the exit (up to 10s, then SIGKILL). Returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself (up to `timeout`); returns its status.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// The remote addresses of the TCP sockets process `pid` holds open (any state but LISTEN), read
/// from `/proc/<pid>/fd` (the socket inodes it owns) and `/proc/net/tcp{,6}` (their endpoints).
/// IPv4-mapped IPv6 endpoints are given as IPv4.
pub fn tcp_remotes(pid: u32) -> Result<Vec<std::net::SocketAddr>> {
    let mut inodes = std::collections::HashSet::new();
    let fds = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&fds).with_context(|| format!("reading {fds}"))? {
        // A descriptor closed between read_dir and read_link is simply not counted.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.insert(inode.to_string());
        }
    }
    let mut remotes = Vec::new();
    for table in [format!("/proc/{pid}/net/tcp"), format!("/proc/{pid}/net/tcp6")] {
        let text = std::fs::read_to_string(&table).with_context(|| format!("reading {table}"))?;
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            const LISTEN: &str = "0A";
            if *state == LISTEN || !inodes.contains(*inode) {
                continue;
            }
            if let Some(addr) = parse_proc_net_addr(remote) {
                remotes.push(addr);
            }
        }
    }
    Ok(remotes)
}

/// How many TCP connections process `pid` holds to any of `to`.
pub fn tcp_connections_to(pid: u32, to: &[std::net::SocketAddr]) -> Result<usize> {
    Ok(tcp_remotes(pid)?.iter().filter(|r| to.contains(r)).count())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6) and a port: each 32-bit word as the kernel
/// printed it from memory, so in this machine's byte order.
fn parse_proc_net_addr(text: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [v4] => IpAddr::V4(Ipv4Addr::from(v4.to_ne_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(bytes);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// CPU time process `pid` has used so far (user + system), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its closing ')' are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = [11, 12]
        .iter()
        .map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    Ok(std::time::Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat` times), 100 if it cannot be asked.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// Runs `command` to its end (killed if it outlives `limit`) and returns what it printed on
/// standard output and standard error. A failure, or no end within `limit`, is an error naming
/// `what` and, for a failure, holding both outputs.
pub async fn run_to_end(
    command: &mut tokio::process::Command,
    limit: std::time::Duration,
    what: &str,
) -> Result<(String, String)> {
    command.kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("{what} did not finish within {limit:?}"))?
        .with_context(|| format!("{what} could not be run"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    Ok((stdout, stderr))
}

#[cfg(test)]
mod tests {
    use super::{parse_proc_net_addr, Proc};
    use std::path::Path;
    use std::time::{Duration, Instant};

    #[test]
    fn a_process_runs_until_it_exits_even_before_it_is_reaped() {
        let sleeper = Proc::spawn("sleeper", Path::new("sleep"), &["30"], &[]).unwrap();
        assert!(sleeper.running());
        // `true` exits at once; nothing reaps it, so it stays a zombie until dropped.
        let quitter = Proc::spawn("quitter", Path::new("true"), &[], &[]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while quitter.running() {
            assert!(Instant::now() < deadline, "`true` still running after 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(sleeper.running());
    }

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_proc_net_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_proc_net_addr("0000000000000000FFFF00000300007F:0050"),
            Some("127.0.0.3:80".parse().unwrap())
        );
        assert_eq!(
            parse_proc_net_addr("00000000000000000000000001000000:0016"),
            Some("[::1]:22".parse().unwrap())
        );
        assert_eq!(parse_proc_net_addr("nonsense"), None);
    }
}
