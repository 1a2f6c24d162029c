//! Loopback test hosts: each simulated host is a root directory plus its own 127.x address, running the real
//! `k3s` binary of this crate (and, for HA, Debian's etcd) as child processes. READY is observed through a real
//! `NOTIFY_SOCKET`, and the cluster is inspected with Debian's real `kubectl`.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const K3S: &str = env!("CARGO_BIN_EXE_k3s");

pub struct Node {
    pub name: String,
    pub ip: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    notify: UnixDatagram,
    notify_path: PathBuf,
    starts: u32,
}

impl Node {
    pub fn new(name: &str, ip: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        Node {
            name: name.into(),
            ip: ip.into(),
            dir,
            child: None,
            notify,
            notify_path,
            starts: 0,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// An absolute host path under this node's root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.path("/etc/rancher/k3s/k3s.yaml")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root().join(format!("k3s-{}.log", self.starts))
    }

    /// All logs of all starts.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.root().join(format!("k3s-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    /// Start `k3s <role> <args>` with this node's root, loopback address and notify socket.
    pub fn start(&mut self, role: &str, args: &[&str], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "{} already running", self.name);
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(K3S);
        cmd.arg(role)
            .args(args)
            .args(["--node-ip", &self.ip, "--node-name", &self.name]);
        if role == "server" {
            cmd.args(["--bind-address", &self.ip]);
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("K3S_SIM_ROOT", self.root())
            .env("K3S_SIM_LOCALHOST", &self.ip)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Wait for READY=1 on the notify socket; panics with the log on timeout or exit.
    pub fn wait_ready(&mut self, secs: u64) {
        self.notify
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 256];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    return;
                }
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("{} exited ({st}) before READY:\n{}", self.name, self.log());
            }
        }
        panic!("{} not ready after {secs}s:\n{}", self.name, self.log());
    }

    /// Wait for the process to exit on its own; returns its exit code.
    pub fn wait_exit(&mut self, secs: u64) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{} still running after {secs}s:\n{}", self.name, self.log());
    }

    /// SIGTERM and wait (like `systemctl stop`).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}:6443", self.ip)
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.path("/var/lib/rancher/k3s/server/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Run `k3s <args>` (CLI subcommands) as this host.
    pub fn k3s(&self, args: &[&str]) -> Output {
        Command::new(K3S)
            .args(args)
            .env("K3S_SIM_ROOT", self.root())
            .env("K3S_SIM_LOCALHOST", &self.ip)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Real kubectl with a kubeconfig.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// kubectl that must succeed; returns stdout.
pub fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let o = kubectl(kubeconfig, args);
    assert!(
        o.status.success(),
        "kubectl {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

/// Poll `f` until it returns true.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

/// A plain TCP forwarder: the stand-in for the VIP / HAProxy frontend.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    addr: String,
}

impl Forwarder {
    pub fn start(listen: &str, target: &str) -> Forwarder {
        let l = TcpListener::bind(listen).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, target) = (stop.clone(), target.to_string());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        if let Ok(u) = TcpStream::connect(&target) {
                            pipe(c.try_clone().unwrap(), u.try_clone().unwrap(), s.clone());
                            pipe(u, c, s.clone());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Forwarder {
            stop,
            addr: listen.to_string(),
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // The listener closes when the thread notices; give it a moment.
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if std::io::Write::write_all(&mut to, &buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

/// A kubeconfig copy whose server points at `url` (what users do with the VIP).
pub fn kubeconfig_for(src: &Path, url: &str, dest: &Path) {
    let text = std::fs::read_to_string(src).unwrap();
    let out: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("server: ") {
                format!("    server: {url}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dest, out).unwrap();
}

/// This crate's `k3s` binary with every occurrence of its compiled-in version string replaced by `v` (same
/// length): what `build-artifacts.sh` produces with `K3S_SIM_VERSION=v`, without a second build in tests.
pub fn with_version(v: &str) -> Vec<u8> {
    let bin = std::fs::read(K3S).unwrap();
    let from = k3s_sim::VERSION.as_bytes();
    assert_eq!(
        from.len(),
        v.len(),
        "replacement version must have the same length"
    );
    let mut out = Vec::with_capacity(bin.len());
    let mut i = 0;
    while i < bin.len() {
        if bin[i..].starts_with(from) {
            out.extend_from_slice(v.as_bytes());
            i += from.len();
        } else {
            out.push(bin[i]);
            i += 1;
        }
    }
    out
}
