//! A lab: its hosts, its switch and workstation namespaces, its keys, and the operations tests need.
//!
//! The state of a lab is a JSON file (`<root>/<name>/state.json`) so that the CLI, several test processes and a
//! crash-cleanup can all find it; every mutating operation holds an exclusive `flock` on `<root>/<name>.lock`.
//! Secrets (the `ops` sudo password, the SSH private key) are files of mode 0600 in the lab directory, never in
//! argv, logs or the state file.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ns;
use crate::opnsense::EmulatorInfo;
use crate::systemd::journal;
use crate::systemd::supervisor::CONTROL_SOCKET;
use crate::write_secret;
use crate::Error;

/// Where labs live unless `$HOMELAB_LAB_ROOT` or [`LabSpec::root`] says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/homelab-lab";
/// The lab network (TEST-NET-1); exists only inside lab namespaces.
pub const NETWORK: &str = "192.0.2.0/24";
/// The workstation's address.
pub const WS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// The control-plane VIP, bound by the load balancer host.
pub const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The load balancer host's address.
pub const LB_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The non-root user whose sudo asks for a password.
pub const OPS_USER: &str = "ops";
/// Name of the load balancer host.
pub const LB_HOST: &str = "opnsense";
/// Name and address of the second load balancer host of an HA pair ([`LabSpec::opnsense_pair`]).
pub const LB2_HOST: &str = "opnsense2";
pub const LB2_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// What a host is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Server,
    Agent,
    LoadBalancer,
}

/// One host of a lab, as recorded in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostState {
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    /// Position in the lab; names the host's port on the switch (`v<index>`).
    pub index: u32,
    /// PID (in the root PID namespace) of the host's init while it runs.
    pub pid: Option<i32>,
    /// Start time of that PID (clock ticks), to tell a reused PID apart.
    pub pid_start: Option<u64>,
    /// False after [`Lab::cut_link`].
    pub link_up: bool,
}

/// The persisted description of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub dir: PathBuf,
    /// The `homelab-lab` binary the hosts run.
    pub bin: PathBuf,
    pub switch_netns: String,
    pub ws_netns: String,
    pub ws_ip: Ipv4Addr,
    pub vip: Option<Ipv4Addr>,
    pub hosts: Vec<HostState>,
    /// Private key authorized for `root` and `ops` on every host.
    pub ssh_key: PathBuf,
    /// known_hosts with every host's key, by IP and by name.
    pub known_hosts: PathBuf,
    pub ops_user: String,
    /// File (0600) holding the `ops` user's sudo password.
    pub ops_password_file: PathBuf,
    pub emulator: Option<EmulatorInfo>,
    /// The second emulator of an HA pair (on `opnsense2`).
    #[serde(default)]
    pub emulator2: Option<EmulatorInfo>,
    /// File (0600) with the password of the `hasync` user that `opnsense2` accepts HA syncs from (a pair only).
    #[serde(default)]
    pub hasync_password_file: Option<PathBuf>,
}

/// What [`Lab::up`] creates.
#[derive(Debug, Clone)]
pub struct LabSpec {
    /// 1-20 characters `a-z0-9-`; prefixes the lab's namespace names.
    pub name: String,
    pub servers: u32,
    pub agents: u32,
    /// Add the load balancer host (`opnsense`, 192.0.2.1, VIP 192.0.2.100) running the OPNsense emulator.
    pub opnsense: bool,
    /// With `opnsense`: a second load balancer host (`opnsense2`, 192.0.2.3) running a second emulator, the two
    /// electing the CARP VIPs' holder between them (advertisements on UDP port [`crate::opnsense::CARP_PORT`]); the VIP is then not
    /// brought up at boot: CARP puts it on the MASTER (once the VIP exists as a CARP VIP in the configuration).
    pub opnsense_pair: bool,
    /// Parent of the lab directory; default `$HOMELAB_LAB_ROOT` or [`DEFAULT_ROOT`].
    pub root: Option<PathBuf>,
    /// The `homelab-lab` binary; default [`crate::locate_binary`].
    pub bin: Option<PathBuf>,
}

impl LabSpec {
    /// The seed's lab: 3 servers, 3 workers, the load balancer.
    pub fn new(name: &str) -> Self {
        LabSpec {
            name: name.to_string(),
            servers: 3,
            agents: 3,
            opnsense: true,
            opnsense_pair: false,
            root: None,
            bin: None,
        }
    }
}

/// Result of a `systemctl` call made from outside a host.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A running (or partly stopped) lab. Cheap to re-open from its state file with [`Lab::open`].
#[derive(Debug, Clone)]
pub struct Lab {
    state: LabState,
}

/// Set to `1` to keep labs for debugging: [`LabGuard`]s then leave their lab up (and say how to remove it), and a
/// failed [`Lab::up`] leaves what it had started.
pub const KEEP_LABS_ENV: &str = "HOMELAB_KEEP_LABS";

fn keep_labs() -> bool {
    std::env::var_os(KEEP_LABS_ENV).is_some_and(|v| v == "1")
}

/// A lab that is taken down when the guard is dropped: at the end of a test, on an early return, and when a panic
/// unwinds. Why: a test that panicked between `Lab::up` and wrapping the lab in a guard of its own left the lab
/// (namespaces, host processes) running. [`Lab::up_guarded`] hands the lab out already guarded, so there is no
/// such window. Derefs to [`Lab`]; [`LabGuard::keep`] disarms it, [`LabGuard::down`] takes the lab down and
/// reports errors. With `HOMELAB_KEEP_LABS=1` ([`KEEP_LABS_ENV`]) a dropped guard leaves the lab up.
#[derive(Debug)]
#[must_use = "dropping the guard takes the lab down at once"]
pub struct LabGuard {
    lab: Option<Lab>,
}

impl LabGuard {
    /// Guards a lab (e.g. one from [`Lab::open`]): dropping the guard takes it down.
    pub fn new(lab: Lab) -> Self {
        LabGuard { lab: Some(lab) }
    }

    pub fn lab(&self) -> &Lab {
        self.lab
            .as_ref()
            .expect("a guard holds its lab until dropped")
    }

    pub fn lab_mut(&mut self) -> &mut Lab {
        self.lab
            .as_mut()
            .expect("a guard holds its lab until dropped")
    }

    /// Disarms the guard: the lab stays up.
    pub fn keep(mut self) -> Lab {
        self.lab
            .take()
            .expect("a guard holds its lab until dropped")
    }

    /// Takes the lab down now, reporting what went wrong (a plain drop ignores errors).
    pub fn down(mut self) -> Result<(), Error> {
        self.lab
            .take()
            .expect("a guard holds its lab until dropped")
            .down()
    }
}

impl From<Lab> for LabGuard {
    fn from(lab: Lab) -> Self {
        LabGuard::new(lab)
    }
}

impl std::ops::Deref for LabGuard {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab()
    }
}

impl std::ops::DerefMut for LabGuard {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab_mut()
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let Some(lab) = self.lab.take() else {
            return;
        };
        if keep_labs() {
            eprintln!(
                "homelab-lab: keeping lab {:?} ({KEEP_LABS_ENV}=1); remove it with `homelab-lab --root {} --name {} down`",
                lab.name(),
                lab.state.dir.parent().unwrap_or(Path::new("/")).display(),
                lab.name(),
            );
            return;
        }
        let name = lab.state.name.clone();
        if let Err(e) = lab.down() {
            eprintln!("homelab-lab: taking lab {name:?} down failed: {e}");
        }
    }
}

/// Inside [`Lab::up`], while it holds the lab lock: removes what a failed (or panicking) `up` had started.
struct UndoUp<'a> {
    root: &'a Path,
    name: &'a str,
    armed: bool,
}

impl Drop for UndoUp<'_> {
    fn drop(&mut self) {
        if self.armed && !keep_labs() {
            match cleanup_locked(self.root, self.name) {
                Ok(()) => {
                    let _ = fs::remove_file(self.root.join(format!("{}.lock", self.name)));
                }
                Err(e) => eprintln!(
                    "homelab-lab: cleaning up the failed lab {:?} failed: {e}",
                    self.name
                ),
            }
        }
    }
}

fn root_dir(root: Option<&Path>) -> PathBuf {
    root.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HOMELAB_LAB_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// An exclusive lock on one lab name, released on drop.
struct LabLock {
    _file: File,
}

impl LabLock {
    fn acquire(root: &Path, name: &str) -> Result<Self, Error> {
        fs::create_dir_all(root).map_err(|e| Error::io("create lab root", e))?;
        let path = root.join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open lab lock", e))?;
        // SAFETY: flock on a valid fd.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if rc != 0 {
            return Err(Error::io("lock lab", std::io::Error::last_os_error()));
        }
        Ok(LabLock { _file: file })
    }
}

/// The hosts of a lab built from `spec`, with the seed's addresses.
fn plan_hosts(spec: &LabSpec) -> Vec<HostState> {
    let mut hosts = Vec::new();
    let mut index = 0;
    let mut push = |name: String, role: Role, last: u8| {
        index += 1;
        hosts.push(HostState {
            name,
            role,
            ip: Ipv4Addr::new(192, 0, 2, last),
            index,
            pid: None,
            pid_start: None,
            link_up: true,
        });
    };
    if spec.opnsense {
        push(LB_HOST.to_string(), Role::LoadBalancer, 1);
        if spec.opnsense_pair {
            push(LB2_HOST.to_string(), Role::LoadBalancer, 3);
        }
    }
    let server_octets = [2u8, 7, 8];
    for i in 0..spec.servers {
        let last = server_octets
            .get(i as usize)
            .copied()
            .unwrap_or_else(|| 6 + i as u8);
        push(format!("k8s-control-{}", i + 1), Role::Server, last);
    }
    // Agents from .21 up to .49 (.50 is the workstation, .100 the VIP); a larger lab continues at .101.
    for i in 0..spec.agents {
        let last = if i < 29 { 21 + i as u8 } else { 72 + i as u8 };
        push(format!("k8s-worker-{}", i + 1), Role::Agent, last);
    }
    hosts
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn write(path: &Path, content: &str) -> Result<(), Error> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(|e| Error::io(&format!("mkdir {}", p.display()), e))?;
    }
    let _ = fs::remove_file(path);
    fs::write(path, content).map_err(|e| Error::io(&format!("write {}", path.display()), e))
}

fn mkdirs(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|e| Error::io(&format!("mkdir {}", path.display()), e))
}

/// Hashes `password` (SHA-512 crypt) with `openssl passwd -6`, the password going through stdin.
fn hash_password(password: &str) -> Result<String, Error> {
    let mut child = Command::new("openssl")
        .args(["passwd", "-6", "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io("openssl passwd", e))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(format!("{password}\n").as_bytes())
        .map_err(|e| Error::io("openssl passwd", e))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("openssl passwd", e))?;
    if !out.status.success() {
        return Err(Error::Other("openssl passwd failed".into()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

const SSHD_CONFIG: &str = "# homelab lab sshd
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
MaxSessions 100
LoginGraceTime 30
ClientAliveInterval 0
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
";

const SSH_UNIT: &str = "[Unit]
Description=OpenBSD Secure Shell server
Documentation=man:sshd(8) man:sshd_config(5)

[Service]
Type=notify
ExecStartPre=/usr/sbin/sshd -t
ExecStart=/usr/sbin/sshd -D -e
KillMode=process
Restart=on-failure
RestartSec=1s

[Install]
WantedBy=multi-user.target
";

/// Adds `line` to a colon-separated account file unless an entry for `user` exists.
fn add_account_line(path: &Path, user: &str, line: &str) -> Result<(), Error> {
    let mut text = fs::read_to_string(path).unwrap_or_default();
    if text.lines().any(|l| l.split(':').next() == Some(user)) {
        return Ok(());
    }
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    write(path, &text)?;
    Ok(())
}

/// Rewrites one field of `user`'s line in an account file.
fn set_account_field(path: &Path, user: &str, field: usize, value: &str) -> Result<(), Error> {
    let text =
        fs::read_to_string(path).map_err(|e| Error::io(&format!("read {}", path.display()), e))?;
    let mut out = String::new();
    for l in text.lines() {
        let mut f: Vec<String> = l.split(':').map(str::to_string).collect();
        if f.first().map(String::as_str) == Some(user) && f.len() > field {
            f[field] = value.to_string();
        }
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    write(path, &out)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(&format!("chmod {}", path.display()), e))
}

impl Lab {
    // ----- lifecycle ------------------------------------------------------------------------------------------

    /// Like [`Lab::up`], with the lab in a [`LabGuard`] from the moment it exists, so that it is taken down however
    /// the caller ends. What tests should use.
    pub fn up_guarded(spec: &LabSpec) -> Result<LabGuard, Error> {
        Lab::up(spec).map(LabGuard::new)
    }

    /// Brings a lab up, or returns the running one when it is already up (idempotent). Leftovers of a crashed lab
    /// of the same name are cleaned up first; when `up` fails (or panics) part way, what it had started is removed
    /// again (kept with `HOMELAB_KEEP_LABS=1`). The caller owns the lab: take it down with [`Lab::down`], or use
    /// [`Lab::up_guarded`].
    pub fn up(spec: &LabSpec) -> Result<Lab, Error> {
        validate_name(&spec.name)?;
        let root = root_dir(spec.root.as_deref());
        let _lock = LabLock::acquire(&root, &spec.name)?;
        let dir = root.join(&spec.name);
        if let Ok(lab) = Lab::read_state(&dir) {
            if lab.healthy() {
                let want: Vec<String> = plan_hosts(spec).into_iter().map(|h| h.name).collect();
                let have: Vec<String> = lab.state.hosts.iter().map(|h| h.name.clone()).collect();
                if want != have {
                    return Err(Error::Other(format!(
                        "lab {} is up with hosts {have:?}, not {want:?}; take it down first",
                        spec.name
                    )));
                }
                return Ok(lab);
            }
        }
        cleanup_locked(&root, &spec.name)?;
        // Declared after the lock, so it runs (under the lock) before the lock is released.
        let mut undo = UndoUp {
            root: &root,
            name: &spec.name,
            armed: true,
        };
        let bin = match &spec.bin {
            Some(b) => b.canonicalize().map_err(|e| Error::io("lab binary", e))?,
            None => crate::locate_binary()?,
        };
        become_subreaper();
        let t0 = Instant::now();
        mkdirs(&dir.join("keys"))?;
        mkdirs(&dir.join("hosts"))?;
        set_mode(&dir, 0o700)?;
        let key = dir.join("keys/id_ed25519");
        ns::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("homelab-lab-{}", spec.name))
                .arg("-f")
                .arg(&key),
            "ssh-keygen (lab key)",
        )?;
        let password = random_hex(12)?;
        let password_file = dir.join("keys/ops-password");
        write_secret(&password_file, password.as_bytes())?;
        let hash = hash_password(&password)?;
        let mut state = LabState {
            name: spec.name.clone(),
            dir: dir.clone(),
            bin,
            switch_netns: format!("hl-{}-sw", spec.name),
            ws_netns: format!("hl-{}-ws", spec.name),
            ws_ip: WS_IP,
            vip: spec.opnsense.then_some(VIP),
            hosts: plan_hosts(spec),
            ssh_key: key.clone(),
            known_hosts: dir.join("keys/known_hosts"),
            ops_user: OPS_USER.to_string(),
            ops_password_file: password_file,
            emulator: None,
            emulator2: None,
            hasync_password_file: None,
        };
        let mut api_secret = String::new();
        if spec.opnsense {
            let api_key = random_hex(20)?;
            api_secret = random_hex(24)?;
            state.emulator = Some(crate::opnsense::emulator_info(
                &dir.join("hosts").join(LB_HOST),
                LB_IP,
                &api_key,
            ));
            if spec.opnsense_pair {
                // the second box has its own key; the same secret would do no harm, but a pair has two keys
                state.emulator2 = Some(crate::opnsense::emulator_info(
                    &dir.join("hosts").join(LB2_HOST),
                    LB2_IP,
                    &random_hex(20)?,
                ));
                let f = dir.join("keys/hasync-password");
                write_secret(&f, random_hex(12)?.as_bytes())?;
                state.hasync_password_file = Some(f);
            }
        }
        let mut lab = Lab { state };
        lab.save()?;
        lab.create_network()?;
        let pubkey = fs::read_to_string(key.with_extension("pub"))
            .map_err(|e| Error::io("read lab pubkey", e))?;
        let hosts_file = lab.etc_hosts();
        // Prepare and boot every host in parallel: most of the time is spent waiting for processes.
        let results: Vec<Result<HostState, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = lab
                .state
                .hosts
                .iter()
                .map(|h| {
                    let lab = &lab;
                    let (pubkey, hash, hosts_file, api_secret) =
                        (&pubkey, &hash, &hosts_file, &api_secret);
                    s.spawn(move || {
                        lab.prepare_host(h, pubkey, hash, hosts_file, api_secret)?;
                        lab.boot(h)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("host thread panicked".into())))
                })
                .collect()
        });
        let mut first_err = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(h) => lab.state.hosts[i] = h,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        lab.write_known_hosts()?;
        lab.save()?;
        if let Some(e) = first_err {
            return Err(e);
        }
        let _ = t0;
        undo.armed = false;
        Ok(lab)
    }

    /// Opens an existing lab by name (under `$HOMELAB_LAB_ROOT` or [`DEFAULT_ROOT`]).
    pub fn open(name: &str) -> Result<Lab, Error> {
        Lab::open_in(None, name)
    }

    /// Opens an existing lab by name under `root`.
    pub fn open_in(root: Option<&Path>, name: &str) -> Result<Lab, Error> {
        validate_name(name)?;
        let dir = root_dir(root).join(name);
        Lab::read_state(&dir).map_err(|e| match e {
            Error::State { .. } if !dir.join("state.json").exists() => {
                Error::NoSuchLab(name.to_string())
            }
            e => e,
        })
    }

    fn read_state(dir: &Path) -> Result<Lab, Error> {
        let path = dir.join("state.json");
        let text = fs::read_to_string(&path).map_err(|e| Error::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let state: LabState = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Lab { state })
    }

    /// Re-reads the state file (another process may have stopped or started hosts).
    pub fn reload(&mut self) -> Result<(), Error> {
        *self = Lab::read_state(&self.state.dir)?;
        Ok(())
    }

    fn save(&self) -> Result<(), Error> {
        let path = self.state.dir.join("state.json");
        let tmp = self.state.dir.join("state.json.tmp");
        let text =
            serde_json::to_string_pretty(&self.state).map_err(|e| Error::Other(e.to_string()))?;
        fs::write(&tmp, text).map_err(|e| Error::io("write state", e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("write state", e))
    }

    fn lock(&self) -> Result<LabLock, Error> {
        LabLock::acquire(
            self.state.dir.parent().unwrap_or(Path::new("/")),
            &self.state.name,
        )
    }

    /// True when the switch and workstation namespaces exist and every host that should run does.
    pub fn healthy(&self) -> bool {
        ns::named_netns(&self.state.switch_netns).exists()
            && ns::named_netns(&self.state.ws_netns).exists()
            && self.state.hosts.iter().all(|h| match h.pid {
                Some(pid) => ns::alive(pid, h.pid_start),
                None => true,
            })
    }

    /// Removes the lab: every host process, its namespaces and the lab directory.
    pub fn down(self) -> Result<(), Error> {
        let root = self
            .state
            .dir
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        Lab::down_by_name(Some(&root), &self.state.name)
    }

    /// Removes the lab `name` whether or not its state file is intact (also the crash cleanup). Idempotent.
    pub fn down_by_name(root: Option<&Path>, name: &str) -> Result<(), Error> {
        validate_name(name)?;
        let root = root_dir(root);
        let _lock = LabLock::acquire(&root, name)?;
        cleanup_locked(&root, name)?;
        let _ = fs::remove_file(root.join(format!("{name}.lock")));
        Ok(())
    }

    /// Names of the labs that have a state file under `root`.
    pub fn list(root: Option<&Path>) -> Vec<String> {
        let root = root_dir(root);
        let mut names: Vec<String> = fs::read_dir(&root)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("state.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    // ----- accessors --------------------------------------------------------------------------------------------

    /// The persisted state (hosts, addresses, key paths, emulator).
    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Every host, load balancer first.
    pub fn hosts(&self) -> &[HostState] {
        &self.state.hosts
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Result<&HostState, Error> {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::NoSuchHost(name.to_string()))
    }

    fn host_mut(&mut self, name: &str) -> Result<&mut HostState, Error> {
        self.state
            .hosts
            .iter_mut()
            .find(|h| h.name == name)
            .ok_or_else(|| Error::NoSuchHost(name.to_string()))
    }

    /// PID of `host`'s init if it runs. Another process (the CLI, another test handle) may have restarted the
    /// host since this handle was made, so a stale PID is checked against the state file before giving up.
    pub fn live_pid(&self, host: &str) -> Result<i32, Error> {
        let h = self.host(host)?;
        if let Some(p) = h.pid.filter(|p| ns::alive(*p, h.pid_start)) {
            return Ok(p);
        }
        let fresh = Lab::read_state(&self.state.dir)?;
        let h = fresh.host(host)?;
        h.pid
            .filter(|p| ns::alive(*p, h.pid_start))
            .ok_or_else(|| Error::HostDown(host.to_string()))
    }

    /// The private key authorized for `root` and `ops` on every host.
    pub fn ssh_key(&self) -> &Path {
        &self.state.ssh_key
    }

    /// known_hosts for every host (by IP and name).
    pub fn known_hosts(&self) -> &Path {
        &self.state.known_hosts
    }

    /// The `ops` user's sudo password.
    pub fn ops_password(&self) -> Result<String, Error> {
        fs::read_to_string(&self.state.ops_password_file)
            .map_err(|e| Error::io("read ops password", e))
    }

    /// Directory holding a host's private files (`etc`, `usr-local-bin`, `home`, `root`, `var`).
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.state.dir.join("hosts").join(host)
    }

    /// Where an absolute path inside `host` is stored on the machine, for paths in the host's private
    /// directories (`/etc`, `/usr/local/bin`, `/home`, `/root`, `/var`); `None` for shared paths like `/usr`.
    pub fn host_path(&self, host: &str, path: &Path) -> Option<PathBuf> {
        let hd = self.host_dir(host);
        for (prefix, sub) in [
            ("/usr/local/bin", "usr-local-bin"),
            ("/etc", "etc"),
            ("/home", "home"),
            ("/root", "root"),
            ("/var", "var"),
        ] {
            if let Ok(rest) = path.strip_prefix(prefix) {
                return Some(hd.join(sub).join(rest));
            }
        }
        None
    }

    /// Copies `src` (a file on this machine) to `dest` inside `host` with `mode` (e.g. `/usr/local/bin/k3s`, 0o755).
    /// Works whether or not the host is running.
    pub fn install_file(
        &self,
        host: &str,
        src: &Path,
        dest: &Path,
        mode: u32,
    ) -> Result<(), Error> {
        let data = fs::read(src).map_err(|e| Error::io(&format!("read {}", src.display()), e))?;
        self.write_file(host, dest, &data, mode)
    }

    /// Makes `dest` inside `host` a symlink to `src`, an absolute path on this machine that hosts can see (e.g. a
    /// binary under the cargo target directory). Cheaper than [`Lab::install_file`] for big binaries shared by
    /// every host; use `install_file` when the host must own a real file (upgrades, hashes of distinct versions).
    pub fn link_file(&self, host: &str, src: &Path, dest: &Path) -> Result<(), Error> {
        self.host(host)?;
        let path = self.host_path(host, dest).ok_or_else(|| {
            Error::Other(format!("{} is not in a per-host directory", dest.display()))
        })?;
        if let Some(p) = path.parent() {
            mkdirs(p)?;
        }
        let src = src
            .canonicalize()
            .map_err(|e| Error::io(&format!("resolve {}", src.display()), e))?;
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(&src, &path)
            .map_err(|e| Error::io(&format!("link {}", path.display()), e))
    }

    /// Writes `data` to `dest` inside `host` with `mode`, owned by root. `dest` must be in a private directory
    /// (see [`Lab::host_path`]).
    pub fn write_file(&self, host: &str, dest: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
        self.host(host)?;
        let path = self.host_path(host, dest).ok_or_else(|| {
            Error::Other(format!("{} is not in a per-host directory", dest.display()))
        })?;
        if let Some(p) = path.parent() {
            mkdirs(p)?;
        }
        // Write beside and rename, so a running binary being replaced is not corrupted ("text file busy").
        let tmp = path.with_file_name(format!(
            ".{}.lab-tmp",
            path.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| Error::io(&format!("write {}", path.display()), e))?;
        f.write_all(data)
            .map_err(|e| Error::io(&format!("write {}", path.display()), e))?;
        drop(f);
        set_mode(&tmp, mode)?;
        fs::rename(&tmp, &path).map_err(|e| Error::io(&format!("rename {}", path.display()), e))
    }

    /// Emulator address and credentials (when the lab has the load balancer).
    pub fn emulator(&self) -> Option<&EmulatorInfo> {
        self.state.emulator.as_ref()
    }

    /// The second emulator of an HA pair ([`LabSpec::opnsense_pair`]): its own key and credentials file (the
    /// lab's one generated secret).
    pub fn emulator2(&self) -> Option<&EmulatorInfo> {
        self.state.emulator2.as_ref()
    }

    // ----- running things -----------------------------------------------------------------------------------

    /// A command that runs `program` inside `host` (all its namespaces, as root, cwd `/`, a clean environment with
    /// a root PATH and HOME). Add arguments and spawn it as usual. Uses `nsenter`.
    pub fn host_command(&self, host: &str, program: impl AsRef<OsStr>) -> Result<Command, Error> {
        let pid = self.live_pid(host)?;
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(pid.to_string())
            .args(["-m", "-u", "-n", "-i", "-p", "--"])
            .arg(program)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root")
            .env("LANG", "C.UTF-8")
            .current_dir("/");
        Ok(cmd)
    }

    /// Runs `sh -c script` inside `host` and returns its output (whatever the exit code).
    pub fn exec(&self, host: &str, script: &str) -> Result<Output, Error> {
        self.host_command(host, "sh")?
            .args(["-c", script])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("exec in host", e))
    }

    /// A command that runs `program` in the workstation network namespace (network only: the filesystem,
    /// environment and user are the caller's, which is what Terraform needs).
    pub fn ws_command(&self, program: impl AsRef<OsStr>) -> Result<Command, Error> {
        let fd = ns::open_ns(&ns::named_netns(&self.state.ws_netns))?;
        let mut cmd = Command::new(program);
        ns::in_netns(&mut cmd, fd);
        Ok(cmd)
    }

    /// The `ssh` options that reach `host` as `user` with the lab's key and known_hosts (strict host key checking),
    /// ending with `user@ip`. Usable from the workstation namespace.
    pub fn ssh_args(&self, host: &str, user: &str) -> Result<Vec<String>, Error> {
        let h = self.host(host)?;
        Ok(vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.state.ssh_key.display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.state.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
            format!("{user}@{}", h.ip),
        ])
    }

    /// `ssh ... user@host` as a command in the workstation namespace; append the remote command.
    pub fn ssh_command(&self, host: &str, user: &str) -> Result<Command, Error> {
        let mut cmd = self.ws_command("ssh")?;
        cmd.args(self.ssh_args(host, user)?);
        Ok(cmd)
    }

    /// Runs `systemctl ARGS` on `host` through its supervisor's socket (no process is started in the host).
    pub fn systemctl(&self, host: &str, args: &[&str]) -> Result<CtlOutput, Error> {
        let pid = self.live_pid(host)?;
        let sock = PathBuf::from(format!("/proc/{pid}/root{CONTROL_SOCKET}"));
        ctl_call(&sock, args)
    }

    /// Polls `systemctl is-active UNIT` on `host` until it prints `state` (e.g. `active`), up to `timeout`.
    /// Returns the last state seen.
    pub fn wait_unit_state(
        &self,
        host: &str,
        unit: &str,
        state: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.systemctl(host, &["is-active", unit])?;
            let seen = out.stdout.trim().to_string();
            if seen == state || Instant::now() >= deadline {
                return Ok(seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The journal of `unit` on `host`, formatted like `journalctl -u UNIT` (readable while the host is down).
    pub fn journal(&self, host: &str, unit: &str) -> Vec<String> {
        let dir = self.host_dir(host).join("var/log/lab-journal");
        let unit = crate::systemd::unit::normalize_name(unit);
        journal::read(&dir, &unit)
            .iter()
            .map(|r| journal::format_short(r, host))
            .collect()
    }

    // ----- faults ------------------------------------------------------------------------------------------------

    /// Powers a host off: SIGKILL to its init, which takes every process of the host (sshd, units, sessions) and
    /// its network with it. Files in its private directories stay.
    pub fn stop_host(&mut self, host: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.reload()?;
        let h = self.host_mut(host)?;
        if let Some(pid) = h.pid.take() {
            if ns::alive(pid, h.pid_start) {
                ns::kill_host(pid);
            }
        }
        h.pid_start = None;
        self.save()
    }

    /// Boots a stopped host: fresh namespaces, `/run` and `/tmp`; units enabled in `/etc/systemd/system` start.
    pub fn start_host(&mut self, host: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.reload()?;
        let h = self.host(host)?.clone();
        if h.pid.is_some_and(|p| ns::alive(p, h.pid_start)) {
            return Ok(());
        }
        become_subreaper();
        let booted = self.boot(&h)?;
        *self.host_mut(host)? = booted;
        self.save()
    }

    /// Stop then start.
    pub fn restart_host(&mut self, host: &str) -> Result<(), Error> {
        self.stop_host(host)?;
        self.start_host(host)
    }

    /// Pulls the host's cable: its switch port goes down (its processes keep running, its packets go nowhere).
    pub fn cut_link(&mut self, host: &str) -> Result<(), Error> {
        self.set_link(host, false)
    }

    /// Plugs the cable back in.
    pub fn restore_link(&mut self, host: &str) -> Result<(), Error> {
        self.set_link(host, true)
    }

    fn set_link(&mut self, host: &str, up: bool) -> Result<(), Error> {
        let _lock = self.lock()?;
        self.reload()?;
        let h = self.host(host)?.clone();
        if h.pid.is_some() {
            let sw = ns::open_ns(&ns::named_netns(&self.state.switch_netns))?;
            ns::ip_batch(
                Some(sw),
                &format!("link set v{} {}\n", h.index, if up { "up" } else { "down" }),
                "set switch port",
            )?;
        }
        self.host_mut(host)?.link_up = up;
        self.save()
    }

    /// Drops every SSH session on `host` mid-command by killing the sshd processes serving them (the listener
    /// stays, so new connections work). Commands started by those sessions lose their connection like on a real
    /// network failure. Returns how many sshd processes were killed.
    pub fn drop_ssh_sessions(&self, host: &str) -> Result<usize, Error> {
        let pid = self.live_pid(host)?;
        let Some(target_ns) = ns::pid_ns_of(pid) else {
            return Err(Error::HostDown(host.to_string()));
        };
        let mut killed = 0;
        for p in ns::all_pids() {
            let argv = ns::cmdline(p);
            let Some(first) = argv.first() else { continue };
            if !first.starts_with("sshd: ") || argv.join(" ").contains("[listener]") {
                continue;
            }
            if ns::pid_ns_of(p).as_deref() != Some(target_ns.as_str()) {
                continue;
            }
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                killed += 1;
            }
        }
        Ok(killed)
    }

    /// Processes (PIDs in the root namespace) that belong to `host`, its init included.
    pub fn host_processes(&self, host: &str) -> Vec<i32> {
        let Ok(pid) = self.live_pid(host) else {
            return Vec::new();
        };
        let Some(target) = ns::pid_ns_of(pid) else {
            return Vec::new();
        };
        ns::all_pids()
            .into_iter()
            .filter(|p| ns::pid_ns_of(*p).as_deref() == Some(target.as_str()))
            .collect()
    }

    // ----- internals ------------------------------------------------------------------------------------------

    fn create_network(&self) -> Result<(), Error> {
        for n in [&self.state.switch_netns, &self.state.ws_netns] {
            ns::run(Command::new("ip").args(["netns", "add", n]), "ip netns add")?;
        }
        let sw = ns::open_ns(&ns::named_netns(&self.state.switch_netns))?;
        ns::ip_batch(
            Some(sw),
            &format!(
                "link set lo up\nlink add br0 type bridge\nlink set br0 up\n\
                 link add ws0 type veth peer name eth0 address {} netns {}\nlink set ws0 master br0\nlink set ws0 up\n",
                host_mac(self.state.ws_ip),
                self.state.ws_netns
            ),
            "switch setup",
        )?;
        let ws = ns::open_ns(&ns::named_netns(&self.state.ws_netns))?;
        ns::ip_batch(
            Some(ws),
            &format!(
                "link set lo up\naddr add {}/24 dev eth0\nlink set eth0 up\n",
                self.state.ws_ip
            ),
            "workstation setup",
        )
    }

    fn etc_hosts(&self) -> String {
        let mut s =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        s.push_str(&format!("{}\tws\n", self.state.ws_ip));
        for h in &self.state.hosts {
            s.push_str(&format!("{}\t{}\n", h.ip, h.name));
        }
        s
    }

    /// Creates a host's private directories on first use (copy of /etc, accounts, sshd, keys).
    fn prepare_host(
        &self,
        h: &HostState,
        pubkey: &str,
        hash: &str,
        hosts_file: &str,
        api_secret: &str,
    ) -> Result<(), Error> {
        let hd = self.host_dir(&h.name);
        if hd.join(".prepared").exists() {
            return Ok(());
        }
        let _ = fs::remove_dir_all(&hd);
        mkdirs(&hd)?;
        ns::run(
            Command::new("cp").arg("-a").arg("/etc").arg(hd.join("etc")),
            "copy /etc",
        )?;
        let etc = hd.join("etc");
        // Only our units: the machine's enabled units (etcd, haproxy, ...) must not start on lab hosts.
        let sysd = etc.join("systemd/system");
        let _ = fs::remove_dir_all(&sysd);
        write(&sysd.join("ssh.service"), SSH_UNIT)?;
        mkdirs(&sysd.join("multi-user.target.wants"))?;
        std::os::unix::fs::symlink(
            "/etc/systemd/system/ssh.service",
            sysd.join("multi-user.target.wants/ssh.service"),
        )
        .map_err(|e| Error::io("enable ssh", e))?;
        // A host key of its own.
        if let Ok(rd) = fs::read_dir(etc.join("ssh")) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        ns::run(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C"])
                .arg(format!("root@{}", h.name))
                .arg("-f")
                .arg(etc.join("ssh/ssh_host_ed25519_key")),
            "ssh-keygen (host key)",
        )?;
        write(&etc.join("ssh/sshd_config"), SSHD_CONFIG)?;
        let _ = fs::remove_dir_all(etc.join("ssh/sshd_config.d"));
        write(&etc.join("hostname"), &format!("{}\n", h.name))?;
        write(
            &etc.join("hosts"),
            &format!("127.0.1.1\t{}\n{hosts_file}", h.name),
        )?;
        write(
            &etc.join("resolv.conf"),
            // A nameserver on the host's own loopback: nothing answers there and no query leaves the host, but
            // programs that insist on one (HAProxy 2.6 builds its implicit `default` resolvers from it, which the
            // emulator's rendered `httpclient.resolvers.prefer` needs) start as on a real machine.
            "# homelab lab: no DNS; names are in /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )?;
        write(&etc.join("machine-id"), &format!("{}\n", random_hex(16)?))?;
        // Accounts: root unlocked for key login, `ops` with a password and sudo.
        set_account_field(&etc.join("shadow"), "root", 1, "*")?;
        let passwd = fs::read_to_string(etc.join("passwd")).unwrap_or_default();
        let used: Vec<u32> = passwd
            .lines()
            .filter_map(|l| l.split(':').nth(2).and_then(|u| u.parse().ok()))
            .collect();
        let group_text = fs::read_to_string(etc.join("group")).unwrap_or_default();
        let used_g: Vec<u32> = group_text
            .lines()
            .filter_map(|l| l.split(':').nth(2).and_then(|u| u.parse().ok()))
            .collect();
        let uid = (1000..60000)
            .find(|u| !used.contains(u) && !used_g.contains(u))
            .unwrap_or(1500);
        add_account_line(
            &etc.join("passwd"),
            OPS_USER,
            &format!("{OPS_USER}:x:{uid}:{uid}:ops:/home/{OPS_USER}:/bin/bash"),
        )?;
        add_account_line(
            &etc.join("group"),
            OPS_USER,
            &format!("{OPS_USER}:x:{uid}:"),
        )?;
        add_account_line(
            &etc.join("shadow"),
            OPS_USER,
            &format!("{OPS_USER}:{hash}:20000:0:99999:7:::"),
        )?;
        if etc.join("gshadow").exists() {
            add_account_line(&etc.join("gshadow"), OPS_USER, &format!("{OPS_USER}:!::"))?;
        }
        let group = fs::read_to_string(etc.join("group")).unwrap_or_default();
        let group: String = group
            .lines()
            .map(|l| {
                if l.starts_with("sudo:")
                    && !l
                        .split(':')
                        .nth(3)
                        .unwrap_or("")
                        .split(',')
                        .any(|m| m == OPS_USER)
                {
                    if l.ends_with(':') {
                        format!("{l}{OPS_USER}\n")
                    } else {
                        format!("{l},{OPS_USER}\n")
                    }
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        write(&etc.join("group"), &group)?;
        set_mode(&etc.join("shadow"), 0o640)?;
        // Home directories with the lab key authorized.
        for (home, owner) in [
            (hd.join("root"), None),
            (hd.join("home").join(OPS_USER), Some(uid)),
        ] {
            mkdirs(&home.join(".ssh"))?;
            for skel in [".bashrc", ".profile"] {
                let _ = fs::copy(Path::new("/etc/skel").join(skel), home.join(skel));
            }
            write(&home.join(".ssh/authorized_keys"), pubkey)?;
            set_mode(&home.join(".ssh"), 0o700)?;
            set_mode(&home.join(".ssh/authorized_keys"), 0o600)?;
            set_mode(&home, 0o700)?;
            if let Some(uid) = owner {
                ns::run(
                    Command::new("chown")
                        .arg("-R")
                        .arg(format!("{uid}:{uid}"))
                        .arg(&home),
                    "chown home",
                )?;
            }
        }
        // /var skeleton.
        let var = hd.join("var");
        for d in [
            "lib/rancher",
            "lib/sudo",
            "log/lab-journal",
            "tmp",
            "cache",
            "spool",
            "mail",
            "opt",
            "local",
            "backups",
        ] {
            mkdirs(&var.join(d))?;
        }
        set_mode(&var.join("tmp"), 0o1777)?;
        let _ = std::os::unix::fs::symlink("/run", var.join("run"));
        let _ = std::os::unix::fs::symlink("/run/lock", var.join("lock"));
        // /usr/local/bin with the systemd stand-in.
        let bin = hd.join("usr-local-bin");
        mkdirs(&bin)?;
        for name in ["systemctl", "journalctl", "systemd-notify"] {
            std::os::unix::fs::symlink(&self.state.bin, bin.join(name))
                .map_err(|e| Error::io("link systemctl", e))?;
        }
        if let (Role::LoadBalancer, Some(e)) = (h.role, self.emulator_of(&h.name)) {
            let carp = self.state.emulator2.as_ref().map(|_| {
                let peer = if h.ip == LB_IP { LB2_IP } else { LB_IP };
                (h.ip, peer)
            });
            // the secondary accepts the primary's HA sync as user `hasync`
            let xmlrpc = match (&self.state.hasync_password_file, h.name == LB2_HOST) {
                (Some(f), true) => {
                    Some(fs::read_to_string(f).map_err(|e| Error::io("read hasync password", e))?)
                }
                _ => None,
            };
            crate::opnsense::prepare_host(
                &hd,
                &self.state.bin,
                h.ip,
                &e.api_key,
                api_secret,
                carp,
                xmlrpc.as_deref(),
            )?;
        }
        write(&hd.join(".prepared"), "")?;
        Ok(())
    }

    /// Starts a host's init, plugs it into the switch and waits until sshd is up.
    fn boot(&self, h: &HostState) -> Result<HostState, Error> {
        let hd = self.host_dir(&h.name);
        let console = OpenOptions::new()
            .create(true)
            .append(true)
            .open(hd.join("console.log"))
            .map_err(|e| Error::io("open console log", e))?;
        let args: Vec<&OsStr> = vec![
            OsStr::new("host-init"),
            OsStr::new("--host-dir"),
            hd.as_os_str(),
            OsStr::new("--hostname"),
            OsStr::new(&h.name),
        ];
        let mut spawned = ns::spawn_in_new_namespaces(&self.state.bin, &args, console)?;
        let pid = spawned.pid;
        let start = ns::proc_stat(pid).map(|s| s.2);
        let fail = |e: Error| {
            ns::kill_and_wait(pid);
            e
        };
        let sw_path = ns::named_netns(&self.state.switch_netns);
        // The previous incarnation's port may still be going away.
        let _ = ns::ip_batch(
            Some(ns::open_ns(&sw_path)?),
            &format!("link del v{}\n", h.index),
            "del old port",
        );
        ns::ip_batch(
            Some(ns::open_ns(&sw_path)?),
            &format!(
                "link add v{i} type veth peer name eth0 address {mac} netns {pid}\nlink set v{i} master br0\nlink set v{i} {st}\n",
                i = h.index,
                mac = host_mac(h.ip),
                st = if h.link_up { "up" } else { "down" }
            ),
            "plug host into switch",
        )
        .map_err(fail)?;
        let mut script = format!("link set lo up\naddr add {}/24 dev eth0\n", h.ip);
        let pair = self.state.emulator2.is_some();
        if h.role == Role::LoadBalancer && !pair {
            if let Some(vip) = self.state.vip {
                script.push_str(&format!("addr add {vip}/24 dev eth0\n"));
            }
        }
        script.push_str("link set eth0 up\n");
        let host_ns = ns::open_ns(Path::new(&format!("/proc/{pid}/ns/net"))).map_err(fail)?;
        ns::ip_batch(Some(host_ns), &script, "host network").map_err(fail)?;
        if h.role == Role::LoadBalancer && pair {
            // The backup's haproxy binds the CARP VIP it does not hold (on FreeBSD the address is configured on
            // the backup too).
            ns::run(
                Command::new("nsenter")
                    .arg(format!("--net=/proc/{pid}/ns/net"))
                    .args(["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_nonlocal_bind"]),
                "ip_nonlocal_bind on the load balancer",
            )
            .map_err(fail)?;
        }
        spawned
            .go
            .write_all(b"go\n")
            .map_err(|e| fail(Error::io("release host init", e)))?;
        drop(spawned.go);
        // Wait until sshd is active.
        let sock = PathBuf::from(format!("/proc/{pid}/root{CONTROL_SOCKET}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !ns::alive(pid, start) {
                let console = fs::read_to_string(hd.join("console.log")).unwrap_or_default();
                let tail: Vec<&str> = console.lines().rev().take(5).collect();
                return Err(Error::Boot(
                    h.name.clone(),
                    format!("init exited: {}", tail.join(" | ")),
                ));
            }
            if let Ok(out) = ctl_call(&sock, &["is-active", "ssh.service"]) {
                if out.stdout.trim() == "active" {
                    break;
                }
                if out.stdout.trim() == "failed" {
                    return Err(fail(Error::Boot(
                        h.name.clone(),
                        "ssh.service failed".into(),
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(fail(Error::Boot(
                    h.name.clone(),
                    "sshd did not become active in 20s".into(),
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if h.role == Role::LoadBalancer
            && self.emulator_of(&h.name).is_some()
            && !crate::opnsense::wait_ready(&hd, Duration::from_secs(20))
        {
            return Err(fail(Error::Boot(
                h.name.clone(),
                "the OPNsense emulator did not start in 20s (journalctl -u opnsense-emulator)"
                    .into(),
            )));
        }
        let mut out = h.clone();
        out.pid = Some(pid);
        out.pid_start = start;
        Ok(out)
    }

    /// The emulator a load balancer host runs.
    fn emulator_of(&self, host: &str) -> Option<&EmulatorInfo> {
        if host == LB2_HOST {
            self.state.emulator2.as_ref()
        } else {
            self.state.emulator.as_ref()
        }
    }

    fn write_known_hosts(&self) -> Result<(), Error> {
        let mut s = String::new();
        for h in &self.state.hosts {
            let pubkey = self
                .host_dir(&h.name)
                .join("etc/ssh/ssh_host_ed25519_key.pub");
            if let Ok(k) = fs::read_to_string(pubkey) {
                let mut parts = k.split_whitespace();
                if let (Some(t), Some(b)) = (parts.next(), parts.next()) {
                    s.push_str(&format!("{},{} {t} {b}\n", h.ip, h.name));
                }
            }
        }
        write(&self.state.known_hosts, &s)?;
        // An ssh_config beside it, so a person can `ip netns exec hl-NAME-ws ssh -F .../ssh_config k8s-control-1`.
        let mut c = String::new();
        for h in &self.state.hosts {
            c.push_str(&format!(
                "Host {name} {ip}\n  HostName {ip}\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {kh}\n  StrictHostKeyChecking yes\n\n",
                name = h.name,
                ip = h.ip,
                key = self.state.ssh_key.display(),
                kh = self.state.known_hosts.display()
            ));
        }
        write(&self.ssh_config(), &c)
    }

    /// An ssh_config with a `Host` entry per lab host (root, the lab key, strict known_hosts).
    pub fn ssh_config(&self) -> PathBuf {
        self.state.dir.join("keys/ssh_config")
    }

    /// Human-readable description: hosts, addresses, state, how to reach them.
    pub fn describe(&self) -> String {
        let mut s = format!("lab {} ({})\n", self.state.name, self.state.dir.display());
        s.push_str(&format!(
            "  workstation: netns {} ({}); run: homelab-lab --name {} ws -- CMD\n",
            self.state.ws_netns, self.state.ws_ip, self.state.name
        ));
        if let Some(vip) = self.state.vip {
            s.push_str(&format!("  VIP: {vip} (on {LB_HOST})\n"));
        }
        for h in &self.state.hosts {
            let running = h.pid.is_some_and(|p| ns::alive(p, h.pid_start));
            s.push_str(&format!(
                "  {:<14} {:<15} {:<13} {:<8} homelab-lab --name {} ssh {}{}\n",
                h.name,
                h.ip.to_string(),
                format!("{:?}", h.role).to_lowercase(),
                if running { "running" } else { "stopped" },
                self.state.name,
                h.name,
                if h.link_up { "" } else { " (link cut)" }
            ));
        }
        s.push_str(&format!(
            "  ssh: ip netns exec {} ssh -F {} HOST   (or: -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes root@IP)\n",
            self.state.ws_netns,
            self.ssh_config().display(),
            self.state.ssh_key.display(),
            self.state.known_hosts.display()
        ));
        s.push_str(&format!(
            "  user {} (sudo password in {})\n",
            self.state.ops_user,
            self.state.ops_password_file.display()
        ));
        if let Some(e) = &self.state.emulator {
            s.push_str(&format!(
                "  OPNsense emulator: {} (credentials {}, CA {})\n",
                e.url,
                e.credentials_file.display(),
                e.ca_file.display()
            ));
        }
        s
    }
}

/// A fixed MAC per lab address: a rebooted host keeps its MAC like a real NIC, so neighbours' ARP caches stay
/// right and connections work at once after a restart.
fn host_mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:1a:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Calls the supervisor at `sock` with `args`, collecting the answer.
pub fn ctl_call(sock: &Path, args: &[&str]) -> Result<CtlOutput, Error> {
    use crate::systemd::supervisor::{Reply, Request};
    use std::io::BufRead;
    let mut conn = std::os::unix::net::UnixStream::connect(sock)
        .map_err(|e| Error::io("connect supervisor", e))?;
    let req = Request {
        argv: args.iter().map(|s| s.to_string()).collect(),
    };
    let mut line = serde_json::to_string(&req).map_err(|e| Error::Other(e.to_string()))?;
    line.push('\n');
    conn.write_all(line.as_bytes())
        .map_err(|e| Error::io("send to supervisor", e))?;
    let mut out = CtlOutput {
        code: -1,
        stdout: String::new(),
        stderr: String::new(),
    };
    for l in std::io::BufReader::new(conn).lines() {
        let l = l.map_err(|e| Error::io("read from supervisor", e))?;
        match serde_json::from_str::<Reply>(&l) {
            Ok(Reply::Out(s)) => out.stdout.push_str(&s),
            Ok(Reply::Err(s)) => out.stderr.push_str(&s),
            Ok(Reply::Exit(c)) => {
                out.code = c;
                return Ok(out);
            }
            Err(_) => {}
        }
    }
    Err(Error::Other(
        "supervisor closed the connection without an exit code".into(),
    ))
}

/// Reaps our hosts' inits after they die (they are reparented to us when their short-lived parent exits), so no
/// zombies stay behind when the machine's PID 1 does not reap.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Kills every process of lab `name`, deletes its namespaces and its directory. Caller holds the lab lock.
fn cleanup_locked(root: &Path, name: &str) -> Result<(), Error> {
    let dir = root.join(name);
    // Host inits: from the state file, and by command line (a crash may have lost the state file).
    let mut pids = Vec::new();
    if let Ok(lab) = Lab::read_state(&dir) {
        pids.extend(
            lab.state
                .hosts
                .iter()
                .filter_map(|h| h.pid.filter(|p| ns::alive(*p, h.pid_start))),
        );
    }
    let hosts_dir = dir.join("hosts");
    for p in ns::all_pids() {
        let argv = ns::cmdline(p);
        if argv.get(1).map(String::as_str) == Some("host-init")
            && argv
                .iter()
                .position(|a| a == "--host-dir")
                .and_then(|i| argv.get(i + 1))
                .is_some_and(|d| Path::new(d).parent() == Some(hosts_dir.as_path()))
        {
            pids.push(p);
        }
    }
    pids.sort();
    pids.dedup();
    // All at once, then wait: hosts go down in parallel.
    let namespaces: Vec<String> = pids.iter().filter_map(|p| ns::pid_ns_of(*p)).collect();
    for p in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for p in &pids {
        ns::kill_and_wait(*p);
    }
    ns::wait_namespaces_empty(&namespaces, Duration::from_secs(5));
    for n in [format!("hl-{name}-sw"), format!("hl-{name}-ws")] {
        if ns::named_netns(&n).exists() {
            ns::run(
                Command::new("ip").args(["netns", "del", &n]),
                "ip netns del",
            )?;
        }
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&format!("remove {}", dir.display()), e))?;
    }
    Ok(())
}

/// Cleans up every lab under `root` and any `hl-*` namespaces and lab processes without a lab directory.
pub fn cleanup_all(root: Option<&Path>) -> Result<Vec<String>, Error> {
    let root = root_dir(root);
    let mut names: Vec<String> = fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if let Ok(rd) = fs::read_dir("/run/netns") {
        for e in rd.filter_map(|e| e.ok()) {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = n.strip_prefix("hl-") {
                if let Some(lab) = rest
                    .strip_suffix("-sw")
                    .or_else(|| rest.strip_suffix("-ws"))
                {
                    names.push(lab.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names.retain(|n| validate_name(n).is_ok());
    for n in &names {
        Lab::down_by_name(Some(&root), n)?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    //! The teardown guarantees, on real labs (root, as in CI).

    use super::*;

    fn spec(tag: &str, bin: Option<PathBuf>) -> LabSpec {
        LabSpec {
            servers: 1,
            agents: 0,
            opnsense: false,
            bin,
            ..LabSpec::new(&format!("g{tag}{}", std::process::id() % 100_000))
        }
    }

    /// What a lab leaves on the machine: namespaces, its directory, host inits.
    fn traces(name: &str) -> Vec<String> {
        let dir = root_dir(None).join(name);
        let mut t: Vec<String> = [format!("hl-{name}-sw"), format!("hl-{name}-ws")]
            .into_iter()
            .filter(|n| ns::named_netns(n).exists())
            .map(|n| format!("netns {n}"))
            .collect();
        if dir.exists() {
            t.push(format!("dir {}", dir.display()));
        }
        let hosts = dir.join("hosts").display().to_string();
        for p in ns::all_pids() {
            let argv = ns::cmdline(p);
            if argv.iter().any(|a| a.starts_with(&hosts)) {
                t.push(format!("process {p} {argv:?}"));
            }
        }
        t
    }

    #[test]
    fn a_failed_up_removes_what_it_started() {
        if keep_labs() {
            return;
        }
        // Not the lab binary: the host's init exits at once, after the network and the host dir exist.
        let s = spec("fail", Some(PathBuf::from("/bin/true")));
        // (Boot, or the switch port failing because the init is already gone.)
        Lab::up(&s).unwrap_err();
        assert_eq!(traces(&s.name), Vec::<String>::new());
    }

    #[test]
    fn a_guard_takes_its_lab_down_when_the_test_panics() {
        if keep_labs() {
            return;
        }
        let s = spec("guard", Some(crate::locate_binary().unwrap()));
        let name = s.name.clone();
        let panicked = std::panic::catch_unwind(|| {
            let lab = Lab::up_guarded(&s).unwrap();
            assert!(lab.healthy());
            assert!(!traces(&name).is_empty());
            panic!("the test body fails while the lab is up");
        });
        assert!(panicked.is_err());
        assert_eq!(traces(&name), Vec::<String>::new());
        // `keep` disarms the guard; `down` on a guard reports errors.
        let lab = Lab::up_guarded(&s).unwrap().keep();
        assert!(lab.healthy());
        let guard = LabGuard::from(lab);
        guard.down().unwrap();
        assert_eq!(traces(&name), Vec::<String>::new());
    }
}
