//! Unit files as the stand-in reads them.
//!
//! Only what k3s's install script and our own tests write is understood: the `[Unit]`, `[Service]` and `[Install]`
//! sections, `\` line continuations, systemd's quoting rules for `Exec*=` lines, the `-`/`@`/`+`/`!`/`:` prefixes,
//! `Environment=`, `EnvironmentFile=[-]path`, the `%N`/`%n`/`%i`/`%%` specifiers and drop-ins in `NAME.d/*.conf`.
//! Anything else is kept as a raw key so `systemctl show` can still print it. Being forgiving here is deliberate:
//! systemd itself ignores unknown keys with a warning, and a stricter parser would make the lab fail where a real
//! host would not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the main process signals that it has started (systemd's `Type=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    Simple,
    Exec,
    Notify,
    Oneshot,
    Forking,
}

/// Which processes `stop` signals (systemd's `KillMode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMode {
    ControlGroup,
    Process,
    Mixed,
    None,
}

/// When the main process is started again after it exits (systemd's `Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    OnFailure,
    OnAbnormal,
    OnSuccess,
}

/// One `ExecStart=`/`ExecStartPre=` line after quoting and prefixes were resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    /// `-` prefix: a failing exit status is ignored.
    pub ignore_failure: bool,
    /// Program and arguments, environment variables not yet substituted.
    pub argv: Vec<String>,
}

/// A parsed unit, with the hash of the files it came from so a changed file can be noticed.
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub service_type: ServiceType,
    pub exec_start_pre: Vec<ExecLine>,
    pub exec_start: Vec<ExecLine>,
    pub exec_stop: Vec<ExecLine>,
    /// `Environment=` assignments in order.
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=` entries: path and whether a missing file is fine (`-`).
    pub environment_files: Vec<(String, bool)>,
    pub kill_mode: KillMode,
    pub restart: RestartPolicy,
    pub restart_sec: Duration,
    /// `None` = no timeout (`0` or `infinity`).
    pub timeout_start: Option<Duration>,
    pub timeout_stop: Duration,
    pub remain_after_exit: bool,
    pub working_directory: Option<String>,
    pub wanted_by: Vec<String>,
    pub start_limit_burst: u32,
    pub start_limit_interval: Duration,
    /// Every key as written (last value wins), for `systemctl show`.
    pub raw: BTreeMap<String, String>,
    /// Fingerprint of the unit file and its drop-ins at load time.
    pub fingerprint: String,
}

/// Why a unit file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("unit {0} not found")]
    NotFound(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `k3s` -> `k3s.service`; names that already carry a suffix are kept.
pub fn normalize_name(name: &str) -> String {
    let known = [
        ".service", ".target", ".socket", ".timer", ".mount", ".path", ".slice", ".scope",
    ];
    if known.iter().any(|s| name.ends_with(s)) {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// Reads a file and its drop-ins, returning the concatenated text used for the fingerprint.
fn read_sources(dir: &Path, name: &str) -> Result<(PathBuf, Vec<(PathBuf, String)>), UnitError> {
    let path = dir.join(name);
    let main = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            UnitError::NotFound(name.to_string())
        } else {
            UnitError::Io {
                path: path.clone(),
                source: e,
            }
        }
    })?;
    let mut sources = vec![(path.clone(), main)];
    let dropin_dir = dir.join(format!("{name}.d"));
    if let Ok(rd) = std::fs::read_dir(&dropin_dir) {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        files.sort();
        for f in files {
            if let Ok(text) = std::fs::read_to_string(&f) {
                sources.push((f, text));
            }
        }
    }
    Ok((path, sources))
}

/// A cheap, stable fingerprint (FNV-1a over the file texts); only used to notice "changed on disk".
pub fn fingerprint_of(dir: &Path, name: &str) -> Option<String> {
    let (_, sources) = read_sources(dir, name).ok()?;
    Some(fnv(&sources))
}

fn fnv(sources: &[(PathBuf, String)]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (p, t) in sources {
        for b in p
            .to_string_lossy()
            .bytes()
            .chain([0u8])
            .chain(t.bytes())
            .chain([0u8])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// Loads `name` from `dir` (normally `/etc/systemd/system`).
pub fn load(dir: &Path, name: &str) -> Result<Unit, UnitError> {
    let (path, sources) = read_sources(dir, name)?;
    let fingerprint = fnv(&sources);
    let mut entries: Vec<(String, String, String)> = Vec::new();
    for (p, text) in &sources {
        for (section, key, value) in parse_ini(text).map_err(|message| UnitError::Invalid {
            path: p.clone(),
            message,
        })? {
            entries.push((section, key, value));
        }
    }
    let stem = name
        .rsplit_once('.')
        .map(|(s, _)| s)
        .unwrap_or(name)
        .to_string();
    let instance = stem
        .split_once('@')
        .map(|(_, i)| i.to_string())
        .unwrap_or_default();
    let expand = |v: &str| expand_specifiers(v, name, &stem, &instance);

    let mut unit = Unit {
        name: name.to_string(),
        path: path.clone(),
        description: String::new(),
        service_type: ServiceType::Simple,
        exec_start_pre: Vec::new(),
        exec_start: Vec::new(),
        exec_stop: Vec::new(),
        environment: Vec::new(),
        environment_files: Vec::new(),
        kill_mode: KillMode::ControlGroup,
        restart: RestartPolicy::No,
        restart_sec: Duration::from_millis(100),
        timeout_start: Some(Duration::from_secs(90)),
        timeout_stop: Duration::from_secs(90),
        remain_after_exit: false,
        working_directory: None,
        wanted_by: Vec::new(),
        start_limit_burst: 5,
        start_limit_interval: Duration::from_secs(10),
        raw: BTreeMap::new(),
        fingerprint,
    };
    let invalid = |message: String| UnitError::Invalid {
        path: path.clone(),
        message,
    };
    for (section, key, value) in entries {
        let value = expand(&value);
        unit.raw.insert(key.clone(), value.clone());
        match (section.as_str(), key.as_str()) {
            ("Unit", "Description") => unit.description = value,
            ("Unit", "StartLimitBurst") | ("Service", "StartLimitBurst") => {
                unit.start_limit_burst = value.trim().parse().unwrap_or(5)
            }
            ("Unit", "StartLimitIntervalSec") | ("Service", "StartLimitInterval") => {
                unit.start_limit_interval = parse_timespan(&value).unwrap_or(Duration::ZERO)
            }
            ("Service", "Type") => {
                unit.service_type = match value.trim() {
                    "simple" => ServiceType::Simple,
                    "exec" => ServiceType::Exec,
                    "notify" | "notify-reload" => ServiceType::Notify,
                    "oneshot" => ServiceType::Oneshot,
                    "forking" => ServiceType::Forking,
                    other => return Err(invalid(format!("unsupported Type={other}"))),
                }
            }
            ("Service", "ExecStart") | ("Service", "ExecStartPre") | ("Service", "ExecStop") => {
                let list = match key.as_str() {
                    "ExecStart" => &mut unit.exec_start,
                    "ExecStartPre" => &mut unit.exec_start_pre,
                    _ => &mut unit.exec_stop,
                };
                if value.trim().is_empty() {
                    list.clear();
                } else {
                    list.push(parse_exec(&value).map_err(invalid)?);
                }
            }
            ("Service", "Environment") => {
                if value.trim().is_empty() {
                    unit.environment.clear();
                }
                for word in split_words(&value).map_err(invalid)? {
                    if let Some((k, v)) = word.split_once('=') {
                        unit.environment.push((k.to_string(), v.to_string()));
                    }
                }
            }
            ("Service", "EnvironmentFile") => {
                let v = value.trim();
                if v.is_empty() {
                    unit.environment_files.clear();
                } else if let Some(p) = v.strip_prefix('-') {
                    unit.environment_files.push((p.to_string(), true));
                } else {
                    unit.environment_files.push((v.to_string(), false));
                }
            }
            ("Service", "KillMode") => {
                unit.kill_mode = match value.trim() {
                    "process" => KillMode::Process,
                    "mixed" => KillMode::Mixed,
                    "none" => KillMode::None,
                    _ => KillMode::ControlGroup,
                }
            }
            ("Service", "Restart") => {
                unit.restart = match value.trim() {
                    "always" => RestartPolicy::Always,
                    "on-failure" => RestartPolicy::OnFailure,
                    "on-abnormal" => RestartPolicy::OnAbnormal,
                    "on-success" => RestartPolicy::OnSuccess,
                    _ => RestartPolicy::No,
                }
            }
            ("Service", "RestartSec") => {
                unit.restart_sec = parse_timespan(&value)
                    .ok_or_else(|| invalid(format!("bad RestartSec={value}")))?
            }
            ("Service", "TimeoutStartSec") | ("Service", "TimeoutSec") => {
                let d = parse_timespan(&value);
                unit.timeout_start = d.filter(|d| !d.is_zero());
                if key == "TimeoutSec" {
                    if let Some(d) = d.filter(|d| !d.is_zero()) {
                        unit.timeout_stop = d;
                    }
                }
            }
            ("Service", "TimeoutStopSec") => {
                if let Some(d) = parse_timespan(&value).filter(|d| !d.is_zero()) {
                    unit.timeout_stop = d;
                }
            }
            ("Service", "RemainAfterExit") => unit.remain_after_exit = parse_bool(&value),
            ("Service", "WorkingDirectory") => {
                unit.working_directory = Some(value.trim().trim_start_matches('-').to_string())
            }
            ("Install", "WantedBy") | ("Install", "RequiredBy") => unit
                .wanted_by
                .extend(value.split_whitespace().map(str::to_string)),
            _ => {}
        }
    }
    if unit.exec_start.is_empty() && name.ends_with(".service") {
        return Err(invalid("Service has no ExecStart= setting".to_string()));
    }
    if unit.exec_start.len() > 1 && unit.service_type != ServiceType::Oneshot {
        return Err(invalid(
            "Service has more than one ExecStart= setting".to_string(),
        ));
    }
    Ok(unit)
}

fn parse_bool(v: &str) -> bool {
    matches!(v.trim(), "yes" | "true" | "1" | "on")
}

/// Parses `5s`, `5`, `100ms`, `1min 30s`, `infinity` (= `None`).
pub fn parse_timespan(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v == "infinity" {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = v;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(n * factor);
    }
    Some(total)
}

fn expand_specifiers(v: &str, full: &str, stem: &str, instance: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push_str(full),
            Some('N') => out.push_str(stem),
            Some('p') => out.push_str(stem.split('@').next().unwrap_or(stem)),
            Some('i') | Some('I') => out.push_str(instance),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Splits an INI-style unit text into (section, key, value), joining `\` continuations.
fn parse_ini(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending: Option<(String, String)> = None;
    for (no, raw) in text.lines().enumerate() {
        if let Some((key, mut value)) = pending.take() {
            let line = raw.trim_end();
            if line.trim_start().starts_with('#') || line.trim_start().starts_with(';') {
                // systemd skips comment lines inside continuations.
                pending = Some((key, value));
                continue;
            }
            if let Some(stripped) = line.strip_suffix('\\') {
                value.push(' ');
                value.push_str(stripped);
                pending = Some((key, value));
            } else {
                value.push(' ');
                value.push_str(line);
                out.push((section.clone(), key, value));
            }
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {}: expected KEY=VALUE", no + 1));
        };
        let key = k.trim().to_string();
        let v = v.trim_start();
        if let Some(stripped) = v.strip_suffix('\\') {
            pending = Some((key, stripped.to_string()));
        } else {
            out.push((section.clone(), key, v.to_string()));
        }
    }
    if let Some((key, value)) = pending {
        out.push((section, key, value));
    }
    Ok(out)
}

fn parse_exec(value: &str) -> Result<ExecLine, String> {
    let mut v = value.trim();
    let mut ignore_failure = false;
    while let Some(c) = v.chars().next() {
        match c {
            '-' => ignore_failure = true,
            '@' | '+' | '!' | ':' => {}
            _ => break,
        }
        v = &v[1..];
    }
    let argv = split_words(v)?;
    if argv.is_empty() {
        return Err("empty Exec line".to_string());
    }
    Ok(ExecLine {
        ignore_failure,
        argv,
    })
}

/// systemd's word splitting: whitespace separates, `"..."` and `'...'` quote, C-style backslash escapes.
pub fn split_words(v: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '"' | '\'' => {
                in_word = true;
                let quote = c;
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated quote in {v}")),
                        Some(x) if x == quote => break,
                        Some('\\') => cur.push(unescape(chars.next())),
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                cur.push(unescape(chars.next()));
            }
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn unescape(c: Option<char>) -> char {
    match c {
        Some('n') => '\n',
        Some('t') => '\t',
        Some(x) => x,
        None => '\\',
    }
}

/// Substitutes `${VAR}` anywhere and `$VAR` as a whole word, as systemd does for `Exec*=` arguments. A `$VAR` word
/// whose value contains spaces is split into several arguments; `${VAR}` is not.
pub fn substitute_env(argv: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for arg in argv {
        if let Some(name) = arg.strip_prefix('$') {
            if !name.starts_with('{') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                if let Some(v) = env.get(name) {
                    out.extend(v.split_whitespace().map(str::to_string));
                }
                continue;
            }
        }
        let mut s = String::new();
        let mut rest = arg.as_str();
        while let Some(i) = rest.find("${") {
            s.push_str(&rest[..i]);
            match rest[i + 2..].find('}') {
                Some(j) => {
                    let name = &rest[i + 2..i + 2 + j];
                    s.push_str(env.get(name).map(String::as_str).unwrap_or(""));
                    rest = &rest[i + 3 + j..];
                }
                None => {
                    s.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        s.push_str(rest);
        out.push(s);
    }
    out
}

/// Reads an `EnvironmentFile=`: `KEY=VALUE` lines, `#`/`;` comments, optional single or double quotes.
pub fn read_env_file(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let value = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
            let inner = &v[1..v.len() - 1];
            let mut s = String::new();
            let mut it = inner.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some(n @ ('"' | '\\' | '$' | '`')) => s.push(n),
                        Some('\n') => {}
                        Some(n) => {
                            s.push('\\');
                            s.push(n);
                        }
                        None => s.push('\\'),
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            v[1..v.len() - 1].to_string()
        } else {
            v.to_string()
        };
        out.push((k.trim().to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S_UNIT: &str = r#"[Unit]
Description=Lightweight Kubernetes
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/k3s.service.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=/bin/sh -xc '! /usr/bin/systemctl is-enabled --quiet nm-cloud-setup.service 2>/dev/null'
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStart=/usr/local/bin/k3s \
    server \
	'--cluster-init' \
	'--tls-san=a b' \

"#;

    #[test]
    fn parses_the_k3s_unit() {
        let dir = std::env::temp_dir().join(format!("lab-unit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k3s.service"), K3S_UNIT).unwrap();
        let u = load(&dir, "k3s.service").unwrap();
        assert_eq!(u.service_type, ServiceType::Notify);
        assert_eq!(u.kill_mode, KillMode::Process);
        assert_eq!(u.restart, RestartPolicy::Always);
        assert_eq!(u.restart_sec, Duration::from_secs(5));
        assert_eq!(u.timeout_start, None);
        assert_eq!(u.wanted_by, vec!["multi-user.target".to_string()]);
        assert_eq!(
            u.exec_start[0].argv,
            vec![
                "/usr/local/bin/k3s",
                "server",
                "--cluster-init",
                "--tls-san=a b"
            ]
        );
        assert_eq!(u.exec_start_pre.len(), 2);
        assert!(!u.exec_start_pre[0].ignore_failure);
        assert_eq!(
            u.exec_start_pre[0].argv[2],
            "! /usr/bin/systemctl is-enabled --quiet nm-cloud-setup.service 2>/dev/null"
        );
        assert!(u.exec_start_pre[1].ignore_failure);
        assert_eq!(
            u.environment_files[0],
            ("/etc/default/k3s".to_string(), true)
        );
        let fp = u.fingerprint.clone();
        std::fs::write(dir.join("k3s.service"), K3S_UNIT.replace("5s", "6s")).unwrap();
        assert_ne!(fingerprint_of(&dir, "k3s.service").unwrap(), fp);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_files_and_substitution() {
        let dir = std::env::temp_dir().join(format!("lab-env-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("env");
        std::fs::write(&p, "# c\nK3S_TOKEN=\"a\\\"b\"\nB='x y'\nC=plain\n").unwrap();
        let env = read_env_file(&p).unwrap();
        assert_eq!(env[0], ("K3S_TOKEN".into(), "a\"b".into()));
        assert_eq!(env[1], ("B".into(), "x y".into()));
        let map: BTreeMap<String, String> = env.into_iter().collect();
        let argv = vec!["prog".to_string(), "$B".to_string(), "--c=${C}".to_string()];
        assert_eq!(
            substitute_env(&argv, &map),
            vec!["prog", "x", "y", "--c=plain"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timespan("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timespan("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timespan("infinity"), None);
        assert_eq!(parse_timespan("abc"), None);
        assert_eq!(normalize_name("k3s"), "k3s.service");
        assert_eq!(normalize_name("multi-user.target"), "multi-user.target");
    }
}
