//! Acceptance tests of the provider foundation (issue 3), through real Terraform 1.15.5 and 1.0.3: the plugin
//! handshake and its failure modes, schemas, diagnostics on attribute paths, logging, secrets, interrupts and a
//! killed provider, the resource lifecycle of the test fixture, `terraform query`, and debug/reattach mode.
//!
//! They need the provider built with `--features test-fixtures` (`acceptance-tests/dev test` does that) because
//! they exercise the framework through `homelab_test_fixture`, a resource with no backend but every feature.

use std::process::Command;
use std::time::Duration;

use homelab_acceptance::paths;
use homelab_acceptance::process::{self, Running};
use homelab_acceptance::terraform::{normalize_diagnostics, required_providers, PlanOutcome};
use homelab_acceptance::{
    Action, ImportKind, Step, Terraform, TerraformVersion, TestCase, PROVIDER_SOURCE,
};

use homelab_acceptance::fixture::{self, fixture_config, provider_block, Store, FIXTURE};

const COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A Terraform world with the provider under test and a private fixture store.
fn world(version: TerraformVersion) -> Terraform {
    let mut tf = Terraform::new(version).unwrap();
    tf.require_provider().unwrap();
    fixture::use_private_store(&mut tf);
    tf
}

/// `required_providers` + an empty provider block + `body`.
fn with_provider(body: &str) -> String {
    format!("{}\n{}\n{body}", required_providers(), provider_block(""))
}

/// The provider binary run directly, with a clean environment.
fn provider_command() -> Command {
    let mut cmd = Command::new(paths::provider_binary());
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    cmd
}

// --- handshake -------------------------------------------------------------------------------------------------

#[test]
fn without_magic_cookie_the_binary_explains_itself_and_exits_1() {
    let out = process::run(provider_command(), None, Duration::from_secs(10)).unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "nothing may go to stdout:\n{out}");
    assert!(
        out.stderr.contains("Terraform"),
        "the message should say this is a Terraform plugin:\n{out}"
    );
}

#[test]
fn a_host_without_protocol_6_gets_a_clear_error() {
    let mut cmd = provider_command();
    cmd.env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5");
    let out = process::run(cmd, None, Duration::from_secs(10)).unwrap();
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stdout.is_empty(), "nothing may go to stdout:\n{out}");
    assert!(
        out.stderr.contains("protocol") && out.stderr.contains('6'),
        "{out}"
    );
}

#[test]
fn handshake_line_is_the_only_stdout() {
    let mut cmd = provider_command();
    cmd.env("TF_PLUGIN_MAGIC_COOKIE", COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
        .env("TF_LOG", "trace");
    let mut running = process::spawn(cmd, None).unwrap();
    assert!(running.wait_for(Duration::from_secs(10), |r| r
        .stdout_so_far()
        .contains('\n')));
    // Give a misbehaving provider the chance to print more, then check there is exactly one line.
    std::thread::sleep(Duration::from_millis(200));
    let stdout = running.stdout_so_far();
    let re = regex::Regex::new(r"^1\|6\|unix\|/[^|]+\|grpc\|[A-Za-z0-9+/]*\n$").unwrap();
    assert!(re.is_match(&stdout), "handshake line {stdout:?}");
    let socket = stdout.split('|').nth(3).unwrap().to_string();
    assert!(
        std::path::Path::new(&socket).exists(),
        "socket {socket} missing"
    );
    running.signal(libc::SIGTERM).unwrap();
    let _ = running.wait(Duration::from_secs(10));
}

// --- schemas and validation ------------------------------------------------------------------------------------

#[test]
fn providers_schema_lists_provider_and_fixture_with_descriptions() {
    for version in TerraformVersion::selected() {
        let tf = world(version);
        tf.write_config(&format!("{}\n{}", required_providers(), provider_block("")))
            .unwrap();
        tf.init().unwrap();
        let schemas = tf.providers_schema().unwrap();
        let provider = schemas
            .homelab()
            .unwrap_or_else(|| panic!("{PROVIDER_SOURCE} missing on {version}: {}", schemas.0));
        let mut blocks = vec![("provider".to_string(), &provider["provider"]["block"])];
        let resource = schemas.resource(FIXTURE).expect("fixture resource schema");
        blocks.push((format!("resource {FIXTURE}"), &resource["block"]));
        let data = schemas
            .data_source(FIXTURE)
            .expect("fixture data source schema");
        blocks.push((format!("data {FIXTURE}"), &data["block"]));
        if version.has_query() {
            let list = schemas
                .list_resource(FIXTURE)
                .expect("fixture list resource schema");
            blocks.push((format!("list {FIXTURE}"), &list["block"]));
        }
        for (what, block) in blocks {
            let attrs = homelab_acceptance::terraform::Schemas::attributes(block);
            assert!(
                !attrs.is_empty() || what.starts_with("list"),
                "{what} has no attributes on {version}"
            );
            for (path, attr) in attrs {
                let desc = attr["description"].as_str().unwrap_or("");
                assert!(
                    !desc.trim().is_empty(),
                    "{what}: attribute {path} has no description on {version}"
                );
            }
        }
        // The provider's secret is marked sensitive in the schema.
        let secret = &provider["provider"]["block"]["block_types"]["opnsense"]["block"]
            ["attributes"]["api_secret"];
        assert_eq!(
            secret["sensitive"], true,
            "opnsense.api_secret must be sensitive: {secret}"
        );
    }
}

#[test]
fn a_bad_provider_block_gets_a_diagnostic_on_the_attribute() {
    for version in TerraformVersion::selected() {
        let tf = world(version);
        tf.write_config(&format!(
            "{}\n{}\n{}",
            required_providers(),
            provider_block("opnsense {\n    url = \"not a url\"\n  }"),
            fixture_config("a", "x")
        ))
        .unwrap();
        tf.init().unwrap();
        let out = tf.validate().unwrap();
        // validate checks the provider block's schema; the URL check may run in ValidateProviderConfig, which
        // older Terraform only calls at plan: accept the diagnostic from either.
        let out = if out.success() {
            match tf.plan(&[]).unwrap() {
                PlanOutcome::Failed(out) => out,
                other => panic!("a bad url must fail on {version}:\n{}", other.output()),
            }
        } else {
            out
        };
        let text = normalize_diagnostics(&out.combined());
        assert!(text.contains("Error"), "{out}");
        assert!(
            text.contains("url"),
            "the diagnostic must name the attribute on {version}:\n{out}"
        );
        // Terraform points at the source line of the attribute when the provider sends an attribute path.
        assert!(
            text.contains("url = \"not a url\""),
            "no attribute-path source excerpt on {version}:\n{out}"
        );
    }
}

// --- logging and secrets ---------------------------------------------------------------------------------------

fn provider_log_lines<'a>(stderr: &'a str, level: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| {
            l.contains(&format!("[{level}]")) && l.contains("provider.terraform-provider-homelab")
        })
        .collect()
}

#[test]
fn provider_logs_reach_terraform_at_their_level() {
    for version in TerraformVersion::selected() {
        let mut tf = world(version);
        // A configured provider and no resources: the provider starts, serves schema/validate/configure, logs.
        tf.write_config(&with_provider("output \"o\" {\n  value = 1\n}\n"))
            .unwrap();
        tf.init().unwrap();

        tf.set_env("TF_LOG", "debug");
        let plan = tf.plan(&[]).unwrap();
        let out = plan.output();
        // Terraform re-logs each JSON line at its @level: INFO and DEBUG lines both show, as such.
        assert!(
            !provider_log_lines(&out.stderr, "DEBUG").is_empty(),
            "no provider DEBUG lines on {version}:\n{out}"
        );
        assert!(
            !provider_log_lines(&out.stderr, "INFO").is_empty(),
            "no provider INFO lines on {version}:\n{out}"
        );
        assert!(
            provider_log_lines(&out.stderr, "TRACE").is_empty(),
            "TRACE lines at TF_LOG=debug on {version}:\n{out}"
        );
        // Every provider line was parsed as JSON (hclog form): raw JSON keys never show.
        assert!(
            !out.stderr.contains("\"@level\""),
            "unparsed provider log lines on {version}:\n{out}"
        );

        // TF_LOG_PROVIDER narrows provider lines (Terraform filters); core lines stay at TF_LOG's level.
        tf.set_env("TF_LOG_PROVIDER", "warn");
        let plan = tf.plan(&[]).unwrap();
        let quiet = plan.output();
        assert!(
            provider_log_lines(&quiet.stderr, "DEBUG").is_empty()
                && provider_log_lines(&quiet.stderr, "INFO").is_empty(),
            "provider DEBUG/INFO lines at TF_LOG_PROVIDER=warn on {version}:\n{quiet}"
        );
        assert!(
            quiet.stderr.contains("[DEBUG]"),
            "core DEBUG lines missing on {version}:\n{quiet}"
        );

        // TF_LOG_PROVIDER_HOMELAB is read by the provider itself: it stops emitting below WARN.
        tf.remove_env("TF_LOG_PROVIDER")
            .set_env("TF_LOG_PROVIDER_HOMELAB", "warn");
        let plan = tf.plan(&[]).unwrap();
        let own = plan.output();
        assert!(
            provider_log_lines(&own.stderr, "DEBUG").is_empty()
                && provider_log_lines(&own.stderr, "INFO").is_empty(),
            "provider DEBUG/INFO lines at TF_LOG_PROVIDER_HOMELAB=warn on {version}:\n{own}"
        );
    }
}

#[test]
fn secrets_never_appear_in_trace_logs_or_plans() {
    const API_SECRET: &str = "api-secret-7f3c9a";
    const ENV_SECRET: &str = "env-secret-1b2d4e";
    const ATTR_SECRET: &str = "attr-secret-9e8d7c";
    for version in TerraformVersion::selected() {
        let mut tf = world(version);
        tf.set_env("TF_LOG", "trace")
            .set_env("OPNSENSE_API_SECRET", ENV_SECRET);
        let config = |secret_block: &str| {
            format!(
                "{}\n{}\n{}",
                required_providers(),
                provider_block(secret_block),
                fixture::fixture_with_secret("s", ATTR_SECRET)
            )
        };
        tf.write_config(&config(&format!(
            "opnsense {{\n    url        = \"https://127.0.0.1:9\"\n    api_key    = \"key\"\n    api_secret = \"{API_SECRET}\"\n  }}"
        )))
        .unwrap();
        tf.init().unwrap();
        let mut outputs = vec![tf.plan(&[]).unwrap().output().clone()];
        let apply = tf.apply(&[]).unwrap();
        assert!(apply.success(), "{apply}");
        outputs.push(apply);
        outputs.push(tf.plan(&[]).unwrap().output().clone());
        // The env fallback path: no api_secret in the block.
        tf.write_config(&config(
            "opnsense {\n    url     = \"https://127.0.0.1:9\"\n    api_key = \"key\"\n  }",
        ))
        .unwrap();
        outputs.push(tf.plan(&[]).unwrap().output().clone());
        outputs.push(tf.destroy().unwrap());
        for out in &outputs {
            for secret in [API_SECRET, ENV_SECRET, ATTR_SECRET] {
                assert!(
                    !out.combined().contains(secret),
                    "secret {secret} leaked on {version}:\n{out}"
                );
            }
        }
        assert!(
            outputs[0].stdout.contains("(sensitive value)"),
            "plan must mask the value:\n{}",
            outputs[0]
        );
    }
}

// --- interrupts and crashes ------------------------------------------------------------------------------------

fn start_slow_apply(tf: &Terraform) -> Running {
    let mut running = tf
        .spawn(&["apply", "-auto-approve", "-no-color", "-input=false"])
        .unwrap();
    let ok = running.wait_for(Duration::from_secs(60), |r| {
        r.stdout_so_far().contains("Creating...")
            && !process::find_descendants_named(r.pid(), paths::PROVIDER_EXE).is_empty()
    });
    assert!(
        ok,
        "apply never started creating:\n{}\n{}",
        running.stdout_so_far(),
        running.stderr_so_far()
    );
    // Let the provider enter its (slow) create.
    std::thread::sleep(Duration::from_millis(300));
    running
}

/// After a broken apply, the state must be readable and a normal apply must converge to an empty plan.
fn assert_recovers(tf: &Terraform, version: TerraformVersion) {
    tf.state().unwrap();
    tf.write_config(&format!(
        "{}\n{}\n{}",
        required_providers(),
        provider_block(""),
        fixture_config("slow", "x")
    ))
    .unwrap();
    let apply = tf.apply(&[]).unwrap();
    assert!(
        apply.success(),
        "re-apply after the failure on {version}:\n{apply}"
    );
    assert!(
        matches!(tf.plan(&[]).unwrap(), PlanOutcome::Empty(_)),
        "plan not empty after recovery on {version}"
    );
    assert!(tf.destroy().unwrap().success());
}

#[test]
fn a_killed_provider_gives_a_clear_error_and_a_consistent_state() {
    for version in TerraformVersion::selected() {
        let tf = world(version);
        tf.write_config(&format!(
            "{}\n{}\n{}",
            required_providers(),
            provider_block(""),
            fixture::slow_fixture("slow", 30_000)
        ))
        .unwrap();
        tf.init().unwrap();
        let running = start_slow_apply(&tf);
        for pid in process::find_descendants_named(running.pid(), paths::PROVIDER_EXE) {
            process::send_signal(pid as i32, libc::SIGKILL).unwrap();
        }
        let out = tf.wait(running).unwrap();
        eprintln!("killed provider on {version}:\n{out}");
        assert_eq!(out.code, Some(1), "{out}");
        let text = normalize_diagnostics(&out.combined());
        assert!(
            // Which words Terraform uses depends on where its gRPC call was when the process died.
            text.contains("Plugin did not respond")
                || text.contains("plugin crashed")
                || text.contains("ApplyResourceChange request was cancelled"),
            "Terraform should say the plugin failed on {version}:\n{out}"
        );
        assert_recovers(&tf, version);
    }
}

#[test]
fn ctrl_c_stops_the_apply_cleanly() {
    for version in TerraformVersion::selected() {
        let tf = world(version);
        tf.write_config(&format!(
            "{}\n{}\n{}",
            required_providers(),
            provider_block(""),
            fixture::slow_fixture("slow", 30_000)
        ))
        .unwrap();
        tf.init().unwrap();
        let running = start_slow_apply(&tf);
        let started = std::time::Instant::now();
        // Like a terminal: SIGINT to the whole foreground group (Terraform *and* the provider).
        running.signal_group(libc::SIGINT).unwrap();
        let out = tf.wait(running).unwrap();
        eprintln!("Ctrl-C on {version}:\n{out}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "Ctrl-C took too long on {version}\n{out}"
        );
        assert_eq!(out.code, Some(1), "{out}");
        let text = normalize_diagnostics(&out.combined());
        assert!(text.contains("Interrupt received"), "{out}");
        assert!(
            !text.contains("plugin exited") && !text.contains("Plugin did not respond"),
            "the provider must survive SIGINT and stop through StopProvider on {version}:\n{out}"
        );
        assert_recovers(&tf, version);
    }
}

// --- debug / reattach ------------------------------------------------------------------------------------------

#[test]
fn debug_mode_serves_for_reattach() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::at(&store_dir.path().join("store.json"));
    let mut cmd = provider_command();
    cmd.arg("--debug").env(fixture::STORE_ENV, &store.path);
    let mut provider = process::spawn(cmd, None).unwrap();
    assert!(
        provider.wait_for(Duration::from_secs(10), |r| r
            .stdout_so_far()
            .contains("TF_REATTACH_PROVIDERS")),
        "no TF_REATTACH_PROVIDERS value printed:\n{}\n{}",
        provider.stdout_so_far(),
        provider.stderr_so_far()
    );
    let stdout = provider.stdout_so_far();
    let line = stdout
        .lines()
        .find(|l| l.contains("TF_REATTACH_PROVIDERS"))
        .unwrap();
    let json = &line[line.find('{').expect("JSON in the line")..=line.rfind('}').unwrap()];
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(value[PROVIDER_SOURCE]["ProtocolVersion"], 6, "{json}");

    for version in TerraformVersion::selected() {
        let mut tf = world(version);
        tf.set_env("TF_REATTACH_PROVIDERS", json);
        let before = store.ids().len();
        tf.write_config(&format!(
            "{}\n{}\n{}",
            required_providers(),
            provider_block(""),
            fixture_config("r", "x")
        ))
        .unwrap();
        tf.init().unwrap();
        let apply = tf.apply(&[]).unwrap();
        assert!(apply.success(), "{apply}");
        // The object went to the debug provider's store: proof that Terraform used the reattached process.
        assert_eq!(store.ids().len(), before + 1, "{apply}");
        assert!(matches!(tf.plan(&[]).unwrap(), PlanOutcome::Empty(_)));
        assert!(tf.destroy().unwrap().success());
        // Terraform never stops a reattached provider.
        assert!(
            process::is_alive(provider.pid()),
            "the debug provider exited after Terraform {version}"
        );
    }
    assert!(
        !provider.stderr_so_far().contains("panicked"),
        "{}",
        provider.stderr_so_far()
    );
    provider.signal(libc::SIGTERM).unwrap();
    let _ = provider.wait(Duration::from_secs(10));
}

// --- the fixture through the step lifecycle --------------------------------------------------------------------

const ADDR: &str = "homelab_test_fixture.a";

fn lifecycle_config(description: &str, zone: &str) -> String {
    with_provider(&format!(
        r#"resource "homelab_test_fixture" "a" {{
  name        = "obj-a"
  description = "{description}"
  zone        = "{zone}"
  secret      = "not-shown"
  size        = 1.5
  tags        = ["x", "y"]
  settings {{
    port = 8080
  }}
}}
"#
    ))
}

#[test]
fn fixture_lifecycle_create_update_replace_import_drift_destroy() {
    for version in TerraformVersion::selected() {
        let store_path = std::rc::Rc::new(std::cell::RefCell::new(None::<Store>));
        let (for_setup, for_drift, for_destroy) =
            (store_path.clone(), store_path.clone(), store_path.clone());
        let mut case = TestCase::new(version)
            .setup(move |tf| *for_setup.borrow_mut() = Some(fixture::use_private_store(tf)))
            .step(
                Step::config(lifecycle_config("first", "a"))
                    .expect_action(ADDR, Action::Create)
                    .plan_check(|plan| {
                        // Computed values are unknown at plan time; the secret is marked sensitive.
                        if !plan.after_unknown(ADDR, "id") || !plan.after_unknown(ADDR, "revision")
                        {
                            return Err("id and revision must be unknown before create".into());
                        }
                        if !plan.after_sensitive(ADDR, "secret") {
                            return Err("secret must be sensitive in the plan".into());
                        }
                        Ok(())
                    })
                    .check_attr_set(ADDR, "id")
                    .check_attr(ADDR, "description", "first")
                    .check_attr(ADDR, "revision", 1)
                    .check_attr(ADDR, "size", 1.5)
                    .check_attr(ADDR, "settings.protocol", "tcp")
                    .check_attr_set(ADDR, "settings.generated"),
            )
            .step(
                Step::config(lifecycle_config("second", "a"))
                    .named("update in place")
                    .expect_action(ADDR, Action::Update)
                    .plan_check(|plan| {
                        // use_state_for_unknown: the id stays known during an update.
                        if plan.after_unknown(ADDR, "id") {
                            return Err("id must stay known during an in-place update".into());
                        }
                        Ok(())
                    })
                    .check_attr(ADDR, "description", "second")
                    .check_attr(ADDR, "revision", 2),
            )
            .step(
                Step::config(lifecycle_config("second", "b"))
                    .named("requires replace")
                    .expect_action(ADDR, Action::Replace)
                    .check_attr(ADDR, "zone", "b")
                    .check_attr(ADDR, "revision", 1),
            )
            .step(Step::import(ImportKind::Command, ADDR));
        if version.has_import_blocks() {
            case = case
                .step(Step::import(ImportKind::BlockWithId, ADDR))
                .step(Step::import(ImportKind::BlockWithIdentity, ADDR));
        }
        case.step(
            Step::config(lifecycle_config("second", "b"))
                .named("out-of-band delete plans a re-create")
                .before(move |_, state| {
                    let id = state
                        .and_then(|s| s.attr(ADDR, "id"))
                        .and_then(|v| v.as_str())
                        .ok_or("no id in state")?
                        .to_string();
                    let store = for_drift.borrow().clone().ok_or("no store")?;
                    store
                        .delete(&id)
                        .then_some(())
                        .ok_or_else(|| format!("{id} was not in the store"))
                })
                .plan_only()
                .expect_non_empty_plan()
                .expect_action(ADDR, Action::Create),
        )
        .step(Step::config(lifecycle_config("second", "b")).named("re-create after drift"))
        .check_destroy(move |_, _| {
            let store = for_destroy.borrow().clone().ok_or("no store")?;
            let left = store.ids();
            left.is_empty()
                .then_some(())
                .ok_or(format!("objects left after destroy: {left:?}"))
        })
        .run();
    }
}

#[test]
fn data_source_reads_a_fixture() {
    for version in TerraformVersion::selected() {
        TestCase::new(version)
            .setup(|tf| {
                fixture::use_private_store(tf);
            })
            .step(
                Step::config(with_provider(
                    r#"resource "homelab_test_fixture" "a" {
  name = "obj-a"
  zone = "c"
  tags = ["t"]
}
data "homelab_test_fixture" "a" {
  id = homelab_test_fixture.a.id
}
output "zone" { value = data.homelab_test_fixture.a.zone }
"#,
                ))
                .check_attr("data.homelab_test_fixture.a", "name", "obj-a")
                .check_attr("data.homelab_test_fixture.a", "zone", "c")
                .check_attr(
                    "data.homelab_test_fixture.a",
                    "tags",
                    serde_json::json!(["t"]),
                ),
            )
            .run();
    }
}

#[test]
fn query_lists_fixtures_and_generated_config_imports_cleanly() {
    let version = TerraformVersion::V1_15;
    let tf = world(version);
    tf.write_config(&with_provider(&format!(
        "{}{}",
        fixture_config("query-one", "one"),
        fixture_config("query-two", "two")
    )))
    .unwrap();
    tf.init().unwrap();
    let apply = tf.apply(&[]).unwrap();
    assert!(apply.success(), "{apply}");
    let state = tf.state().unwrap();
    let ids: Vec<String> = ["query-one", "query-two"]
        .iter()
        .map(|l| {
            let addr = format!("{FIXTURE}.{l}");
            state
                .attr(&addr, "id")
                .and_then(|v| v.as_str())
                .unwrap()
                .to_string()
        })
        .collect();

    // A fresh working directory that knows nothing about the objects, sharing the store.
    let fresh = tf.sibling().unwrap();
    fresh.write_config(&with_provider("")).unwrap();
    fresh
        .write_file(
            "all.tfquery.hcl",
            "list \"homelab_test_fixture\" \"all\" {\n  provider = homelab\n  include_resource = true\n}\n",
        )
        .unwrap();
    fresh.init().unwrap();
    let listed = fresh.query(&[]).unwrap();
    assert!(listed.success(), "{listed}");
    for (id, name) in ids.iter().zip(["query-one", "query-two"]) {
        assert!(
            listed.stdout.contains(id.as_str()),
            "query must list {id}:\n{listed}"
        );
        assert!(
            listed.stdout.contains(name),
            "query must show the display name {name}:\n{listed}"
        );
    }

    let generated = fresh.query(&["-generate-config-out=generated.tf"]).unwrap();
    assert!(generated.success(), "{generated}");
    let hcl = fresh.read_file("generated.tf").unwrap();
    assert!(
        hcl.contains("import {") && hcl.contains("resource \"homelab_test_fixture\""),
        "{hcl}"
    );
    // The generated configuration imports both objects without any change, then plans empty.
    fresh.remove_file("all.tfquery.hcl").unwrap();
    let plan = fresh.plan(&["-out=import.tfplan"]).unwrap();
    let saved = fresh.show_plan("import.tfplan").unwrap();
    let imports = saved
        .changes()
        .iter()
        .filter(|c| c.pointer("/change/importing").is_some())
        .count();
    assert_eq!(imports, 2, "{}", plan.output());
    assert!(
        saved
            .changes()
            .iter()
            .all(|c| c.pointer("/change/actions") == Some(&serde_json::json!(["no-op"]))),
        "importing generated config must not change anything:\n{}",
        plan.output()
    );
    let apply = fresh
        .run(&["apply", "-no-color", "-input=false", "import.tfplan"])
        .unwrap();
    assert!(apply.success(), "{apply}");
    assert!(
        matches!(fresh.plan(&[]).unwrap(), PlanOutcome::Empty(_)),
        "plan after generated import not empty"
    );
    // The original world still owns the objects: destroy them there.
    assert!(tf.destroy().unwrap().success());
}

// --- soak (only with `dev test --soak`) ---------------------------------------------------------------------

#[test]
fn soak_many_apply_destroy_cycles_leave_nothing_behind() {
    if !paths::soak() {
        eprintln!("soak test skipped: run `acceptance-tests/dev test --soak` (HOMELAB_SOAK=1)");
        return;
    }
    for version in TerraformVersion::selected() {
        let mut tf = world(version);
        let tmp = tf.root().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        tf.set_env("TMPDIR", tmp.to_string_lossy().into_owned());
        let body: String = (0..20)
            .map(|i| fixture_config(&format!("o{i}"), "soak"))
            .collect();
        tf.write_config(&with_provider(&body)).unwrap();
        tf.init().unwrap();
        for round in 0..25 {
            let apply = tf.apply(&[]).unwrap();
            assert!(apply.success(), "round {round}: {apply}");
            let destroy = tf.destroy().unwrap();
            assert!(destroy.success(), "round {round}: {destroy}");
        }
        // Every provider process removed its socket directory, and none is still running.
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR on {version}: {left:?}");
        let running = process::find_descendants_named(std::process::id(), paths::PROVIDER_EXE);
        assert!(
            running.is_empty(),
            "provider processes still running: {running:?}"
        );
    }
}

// --- compatibility with Terraform 1.0 -------------------------------------------------------------------------

#[test]
fn terraform_1_0_plans_a_resource_whose_nested_attributes_are_null() {
    let version = TerraformVersion::V1_0;
    if !TerraformVersion::selected().contains(&version) {
        return;
    }
    let tf = world(version);
    // Only required attributes: every optional one, including nested attributes such as `timeouts`, is null.
    tf.write_config(&with_provider(&fixture::fixture_resource(
        "bare",
        &[("name", "\"bare\"".to_string())],
    )))
    .unwrap();
    let plan = tf.plan(&[]).unwrap();
    let out = plan.output();
    if homelab_acceptance::terraform::is_go_panic(&out.stderr)
        && out.stderr.contains("proposedNewNestedType")
    {
        panic!(
            "Terraform 1.0.3 crashes (objchange.proposedNewNestedType) when a resource schema has a nested \
             attribute (`nested_type`) whose value is null, e.g. `timeouts = {{...}}` left unset. Nested attributes \
             are only experimental in Terraform 1.0: declare such attributes as nested blocks (`timeouts {{ ... }}`, \
             like terraform-plugin-framework-timeouts' Block()) so that 1.0 can plan them.\n{out}"
        );
    }
    assert!(
        matches!(plan, PlanOutcome::Changes(_)),
        "a bare fixture must plan a create on {version}:\n{out}"
    );
}
