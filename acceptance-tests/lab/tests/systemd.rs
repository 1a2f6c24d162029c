//! The systemd stand-in on a lab host, driven the way the k3s install script and the provider drive it: through
//! `systemctl`/`journalctl` run inside the host (and over ssh).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// A notify service that becomes ready only when /tmp/go exists, and leaves a child behind (like k3s's etcd).
const NOTIFY_UNIT: &str = r#"[Unit]
Description=Notify demo
[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/systemd/system/demo.service.env
Environment=GREETING=hi
ExecStartPre=-/bin/false
ExecStart=/bin/sh -c 'echo "$GREETING $TOKEN"; \
  while [ ! -e /tmp/go ]; do sleep 0.05; done; \
  sleep 1000 & systemd-notify --ready; echo ready; wait'
KillMode=control-group
Restart=always
RestartSec=1s
TimeoutStartSec=0
[Install]
WantedBy=multi-user.target
"#;

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn notify_unit_lifecycle() {
    let mut lab = up(&spec("sd", 1, 0));
    let host = "k8s-control-1";
    lab.write_file(
        host,
        Path::new("/etc/systemd/system/demo.service"),
        NOTIFY_UNIT.as_bytes(),
        0o644,
    )
    .unwrap();
    lab.write_file(
        host,
        Path::new("/etc/systemd/system/demo.service.env"),
        b"TOKEN='s3cret'\n",
        0o600,
    )
    .unwrap();
    let o = sh(
        &lab,
        host,
        "systemctl enable /etc/systemd/system/demo.service 2>&1 && systemctl daemon-reload; systemctl is-enabled demo",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text(&o)
        .contains("Created symlink /etc/systemd/system/multi-user.target.wants/demo.service"));
    assert!(text(&o).ends_with("enabled"));

    // A blocking restart waits for READY=1; meanwhile the unit is `activating`.
    let mut restart = lab.host_command(host, "systemctl").unwrap();
    restart
        .args(["restart", "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = restart.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "restart returned before READY"
    );
    let o = sh(&lab, host, "systemctl is-active demo");
    assert_eq!((text(&o).as_str(), code(&o)), ("activating", 3));
    let o = sh(&lab, host, "systemctl show -p ActiveState -p SubState demo");
    assert_eq!(text(&o), "ActiveState=activating\nSubState=start");
    sh(&lab, host, "touch /tmp/go");
    let t0 = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(3));
    let o = sh(&lab, host, "systemctl is-active demo");
    assert_eq!((text(&o).as_str(), code(&o)), ("active", 0));

    // The journal has the unit's output (environment from Environment= and the env file) and systemd's lines.
    let o = sh(&lab, host, "journalctl -u demo --no-pager -n 20");
    let j = text(&o);
    assert!(j.contains("sh["), "{j}");
    assert!(j.contains(": hi s3cret"), "{j}");
    assert!(j.contains("systemd[1]: Started Notify demo."), "{j}");
    assert_eq!(lab.journal(host, "demo").len(), j.lines().count());

    // Restart=always: a crash of the main process is followed by a restart after RestartSec.
    let main = text(&sh(&lab, host, "systemctl show -p MainPID --value demo"));
    sh(&lab, host, &format!("kill -9 {main}"));
    assert!(wait_for(Duration::from_secs(2), || text(&sh(
        &lab,
        host,
        "systemctl show -p SubState --value demo"
    )) == "auto-restart"));
    assert_eq!(code(&sh(&lab, host, "systemctl is-active demo")), 3);
    assert!(wait_for(Duration::from_secs(5), || code(&sh(
        &lab,
        host,
        "systemctl is-active demo"
    )) == 0));
    assert_eq!(
        text(&sh(&lab, host, "systemctl show -p NRestarts --value demo")),
        "1"
    );
    assert_ne!(
        text(&sh(&lab, host, "systemctl show -p MainPID --value demo")),
        main
    );

    // Stop kills the whole tree (KillMode=control-group), and does not restart.
    let before = text(&sh(&lab, host, "ps -eo args | grep -c '^sleep 1000$'"));
    assert_eq!(before, "1");
    let o = sh(
        &lab,
        host,
        "systemctl stop demo; systemctl is-active demo; ps -eo args | grep -c '^sleep 1000$'",
    );
    assert_eq!(text(&o), "inactive\n0");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        text(&sh(&lab, host, "systemctl is-active demo")),
        "inactive"
    );

    // The enabled unit comes back after a host restart (without /tmp/go it stays activating: /tmp is fresh).
    lab.restart_host(host).unwrap();
    assert!(wait_for(Duration::from_secs(5), || text(&sh(
        &lab,
        host,
        "systemctl is-active demo"
    )) == "activating"));
    sh(&lab, host, "touch /tmp/go");
    assert!(wait_for(Duration::from_secs(5), || text(&sh(
        &lab,
        host,
        "systemctl is-active demo"
    )) == "active"));

    // --no-block returns at once; stop of a unit that never gets ready cancels the waiting start.
    let o = sh(&lab, host, "rm /tmp/go; systemctl restart --no-block demo; echo $?; sleep 0.3; systemctl is-active demo");
    assert_eq!(text(&o), "0\nactivating");
    let o = sh(
        &lab,
        host,
        "(sleep 0.5; systemctl stop demo) & systemctl start demo; echo $?",
    );
    assert!(text(&o).ends_with('1'), "{}", text(&o));

    // disable removes the link; an unknown unit is reported like systemd does.
    let o = sh(
        &lab,
        host,
        "systemctl disable demo 2>&1; systemctl is-enabled demo; echo $?",
    );
    assert!(text(&o).ends_with("disabled\n1"), "{}", text(&o));
    let o = sh(&lab, host, "systemctl start nope; echo $?; systemctl status nope; echo $?; systemctl is-active nope; echo $?");
    assert_eq!(text(&o), "1\n4\ninactive\n3");
}

#[test]
fn restart_policy_exec_start_pre_and_unit_changes() {
    let lab = up(&spec("rp", 1, 0));
    let host = "k8s-control-1";
    let unit = |name: &str, body: &str| {
        lab.write_file(
            host,
            Path::new(&format!("/etc/systemd/system/{name}")),
            body.as_bytes(),
            0o644,
        )
        .unwrap();
    };
    // Restart=on-failure: a clean exit stays down, a failing one is restarted.
    unit(
        "ok.service",
        "[Service]\nType=simple\nExecStart=/bin/sh -c 'echo run; exit 0'\nRestart=on-failure\nRestartSec=200ms\n",
    );
    unit(
        "bad.service",
        "[Service]\nType=simple\nExecStart=/bin/sh -c 'echo run; sleep 0.2; exit 3'\nRestart=on-failure\nRestartSec=200ms\n",
    );
    sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start ok bad",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let o = sh(
        &lab,
        host,
        "systemctl show -p ActiveState,NRestarts,Result ok",
    );
    assert_eq!(
        text(&o),
        "ActiveState=inactive\nNRestarts=0\nResult=success"
    );
    let n: u32 = text(&sh(&lab, host, "systemctl show -p NRestarts --value bad"))
        .parse()
        .unwrap();
    assert!(n >= 2, "bad.service restarted {n} times");

    // A failing ExecStartPre (without '-') fails the start with systemd's message and exit code 1.
    unit(
        "pre.service",
        "[Service]\nExecStartPre=/bin/false\nExecStart=/bin/sleep 100\n",
    );
    let o = sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start pre; echo $?; systemctl is-failed pre",
    );
    assert_eq!(text(&o), "1\nfailed");
    assert!(String::from_utf8_lossy(&o.stderr).contains("Job for pre.service failed"));
    let o = sh(
        &lab,
        host,
        "systemctl reset-failed pre; systemctl is-active pre",
    );
    assert_eq!(text(&o), "inactive");

    // A missing program behind '-' is ignored, as k3s's `ExecStartPre=-/sbin/modprobe br_netfilter` needs on a host
    // without kmod; without '-' it fails the start. Neither may wedge the supervisor.
    unit(
        "premissing.service",
        "[Service]\nExecStartPre=-/nonexistent/modprobe br_netfilter\nExecStart=/bin/sleep 100\n",
    );
    let o = sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start premissing; echo $?; systemctl is-active premissing; systemctl stop premissing",
    );
    assert_eq!(text(&o), "0\nactive");
    unit(
        "premissing2.service",
        "[Service]\nExecStartPre=/nonexistent/modprobe br_netfilter\nExecStart=/bin/sleep 100\n",
    );
    let o = sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start premissing2; echo $?; systemctl is-failed premissing2",
    );
    assert_eq!(text(&o), "1\nfailed");

    // A notify service that never says READY fails after TimeoutStartSec, and the blocking start says so.
    unit(
        "slow.service",
        "[Service]\nType=notify\nExecStart=/bin/sleep 100\nTimeoutStartSec=1s\n",
    );
    let t0 = Instant::now();
    let o = sh(&lab, host, "systemctl daemon-reload; systemctl start slow; echo $?; systemctl show -p Result --value slow");
    assert_eq!(text(&o), "1\ntimeout");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        text(&sh(&lab, host, "ps -eo args | grep -c '^/bin/sleep 100$'")),
        "0"
    );

    // Editing a unit without daemon-reload keeps the old definition and warns, like systemd.
    unit(
        "v.service",
        "[Service]\nExecStart=/bin/sh -c 'echo one; sleep 100'\n",
    );
    // (Type=simple is active at once; the sleeps let each run print its line before the next restart.)
    sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start v; sleep 0.3",
    );
    unit(
        "v.service",
        "[Service]\nExecStart=/bin/sh -c 'echo two; sleep 100'\n",
    );
    let o = sh(&lab, host, "systemctl restart v; sleep 0.3");
    assert!(String::from_utf8_lossy(&o.stderr).contains("changed on disk"));
    sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl restart v; sleep 0.3; systemctl stop v",
    );
    let j = lab.journal(host, "v").join("\n");
    assert_eq!(j.matches(": one").count(), 2, "{j}");
    assert_eq!(j.matches(": two").count(), 1, "{j}");

    // User= runs the service as that user.
    unit(
        "asops.service",
        "[Service]\nType=oneshot\nUser=ops\nExecStart=/bin/sh -c 'id -un; echo $HOME'\n",
    );
    let o = sh(
        &lab,
        host,
        "systemctl daemon-reload; systemctl start asops; echo $?; journalctl -u asops -o cat",
    );
    assert!(text(&o).starts_with("0\n"), "{}", text(&o));
    assert!(text(&o).contains("\nops\n/home/ops"), "{}", text(&o));

    // The same commands over ssh (PATH of an ssh session finds the stand-in).
    let o = ssh(
        &lab,
        host,
        "root",
        "command -v systemctl; systemctl is-active ssh; journalctl -u ssh -n 1 -o cat",
        None,
    );
    assert!(o.status.success());
    let out = text(&o);
    assert!(
        out.starts_with("/usr/local/bin/systemctl\nactive\n"),
        "{out}"
    );
}
