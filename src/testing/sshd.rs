//! A real OpenSSH sshd on 127.0.0.1 with its own keys and config, and throwaway Unix users with a
//! sudo password. Every fixture uses unique ports, names and directories so tests run in parallel, and cleans up on
//! drop (processes killed, users and sudoers drop-ins removed).

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "homelab-ssh-{tag}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&p).unwrap();
        set_mode(&p, 0o755);
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An ed25519 key pair made by ssh-keygen.
pub struct Keypair {
    pub private: String,
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str) -> Keypair {
    let path = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
    Keypair {
        private: std::fs::read_to_string(&path).unwrap(),
        public: std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim()
            .to_owned(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running sshd.
pub struct Sshd {
    pub port: u16,
    pub dir: TempDir,
    pub host_key: Keypair,
    pub client_key: Keypair,
    child: Child,
}

impl Sshd {
    /// Starts sshd accepting `client_key` for every user; `extra` is appended to sshd_config.
    pub fn start(extra: &str) -> Sshd {
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = TempDir::new("sshd");
        let host_key = keygen(dir.path(), "host_key");
        let client_key = keygen(dir.path(), "client_key");
        let ak = dir.path().join("authorized_keys");
        std::fs::write(&ak, format!("{}\n", client_key.public)).unwrap();
        set_mode(&ak, 0o644);
        for _ in 0..5 {
            let port = free_port();
            let cfg = dir.path().join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "{extra}\nPort {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                     UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n\
                     MaxStartups 50\nAllowTcpForwarding no\n",
                    hk = dir.path().join("host_key").display(),
                    pid = dir.path().join("sshd.pid").display(),
                    ak = ak.display(),
                ),
            )
            .unwrap();
            let t = Command::new("/usr/sbin/sshd")
                .arg("-t")
                .arg("-f")
                .arg(&cfg)
                .output()
                .unwrap();
            assert!(
                t.status.success(),
                "sshd -t: {}",
                String::from_utf8_lossy(&t.stderr)
            );
            let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
            let mut child = Command::new("/usr/sbin/sshd")
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken by someone else in the meantime: try another
                }
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 7];
                    if s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0" {
                        up = true;
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return Sshd {
                    port,
                    dir,
                    host_key,
                    client_key,
                    child,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("sshd did not start");
    }

    /// Kills (SIGKILL) every per-connection sshd process of this daemon: connections drop mid-command.
    pub fn kill_sessions(&self) -> usize {
        let mut killed = 0;
        for pid in children_of(self.child.id()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            killed += 1;
        }
        killed
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for pid in children_of(self.child.id()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Direct children of `ppid`, from /proc.
pub fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // field 4 (ppid) comes after the parenthesised command name
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok())
                == Some(ppid)
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Every process's argv joined with spaces.
pub fn all_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().parse::<u32>().is_err() {
                continue;
            }
            if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
                out.push(String::from_utf8_lossy(&b).replace('\0', " "));
            }
        }
    }
    out
}

/// A throwaway Unix user with a password and a sudoers drop-in that requires it.
pub struct TestUser {
    pub name: String,
    pub password: String,
    home: TempDir,
    sudoers: PathBuf,
}

impl TestUser {
    pub fn create() -> TestUser {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("hlt{}", &id[..12]);
        let password = format!("pw-{}-'\"$x", &id[12..24]);
        let home = TempDir::new("home");
        let st = Command::new("useradd")
            .args(["-M", "-N", "-s", "/bin/sh", "-d"])
            .arg(home.path())
            .arg(&name)
            .status()
            .unwrap();
        assert!(st.success(), "useradd failed");
        let _ = Command::new("chown").arg(&name).arg(home.path()).status();
        let mut chpasswd = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = chpasswd.stdin.take().unwrap();
            writeln!(stdin, "{name}:{password}").unwrap();
        }
        assert!(chpasswd.wait().unwrap().success(), "chpasswd failed");
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/{name}"));
        std::fs::write(
            &sudoers,
            format!("Defaults:{name} !lecture\n{name} ALL=(ALL:ALL) ALL\n"),
        )
        .unwrap();
        set_mode(&sudoers, 0o440);
        let v = Command::new("visudo")
            .arg("-cf")
            .arg(&sudoers)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "visudo: {}",
            String::from_utf8_lossy(&v.stdout)
        );
        TestUser {
            name,
            password,
            home,
            sudoers,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-u")
            .arg(&self.name)
            .status();
        let _ = Command::new("userdel")
            .arg(&self.name)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(format!("/run/sudo/ts/{}", self.name));
        let _ = std::fs::remove_file(format!("/run/sudo/ts/{}", self.name));
        let _ = &self.home;
    }
}
