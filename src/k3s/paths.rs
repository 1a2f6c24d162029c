//! Where k3s keeps its files on a node: the paths the install script, k3s itself and this provider agree on
//! (see `shared/reference/k3s.md`). In one place so every command sequence names the same file the same way.

/// Where k3s keeps its config file.
pub const CONFIG_PATH: &str = "/etc/rancher/k3s/config.yaml";
/// The installed binary.
pub const K3S_BIN: &str = "/usr/local/bin/k3s";
/// Where we put the install script on the host.
pub const INSTALL_SCRIPT_PATH: &str = "/usr/local/bin/k3s-install.sh";
/// The server's secure (CA-pinned) join token.
pub const TOKEN_PATH: &str = "/var/lib/rancher/k3s/server/token";
/// The admin kubeconfig k3s writes on servers.
pub const KUBECONFIG_PATH: &str = "/etc/rancher/k3s/k3s.yaml";
/// The agent's client-side load balancer state.
pub const AGENT_LB_PATH: &str = "/var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json";
/// The server's datastore directory (`etcd/` for embedded etcd, `state.db` for kine/sqlite).
pub const DB_DIR: &str = "/var/lib/rancher/k3s/server/db";
/// Where datastore backups go: outside the data dir, so an uninstall does not take them along.
pub const BACKUP_DIR: &str = "/var/backups/k3s";
