//! Namespace plumbing: creating a host's namespaces and running commands inside existing ones.
//!
//! A host is held by its init process (PID 1 of its own PID namespace, also in fresh network, UTS, mount and IPC
//! namespaces) rather than by `ip netns` bind mounts. Why: killing that one process makes the kernel tear down every
//! process of the host and, with them, its namespaces, veth and mounts, so "power off a host" and crash cleanup
//! cannot leave anything behind, and there are no bind-mounted namespace files to forget. The per-lab switch and
//! the workstation are plain `ip netns` namespaces because nothing runs in the switch and the workstation must
//! outlive any process (Terraform runs come and go there).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::Error;

/// The namespaces a host gets.
const HOST_NS_FLAGS: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC;

/// A freshly spawned host init: its PID as seen from here, and the pipe that releases it.
pub struct SpawnedInit {
    pub pid: i32,
    pub go: std::process::ChildStdin,
}

/// Spawns `program args` as PID 1 of new PID/mount/UTS/network/IPC namespaces, detached from the caller (own
/// session; its parent exits at once). Its stdin is a pipe: the init waits for a line on it before booting, so the
/// caller can first plug its network in.
pub fn spawn_in_new_namespaces(
    program: &Path,
    args: &[&OsStr],
    console: File,
) -> Result<SpawnedInit, Error> {
    let (pid_r, pid_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("pipe", e.into()))?;
    let wraw = pid_w.as_raw_fd();
    let console2 = console
        .try_clone()
        .map_err(|e| Error::io("dup console", e))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::from(console))
        .stderr(Stdio::from(console2))
        .current_dir("/");
    // SAFETY: only async-signal-safe calls (setsid, unshare, fork, write, _exit) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(HOST_NS_FLAGS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                pid => {
                    let b = pid.to_ne_bytes();
                    libc::write(wraw, b.as_ptr().cast(), b.len());
                    libc::_exit(0);
                }
            }
        });
    }
    let mut child: Child = cmd.spawn().map_err(|e| Error::io("spawn host init", e))?;
    drop(pid_w);
    let go = child.stdin.take().expect("piped stdin");
    let mut buf = [0u8; 4];
    let mut f = File::from(pid_r);
    let read = f.read_exact(&mut buf);
    let _ = child.wait();
    read.map_err(|e| Error::io("read host init pid", e))?;
    Ok(SpawnedInit {
        pid: i32::from_ne_bytes(buf),
        go,
    })
}

/// A namespace file opened for `setns`.
pub fn open_ns(path: &Path) -> Result<OwnedFd, Error> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(&format!("open {}", path.display()), e))
}

/// Makes `cmd` run inside the network namespace `ns` (the fd is moved into the command).
pub fn in_netns(cmd: &mut Command, ns: OwnedFd) {
    // SAFETY: setns is async-signal-safe; the fd stays open as long as the closure (owned by cmd) lives.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Path of a named (`ip netns`) namespace.
pub fn named_netns(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Runs `cmd`, failing with its stderr when it exits non-zero.
pub fn run(cmd: &mut Command, what: &str) -> Result<String, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(what, e))?;
    if !out.status.success() {
        return Err(Error::Command {
            what: what.to_string(),
            status: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with `script` on stdin, optionally inside netns `ns`.
pub fn ip_batch(ns: Option<OwnedFd>, script: &str, what: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut cmd = Command::new("ip");
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(ns) = ns {
        in_netns(&mut cmd, ns);
    }
    let mut child = cmd.spawn().map_err(|e| Error::io(what, e))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| Error::io(what, e))?;
    let out = child.wait_with_output().map_err(|e| Error::io(what, e))?;
    if !out.status.success() {
        return Err(Error::Command {
            what: what.to_string(),
            status: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// `(ppid, state, start time in clock ticks)` of a process, from `/proc/PID/stat`.
pub fn proc_stat(pid: i32) -> Option<(i32, char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some((
        f.get(1)?.parse().ok()?,
        f.first()?.chars().next()?,
        f.get(19)?.parse().ok()?,
    ))
}

/// True if `pid` exists, is not a zombie, and (when given) started at `start`.
pub fn alive(pid: i32, start: Option<u64>) -> bool {
    match proc_stat(pid) {
        Some((_, state, st)) => state != 'Z' && state != 'X' && start.is_none_or(|s| s == st),
        None => false,
    }
}

/// The argv of a process.
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// All PIDs currently in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The PID-namespace identity (`pid:[inode]`) of a process.
pub fn pid_ns_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// SIGKILLs `pid` and waits (up to 5 s) until it is gone; reaps it when it is our child (or we are its subreaper).
pub fn kill_and_wait(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(pid),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
        if !alive(pid, None) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Powers a host off: SIGKILL to its init (the kernel then kills every process of its PID namespace), and waits
/// until no process of that namespace is left (zombies waiting for a parent outside the host excepted).
pub fn kill_host(init: i32) {
    let ns = pid_ns_of(init);
    kill_and_wait(init);
    if let Some(ns) = ns {
        wait_namespaces_empty(&[ns], std::time::Duration::from_secs(5));
    }
}

/// Waits until no live process is in any of the PID namespaces `namespaces` (`pid:[inode]` strings).
pub fn wait_namespaces_empty(namespaces: &[String], timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        let left = all_pids()
            .into_iter()
            .any(|p| alive(p, None) && pid_ns_of(p).is_some_and(|n| namespaces.contains(&n)));
        if !left {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
