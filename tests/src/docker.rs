//! Tests with a real Docker Engine: engine detection, the project's images, containers owned by a
//! test.
//!
//! Every call goes through the `docker` CLI (`std::process::Command`), bounded in time.
//!
//! ```no_run
//! use berth_tests::docker::{self, Run};
//!
//! #[tokio::test]
//! async fn example() -> anyhow::Result<()> {
//!     // Fails the test when CI=true and no engine answers; otherwise prints why and returns Ok(()).
//!     let _engine = berth_tests::require_docker!();
//!     docker::build_images(&["demo"])?;
//!     let web = Run::new(&docker::image("demo"))
//!         .name("web")
//!         .env("SERVICE_TAGS", "traefik.enable=true")
//!         .publish("127.0.0.1::9090")
//!         .start()?;
//!     let port = web.published_port(9090)?; // traffic goes to 127.0.0.1:<port> only
//!     # let _ = port;
//!     Ok(()) // the container is removed (`docker rm -f <id>`) when `web` is dropped
//! }
//! ```
//!
//! - [`require_engine`] / [`require_docker!`](crate::require_docker): the engine rule. No engine:
//!   with `CI=true` the test panics explaining how to get one; elsewhere it prints
//!   `skipping: no Docker engine (run scripts/setup.sh docker)` and the test returns early.
//! - [`build_images`]: runs `deploy/build-images.sh` (once per image per test process; concurrent
//!   test processes are serialized by the script's lock file).
//! - [`Run`] / [`Container`]: `docker run -d` with a unique name (`<prefix>-<pid>-<n>`), env vars,
//!   labels, published ports and health options; removed by id when dropped.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::workspace_root;

/// The tag of every image `deploy/build-images.sh` builds.
pub const TAG: &str = "dev";

/// Label put on every container a test starts (value: the test process id), to find leftovers.
pub const TEST_LABEL: &str = "berth.test.pid";

/// What `docker info` said about the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The engine's version (`docker info --format {{.ServerVersion}}`).
    pub server_version: String,
}

/// True when the environment says we run in CI (`CI=true`, `CI=1` or `CI=yes`).
pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI").map(|v| v.to_ascii_lowercase()).as_deref(),
        Ok("true" | "1" | "yes")
    )
}

/// The Docker engine, if one answers `docker info` (checked once per test process).
pub fn engine() -> Result<Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            match docker_with_timeout(
                &["info", "--format", "{{.ServerVersion}}"],
                Duration::from_secs(20),
            ) {
                Ok(version) if !version.trim().is_empty() => Ok(Engine {
                    server_version: version.trim().to_string(),
                }),
                Ok(_) => Err("`docker info` printed no server version".to_string()),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .clone()
}

/// The engine rule for tests that need Docker: returns the engine when `docker info` answers.
/// Otherwise, with `CI=true` it panics (the test fails, explaining itself); elsewhere it prints
/// a clear skip message and returns `None`, and the test should return early (see
/// [`require_docker!`](crate::require_docker)).
pub fn require_engine() -> Option<Engine> {
    match engine() {
        Ok(engine) => Some(engine),
        Err(why) if in_ci() => panic!(
            "this test needs a Docker Engine and none answers `docker info` (CI=true, so this is a \
             failure, not a skip): {why}\nStart one with `scripts/setup.sh docker` (installs Debian's \
             docker.io and starts dockerd), or point DOCKER_HOST at a running engine."
        ),
        Err(why) => {
            // Straight to stderr, not eprintln!: the test harness would capture (hide) that.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping: no Docker engine (run scripts/setup.sh docker). `docker info` failed: {why}\n\
                 (with CI=true this test fails instead of skipping)"
            );
            None
        }
    }
}

/// `let engine = require_docker!();` at the top of a test returning `Result<()>`: the
/// [`Engine`] when one answers, else fails (CI=true) or skips by returning `Ok(())`.
/// `require_docker!(())` does the same in a test returning `()`.
#[macro_export]
macro_rules! require_docker {
    () => {
        $crate::require_docker!(Ok(()))
    };
    ($ret:expr) => {
        match $crate::docker::require_engine() {
            Some(engine) => engine,
            None => return $ret,
        }
    };
}

/// The full reference of one of the project's images: `berth/<name>:dev`
/// (`name` is one of `demo`, `control`, `proxy`, `agent`, `consul`).
pub fn image(name: &str) -> String {
    format!("berth/{name}:{TAG}")
}

/// The directory holding the workspace binaries of the profile the running test was built with
/// (`target/debug` for `cargo test`).
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Builds the project's images `names` (`demo`, `control`, `proxy`, `agent`, `consul`) with
/// `deploy/build-images.sh` out of this test's binaries directory, unless this process already
/// built them. Fast when nothing changed (docker's layer cache). Concurrent test processes are
/// fine: the script serializes builds with a lock file.
pub fn build_images(names: &[&str]) -> Result<()> {
    static BUILT: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    // Holding the lock while building makes concurrent tests of this process wait for one build.
    let mut built = BUILT
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = names.iter().copied().filter(|n| !built.contains(*n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let script = workspace_root().join("deploy").join("build-images.sh");
    let bin_dir = binaries_dir();
    let started = Instant::now();
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(&missing)
        .current_dir(workspace_root());
    let output = run_with_timeout(command, Duration::from_secs(600))
        .with_context(|| format!("running {} {}", script.display(), missing.join(" ")))?;
    if !output.success {
        bail!(
            "{} --bin-dir {} {} failed ({}):\n{}{}",
            script.display(),
            bin_dir.display(),
            missing.join(" "),
            output.status,
            output.stdout,
            output.stderr
        );
    }
    eprintln!("built images {} in {:.1?}", missing.join(", "), started.elapsed());
    built.extend(missing.iter().map(|s| s.to_string()));
    Ok(())
}

/// Runs `docker args...` (bounded to 60s) and returns its stdout; an error carries stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    docker_with_timeout(args, Duration::from_secs(60))
}

/// Runs `docker args...`, killing it after `timeout`; returns its stdout, or an error with stderr.
pub fn docker_with_timeout(args: &[&str], timeout: Duration) -> Result<String> {
    let mut command = Command::new("docker");
    command.args(args);
    let output = run_with_timeout(command, timeout).with_context(|| format!("docker {}", args.join(" ")))?;
    if output.success {
        Ok(output.stdout)
    } else {
        Err(anyhow!(
            "docker {} failed ({}): {}",
            args.join(" "),
            output.status,
            output.stderr.trim()
        ))
    }
}

struct Output {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start it (is it installed? run scripts/setup.sh docker)")?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("did not finish within {timeout:?} (killed)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        success: status.success(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

/// A unique container name: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options of a `docker run -d`, built step by step and started with [`Run::start`].
#[derive(Debug, Clone)]
pub struct Run {
    image: String,
    name_prefix: String,
    env: Vec<(String, String)>,
    labels: Vec<(String, String)>,
    publish: Vec<String>,
    options: Vec<String>,
    command: Vec<String>,
}

impl Run {
    /// `docker run -d` of `image` (e.g. [`image("demo")`](image)), named `berth-test-<pid>-<n>`.
    pub fn new(image: &str) -> Run {
        Run {
            image: image.to_string(),
            name_prefix: "berth-test".into(),
            env: Vec::new(),
            labels: Vec::new(),
            publish: Vec::new(),
            options: Vec::new(),
            command: Vec::new(),
        }
    }

    /// The container's name prefix; the name is `<prefix>-<pid>-<n>` (unique across parallel tests).
    pub fn name(mut self, prefix: &str) -> Run {
        self.name_prefix = prefix.to_string();
        self
    }

    /// `-e KEY=VALUE`
    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--label KEY=VALUE`
    pub fn label(mut self, key: &str, value: &str) -> Run {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// `-p SPEC`, e.g. `127.0.0.1::9090` (a random host port on 127.0.0.1) or
    /// `127.0.0.1:18080:9090`. Publish on 127.0.0.1: tests send traffic nowhere else.
    pub fn publish(mut self, spec: &str) -> Run {
        self.publish.push(spec.into());
        self
    }

    /// Keeps the image's HEALTHCHECK command (exec form: the images have no shell, so a
    /// `--health-cmd`, which docker runs with /bin/sh, cannot work) but checks every `interval`,
    /// with 1 retry, a 2s timeout and no start period, so a status change shows within about one
    /// interval. The demo image probes `GET /health` on its `DEMO_LISTEN` port; a test flips it
    /// with `GET /health/fail` and `GET /health/ok` on the container's published port.
    pub fn health_interval(mut self, interval: Duration) -> Run {
        self.options
            .push(format!("--health-interval={}ms", interval.as_millis().max(1)));
        self.options.push("--health-timeout=2s".into());
        self.options.push("--health-retries=1".into());
        self.options.push("--health-start-period=0s".into());
        self
    }

    /// `--no-healthcheck`: disables the image's HEALTHCHECK.
    pub fn no_healthcheck(mut self) -> Run {
        self.options.push("--no-healthcheck".into());
        self
    }

    /// Any other `docker run` option, e.g. `--network=host` or `--restart=no`.
    pub fn option(mut self, option: &str) -> Run {
        self.options.push(option.into());
        self
    }

    /// Arguments after the image (the container's command / the entrypoint's arguments).
    pub fn args(mut self, args: &[&str]) -> Run {
        self.command.extend(args.iter().map(|s| s.to_string()));
        self
    }

    /// The `docker run` arguments this would use with container name `name`.
    fn docker_args(&self, name: &str) -> Vec<String> {
        let mut args = vec!["run".to_string(), "-d".into(), "--name".into(), name.into()];
        args.push("--label".into());
        args.push(format!("{TEST_LABEL}={}", std::process::id()));
        for (k, v) in &self.env {
            args.push("-e".into());
            args.push(format!("{k}={v}"));
        }
        for (k, v) in &self.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        for p in &self.publish {
            args.push("-p".into());
            args.push(p.clone());
        }
        args.extend(self.options.iter().cloned());
        args.push(self.image.clone());
        args.extend(self.command.iter().cloned());
        args
    }

    /// `docker run -d ...`: the container, removed (`docker rm -f <id>`) when dropped.
    pub fn start(self) -> Result<Container> {
        let name = unique_name(&self.name_prefix);
        let args = self.docker_args(&name);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = match docker_with_timeout(&refs, Duration::from_secs(60)) {
            Ok(out) => out,
            Err(e) => {
                // A failed `docker run` may still have created the container: remove it by name.
                let _ = docker(&["rm", "-f", &name]);
                return Err(e);
            }
        };
        let id = out.lines().last().unwrap_or("").trim().to_string();
        if id.is_empty() {
            bail!("docker {} printed no container id", args.join(" "));
        }
        Ok(Container {
            id,
            name,
            image: self.image,
            removed: false,
        })
    }
}

/// A container started by a test; dropping it removes it by id (`docker rm -f -v <id>`), after
/// printing its logs if the test is failing.
#[derive(Debug)]
pub struct Container {
    id: String,
    name: String,
    image: String,
    removed: bool,
}

impl Container {
    /// The full container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The 12-character id, as `docker ps` and the container's hostname show it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// The container's name (unique: `<prefix>-<pid>-<n>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    /// `docker stop -t 10 <id>` (SIGTERM, then SIGKILL after 10s): a clean stop.
    pub fn stop(&self) -> Result<()> {
        docker(&["stop", "-t", "10", &self.id]).map(drop)
    }

    /// `docker kill <id>` (SIGKILL): the container dies.
    pub fn kill(&self) -> Result<()> {
        docker(&["kill", &self.id]).map(drop)
    }

    /// `docker kill --signal <signal> <id>`.
    pub fn signal(&self, signal: &str) -> Result<()> {
        docker(&["kill", "--signal", signal, &self.id]).map(drop)
    }

    /// `docker start <id>`: starts it again after a stop or kill.
    pub fn start(&self) -> Result<()> {
        docker(&["start", &self.id]).map(drop)
    }

    /// `docker pause <id>` / [`Container::unpause`].
    pub fn pause(&self) -> Result<()> {
        docker(&["pause", &self.id]).map(drop)
    }

    pub fn unpause(&self) -> Result<()> {
        docker(&["unpause", &self.id]).map(drop)
    }

    /// Removes the container now (`docker rm -f -v <id>`); dropping it afterwards does nothing.
    pub fn remove(&mut self) -> Result<()> {
        if self.removed {
            return Ok(());
        }
        docker(&["rm", "-f", "-v", &self.id])?;
        self.removed = true;
        Ok(())
    }

    /// `docker inspect <id>`: the container's JSON object.
    pub fn inspect(&self) -> Result<Value> {
        let out = docker(&["inspect", &self.id])?;
        let mut all: Value =
            serde_json::from_str(&out).with_context(|| format!("docker inspect: not JSON: {out}"))?;
        match all.get_mut(0) {
            Some(v) => Ok(v.take()),
            None => bail!("docker inspect {} returned nothing", self.id),
        }
    }

    /// The host port that container port `port`/tcp is published on (`-p 127.0.0.1::9090`).
    pub fn published_port(&self, port: u16) -> Result<u16> {
        self.published_port_proto(port, "tcp")
    }

    /// Like [`Container::published_port`] for `proto` (`tcp` or `udp`).
    pub fn published_port_proto(&self, port: u16, proto: &str) -> Result<u16> {
        let key = format!("{port}/{proto}");
        let info = self.inspect()?;
        let bindings = &info["NetworkSettings"]["Ports"][&key];
        let host_port = bindings
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["HostPort"].as_str())
            .find_map(|p| p.parse::<u16>().ok().filter(|p| *p != 0));
        host_port.ok_or_else(|| {
            anyhow!(
                "container {} publishes no host port for {key}: {bindings}",
                self.name
            )
        })
    }

    /// `State.Status`: `created`, `running`, `paused`, `exited`, ...
    pub fn status(&self) -> Result<String> {
        Ok(self.inspect()?["State"]["Status"]
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// `State.Health.Status` (`starting`, `healthy`, `unhealthy`), or `None` without a health check.
    pub fn health_status(&self) -> Result<Option<String>> {
        Ok(self.inspect()?["State"]["Health"]["Status"]
            .as_str()
            .map(str::to_string))
    }

    /// The container's IP address on the default bridge network (empty with host networking).
    pub fn ip(&self) -> Result<String> {
        Ok(self.inspect()?["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap_or("")
            .to_string())
    }

    /// Waits (polling, up to `timeout`) until the Docker health status is `status`.
    pub async fn wait_health(&self, status: &str, timeout: Duration) -> Result<()> {
        crate::wait_until(
            &format!("container {} to be {status}", self.name),
            timeout,
            || async { Ok((self.health_status()?.as_deref() == Some(status)).then_some(())) },
        )
        .await
        .with_context(|| self.logs())
    }

    /// Waits (polling, up to `timeout`) until `State.Status` is `status` (e.g. `exited`).
    pub async fn wait_status(&self, status: &str, timeout: Duration) -> Result<()> {
        crate::wait_until(
            &format!("container {} to be {status}", self.name),
            timeout,
            || async { Ok((self.status()? == status).then_some(())) },
        )
        .await
        .with_context(|| self.logs())
    }

    /// `docker logs <id>` (stdout and stderr).
    pub fn logs(&self) -> String {
        let mut command = Command::new("docker");
        command.args(["logs", "--tail", "200", &self.id]);
        match run_with_timeout(command, Duration::from_secs(20)) {
            Ok(o) => format!(
                "--- docker logs of {} ({}) ---\n{}{}",
                self.name,
                self.short_id(),
                o.stdout,
                o.stderr
            ),
            Err(e) => format!("--- docker logs of {} unavailable: {e:#}", self.name),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Err(e) = docker(&["rm", "-f", "-v", &self.id]) {
            eprintln!(
                "warning: could not remove container {} ({}): {e:#}",
                self.name, self.id
            );
        }
    }
}

/// Runs `command` (killed after `timeout`) and returns its stdout; an error carries its stderr.
pub fn output_of(command: Command, timeout: Duration) -> Result<String> {
    let what = format!("{command:?}");
    let output = run_with_timeout(command, timeout).with_context(|| what.clone())?;
    if output.success {
        Ok(output.stdout)
    } else {
        Err(anyhow!(
            "{what} failed ({}):\n{}{}",
            output.status,
            output.stdout,
            output.stderr.trim()
        ))
    }
}

/// Debian's `docker-compose` (v1), with the same rule as [`require_engine`]: when it is missing,
/// fails with CI=true, else prints why and returns `None` so the test can return early.
pub fn require_compose() -> Option<()> {
    let mut command = Command::new("docker-compose");
    command.arg("version");
    match output_of(command, Duration::from_secs(30)) {
        Ok(_) => Some(()),
        Err(e) if in_ci() => panic!(
            "this test needs Debian's docker-compose and it does not run (CI=true, so this is a \
             failure, not a skip): {e:#}\nInstall it with `scripts/setup.sh docker`."
        ),
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipping: no docker-compose (run scripts/setup.sh docker): {e:#}\n\
                 (with CI=true this test fails instead of skipping)"
            );
            None
        }
    }
}

/// A docker-compose project owned by a test: a unique project name (`-p`), the environment the
/// compose file interpolates, and `down -v` when dropped (after printing the logs if the test
/// is failing).
pub struct Compose {
    file: PathBuf,
    project: String,
    env: Vec<(String, String)>,
    up: bool,
}

impl Compose {
    /// A project for compose file `file`, named `<prefix><pid>x<n>` (compose v1 wants
    /// lowercase letters, digits, `_` and `-`).
    pub fn new(file: impl Into<PathBuf>, prefix: &str) -> Compose {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let project = format!(
            "{prefix}{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
        Compose {
            file: file.into(),
            project,
            env: Vec::new(),
            up: false,
        }
    }

    /// An environment variable for every docker-compose command (the file's `${VAR}`s).
    pub fn env(mut self, key: &str, value: impl ToString) -> Compose {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    /// `docker-compose -f FILE -p PROJECT args...`, killed after `timeout`; returns stdout.
    pub fn run(&self, args: &[&str], timeout: Duration) -> Result<String> {
        // --no-ansi is a global option: it comes before the subcommand.
        let mut command = Command::new("docker-compose");
        command
            .arg("--no-ansi")
            .arg("-f")
            .arg(&self.file)
            .arg("-p")
            .arg(&self.project)
            .args(args);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        output_of(command, timeout)
    }

    /// `up -d args...` (e.g. `["--scale", "web_go=3"]`); from now on, dropping runs `down -v`.
    pub fn up(&mut self, args: &[&str], timeout: Duration) -> Result<()> {
        self.up = true;
        let mut all = vec!["up", "-d"];
        all.extend_from_slice(args);
        self.run(&all, timeout).map(drop)
    }

    /// The ids of `service`'s containers (`ps -q SERVICE`).
    pub fn container_ids(&self, service: &str) -> Result<Vec<String>> {
        Ok(self
            .run(&["ps", "-q", service], Duration::from_secs(60))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }

    /// The last lines of every service's logs.
    pub fn logs(&self) -> String {
        match self.run(&["logs", "--no-color", "--tail", "100"], Duration::from_secs(60)) {
            Ok(logs) => format!("--- docker-compose logs of {} ---\n{logs}", self.project),
            Err(e) => format!("--- docker-compose logs of {} unavailable: {e:#}", self.project),
        }
    }

    /// `down -v --remove-orphans`: stops and removes the project's containers, networks, volumes.
    pub fn down(&mut self) -> Result<()> {
        self.run(
            &["down", "-v", "--remove-orphans", "-t", "5"],
            Duration::from_secs(180),
        )?;
        self.up = false;
        Ok(())
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if !self.up {
            return;
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Err(e) = self.down() {
            eprintln!(
                "warning: docker-compose down of project {} failed: {e:#}",
                self.project
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: image build, a container with a published port and the image's
    /// health check, the health toggle, stop, and removal on drop.
    #[tokio::test]
    async fn demo_container_publishes_answers_and_reports_health() -> Result<()> {
        let _engine = crate::require_docker!();
        build_images(&["demo"])?;
        build_images(&["demo"])?; // once per process: the second call does nothing
        let web = Run::new(&image("demo"))
            .name("harness-web")
            .env("DEMO_NAME", "harness-1")
            .env("DEMO_SERVICE", "web_go")
            .label("berth.harness", "yes")
            .publish("127.0.0.1::9090")
            .health_interval(Duration::from_millis(300))
            .start()?;
        assert!(web
            .name()
            .starts_with(&format!("harness-web-{}-", std::process::id())));
        let port = web.published_port(9090)?;
        let url = format!("http://127.0.0.1:{port}/");
        let answer = crate::wait_until(
            "the demo container to answer",
            Duration::from_secs(10),
            || async {
                Ok(crate::http::get_with_host(&url, "go.traefix.example.localhost")
                    .await
                    .ok())
            },
        )
        .await?;
        assert_eq!(answer.instance(), Some("harness-1"), "{}", answer.body);
        assert!(
            answer.body.starts_with("web_go instance harness-1 served GET /"),
            "{}",
            answer.body
        );
        web.wait_health("healthy", Duration::from_secs(10)).await?;
        assert_eq!(web.inspect()?["Config"]["Labels"]["berth.harness"], "yes");

        crate::http::status(&format!("http://127.0.0.1:{port}/health/fail")).await?;
        web.wait_health("unhealthy", Duration::from_secs(10)).await?;
        crate::http::status(&format!("http://127.0.0.1:{port}/health/ok")).await?;
        web.wait_health("healthy", Duration::from_secs(10)).await?;

        web.stop()?;
        assert_eq!(web.status()?, "exited");
        let id = web.id().to_string();
        drop(web);
        assert!(
            docker(&["inspect", &id]).is_err(),
            "container {id} should be gone after drop"
        );
        Ok(())
    }
}
