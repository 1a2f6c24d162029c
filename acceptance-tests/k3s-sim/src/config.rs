//! Flags, `config.yaml` and `K3S_*` variables, merged the way k3s merges them.
//!
//! k3s turns every config-file key into a flag placed *before* the command line, so for a scalar the command line
//! wins over the file, a repeatable (list) flag accumulates the file's values and then the command line's, and a
//! `K3S_*` variable only fills a flag that neither set. Drop-ins in `config.yaml.d/*.yaml` are read in name order;
//! the last value wins and `key+:` appends. We reproduce that precedence because the provider reads the same files
//! back to detect drift, and because "config.yaml changes need a restart" is only observable if the running
//! process really took its settings from the file at start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::paths::Paths;

/// A configuration error (bad flag, unreadable or invalid YAML).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag that needs a value had none.
    #[error("flag needs an argument: --{0}")]
    MissingValue(String),
    /// An argument that is not a flag.
    #[error("unexpected argument {0:?}")]
    Positional(String),
    /// The config file could not be parsed.
    #[error("failed to parse {path}: {msg}")]
    Yaml {
        /// The file.
        path: String,
        /// The parser's message.
        msg: String,
    },
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A setting's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar.
    Str(String),
    /// A boolean flag.
    Bool(bool),
    /// A repeatable flag.
    List(Vec<String>),
}

/// Flags that take no value.
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
    "etcd-disable-snapshots",
    "tls-san-security",
    "etcd-expose-metrics",
    "embedded-registry",
    "flannel-ipv6-masq",
    "flannel-external-ip",
    "docker",
    "etcd-s3",
    "supervisor-metrics",
    "disable-apiserver-lb",
    "compress",
];

/// Repeatable flags (comma-separated values are split, as urfave/cli's string slices do).
const LIST_FLAGS: &[&str] = &[
    "tls-san",
    "disable",
    "node-label",
    "node-taint",
    "node-ip",
    "node-external-ip",
    "kube-apiserver-arg",
    "kubelet-arg",
    "kube-controller-manager-arg",
    "kube-scheduler-arg",
    "kube-proxy-arg",
    "kube-cloud-controller-manager-arg",
    "etcd-arg",
    "cluster-cidr",
    "service-cidr",
    "cluster-dns",
    "service",
];

/// Short flag aliases.
fn long_name(flag: &str) -> &str {
    match flag {
        "t" => "token",
        "s" => "server",
        "c" => "config",
        "o" => "write-kubeconfig",
        "v" => "v",
        other => other,
    }
}

/// `K3S_*` variables that give flags their default.
const ENV_FLAGS: &[(&str, &str)] = &[
    ("K3S_TOKEN", "token"),
    ("K3S_TOKEN_FILE", "token-file"),
    ("K3S_AGENT_TOKEN", "agent-token"),
    ("K3S_AGENT_TOKEN_FILE", "agent-token-file"),
    ("K3S_URL", "server"),
    ("K3S_NODE_NAME", "node-name"),
    ("K3S_KUBECONFIG_MODE", "write-kubeconfig-mode"),
    ("K3S_KUBECONFIG_OUTPUT", "write-kubeconfig"),
    ("K3S_CLUSTER_INIT", "cluster-init"),
    ("K3S_CLUSTER_RESET", "cluster-reset"),
    ("K3S_DATA_DIR", "data-dir"),
    ("K3S_DATASTORE_ENDPOINT", "datastore-endpoint"),
    ("K3S_CONFIG_FILE", "config"),
    ("K3S_WITH_NODE_ID", "with-node-id"),
];

fn is_bool(k: &str) -> bool {
    BOOL_FLAGS.contains(&k)
}
fn is_list(k: &str) -> bool {
    LIST_FLAGS.contains(&k)
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The merged settings of one `k3s server|agent` invocation.
#[derive(Clone, Debug, Default)]
pub struct Config {
    values: BTreeMap<String, Value>,
    /// The config files that were read, in order.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// Merge CLI `args`, the config files and `env` (usually `std::env::vars()`).
    pub fn load(
        args: &[String],
        env: &BTreeMap<String, String>,
        paths: &Paths,
    ) -> Result<Config, ConfigError> {
        let cli = parse_flags(args)?;
        let config_file = match cli.iter().rev().find(|(k, _)| k == "config") {
            Some((_, Value::Str(p))) => paths.host(p),
            _ => match env.get("K3S_CONFIG_FILE") {
                Some(p) if !p.is_empty() => paths.host(p),
                _ => paths.etc().join("config.yaml"),
            },
        };
        let mut cfg = Config::default();
        let mut files = vec![];
        if config_file.exists() {
            files.push(config_file.clone());
        }
        let dropins = PathBuf::from(format!("{}.d", config_file.display()));
        if let Ok(rd) = std::fs::read_dir(&dropins) {
            let mut names: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .map(|e| e == "yaml" || e == "yml")
                        .unwrap_or(false)
                })
                .collect();
            names.sort();
            files.extend(names);
        }
        for f in &files {
            cfg.merge_file(f)?;
        }
        cfg.files = files;
        for (k, v) in cli {
            cfg.set_cli(&k, v);
        }
        for (var, key) in ENV_FLAGS {
            if cfg.values.contains_key(*key) {
                continue;
            }
            if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
                let v = if is_bool(key) {
                    Value::Bool(v == "true" || v == "1")
                } else if is_list(key) {
                    Value::List(split_list(v))
                } else {
                    Value::Str(v.clone())
                };
                cfg.values.insert(key.to_string(), v);
            }
        }
        Ok(cfg)
    }

    fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)?;
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Yaml {
                path: path.display().to_string(),
                msg: e.to_string(),
            })?;
        let map = match yaml {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => return Ok(()),
            _ => {
                return Err(ConfigError::Yaml {
                    path: path.display().to_string(),
                    msg: "not a mapping".into(),
                })
            }
        };
        for (k, v) in map {
            let Some(k) = k.as_str() else { continue };
            let (key, append) = match k.strip_suffix('+') {
                Some(base) => (base.to_string(), true),
                None => (k.to_string(), false),
            };
            let items: Vec<String> = match &v {
                serde_yaml::Value::Sequence(seq) => seq.iter().filter_map(yaml_scalar).collect(),
                other => yaml_scalar(other).into_iter().collect(),
            };
            let value = if is_bool(&key) {
                Value::Bool(
                    matches!(v, serde_yaml::Value::Bool(true))
                        || items.first().map(|s| s == "true").unwrap_or(false),
                )
            } else if is_list(&key) || matches!(v, serde_yaml::Value::Sequence(_)) {
                Value::List(items.iter().flat_map(|s| split_list(s)).collect())
            } else {
                Value::Str(items.into_iter().next().unwrap_or_default())
            };
            match (append, self.values.get_mut(&key), value) {
                (true, Some(Value::List(old)), Value::List(new)) => old.extend(new),
                (true, Some(Value::Str(old)), Value::Str(new)) => old.push_str(&new),
                (_, _, value) => {
                    self.values.insert(key, value);
                }
            }
        }
        Ok(())
    }

    fn set_cli(&mut self, key: &str, v: Value) {
        match (self.values.get_mut(key), v) {
            (Some(Value::List(old)), Value::List(new)) => old.extend(new),
            (_, v) => {
                self.values.insert(key.to_string(), v);
            }
        }
    }

    /// A scalar setting.
    pub fn str(&self, key: &str) -> Option<String> {
        match self.values.get(key) {
            Some(Value::Str(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::List(l)) => l.last().cloned(),
            _ => None,
        }
    }

    /// A boolean setting (absent = false).
    pub fn bool(&self, key: &str) -> bool {
        match self.values.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => s == "true",
            _ => false,
        }
    }

    /// A list setting (absent = empty).
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.values.get(key) {
            Some(Value::List(l)) => l.clone(),
            Some(Value::Str(s)) => split_list(s),
            _ => vec![],
        }
    }

    /// Set a value (tests and internal defaults).
    pub fn set(&mut self, key: &str, v: Value) {
        self.values.insert(key.to_string(), v);
    }
}

fn yaml_scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parse `--flag value`, `--flag=value`, `-t value` and boolean `--flag` / `--flag=false`.
pub fn parse_flags(args: &[String]) -> Result<Vec<(String, Value)>, ConfigError> {
    let mut out = vec![];
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(stripped) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(ConfigError::Positional(a.clone()));
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let name = long_name(name).to_string();
        if is_bool(&name) {
            let b = inline.map(|v| v == "true" || v == "1").unwrap_or(true);
            out.push((name, Value::Bool(b)));
        } else {
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| ConfigError::MissingValue(name.clone()))?
                }
            };
            if is_list(&name) {
                out.push((name, Value::List(split_list(&v))));
            } else {
                out.push((name, Value::Str(v)));
            }
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_override_file_lists_append_env_fills_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let paths = Paths::new(root, "127.0.0.1", None);
        std::fs::create_dir_all(paths.etc().join("config.yaml.d")).unwrap();
        std::fs::write(
            paths.etc().join("config.yaml"),
            "token: fromfile\ntls-san:\n  - 10.0.3.100\ncluster-init: true\nnode-name: a\n",
        )
        .unwrap();
        std::fs::write(
            paths.etc().join("config.yaml.d/10-x.yaml"),
            "tls-san+: [vip.lan]\nnode-name: b\n",
        )
        .unwrap();
        let mut env = BTreeMap::new();
        env.insert("K3S_TOKEN".to_string(), "fromenv".to_string());
        env.insert("K3S_URL".to_string(), "https://x:6443".to_string());
        let cfg = Config::load(
            &s(&[
                "--tls-san",
                "1.2.3.4",
                "--node-name=c",
                "--disable",
                "servicelb",
            ]),
            &env,
            &paths,
        )
        .unwrap();
        assert_eq!(cfg.str("token").as_deref(), Some("fromfile"));
        assert_eq!(
            cfg.list("tls-san"),
            s(&["10.0.3.100", "vip.lan", "1.2.3.4"])
        );
        assert_eq!(cfg.str("node-name").as_deref(), Some("c"));
        assert_eq!(cfg.str("server").as_deref(), Some("https://x:6443"));
        assert!(cfg.bool("cluster-init"));
        assert_eq!(cfg.list("disable"), s(&["servicelb"]));
    }

    #[test]
    fn short_flags_and_bool_forms() {
        let f = parse_flags(&s(&["-t", "abc", "--cluster-init=false", "--with-node-id"])).unwrap();
        assert_eq!(f[0], ("token".into(), Value::Str("abc".into())));
        assert_eq!(f[1], ("cluster-init".into(), Value::Bool(false)));
        assert_eq!(f[2], ("with-node-id".into(), Value::Bool(true)));
        assert!(parse_flags(&s(&["--token"])).is_err());
        assert!(parse_flags(&s(&["stray"])).is_err());
    }
}
