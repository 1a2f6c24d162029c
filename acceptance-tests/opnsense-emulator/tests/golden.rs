//! Golden replay: every call recorded from the real OPNsense API code (`testdata/opnsense-samples/`, in the recorded
//! order) is replayed against a fresh emulator and the answer compared with the recording: status, content type,
//! `Location`, and the JSON body. Only UUIDs (mapped from recorded to emulator-generated ones as adds return them)
//! and HAProxy uniqids are normalised; objects compare regardless of key order (UUID-keyed option maps).
//!
//! The recording stubbed configd (haproxy was never run: `configtest` answered "Configuration file is valid" and
//! `status` "haproxy is running as pid 4242."). The sequence enables HAProxy with a frontend on 0.0.0.0:8080 and
//! servers on 10.0.0.x, which must not run here (tests only touch loopback), so this test gives the emulator a
//! haproxy wrapper that runs the real `haproxy -c` but, instead of starting a daemon, starts a sleeping process
//! named `haproxy` — the same kind of stand-in the recording used. Real haproxy runs in `tests/haproxy_live.rs`.

use std::collections::HashMap;
use std::path::Path;

use opnsense_emulator::{Config, Emulator};
use regex::Regex;
use serde_json::Value;

/// Samples whose answer the emulator does not reproduce, with the reason. Empty when all pass.
const KNOWN_DIFFERENCES: &[(&str, &str)] = &[];

const STUB: &str = r#"#!/bin/sh
# haproxy stand-in for the golden replay: real config checks, no daemon (see tests/golden.rs)
case " $* " in
  *" -c "*) exec /usr/sbin/haproxy "$@" ;;
esac
pidfile=""
prev=""
for a in "$@"; do
  [ "$prev" = "-p" ] && pidfile="$a"
  prev="$a"
done
dir=$(dirname "$0")
cp /bin/sleep "$dir/haproxy" 2>/dev/null || true
setsid "$dir/haproxy" 300 >/dev/null 2>&1 < /dev/null &
echo $! > "$pidfile"
"#;

fn samples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/opnsense-samples")
}

fn uniqid_re() -> Regex {
    Regex::new(r"[0-9a-f]{13}[0-9]\.[0-9]{8}").unwrap()
}

fn normalise(v: &Value, reverse: &HashMap<String, String>) -> Value {
    let mut s = serde_json::to_string(v).unwrap();
    for (actual, recorded) in reverse {
        s = s.replace(actual, recorded);
    }
    let s = uniqid_re().replace_all(&s, "<id>").into_owned();
    serde_json::from_str(&s).unwrap()
}

fn diff_paths(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff_paths(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing in emulator answer")),
                }
            }
            for k in y.keys() {
                if !x.contains_key(k) {
                    out.push(format!("{path}.{k}: extra in emulator answer"));
                }
            }
        }
        _ if a != b => out.push(format!("{path}: recorded {a} emulator {b}")),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_replay_of_all_recorded_samples() {
    let dir = tempfile::tempdir().unwrap();
    let stub_dir = dir.path().join("bin");
    std::fs::create_dir_all(&stub_dir).unwrap();
    let stub = stub_dir.join("haproxy-wrapper");
    std::fs::write(&stub, STUB).unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state.json"),
        "testkey",
        "testsecret",
    );
    cfg.haproxy_bin = stub;
    cfg.start_haproxy_on_boot = false;
    // the UUIDs the real box handed out, in order, so that search ties (broken by uuid) sort the same
    let order: Vec<(String, f64)> =
        serde_json::from_slice(&std::fs::read(samples_dir().join("_timings_ms.json")).unwrap())
            .unwrap();
    for (name, _) in &order {
        if let Ok(b) = std::fs::read(samples_dir().join(format!("{name}.json"))) {
            let s: Value = serde_json::from_slice(&b).unwrap();
            if let Some(u) = s["response"]["json"].get("uuid").and_then(Value::as_str) {
                if s["request"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains("/add")
                {
                    cfg.preset_uuids.push(u.to_string());
                }
            }
        }
    }
    let emu = Emulator::start(cfg).unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let uuid_re =
        Regex::new(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").unwrap();
    let mut map: HashMap<String, String> = HashMap::new(); // recorded -> actual
    let mut passed = Vec::new();
    let mut failed: Vec<(String, Vec<String>)> = Vec::new();
    let mut replayed = 0;
    for (name, _) in &order {
        let file = samples_dir().join(format!("{name}.json"));
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        replayed += 1;
        let sample: Value = serde_json::from_slice(&bytes).unwrap();
        let req = &sample["request"];
        let fwd = |s: &str| -> String {
            let mut s = s.to_string();
            for (rec, act) in &map {
                s = s.replace(rec, act);
            }
            s
        };
        let path = fwd(req["path"].as_str().unwrap());
        let url = format!("{}{}", emu.url(), path);
        let mut rb = match req["method"].as_str().unwrap() {
            "GET" => client.get(&url),
            _ => client.post(&url),
        };
        match req.get("auth").and_then(Value::as_str) {
            Some("none") => {}
            Some(_) => rb = rb.basic_auth("testkey", Some("a-wrong-secret")),
            None => rb = rb.basic_auth("testkey", Some("testsecret")),
        }
        if let Some(j) = req.get("json") {
            rb = rb
                .header("content-type", "application/json")
                .body(fwd(&serde_json::to_string(j).unwrap()));
        } else if let Some(Value::Object(form)) = req.get("form") {
            let pairs: Vec<(String, String)> = form
                .iter()
                .map(|(k, v)| (k.clone(), fwd(v.as_str().unwrap_or_default())))
                .collect();
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish();
            rb = rb
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        } else if let Some(raw) = req.get("raw_body").and_then(Value::as_str) {
            if let Some(Value::Object(h)) = req.get("headers") {
                for (k, v) in h {
                    rb = rb.header(k.as_str(), v.as_str().unwrap_or_default());
                }
            }
            rb = rb.body(raw.to_string());
        }
        let resp = rb.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.unwrap();
        let want = &sample["response"];

        let mut problems = Vec::new();
        if status != want["status"].as_u64().unwrap() as u16 {
            problems.push(format!(
                "status: recorded {} emulator {status}",
                want["status"]
            ));
        }
        if ct != want["content_type"].as_str().unwrap() {
            problems.push(format!(
                "content-type: recorded {} emulator {ct}",
                want["content_type"]
            ));
        }
        if let Some(loc) = want.get("location").and_then(Value::as_str) {
            if location.as_deref() != Some(loc) {
                problems.push(format!("location: recorded {loc} emulator {location:?}"));
            }
        }
        if let Some(want_json) = want.get("json") {
            match serde_json::from_str::<Value>(&text) {
                Ok(got) => {
                    // learn the uuid of items the emulator created
                    if let (Some(r), Some(g)) = (
                        want_json.get("uuid").and_then(Value::as_str),
                        got.get("uuid").and_then(Value::as_str),
                    ) {
                        if uuid_re.is_match(r) {
                            map.insert(r.to_string(), g.to_string());
                        }
                    }
                    let reverse: HashMap<String, String> =
                        map.iter().map(|(r, a)| (a.clone(), r.clone())).collect();
                    let got_n = normalise(&got, &reverse);
                    let want_n = normalise(want_json, &HashMap::new());
                    if got_n != want_n {
                        let mut d = Vec::new();
                        diff_paths(&want_n, &got_n, "", &mut d);
                        problems.extend(d);
                    }
                }
                Err(e) => problems.push(format!("body is not JSON ({e}): {text}")),
            }
        } else if let Some(t) = want.get("text").and_then(Value::as_str) {
            if text != t {
                problems.push(format!("body: recorded {t:?} emulator {text:?}"));
            }
        }
        if problems.is_empty() {
            passed.push(name.clone());
        } else {
            failed.push((name.clone(), problems));
        }
    }
    assert_eq!(replayed, 79, "all recorded samples replayed");
    eprintln!(
        "golden replay: {} of {replayed} samples match",
        passed.len()
    );
    let mut unexpected = Vec::new();
    for (name, problems) in &failed {
        let known = KNOWN_DIFFERENCES.iter().find(|(n, _)| n == name);
        eprintln!(
            "DIFF {name}{}:",
            known
                .map(|(_, r)| format!(" (known: {r})"))
                .unwrap_or_default()
        );
        for p in problems.iter().take(15) {
            eprintln!("    {p}");
        }
        if known.is_none() {
            unexpected.push(name.clone());
        }
    }
    for (name, _) in KNOWN_DIFFERENCES {
        assert!(
            !passed.contains(&name.to_string()),
            "{name} now matches: remove it from KNOWN_DIFFERENCES"
        );
    }
    assert!(
        unexpected.is_empty(),
        "samples differing from the recording: {unexpected:?}"
    );
}
