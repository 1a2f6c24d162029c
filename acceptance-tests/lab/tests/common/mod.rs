//! Helpers shared by the lab's integration tests (root required, as in CI).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use homelab_lab::{Lab, LabSpec};

/// A lab that is taken down when the test ends (also on panic): the lab's own guard.
pub type TestLab = homelab_lab::LabGuard;

/// A unique lab name for this test and process (tests run in parallel, maybe in several processes).
pub fn lab_name(tag: &str) -> String {
    format!("t{tag}{}", std::process::id() % 100_000)
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_homelab-lab"))
}

pub fn spec(tag: &str, servers: u32, agents: u32) -> LabSpec {
    LabSpec {
        name: lab_name(tag),
        servers,
        agents,
        opnsense: false,
        opnsense_pair: false,
        root: None,
        bin: Some(bin()),
    }
}

pub fn up(spec: &LabSpec) -> TestLab {
    Lab::up_guarded(spec).expect("lab up")
}

/// `sh -c script` on a host over real ssh from the workstation namespace; stdin optional.
pub fn ssh(lab: &Lab, host: &str, user: &str, script: &str, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut cmd = lab.ssh_command(host, user).expect("ssh command");
    cmd.arg("--").arg(script);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ssh");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("ssh output")
}

pub fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

pub fn sh(lab: &Lab, host: &str, script: &str) -> Output {
    lab.exec(host, script).expect("exec in host")
}

/// Polls `f` every 50 ms until it is true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}
