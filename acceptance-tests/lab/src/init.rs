//! PID 1 of a lab host (`homelab-lab host-init`): builds the host's filesystem view, then runs the supervisor.
//!
//! The host's private directories live under the lab directory (`hosts/<name>/{etc,usr-local-bin,home,root,var}`)
//! and are bind-mounted over the real ones, so they survive a host restart like a disk would, while `/run` and
//! `/tmp` are fresh tmpfs at every boot, as on a real machine. Everything else (`/usr`, `/bin`, `/lib`) is the real
//! system read through, which is how Debian's sshd, sudo and haproxy are available on every host. Binding `/var`
//! last also hides the lab directory (under `/var/lib/homelab-lab`) from the host, so a host cannot read the lab's
//! keys or another host's files.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::systemd::journal::JOURNAL_DIR;
use crate::systemd::supervisor::{StartMode, Supervisor, CONTROL_SOCKET, NOTIFY_DIR, UNIT_DIR};
use crate::Error;

/// What the init needs to know; passed on its command line (no secrets).
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// `hosts/<name>` in the lab directory.
    pub host_dir: PathBuf,
    pub hostname: String,
    /// The multi-call binary that serves as `systemctl`/`journalctl`/`systemd-notify`.
    pub lab_bin: PathBuf,
}

fn bind(src: &Path, dst: &Path) -> Result<(), Error> {
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            &format!("bind {} on {}", src.display(), dst.display()),
            e.into(),
        )
    })
}

fn tmpfs(dst: &Path, mode: &str) -> Result<(), Error> {
    mount(
        Some("tmpfs"),
        dst,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(mode),
    )
    .map_err(|e| Error::io(&format!("tmpfs on {}", dst.display()), e.into()))
}

/// Sets up the mount namespace and hostname. Must run as PID 1 of the host's fresh namespaces.
pub fn setup_filesystem(opts: &InitOptions) -> Result<(), Error> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| Error::io("make / private", e.into()))?;
    // Single files first: their sources may be hidden by the directory mounts below.
    for name in ["systemctl", "journalctl", "systemd-notify"] {
        let dst = Path::new("/usr/bin").join(name);
        if dst.exists() {
            bind(&opts.lab_bin, &dst)?;
        }
    }
    // k3s's unit runs `modprobe br_netfilter`/`overlay`: on a lab host that would load modules into the machine's
    // kernel and change how every bridge on it filters traffic. The hosts get a modprobe that does nothing.
    // (Debian's modprobe is a link to kmod; the link's target gets the bind.)
    let no_op = Path::new("/bin/true")
        .canonicalize()
        .map_err(|e| Error::io("/bin/true", e))?;
    for dst in ["/usr/sbin/modprobe", "/sbin/modprobe"] {
        if let Ok(target) = Path::new(dst).canonicalize() {
            if target != no_op {
                bind(&no_op, &target)?;
            }
        }
    }
    // The cargo target dir holding this binary (and the tests' k3s builds) must stay visible inside the host
    // even when the checkout lives under a directory the host gets privately (a CI clone under /tmp, a developer's
    // /home): hold it open now, and bind it back at the same path once the private mounts are in place.
    let shared: Vec<(PathBuf, std::fs::File)> = shared_dirs(&opts.lab_bin)
        .into_iter()
        .filter_map(|p| std::fs::File::open(&p).ok().map(|f| (p, f)))
        .collect();
    let d = &opts.host_dir;
    bind(&d.join("etc"), Path::new("/etc"))?;
    bind(&d.join("usr-local-bin"), Path::new("/usr/local/bin"))?;
    bind(&d.join("home"), Path::new("/home"))?;
    bind(&d.join("root"), Path::new("/root"))?;
    bind(&d.join("var"), Path::new("/var"))?;
    tmpfs(Path::new("/run"), "mode=755")?;
    tmpfs(Path::new("/tmp"), "mode=1777")?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| Error::io("mount /proc", e.into()))?;
    for (path, dir) in &shared {
        std::fs::create_dir_all(path).map_err(|e| Error::io(&path.display().to_string(), e))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(dir);
        bind(Path::new(&format!("/proc/self/fd/{fd}")), path)?;
    }
    drop(shared);
    // A sysfs of our own shows this host's network interfaces; not essential, so failures are ignored.
    let _ = mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    for dir in [
        "/run/systemd/system",
        NOTIFY_DIR,
        "/run/sshd",
        "/run/lock",
        "/run/user",
    ] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    nix::unistd::sethostname(&opts.hostname).map_err(|e| Error::io("sethostname", e.into()))?;
    Ok(())
}

/// Directories a host privatises (bind mounts and tmpfs above); anything under them is hidden from the host.
const PRIVATE_DIRS: [&str; 7] = [
    "/etc",
    "/usr/local/bin",
    "/home",
    "/root",
    "/var",
    "/run",
    "/tmp",
];

/// The directories to keep visible inside a host: the cargo target dir containing the lab binary (found by
/// walking up to a directory named `target`; else the binary's own directory), when it lies under a private dir.
fn shared_dirs(lab_bin: &Path) -> Vec<PathBuf> {
    let Some(bin_dir) = lab_bin.parent() else {
        return Vec::new();
    };
    let dir = bin_dir
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "target"))
        .unwrap_or(bin_dir);
    if PRIVATE_DIRS.iter().any(|p| dir.starts_with(p)) {
        vec![dir.to_path_buf()]
    } else {
        Vec::new()
    }
}

/// The whole life of a host's PID 1: filesystem, wait for the network, then supervise forever.
pub fn run(opts: InitOptions) -> Result<(), Error> {
    setup_filesystem(&opts)?;
    // Wait until the lab has plugged our network in (it writes one line to our stdin).
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
    }
    let sup = Supervisor::new(
        Path::new(UNIT_DIR),
        Path::new(JOURNAL_DIR),
        Path::new(NOTIFY_DIR),
        &opts.hostname,
    );
    sup.spawn_reaper();
    sup.daemon_reload();
    let server = sup.clone();
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            if let Err(e) = crate::systemd::ctl::serve(&server, Path::new(CONTROL_SOCKET)) {
                eprintln!("host-init: control socket: {e}");
            }
        })
        .map_err(|e| Error::io("spawn control thread", e))?;
    // Boot: every enabled unit, without waiting for any of them (sshd must not wait for k3s).
    for unit in sup.enabled_units() {
        if let Err(e) = sup.start(&unit, StartMode::Start, false) {
            eprintln!("host-init: starting {unit}: {e}");
        }
    }
    loop {
        std::thread::park();
    }
}
