//! Hosts: real ssh by key with strict host key checking, sudo with a password, private hostnames and directories,
//! faults, and `down` leaving nothing behind.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use homelab_lab::Lab;

#[test]
fn ssh_sudo_hostnames_and_private_dirs() {
    let t0 = Instant::now();
    let lab = up(&spec("ssh", 2, 1));
    eprintln!("lab of 3 hosts up in {:?}", t0.elapsed());

    // root by key, host keys checked strictly against the lab's known_hosts.
    for (host, ip) in [
        ("k8s-control-1", "192.0.2.2"),
        ("k8s-control-2", "192.0.2.7"),
        ("k8s-worker-1", "192.0.2.21"),
    ] {
        let o = ssh(
            &lab,
            host,
            "root",
            "hostname; id -u; ip -4 -o addr show eth0",
            None,
        );
        assert!(
            o.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = text(&o);
        assert!(out.starts_with(&format!("{host}\n0\n")), "{out}");
        assert!(out.contains(&format!("{ip}/24")), "{out}");
    }

    // The same key with an empty known_hosts is refused: the checking is real.
    let empty = lab.state().dir.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut args = lab.ssh_args("k8s-control-1", "root").unwrap();
    for a in args.iter_mut() {
        if a.starts_with("UserKnownHostsFile=") {
            *a = format!("UserKnownHostsFile={}", empty.display());
        }
    }
    let o = lab
        .ws_command("ssh")
        .unwrap()
        .args(&args)
        .arg("true")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Host key verification failed"));

    // /var/lib/rancher is private per host.
    let o = ssh(
        &lab,
        "k8s-control-1",
        "root",
        "echo one > /var/lib/rancher/marker && cat /var/lib/rancher/marker",
        None,
    );
    assert_eq!(text(&o), "one");
    let o = ssh(
        &lab,
        "k8s-control-2",
        "root",
        "ls /var/lib/rancher/marker 2>&1 || echo absent",
        None,
    );
    assert!(text(&o).ends_with("absent"), "{}", text(&o));
    assert!(lab
        .host_dir("k8s-control-1")
        .join("var/lib/rancher/marker")
        .exists());
    // The lab directory (keys!) is not visible from inside a host.
    let o = ssh(
        &lab,
        "k8s-control-1",
        "root",
        &format!("ls {} 2>&1 || echo hidden", lab.ssh_key().display()),
        None,
    );
    assert!(text(&o).ends_with("hidden"), "{}", text(&o));

    // ops: sudo asks for the password; with it sudo works, without it it fails.
    let password = lab.ops_password().unwrap();
    let o = ssh(
        &lab,
        "k8s-worker-1",
        "ops",
        "id -un; sudo -S -p '' id -u",
        Some(&format!("{password}\n")),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(text(&o), "ops\n0");
    let o = ssh(&lab, "k8s-worker-1", "ops", "sudo -S -p '' id -u", None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("password"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = ssh(
        &lab,
        "k8s-worker-1",
        "ops",
        "sudo -S -p '' id -u",
        Some("wrong-password\n"),
    );
    assert!(!o.status.success());
    // Without sudo, ops may look at units but not change them.
    let o = ssh(
        &lab,
        "k8s-worker-1",
        "ops",
        "systemctl is-active ssh; systemctl stop ssh; echo $?",
        None,
    );
    assert_eq!(text(&o), "active\n1");
    let o = ssh(
        &lab,
        "k8s-worker-1",
        "ops",
        "sudo -S -p '' systemctl is-active ssh",
        Some(&format!("{password}\n")),
    );
    assert_eq!(text(&o), "active");

    // The lab network exists only inside the lab.
    // (The machine running the tests may itself sit on 192.0.2.0/24; the lab adds nothing to its namespace.)
    let root_addrs = Command::new("ip").args(["-o", "addr"]).output().unwrap();
    let root_addrs = String::from_utf8_lossy(&root_addrs.stdout).to_string();
    for ip in ["192.0.2.7/", "192.0.2.21/", "192.0.2.50/"] {
        assert!(!root_addrs.contains(ip), "{root_addrs}");
    }
    for dev in [" br0", " ws0", " v1@", " v2@"] {
        assert!(!root_addrs.contains(dev), "{root_addrs}");
    }

    // up is idempotent: the same hosts keep running.
    let pids: Vec<_> = lab.hosts().iter().map(|h| h.pid).collect();
    let again = Lab::up(&spec("ssh", 2, 1)).unwrap();
    assert_eq!(
        again.hosts().iter().map(|h| h.pid).collect::<Vec<_>>(),
        pids
    );

    // install_file puts files in the host's private /usr/local/bin.
    let src = lab.state().dir.join("hello.sh");
    std::fs::write(&src, "#!/bin/sh\necho hello from $(hostname)\n").unwrap();
    lab.install_file(
        "k8s-control-2",
        &src,
        Path::new("/usr/local/bin/hello"),
        0o755,
    )
    .unwrap();
    let o = ssh(&lab, "k8s-control-2", "root", "hello", None);
    assert_eq!(text(&o), "hello from k8s-control-2");
    let o = ssh(
        &lab,
        "k8s-control-1",
        "root",
        "command -v hello || echo none",
        None,
    );
    assert_eq!(text(&o), "none");
}

#[test]
fn faults_stop_start_cut_link_drop_session() {
    let mut lab = up(&spec("flt", 1, 1));
    let host = "k8s-worker-1";
    assert!(ssh(&lab, host, "root", "touch /tmp/before-poweroff", None)
        .status
        .success());

    // Power off: every process of the host is gone, ssh fails.
    let procs = lab.host_processes(host);
    assert!(procs.len() >= 2, "{procs:?}");
    lab.stop_host(host).unwrap();
    assert!(procs
        .iter()
        .all(|p| !Path::new(&format!("/proc/{p}/cmdline")).exists()
            || std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| c.is_empty())
                .unwrap_or(true)));
    assert!(!ssh(&lab, host, "root", "true", None).status.success());
    assert!(matches!(
        lab.exec(host, "true"),
        Err(homelab_lab::Error::HostDown(_))
    ));
    // The other host is untouched.
    assert!(ssh(&lab, "k8s-control-1", "root", "true", None)
        .status
        .success());

    // Boot again: same host key (strict checking still passes), files kept, /tmp fresh.
    lab.write_file(host, Path::new("/var/lib/rancher/kept"), b"yes\n", 0o644)
        .unwrap();
    let t0 = Instant::now();
    lab.start_host(host).unwrap();
    eprintln!("host booted in {:?}", t0.elapsed());
    let o = ssh(
        &lab,
        host,
        "root",
        "cat /var/lib/rancher/kept; test -e /tmp/before-poweroff && echo stale || echo fresh",
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // (Not "/tmp is empty": when the checkout lives under /tmp, the lab binds the cargo target dir back in.)
    assert_eq!(text(&o), "yes\nfresh");

    // Cut the link: ssh times out; restore: works again.
    lab.cut_link(host).unwrap();
    let t0 = Instant::now();
    let o = ssh(&lab, host, "root", "true", None);
    assert!(!o.status.success());
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    lab.restore_link(host).unwrap();
    assert!(wait_for(Duration::from_secs(10), || ssh(
        &lab, host, "root", "true", None
    )
    .status
    .success()));

    // Drop an SSH session mid-command: the client loses its connection, the command's output never comes.
    let mut cmd = lab.ssh_command(host, "root").unwrap();
    cmd.args(["--", "echo started; sleep 30; echo finished"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || {
        sh(&lab, host, "ps -eo args")
            .stdout
            .windows(9)
            .any(|w| w == b"sleep 30\n")
    }));
    let t0 = Instant::now();
    let killed = lab.drop_ssh_sessions(host).unwrap();
    assert!(killed >= 1);
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("finished"));
    // The listener survived: new sessions work.
    assert!(ssh(&lab, host, "root", "true", None).status.success());
}

fn lab_traces(name: &str, dir: &Path) -> Vec<String> {
    let mut traces = Vec::new();
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    for l in String::from_utf8_lossy(&netns.stdout).lines() {
        if l.starts_with(&format!("hl-{name}-")) {
            traces.push(format!("netns {l}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in mounts.lines() {
        if l.contains(&dir.display().to_string()) || l.contains(&format!("hl-{name}-")) {
            traces.push(format!("mount {l}"));
        }
    }
    for e in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains("host-init") && c.contains(&dir.display().to_string()) {
                traces.push(format!("process {c}"));
            }
        }
    }
    if dir.exists() {
        traces.push(format!("dir {}", dir.display()));
    }
    traces
}

#[test]
fn down_and_crash_cleanup_leave_nothing() {
    let s = spec("down", 1, 1);
    let lab = Lab::up_guarded(&s).unwrap();
    let dir = lab.state().dir.clone();
    let name = lab.name().to_string();
    let mut procs = Vec::new();
    for h in lab.hosts() {
        procs.extend(lab.host_processes(&h.name));
    }
    assert!(procs.len() >= 4);
    assert!(!lab_traces(&name, &dir).is_empty());
    let t0 = Instant::now();
    lab.down().unwrap();
    eprintln!("lab down in {:?}", t0.elapsed());
    assert_eq!(lab_traces(&name, &dir), Vec::<String>::new());
    for p in &procs {
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "process {p} still there: {state}"
        );
    }

    // Crash: the state file is lost while everything runs; `up` cleans up the leftovers and starts afresh,
    // and `down` then leaves nothing.
    let crashed = Lab::up_guarded(&s).unwrap();
    let old: Vec<i32> = crashed.hosts().iter().filter_map(|h| h.pid).collect();
    std::fs::remove_file(dir.join("state.json")).unwrap();
    let lab = Lab::up_guarded(&s).unwrap();
    // The crashed lab's handle is abandoned (as after a crash): the new `up` took over its name.
    let _ = crashed.keep();
    for p in old {
        assert!(!lab.hosts().iter().any(|h| h.pid == Some(p)));
        let state = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            state.is_empty() || state.contains(") Z"),
            "old init {p} survived"
        );
    }
    assert!(ssh(&lab, "k8s-control-1", "root", "true", None)
        .status
        .success());
    std::fs::remove_file(dir.join("state.json")).unwrap();
    // Taken down by name below, not through the guard.
    let _ = lab.keep();
    Lab::down_by_name(None, &name).unwrap();
    assert_eq!(lab_traces(&name, &dir), Vec::<String>::new());
}
