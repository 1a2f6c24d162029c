//! Self-tests of the harness and of our Terraform 1.15.5 CLI script, against Terraform's built-in
//! `terraform_data` resource and commands that need no provider.
//!
//! They prove the harness can *fail* (a test harness that passes everything proves nothing): a non-empty plan
//! after apply, a wrong expected error, a missing action are all reported, with Terraform's output.

use std::time::Duration;

use homelab_acceptance::process;
use homelab_acceptance::terraform::{normalize_diagnostics, PlanOutcome};
use homelab_acceptance::{Action, ImportKind, Step, Terraform, TerraformVersion, TestCase};

#[test]
fn both_versions_report_their_version_and_use_our_cli_config() {
    for version in TerraformVersion::selected() {
        let tf = Terraform::new(version).unwrap();
        let out = tf.run_ok(&["version", "-json"]).unwrap();
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(json["terraform_version"], version.number(), "{out}");
        // The machine's TF_CLI_CONFIG_FILE points at a missing file: Terraform would warn if it read it.
        assert!(!out.stderr.contains("CLI configuration"), "{out}");
        assert!(std::fs::read_to_string(tf.cli_config())
            .unwrap()
            .contains("dev_overrides"));
    }
}

#[test]
fn exit_codes_and_detailed_exitcode_pass_through() {
    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    assert_eq!(tf.run(&["no-such-command"]).unwrap().code, Some(1));
    tf.write_config(r#"resource "terraform_data" "a" { input = "x" }"#)
        .unwrap();
    assert!(matches!(tf.plan(&[]).unwrap(), PlanOutcome::Changes(_)));
    tf.write_config("").unwrap();
    assert!(matches!(tf.plan(&[]).unwrap(), PlanOutcome::Empty(_)));
    tf.write_config("resource {").unwrap();
    assert!(matches!(tf.plan(&[]).unwrap(), PlanOutcome::Failed(_)));
}

#[test]
fn stdin_reaches_terraform() {
    for version in TerraformVersion::selected() {
        let tf = Terraform::new(version).unwrap();
        let out = tf.run_with_stdin(&["console"], "6 * 7\n").unwrap();
        assert_eq!(out.stdout.trim(), "42", "{out}");
    }
    // The interactive approval prompt of apply reads stdin too.
    let mut tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.remove_env("TF_INPUT");
    tf.write_config(r#"resource "terraform_data" "a" { input = "x" }"#)
        .unwrap();
    let out = tf.run_with_stdin(&["apply", "-no-color"], "yes\n").unwrap();
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains("Apply complete! Resources: 1 added"),
        "{out}"
    );
}

#[test]
fn lifecycle_of_terraform_data_through_steps() {
    let config = |input: &str, trigger: &str| {
        format!(
            r#"resource "terraform_data" "a" {{
  input            = "{input}"
  triggers_replace = ["{trigger}"]
}}"#
        )
    };
    TestCase::new(TerraformVersion::V1_15)
        .step(
            Step::config(config("one", "t1"))
                .expect_action("terraform_data.a", Action::Create)
                .check_attr("terraform_data.a", "output", "one")
                .check_attr_set("terraform_data.a", "id"),
        )
        .step(
            Step::config(config("two", "t1"))
                .expect_action("terraform_data.a", Action::Update)
                .check_attr("terraform_data.a", "output", "two"),
        )
        .step(Step::config(config("two", "t2")).expect_action("terraform_data.a", Action::Replace))
        .step(
            // terraform_data imports only its id: the plan afterwards wants to set input again.
            Step::import(ImportKind::Command, "terraform_data.a")
                .ignore(&["input", "output", "triggers_replace"])
                .expect_non_empty_plan(),
        )
        .step(
            Step::import(ImportKind::BlockWithId, "terraform_data.a")
                .ignore(&["input", "output", "triggers_replace"])
                .expect_non_empty_plan(),
        )
        .step(
            // No resource block: Terraform writes it (`input = null`), so the import is a clean no-op.
            Step::import(ImportKind::BlockWithId, "terraform_data.a")
                .with_config("")
                .generate_config()
                .ignore(&["input", "output", "triggers_replace"]),
        )
        .check_destroy(|_, last| {
            last.attr("terraform_data.a", "id")
                .map(|_| ())
                .ok_or_else(|| "last state lacks terraform_data.a".to_string())
        })
        .run();
}

#[test]
fn outputs_only_config_on_1_0() {
    TestCase::new(TerraformVersion::V1_0)
        .step(Step::config(r#"output "x" { value = "y" }"#))
        .step(
            Step::config("output \"x\" {\n  value = nonexistent_function()\n}\n")
                .expect_error("Call to unknown function"),
        )
        .run();
}

#[test]
fn expect_error_matches_unwrapped_diagnostics() {
    for version in TerraformVersion::selected() {
        TestCase::new(version)
            .step(
                Step::config(r#"variable "v" { type = number }
output "o" { value = var.v }"#)
                    .expect_error(r#"No value for required variable.*The root module input variable "v" is not set"#),
            )
            .run();
    }
}

#[test]
fn harness_fails_when_the_plan_after_apply_is_not_empty() {
    // timestamp() changes on every plan: the post-apply plans cannot be empty.
    let err = TestCase::new(TerraformVersion::V1_15)
        .step(Step::config(
            r#"resource "terraform_data" "a" { input = timestamp() }"#,
        ))
        .try_run()
        .err()
        .expect("the harness must reject a non-empty plan after apply");
    let text = err.to_string();
    assert!(text.contains("step 1 (config) failed"), "{text}");
    assert!(text.contains("was not empty"), "{text}");
    assert!(
        text.contains("terraform_data.a will be updated in-place"),
        "{text}"
    );
}

#[test]
fn harness_fails_on_wrong_action_and_wrong_error() {
    let wrong_action = TestCase::new(TerraformVersion::V1_15)
        .step(
            Step::config(r#"resource "terraform_data" "a" { input = "x" }"#)
                .expect_action("terraform_data.a", Action::Update),
        )
        .try_run()
        .err()
        .expect("wrong action must fail");
    assert!(wrong_action
        .to_string()
        .contains("expected terraform_data.a to plan Update"));

    let wrong_error = TestCase::new(TerraformVersion::V1_15)
        .step(Step::config("resource {").expect_error("something else entirely"))
        .try_run()
        .err()
        .expect("an unmatched error must fail");
    assert!(
        wrong_error
            .to_string()
            .contains("not with an error matching"),
        "{wrong_error}"
    );

    let missing_error = TestCase::new(TerraformVersion::V1_15)
        .step(Step::config(r#"output "o" { value = 1 }"#).expect_error("never"))
        .try_run()
        .err()
        .expect("a missing error must fail");
    assert!(
        missing_error.to_string().contains("expected an error"),
        "{missing_error}"
    );
}

#[test]
fn ctrl_c_interrupts_terraform_cleanly() {
    // A real terminal sends SIGINT to the whole foreground process group; Terraform must stop gracefully,
    // say so, and leave a consistent state (the shim resets SIGINT so the Go runtime handles it).
    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.write_config(
        r#"resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep 20"
  }
}"#,
    )
    .unwrap();
    let mut running = tf
        .spawn(&["apply", "-auto-approve", "-no-color", "-input=false"])
        .unwrap();
    assert!(
        running.wait_for(Duration::from_secs(30), |r| r
            .stdout_so_far()
            .contains("Provisioning with 'local-exec'")),
        "apply never reached the provisioner:\n{}\n{}",
        running.stdout_so_far(),
        running.stderr_so_far()
    );
    let started = std::time::Instant::now();
    running.signal_group(libc::SIGINT).unwrap();
    let out = tf.wait(running).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "interrupt took too long\n{out}"
    );
    assert_eq!(out.code, Some(1), "{out}");
    let text = normalize_diagnostics(&out.combined());
    // Terraform prints "Interrupt received" when its handler wins the race; when the group's SIGINT reaches the
    // provisioner's child first, the apply fails with the child's "signal: interrupt" instead. Both are a clean stop.
    assert!(
        text.contains("Interrupt received") || text.contains("signal: interrupt"),
        "{out}"
    );
    // The state is readable and the resource is tainted (the provisioner did not finish), so a new plan replaces it.
    let state = tf.state().unwrap();
    assert!(
        state.resource("terraform_data.slow").is_some(),
        "{}",
        state.0
    );
    let plan = tf.plan(&[]).unwrap();
    assert!(
        plan.output().stdout.contains("tainted") && matches!(plan, PlanOutcome::Changes(_)),
        "{}",
        plan.output()
    );
}

#[test]
fn commands_time_out_instead_of_hanging() {
    let mut tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.set_timeout(Duration::from_secs(2));
    // A provisioner that sleeps far longer than the deadline.
    tf.write_config(
        r#"resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep 20"
  }
}"#,
    )
    .unwrap();
    let err = tf.apply(&[]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("did not finish within"), "{text}");
    assert!(text.contains("Provisioning with 'local-exec'"), "{text}");
    // The process group (Terraform and the `sleep` it started) is gone.
    std::thread::sleep(Duration::from_millis(200));
    let leftovers = process::children(std::process::id())
        .into_iter()
        .filter(|&p| process::exe_name(p).as_deref() == Some("sleep"))
        .count();
    assert_eq!(leftovers, 0);
}
