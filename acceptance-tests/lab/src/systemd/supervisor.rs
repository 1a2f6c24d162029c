//! The supervisor: the systemd stand-in's daemon, running as PID 1 of a lab host.
//!
//! It owns every unit process, so it can do what the k3s install script and our provider rely on: block a
//! `systemctl restart` until a `Type=notify` service says `READY=1`, restart a crashed `Restart=always` service after
//! `RestartSec`, kill a unit's processes on stop, and capture their output for `journalctl`. It is plain threads and
//! one mutex on purpose: as PID 1 it must also reap every orphan (`waitpid(-1)`), which rules out runtimes that wait
//! on their own children, and the load is a handful of units per host.
//!
//! A unit's processes are told apart by session: every unit process starts with `setsid()`, so "the unit's control
//! group" is "every process whose session id is the main PID's" plus the main process's descendants. That is what
//! `KillMode=control-group` kills; `KillMode=process` (k3s's choice) kills only the main process, and the rest keeps
//! running exactly as on a real systemd host.
//!
//! Not modelled: cgroups and resource limits (`LimitNOFILE=`, `TasksMax=`, `Delegate=` are accepted and ignored),
//! dependencies between units (`After=`/`Wants=`: enabled units simply start at boot), timers, sockets, `ExecReload=`.
//! `User=`/`Group=` are honoured. Non-root callers may only read state (what polkit allows on a real host).
//!
//! `NOTIFY_SOCKET` is a datagram socket per unit start (`/run/systemd/notify/<unit>`), so a `READY=1` is attributed
//! to the right unit without checking sender credentials, and a late datagram from a previous run cannot make a new
//! run look ready.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::journal;
use super::unit::{self, KillMode, RestartPolicy, ServiceType, Unit};

/// Where the control socket lives inside a host.
pub const CONTROL_SOCKET: &str = "/run/systemd/lab-supervisor.sock";
/// Where units are read from.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where per-unit notify sockets are created.
pub const NOTIFY_DIR: &str = "/run/systemd/notify";

/// How a process ended, as systemd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    fn clean(self) -> bool {
        matches!(
            self,
            Exit::Code(0) | Exit::Signal(1) | Exit::Signal(2) | Exit::Signal(13) | Exit::Signal(15)
        )
    }
    fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!(
                "code=exited, status={c}/{}",
                if c == 0 { "SUCCESS" } else { "FAILURE" }
            ),
            Exit::Signal(s) => format!("code=killed, status={s}/{}", signal_name(s)),
        }
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        1 => "HUP",
        2 => "INT",
        6 => "ABRT",
        9 => "KILL",
        11 => "SEGV",
        13 => "PIPE",
        15 => "TERM",
        _ => "SIG",
    }
}

/// `ActiveState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Inactive,
    Activating,
    Active,
    Deactivating,
    Failed,
}

impl Active {
    pub fn as_str(self) -> &'static str {
        match self {
            Active::Inactive => "inactive",
            Active::Activating => "activating",
            Active::Active => "active",
            Active::Deactivating => "deactivating",
            Active::Failed => "failed",
        }
    }
}

/// Runtime state of one unit.
struct UnitState {
    def: Option<Unit>,
    load_error: Option<String>,
    active: Active,
    sub: &'static str,
    main_pid: Option<i32>,
    result: &'static str,
    exec_main_status: Option<Exit>,
    n_restarts: u32,
    /// Bumped by every start and stop so timers, notify readers and waiters of an older run give up.
    gen: u64,
    stopping: bool,
    status_text: String,
    active_enter: Option<u64>,
    inactive_enter: Option<u64>,
    exec_main_start: Option<u64>,
    start_times: VecDeque<Instant>,
    job_lock: Arc<Mutex<()>>,
}

impl UnitState {
    fn new() -> Self {
        UnitState {
            def: None,
            load_error: None,
            active: Active::Inactive,
            sub: "dead",
            main_pid: None,
            result: "success",
            exec_main_status: None,
            n_restarts: 0,
            gen: 0,
            stopping: false,
            status_text: String::new(),
            active_enter: None,
            inactive_enter: None,
            exec_main_start: None,
            start_times: VecDeque::new(),
            job_lock: Arc::new(Mutex::new(())),
        }
    }
}

struct State {
    units: BTreeMap<String, UnitState>,
    /// Exit statuses of control processes (`ExecStartPre=`), collected by the reaper.
    control_exits: HashMap<i32, Exit>,
    control_pids: HashSet<i32>,
    /// main PID -> unit name.
    main_pids: HashMap<i32, String>,
}

struct Inner {
    unit_dir: PathBuf,
    journal_dir: PathBuf,
    notify_dir: PathBuf,
    hostname: String,
    state: Mutex<State>,
    cond: Condvar,
}

/// Handle to the supervisor; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

/// Errors a job reports to `systemctl`.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("Unit {0} not found.")]
    NotFound(String),
    #[error("Unit {0} failed to load: {1}")]
    Load(String, String),
    #[error(
        "Job for {0} failed because the control process exited with error code.\nSee \"systemctl status {0}\" and \"journalctl -xeu {0}\" for details."
    )]
    Failed(String),
    #[error("Job for {0} canceled.")]
    Canceled(String),
    #[error("{0}")]
    Other(String),
}

/// One request from `systemctl` over the control socket.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
}

/// One line of the answer: stdout text, stderr text or the exit code (last).
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    #[serde(rename = "o")]
    Out(String),
    #[serde(rename = "e")]
    Err(String),
    #[serde(rename = "x")]
    Exit(i32),
}

/// How a start request was phrased (they differ when the unit is already running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    Start,
    Restart,
    TryRestart,
}

impl Supervisor {
    /// A supervisor reading units from `unit_dir`, writing journals to `journal_dir` and notify sockets to
    /// `notify_dir`. Production paths are [`UNIT_DIR`], [`journal::JOURNAL_DIR`], [`NOTIFY_DIR`].
    pub fn new(unit_dir: &Path, journal_dir: &Path, notify_dir: &Path, hostname: &str) -> Self {
        let _ = std::fs::create_dir_all(notify_dir);
        let _ = std::fs::create_dir_all(journal_dir);
        Supervisor {
            inner: Arc::new(Inner {
                unit_dir: unit_dir.to_path_buf(),
                journal_dir: journal_dir.to_path_buf(),
                notify_dir: notify_dir.to_path_buf(),
                hostname: hostname.to_string(),
                state: Mutex::new(State {
                    units: BTreeMap::new(),
                    control_exits: HashMap::new(),
                    control_pids: HashSet::new(),
                    main_pids: HashMap::new(),
                }),
                cond: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, unit: &str, msg: &str) {
        journal::append(&self.inner.journal_dir, unit, "systemd", 1, msg);
    }

    /// Starts the reaper thread. As PID 1 it reaps every child; outside a PID namespace (unit tests) it reaps the
    /// supervisor's own children, which are all unit processes.
    pub fn spawn_reaper(&self) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || loop {
                match waitpid(Pid::from_raw(-1), None) {
                    Ok(WaitStatus::Exited(pid, code)) => me.on_exit(pid.as_raw(), Exit::Code(code)),
                    Ok(WaitStatus::Signaled(pid, sig, _)) => {
                        me.on_exit(pid.as_raw(), Exit::Signal(sig as i32))
                    }
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            })
            .expect("spawn reaper thread");
    }

    fn on_exit(&self, pid: i32, exit: Exit) {
        let mut st = self.lock();
        if st.control_pids.remove(&pid) {
            st.control_exits.insert(pid, exit);
        } else if let Some(name) = st.main_pids.remove(&pid) {
            self.on_main_exit(&mut st, &name, pid, exit);
        }
        drop(st);
        self.inner.cond.notify_all();
    }

    /// The main process of `name` ended: decide between inactive, failed and a scheduled restart.
    fn on_main_exit(&self, st: &mut State, name: &str, pid: i32, exit: Exit) {
        let Some(u) = st.units.get_mut(name) else {
            return;
        };
        if u.main_pid != Some(pid) {
            return;
        }
        u.main_pid = None;
        u.exec_main_status = Some(exit);
        let Some(def) = u.def.clone() else { return };
        if u.stopping {
            return; // the stop job finishes the transition
        }
        if exit != Exit::Code(0) {
            self.log(
                name,
                &format!("{name}: Main process exited, {}", exit.describe()),
            );
        }
        if matches!(def.kill_mode, KillMode::ControlGroup | KillMode::Mixed) {
            let sid = pid;
            std::thread::spawn(move || kill_session(sid, Duration::from_secs(5)));
        }
        let was_starting = u.active == Active::Activating;
        let clean = exit.clean() && !(was_starting && def.service_type == ServiceType::Notify);
        if def.service_type == ServiceType::Oneshot && exit == Exit::Code(0) {
            u.result = "success";
            if def.remain_after_exit {
                u.active = Active::Active;
                u.sub = "exited";
                u.active_enter = Some(journal::now_micros());
            } else {
                u.active = Active::Inactive;
                u.sub = "dead";
                u.inactive_enter = Some(journal::now_micros());
            }
            self.log(name, &format!("Finished {}.", describe(&def)));
            return;
        }
        u.result = if clean {
            "success"
        } else if was_starting && def.service_type == ServiceType::Notify && exit.clean() {
            "protocol"
        } else {
            match exit {
                Exit::Code(_) => "exit-code",
                Exit::Signal(_) => "signal",
            }
        };
        let restart = match def.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !clean,
            RestartPolicy::OnAbnormal => {
                matches!(exit, Exit::Signal(s) if s != 15 && s != 1 && s != 2 && s != 13)
            }
            RestartPolicy::OnSuccess => clean,
        };
        if !clean {
            self.log(name, &format!("{name}: Failed with result '{}'.", u.result));
        } else {
            self.log(name, &format!("{name}: Deactivated successfully."));
        }
        if restart {
            let now = Instant::now();
            u.start_times.push_back(now);
            while u
                .start_times
                .front()
                .is_some_and(|t| now.duration_since(*t) > def.start_limit_interval)
            {
                u.start_times.pop_front();
            }
            if !def.start_limit_interval.is_zero()
                && u.start_times.len() as u32 > def.start_limit_burst
            {
                u.active = Active::Failed;
                u.sub = "failed";
                u.result = "start-limit-hit";
                u.inactive_enter = Some(journal::now_micros());
                self.log(
                    name,
                    &format!("{name}: Start request repeated too quickly."),
                );
                self.log(name, &format!("Failed to start {}.", describe(&def)));
                return;
            }
            u.active = Active::Activating;
            u.sub = "auto-restart";
            u.gen += 1;
            let gen = u.gen;
            let delay = def.restart_sec;
            let me = self.clone();
            let name = name.to_string();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let job_lock = {
                    let mut st = me.lock();
                    let Some(u) = st.units.get_mut(&name) else {
                        return;
                    };
                    if u.gen != gen || u.sub != "auto-restart" {
                        return;
                    }
                    u.n_restarts += 1;
                    me.log(
                        &name,
                        &format!(
                            "{name}: Scheduled restart job, restart counter is at {}.",
                            u.n_restarts
                        ),
                    );
                    u.job_lock.clone()
                };
                let _g = job_lock.lock().unwrap_or_else(|e| e.into_inner());
                {
                    let st = me.lock();
                    if st
                        .units
                        .get(&name)
                        .is_none_or(|u| u.gen != gen || u.sub != "auto-restart")
                    {
                        return;
                    }
                }
                let _ = me.start_locked(&name);
            });
        } else {
            u.active = if clean {
                Active::Inactive
            } else {
                Active::Failed
            };
            u.sub = if clean { "dead" } else { "failed" };
            u.inactive_enter = Some(journal::now_micros());
            if !clean && was_starting {
                self.log(name, &format!("Failed to start {}.", describe(&def)));
            }
        }
    }

    /// Loads every unit file (systemctl daemon-reload). Running units keep running with their new definition used
    /// for the next start.
    pub fn daemon_reload(&self) {
        let mut names: Vec<String> = std::fs::read_dir(&self.inner.unit_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".service"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut st = self.lock();
        let known: Vec<String> = st.units.keys().cloned().collect();
        for name in names.iter().chain(known.iter()) {
            let loaded = unit::load(&self.inner.unit_dir, name);
            let u = st.units.entry(name.clone()).or_insert_with(UnitState::new);
            match loaded {
                Ok(def) => {
                    u.def = Some(def);
                    u.load_error = None;
                }
                Err(unit::UnitError::NotFound(_)) => {
                    // A running unit whose file is gone stays loaded (so it can still be stopped), like systemd.
                    if u.main_pid.is_none() && u.active == Active::Inactive {
                        u.def = None;
                    }
                    u.load_error = None;
                }
                Err(e) => {
                    u.def = None;
                    u.load_error = Some(e.to_string());
                }
            }
        }
        st.units.retain(|_, u| {
            u.def.is_some()
                || u.load_error.is_some()
                || u.active != Active::Inactive
                || u.main_pid.is_some()
        });
    }

    /// Makes sure `name` is known, loading it on first reference (as systemd does for units not loaded yet).
    fn ensure_loaded(&self, st: &mut State, name: &str) -> Result<(), JobError> {
        let u = st
            .units
            .entry(name.to_string())
            .or_insert_with(UnitState::new);
        if u.def.is_none() {
            match unit::load(&self.inner.unit_dir, name) {
                Ok(def) => {
                    u.def = Some(def);
                    u.load_error = None;
                }
                Err(unit::UnitError::NotFound(n)) => return Err(JobError::NotFound(n)),
                Err(e) => {
                    let msg = e.to_string();
                    u.load_error = Some(msg.clone());
                    return Err(JobError::Load(name.to_string(), msg));
                }
            }
        }
        Ok(())
    }

    /// True when the unit file changed on disk since it was loaded (systemctl prints a warning then).
    pub fn changed_on_disk(&self, name: &str) -> bool {
        let st = self.lock();
        let Some(def) = st.units.get(name).and_then(|u| u.def.as_ref()) else {
            return false;
        };
        unit::fingerprint_of(&self.inner.unit_dir, name).is_some_and(|fp| fp != def.fingerprint)
    }

    /// Queues a start (or restart) job. With `wait`, returns when the unit is active (or failed).
    pub fn start(&self, name: &str, mode: StartMode, wait: bool) -> Result<(), JobError> {
        let job_lock = {
            let mut st = self.lock();
            if mode == StartMode::TryRestart {
                let running = st
                    .units
                    .get(name)
                    .is_some_and(|u| matches!(u.active, Active::Active | Active::Activating));
                if !running {
                    return Ok(());
                }
            }
            self.ensure_loaded(&mut st, name)?;
            st.units[name].job_lock.clone()
        };
        let me = self.clone();
        let name_owned = name.to_string();
        let job = move || -> Result<u64, JobError> {
            let _g = job_lock.lock().unwrap_or_else(|e| e.into_inner());
            let running = {
                let st = me.lock();
                let u = &st.units[&name_owned];
                match u.active {
                    Active::Active | Active::Deactivating => true,
                    Active::Activating => u.sub != "auto-restart",
                    _ => false,
                }
            };
            if mode != StartMode::Start && running {
                me.stop_locked(&name_owned);
            } else if running {
                return Ok(me.lock().units[&name_owned].gen);
            }
            me.start_locked(&name_owned)
        };
        if !wait {
            std::thread::spawn(move || {
                let _ = job();
            });
            return Ok(());
        }
        let gen = job()?;
        self.wait_started(name, gen)
    }

    /// Waits until the run `gen` of `name` is no longer activating.
    fn wait_started(&self, name: &str, gen: u64) -> Result<(), JobError> {
        let mut st = self.lock();
        loop {
            let u = &st.units[name];
            if u.gen != gen && !(u.sub == "auto-restart" && u.gen == gen + 1) {
                // A stop (or another start) replaced our job.
                return if u.active == Active::Active {
                    Ok(())
                } else {
                    Err(JobError::Canceled(name.to_string()))
                };
            }
            match (u.active, u.sub) {
                (Active::Active, _) => return Ok(()),
                (Active::Inactive, _) if u.result == "success" => return Ok(()),
                (Active::Activating, "auto-restart") => {
                    return Err(JobError::Failed(name.to_string()))
                }
                (Active::Activating, _) | (Active::Deactivating, _) => {}
                _ => return Err(JobError::Failed(name.to_string())),
            }
            st = self.inner.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs `ExecStartPre=` and spawns `ExecStart=`; the caller holds the unit's job lock. Returns the run's gen.
    fn start_locked(&self, name: &str) -> Result<u64, JobError> {
        let (def, gen) = {
            let mut st = self.lock();
            self.ensure_loaded(&mut st, name)?;
            let u = st.units.get_mut(name).expect("loaded");
            let def = u.def.clone().expect("loaded");
            u.gen += 1;
            u.active = Active::Activating;
            u.sub = "start-pre";
            u.result = "success";
            u.status_text.clear();
            u.stopping = false;
            (def, u.gen)
        };
        self.inner.cond.notify_all();
        self.log(name, &format!("Starting {}...", describe(&def)));
        let fail = |me: &Self, result: &'static str| -> Result<u64, JobError> {
            let mut st = me.lock();
            if let Some(u) = st.units.get_mut(name) {
                if u.gen == gen {
                    u.active = Active::Failed;
                    u.sub = "failed";
                    u.result = result;
                    u.inactive_enter = Some(journal::now_micros());
                }
            }
            drop(st);
            me.inner.cond.notify_all();
            me.log(name, &format!("{name}: Failed with result '{result}'."));
            me.log(name, &format!("Failed to start {}.", describe(&def)));
            Err(JobError::Failed(name.to_string()))
        };
        let env = match self.environment(&def) {
            Ok(env) => env,
            Err(msg) => {
                self.log(name, &msg);
                return fail(self, "resources");
            }
        };
        for pre in &def.exec_start_pre {
            let argv = unit::substitute_env(&pre.argv, &env);
            // Spawn under the state lock so the reaper cannot see the exit before the PID is registered.
            let spawned = {
                let mut st = self.lock();
                let r = self.spawn(&def, &argv, &env, None);
                if let Ok(pid) = r {
                    st.control_pids.insert(pid);
                }
                r
            };
            let status = match spawned {
                Ok(pid) => self.wait_control(pid),
                Err(e) => {
                    self.log(name, &format!("{name}: Failed to execute {}: {e}", argv[0]));
                    Exit::Code(203)
                }
            };
            if self.lock().units[name].gen != gen {
                return Err(JobError::Canceled(name.to_string()));
            }
            if status != Exit::Code(0) {
                if pre.ignore_failure {
                    continue;
                }
                self.log(
                    name,
                    &format!("{name}: Control process exited, {}", status.describe()),
                );
                return fail(self, "exit-code");
            }
        }
        let argv = unit::substitute_env(&def.exec_start[0].argv, &env);
        let notify_path = if def.service_type == ServiceType::Notify {
            let path = self.inner.notify_dir.join(name);
            let _ = std::fs::remove_file(&path);
            match UnixDatagram::bind(&path) {
                Ok(sock) => {
                    let me = self.clone();
                    let n = name.to_string();
                    std::thread::spawn(move || me.notify_reader(sock, n, gen));
                    Some(path)
                }
                Err(e) => {
                    self.log(
                        name,
                        &format!("{name}: Failed to create notify socket: {e}"),
                    );
                    return fail(self, "resources");
                }
            }
        } else {
            None
        };
        let mut st = self.lock();
        if st.units[name].gen != gen {
            return Err(JobError::Canceled(name.to_string()));
        }
        let pid = match self.spawn(&def, &argv, &env, notify_path.as_deref()) {
            Ok(pid) => pid,
            Err(e) => {
                drop(st);
                self.log(name, &format!("{name}: Failed to execute {}: {e}", argv[0]));
                return fail(self, "exit-code");
            }
        };
        st.main_pids.insert(pid, name.to_string());
        let u = st.units.get_mut(name).expect("loaded");
        u.main_pid = Some(pid);
        u.exec_main_start = Some(journal::now_micros());
        u.exec_main_status = None;
        match def.service_type {
            ServiceType::Notify | ServiceType::Oneshot => u.sub = "start",
            _ => {
                u.active = Active::Active;
                u.sub = "running";
                u.active_enter = Some(journal::now_micros());
                self.log(name, &format!("Started {}.", describe(&def)));
            }
        }
        drop(st);
        self.inner.cond.notify_all();
        if let (ServiceType::Notify, Some(timeout)) = (def.service_type, def.timeout_start) {
            let me = self.clone();
            let n = name.to_string();
            std::thread::spawn(move || {
                std::thread::sleep(timeout);
                let pid = {
                    let mut st = me.lock();
                    let Some(u) = st.units.get_mut(&n) else {
                        return;
                    };
                    if u.gen != gen || u.active != Active::Activating || u.sub != "start" {
                        return;
                    }
                    me.log(&n, &format!("{n}: start operation timed out. Terminating."));
                    u.stopping = true;
                    u.main_pid
                };
                if let Some(pid) = pid {
                    kill_session(pid, Duration::from_secs(5));
                }
                let mut st = me.lock();
                if let Some(u) = st.units.get_mut(&n) {
                    u.stopping = false;
                    u.active = Active::Failed;
                    u.sub = "failed";
                    u.result = "timeout";
                }
                drop(st);
                me.inner.cond.notify_all();
            });
        }
        Ok(gen)
    }

    fn wait_control(&self, pid: i32) -> Exit {
        let mut st = self.lock();
        loop {
            if let Some(exit) = st.control_exits.remove(&pid) {
                return exit;
            }
            st = self.inner.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn notify_reader(&self, sock: UnixDatagram, name: String, gen: u64) {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = vec![0u8; 4096];
        loop {
            {
                let st = self.lock();
                if st.units.get(&name).is_none_or(|u| u.gen != gen) {
                    return;
                }
            }
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut st = self.lock();
            let Some(u) = st.units.get_mut(&name) else {
                return;
            };
            if u.gen != gen {
                return;
            }
            for line in text.lines() {
                if line == "READY=1" && u.active == Active::Activating && u.sub == "start" {
                    u.active = Active::Active;
                    u.sub = "running";
                    u.active_enter = Some(journal::now_micros());
                    if let Some(def) = &u.def {
                        self.log(&name, &format!("Started {}.", describe(def)));
                    }
                } else if let Some(s) = line.strip_prefix("STATUS=") {
                    u.status_text = s.to_string();
                } else if let Some(p) = line.strip_prefix("MAINPID=") {
                    if let Ok(p) = p.parse::<i32>() {
                        u.main_pid = Some(p);
                    }
                }
            }
            drop(st);
            self.inner.cond.notify_all();
        }
    }

    /// The environment of a unit process: systemd's defaults, then `Environment=`, then `EnvironmentFile=`.
    fn environment(&self, def: &Unit) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        );
        env.insert("LANG".to_string(), "C.UTF-8".to_string());
        env.insert(
            "INVOCATION_ID".to_string(),
            format!("{:032x}", journal::now_micros()),
        );
        for (k, v) in &def.environment {
            env.insert(k.clone(), v.clone());
        }
        for (path, optional) in &def.environment_files {
            match unit::read_env_file(Path::new(path)) {
                Ok(vars) => env.extend(vars),
                Err(_) if *optional => {}
                Err(e) => {
                    return Err(format!(
                        "{}: Failed to load environment files: {path}: {e}",
                        def.name
                    ))
                }
            }
        }
        Ok(env)
    }

    /// Spawns one unit process in its own session with output going to the unit's journal.
    fn spawn(
        &self,
        def: &Unit,
        argv: &[String],
        env: &BTreeMap<String, String>,
        notify: Option<&Path>,
    ) -> std::io::Result<i32> {
        // A missing program must be found out here, not by `spawn`: when exec fails, the standard library waits for
        // the failed child itself, but this process is PID 1 and its reaper may collect that child first, which
        // makes `spawn` panic. k3s's unit has `ExecStartPre=-/sbin/modprobe ...`, so hosts without kmod hit this.
        let program = resolve_program(&argv[0], env.get("PATH").map(String::as_str))?;
        let (reader, writer) = nix::unistd::pipe().map_err(std::io::Error::from)?;
        let writer2 = writer.try_clone()?;
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(env)
            .current_dir(def.working_directory.as_deref().unwrap_or("/"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2));
        if let Some(p) = notify {
            cmd.env("NOTIFY_SOCKET", p);
        }
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        // User=/Group=: looked up in the host's /etc/passwd and /etc/group, as systemd does.
        if let Some(user) = def
            .raw
            .get("User")
            .map(|u| u.trim())
            .filter(|u| !u.is_empty() && *u != "root")
        {
            let (uid, gid, home) = lookup_user(user)
                .ok_or_else(|| std::io::Error::other(format!("user {user} not found")))?;
            let gid = match def
                .raw
                .get("Group")
                .map(|g| g.trim())
                .filter(|g| !g.is_empty())
            {
                Some(g) => lookup_group(g)
                    .ok_or_else(|| std::io::Error::other(format!("group {g} not found")))?,
                None => gid,
            };
            cmd.uid(uid)
                .gid(gid)
                .env("USER", user)
                .env("LOGNAME", user)
                .env("HOME", home);
        }
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        drop(cmd);
        // The reaper owns the exit status; dropping the handle does not wait.
        drop(child);
        let ident = Path::new(&argv[0])
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = self.inner.journal_dir.clone();
        let unit_name = def.name.clone();
        std::thread::spawn(move || pump_output(reader, &dir, &unit_name, &ident, pid));
        Ok(pid)
    }

    /// Stops `name` (systemctl stop). With `wait`, returns when it is down.
    pub fn stop(&self, name: &str, wait: bool) -> Result<(), JobError> {
        let job_lock = {
            let mut st = self.lock();
            match st.units.get(name) {
                Some(u) => u.job_lock.clone(),
                None => {
                    // Stopping an unknown unit is an error only when no unit file exists.
                    self.ensure_loaded(&mut st, name)?;
                    return Ok(());
                }
            }
        };
        // Cancel a pending auto-restart or an activation in progress right away, so a waiting start gives up.
        {
            let mut st = self.lock();
            if let Some(u) = st.units.get_mut(name) {
                u.gen += 1;
                u.stopping = true;
            }
        }
        self.inner.cond.notify_all();
        let me = self.clone();
        let n = name.to_string();
        let job = move || {
            let _g = job_lock.lock().unwrap_or_else(|e| e.into_inner());
            me.stop_locked(&n);
        };
        if wait {
            job();
        } else {
            std::thread::spawn(job);
        }
        Ok(())
    }

    /// Signals and waits for the unit's processes; the caller holds the job lock.
    fn stop_locked(&self, name: &str) {
        let (def, pid) = {
            let mut st = self.lock();
            let Some(u) = st.units.get_mut(name) else {
                return;
            };
            u.gen += 1;
            let Some(def) = u.def.clone() else {
                u.stopping = false;
                return;
            };
            match u.main_pid {
                None => {
                    let was = u.active;
                    u.stopping = false;
                    if was != Active::Failed || u.sub == "auto-restart" {
                        if was != Active::Inactive {
                            self.log(name, &format!("Stopped {}.", describe(&def)));
                        }
                        u.active = Active::Inactive;
                        u.sub = "dead";
                        u.inactive_enter = Some(journal::now_micros());
                    }
                    drop(st);
                    self.inner.cond.notify_all();
                    return;
                }
                Some(pid) => {
                    u.stopping = true;
                    u.active = Active::Deactivating;
                    u.sub = "stop-sigterm";
                    (def, pid)
                }
            }
        };
        self.inner.cond.notify_all();
        self.log(name, &format!("Stopping {}...", describe(&def)));
        match def.kill_mode {
            KillMode::ControlGroup => signal_unit(pid, Signal::SIGTERM),
            KillMode::Process | KillMode::Mixed => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            KillMode::None => {}
        }
        let deadline = Instant::now() + def.timeout_stop;
        let mut st = self.lock();
        loop {
            let alive = st.units.get(name).is_some_and(|u| u.main_pid == Some(pid));
            if !alive {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.log(
                    name,
                    &format!("{name}: State 'stop-sigterm' timed out. Killing."),
                );
                if def.kill_mode == KillMode::Process {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                } else {
                    signal_unit(pid, Signal::SIGKILL);
                }
                st = self.lock();
                let (g, _) = self
                    .inner
                    .cond
                    .wait_timeout(st, Duration::from_secs(5))
                    .unwrap_or_else(|e| e.into_inner());
                st = g;
                break;
            }
            let (g, _) = self
                .inner
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
        }
        drop(st);
        if matches!(def.kill_mode, KillMode::ControlGroup | KillMode::Mixed) {
            kill_session(pid, Duration::from_secs(5));
        }
        let mut st = self.lock();
        if let Some(u) = st.units.get_mut(name) {
            if u.main_pid == Some(pid) {
                // Still not reaped (e.g. not our child): forget it.
                u.main_pid = None;
                st.main_pids.remove(&pid);
            }
            let u = st.units.get_mut(name).expect("present");
            u.stopping = false;
            u.active = Active::Inactive;
            u.sub = "dead";
            u.result = "success";
            u.inactive_enter = Some(journal::now_micros());
        }
        drop(st);
        self.inner.cond.notify_all();
        self.log(name, &format!("Stopped {}.", describe(&def)));
    }

    /// Clears a failed state and the start-rate counter (systemctl reset-failed).
    pub fn reset_failed(&self, name: Option<&str>) {
        let mut st = self.lock();
        for (n, u) in st.units.iter_mut() {
            if name.is_some_and(|x| x != n) {
                continue;
            }
            u.start_times.clear();
            if u.active == Active::Failed {
                u.active = Active::Inactive;
                u.sub = "dead";
                u.result = "success";
            }
        }
    }

    /// Sends `sig` to the unit's main process (or all its processes).
    pub fn kill_unit(&self, name: &str, sig: Signal, all: bool) -> Result<(), JobError> {
        let pid = self.lock().units.get(name).and_then(|u| u.main_pid);
        let Some(pid) = pid else {
            return Err(JobError::Other(format!(
                "Failed to kill unit {name}: No main process to kill"
            )));
        };
        if all {
            signal_unit(pid, sig);
        } else {
            let _ = kill(Pid::from_raw(pid), sig);
        }
        Ok(())
    }

    /// Unit file state: `enabled`, `disabled`, `static` (no `[Install]`), or `None` when there is no unit file.
    pub fn unit_file_state(&self, name: &str) -> Option<&'static str> {
        let dir = &self.inner.unit_dir;
        if !dir.join(name).exists() {
            return None;
        }
        let enabled = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
                    .any(|e| e.path().join(name).symlink_metadata().is_ok())
            })
            .unwrap_or(false);
        if enabled {
            return Some("enabled");
        }
        match unit::load(dir, name) {
            Ok(u) if u.wanted_by.is_empty() => Some("static"),
            _ => Some("disabled"),
        }
    }

    /// Creates the `.wants` symlinks (systemctl enable); returns the lines systemctl prints.
    pub fn enable(&self, name: &str) -> Result<Vec<String>, JobError> {
        let dir = &self.inner.unit_dir;
        let def = unit::load(dir, name).map_err(|e| match e {
            unit::UnitError::NotFound(n) => JobError::Other(format!(
                "Failed to enable unit: Unit file {n} does not exist."
            )),
            e => JobError::Load(name.to_string(), e.to_string()),
        })?;
        let mut out = Vec::new();
        for target in &def.wanted_by {
            let wants = dir.join(format!("{target}.wants"));
            let link = wants.join(name);
            if link.symlink_metadata().is_ok() {
                continue;
            }
            std::fs::create_dir_all(&wants).map_err(|e| JobError::Other(e.to_string()))?;
            std::os::unix::fs::symlink(dir.join(name), &link)
                .map_err(|e| JobError::Other(e.to_string()))?;
            out.push(format!(
                "Created symlink {} \u{2192} {}.",
                link.display(),
                dir.join(name).display()
            ));
        }
        Ok(out)
    }

    /// Removes the `.wants` symlinks (systemctl disable); returns the lines systemctl prints.
    pub fn disable(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.inner.unit_dir) {
            for e in rd.filter_map(|e| e.ok()) {
                if !e.file_name().to_string_lossy().ends_with(".wants") {
                    continue;
                }
                let link = e.path().join(name);
                if link.symlink_metadata().is_ok() && std::fs::remove_file(&link).is_ok() {
                    out.push(format!("Removed \"{}\".", link.display()));
                }
            }
        }
        out
    }

    /// Units linked from `multi-user.target.wants` / `default.target.wants`, i.e. started at boot.
    pub fn enabled_units(&self) -> Vec<String> {
        let mut out = Vec::new();
        for target in [
            "multi-user.target.wants",
            "default.target.wants",
            "graphical.target.wants",
        ] {
            if let Ok(rd) = std::fs::read_dir(self.inner.unit_dir.join(target)) {
                for e in rd.filter_map(|e| e.ok()) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.ends_with(".service") && !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Snapshot of one unit for `is-active`, `status`, `show`.
    pub fn info(&self, name: &str) -> UnitInfo {
        let st = self.lock();
        let u = st.units.get(name);
        let file_state = self.unit_file_state(name);
        let load_state = match u {
            Some(u) if u.def.is_some() => "loaded",
            Some(u) if u.load_error.is_some() => "error",
            _ if file_state.is_some() => "loaded",
            _ => "not-found",
        };
        let def = u
            .and_then(|u| u.def.clone())
            .or_else(|| unit::load(&self.inner.unit_dir, name).ok());
        UnitInfo {
            name: name.to_string(),
            description: def
                .as_ref()
                .map(describe)
                .unwrap_or_else(|| name.to_string()),
            load_state,
            active: u.map(|u| u.active).unwrap_or(Active::Inactive),
            sub: u.map(|u| u.sub).unwrap_or("dead"),
            main_pid: u.and_then(|u| u.main_pid),
            result: u.map(|u| u.result).unwrap_or("success"),
            n_restarts: u.map(|u| u.n_restarts).unwrap_or(0),
            exec_main_status: u.and_then(|u| u.exec_main_status).map(|e| match e {
                Exit::Code(c) => c,
                Exit::Signal(s) => s,
            }),
            exec_main_code: u.and_then(|u| u.exec_main_status).map(|e| match e {
                Exit::Code(_) => 1,
                Exit::Signal(_) => 2,
            }),
            unit_file_state: file_state,
            fragment_path: def.as_ref().map(|d| d.path.display().to_string()),
            status_text: u.map(|u| u.status_text.clone()).unwrap_or_default(),
            active_enter: u.and_then(|u| u.active_enter),
            inactive_enter: u.and_then(|u| u.inactive_enter),
            exec_main_start: u.and_then(|u| u.exec_main_start),
            def,
            load_error: u.and_then(|u| u.load_error.clone()),
        }
    }

    /// Names of all known units (loaded or with a unit file).
    pub fn unit_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().units.keys().cloned().collect();
        if let Ok(rd) = std::fs::read_dir(&self.inner.unit_dir) {
            for e in rd.filter_map(|e| e.ok()) {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.ends_with(".service") && e.path().is_file() && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        names.sort();
        names
    }

    /// Where the journal is kept.
    pub fn journal_dir(&self) -> &Path {
        &self.inner.journal_dir
    }

    /// The host name used in journal output.
    pub fn hostname(&self) -> &str {
        &self.inner.hostname
    }
}

/// Streams replies back to the client; a vanished client is ignored (the job goes on).
pub struct ReplyWriter {
    conn: UnixStream,
}

impl ReplyWriter {
    pub fn new(conn: UnixStream) -> Self {
        ReplyWriter { conn }
    }
    pub fn send(&mut self, r: Reply) {
        if let Ok(mut s) = serde_json::to_string(&r) {
            s.push('\n');
            let _ = self.conn.write_all(s.as_bytes());
        }
    }
    pub fn out(&mut self, s: impl Into<String>) {
        let mut s = s.into();
        s.push('\n');
        self.send(Reply::Out(s));
    }
    pub fn err(&mut self, s: impl Into<String>) {
        let mut s = s.into();
        s.push('\n');
        self.send(Reply::Err(s));
    }
}

/// A snapshot of a unit's state.
#[derive(Debug, Clone)]
pub struct UnitInfo {
    pub name: String,
    pub description: String,
    pub load_state: &'static str,
    pub active: Active,
    pub sub: &'static str,
    pub main_pid: Option<i32>,
    pub result: &'static str,
    pub n_restarts: u32,
    pub exec_main_status: Option<i32>,
    pub exec_main_code: Option<i32>,
    pub unit_file_state: Option<&'static str>,
    pub fragment_path: Option<String>,
    pub status_text: String,
    pub active_enter: Option<u64>,
    pub inactive_enter: Option<u64>,
    pub exec_main_start: Option<u64>,
    pub def: Option<Unit>,
    pub load_error: Option<String>,
}

fn describe(def: &Unit) -> String {
    if def.description.is_empty() {
        def.name.clone()
    } else {
        def.description.clone()
    }
}

/// `(uid, gid, home)` of `user` (a name or a number) from /etc/passwd.
fn lookup_user(user: &str) -> Option<(u32, u32, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 6 && (f[0] == user || f[2] == user) {
            Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].to_string()))
        } else {
            None
        }
    })
}

/// The gid of `group` (a name or a number) from /etc/group.
fn lookup_group(group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == group)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

fn pump_output(reader: OwnedFd, dir: &Path, unit: &str, ident: &str, pid: i32) {
    let file = std::fs::File::from(reader);
    let mut r = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                journal::append(dir, unit, ident, pid, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Parses `/proc/PID/stat` into (ppid, session).
fn proc_stat(pid: i32) -> Option<(i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some((fields.get(1)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// Every process belonging to the unit whose main process (and session leader) is `main`: same session, or a
/// descendant of `main`.
pub fn unit_processes(main: i32) -> Vec<i32> {
    let mut procs: Vec<(i32, i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.filter_map(|e| e.ok()) {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() {
                if let Some((ppid, sid)) = proc_stat(pid) {
                    procs.push((pid, ppid, sid));
                }
            }
        }
    }
    let mut set: HashSet<i32> = procs
        .iter()
        .filter(|p| p.2 == main || p.0 == main)
        .map(|p| p.0)
        .collect();
    loop {
        let before = set.len();
        for p in &procs {
            if set.contains(&p.1) {
                set.insert(p.0);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.remove(&1);
    set.remove(&std::process::id().cast_signed());
    set.into_iter().collect()
}

fn signal_unit(main: i32, sig: Signal) {
    for pid in unit_processes(main) {
        let _ = kill(Pid::from_raw(pid), sig);
        if sig == Signal::SIGTERM {
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
    }
}

/// SIGTERM then (after `grace`) SIGKILL to everything left in the unit's session.
fn kill_session(main: i32, grace: Duration) {
    signal_unit(main, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if unit_processes(main).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_unit(main, Signal::SIGKILL);
}

/// Resolves a unit's program the way exec would (an absolute or relative path as given, else the first executable
/// match on `PATH`), so that a missing program is an ordinary error instead of a failed exec.
fn resolve_program(program: &str, path: Option<&str>) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let not_found = || {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{program}: No such file or directory"),
        )
    };
    if program.contains('/') {
        let p = Path::new(program);
        return if executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(not_found())
        };
    }
    path.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
        .ok_or_else(not_found)
}
