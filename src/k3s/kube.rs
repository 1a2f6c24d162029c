//! The cluster's Kubernetes API, asked from a node over SSH with `k3s kubectl` and one of the credentials a node
//! really has.
//!
//! Why from the node and with these credentials: the provider holds no Kubernetes client and needs no route to the
//! API from where Terraform runs. A server has the admin kubeconfig k3s writes (`/etc/rancher/k3s/k3s.yaml`). An
//! agent has only its kubelet's (`/var/lib/rancher/k3s/agent/kubelet.kubeconfig`), which Kubernetes' Node
//! authorizer lets read every Node and NodeRestriction lets change its own Node's labels outside the
//! `kubernetes.io`/`k8s.io` namespaces, but not its taints. An admin kubeconfig given by the user
//! (`cluster_kubeconfig`) is written 0600 into a private temporary directory for the one command and removed, all in
//! the command's own exec (its content on stdin).

use super::error::K3sError;
use super::paths::{K3S_BIN, KUBECONFIG_PATH};
use crate::ssh::{quote, Output, Session};

/// The kubelet's kubeconfig on an agent (k3s writes it when the agent bootstraps).
pub const KUBELET_KUBECONFIG_PATH: &str = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig";

/// Which credentials a command runs with.
#[derive(Clone, Copy, Debug)]
pub enum Creds<'a> {
    /// A server's own admin kubeconfig.
    ServerAdmin,
    /// An agent's kubelet credentials: read Nodes, label its own Node (NodeRestriction's limits).
    Kubelet,
    /// An admin kubeconfig's text (uploaded for the command, then removed).
    Kubeconfig(&'a str),
}

impl Creds<'_> {
    /// Whether these credentials may change taints and `kubernetes.io` labels.
    pub fn is_admin(&self) -> bool {
        !matches!(self, Creds::Kubelet)
    }
}

/// Runs `k3s kubectl --kubeconfig <creds> <args>` (args already shell-quoted) on the host.
pub async fn kubectl(session: &Session, creds: Creds<'_>, args: &str) -> Result<Output, K3sError> {
    let path = match creds {
        Creds::ServerAdmin => KUBECONFIG_PATH.to_string(),
        Creds::Kubelet => KUBELET_KUBECONFIG_PATH.to_string(),
        Creds::Kubeconfig(text) => {
            // One exec: the kubeconfig arrives on stdin into a private directory, is used once and removed.
            let (script, stdin) = with_private_files(
                &[("kubeconfig", text.as_bytes())],
                &command("\"$hl_kc/kubeconfig\"", args),
            );
            return Ok(session.exec_sudo(&script, Some(&stdin)).await?);
        }
    };
    run(session, &path, args).await
}

/// A script and its stdin for running `body` with the given files (name, content) in a private (0700, root's)
/// temporary directory `$hl_kc`: the contents travel on stdin (one base64 line each; the shell's `printf` is a
/// builtin, so nothing reaches a command line), `body` runs in a subshell (so even an `exit` in it comes back
/// here), then the directory is removed and the script exits with `body`'s status. Credentials for one command
/// cost one round trip this way. The stdin is wiped when dropped (the contents are credentials).
pub fn with_private_files(
    files: &[(&str, &[u8])],
    body: &str,
) -> (String, zeroize::Zeroizing<Vec<u8>>) {
    use base64::Engine;
    let mut script = String::from(
        "umask 077\nhl_kc=$(mktemp -d /tmp/homelab-kc.XXXXXXXX) || exit 1\ncase $hl_kc in /tmp/homelab-kc.*) ;; *) exit 1 ;; esac\n",
    );
    let mut stdin = zeroize::Zeroizing::new(Vec::new());
    for (name, content) in files {
        script.push_str(&format!(
            "IFS= read -r hl_line || true\nprintf '%s' \"$hl_line\" | base64 -d > \"$hl_kc\"/{} || {{ rm -rf \"$hl_kc\"; exit 1; }}\n",
            quote(name)
        ));
        let mut line = zeroize::Zeroizing::new(String::new());
        base64::engine::general_purpose::STANDARD.encode_string(content, &mut line);
        stdin.extend_from_slice(line.as_bytes());
        stdin.push(b'\n');
    }
    script.push_str("hl_line=\n(\n");
    script.push_str(body);
    script.push_str("\n)\nhl_rc=$?\nrm -rf \"$hl_kc\"\nexit $hl_rc\n");
    (script, stdin)
}

async fn run(session: &Session, path: &str, args: &str) -> Result<Output, K3sError> {
    Ok(session
        .exec_sudo(&command(&quote(path), args), None)
        .await?)
}

/// `path`: the kubeconfig's path as a shell word (quoted, or a quoted variable expansion).
fn command(path: &str, args: &str) -> String {
    format!("{K3S_BIN} kubectl --kubeconfig {path} --request-timeout=20s {args}")
}

/// The kubectl command line for credentials already on the host (`None` for an uploaded kubeconfig, which
/// needs its own private directory first), so a caller can put it into a larger script.
pub fn host_command(creds: Creds<'_>, args: &str) -> Option<String> {
    match creds {
        Creds::ServerAdmin => Some(command(&quote(KUBECONFIG_PATH), args)),
        Creds::Kubelet => Some(command(&quote(KUBELET_KUBECONFIG_PATH), args)),
        Creds::Kubeconfig(_) => None,
    }
}

/// The failure of a kubectl command as one line: its stderr, or its exit status.
pub fn failure_text(out: &Output) -> String {
    let err = out.stderr_str();
    let err = err.trim();
    if err.is_empty() {
        format!("kubectl exited with {}", out.exit_status)
    } else {
        err.lines().last().unwrap_or(err).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs the script with the local `sh`, as the host's shell would.
    fn run_local(script: &str, stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[test]
    fn private_files_arrive_private_and_go_away_with_the_commands_status() {
        let key = b"-----BEGIN KEY-----\nline with 'quotes' and $dollars\n-----END KEY-----\n";
        let (script, stdin) = with_private_files(
            &[("ca.crt", b"CA"), ("client.key", key)],
            "cat \"$hl_kc/ca.crt\" \"$hl_kc/client.key\"; stat -c '%a' \"$hl_kc\" \"$hl_kc/client.key\"; echo \"$hl_kc\"; exit 3",
        );
        let out = run_local(&script, &stdin);
        assert_eq!(
            out.status.code(),
            Some(3),
            "the command's own status comes back"
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let expected = format!("CA{}700\n600\n", String::from_utf8_lossy(key));
        assert!(text.starts_with(&expected), "{text:?}");
        let dir = text.lines().last().unwrap();
        assert!(dir.starts_with("/tmp/homelab-kc."), "{dir}");
        assert!(!std::path::Path::new(dir).exists(), "{dir} was not removed");
        assert!(
            !script.contains("BEGIN KEY"),
            "contents travel on stdin only"
        );
    }
}
