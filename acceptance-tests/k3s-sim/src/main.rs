//! The `k3s` binary of the stand-in (also answering as `kubectl`, `crictl`, `ctr` through symlinks).

use std::collections::BTreeMap;

use k3s_sim::config::Config;
use k3s_sim::paths::Paths;
use k3s_sim::{agent, cli, fatal_log, server, VERSION};

fn usage() -> i32 {
    eprintln!("usage: k3s [--version] server|agent|kubectl|token|certificate rotate|etcd-snapshot save [flags]");
    1
}

fn run_daemon(role: &str, args: &[String]) -> i32 {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let data_dir = k3s_sim::config::parse_flags(args)
        .ok()
        .and_then(|f| f.into_iter().rev().find(|(k, _)| k == "data-dir"))
        .and_then(|(_, v)| match v {
            k3s_sim::config::Value::Str(s) => Some(s),
            _ => None,
        })
        .or_else(|| env.get("K3S_DATA_DIR").cloned());
    let paths = Paths::from_env(data_dir.as_deref());
    let cfg = match Config::load(args, &env, &paths) {
        Ok(c) => c,
        Err(e) => {
            fatal_log!("{e}");
            return 1;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            fatal_log!("{e}");
            return 1;
        }
    };
    let res = rt.block_on(async {
        if role == "server" {
            server::run(cfg, paths).await
        } else {
            agent::run(cfg, paths).await
        }
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            fatal_log!("{e}");
            1
        }
    }
}

fn report(r: Result<(), cli::CliError>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            fatal_log!("{e}");
            1
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let argv0 = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let paths = || Paths::from_env(std::env::var("K3S_DATA_DIR").ok().as_deref());
    let code = match argv0.as_str() {
        "kubectl" => cli::kubectl(&argv[1..], &paths()).unwrap_or_else(|e| {
            eprintln!("{e}");
            1
        }),
        "crictl" | "ctr" => {
            eprintln!("{argv0}: no container runtime in k3s-sim");
            1
        }
        _ => {
            let rest = argv.get(2..).unwrap_or_default();
            match argv.get(1).map(String::as_str) {
                Some("--version") | Some("-v") | Some("version") => {
                    println!("k3s version {VERSION} (k3ssim01)");
                    println!("go version go1.23.6 (k3s-sim)");
                    0
                }
                Some("server") => run_daemon("server", rest),
                Some("agent") => run_daemon("agent", rest),
                Some("kubectl") => cli::kubectl(rest, &paths()).unwrap_or_else(|e| {
                    eprintln!("{e}");
                    1
                }),
                Some("certificate") | Some("cert") => match rest.first().map(String::as_str) {
                    Some("rotate") => report(cli::certificate_rotate(&rest[1..])),
                    _ => usage(),
                },
                Some("etcd-snapshot") => report(cli::etcd_snapshot(rest)),
                Some("token") => report(cli::token(rest)),
                Some("crictl") | Some("ctr") => {
                    eprintln!("no container runtime in k3s-sim");
                    1
                }
                _ => usage(),
            }
        }
    };
    std::process::exit(code);
}
