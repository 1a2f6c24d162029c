//! Runs a real haproxy from the rendered configuration, the way os-haproxy's configd actions do.
//!
//! - `configtest`: render `haproxy.cfg.staging` from the saved model, run `haproxy -c -f staging`, return its output.
//! - `reconfigure`: stop when disabled; else render staging and deploy it (copy over the live `haproxy.cfg`) only if
//!   `haproxy -c` passes (`setup.sh deploy`), then start haproxy, or reload it: `-sf <old pids>` (graceful: the old
//!   process finishes its connections) when `general.gracefulStop=1`, else `-st` (the box's default `hardreload`,
//!   which cuts every open connection). As on the box (`setup.sh deploy; rc-wrapper.sh reload`), a refused deploy
//!   still reloads haproxy, with the old live configuration.
//!
//! Every haproxy process this runner started is remembered and killed when the runner is dropped, so tests leave no
//! daemons behind.

pub mod render;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use crate::error::Error;
use crate::store::ModelData;

pub struct Runner {
    bin: PathBuf,
    dir: PathBuf,
    started: Mutex<Vec<i32>>,
}

/// Output of `haproxy -c`.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub ok: bool,
    pub output: String,
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !is_zombie(pid) && is_haproxy(pid)
}

/// Guards against pid reuse: only processes whose command name is haproxy count.
fn is_haproxy(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim().starts_with("haproxy"))
        .unwrap_or(false)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn signal(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: sending a signal to a pid we started (read from our own pid file) has no memory-safety impact.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Runner {
    pub fn new(bin: PathBuf, dir: PathBuf) -> Result<Runner, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io(dir.display().to_string(), e))?;
        Ok(Runner {
            bin,
            dir,
            started: Mutex::new(Vec::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn live_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }

    pub fn staging_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg.staging")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }

    /// `template reload OPNsense/HAProxy`: renders the staging file from the saved model.
    pub fn render_staging(&self, data: &ModelData) -> Result<String, Error> {
        let cfg = render::render(data, &self.dir);
        let p = self.staging_path();
        std::fs::write(&p, &cfg).map_err(|e| Error::Io(p.display().to_string(), e))?;
        Ok(cfg)
    }

    /// `haproxy -c -f <file>` with stdout and stderr together (as configd's `2>&1`).
    pub async fn check(&self, file: &Path) -> Result<CheckResult, Error> {
        let out = tokio::process::Command::new(&self.bin)
            .arg("-c")
            .arg("-f")
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Haproxy(format!("cannot run {}: {e}", self.bin.display())))?;
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(CheckResult {
            ok: out.status.success(),
            output,
        })
    }

    /// Pids of running haproxy processes from the pid file.
    pub fn running_pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.pid_path())
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .filter(|p| alive(*p))
            .collect()
    }

    pub fn is_running(&self) -> bool {
        !self.running_pids().is_empty()
    }

    /// `setup.sh deploy`: copy staging over live only if it passes `haproxy -c`. Returns whether it deployed.
    pub async fn deploy(&self) -> Result<bool, Error> {
        let staging = self.staging_path();
        let check = self.check(&staging).await?;
        if !check.ok {
            tracing::warn!("haproxy config refused, not deployed:\n{}", check.output);
            return Ok(false);
        }
        // unique temp name: service actions are not serialised (as on a real box), two deploys may overlap
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".haproxy.cfg.{}.{n}.tmp", std::process::id()));
        std::fs::copy(&staging, &tmp).map_err(|e| Error::Io(tmp.display().to_string(), e))?;
        std::fs::rename(&tmp, self.live_path())
            .map_err(|e| Error::Io(self.live_path().display().to_string(), e))?;
        Ok(true)
    }

    async fn launch(&self, extra: &[String]) -> Result<(), Error> {
        let log_path = self.dir.join("haproxy.start.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| Error::Io(log_path.display().to_string(), e))?;
        let status = tokio::process::Command::new(&self.bin)
            .arg("-D")
            .arg("-f")
            .arg(self.live_path())
            .arg("-p")
            .arg(self.pid_path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .await
            .map_err(|e| Error::Haproxy(format!("cannot run {}: {e}", self.bin.display())))?;
        let pids = self.running_pids();
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(pids.iter().copied());
        if !status.success() {
            let msg = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(Error::Haproxy(format!("haproxy failed to start: {msg}")));
        }
        Ok(())
    }

    /// `haproxy start` (deploy first).
    pub async fn start(&self) -> Result<(), Error> {
        if self.is_running() {
            return Ok(());
        }
        self.deploy().await?;
        if !self.live_path().exists() {
            return Err(Error::Haproxy(
                "no valid configuration has ever been deployed".into(),
            ));
        }
        self.launch(&[]).await
    }

    /// `haproxy reload`: `setup.sh deploy; rc-wrapper.sh reload`. The reload runs even when the deploy was refused
    /// (the `;` in the configd action), so the old live config is reloaded, and with the default hard reload that
    /// still cuts every open connection. `graceful` = `-sf`, else `-st`.
    pub async fn reload(&self, graceful: bool) -> Result<(), Error> {
        self.deploy().await?;
        if !self.live_path().exists() {
            return Err(Error::Haproxy(
                "no valid configuration has ever been deployed".into(),
            ));
        }
        let old = self.running_pids();
        if old.is_empty() {
            return self.launch(&[]).await;
        }
        let mut args = vec![if graceful {
            "-sf".to_string()
        } else {
            "-st".to_string()
        }];
        args.extend(old.iter().map(|p| p.to_string()));
        self.launch(&args).await
    }

    /// `haproxy stop`.
    pub async fn stop(&self) {
        let pids = self.running_pids();
        for p in &pids {
            signal(*p, libc::SIGTERM);
        }
        for _ in 0..50 {
            if pids.iter().all(|p| !alive(*p)) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let _ = std::fs::remove_file(self.pid_path());
    }

    /// Kills every haproxy process this runner started (used on shutdown and drop).
    pub fn kill_all(&self) {
        let mut pids: Vec<i32> = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        pids.extend(self.running_pids());
        for p in pids {
            if alive(p) {
                signal(p, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.kill_all();
    }
}
