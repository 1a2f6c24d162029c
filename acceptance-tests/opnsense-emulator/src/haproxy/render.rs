//! Renders haproxy.cfg from the saved HAProxy model, in the shape os-haproxy's `haproxy.conf` template produces.
//!
//! Which template version: Debian's HAProxy 2.6 rejects what the current os-haproxy 5.x template emits
//! (`limited-quic`, `tune.lua.bool-sample-conversion`, `stick-table type ipv4`), so this renders what os-haproxy 4.6
//! (OPNsense 25.7 – 26.1.1, the last template HAProxy 2.6 accepts) renders: `# Frontend:`/`# Backend:` headers,
//! `stick-table type ip`. Sections rendered: global, defaults, frontends (binds, mode, connection behaviour,
//! default backend, forwardfor, per-frontend Prometheus service, tuning, stick tables, logging options, pass-through
//! options), backends (health checks, mode, balance, stickiness/persistence, timeouts, http-reuse, forwarded headers,
//! server lines with check/inter/downinter/fall/rise/port/maxconn/weight/backup, proxy protocol, advanced options),
//! local statistics, and the Prometheus exporter frontend. Not rendered: ACLs/actions, userlists, Lua, FastCGI,
//! resolvers, mailers, peers, cache, SSL certificate lists (the emulator has no trust store).
//!
//! Deliberate differences from a box, because the emulator runs haproxy unprivileged-in-spirit on Linux: no
//! `uid 80`/`gid 80`/`chroot /var/haproxy` (no such user/dir here), the admin socket and paths live in the
//! emulator's haproxy directory, and syslog goes to `/dev/log` instead of FreeBSD's `/var/run/log`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use crate::schema;
use crate::store::{Item, ModelData};

/// Reads a singleton value (saved or default) of the HAProxy model.
fn gv(data: &ModelData, path: &str) -> String {
    if let Some(v) = data.values.get(path) {
        return v.clone();
    }
    let (section, field) = path.rsplit_once('.').unwrap_or(("", path));
    schema::haproxy()
        .section(section)
        .and_then(|s| s.field(field))
        .map(|f| f.default.clone())
        .unwrap_or_default()
}

fn find<'a>(data: &'a ModelData, uuid: &str) -> Option<&'a Item> {
    data.arrays
        .values()
        .flat_map(|v| v.iter())
        .find(|i| i.uuid == uuid)
}

fn custom_options(out: &mut String, opts: &str) {
    if !opts.is_empty() {
        out.push_str("    # WARNING: pass through options below this line\n");
        for l in opts.split('\n') {
            let _ = writeln!(out, "    {l}");
        }
    }
}

fn stick_table(out: &mut String, p: &Item, backend: bool) {
    let pattern = p.get("stickiness_pattern");
    if !pattern.is_empty() {
        out.push_str("    # stickiness\n");
        let mut store = String::new();
        if !p.get("stickiness_dataTypes").is_empty() {
            let types: Vec<String> = p
                .get("stickiness_dataTypes")
                .split(',')
                .map(|t| {
                    let period = match t {
                        "conn_rate" => Some("stickiness_connRatePeriod"),
                        "sess_rate" => Some("stickiness_sessRatePeriod"),
                        "http_req_rate" => Some("stickiness_httpReqRatePeriod"),
                        "http_err_rate" => Some("stickiness_httpErrRatePeriod"),
                        "bytes_in_rate" => Some("stickiness_bytesInRatePeriod"),
                        "bytes_out_rate" => Some("stickiness_bytesOutRatePeriod"),
                        _ => None,
                    };
                    match period {
                        Some(f) => format!("{t}({})", p.get(f)),
                        None => t.to_string(),
                    }
                })
                .collect();
            store = format!("store {}", types.join(","));
        }
        let (table_type, add_len) = match pattern {
            "sourceipv4" | "ipv4" => (Some("ip"), false),
            "sourceipv6" | "ipv6" => (Some("ipv6"), false),
            "cookievalue" | "string" => (Some("string"), true),
            "rdpcookie" | "binary" => (Some("binary"), true),
            "integer" => (Some("integer"), false),
            _ => (None, false),
        };
        if let Some(t) = table_type {
            let len = if add_len {
                let l = [p.get("stickiness_cookielength"), p.get("stickiness_length")]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or("32");
                format!("len {l} ")
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "    stick-table type {t} {len}size {} expire {} {store} ",
                p.get("stickiness_size"),
                p.get("stickiness_expire")
            );
        }
        if !backend
            && p.get("stickiness_counter") == "1"
            && !p.get("stickiness_counter_key").is_empty()
        {
            let _ = writeln!(
                out,
                "    tcp-request connection track-sc0 {}",
                p.get("stickiness_counter_key")
            );
        }
    }
    if backend {
        match p.get("persistence") {
            "cookie" => match p.get("persistence_cookiemode") {
                "piggyback" => {
                    let _ = writeln!(out, "    cookie {} prefix", p.get("persistence_cookiename"));
                }
                "new" => {
                    let _ = writeln!(
                        out,
                        "    cookie {} insert indirect nocache",
                        p.get("persistence_cookiename")
                    );
                }
                _ => {}
            },
            "sticktable" => match pattern {
                "cookievalue" => {
                    let c = p.get("stickiness_cookiename");
                    let _ = writeln!(
                        out,
                        "    stick store-response res.cook({c})\n    stick on req.cook({c})"
                    );
                }
                "rdpcookie" => out.push_str("    stick on req.rdp_cookie(mstshash)\n"),
                "" => {}
                _ => out.push_str("    stick on src\n"),
            },
            _ => {}
        }
    }
}

fn render_frontend(out: &mut String, data: &ModelData, fe: &Item) {
    if fe.get("enabled") != "1" {
        let _ = writeln!(
            out,
            "# Frontend (DISABLED): {} ({})\n",
            fe.get("name"),
            fe.get("description")
        );
        return;
    }
    let mode = fe.get("mode");
    let _ = writeln!(
        out,
        "# Frontend: {} ({})",
        fe.get("name"),
        fe.get("description")
    );
    let _ = writeln!(out, "frontend {}", fe.get("name"));
    let mut adv = Vec::new();
    if fe.get("ssl_enabled") != "1"
        && fe.get("http2Enabled") == "1"
        && fe.get("http2Enabled_nontls") == "1"
    {
        adv.push("proto h2".to_string());
    }
    if !fe.get("tuning_shards").is_empty() {
        adv.push(format!("shards {}", fe.get("tuning_shards")));
    }
    if !fe.get("bind").is_empty() {
        for bind in fe.get("bind").split(',') {
            let (addr, name) = match bind.strip_prefix("unix@") {
                Some(sock) => (
                    format!("/var/haproxy/sockets/{sock} user www"),
                    bind.to_string(),
                ),
                None => (bind.to_string(), bind.to_string()),
            };
            let mut line = format!("    bind {addr} name {name} ");
            if !fe.get("bindOptions").is_empty() {
                line.push_str(fe.get("bindOptions"));
                line.push(' ');
            }
            if !adv.is_empty() {
                line.push(' ');
                line.push_str(&adv.join(" "));
                line.push(' ');
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out, "    mode {}", if mode == "ssl" { "tcp" } else { mode });
    if mode != "tcp" && mode != "ssl" {
        let _ = writeln!(out, "    option {}", fe.get("connectionBehaviour"));
    }
    if !fe.get("defaultBackend").is_empty() {
        if let Some(be) = find(data, fe.get("defaultBackend")) {
            let _ = writeln!(out, "    default_backend {}", be.get("name"));
            if be.get("persistence") == "cookie" && be.get("persistence_stripquotes") == "1" {
                let c = be.get("persistence_cookiename");
                let _ = writeln!(
                    out,
                    "    # remove quotes from persistence cookie\n    http-request replace-header Cookie '^(.*?; )?({c}=)\"([^;\"]*)\"(;.*)?$' \\1\\2\\3\\4"
                );
            }
        }
    }
    if fe.get("forwardFor") == "1" && mode == "http" {
        out.push_str("    option forwardfor\n");
    }
    if fe.get("prometheus_enabled") == "1"
        && mode == "http"
        && !fe.get("prometheus_path").is_empty()
    {
        let _ = writeln!(
            out,
            "    http-request use-service prometheus-exporter if {{ path {} }}",
            fe.get("prometheus_path")
        );
    }
    if !fe.get("tuning_maxConnections").is_empty() {
        let _ = writeln!(out, "    maxconn {}", fe.get("tuning_maxConnections"));
    }
    if !fe.get("tuning_timeoutClient").is_empty() {
        let _ = writeln!(out, "    timeout client {}", fe.get("tuning_timeoutClient"));
    }
    if !fe.get("tuning_timeoutHttpReq").is_empty() && mode == "http" {
        let _ = writeln!(
            out,
            "    timeout http-request {}",
            fe.get("tuning_timeoutHttpReq")
        );
    }
    if !fe.get("tuning_timeoutHttpKeepAlive").is_empty() && mode == "http" {
        let _ = writeln!(
            out,
            "    timeout http-keep-alive {}",
            fe.get("tuning_timeoutHttpKeepAlive")
        );
    }
    stick_table(out, fe, false);
    out.push_str("\n    # logging options\n");
    if fe.get("logging_dontLogNull") == "1" {
        out.push_str("    option dontlognull\n");
    }
    if fe.get("logging_dontLogNormal") == "1" {
        out.push_str("    option dontlog-normal\n");
    }
    if fe.get("logging_logSeparateErrors") == "1" {
        out.push_str("    option log-separate-errors\n");
    }
    if fe.get("logging_detailedLog") == "1" {
        out.push_str(if mode == "tcp" || mode == "ssl" {
            "    option tcplog\n"
        } else {
            "    option httplog\n"
        });
    }
    if fe.get("logging_socketStats") == "1" {
        out.push_str("    option socket-stats\n");
    }
    custom_options(out, fe.get("customOptions"));
    out.push('\n');
}

fn render_backend(out: &mut String, data: &ModelData, be: &Item) {
    if be.get("enabled") != "1" {
        let _ = writeln!(
            out,
            "# Backend (DISABLED): {} ({})\n",
            be.get("name"),
            be.get("description")
        );
        return;
    }
    let mode = be.get("mode");
    let _ = writeln!(
        out,
        "# Backend: {} ({})",
        be.get("name"),
        be.get("description")
    );
    let _ = writeln!(out, "backend {}", be.get("name"));
    if be.get("linkedServers").is_empty() {
        out.push_str("    # HINT: no servers configured for this backend.\n");
    }
    let mut hc_enabled = false;
    let mut hc: Option<&Item> = None;
    let mut additions: Vec<String> = Vec::new();
    if !be.get("healthCheck").is_empty() && be.get("healthCheckEnabled") == "1" {
        hc_enabled = true;
        if be.get("healthCheckLogStatus") == "1" {
            out.push_str("    option log-health-checks\n");
        }
        hc = find(data, be.get("healthCheck"));
        let empty = Item {
            uuid: String::new(),
            values: BTreeMap::new(),
        };
        let h = hc.unwrap_or(&empty);
        let _ = writeln!(out, "    # health check: {}", h.get("name"));
        match h.get("type") {
            "" => hc_enabled = false,
            "tcp" if h.get("tcp_enabled") == "1" => {
                if h.get("tcp_sendValue").is_empty() && h.get("tcp_matchValue").is_empty() {
                    out.push_str(
                        "    # ERROR: invalid custom TCP health check, missing send/expect data\n",
                    );
                } else {
                    out.push_str("    option tcp-check\n");
                    if !h.get("tcp_sendValue").is_empty() {
                        let _ = writeln!(out, "    tcp-check send {}", h.get("tcp_sendValue"));
                    }
                    if !h.get("tcp_matchValue").is_empty() {
                        let mut e = vec![h.get("tcp_matchType").to_string()];
                        if h.get("tcp_negate") == "1" && h.get("tcp_matchType") != "binary" {
                            e.push("!".into());
                        }
                        e.push(h.get("tcp_matchValue").to_string());
                        let _ = writeln!(out, "    tcp-check expect {}", e.join(" "));
                    }
                }
            }
            "http" => {
                out.push_str("    option httpchk\n");
                let mut o = vec![
                    "send meth".to_string(),
                    h.get("http_method").to_uppercase(),
                    "uri".into(),
                    h.get("http_uri").to_string(),
                ];
                let ver = h.get("http_version");
                if (ver == "http11" || ver == "http2") && !h.get("http_host").is_empty() {
                    let v = if ver == "http11" {
                        "HTTP/1.1"
                    } else {
                        "HTTP/2"
                    };
                    o.push(format!("ver {v} hdr Host {}", h.get("http_host")));
                } else if ver == "http10" {
                    o.push("ver HTTP/1.0".into());
                }
                let _ = writeln!(out, "    http-check {}", o.join(" "));
                if h.get("http_expressionEnabled") == "1" {
                    if h.get("http_expression").is_empty() || h.get("http_value").is_empty() {
                        out.push_str("    # ERROR: invalid custom HTTP health check, missing \"expression\" or \"value\"\n");
                    } else {
                        let mut e = vec![h.get("http_expression").to_string()];
                        if h.get("http_negate") == "1" {
                            e.push("!".into());
                        }
                        e.push(h.get("http_value").to_string());
                        let _ = writeln!(out, "    http-check expect {}", e.join(" "));
                    }
                }
            }
            "agent" => {
                if h.get("agent_port").is_empty() {
                    out.push_str(
                        "    # ERROR: agent-check configured, but agent-port was not specified\n",
                    );
                } else {
                    additions.push(format!("agent-check agent-port {}", h.get("agent_port")));
                }
            }
            "ldap" => out.push_str("    option ldap-check\n"),
            "mysql" => {
                if h.get("mysql_user").is_empty() {
                    out.push_str(
                        "    # ERROR: mysql check configured, but db user was not specified\n",
                    );
                } else if h.get("mysql_post41") == "1" {
                    let _ = writeln!(
                        out,
                        "    option mysql-check user {} post-41",
                        h.get("mysql_user")
                    );
                } else {
                    let _ = writeln!(out, "    option mysql-check user {}", h.get("mysql_user"));
                }
            }
            "pgsql" => {
                if h.get("pgsql_user").is_empty() {
                    out.push_str(
                        "    # ERROR: pgsql check configured, but db user was not specified\n",
                    );
                } else {
                    let _ = writeln!(out, "    option pgsql-check user {}", h.get("pgsql_user"));
                }
            }
            "redis" => out.push_str("    option redis-check\n"),
            "smtp" => {
                let _ = writeln!(out, "    option smtpchk HELO {}", h.get("smtp_domain"));
            }
            "esmtp" => {
                let _ = writeln!(out, "    option smtpchk EHLO {}", h.get("esmtp_domain"));
            }
            "ssl" => out.push_str("    option ssl-hello-chk\n"),
            _ => {}
        }
    } else {
        out.push_str("    # health checking is DISABLED\n");
    }
    let _ = writeln!(out, "    mode {mode}");
    if be.get("algorithm") == "random" {
        let _ = writeln!(out, "    balance random({})", be.get("random_draws"));
    } else {
        let _ = writeln!(out, "    balance {}", be.get("algorithm"));
    }
    stick_table(out, be, true);
    for (f, kw) in [
        ("tuning_timeoutConnect", "timeout connect"),
        ("tuning_timeoutCheck", "timeout check"),
        ("tuning_timeoutServer", "timeout server"),
        ("tuning_retries", "retries"),
    ] {
        if !be.get(f).is_empty() {
            let _ = writeln!(out, "    {kw} {}", be.get(f));
        }
    }
    custom_options(out, be.get("customOptions"));
    if !be.get("tuning_httpreuse").is_empty() && mode == "http" {
        let _ = writeln!(out, "    http-reuse {}", be.get("tuning_httpreuse"));
    }
    if be.get("forwardedHeader") == "1" && mode == "http" {
        let params: Vec<&str> = be
            .get("forwardedHeaderParameters")
            .split(',')
            .filter(|s| !s.is_empty())
            .collect();
        let _ = writeln!(out, "    option forwarded {}", params.join(" "));
    }
    if be.get("forwardFor") == "1" && mode == "http" {
        out.push_str("    option forwardfor\n");
    }
    if !be.get("tuning_defaultserver").is_empty() {
        let _ = writeln!(out, "    default-server {}", be.get("tuning_defaultserver"));
    }
    if !be.get("linkedServers").is_empty() {
        for uuid in be.get("linkedServers").split(',') {
            let Some(s) = find(data, uuid) else {
                let _ = writeln!(out, "# ERROR: server data not found ({uuid})");
                continue;
            };
            if s.get("type") == "static" && s.get("address").is_empty() {
                let _ = writeln!(
                    out,
                    "# ERROR: server is invalid, required parameters not set ({})",
                    s.get("name")
                );
                continue;
            }
            let mut opts: Vec<String> = Vec::new();
            if hc_enabled {
                opts.push("check".into());
                let h_interval = hc.map(|h| h.get("interval")).unwrap_or("");
                if let Some(i) = [be.get("checkInterval"), s.get("checkInterval"), h_interval]
                    .into_iter()
                    .find(|v| !v.is_empty())
                {
                    opts.push(format!("inter {i}"));
                }
                if let Some(d) = [be.get("checkDownInterval"), s.get("checkDownInterval")]
                    .into_iter()
                    .find(|v| !v.is_empty())
                {
                    opts.push(format!("downinter {d}"));
                }
                if !be.get("healthCheckFall").is_empty() {
                    opts.push(format!("fall {}", be.get("healthCheckFall")));
                }
                if !be.get("healthCheckRise").is_empty() {
                    opts.push(format!("rise {}", be.get("healthCheckRise")));
                }
                let h_port = hc.map(|h| h.get("checkport")).unwrap_or("");
                if let Some(p) = [h_port, s.get("checkport")]
                    .into_iter()
                    .find(|v| !v.is_empty())
                {
                    opts.push(format!("port {p}"));
                }
                opts.push(additions.join(" "));
            }
            if !s.get("maxConnections").is_empty() {
                opts.push(format!("maxconn {}", s.get("maxConnections")));
            }
            if !s.get("weight").is_empty() {
                opts.push(format!("weight {}", s.get("weight")));
            }
            if s.get("mode") != "active" && !s.get("mode").is_empty() {
                opts.push(s.get("mode").to_string());
            }
            if let Some(src) = [be.get("source"), s.get("source")]
                .into_iter()
                .find(|v| !v.is_empty())
            {
                opts.push(format!("source {src}"));
            }
            match be.get("proxyProtocol") {
                "v1" => opts.push("send-proxy check-send-proxy".into()),
                "v2" => opts.push("send-proxy-v2 check-send-proxy".into()),
                _ => {}
            }
            if !s.get("advanced").is_empty() {
                opts.push(s.get("advanced").to_string());
            }
            if s.get("enabled") == "1" {
                let port = if be.get("tuning_noport") != "1" && !s.get("port").is_empty() {
                    format!(":{}", s.get("port"))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "    server {} {}{port} {}",
                    s.get("name"),
                    s.get("address"),
                    opts.join(" ")
                );
            }
        }
    }
    out.push('\n');
}

/// Renders the whole configuration. `dir` is where the admin socket lives.
pub fn render(data: &ModelData, dir: &Path) -> String {
    let mut out = String::new();
    out.push_str(
        "#\n# Automatically generated configuration.\n# Do not edit this file manually.\n#\n\n",
    );
    if gv(data, "general.enabled") != "1" {
        out.push_str("#\n# NOTE: HAProxy is currently DISABLED\n#\n");
    }
    out.push_str("global\n");
    out.push_str("    daemon\n");
    let sock = dir.join("haproxy.sock");
    if gv(data, "general.seamlessReload") == "1" {
        let _ = writeln!(
            out,
            "    stats                       socket {} mode 600 level admin expose-fd listeners",
            sock.display()
        );
    } else {
        let _ = writeln!(
            out,
            "    stats                       socket {} mode 600 level admin",
            sock.display()
        );
    }
    let nb = gv(data, "general.tuning.nbthread");
    if !nb.is_empty() {
        let _ = writeln!(out, "    nbthread                    {nb}");
    }
    for (path, kw) in [
        ("general.hardStopAfter", "hard-stop-after"),
        ("general.closeSpreadTime", "close-spread-time"),
    ] {
        let v = gv(data, path);
        if !v.is_empty() {
            let _ = writeln!(out, "    {kw:<27} {v}");
        }
    }
    out.push_str("    no strict-limits\n");
    let maxconn = gv(data, "general.tuning.maxConnections");
    if !maxconn.is_empty() {
        let _ = writeln!(out, "    maxconn                     {maxconn}");
    }
    let prefer = gv(data, "general.tuning.resolversPrefer");
    let _ = writeln!(
        out,
        "    httpclient.resolvers.prefer   {}",
        if prefer.is_empty() { "ipv4" } else { &prefer }
    );
    let dh = gv(data, "general.tuning.maxDHSize");
    if !dh.is_empty() {
        let _ = writeln!(out, "    tune.ssl.default-dh-param   {dh}");
    }
    let verify = gv(data, "general.tuning.sslServerVerify");
    if !verify.is_empty() && verify != "ignore" {
        let _ = writeln!(out, "    ssl-server-verify           {verify}");
    }
    for (path, kw) in [
        ("general.tuning.spreadChecks", "spread-checks"),
        ("general.tuning.bufferSize", "tune.bufsize"),
        ("general.tuning.luaMaxMem", "tune.lua.maxmem"),
    ] {
        let v = gv(data, path);
        if !v.is_empty() {
            let _ = writeln!(out, "    {kw:<27} {v}");
        }
    }
    if gv(data, "general.tuning.bogusProxyEnabled") == "1" {
        out.push_str("    pp2-never-send-local\n");
    }
    let mut log = Vec::new();
    let host = gv(data, "general.logging.host");
    log.push(if host != "127.0.0.1" {
        host
    } else {
        "/dev/log".to_string()
    });
    let len = gv(data, "general.logging.length");
    if !len.is_empty() {
        log.push(format!("len {len}"));
    }
    log.push(gv(data, "general.logging.facility"));
    let level = gv(data, "general.logging.level");
    if !level.is_empty() {
        log.push(level);
    }
    let _ = writeln!(out, "    log                         {}", log.join(" "));
    let custom = gv(data, "general.tuning.customOptions");
    if !custom.is_empty() {
        out.push_str("    # WARNING: pass through options below this line\n");
        for l in custom.split('\n') {
            let _ = writeln!(out, "    {l}");
        }
    }
    out.push_str("\ndefaults\n    log     global\n");
    let redispatch = gv(data, "general.defaults.redispatch");
    if !redispatch.is_empty() {
        let _ = writeln!(out, "    option redispatch {}", redispatch.replace('x', ""));
    }
    for (path, kw) in [
        ("general.defaults.maxConnections", "maxconn"),
        ("general.defaults.timeoutClient", "timeout client"),
        ("general.defaults.timeoutConnect", "timeout connect"),
        ("general.defaults.timeoutCheck", "timeout check"),
        ("general.defaults.timeoutServer", "timeout server"),
        ("general.defaults.retries", "retries"),
        ("general.defaults.init_addr", "default-server init-addr"),
        (
            "general.defaults.maxConnectionsServers",
            "default-server maxconn",
        ),
    ] {
        let v = gv(data, path);
        if !v.is_empty() {
            let _ = writeln!(out, "    {kw} {v}");
        }
    }
    let custom = gv(data, "general.defaults.customOptions");
    custom_options(&mut out, &custom);
    out.push_str("\n# autogenerated entries for ACLs\n\n# autogenerated entries for config in backends/frontends\n\n# autogenerated entries for stats\n\n\n");
    for fe in data.items("frontends.frontend") {
        render_frontend(&mut out, data, fe);
    }
    for be in data.items("backends.backend") {
        render_backend(&mut out, data, be);
    }
    if gv(data, "general.stats.enabled") == "1" {
        let _ = writeln!(
            out,
            "listen local_statistics\n    bind            127.0.0.1:{}\n    mode            http\n    stats uri       /haproxy?stats\n    stats realm     HAProxy\\ statistics\n    stats admin     if TRUE",
            gv(data, "general.stats.port")
        );
        custom_options(&mut out, &gv(data, "general.stats.customOptions"));
        out.push('\n');
        let remote = gv(data, "general.stats.remoteBind");
        if gv(data, "general.stats.remoteEnabled") == "1" && !remote.is_empty() {
            out.push_str("listen  remote_statistics\n");
            for b in remote.split(',') {
                let _ = writeln!(out, "    bind            {b}");
            }
            out.push_str("    mode            http\n    stats uri       /haproxy?stats\n    stats hide-version\n");
        } else {
            out.push_str("# remote statistics are DISABLED\n");
        }
    } else {
        out.push_str("# statistics are DISABLED\n");
    }
    out.push('\n');
    if gv(data, "general.stats.prometheus_enabled") == "1" {
        out.push_str("frontend prometheus_exporter\n");
        for b in gv(data, "general.stats.prometheus_bind")
            .split(',')
            .filter(|b| !b.is_empty())
        {
            let _ = writeln!(out, "   bind {b}");
        }
        out.push_str("   mode http\n");
        let _ = writeln!(
            out,
            "   http-request use-service prometheus-exporter if {{ path {} }}",
            gv(data, "general.stats.prometheus_path")
        );
    }
    out
}
