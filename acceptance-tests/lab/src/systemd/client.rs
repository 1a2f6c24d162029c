//! The `systemctl`, `journalctl` and `systemd-notify` executables of a host (one multi-call binary).
//!
//! `systemctl` is a pipe to the supervisor's control socket: it sends its argv and copies the answer to
//! stdout/stderr, so a blocking `systemctl restart` blocks exactly as long as the supervisor's job. `journalctl`
//! reads the journal files directly (it still works when the supervisor is busy or gone). `systemd-notify` speaks
//! the sd_notify datagram protocol, so test services can signal readiness from a shell.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::journal::{self, Record};
use super::supervisor::{Reply, Request, CONTROL_SOCKET};
use super::unit::normalize_name;

/// `systemctl ARGS...` against the supervisor at `socket`; returns the exit code.
pub fn systemctl(socket: &Path, args: &[String]) -> i32 {
    let mut conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(_) => {
            eprintln!(
                "System has not been booted with systemd as init system (PID 1). Can't operate."
            );
            eprintln!("Failed to connect to bus: Host is down");
            return 1;
        }
    };
    let req = Request {
        argv: args.to_vec(),
    };
    let mut line = serde_json::to_string(&req).expect("serialize request");
    line.push('\n');
    if conn.write_all(line.as_bytes()).is_err() {
        return 1;
    }
    let reader = BufReader::new(conn);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for l in reader.lines() {
        let Ok(l) = l else { break };
        match serde_json::from_str::<Reply>(&l) {
            Ok(Reply::Out(s)) => {
                let _ = stdout.lock().write_all(s.as_bytes());
            }
            Ok(Reply::Err(s)) => {
                let _ = stderr.lock().write_all(s.as_bytes());
            }
            Ok(Reply::Exit(c)) => {
                let _ = stdout.lock().flush();
                return c;
            }
            Err(_) => {}
        }
    }
    eprintln!("Failed to wait for response: Connection reset by peer");
    1
}

/// `systemctl` as installed on a host: the supervisor at its well-known path.
pub fn systemctl_main(args: &[String]) -> i32 {
    let socket = std::env::var_os("LAB_SYSTEMD_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CONTROL_SOCKET));
    systemctl(&socket, args)
}

/// `journalctl [-u UNIT]... [-n N] [-f] [-o short|cat|json] [--no-pager] [-x] [-e] [-q] [-b]`.
pub fn journalctl_main(args: &[String]) -> i32 {
    let dir = std::env::var_os("LAB_JOURNAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(journal::JOURNAL_DIR));
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut units = Vec::new();
    let mut lines: Option<usize> = None;
    let mut follow = false;
    let mut output = "short".to_string();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.as_str();
        match a {
            "-u" | "--unit" => match it.next() {
                Some(u) => units.push(normalize_name(u)),
                None => return usage("option requires an argument -- 'u'"),
            },
            "-n" | "--lines" => match it.next().and_then(|n| n.parse().ok()) {
                Some(n) => lines = Some(n),
                None => return usage("bad -n"),
            },
            "-o" | "--output" => match it.next() {
                Some(o) => output = o.clone(),
                None => return usage("option requires an argument -- 'o'"),
            },
            "-f" | "--follow" => follow = true,
            "-e" | "--pager-end" => lines = lines.or(Some(1000)),
            "--no-pager" | "-x" | "--catalog" | "-q" | "--quiet" | "-b" | "--boot"
            | "--no-hostname" | "--system" => {}
            s if s.starts_with("--unit=") => units.push(normalize_name(&s[7..])),
            s if s.starts_with("--lines=") => lines = s[8..].parse().ok(),
            s if s.starts_with("--output=") => output = s[9..].to_string(),
            s if s.starts_with("-u") && s.len() > 2 => units.push(normalize_name(&s[2..])),
            s if s.starts_with("-n") && s.len() > 2 => lines = s[2..].parse().ok(),
            s if s.starts_with('-')
                && s.len() > 1
                && s[1..].chars().all(|c| "xefqb".contains(c)) =>
            {
                for c in s[1..].chars() {
                    match c {
                        'f' => follow = true,
                        'e' => lines = lines.or(Some(1000)),
                        _ => {}
                    }
                }
            }
            s if s.starts_with("-xeu") || s.starts_with("-eu") => {
                // `journalctl -xeu k3s.service`, the form systemctl suggests.
                lines = lines.or(Some(1000));
                match it.next() {
                    Some(u) => units.push(normalize_name(u)),
                    None => return usage("option requires an argument -- 'u'"),
                }
            }
            s if s.starts_with('-') => return usage(&format!("unrecognized option '{s}'")),
            _ => {}
        }
    }
    let files: Vec<PathBuf> = if units.is_empty() {
        std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    } else {
        units.iter().map(|u| journal::file_for(&dir, u)).collect()
    };
    let mut recs: Vec<Record> = files.iter().flat_map(|f| journal::read_file(f)).collect();
    recs.sort_by_key(|r| r.ts);
    let start = match lines {
        Some(n) => recs.len().saturating_sub(n),
        None if follow => recs.len().saturating_sub(10),
        None => 0,
    };
    let stdout = std::io::stdout();
    let print = |r: &Record| {
        let line = match output.as_str() {
            "cat" => r.msg.clone(),
            "json" => serde_json::json!({
                "__REALTIME_TIMESTAMP": r.ts.to_string(),
                "SYSLOG_IDENTIFIER": r.ident,
                "_PID": r.pid.to_string(),
                "MESSAGE": r.msg,
                "_HOSTNAME": hostname,
            })
            .to_string(),
            _ => journal::format_short(r, &hostname),
        };
        let mut l = stdout.lock();
        let _ = writeln!(l, "{line}");
        let _ = l.flush();
    };
    if recs.is_empty() && !follow {
        println!("-- No entries --");
        return 0;
    }
    recs[start..].iter().for_each(print);
    if !follow {
        return 0;
    }
    let mut seen: std::collections::HashMap<PathBuf, usize> = files
        .iter()
        .map(|f| (f.clone(), journal::read_file(f).len()))
        .collect();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let files: Vec<PathBuf> = if units.is_empty() {
            std::fs::read_dir(&dir)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        } else {
            files.clone()
        };
        let mut new: Vec<Record> = Vec::new();
        for f in &files {
            let all = journal::read_file(f);
            let n = seen.entry(f.clone()).or_insert(0);
            if all.len() > *n {
                new.extend_from_slice(&all[*n..]);
                *n = all.len();
            }
        }
        new.sort_by_key(|r| r.ts);
        new.iter().for_each(print);
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("journalctl: {msg}");
    1
}

/// `systemd-notify [--ready] [--status=TEXT] [VAR=VALUE...]`: one datagram to `$NOTIFY_SOCKET`.
pub fn notify_main(args: &[String]) -> i32 {
    let mut msg = Vec::new();
    for a in args {
        match a.as_str() {
            "--ready" => msg.push("READY=1".to_string()),
            "--stopping" => msg.push("STOPPING=1".to_string()),
            "--reloading" => msg.push("RELOADING=1".to_string()),
            s if s.starts_with("--status=") => msg.push(format!("STATUS={}", &s[9..])),
            s if s.starts_with("--pid") => {}
            s if s.contains('=') => msg.push(s.to_string()),
            s => {
                eprintln!("systemd-notify: unknown argument {s}");
                return 1;
            }
        }
    }
    match send_notify(&msg.join("\n")) {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("systemd-notify: NOTIFY_SOCKET not set");
            1
        }
        Err(e) => {
            eprintln!("systemd-notify: {e}");
            1
        }
    }
}

/// Sends `msg` to `$NOTIFY_SOCKET`; `Ok(false)` when the variable is not set (not under a notify service).
pub fn send_notify(msg: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to(msg.as_bytes(), PathBuf::from(path))?;
    Ok(true)
}
