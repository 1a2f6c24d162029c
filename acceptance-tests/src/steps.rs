//! The step API: acceptance tests as a list of configurations Terraform must converge on, in the spirit of
//! terraform-plugin-testing's `resource.Test`.
//!
//! A [`TestCase`] runs its [`Step`]s in one [`Terraform`] world and then destroys everything. For each config step
//! the harness does what a careful user would, and fails loudly with Terraform's full output when a rule breaks:
//!
//! 1. optional `before` hook (e.g. delete an object out of band);
//! 2. `plan -out` → pre-apply plan checks on `show -json PLAN` (e.g. "this is an in-place update");
//! 3. `apply PLAN` → state checks on `show -json`;
//! 4. `plan -refresh=false -detailed-exitcode` must be empty: the provider's apply result matches its own plan;
//! 5. refreshed `plan -detailed-exitcode` must be empty: what `Read` returns matches what apply stored.
//!
//! Expect-error steps pass only when plan or apply fails *and* the diagnostic matches a regex (matched against
//! [`normalize_diagnostics`] text, so Terraform's line wrapping never matters). Import steps import the object of
//! the previous step into a *fresh* working directory (by `terraform import`, an `import {}` block with an id, or
//! one with a resource identity), require an empty plan afterwards and compare every attribute with the original
//! state. After the last step: `destroy`, an empty state, then the `check_destroy` hook on the last state.
//!
//! ```no_run
//! use homelab_acceptance::steps::{Step, TestCase};
//! use homelab_acceptance::terraform::{Action, TerraformVersion};
//! TestCase::new(TerraformVersion::V1_15)
//!     .step(Step::config(r#"resource "terraform_data" "a" { input = "x" }"#)
//!         .expect_action("terraform_data.a", Action::Create)
//!         .check_attr("terraform_data.a", "output", "x"))
//!     .step(Step::config(r#"resource "terraform_data" "a" { input = "y" }"#)
//!         .expect_action("terraform_data.a", Action::Update))
//!     .run();
//! ```

use std::fmt::Write as _;

use regex::Regex;
use serde_json::Value;

use crate::terraform::{
    hcl_string, normalize_diagnostics, Action, Error, Plan, PlanOutcome, Result, State, Terraform,
    TerraformVersion,
};

/// A check on the state after a step; `Err(message)` fails the test.
pub type StateCheck = Box<dyn Fn(&State) -> Result<(), String>>;
/// A check on the saved plan of a step, before apply.
pub type PlanCheck = Box<dyn Fn(&Plan) -> Result<(), String>>;
/// Code run before a step, with the world and the state of the previous step.
pub type Hook = Box<dyn FnOnce(&mut Terraform, Option<&State>) -> Result<(), String>>;
/// The final check after destroy, given the world and the last state before destroy (e.g. "the backend has no
/// such object").
pub type DestroyCheck = Box<dyn FnOnce(&Terraform, &State) -> Result<(), String>>;
/// Code run once when the world exists, before the first step (e.g. set environment variables that name files
/// inside the world).
pub type Setup = Box<dyn FnOnce(&mut Terraform)>;

/// How an import step imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    /// `terraform import ADDRESS ID` (every version).
    Command,
    /// An `import { to = ADDRESS, id = ID }` block, plan + apply (1.5+).
    BlockWithId,
    /// An `import { to = ADDRESS, identity = {...} }` block (1.12+).
    BlockWithIdentity,
}

struct ImportSpec {
    kind: ImportKind,
    address: String,
    id: Option<String>,
    identity: Option<Value>,
    ignore: Vec<String>,
    generate_config: bool,
}

/// One step of a [`TestCase`]. Build with [`Step::config`] or [`Step::import`], refine with the builder methods.
pub struct Step {
    name: Option<String>,
    config: Option<String>,
    import: Option<ImportSpec>,
    expect_error: Option<Regex>,
    expect_warning: Option<Regex>,
    expect_non_empty_plan: bool,
    plan_only: bool,
    plan_checks: Vec<PlanCheck>,
    state_checks: Vec<StateCheck>,
    before: Option<Hook>,
}

impl Step {
    fn empty() -> Step {
        Step {
            name: None,
            config: None,
            import: None,
            expect_error: None,
            expect_warning: None,
            expect_non_empty_plan: false,
            plan_only: false,
            plan_checks: Vec::new(),
            state_checks: Vec::new(),
            before: None,
        }
    }

    /// A step that applies `hcl` as the whole configuration (`main.tf`).
    pub fn config(hcl: impl Into<String>) -> Step {
        Step {
            config: Some(hcl.into()),
            ..Step::empty()
        }
    }

    /// A step that imports `address` of the previous step into a fresh state and verifies it. The id defaults to
    /// the `id` attribute, the identity to the stored identity, the configuration to the previous step's.
    pub fn import(kind: ImportKind, address: &str) -> Step {
        Step {
            import: Some(ImportSpec {
                kind,
                address: address.to_string(),
                id: None,
                identity: None,
                ignore: Vec::new(),
                generate_config: false,
            }),
            ..Step::empty()
        }
    }

    /// A name shown in failure messages.
    pub fn named(mut self, name: &str) -> Step {
        self.name = Some(name.to_string());
        self
    }

    /// The configuration for an import step (default: the previous step's).
    pub fn with_config(mut self, hcl: impl Into<String>) -> Step {
        self.config = Some(hcl.into());
        self
    }

    /// Import with this id instead of the `id` attribute.
    pub fn import_id(mut self, id: &str) -> Step {
        self.import_spec().id = Some(id.to_string());
        self
    }

    /// Import with this identity object instead of the stored identity.
    pub fn import_identity(mut self, identity: Value) -> Step {
        self.import_spec().identity = Some(identity);
        self
    }

    /// Attributes (top-level names) not compared after import (write-only or unreadable values).
    pub fn ignore(mut self, attributes: &[&str]) -> Step {
        self.import_spec()
            .ignore
            .extend(attributes.iter().map(|s| s.to_string()));
        self
    }

    /// Import block steps: the configuration has no resource block for the address; Terraform generates it with
    /// `plan -generate-config-out=generated.tf`, then the harness applies and requires an empty plan.
    pub fn generate_config(mut self) -> Step {
        self.import_spec().generate_config = true;
        self
    }

    fn import_spec(&mut self) -> &mut ImportSpec {
        self.import
            .as_mut()
            .expect("this builder method is only for Step::import steps")
    }

    /// The step must fail (in plan or apply) with a diagnostic matching `pattern` (a regex, matched against the
    /// output with Terraform's frame and line wrapping removed).
    pub fn expect_error(mut self, pattern: &str) -> Step {
        self.expect_error = Some(Regex::new(pattern).expect("expect_error: invalid regex"));
        self
    }

    /// The step's plan must show a warning matching `pattern` (a regex over the plan's output with diagnostics
    /// unwrapped, like [`Step::expect_error`]).
    pub fn expect_warning(mut self, pattern: &str) -> Step {
        self.expect_warning = Some(Regex::new(pattern).expect("expect_warning: invalid regex"));
        self
    }

    /// The plans after apply are allowed (and required) to show changes.
    pub fn expect_non_empty_plan(mut self) -> Step {
        self.expect_non_empty_plan = true;
        self
    }

    /// Only plan (no apply); the plan must be empty unless [`Step::expect_non_empty_plan`].
    pub fn plan_only(mut self) -> Step {
        self.plan_only = true;
        self
    }

    /// Runs `hook` before the step (with the previous step's state).
    pub fn before(
        mut self,
        hook: impl FnOnce(&mut Terraform, Option<&State>) -> Result<(), String> + 'static,
    ) -> Step {
        self.before = Some(Box::new(hook));
        self
    }

    /// A custom check on the saved plan before apply.
    pub fn plan_check(mut self, check: impl Fn(&Plan) -> Result<(), String> + 'static) -> Step {
        self.plan_checks.push(Box::new(check));
        self
    }

    /// The plan must do `action` to `address`.
    pub fn expect_action(self, address: &str, action: Action) -> Step {
        let address = address.to_string();
        self.plan_check(move |plan| match plan.action(&address) {
            Some(a) if a == action => Ok(()),
            other => Err(format!(
                "expected {address} to plan {action:?}, got {other:?}"
            )),
        })
    }

    /// A custom check on the state after apply.
    pub fn check(mut self, check: impl Fn(&State) -> Result<(), String> + 'static) -> Step {
        self.state_checks.push(Box::new(check));
        self
    }

    /// The state value at `address` / `path` must equal `value`.
    pub fn check_attr(self, address: &str, path: &str, value: impl Into<Value>) -> Step {
        let (address, path, value) = (address.to_string(), path.to_string(), value.into());
        self.check(move |state| match state.attr(&address, &path) {
            Some(v) if *v == value => Ok(()),
            other => Err(format!("{address}.{path}: expected {value}, got {other:?}")),
        })
    }

    /// The state value at `address` / `path` must be set (present and not null).
    pub fn check_attr_set(self, address: &str, path: &str) -> Step {
        let (address, path) = (address.to_string(), path.to_string());
        self.check(move |state| match state.attr(&address, &path) {
            Some(v) if !v.is_null() => Ok(()),
            other => Err(format!("{address}.{path}: expected a value, got {other:?}")),
        })
    }

    fn label(&self, index: usize) -> String {
        let kind = match (&self.import, &self.name) {
            (_, Some(name)) => name.clone(),
            (Some(spec), None) => format!("import {:?} {}", spec.kind, spec.address),
            (None, None) => "config".to_string(),
        };
        format!("step {} ({kind})", index + 1)
    }
}

/// A sequence of steps against one Terraform version, destroyed at the end.
pub struct TestCase {
    version: TerraformVersion,
    steps: Vec<Step>,
    env: Vec<(String, String)>,
    setup: Option<Setup>,
    check_destroy: Option<DestroyCheck>,
}

/// What a passing [`TestCase::try_run`] leaves for inspection.
pub struct Finished {
    /// The world (working dir, logs) after destroy.
    pub terraform: Terraform,
    /// The state after the last step, before destroy.
    pub last_state: Option<State>,
}

impl TestCase {
    pub fn new(version: TerraformVersion) -> TestCase {
        TestCase {
            version,
            steps: Vec::new(),
            env: Vec::new(),
            setup: None,
            check_destroy: None,
        }
    }

    /// Adds a step.
    pub fn step(mut self, step: Step) -> TestCase {
        self.steps.push(step);
        self
    }

    /// An environment variable for every Terraform command of the case (and so for the provider).
    pub fn env(mut self, key: &str, value: &str) -> TestCase {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Code run once the world exists, before the first step.
    pub fn setup(mut self, setup: impl FnOnce(&mut Terraform) + 'static) -> TestCase {
        self.setup = Some(Box::new(setup));
        self
    }

    /// A check run after the final destroy.
    pub fn check_destroy(
        mut self,
        check: impl FnOnce(&Terraform, &State) -> Result<(), String> + 'static,
    ) -> TestCase {
        self.check_destroy = Some(Box::new(check));
        self
    }

    /// Runs the case and panics with a complete report (step, rule, Terraform output) on failure.
    pub fn run(self) {
        let version = self.version;
        if let Err(e) = self.try_run() {
            panic!("acceptance test failed on Terraform {version}:\n{e}");
        }
    }

    /// Runs the case; the error says which step and rule failed and carries Terraform's output.
    pub fn try_run(self) -> Result<Finished> {
        let mut tf = Terraform::new(self.version)?;
        for (k, v) in &self.env {
            tf.set_env(k, v.clone());
        }
        if let Some(setup) = self.setup {
            setup(&mut tf);
        }
        let mut run = CaseRun {
            tf,
            initialized: false,
            last_config: None,
            last_state: None,
            applied: false,
        };
        for (index, step) in self.steps.into_iter().enumerate() {
            let label = step.label(index);
            if let Err(e) = run.step(step) {
                let cleanup = run.cleanup_note();
                return Err(Error::Check(format!("{label} failed: {e}{cleanup}")));
            }
        }
        if run.applied {
            run.restore_last_config()?;
            let out = run.tf.destroy()?;
            if !out.success() {
                return Err(Error::Command {
                    message: "final destroy failed".to_string(),
                    output: Box::new(out),
                });
            }
            let after = run.tf.state()?;
            if !after.is_empty() {
                return Err(Error::Check(format!(
                    "resources left in state after destroy: {:?}",
                    after.addresses()
                )));
            }
        }
        if let Some(check) = self.check_destroy {
            let last = run.last_state.clone().unwrap_or(State(Value::Null));
            check(&run.tf, &last)
                .map_err(|e| Error::Check(format!("check_destroy failed: {e}")))?;
        }
        Ok(Finished {
            terraform: run.tf,
            last_state: run.last_state,
        })
    }
}

struct CaseRun {
    tf: Terraform,
    initialized: bool,
    last_config: Option<String>,
    last_state: Option<State>,
    applied: bool,
}

fn fail(message: impl Into<String>, output: &crate::process::Output) -> Error {
    Error::Command {
        message: message.into(),
        output: Box::new(output.clone()),
    }
}

/// Whether `output` matches the expected error regex.
fn matches_error(re: &Regex, output: &crate::process::Output) -> bool {
    re.is_match(&normalize_diagnostics(&output.combined()))
}

impl CaseRun {
    /// Best-effort destroy after a failed step, so a failing test does not leave objects behind.
    fn cleanup_note(&mut self) -> String {
        if !self.applied {
            return String::new();
        }
        if let Err(e) = self.restore_last_config() {
            return format!("\n(cleanup destroy after the failure impossible: {e})");
        }
        match self.tf.destroy() {
            Ok(out) if out.success() => String::new(),
            Ok(out) => format!("\n(cleanup destroy after the failure also failed)\n{out}"),
            Err(e) => format!("\n(cleanup destroy after the failure also failed: {e})"),
        }
    }

    /// Destroy runs with the last configuration that applied successfully (a later expect-error step may have
    /// left a broken `main.tf`).
    fn restore_last_config(&self) -> Result<()> {
        match &self.last_config {
            Some(config) => self.tf.write_config(config),
            None => Ok(()),
        }
    }

    /// `init` before the first plan (1.15 only); a failed init is returned as output, like a failed plan.
    fn init_once(&mut self) -> Result<Option<crate::process::Output>> {
        if self.initialized || !self.tf.version().can_init() {
            return Ok(None);
        }
        let out = self.tf.run(&["init", "-input=false", "-no-color"])?;
        if !out.success() {
            return Ok(Some(out));
        }
        self.initialized = true;
        Ok(None)
    }

    fn step(&mut self, mut step: Step) -> Result<()> {
        if let Some(hook) = step.before.take() {
            hook(&mut self.tf, self.last_state.as_ref())
                .map_err(|e| Error::Check(format!("before hook: {e}")))?;
        }
        if step.import.is_some() {
            return self.import_step(step);
        }
        let config = step
            .config
            .clone()
            .expect("config step has a configuration");
        self.tf.write_config(&config)?;
        if let Some(failed) = self.init_once()? {
            return self.expected_failure(&step, &failed, "init");
        }

        let plan = self.tf.plan(&["-out=step.tfplan"])?;
        if let PlanOutcome::Failed(out) = &plan {
            return self.expected_failure(&step, out, "plan");
        }
        if let Some(re) = &step.expect_warning {
            if !matches_error(re, plan.output()) {
                return Err(fail(
                    format!("the plan shows no warning matching /{re}/"),
                    plan.output(),
                ));
            }
        }
        let saved = self.tf.show_plan("step.tfplan")?;
        for check in &step.plan_checks {
            check(&saved).map_err(|e| fail(format!("plan check: {e}"), plan.output()))?;
        }
        if step.plan_only {
            if step.expect_error.is_some() {
                return Err(fail("expected an error, but plan succeeded", plan.output()));
            }
            return match (&plan, step.expect_non_empty_plan) {
                (PlanOutcome::Changes(out), false) => {
                    Err(fail("plan-only step: expected an empty plan", out))
                }
                (PlanOutcome::Empty(out), true) => Err(fail(
                    "plan-only step: expected changes, plan was empty",
                    out,
                )),
                _ => Ok(()),
            };
        }

        let apply = self
            .tf
            .run(&["apply", "-input=false", "-no-color", "step.tfplan"])?;
        self.applied = true;
        if !apply.success() {
            return self.expected_failure(&step, &apply, "apply");
        }
        if step.expect_error.is_some() {
            return Err(fail(
                "expected an error, but plan and apply succeeded",
                &apply,
            ));
        }
        let state = self.tf.state()?;
        for check in &step.state_checks {
            check(&state)
                .map_err(|e| fail(format!("state check: {e}\nstate: {}", state.0), &apply))?;
        }
        self.last_state = Some(state);
        self.last_config = Some(config);
        self.require_plan(
            &["-refresh=false"],
            step.expect_non_empty_plan,
            "non-refresh plan",
        )?;
        self.require_plan(&[], step.expect_non_empty_plan, "refreshed plan")
    }

    fn expected_failure(
        &mut self,
        step: &Step,
        out: &crate::process::Output,
        what: &str,
    ) -> Result<()> {
        match &step.expect_error {
            Some(re) if matches_error(re, out) => {
                // Whatever partially happened is what later steps start from.
                self.last_state = self.tf.state().ok();
                Ok(())
            }
            Some(re) => Err(fail(
                format!("{what} failed, but not with an error matching /{re}/"),
                out,
            )),
            None => Err(fail(format!("{what} failed"), out)),
        }
    }

    /// After apply, a plan must be empty (or non-empty if `expect_changes`).
    fn require_plan(&self, extra: &[&str], expect_changes: bool, what: &str) -> Result<()> {
        match self.tf.plan(extra)? {
            PlanOutcome::Failed(out) => Err(fail(format!("after apply, the {what} failed"), &out)),
            PlanOutcome::Changes(out) if !expect_changes => Err(fail(
                format!("after applying this step, the {what} was not empty (provider result differs from config)"),
                &out,
            )),
            PlanOutcome::Empty(out) if expect_changes => Err(fail(
                format!("after applying this step, the {what} was empty, but changes were expected"),
                &out,
            )),
            _ => Ok(()),
        }
    }

    fn import_step(&mut self, step: Step) -> Result<()> {
        let spec = step.import.as_ref().expect("import step");
        let version = self.tf.version();
        let address = spec.address.clone();
        let previous = self.last_state.clone().ok_or_else(|| {
            Error::Check(
                "an import step needs a previous config step that created the object".to_string(),
            )
        })?;
        let config = step
            .config
            .clone()
            .or_else(|| self.last_config.clone())
            .ok_or_else(|| Error::Check("import step: no configuration".to_string()))?;
        let id = match &spec.id {
            Some(id) => id.clone(),
            None => previous
                .attr(&address, "id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    Error::Check(format!(
                        "import step: {address} has no string `id` in state"
                    ))
                })?,
        };

        let imp = self.tf.sibling()?;
        imp.write_config(&config)?;
        match spec.kind {
            ImportKind::Command => {
                imp.init()?;
                let out = imp.import(&address, &id)?;
                if !out.success() {
                    return self.expected_failure(&step, &out, "terraform import");
                }
            }
            ImportKind::BlockWithId | ImportKind::BlockWithIdentity => {
                if !version.has_import_blocks()
                    || (spec.kind == ImportKind::BlockWithIdentity && !version.has_identity())
                {
                    return Err(Error::Unsupported {
                        feature: "import blocks of this kind",
                        version,
                    });
                }
                let target = match spec.kind {
                    ImportKind::BlockWithId => format!("  id = {}\n", hcl_string(&id)),
                    _ => {
                        let identity = spec
                            .identity
                            .clone()
                            .or_else(|| previous.identity(&address).cloned())
                            .ok_or_else(|| {
                                Error::Check(format!(
                                    "import step: no identity for {address} in state; give one"
                                ))
                            })?;
                        format!("  identity = {}\n", hcl_value(&identity))
                    }
                };
                imp.write_file(
                    "import.tf",
                    &format!("import {{\n  to = {address}\n{target}}}\n"),
                )?;
                imp.init()?;
                let mut args = vec!["-out=import.tfplan"];
                if spec.generate_config {
                    args.push("-generate-config-out=generated.tf");
                }
                let plan = imp.plan(&args)?;
                if let PlanOutcome::Failed(out) = &plan {
                    return self.expected_failure(&step, out, "import plan");
                }
                let saved = imp.show_plan("import.tfplan")?;
                if !saved.imports(&address) {
                    return Err(fail(
                        format!("the plan does not import {address}"),
                        plan.output(),
                    ));
                }
                for check in &step.plan_checks {
                    check(&saved).map_err(|e| fail(format!("plan check: {e}"), plan.output()))?;
                }
                // What the provider read back on import is the plan's `before`: compare that with the applied object.
                let read_back = saved
                    .change(&address)
                    .and_then(|c| c.pointer("/change/before"));
                let diff = compare_values(previous.values(&address), read_back, &spec.ignore);
                if !diff.is_empty() {
                    return Err(fail(
                        format!("imported {address} differs from the applied one:\n{diff}"),
                        plan.output(),
                    ));
                }
                let action = saved.action(&address);
                if step.expect_non_empty_plan {
                    // Changes were expected: don't apply them (that would change the object the case owns).
                    return if action == Some(Action::NoOp) {
                        Err(fail(
                            "expected changes after import, the import plan has none",
                            plan.output(),
                        ))
                    } else {
                        Ok(())
                    };
                }
                if action != Some(Action::NoOp) {
                    return Err(fail(
                        format!("importing {address} must not change it; planned {action:?}"),
                        plan.output(),
                    ));
                }
                let apply = imp.run(&["apply", "-input=false", "-no-color", "import.tfplan"])?;
                if !apply.success() {
                    return self.expected_failure(&step, &apply, "import apply");
                }
            }
        }
        if step.expect_error.is_some() {
            return Err(Error::Check(
                "expected an error, but the import succeeded".to_string(),
            ));
        }
        let imported = imp.state()?;
        let diff = compare_values(
            previous.values(&address),
            imported.values(&address),
            &spec.ignore,
        );
        if !diff.is_empty() {
            return Err(Error::Check(format!(
                "imported {address} differs from the applied one:\n{diff}"
            )));
        }
        for check in &step.state_checks {
            check(&imported).map_err(|e| Error::Check(format!("state check after import: {e}")))?;
        }
        match imp.plan(&[])? {
            PlanOutcome::Empty(_) if !step.expect_non_empty_plan => Ok(()),
            PlanOutcome::Changes(_) if step.expect_non_empty_plan => Ok(()),
            other => Err(fail(
                "after import, the plan must be empty (import must read back exactly the configured object)",
                other.output(),
            )),
        }
    }
}

/// Human-readable list of attribute differences between two resource `values` objects.
pub fn compare_values(
    expected: Option<&Value>,
    actual: Option<&Value>,
    ignore: &[String],
) -> String {
    let mut out = String::new();
    let (Some(Value::Object(e)), Some(Value::Object(a))) = (expected, actual) else {
        let _ = writeln!(out, "  expected {expected:?}\n  got      {actual:?}");
        return out;
    };
    let keys: std::collections::BTreeSet<&String> = e.keys().chain(a.keys()).collect();
    for key in keys {
        if ignore.iter().any(|i| i == key) {
            continue;
        }
        let (ev, av) = (e.get(key), a.get(key));
        if ev != av {
            let _ = writeln!(out, "  {key}: applied {ev:?}, imported {av:?}");
        }
    }
    out
}

/// A JSON value as an HCL expression (for generated `import` blocks and configs).
pub fn hcl_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => hcl_string(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(hcl_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{} = {}", hcl_string(k), hcl_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hcl_values() {
        assert_eq!(
            hcl_value(&json!({"id": "a\"b", "l": [true, null]})),
            r#"{ "id" = "a\"b", "l" = [true, null] }"#
        );
    }

    #[test]
    fn compare_reports_only_differences() {
        let e = json!({"a": 1, "b": "x", "secret": "s"});
        let a = json!({"a": 1, "b": "y", "secret": null});
        let diff = compare_values(Some(&e), Some(&a), &["secret".to_string()]);
        assert_eq!(
            diff,
            "  b: applied Some(String(\"x\")), imported Some(String(\"y\"))\n"
        );
        assert!(compare_values(Some(&e), Some(&e), &[]).is_empty());
    }
}
