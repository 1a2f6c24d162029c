//! Running external programs for tests: capture, timeouts, signals and `/proc` inspection.
//!
//! Why not plain `Command::output()`: an acceptance test must never hang CI (every run has a deadline), must be
//! able to interrupt or kill a running Terraform halfway through (Ctrl-C and killed-provider tests), and must find
//! the provider process Terraform started (its pid for `kill -9`, its peak RSS for the benchmarks). Every child is
//! started in its own process group, so a timeout kills Terraform *and* the plugins it launched, and a simulated
//! terminal Ctrl-C reaches the whole group exactly like a real one.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Errors of this module; the text always says which program was involved.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started at all (missing file, not executable).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// Waiting for or signalling the program failed.
    #[error("`{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed (with its whole process group).
    #[error("`{command}` did not finish within {timeout:?} and was killed\n{output}")]
    Timeout {
        command: String,
        timeout: Duration,
        output: Box<Output>,
    },
}

/// What a finished program did: exit code or signal, everything it printed, and how long it took.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout followed by stderr, for searching diagnostics wherever Terraform printed them.
    pub fn combined(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn status_text(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "still running".to_string(),
        }
    }
}

/// Longest piece of one stream shown in a failure message; TF_LOG=trace output can be megabytes.
const SHOW_LIMIT: usize = 64 * 1024;

fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= SHOW_LIMIT {
        return s.into();
    }
    let mut start = s.len() - SHOW_LIMIT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {} bytes omitted ...]\n{}", start, &s[start..]).into()
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "$ {}  ({}, {:.2?})",
            self.command,
            self.status_text(),
            self.elapsed
        )?;
        writeln!(f, "--- stdout ---\n{}", clip(self.stdout.trim_end()))?;
        write!(
            f,
            "--- stderr ---\n{}\n--------------",
            clip(self.stderr.trim_end())
        )
    }
}

/// Renders a command line for messages (program basename and arguments; the environment is never shown because
/// it may hold secrets).
pub fn describe(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program())
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = vec![prog];
    parts.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

type Buffer = Arc<Mutex<Vec<u8>>>;

fn pump(mut from: impl Read + Send + 'static, into: Buffer) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// A program started by [`spawn`], still running: peek at its output, signal it, wait for it.
pub struct Running {
    command: String,
    child: Child,
    stdout: Buffer,
    stderr: Buffer,
    pumps: Vec<JoinHandle<()>>,
    started: Instant,
}

/// Starts `cmd` in a new process group with piped stdout/stderr, writing `stdin` (if any) and then closing it.
pub fn spawn(mut cmd: Command, stdin: Option<Vec<u8>>) -> Result<Running, ProcessError> {
    let command = describe(&cmd);
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stdout: Buffer = Arc::default();
    let stderr: Buffer = Arc::default();
    let mut pumps = vec![
        pump(child.stdout.take().expect("piped stdout"), stdout.clone()),
        pump(child.stderr.take().expect("piped stderr"), stderr.clone()),
    ];
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pumps.push(std::thread::spawn(move || {
            // A program that exits without reading its input is not an error here.
            let _ = pipe.write_all(&data);
        }));
    }
    Ok(Running {
        command,
        child,
        stdout,
        stderr,
        pumps,
        started,
    })
}

impl Running {
    /// Process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Sends `sig` to the program only.
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        send_signal(self.pid() as i32, sig).map_err(|source| ProcessError::Io {
            command: self.command.clone(),
            source,
        })
    }

    /// Sends `sig` to the program's whole process group, like a terminal does on Ctrl-C.
    pub fn signal_group(&self, sig: i32) -> Result<(), ProcessError> {
        send_signal(-(self.pid() as i32), sig).map_err(|source| ProcessError::Io {
            command: self.command.clone(),
            source,
        })
    }

    /// Polls `cond` (given stdout and stderr so far) every 5 ms until it holds, the program exits, or `timeout`
    /// passes. Returns whether it held.
    pub fn wait_for(&mut self, timeout: Duration, mut cond: impl FnMut(&Running) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return cond(self);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the program to exit; after `timeout` kills its process group and returns [`ProcessError::Timeout`].
    pub fn wait(mut self, timeout: Duration) -> Result<Output, ProcessError> {
        let deadline = self.started + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => break None,
                // Short polls while commands are typically finishing (keeps benchmark timings honest),
                // longer ones for long-running commands.
                Ok(None) if self.started.elapsed() < Duration::from_secs(2) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(source) => {
                    return Err(ProcessError::Io {
                        command: self.command.clone(),
                        source,
                    })
                }
            }
        };
        match status {
            Some(status) => {
                // Plugins that outlive Terraform would keep the pipes open: don't wait for them forever.
                self.join_pumps(Duration::from_secs(5));
                Ok(self.output(Some(status)))
            }
            None => {
                let _ = send_signal(-(self.pid() as i32), libc::SIGKILL);
                let _ = self.child.wait();
                self.join_pumps(Duration::from_secs(5));
                let output = Box::new(self.output(None));
                Err(ProcessError::Timeout {
                    command: self.command.clone(),
                    timeout,
                    output,
                })
            }
        }
    }

    fn join_pumps(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        for handle in self.pumps.drain(..) {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }

    fn output(&self, status: Option<ExitStatus>) -> Output {
        Output {
            command: self.command.clone(),
            code: status.and_then(|s| s.code()),
            signal: status.and_then(|s| s.signal()),
            stdout: self.stdout_so_far(),
            stderr: self.stderr_so_far(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panics half-way must not leave Terraform or a provider behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = send_signal(-(self.pid() as i32), libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion (see [`spawn`] and [`Running::wait`]).
pub fn run(
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Output, ProcessError> {
    spawn(cmd, stdin)?.wait(timeout)
}

/// `kill(pid, sig)`; a negative pid addresses a process group.
pub fn send_signal(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_field(&stat, 0).is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Field `n` (0 = state) after the `(comm)` part of /proc/PID/stat.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n)
}

/// Direct children of `pid`, from /proc.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) {
            if stat_field(&stat, 1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
                out.push(child);
            }
        }
    }
    out
}

/// All descendants of `pid` (children, grandchildren, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        for c in children(p) {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// The file name of the executable a process runs (from /proc/PID/exe), if readable.
pub fn exe_name(pid: u32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Descendants of `pid` whose executable is named `name`.
pub fn find_descendants_named(pid: u32, name: &str) -> Vec<u32> {
    descendants(pid)
        .into_iter()
        .filter(|&p| exe_name(p).as_deref() == Some(name))
        .collect()
}

/// A `kB` field of /proc/PID/status (`VmHWM` = peak RSS, `VmRSS` = current RSS).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    status_kb_file(&format!("/proc/{pid}/status"), field)
}

/// A `Name: N kB` field of a /proc file such as /proc/meminfo.
pub fn status_kb_file(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn captures_streams_and_exit_code() {
        let out = run(
            sh("echo out; echo err >&2; exit 3"),
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
    }

    #[test]
    fn forwards_stdin() {
        let out = run(
            sh("read x; echo got:$x"),
            Some(b"yes\n".to_vec()),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout.trim(), "got:yes");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let running = spawn(sh("sleep 30 & echo started; wait"), None).unwrap();
        let pid = running.pid();
        let err = running.wait(Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("started"), "{err}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(!is_alive(pid));
    }

    #[test]
    fn finds_children_by_name_and_signals_them() {
        let mut running = spawn(sh("sleep 30 & wait $!"), None).unwrap();
        assert!(
            running.wait_for(Duration::from_secs(5), |r| !find_descendants_named(
                r.pid(),
                "sleep"
            )
            .is_empty())
        );
        let sleeper = find_descendants_named(running.pid(), "sleep")[0];
        assert!(status_kb(sleeper, "VmHWM").unwrap() > 0);
        send_signal(sleeper as i32, libc::SIGKILL).unwrap();
        let out = running.wait(Duration::from_secs(5)).unwrap();
        // `wait` in sh returns 128+9 for a child killed by SIGKILL.
        assert_eq!(out.code, Some(137));
    }

    #[test]
    fn describe_quotes_arguments() {
        let mut c = Command::new("/usr/bin/terraform");
        c.args(["plan", "-var", "a=b c"]);
        assert_eq!(describe(&c), "terraform plan -var 'a=b c'");
    }
}
