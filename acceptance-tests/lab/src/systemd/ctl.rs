//! `systemctl`'s verbs, executed inside the supervisor.
//!
//! The `systemctl` executable on a host only forwards its argv here (see [`super::client`]), so argument parsing,
//! output text and exit codes live in one place next to the state they describe. Exit codes follow systemctl:
//! `is-active`/`status` return 3 when not running, `status` 4 for an unknown unit, `is-enabled` 1 when not enabled.

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::sys::signal::Signal;

use super::journal;
use super::supervisor::{Active, Reply, ReplyWriter, Request, StartMode, Supervisor};
use super::unit::normalize_name;

/// Serves the control socket at `path` until the process exits: each connection is one `systemctl` call, its
/// argv run by [`run`] against `sup`, its output streamed back.
pub fn serve(sup: &Supervisor, path: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let listener = UnixListener::bind(path)?;
    // Everyone may connect (`systemctl status` works for any user); changes are refused to non-root callers.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let sup = sup.clone();
        std::thread::spawn(move || handle(&sup, conn));
    }
    Ok(())
}

fn handle(sup: &Supervisor, conn: UnixStream) {
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let Ok(req) = serde_json::from_str::<Request>(&line) else {
        return;
    };
    let uid = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| c.uid())
        .unwrap_or(u32::MAX);
    let mut out = ReplyWriter::new(conn);
    if uid != 0 && !read_only(&req.argv) {
        out.err("Failed to connect to bus: Access denied (this command needs root; use sudo)");
        out.send(Reply::Exit(1));
        return;
    }
    let code = run(sup, &req.argv, &mut out);
    out.send(Reply::Exit(code));
}

struct Opts {
    no_block: bool,
    quiet: bool,
    now: bool,
    value: bool,
    all: bool,
    props: Vec<String>,
    lines: usize,
    signal: Signal,
    kill_all: bool,
}

/// True when `argv` only reads state (allowed for non-root callers, as polkit allows on a real host).
pub fn read_only(argv: &[String]) -> bool {
    let verb = argv
        .iter()
        .find(|a| !a.starts_with('-'))
        .map(String::as_str);
    matches!(
        verb,
        None | Some(
            "is-active"
                | "is-failed"
                | "is-enabled"
                | "status"
                | "show"
                | "cat"
                | "list-units"
                | "list-unit-files"
                | "show-environment"
                | "is-system-running"
        )
    ) || argv.iter().any(|a| a == "--version")
}

/// Runs one `systemctl` invocation; returns its exit code.
pub fn run(sup: &Supervisor, argv: &[String], out: &mut ReplyWriter) -> i32 {
    let mut opts = Opts {
        no_block: false,
        quiet: false,
        now: false,
        value: false,
        all: false,
        props: Vec::new(),
        lines: 10,
        signal: Signal::SIGTERM,
        kill_all: true,
    };
    let mut words: Vec<String> = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-block" => opts.no_block = true,
            "-q" | "--quiet" => opts.quiet = true,
            "--now" => opts.now = true,
            "--value" => opts.value = true,
            "-a" | "--all" => opts.all = true,
            "--system" | "--no-pager" | "-l" | "--full" | "--no-legend" | "--plain"
            | "--no-ask-password" | "--force" | "-f" => {}
            "--user" => {
                out.err("Failed to connect to bus: No medium found");
                return 1;
            }
            "--version" => {
                out.out("systemd 252 (252.99-homelab-lab)");
                out.out("+SD_NOTIFY (systemd stand-in of the homelab lab)");
                return 0;
            }
            "-p" | "--property" => {
                if let Some(p) = it.next() {
                    opts.props.extend(p.split(',').map(str::to_string));
                }
            }
            "-n" | "--lines" => {
                if let Some(n) = it.next() {
                    opts.lines = n.parse().unwrap_or(10);
                }
            }
            "-s" | "--signal" => {
                if let Some(s) = it.next() {
                    opts.signal = parse_signal(s).unwrap_or(Signal::SIGTERM);
                }
            }
            s if s.starts_with("--property=") => {
                opts.props.extend(s[11..].split(',').map(str::to_string))
            }
            s if s.starts_with("--lines=") => opts.lines = s[8..].parse().unwrap_or(10),
            s if s.starts_with("--signal=") => {
                opts.signal = parse_signal(&s[9..]).unwrap_or(Signal::SIGTERM)
            }
            s if s.starts_with("--kill-whom=") => opts.kill_all = &s[12..] != "main",
            s if s.starts_with("--type=") || s.starts_with("--state=") || s.starts_with("-t") => {}
            s if s.starts_with('-') && s.len() > 1 => {
                out.err(format!("systemctl: unrecognized option '{s}'"));
                return 1;
            }
            _ => words.push(a.clone()),
        }
    }
    let Some(verb) = words.first().cloned() else {
        return list_units(sup, out);
    };
    // `systemctl enable /etc/systemd/system/k3s.service` (what install.sh does) names the unit by its file.
    let units: Vec<String> = words[1..]
        .iter()
        .map(|u| normalize_name(u.rsplit('/').next().unwrap_or(u)))
        .collect();
    let need_units = |out: &mut ReplyWriter| {
        if units.is_empty() {
            out.err("Too few arguments.");
            true
        } else {
            false
        }
    };
    match verb.as_str() {
        "daemon-reload" | "daemon-reexec" => {
            sup.daemon_reload();
            0
        }
        "start" | "restart" | "try-restart" | "reload-or-restart" | "condrestart" => {
            if need_units(out) {
                return 1;
            }
            let mode = match verb.as_str() {
                "start" => StartMode::Start,
                "try-restart" | "condrestart" => StartMode::TryRestart,
                _ => StartMode::Restart,
            };
            let mut code = 0;
            for u in &units {
                warn_changed(sup, u, out);
                if let Err(e) = sup.start(u, mode, !opts.no_block) {
                    out.err(e.to_string());
                    code = 1;
                }
            }
            code
        }
        "stop" => {
            if need_units(out) {
                return 1;
            }
            let mut code = 0;
            for u in &units {
                if let Err(e) = sup.stop(u, !opts.no_block) {
                    out.err(format!("Failed to stop {u}: {e}"));
                    code = 5;
                }
            }
            code
        }
        "enable" | "disable" | "reenable" => {
            if need_units(out) {
                return 1;
            }
            let mut code = 0;
            for u in &units {
                if verb != "enable" {
                    for l in sup.disable(u) {
                        out.err(l);
                    }
                }
                if verb != "disable" {
                    match sup.enable(u) {
                        Ok(lines) => lines.into_iter().for_each(|l| out.err(l)),
                        Err(e) => {
                            out.err(e.to_string());
                            code = 1;
                            continue;
                        }
                    }
                }
                if opts.now {
                    let r = if verb == "disable" {
                        sup.stop(u, !opts.no_block)
                    } else {
                        sup.start(u, StartMode::Start, !opts.no_block)
                    };
                    if let Err(e) = r {
                        out.err(e.to_string());
                        code = 1;
                    }
                }
            }
            code
        }
        "is-active" | "is-failed" => {
            if need_units(out) {
                return 1;
            }
            let mut hit = false;
            for u in &units {
                let info = sup.info(u);
                let state = info.active.as_str();
                if !opts.quiet {
                    out.out(state);
                }
                hit |= if verb == "is-active" {
                    info.active == Active::Active
                } else {
                    info.active == Active::Failed
                };
            }
            if hit {
                0
            } else if verb == "is-active" {
                3
            } else {
                1
            }
        }
        "is-enabled" => {
            if need_units(out) {
                return 1;
            }
            let mut code = 1;
            for u in &units {
                match sup.unit_file_state(u) {
                    Some(s) => {
                        if !opts.quiet {
                            out.out(s);
                        }
                        if s == "enabled" || s == "static" {
                            code = 0;
                        }
                    }
                    None => {
                        if !opts.quiet {
                            out.err(format!(
                                "Failed to get unit file state for {u}: No such file or directory"
                            ));
                        }
                    }
                }
            }
            code
        }
        "reset-failed" => {
            if units.is_empty() {
                sup.reset_failed(None);
            }
            for u in &units {
                sup.reset_failed(Some(u));
            }
            0
        }
        "kill" => {
            if need_units(out) {
                return 1;
            }
            let mut code = 0;
            for u in &units {
                if let Err(e) = sup.kill_unit(u, opts.signal, opts.kill_all) {
                    out.err(e.to_string());
                    code = 1;
                }
            }
            code
        }
        "status" => status(sup, &units, opts.lines, out),
        "show" => show(sup, &units, &opts, out),
        "cat" => {
            let mut code = 0;
            for u in &units {
                match sup.info(u).fragment_path {
                    Some(p) => {
                        out.out(format!("# {p}"));
                        out.out(std::fs::read_to_string(&p).unwrap_or_default());
                    }
                    None => {
                        out.err(format!("No files found for {u}."));
                        code = 1;
                    }
                }
            }
            code
        }
        "list-units" => list_units(sup, out),
        "list-unit-files" => {
            for u in sup.unit_names() {
                if let Some(s) = sup.unit_file_state(&u) {
                    out.out(format!("{u:<40} {s}"));
                }
            }
            0
        }
        "show-environment" => {
            out.out("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
            0
        }
        "is-system-running" => {
            out.out("running");
            0
        }
        other => {
            out.err(format!("Unknown command verb '{other}'."));
            1
        }
    }
}

fn parse_signal(s: &str) -> Option<Signal> {
    let s = s.trim_start_matches("SIG");
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    format!("SIG{s}").parse().ok()
}

fn warn_changed(sup: &Supervisor, u: &str, out: &mut ReplyWriter) {
    if sup.changed_on_disk(u) {
        out.err(format!(
            "Warning: The unit file, source configuration file or drop-ins of {u} changed on disk. Run 'systemctl daemon-reload' to reload units."
        ));
    }
}

fn list_units(sup: &Supervisor, out: &mut ReplyWriter) -> i32 {
    out.out(format!(
        "  {:<40} {:<9} {:<10} {:<12} {}",
        "UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION"
    ));
    for u in sup.unit_names() {
        let i = sup.info(&u);
        out.out(format!(
            "  {:<40} {:<9} {:<10} {:<12} {}",
            i.name,
            i.load_state,
            i.active.as_str(),
            i.sub,
            i.description
        ));
    }
    0
}

fn ago(micros: u64) -> String {
    let secs = journal::now_micros().saturating_sub(micros) / 1_000_000;
    if secs < 60 {
        format!("{secs}s ago")
    } else if secs < 3600 {
        format!("{}min {}s ago", secs / 60, secs % 60)
    } else {
        format!("{}h {}min ago", secs / 3600, (secs % 3600) / 60)
    }
}

fn status(sup: &Supervisor, units: &[String], lines: usize, out: &mut ReplyWriter) -> i32 {
    let mut code = 0;
    for u in units {
        let i = sup.info(u);
        if i.load_state == "not-found" {
            out.err(format!("Unit {u} could not be found."));
            code = 4;
            continue;
        }
        let dot = match i.active {
            Active::Active => "\u{25cf}",
            Active::Failed => "\u{00d7}",
            _ => "\u{25cb}",
        };
        out.out(format!("{dot} {} - {}", i.name, i.description));
        let preset = i.unit_file_state.unwrap_or("disabled");
        out.out(format!(
            "     Loaded: {} ({}; {}; preset: enabled)",
            i.load_state,
            i.fragment_path.clone().unwrap_or_default(),
            preset
        ));
        if let Some(e) = &i.load_error {
            out.out(format!("      Error: {e}"));
        }
        let since = match i.active {
            Active::Active | Active::Activating => i.active_enter.or(i.exec_main_start),
            _ => i.inactive_enter,
        };
        let mut line = format!("     Active: {} ({})", i.active.as_str(), i.sub);
        if i.active == Active::Failed {
            line = format!("     Active: failed (Result: {})", i.result);
        }
        if let Some(t) = since {
            line.push_str(&format!(
                " since {}; {}",
                journal::format_timestamp(t),
                ago(t)
            ));
        }
        out.out(line);
        if let Some(pid) = i.main_pid {
            out.out(format!("   Main PID: {pid}"));
        } else if let (Some(s), Some(c)) = (i.exec_main_status, i.exec_main_code) {
            let how = if c == 1 { "exited" } else { "killed" };
            out.out(format!("    Process: (code={how}, status={s})"));
        }
        if !i.status_text.is_empty() {
            out.out(format!("     Status: \"{}\"", i.status_text));
        }
        let recs = journal::read(sup.journal_dir(), u);
        if lines > 0 && !recs.is_empty() {
            out.out("");
            for r in &recs[recs.len().saturating_sub(lines)..] {
                out.out(journal::format_short(r, sup.hostname()));
            }
        }
        if i.active != Active::Active && code == 0 {
            code = 3;
        }
    }
    code
}

fn show(sup: &Supervisor, units: &[String], opts: &Opts, out: &mut ReplyWriter) -> i32 {
    for (n, u) in units.iter().enumerate() {
        if n > 0 {
            out.out("");
        }
        let i = sup.info(u);
        let ts = |t: Option<u64>| t.map(journal::format_timestamp).unwrap_or_default();
        let def = i.def.as_ref();
        let mut props: Vec<(String, String)> = vec![
            (
                "Type".into(),
                def.map(|d| format!("{:?}", d.service_type).to_lowercase())
                    .unwrap_or_default(),
            ),
            (
                "Restart".into(),
                def.map(|d| d.raw.get("Restart").cloned().unwrap_or("no".into()))
                    .unwrap_or_default(),
            ),
            ("MainPID".into(), i.main_pid.unwrap_or(0).to_string()),
            ("ExecMainPID".into(), i.main_pid.unwrap_or(0).to_string()),
            (
                "ExecMainCode".into(),
                i.exec_main_code.unwrap_or(0).to_string(),
            ),
            (
                "ExecMainStatus".into(),
                i.exec_main_status.unwrap_or(0).to_string(),
            ),
            ("ExecMainStartTimestamp".into(), ts(i.exec_main_start)),
            ("NRestarts".into(), i.n_restarts.to_string()),
            ("Result".into(), i.result.to_string()),
            ("StatusText".into(), i.status_text.clone()),
            ("Id".into(), i.name.clone()),
            ("Names".into(), i.name.clone()),
            ("Description".into(), i.description.clone()),
            ("LoadState".into(), i.load_state.to_string()),
            ("ActiveState".into(), i.active.as_str().to_string()),
            ("SubState".into(), i.sub.to_string()),
            (
                "FragmentPath".into(),
                i.fragment_path.clone().unwrap_or_default(),
            ),
            (
                "UnitFileState".into(),
                i.unit_file_state.unwrap_or("").to_string(),
            ),
            ("ActiveEnterTimestamp".into(), ts(i.active_enter)),
            ("InactiveEnterTimestamp".into(), ts(i.inactive_enter)),
            (
                "KillMode".into(),
                def.map(|d| {
                    d.raw
                        .get("KillMode")
                        .cloned()
                        .unwrap_or("control-group".into())
                })
                .unwrap_or_default(),
            ),
            (
                "EnvironmentFiles".into(),
                def.map(|d| {
                    d.environment_files
                        .iter()
                        .map(|(p, opt)| {
                            format!("{p} (ignore_errors={})", if *opt { "yes" } else { "no" })
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            ),
        ];
        if let Some(d) = def {
            for (k, v) in &d.raw {
                if !props.iter().any(|(pk, _)| pk == k) {
                    props.push((k.clone(), v.clone()));
                }
            }
        }
        if opts.props.is_empty() {
            for (k, v) in props {
                out.out(format!("{k}={v}"));
            }
        } else {
            for p in &opts.props {
                let v = props.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone());
                match (v, opts.value) {
                    (Some(v), true) => out.out(v),
                    (Some(v), false) => out.out(format!("{p}={v}")),
                    (None, true) => out.out(""),
                    (None, false) => {
                        if opts.all {
                            out.out(format!("{p}="))
                        }
                    }
                }
            }
        }
    }
    0
}
