//! Where the stand-in keeps its files.
//!
//! Real k3s uses fixed absolute paths (`/etc/rancher/k3s`, `/var/lib/rancher/k3s`, ...). Inside the lab every host
//! has its own mount namespace, so the real paths are right there. On loopback tests several "hosts" share one
//! filesystem, so every path is prefixed with `K3S_SIM_ROOT` (empty by default). The variable starts with `K3S_`
//! on purpose: our install script copies `K3S_*` variables into the unit's env file, so a root chosen at install
//! time reaches the service without special handling.
//!
//! Likewise `K3S_SIM_LOCALHOST` (default `127.0.0.1`) replaces the loopback address for per-host listeners
//! (the kubeconfig's server, etcd's local client URL, the agent's `:6444` load balancer): on a shared loopback,
//! each simulated host gets its own 127.x address instead of its own network namespace.

use std::path::{Path, PathBuf};

/// The filesystem root and loopback address of one simulated host.
#[derive(Clone, Debug)]
pub struct Paths {
    root: PathBuf,
    /// The address that stands for `127.0.0.1` on this host.
    pub localhost: String,
    /// `--data-dir` (default `/var/lib/rancher/k3s`), already prefixed with the root.
    pub data_dir: PathBuf,
}

impl Paths {
    /// Paths from `K3S_SIM_ROOT` / `K3S_SIM_LOCALHOST` and an optional `--data-dir`.
    pub fn from_env(data_dir: Option<&str>) -> Self {
        let root = std::env::var("K3S_SIM_ROOT").unwrap_or_default();
        let localhost = std::env::var("K3S_SIM_LOCALHOST")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_string());
        Self::new(&root, &localhost, data_dir)
    }

    /// Explicit root and loopback address (tests).
    pub fn new(root: &str, localhost: &str, data_dir: Option<&str>) -> Self {
        let root = PathBuf::from(root);
        let data_dir = rooted(&root, data_dir.unwrap_or("/var/lib/rancher/k3s"));
        Paths {
            root,
            localhost: localhost.to_string(),
            data_dir,
        }
    }

    /// An absolute host path under this host's root.
    pub fn host(&self, abs: &str) -> PathBuf {
        rooted(&self.root, abs)
    }

    /// `/etc/rancher/k3s`.
    pub fn etc(&self) -> PathBuf {
        self.host("/etc/rancher/k3s")
    }
    /// `<data-dir>/server`.
    pub fn server(&self) -> PathBuf {
        self.data_dir.join("server")
    }
    /// `<data-dir>/server/tls`.
    pub fn tls(&self) -> PathBuf {
        self.server().join("tls")
    }
    /// `<data-dir>/server/db`.
    pub fn db(&self) -> PathBuf {
        self.server().join("db")
    }
    /// `<data-dir>/agent`.
    pub fn agent(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
    /// `/etc/rancher/node/password`.
    pub fn node_password(&self) -> PathBuf {
        self.host("/etc/rancher/node/password")
    }
}

fn rooted(root: &Path, abs: &str) -> PathBuf {
    if root.as_os_str().is_empty() {
        PathBuf::from(abs)
    } else {
        root.join(abs.trim_start_matches('/'))
    }
}

/// Write a file atomically (temp file + rename) with the given mode, creating parent directories.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_prefixes_absolute_paths() {
        let p = Paths::new("/tmp/h1", "127.0.0.9", None);
        assert_eq!(p.etc(), PathBuf::from("/tmp/h1/etc/rancher/k3s"));
        assert_eq!(
            p.tls(),
            PathBuf::from("/tmp/h1/var/lib/rancher/k3s/server/tls")
        );
        let p = Paths::new("", "127.0.0.1", Some("/srv/k3s"));
        assert_eq!(p.server(), PathBuf::from("/srv/k3s/server"));
    }
}
