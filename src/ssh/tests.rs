//! Tests against a real OpenSSH sshd (see `crate::testing::sshd`). Run: `cargo test -p terraform-provider-homelab ssh`.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::testing::sshd::{all_cmdlines, keygen, Sshd, TempDir, TestUser};

fn tok() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn key_auth_exec_stdin_exit_codes_and_large_output() {
    let sshd = Sshd::start("");
    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    assert_eq!(
        s.host_key_openssh(),
        sshd.host_key.public.trim_end_matches(" host_key")
    );

    let out = s
        .exec("cat; echo err >&2", Some(b"hello\nworld"))
        .await
        .unwrap();
    assert_eq!(out.exit_status, 0);
    assert_eq!(out.stdout, b"hello\nworld");
    assert_eq!(out.stderr, b"err\n");

    let out = s.exec("echo boom >&2; exit 3", None).await.unwrap();
    assert_eq!(out.exit_status, 3);
    match s.run("echo first >&2; echo boom >&2; exit 3", None).await {
        Err(SshError::CommandFailed {
            exit_status: Some(3),
            stderr_tail,
            ..
        }) => assert_eq!(stderr_tail, "first\nboom"),
        other => panic!("expected CommandFailed, got {other:?}"),
    }

    // 8 MiB out, and 4 MiB in while 4 MiB come back (both directions at once must not deadlock)
    let out = s.exec("head -c 8388608 /dev/zero", None).await.unwrap();
    assert_eq!(out.stdout.len(), 8 << 20);
    let payload: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    let out = s.exec("cat", Some(&payload)).await.unwrap();
    assert!(out.stdout == payload, "echoed payload differs");

    // root: exec_sudo runs directly, no sudo involved
    let out = s.run_sudo("id -u; echo \"$0\"", None).await.unwrap();
    assert_eq!(out.stdout_str(), "0\nsh\n");
    s.close().await;
}

#[tokio::test]
async fn host_key_pinning_and_mismatch() {
    let sshd = Sshd::start("");
    let other = keygen(sshd.dir.path(), "other");
    let presented_fp = {
        let s = Session::connect(&conn(&sshd, "root"), &tok())
            .await
            .unwrap();
        s.host_key_fingerprint()
    };
    // pinned by fingerprint
    let mut c = conn(&sshd, "root");
    c.host_key = HostKeyPolicy::Pinned(presented_fp.clone());
    Session::connect(&c, &tok()).await.unwrap();
    // wrong pinned key
    c.host_key = HostKeyPolicy::Pinned(other.public.clone());
    let err = Session::connect(&c, &tok()).await.unwrap_err();
    match &err {
        SshError::HostKeyMismatch {
            expected,
            presented,
            ..
        } => {
            let other_fp =
                hostkey::fingerprint(&russh::keys::PublicKey::from_openssh(&other.public).unwrap());
            assert_eq!(expected, &vec![format!("ssh-ed25519 {other_fp}")]);
            assert_eq!(presented, &format!("ssh-ed25519 {presented_fp}"));
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    assert!(!err.is_transient());
}

#[tokio::test]
async fn known_hosts_plain_hashed_unknown_and_changed() {
    let sshd = Sshd::start("");
    let other = keygen(sshd.dir.path(), "other");
    let kh = sshd.dir.path().join("known_hosts");
    let mut c = conn(&sshd, "root");
    c.host_key = HostKeyPolicy::KnownHosts(kh.clone());

    // plain `[127.0.0.1]:PORT key`, among unrelated entries
    std::fs::write(
        &kh,
        format!(
            "# comment\nexample.org {o}\n127.0.0.1 {o}\n[127.0.0.1]:{p} {k}\n",
            o = other.public,
            p = sshd.port,
            k = sshd.host_key.public
        ),
    )
    .unwrap();
    Session::connect(&c, &tok()).await.unwrap();

    // hashed by OpenSSH itself
    let st = std::process::Command::new("ssh-keygen")
        .arg("-q")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(st.status.success());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(
        text.contains("|1|") && !text.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{text}"
    );
    Session::connect(&c, &tok()).await.unwrap();

    // the host's key changed
    std::fs::write(&kh, format!("[127.0.0.1]:{} {}\n", sshd.port, other.public)).unwrap();
    assert!(matches!(
        Session::connect(&c, &tok()).await,
        Err(SshError::HostKeyMismatch { .. })
    ));

    // the host is absent (only port 22 entry for the same address)
    std::fs::write(&kh, format!("127.0.0.1 {}\n", sshd.host_key.public)).unwrap();
    match Session::connect(&c, &tok()).await {
        Err(SshError::HostKeyUnknown { presented, .. }) => {
            assert!(presented.starts_with("ssh-ed25519 SHA256:"))
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
}

#[tokio::test]
async fn trust_on_first_use_returns_the_key_to_pin() {
    let sshd = Sshd::start("");
    let mut c = conn(&sshd, "root");
    c.host_key = HostKeyPolicy::TrustOnFirstUse;
    let s = Session::connect(&c, &tok()).await.unwrap();
    let learned = s.host_key_openssh();
    assert_eq!(learned, sshd.host_key.public.trim_end_matches(" host_key"));
    c.host_key = HostKeyPolicy::Pinned(learned);
    Session::connect(&c, &tok()).await.unwrap();
}

#[tokio::test]
async fn auth_failure_and_unreachable() {
    let sshd = Sshd::start("");
    let stranger = keygen(sshd.dir.path(), "stranger");
    let mut c = conn(&sshd, "root");
    c.auth = Auth::PrivateKey {
        key: Secret::new(stranger.private.clone()),
        passphrase: None,
    };
    let err = Session::connect(&c, &tok()).await.unwrap_err();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("PRIVATE KEY"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = conn(&sshd, "root");
    c.port = port;
    let err = Session::connect(&c, &tok()).await.unwrap_err();
    assert!(
        matches!(err, SshError::Unreachable { .. }) && err.is_transient(),
        "{err:?}"
    );
}

#[tokio::test]
async fn encrypted_key_with_passphrase() {
    let sshd = Sshd::start("");
    let path = sshd.dir.path().join("client_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "s3cret phrase", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    let pem = std::fs::read_to_string(&path).unwrap();
    let mut c = conn(&sshd, "root");
    c.auth = Auth::PrivateKey {
        key: Secret::new(pem.clone()),
        passphrase: Some(Secret::new("s3cret phrase")),
    };
    Session::connect(&c, &tok()).await.unwrap();
    c.auth = Auth::PrivateKey {
        key: Secret::new(pem),
        passphrase: Some(Secret::new("wrong")),
    };
    let err = Session::connect(&c, &tok()).await.unwrap_err();
    assert!(matches!(err, SshError::Config { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?} {c:?}").contains("s3cret") && !format!("{c:?}").contains("wrong")
    );
}

#[tokio::test]
async fn upload_creating_dir_makes_the_parent_in_the_same_exec() {
    let sshd = Sshd::start("");
    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    let dir = TempDir::new("upload-dir");
    let target = dir.path().join("new dir/sub/config.yaml");
    let target_s = target.to_str().unwrap();
    // The plain upload refuses a missing parent; this one creates it with the given mode.
    assert!(s.upload(b"x", target_s, 0o600).await.is_err());
    s.upload_creating_dir(b"a: 1\n", target_s, 0o600, 0o750)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"a: 1\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&target), 0o600);
    assert_eq!(mode(target.parent().unwrap()), 0o750);
    // An existing parent is fine (and replaced content stays atomic).
    s.upload_creating_dir(b"a: 2\n", target_s, 0o644, 0o750)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"a: 2\n");
    assert_eq!(mode(&target), 0o644);
}

#[tokio::test]
async fn upload_download_round_trip_with_mode() {
    let sshd = Sshd::start("");
    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    let dir = TempDir::new("upload");
    let target = dir.path().join("it's a file");
    let target_s = target.to_str().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    s.upload(&content, target_s, 0o640).await.unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), content);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    assert_eq!(s.download(target_s).await.unwrap(), content);
    // replace: new content and mode, no temp file left behind
    s.upload(b"v2", target_s, 0o600).await.unwrap();
    assert_eq!(
        s.download_if_exists(target_s).await.unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let missing = format!("{}/nope", dir.path().display());
    assert_eq!(s.download_if_exists(&missing).await.unwrap(), None);
    assert!(matches!(
        s.download(&missing).await,
        Err(SshError::CommandFailed { .. })
    ));
    // a missing parent directory fails cleanly
    let bad = format!("{}/no/such/dir/f", dir.path().display());
    assert!(matches!(
        s.upload(b"x", &bad, 0o600).await,
        Err(SshError::CommandFailed { .. })
    ));
}

#[tokio::test]
async fn sudo_password_on_stdin_only() {
    // capture everything this crate traces (TF_LOG=trace equivalent) for the whole test
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || LogSink(sink.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sshd = Sshd::start("");
    let user = TestUser::create();
    let mut c = conn(&sshd, &user.name);

    // plain exec as the user
    let s = Session::connect(&c, &tok()).await.unwrap();
    assert_eq!(
        s.run("id -un", None).await.unwrap().stdout_str().trim(),
        user.name
    );

    // no password configured: clear error, no hang
    let err = s.exec_sudo("id -u", None).await.unwrap_err();
    assert!(
        matches!(err, SshError::SudoPasswordRequired { .. }),
        "{err:?}"
    );

    // wrong password (first, before any sudo ticket could exist)
    c.sudo_password = Some(Secret::new("definitely-wrong-pw"));
    let s = Session::connect(&c, &tok()).await.unwrap();
    let t = Instant::now();
    let err = s.exec_sudo("id -u", Some(b"payload")).await.unwrap_err();
    assert!(matches!(err, SshError::SudoAuthFailed { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "sudo rejected the password for user {} on {}",
            user.name,
            s.host()
        )
    );
    assert!(!format!("{err:?}").contains("definitely-wrong-pw"));
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "wrong password took {:?}",
        t.elapsed()
    );

    // right password
    c.sudo_password = Some(Secret::new(user.password.clone()));
    assert!(!format!("{c:?}").contains(&user.password));
    let s = Session::connect(&c, &tok()).await.unwrap();
    let out = s
        .run_sudo("id -u; cat", Some(b"stdin-secret-xyz"))
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "0\nstdin-secret-xyz");
    assert!(
        !out.stderr_str().contains("HOMELAB-SUDO"),
        "{:?}",
        out.stderr_str()
    );

    // exit codes pass through sudo
    let out = s.exec_sudo("echo no >&2; exit 7", None).await.unwrap();
    assert_eq!((out.exit_status, out.stderr_str().as_str()), (7, "no\n"));

    // upload as root through sudo
    let dir = TempDir::new("sudo-upload");
    let f = format!("{}/f", dir.path().display());
    s.upload(b"root-owned", &f, 0o600).await.unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&f).unwrap().uid(), 0);
    assert_eq!(s.download(&f).await.unwrap(), b"root-owned");
    // a large payload after the sudo handshake
    let big: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    s.upload(&big, &f, 0o644).await.unwrap();
    assert!(
        std::fs::read(&f).unwrap() == big,
        "large sudo upload differs"
    );

    // while a sudo'd command runs, neither the password nor the stdin secret is in any process's argv
    let marker = format!("{}.{}", 2, std::process::id() % 1000 + 1000);
    let cmd = format!("sleep {marker}; cat >/dev/null");
    let run = s.exec_sudo(&cmd, Some(b"stdin-secret-abc"));
    let watch = async {
        let mut seen_sleep = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for line in all_cmdlines() {
                assert!(!line.contains(&user.password), "password in argv: {line}");
                assert!(
                    !line.contains("stdin-secret-abc"),
                    "stdin secret in argv: {line}"
                );
                if line.contains(&format!("sleep {marker}")) {
                    seen_sleep = true;
                }
            }
        }
        seen_sleep
    };
    let (out, seen) = tokio::join!(run, watch);
    assert!(out.unwrap().success());
    assert!(
        seen,
        "the sudo'd command was never seen running: the argv check proved nothing"
    );

    let log = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(
        log.contains("ssh exec"),
        "nothing was traced: the log check proved nothing"
    );
    for secret in [
        user.password.as_str(),
        "stdin-secret",
        "definitely-wrong-pw",
    ] {
        assert!(!log.contains(secret), "secret {secret:?} in the trace log");
    }
}

/// A `tracing` writer appending to a shared buffer.
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn bastion_hop() {
    let target = Sshd::start("");
    let jump = Sshd::start(&format!(
        "AllowTcpForwarding yes\nPermitOpen 127.0.0.1:{}",
        target.port
    ));
    let mut c = conn(&target, "root");
    c.bastion = Some(Box::new(conn(&jump, "root")));
    let s = Session::connect(&c, &tok()).await.unwrap();
    let out = s
        .run("echo via-bastion; echo \"$SSH_CONNECTION\"", None)
        .await
        .unwrap();
    let text = out.stdout_str();
    assert!(text.starts_with("via-bastion\n"), "{text}");
    assert!(
        text.trim_end().ends_with(&target.port.to_string()),
        "{text}"
    );

    // the target's host key policy still applies behind the bastion
    let other = keygen(target.dir.path(), "other");
    let mut bad = c.clone();
    bad.host_key = HostKeyPolicy::Pinned(other.public);
    assert!(matches!(
        Session::connect(&bad, &tok()).await,
        Err(SshError::HostKeyMismatch { .. })
    ));

    // a destination the bastion does not permit
    let mut denied = c.clone();
    denied.port = jump.port;
    let err = Session::connect(&denied, &tok()).await.unwrap_err();
    assert!(matches!(err, SshError::Unreachable { .. }), "{err:?}");

    // two hops: outer -> jump -> target, each with its own host key policy
    let outer = Sshd::start(&format!(
        "AllowTcpForwarding yes\nPermitOpen 127.0.0.1:{}",
        jump.port
    ));
    let mut via_jump = conn(&jump, "root");
    via_jump.bastion = Some(Box::new(conn(&outer, "root")));
    let mut two_hops = conn(&target, "root");
    two_hops.bastion = Some(Box::new(via_jump));
    let s = Session::connect(&two_hops, &tok()).await.unwrap();
    assert_eq!(
        s.run("echo two-hops", None).await.unwrap().stdout_str(),
        "two-hops\n"
    );
}

#[tokio::test]
async fn dropped_connection_is_reported_and_retry_reconnects() {
    let sshd = Sshd::start("");
    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(sshd.kill_sessions() > 0);
    };
    let (res, ()) = tokio::join!(s.exec("sleep 8", None), killer);
    let err = res.unwrap_err();
    assert!(
        matches!(err, SshError::ConnectionLost { .. }) && err.is_transient(),
        "{err:?}"
    );

    let policy = RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(100),
        ..Default::default()
    };
    let connector = Connector::new(conn(&sshd, "root"), policy, tok());
    let first = connector.session().await.unwrap();
    let killed_once = std::sync::atomic::AtomicBool::new(false);
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let out = connector
        .run_idempotent(|session| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let kill = !killed_once.swap(true, std::sync::atomic::Ordering::SeqCst);
            let sshd = &sshd;
            async move {
                let run = session.run("sleep 1; echo done", None);
                let killer = async {
                    if kill {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        sshd.kill_sessions();
                    }
                };
                let (r, ()) = tokio::join!(run, killer);
                r
            }
        })
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "done\n");
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert!(first.is_closed());
}

#[tokio::test]
async fn cancellation_and_timeout_stop_the_command() {
    let sshd = Sshd::start("");
    let cancel = tok();
    let s = Session::connect(&conn(&sshd, "root"), &cancel)
        .await
        .unwrap();
    let marker = format!("31.{}", std::process::id() % 1000 + 1000);
    let t = Instant::now();
    let c2 = cancel.clone();
    let sleep_cmd = format!("sleep {marker}");
    let (res, ()) = tokio::join!(s.exec(&sleep_cmd, None), async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    assert!(matches!(res, Err(SshError::Cancelled { .. })), "{res:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // the remote command is signalled, not left running
    let gone = async {
        for _ in 0..50 {
            if !all_cmdlines()
                .iter()
                .any(|l| l.starts_with(&format!("sleep {marker}")))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(gone.await, "remote sleep still running after cancel");

    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    let t = Instant::now();
    let opts = ExecOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let res = s.exec_with("sleep 30", None, &opts).await;
    assert!(matches!(res, Err(SshError::Timeout { .. })), "{res:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // the session stays usable after a timeout
    assert_eq!(s.run("echo ok", None).await.unwrap().stdout_str(), "ok\n");

    // a cancelled token also stops connecting
    let cancelled = tok();
    cancelled.cancel();
    assert!(matches!(
        Session::connect(&conn(&sshd, "root"), &cancelled).await,
        Err(SshError::Cancelled { .. })
    ));
}

#[tokio::test]
async fn ssh_agent_auth() {
    let sshd = Sshd::start("");
    let sock = sshd.dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let result = async {
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut c = conn(&sshd, "root");
        c.auth = Auth::Agent {
            socket: Some(sock.clone()),
        };
        // an empty agent: clear AuthFailed
        let err = Session::connect(&c, &tok()).await.unwrap_err();
        assert!(matches!(err, SshError::AuthFailed { .. }), "{err:?}");
        let add = std::process::Command::new("ssh-add")
            .arg("-q")
            .arg(sshd.dir.path().join("client_key"))
            .env("SSH_AUTH_SOCK", &sock)
            .output()
            .unwrap();
        assert!(
            add.status.success(),
            "ssh-add: {}",
            String::from_utf8_lossy(&add.stderr)
        );
        let s = Session::connect(&c, &tok()).await.unwrap();
        assert_eq!(
            s.run("echo agent", None).await.unwrap().stdout_str(),
            "agent\n"
        );
    }
    .await;
    let _ = agent.kill();
    let _ = agent.wait();
    result
}

#[tokio::test]
async fn cancelling_a_sudo_command_stops_it() {
    let sshd = Sshd::start("");
    let user = TestUser::create();
    let mut c = conn(&sshd, &user.name);
    c.sudo_password = Some(Secret::new(user.password.clone()));
    let s = Session::connect(&c, &tok()).await.unwrap();
    let marker = format!("33.{}", std::process::id() % 1000 + 1000);
    let cancel = tok();
    let c2 = cancel.clone();
    let cmd = format!("sleep {marker}");
    let opts = ExecOptions {
        cancel: Some(cancel),
        sudo: true,
        ..Default::default()
    };
    let watch = async move {
        // wait until the root-owned sleep runs, then cancel
        for _ in 0..100 {
            if all_cmdlines()
                .iter()
                .any(|l| l.starts_with(&format!("sleep {marker}")))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        c2.cancel();
    };
    let (res, ()) = tokio::join!(s.exec_with(&cmd, None, &opts), watch);
    assert!(matches!(res, Err(SshError::Cancelled { .. })), "{res:?}");
    let mut gone = false;
    for _ in 0..50 {
        if !all_cmdlines().iter().any(|l| l.starts_with(&cmd)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "root sleep still running after cancel");
}

/// Waits up to 5 s for no process whose command line starts with `prefix`.
async fn vanishes(prefix: &str) -> bool {
    for _ in 0..50 {
        if !all_cmdlines().iter().any(|l| l.starts_with(prefix)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits up to 3 s for a process whose command line starts with `prefix`.
async fn appears(prefix: &str) -> bool {
    for _ in 0..100 {
        if all_cmdlines().iter().any(|l| l.starts_with(prefix)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    false
}

#[tokio::test]
async fn a_dropped_operation_does_not_leave_its_command_running() {
    // The operation's future is dropped mid-command (no cancellation token fired, so no abort ran): the
    // connection closes and the remote watchdog stops the command, for a root login and for a sudo'd command.
    let sshd = Sshd::start("");
    let user = TestUser::create();
    let mut c = conn(&sshd, &user.name);
    c.sudo_password = Some(Secret::new(user.password.clone()));
    for (conn, sudo, n) in [(conn(&sshd, "root"), false, 34), (c, true, 35)] {
        let marker = format!("{n}.{}", std::process::id() % 1000 + 1000);
        let cmd = format!("sleep {marker}");
        let s = Session::connect(&conn, &tok()).await.unwrap();
        let cmd2 = cmd.clone();
        let task = tokio::spawn(async move {
            let opts = ExecOptions {
                sudo,
                ..Default::default()
            };
            s.exec_with(&cmd2, None, &opts).await
        });
        assert!(appears(&cmd).await, "{cmd} never started");
        task.abort();
        let _ = task.await;
        assert!(
            vanishes(&cmd).await,
            "{cmd} (sudo: {sudo}) still running after its connection closed"
        );
    }
    // A command that finishes normally is not disturbed, and its watchdog goes away with it.
    let s = Session::connect(&conn(&sshd, "root"), &tok())
        .await
        .unwrap();
    let out = s.run("sleep 1.2; echo done", None).await.unwrap();
    assert_eq!(out.stdout_str(), "done\n");
}

/// A connection as `user` with the fixture's client key, pinned to its host key.
fn conn(sshd: &Sshd, user: &str) -> HostConnection {
    let mut c = HostConnection::new(
        "127.0.0.1",
        user,
        Auth::PrivateKey {
            key: Secret::new(sshd.client_key.private.clone()),
            passphrase: None,
        },
        HostKeyPolicy::Pinned(sshd.host_key.public.clone()),
    );
    c.port = sshd.port;
    c.connect_timeout = Duration::from_secs(10);
    c.command_timeout = Duration::from_secs(60);
    c
}
