//! What a node is really configured with: `config.yaml`, the flags on the unit's `ExecStart` line and the `K3S_*`
//! variables of the unit's env file, merged the way k3s merges them.
//!
//! Why all three: the provider writes only `config.yaml`, but a node installed by hand (the seed's
//! `curl … | K3S_TOKEN=… sh -s - server --tls-san …`) keeps its settings on the command line and in the env file,
//! and its `config.yaml` is ordinary hand-written YAML. Importing such a node must read back what it runs with,
//! otherwise the first plan would "change" settings that are already in effect.
//!
//! Precedence (k3s's `configfilearg`): config-file keys become flags placed *before* the command-line flags, so a
//! scalar on the command line wins over the file, and a repeatable flag accumulates the file's values then the
//! command line's. A `K3S_*` variable only fills a setting that neither gave. We dedupe accumulated lists (a value
//! given twice is one value to the user).
//!
//! YAML is parsed with `serde_yaml_ng` (a maintained continuation of `serde_yaml`, same serde data model and the
//! same libyaml-derived parser the workspace already builds for the k3s stand-in).

use std::collections::BTreeMap;

use serde_json::Value;

/// Flags that take no value (a subset of k3s's boolean flags: the ones that appear on real exec lines).
const BOOL_FLAGS: &[&str] = &[
    "cluster-init",
    "cluster-reset",
    "with-node-id",
    "debug",
    "disable-agent",
    "disable-etcd",
    "disable-apiserver",
    "disable-scheduler",
    "disable-controller-manager",
    "disable-cloud-controller",
    "disable-kube-proxy",
    "disable-network-policy",
    "disable-helm-controller",
    "secrets-encryption",
    "selinux",
    "rootless",
    "prefer-bundled-bin",
    "protect-kernel-defaults",
    "embedded-registry",
    "etcd-expose-metrics",
    "etcd-disable-snapshots",
    "flannel-ipv6-masq",
    "flannel-external-ip",
    "egress-selector-mode-disabled",
    "docker",
];

/// Repeatable flags: always read back as lists.
const LIST_FLAGS: &[&str] = &[
    "tls-san",
    "node-label",
    "node-taint",
    "disable",
    "node-ip",
    "node-external-ip",
    "kube-apiserver-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "kubelet-arg",
    "kube-proxy-arg",
    "etcd-arg",
    "cluster-cidr",
    "service-cidr",
];

/// `K3S_*` variables that correspond to a config key (the ones install scripts and users set).
const ENV_KEYS: &[(&str, &str)] = &[
    ("K3S_TOKEN", "token"),
    ("K3S_AGENT_TOKEN", "agent-token"),
    ("K3S_URL", "server"),
    ("K3S_NODE_NAME", "node-name"),
    ("K3S_KUBECONFIG_MODE", "write-kubeconfig-mode"),
    ("K3S_DATASTORE_ENDPOINT", "datastore-endpoint"),
    ("K3S_CLUSTER_INIT", "cluster-init"),
];

/// Parses a `config.yaml`: the JSON form this provider writes, or any YAML mapping (a hand-written file).
/// An empty file is an empty mapping. `None` when the file is not a mapping at all.
pub fn parse_config(raw: &[u8]) -> Option<BTreeMap<String, Value>> {
    if let Ok(m) = serde_json::from_slice::<BTreeMap<String, Value>>(raw) {
        return Some(m);
    }
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Some(BTreeMap::new());
    }
    let v: Value = serde_yaml_ng::from_slice(raw).ok()?;
    match v {
        Value::Object(m) => Some(m.into_iter().collect()),
        Value::Null => Some(BTreeMap::new()),
        _ => None,
    }
}

/// Splits a systemd command line into words (single and double quotes, backslash escapes, `\`+newline joins).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                cur.push(e);
                            }
                        }
                        _ => cur.push(d),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(e) => {
                    in_word = true;
                    cur.push(e);
                }
            },
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// The words of the unit's `ExecStart=` (continuation lines joined), without the binary and the command word.
pub fn exec_args(unit: &str) -> Vec<String> {
    let mut line = String::new();
    let mut collecting = false;
    for l in unit.lines() {
        if !collecting {
            if let Some(rest) = l.trim_start().strip_prefix("ExecStart=") {
                line.push_str(rest);
                collecting = rest.trim_end().ends_with('\\');
                if collecting {
                    line.push('\n');
                }
            }
        } else {
            line.push_str(l);
            collecting = l.trim_end().ends_with('\\');
            if collecting {
                line.push('\n');
            } else {
                break;
            }
        }
    }
    let words = shell_words(&line);
    let mut it = words.into_iter();
    it.next(); // the binary
    let mut rest: Vec<String> = it.collect();
    if rest
        .first()
        .map(|w| w == "server" || w == "agent")
        .unwrap_or(false)
    {
        rest.remove(0);
    }
    rest
}

fn push_value(map: &mut BTreeMap<String, Value>, key: &str, v: Value) {
    if LIST_FLAGS.contains(&key) {
        let mut items = match map.remove(key) {
            Some(Value::Array(a)) => a,
            Some(other) => vec![other],
            None => vec![],
        };
        // `--tls-san a,b` is two values for k3s's string-slice flags.
        match v {
            Value::String(s) => items.extend(s.split(',').map(|x| Value::String(x.to_string()))),
            other => items.push(other),
        }
        map.insert(key.to_string(), Value::Array(items));
    } else {
        map.insert(key.to_string(), v);
    }
}

/// Turns exec-line flags into config keys (`--tls-san x`, `--tls-san=x`, `-t x`, bare boolean flags).
pub fn flags_to_config(args: &[String]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let name = match a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
            Some(n) if !n.is_empty() => n,
            _ => continue,
        };
        let (key, inline) = match name.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (name.to_string(), None),
        };
        let key = match key.as_str() {
            "t" => "token".to_string(),
            "s" => "server".to_string(),
            _ => key,
        };
        if BOOL_FLAGS.contains(&key.as_str()) {
            let b = inline.map(|v| v != "false").unwrap_or(true);
            map.insert(key, Value::Bool(b));
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => {
                let Some(v) = args.get(i) else { break };
                i += 1;
                v.clone()
            }
        };
        push_value(&mut map, &key, Value::String(value));
    }
    map
}

/// Parses the install script's env file (`K3S_X='value'` lines, `'\''` escapes) into variables.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let words = shell_words(v);
        out.insert(k.trim().to_string(), words.join(" "));
    }
    out
}

/// A node's effective configuration and where it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Effective {
    /// The merged settings.
    pub config: BTreeMap<String, Value>,
    /// Settings come from the unit's command line or env file too (not only config.yaml).
    pub outside_config_file: bool,
    /// Keys set by `config.yaml.d/*.yaml` drop-ins, with the file that set them last (they override config.yaml).
    pub from_dropins: BTreeMap<String, String>,
}

/// Merges `config.yaml` (`None`: absent), its `config.yaml.d/*.yaml` drop-ins (name, content), the unit file and
/// the env file. `None` when config.yaml exists but is not a YAML mapping; a drop-in that is not one is skipped
/// (k3s refuses to start with it, which the unit's state shows).
pub fn effective(
    config_yaml: Option<&[u8]>,
    dropins: &[(String, Vec<u8>)],
    unit: Option<&str>,
    env_file: Option<&str>,
) -> Option<Effective> {
    let mut config = match config_yaml {
        Some(raw) => parse_config(raw)?,
        None => BTreeMap::new(),
    };
    let from_dropins = merge_dropins(&mut config, dropins);
    let mut outside = false;
    // Lists from the file are normalised to arrays so flags can append to them.
    for k in LIST_FLAGS {
        if let Some(Value::String(s)) = config.get(*k).cloned() {
            config.insert(
                k.to_string(),
                Value::Array(vec![Value::String(s.to_string())]),
            );
        }
    }
    let flags = unit
        .map(|u| flags_to_config(&exec_args(u)))
        .unwrap_or_default();
    for (k, v) in flags {
        outside = true;
        match v {
            Value::Array(items) if LIST_FLAGS.contains(&k.as_str()) => {
                for item in items {
                    push_value(&mut config, &k, item);
                }
            }
            other => {
                config.insert(k, other);
            }
        }
    }
    let env = env_file.map(parse_env_file).unwrap_or_default();
    for (var, key) in ENV_KEYS {
        if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
            outside = true;
            config.entry(key.to_string()).or_insert_with(|| {
                if *key == "cluster-init" {
                    Value::Bool(v == "true")
                } else {
                    Value::String(v.clone())
                }
            });
        }
    }
    for k in LIST_FLAGS {
        if let Some(Value::Array(a)) = config.get_mut(*k) {
            let mut seen = Vec::new();
            a.retain(|x| {
                if seen.contains(x) {
                    false
                } else {
                    seen.push(x.clone());
                    true
                }
            });
        }
    }
    Some(Effective {
        config,
        outside_config_file: outside,
        from_dropins,
    })
}

/// k3s's drop-ins (`docs/installation/configuration.md`): the files of `config.yaml.d/` with a `.yaml` name, in
/// lexical order, after `config.yaml`; a key replaces the earlier value, a key ending in `+` appends to it (to the
/// list, or to a string after a comma). Returns which file set each key last.
fn merge_dropins(
    config: &mut BTreeMap<String, Value>,
    dropins: &[(String, Vec<u8>)],
) -> BTreeMap<String, String> {
    let mut files: Vec<&(String, Vec<u8>)> = dropins.iter().collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut from = BTreeMap::new();
    for (name, raw) in files {
        let Some(map) = parse_config(raw) else {
            continue;
        };
        for (k, v) in map {
            let (key, append) = match k.strip_suffix('+') {
                Some(base) => (base.to_string(), true),
                None => (k, false),
            };
            let merged = match (append, config.remove(&key), v) {
                (true, Some(Value::Array(mut a)), Value::Array(b)) => {
                    a.extend(b);
                    Value::Array(a)
                }
                (true, Some(Value::Array(mut a)), other) => {
                    a.push(other);
                    Value::Array(a)
                }
                (true, Some(Value::String(a)), Value::String(b)) => {
                    Value::String(format!("{a},{b}"))
                }
                (_, _, v) => v,
            };
            config.insert(key.clone(), merged);
            from.insert(key, name.clone());
        }
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hand_written_yaml_is_parsed() {
        let y = b"# written by hand\ntoken: s3cret\ntls-san:\n  - k3s.lab.internal\n  - 192.0.2.50\nwrite-kubeconfig-mode: \"0644\"\ncluster-init: true\ndisable: servicelb\n";
        let c = parse_config(y).unwrap();
        assert_eq!(c["token"], json!("s3cret"));
        assert_eq!(c["tls-san"], json!(["k3s.lab.internal", "192.0.2.50"]));
        assert_eq!(c["write-kubeconfig-mode"], json!("0644"));
        assert_eq!(c["cluster-init"], json!(true));
        assert_eq!(parse_config(b""), Some(BTreeMap::new()));
        assert_eq!(parse_config(b"- a\n- b\n"), None);
        assert_eq!(
            parse_config(b"{\"a\": 1}"),
            Some(BTreeMap::from([("a".into(), json!(1))]))
        );
    }

    #[test]
    fn exec_line_of_the_install_script() {
        let unit = "[Service]\nType=notify\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/local/bin/k3s \\\n    'server' \\\n    '--tls-san' \\\n    'k3s.lab.internal' \\\n    '--disable=servicelb' \\\n    '--cluster-init' \\\n    '--node-label' \\\n    'it'\\''s=x' \\\n\n";
        let args = exec_args(unit);
        assert_eq!(
            args,
            vec![
                "--tls-san",
                "k3s.lab.internal",
                "--disable=servicelb",
                "--cluster-init",
                "--node-label",
                "it's=x"
            ]
        );
        let c = flags_to_config(&args);
        assert_eq!(c["tls-san"], json!(["k3s.lab.internal"]));
        assert_eq!(c["disable"], json!(["servicelb"]));
        assert_eq!(c["cluster-init"], json!(true));
        assert_eq!(c["node-label"], json!(["it's=x"]));
    }

    #[test]
    fn env_file_values_are_unquoted() {
        let e = parse_env_file("K3S_TOKEN='a'\\''b'\nK3S_URL='https://192.0.2.2:6443'\n\n");
        assert_eq!(e["K3S_TOKEN"], "a'b");
        assert_eq!(e["K3S_URL"], "https://192.0.2.2:6443");
    }

    #[test]
    fn precedence_file_then_flags_then_env() {
        let yaml = b"node-name: from-file\ntls-san: a\nnode-label:\n  - tier=x\n";
        let unit = "ExecStart=/usr/local/bin/k3s \\\n    'agent' \\\n    '--node-name' \\\n    'from-flag' \\\n    '--node-label' \\\n    'tier=x' \\\n    '--node-label' \\\n    'zone=y' \\\n";
        let env = "K3S_URL='https://s:6443'\nK3S_NODE_NAME='from-env'\nK3S_TOKEN='t'\n";
        let e = effective(Some(yaml), &[], Some(unit), Some(env)).unwrap();
        assert!(e.outside_config_file);
        assert_eq!(e.config["node-name"], json!("from-flag"));
        assert_eq!(e.config["node-label"], json!(["tier=x", "zone=y"]));
        assert_eq!(e.config["tls-san"], json!(["a"]));
        assert_eq!(e.config["server"], json!("https://s:6443"));
        assert_eq!(e.config["token"], json!("t"));
        let only_file = effective(
            Some(b"token: t\n"),
            &[],
            Some("ExecStart=/usr/local/bin/k3s \\\n    'server' \\\n"),
            Some(""),
        )
        .unwrap();
        assert!(!only_file.outside_config_file);
        assert_eq!(effective(Some(b"- not a map\n"), &[], None, None), None);
    }

    #[test]
    fn dropins_override_in_name_order_and_plus_appends() {
        let dropins = vec![
            (
                "20-san.yaml".to_string(),
                b"tls-san+:\n  - vip.lan\n".to_vec(),
            ),
            (
                "10-labels.yaml".to_string(),
                b"node-label:\n  - tier=db\nwrite-kubeconfig-mode: \"0644\"\n".to_vec(),
            ),
            ("30-bad.yaml".to_string(), b"- not a map\n".to_vec()),
        ];
        let e = effective(
            Some(b"{\"tls-san\": [\"10.0.0.1\"], \"node-label\": [\"tier=web\"]}"),
            &dropins,
            None,
            None,
        )
        .unwrap();
        assert_eq!(e.config["tls-san"], json!(["10.0.0.1", "vip.lan"]));
        assert_eq!(e.config["node-label"], json!(["tier=db"]));
        assert_eq!(e.config["write-kubeconfig-mode"], json!("0644"));
        assert_eq!(e.from_dropins["tls-san"], "20-san.yaml");
        assert_eq!(e.from_dropins["node-label"], "10-labels.yaml");
        assert!(!e.outside_config_file);
    }
}
