//! An authenticated SSH session to one host, and the commands the k3s resources run over it.
//!
//! Every command is a POSIX shell script sent in the `exec` request. Data that must stay secret (sudo password,
//! file contents such as the k3s token) goes through the channel's stdin and never into that request, so it never
//! shows up in `ps`, in the remote shell history, in sshd logs or in our own error messages.
//!
//! Privileged commands for a non-root user run as `sudo -S -p <prompt> -- sh -c '<script>'`. sudo writes the
//! (random, non-secret) prompt on stderr when it wants the password; only then is the password written to stdin.
//! The script first prints a random "ready" marker on stderr; only after that marker does the caller's stdin
//! payload go out. This ordering matters: sending the password blindly would feed it to the command's stdin when
//! sudo needs no password (NOPASSWD or a cached ticket), and sending the payload early would let sudo read it as a
//! second password attempt after a wrong one. A second prompt means the password was rejected: the channel is
//! closed at once and the error names the user only.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Sig};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::config::{Auth, HostConnection};
use super::error::{stderr_tail, SshError};
use super::hostkey;
use super::quote::quote;

/// Exit status used by [`Session::download_if_exists`] to say "no such file".
const MISSING_FILE_STATUS: u32 = 44;
/// Lines of stderr kept in a `CommandFailed` error.
const STDERR_TAIL_LINES: usize = 20;

/// Result of a remote command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status; `128 + n` style values are not synthesised: a command killed by a signal has `exit_status`
    /// 255 and `signal` set.
    pub exit_status: u32,
    /// Name of the signal that killed the command, if any (e.g. `KILL`).
    pub signal: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// True if the command exited with status 0.
    pub fn success(&self) -> bool {
        self.exit_status == 0 && self.signal.is_none()
    }

    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn into_checked(self, host: &str, label: &str) -> Result<Output, SshError> {
        if self.success() {
            Ok(self)
        } else {
            Err(SshError::CommandFailed {
                host: host.to_owned(),
                label: label.to_owned(),
                exit_status: if self.signal.is_some() {
                    None
                } else {
                    Some(self.exit_status)
                },
                stderr_tail: stderr_tail(&self.stderr, STDERR_TAIL_LINES),
            })
        }
    }
}

/// Per-call overrides for [`Session::exec_with`].
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Bound on the command (default: the connection's `command_timeout`).
    pub timeout: Option<Duration>,
    /// Cancellation (default: the token given to [`Session::connect`]).
    pub cancel: Option<CancellationToken>,
    /// Run under sudo (for a non-root user) instead of as the login user.
    pub sudo: bool,
}

/// russh callback object: verifies the host key and remembers what the host presented.
struct ClientHandler {
    conn: HostConnection,
    host: String,
    presented: Arc<Mutex<Option<PublicKey>>>,
    rejection: Arc<Mutex<Option<SshError>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Host certificates are judged by their embedded key (CA trust is not implemented).
        let key = server_public_key.public_key();
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        match hostkey::verify(
            &self.conn.host_key,
            &self.conn.address,
            self.conn.port,
            &self.host,
            &key,
        ) {
            Ok(()) => Ok(true),
            Err(e) => {
                *self.rejection.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                Ok(false)
            }
        }
    }
}

/// An authenticated SSH connection to one host (possibly through a bastion).
pub struct Session {
    handle: Handle<ClientHandler>,
    conn: HostConnection,
    host: String,
    host_key: PublicKey,
    cancel: CancellationToken,
    // Keeps the jump host's connection (which carries ours) alive as long as this session.
    _bastion: Option<Box<Session>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.host)
            .field("user", &self.conn.user)
            .field("host_key", &hostkey::fingerprint(&self.host_key))
            .finish()
    }
}

/// A background guard started before every remote command (shell text; `w` and `s` are shell expressions for
/// the login shell's pid, which leads the command's process group, and the pid of the sshd process serving the
/// connection). When that sshd process is gone while the command still runs, the connection was lost (network,
/// the provider killed, or the operation dropped without [`Session::exec_with`]'s own abort), and the guard
/// terminates the process group: an install interrupted that way must not keep changing the host behind the next
/// apply. It checks once a second, ends with the command, stays silent (stdio on /dev/null, so it never holds the
/// channel open), and does nothing when it cannot see the sshd process to begin with (e.g. `/proc` mounted with
/// `hidepid`).
fn watchdog(w: &str, s: &str) -> String {
    format!(
        "(w={w}; s={s}; [ -d /proc/$s ] || exit 0; while [ -d /proc/$w ]; do \
         [ -d /proc/$s ] || {{ kill -TERM -$w 2>/dev/null || kill -TERM $w 2>/dev/null; exit 0; }}; sleep 1; \
         done) </dev/null >/dev/null 2>&1 &\n"
    )
}

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Session {
    /// Connects, verifies the host key and authenticates, within `conn.connect_timeout`. `cancel` also becomes the
    /// default cancellation of every command on this session.
    pub async fn connect(
        conn: &HostConnection,
        cancel: &CancellationToken,
    ) -> Result<Session, SshError> {
        let host = conn.display_host();
        tokio::select! {
            _ = cancel.cancelled() => Err(SshError::Cancelled { host, during: "connecting".to_owned() }),
            r = tokio::time::timeout(conn.connect_timeout, Self::connect_inner(conn, cancel.clone())) => match r {
                Ok(r) => r,
                Err(_) => Err(SshError::Unreachable {
                    host,
                    reason: format!("connecting timed out after {:?}", conn.connect_timeout),
                }),
            },
        }
    }

    fn connect_inner(
        conn: &HostConnection,
        cancel: CancellationToken,
    ) -> BoxFut<'_, Result<Session, SshError>> {
        Box::pin(async move {
            let host = conn.display_host();
            match &conn.bastion {
                None => {
                    let tcp = TcpStream::connect((conn.address.as_str(), conn.port))
                        .await
                        .map_err(|e| SshError::Unreachable {
                            host: host.clone(),
                            reason: e.to_string(),
                        })?;
                    let _ = tcp.set_nodelay(true);
                    Self::handshake(conn, tcp, None, cancel).await
                }
                Some(jump) => {
                    let jump_session = Session::connect(jump, &cancel).await?;
                    let channel = jump_session
                        .handle
                        .channel_open_direct_tcpip(
                            conn.address.clone(),
                            u32::from(conn.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| SshError::Unreachable {
                            host: host.clone(),
                            reason: format!(
                                "bastion {} could not open a tunnel: {e}",
                                jump_session.host
                            ),
                        })?;
                    Self::handshake(
                        conn,
                        channel.into_stream(),
                        Some(Box::new(jump_session)),
                        cancel,
                    )
                    .await
                }
            }
        })
    }

    async fn handshake<S>(
        conn: &HostConnection,
        stream: S,
        bastion: Option<Box<Session>>,
        cancel: CancellationToken,
    ) -> Result<Session, SshError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let host = conn.display_host();
        let presented = Arc::new(Mutex::new(None));
        let rejection = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            conn: conn.clone(),
            host: host.clone(),
            presented: presented.clone(),
            rejection: rejection.clone(),
        };
        let preferred = russh::Preferred {
            key: hostkey::preferred_algorithms(&conn.host_key, &conn.address, conn.port).into(),
            ..Default::default()
        };
        let config = client::Config {
            keepalive_interval: conn.keepalive,
            keepalive_max: 3,
            inactivity_timeout: None,
            preferred,
            ..Default::default()
        };
        let mut handle = match client::connect_stream(Arc::new(config), stream, handler).await {
            Ok(h) => h,
            Err(e) => {
                if let Some(rej) = rejection.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    return Err(rej);
                }
                return Err(match e {
                    russh::Error::IO(io) => SshError::Unreachable {
                        host,
                        reason: io.to_string(),
                    },
                    russh::Error::Disconnect
                    | russh::Error::HUP
                    | russh::Error::ConnectionTimeout => SshError::Unreachable {
                        host,
                        reason: format!("SSH handshake failed: {e}"),
                    },
                    other => SshError::Protocol {
                        host,
                        source: other,
                    },
                });
            }
        };
        let host_key = presented
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| SshError::Config {
                host: host.clone(),
                reason: "server key was never checked".to_owned(),
            })?;
        authenticate(&mut handle, conn, &host).await?;
        Ok(Session {
            handle,
            conn: conn.clone(),
            host,
            host_key,
            cancel,
            _bastion: bastion,
        })
    }

    /// `address:port` of the host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The key the host presented (verified under the policy). With trust-on-first-use this is what to pin.
    pub fn host_key(&self) -> &PublicKey {
        &self.host_key
    }

    /// The presented host key as an OpenSSH public-key line (`ssh-ed25519 AAAA…`), for state.
    pub fn host_key_openssh(&self) -> String {
        hostkey::openssh_line(&self.host_key)
    }

    /// SHA256 fingerprint of the presented host key.
    pub fn host_key_fingerprint(&self) -> String {
        hostkey::fingerprint(&self.host_key)
    }

    /// True once the underlying connection is gone (a new [`Session::connect`] is needed).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// The connection settings this session was opened with.
    pub fn connection(&self) -> &HostConnection {
        &self.conn
    }

    /// Runs `cmd` as the login user; `stdin` (if any) is written to it, then EOF. Returns the output whatever the
    /// exit status.
    pub async fn exec(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.exec_with(cmd, stdin, &ExecOptions::default()).await
    }

    /// Runs `cmd` with root privileges: directly for root, else through `sudo -S` (see the module docs).
    pub async fn exec_sudo(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.exec_with(
            cmd,
            stdin,
            &ExecOptions {
                sudo: true,
                ..Default::default()
            },
        )
        .await
    }

    /// [`Session::exec`], but a non-zero exit becomes [`SshError::CommandFailed`].
    pub async fn run(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.exec(cmd, stdin)
            .await?
            .into_checked(&self.host, &label(cmd))
    }

    /// [`Session::exec_sudo`], but a non-zero exit becomes [`SshError::CommandFailed`].
    pub async fn run_sudo(&self, cmd: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.exec_sudo(cmd, stdin)
            .await?
            .into_checked(&self.host, &label(cmd))
    }

    /// Writes `content` to `remote_path` as root with permissions `mode`, atomically: a temp file in the same
    /// directory (created under umask 077), filled from stdin, chmod-ed, then renamed over the target. The content
    /// never appears on a command line. The parent directory must exist.
    pub async fn upload(
        &self,
        content: &[u8],
        remote_path: &str,
        mode: u32,
    ) -> Result<(), SshError> {
        self.upload_with(content, remote_path, mode, None).await
    }

    /// [`Session::upload`], creating the parent directory first (with `dir_mode`, like `install -d`) in the same
    /// exec: one round trip instead of two where a sequence writes into a directory that may not exist yet.
    pub async fn upload_creating_dir(
        &self,
        content: &[u8],
        remote_path: &str,
        mode: u32,
        dir_mode: u32,
    ) -> Result<(), SshError> {
        self.upload_with(content, remote_path, mode, Some(dir_mode))
            .await
    }

    async fn upload_with(
        &self,
        content: &[u8],
        remote_path: &str,
        mode: u32,
        dir_mode: Option<u32>,
    ) -> Result<(), SshError> {
        let p = quote(remote_path);
        let mkdir = dir_mode
            .map(|m| format!("install -d -m {m:o} -- \"$(dirname -- {p})\"\n"))
            .unwrap_or_default();
        let script = format!(
            "set -e\n{mkdir}umask 077\nt=$(mktemp \"$(dirname -- {p})/.homelab-upload.XXXXXXXX\")\n\
             trap 'rm -f -- \"$t\"' EXIT\ncat > \"$t\"\nchmod {mode:o} -- \"$t\"\nmv -f -- \"$t\" {p}\ntrap - EXIT\n"
        );
        let out = self.exec_sudo(&script, Some(content)).await?;
        out.into_checked(&self.host, &format!("upload {remote_path}"))
            .map(|_| ())
    }

    /// Reads `remote_path` as root.
    pub async fn download(&self, remote_path: &str) -> Result<Vec<u8>, SshError> {
        let script = format!("exec cat -- {}", quote(remote_path));
        let out = self.exec_sudo(&script, None).await?;
        out.into_checked(&self.host, &format!("download {remote_path}"))
            .map(|o| o.stdout)
    }

    /// Reads `remote_path` as root; `None` if it does not exist.
    pub async fn download_if_exists(&self, remote_path: &str) -> Result<Option<Vec<u8>>, SshError> {
        let p = quote(remote_path);
        let script = format!("test -e {p} || exit {MISSING_FILE_STATUS}\nexec cat -- {p}");
        let out = self.exec_sudo(&script, None).await?;
        if out.exit_status == MISSING_FILE_STATUS && out.signal.is_none() {
            return Ok(None);
        }
        out.into_checked(&self.host, &format!("download {remote_path}"))
            .map(|o| Some(o.stdout))
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    /// Runs a command with explicit options. See [`Session::exec`] and [`Session::exec_sudo`].
    pub async fn exec_with(
        &self,
        cmd: &str,
        stdin: Option<&[u8]>,
        opts: &ExecOptions,
    ) -> Result<Output, SshError> {
        let timeout = opts.timeout.unwrap_or(self.conn.command_timeout);
        let cancel = opts.cancel.clone().unwrap_or_else(|| self.cancel.clone());
        let label = label(cmd);
        let sudo = opts.sudo && !self.conn.is_root();
        let markers = Markers::new();
        let command = self.build_command(cmd, opts.sudo, &markers)?;
        tracing::debug!(host = %self.host, user = %self.conn.user, sudo, command = %label, "ssh exec");
        let state = RunState::default();
        let result = {
            let run = self.drive(command, stdin, sudo, &markers, &state);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => return r,
                _ = cancel.cancelled() => {
                    SshError::Cancelled { host: self.host.clone(), during: format!("running `{label}`") }
                }
                _ = tokio::time::sleep(timeout) => SshError::Timeout { host: self.host.clone(), label, timeout },
            }
        };
        // Stop the remote command before returning, so Ctrl-C or a timeout never leaves it running behind us.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.abort(&state, sudo)).await;
        Err(result)
    }

    /// The exec request for `cmd`: a first line that reports the login shell's pid on stderr (it is also the process
    /// group of everything the command starts, since sshd runs non-pty sessions under setsid; `abort` kills that
    /// group), then the command itself, directly, via `sh -c` for root, or via sudo (see the module docs).
    fn build_command(
        &self,
        cmd: &str,
        privileged: bool,
        markers: &Markers,
    ) -> Result<String, SshError> {
        let body = if !privileged {
            cmd.to_owned()
        } else if self.conn.is_root() {
            format!("sh -c {}", quote(cmd))
        } else {
            // sudo's command is root's: only a root watchdog can stop it. It gets the login shell's pid and
            // its sshd's as arguments (not secret).
            let inner = format!(
                "printf '%s\\n' {} >&2\n{}set --\n{cmd}",
                markers.ready,
                watchdog("$1", "$2")
            );
            match self.conn.sudo_password.as_ref().filter(|p| !p.is_empty()) {
                Some(p) if p.expose().contains('\n') => {
                    return Err(SshError::Config {
                        host: self.host.clone(),
                        reason: "the sudo password contains a newline".to_owned(),
                    })
                }
                Some(_) => format!(
                    "sudo -S -p {} -- sh -c {} sh \"$$\" \"$PPID\"",
                    quote(&markers.prompt),
                    quote(&inner)
                ),
                None => format!("sudo -n -- sh -c {} sh \"$$\" \"$PPID\"", quote(&inner)),
            }
        };
        Ok(format!(
            "printf '%s %s\\n' {} \"$$\" >&2\n{}{body}",
            markers.pid,
            watchdog("$$", "$PPID")
        ))
    }

    /// Terminates a command started by `drive`: SIGTERM to its process group through a second channel, then
    /// closes the command's channel. The SSH "signal" request is sent too, but OpenSSH 9.2 did not stop a non-pty
    /// command with it in our tests, and sudo does not relay a TERM sent by the unprivileged login user to the
    /// command it runs, so for sudo'd commands the kill itself runs under sudo.
    async fn abort(&self, state: &RunState, sudo: bool) {
        let writer = state
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let pid = *state.pid.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = &writer {
            let _ = w.signal(Sig::TERM).await;
        }
        if let Some(pid) = pid {
            let killer =
                format!("kill -TERM -{pid} 2>/dev/null || kill -TERM {pid} 2>/dev/null; true");
            let markers = Markers::new();
            if let Ok(command) = self.build_command(&killer, sudo, &markers) {
                let _ = self
                    .drive(command, None, sudo, &markers, &RunState::default())
                    .await;
            }
        }
        if let Some(w) = writer {
            let _ = w.eof().await;
            let _ = w.close().await;
        }
    }

    async fn drive(
        &self,
        command: String,
        stdin: Option<&[u8]>,
        sudo: bool,
        markers: &Markers,
        state: &RunState,
    ) -> Result<Output, SshError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.lost(e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost(e))?;
        let (mut reader, writer) = channel.split();
        let writer = Arc::new(writer);
        *state.writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer.clone());
        let mut pid_line: Option<Vec<u8>> = Some(Vec::new()); // stderr until the pid line is complete
        let payload: Vec<u8> = stdin.map(<[u8]>::to_vec).unwrap_or_default();
        let send_payload = |w: Arc<russh::ChannelWriteHalf<client::Msg>>, data: Vec<u8>| {
            // A separate task, so a large stdin never blocks reading stdout (which could deadlock both sides).
            tokio::spawn(async move {
                if !data.is_empty() {
                    let _ = w.data_bytes(data).await;
                }
                let _ = w.eof().await;
            });
        };
        let mut waiting_for_sudo = sudo;
        if !waiting_for_sudo {
            send_payload(writer.clone(), payload.clone());
        }
        let mut sent_password = false;
        let mut pre = Vec::new(); // stderr before the ready marker (sudo's prompt and complaints)
        let mut out = Output {
            exit_status: 255,
            signal: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        let mut got_exit = false;
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 }
                    if pid_line.is_some() || waiting_for_sudo =>
                {
                    let mut data = data.to_vec();
                    if let Some(buf) = pid_line.as_mut() {
                        buf.extend_from_slice(&data);
                        let Some(nl) = buf.iter().position(|b| *b == b'\n') else {
                            continue;
                        };
                        let line = String::from_utf8_lossy(&buf[..nl]).into_owned();
                        let rest = buf[nl + 1..].to_vec();
                        pid_line = None;
                        match line
                            .strip_prefix(&format!("{} ", markers.pid))
                            .and_then(|p| p.trim().parse().ok())
                        {
                            Some(pid) => {
                                *state.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid)
                            }
                            None => out.stderr.extend_from_slice(format!("{line}\n").as_bytes()),
                        }
                        data = rest;
                    }
                    if !waiting_for_sudo {
                        out.stderr.extend_from_slice(&data);
                        continue;
                    }
                    pre.extend_from_slice(&data);
                    if let Some(pos) = find(&pre, markers.ready_line.as_bytes()) {
                        out.stderr
                            .extend_from_slice(&pre[pos + markers.ready_line.len()..]);
                        waiting_for_sudo = false;
                        send_payload(writer.clone(), payload.clone());
                        continue;
                    }
                    let prompts = count(&pre, markers.prompt.as_bytes());
                    if prompts >= 2
                        || (prompts == 1 && sent_password && find(&pre, b"Sorry").is_some())
                    {
                        return Err(SshError::SudoAuthFailed {
                            host: self.host.clone(),
                            user: self.conn.user.clone(),
                        });
                    }
                    if prompts == 1 && !sent_password {
                        sent_password = true;
                        let mut line = self
                            .conn
                            .sudo_password
                            .as_ref()
                            .map(|p| p.expose().as_bytes().to_vec())
                            .unwrap_or_default();
                        line.push(b'\n');
                        let w = writer.clone();
                        let r = w.data_bytes(line).await;
                        r.map_err(|e| self.lost(e))?;
                    }
                }
                ChannelMsg::ExtendedData { data, .. } => out.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    out.exit_status = exit_status;
                    got_exit = true;
                }
                ChannelMsg::ExitSignal { signal_name, .. } => {
                    out.signal = Some(format!("{signal_name:?}"));
                    got_exit = true;
                }
                _ => {}
            }
        }
        state
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(); // finished: nothing to abort
        if let Some(buf) = pid_line {
            out.stderr.splice(0..0, buf);
        }
        if waiting_for_sudo {
            let text = String::from_utf8_lossy(&pre).replace(&markers.prompt, "");
            let (host, user) = (self.host.clone(), self.conn.user.clone());
            return Err(if text.contains("password is required") {
                SshError::SudoPasswordRequired { host, user }
            } else if sent_password && text.contains("incorrect password") {
                SshError::SudoAuthFailed { host, user }
            } else if !got_exit && self.handle.is_closed() {
                SshError::ConnectionLost {
                    host,
                    reason: "connection closed while starting sudo".to_owned(),
                }
            } else {
                SshError::SudoFailed {
                    host,
                    user,
                    detail: stderr_tail(text.as_bytes(), 5),
                }
            });
        }
        if !got_exit {
            // The channel ended without an exit status: the connection (or the server side) went away.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(SshError::ConnectionLost {
                host: self.host.clone(),
                reason: if self.handle.is_closed() {
                    "the connection closed while the command was running".to_owned()
                } else {
                    "the channel closed without an exit status".to_owned()
                },
            });
        }
        Ok(out)
    }

    fn lost(&self, e: russh::Error) -> SshError {
        if self.handle.is_closed()
            || matches!(
                e,
                russh::Error::SendError
                    | russh::Error::Disconnect
                    | russh::Error::HUP
                    | russh::Error::IO(_)
            )
        {
            SshError::ConnectionLost {
                host: self.host.clone(),
                reason: e.to_string(),
            }
        } else {
            SshError::Protocol {
                host: self.host.clone(),
                source: e,
            }
        }
    }
}

/// What `abort` needs to stop a running command: its channel and the pid of its login shell.
#[derive(Default)]
struct RunState {
    writer: Mutex<Option<Arc<russh::ChannelWriteHalf<client::Msg>>>>,
    pid: Mutex<Option<u32>>,
}

/// Random markers for one sudo invocation (not secret; random so command output cannot fake them).
struct Markers {
    pid: String,
    prompt: String,
    ready: String,
    ready_line: String,
}

impl Markers {
    fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let ready = format!("HOMELAB-SUDO-READY-{id}");
        Markers {
            pid: format!("HOMELAB-PID-{id}"),
            prompt: format!("HOMELAB-SUDO-PROMPT-{id}:"),
            ready_line: format!("{ready}\n"),
            ready,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// A short, single-line description of a script for messages: its first non-empty line, truncated.
fn label(cmd: &str) -> String {
    let first = cmd
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut s: String = first.chars().take(80).collect();
    if first.chars().count() > 80 || cmd.trim().lines().count() > 1 {
        s.push_str(" …");
    }
    s
}

async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    conn: &HostConnection,
    host: &str,
) -> Result<(), SshError> {
    let proto = |e: russh::Error| SshError::Protocol {
        host: host.to_owned(),
        source: e,
    };
    match &conn.auth {
        Auth::PrivateKey { key, passphrase } => {
            let pk = russh::keys::decode_secret_key(
                key.expose(),
                passphrase.as_ref().map(|p| p.expose()),
            )
            .map_err(|e| SshError::Config {
                host: host.to_owned(),
                reason: format!(
                    "cannot decode the private key (wrong passphrase or unsupported format): {e}"
                ),
            })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto)?
                .flatten();
            let res = handle
                .authenticate_publickey(
                    conn.user.clone(),
                    PrivateKeyWithHashAlg::new(Arc::new(pk), hash),
                )
                .await
                .map_err(proto)?;
            if res.success() {
                Ok(())
            } else {
                Err(SshError::AuthFailed {
                    host: host.to_owned(),
                    user: conn.user.clone(),
                    method: "publickey".into(),
                })
            }
        }
        Auth::Agent { socket } => {
            let agent = match socket {
                Some(path) => AgentClient::connect_uds(path).await,
                None => AgentClient::connect_env().await,
            };
            let mut agent = agent.map_err(|e| SshError::Config {
                host: host.to_owned(),
                reason: format!("cannot reach the ssh-agent: {e}"),
            })?;
            let ids = agent
                .request_identities()
                .await
                .map_err(|e| SshError::Config {
                    host: host.to_owned(),
                    reason: format!("cannot list the ssh-agent's keys: {e}"),
                })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(proto)?
                .flatten();
            for id in &ids {
                let key = id.public_key().into_owned();
                match handle
                    .authenticate_publickey_with(conn.user.clone(), key, hash, &mut agent)
                    .await
                {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => continue,
                    Err(e) => tracing::debug!(host, error = %e, "ssh-agent key rejected"),
                }
            }
            Err(SshError::AuthFailed {
                host: host.to_owned(),
                user: conn.user.clone(),
                method: format!("ssh-agent, {} key(s) offered", ids.len()),
            })
        }
    }
}
