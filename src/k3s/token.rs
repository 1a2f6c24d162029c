//! The cluster token: its format (checked at plan) and its rotation (`k3s token rotate` semantics).
//!
//! Why the rotation does not simply run `k3s token rotate --new-token …`: that flag has no environment variable,
//! so the new token would be on a command line, readable in `/proc` by every local user while it runs. The CLI
//! itself is a thin client: it `PUT`s `{"token": "<new>"}` to the supervisor's `/v1-k3s/token` with the current
//! token as basic-auth credentials, and the server re-keys the bootstrap data in the datastore and rewrites its
//! own token file. The provider makes that same request with `curl`, whose configuration (credentials and body)
//! it reads from stdin (`-K -`), built from the host's token file and the new token sent on stdin: neither token
//! is ever an argument of a process.
//!
//! After a rotation every server must be restarted with the new token, one at a time (the server sequence does
//! that: a token change is a config.yaml change), and agents that joined with the old server token too
//! (k3s.md §3: "restart all servers and any agent that joined with the old token"). Snapshots taken before the
//! rotation need the old token to be restored.

use super::error::K3sError;
use super::node::token_password;
use super::paths::TOKEN_PATH;
use crate::ssh::Session;

/// The server CA a server's supervisor presents (the request to `127.0.0.1:6443` is verified against it).
const SERVER_CA: &str = "/var/lib/rancher/k3s/server/tls/server-ca.crt";

/// Why a token cannot be used, if it cannot: `K10<64 hex>::<user>:<password>` (secure) or a short password,
/// without whitespace, quotes or backslashes (they would not survive config.yaml and the supervisor's JSON
/// unchanged).
pub fn check_format(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("The token is empty.".into());
    }
    if let Some(c) = token
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '"' || *c == '\\')
    {
        return Err(format!(
            "The token contains {}; use letters, digits and punctuation other than quotes and backslashes.",
            if c.is_whitespace() {
                "whitespace".to_string()
            } else {
                format!("{c:?}")
            }
        ));
    }
    if let Some(rest) = token.strip_prefix("K10").filter(|_| token.contains("::")) {
        let (hash, creds) = rest.split_once("::").unwrap_or_default();
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(
                "A secure token is `K10<SHA-256 of the cluster CA, 64 hex digits>::server:<password>`; the part \
                 before `::` is not 64 hex digits."
                    .into(),
            );
        }
        match creds.split_once(':') {
            Some((user, pw)) if !user.is_empty() && !pw.is_empty() => {}
            _ => {
                return Err(
                    "A secure token ends in `::<user>:<password>` (e.g. `::server:<password>`); the credentials \
                     part is malformed."
                        .into(),
                )
            }
        }
    } else if token.contains("::") {
        return Err(
            "`::` only appears in a secure token, which starts with `K10<64 hex digits>`. Use either that form \
             or a plain password."
                .into(),
        );
    }
    Ok(())
}

/// What [`rotate`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotated {
    /// The cluster's token was changed to the new one.
    Now,
    /// The server's token already was the new one (an earlier apply rotated it): nothing was sent.
    Already,
}

/// Rotates the cluster's token to `new` through this server's supervisor (k3s must be running there). The server
/// keeps running with the old token until it is restarted.
pub async fn rotate(session: &Session, new: &str) -> Result<Rotated, K3sError> {
    let new_pw = token_password(new);
    let script = format!(
        "IFS= read -r new\n\
         cur=$(sed -e 's/^K10[0-9a-fA-F]*::[^:]*://' {TOKEN_PATH})\n\
         if [ -z \"$cur\" ]; then echo 'no token in {TOKEN_PATH}' >&2; exit 3; fi\n\
         if [ \"$cur\" = \"$new\" ]; then echo already; exit 0; fi\n\
         {{ printf 'user = \"server:%s\"\\n' \"$cur\"; printf 'data-binary = \"{{\\\\\"token\\\\\":\\\\\"%s\\\\\"}}\"\\n' \"$new\"; }} | \
         curl -sS -X PUT -H 'Content-Type: application/json' --cacert {SERVER_CA} -K - -o /dev/null \
         -w '%{{http_code}}' https://127.0.0.1:6443/v1-k3s/token\n"
    );
    let stdin = format!("{new_pw}\n");
    let out = session.exec_sudo(&script, Some(stdin.as_bytes())).await?;
    let text = out.stdout_str();
    let text = text.trim();
    if out.success() && text == "already" {
        return Ok(Rotated::Already);
    }
    if out.success() && text == "200" {
        return Ok(Rotated::Now);
    }
    Err(K3sError::Unexpected {
        host: session.host().to_string(),
        detail: format!(
            "the token rotation request to the supervisor failed (exit {}, HTTP {}): {}",
            out.exit_status,
            if text.is_empty() { "none" } else { text },
            out.stderr_str().trim()
        ),
    })
}

/// Whether the server at `server_url` accepts `token` for a join (`/v1-k3s/server-bootstrap` with it as
/// credentials, asked from this host with the cluster CA): `Some(true)` on 200, `Some(false)` on 401, `None` when
/// it cannot tell (unreachable, another answer). The token goes to curl on stdin, never as an argument.
pub async fn accepted(
    session: &Session,
    server_url: &str,
    token: &str,
) -> Result<Option<bool>, K3sError> {
    let url = format!(
        "{}/v1-k3s/server-bootstrap",
        server_url.trim_end_matches('/')
    );
    let script = format!(
        "IFS= read -r pw\n\
         printf 'user = \"server:%s\"\\n' \"$pw\" | curl -s --max-time 10 --cacert {SERVER_CA} -K - -o /dev/null \
         -w '%{{http_code}}' {url}\n",
        url = crate::ssh::quote(&url)
    );
    let stdin = format!("{}\n", token_password(token));
    let out = session.exec_sudo(&script, Some(stdin.as_bytes())).await?;
    Ok(match out.stdout_str().trim() {
        "200" => Some(true),
        "401" => Some(false),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let hash = "a".repeat(64);
        assert!(check_format("s3cret-password").is_ok());
        assert!(check_format(&format!("K10{hash}::server:pw")).is_ok());
        assert!(check_format(&format!("K10{hash}::node:pw")).is_ok());
        assert!(check_format("").is_err());
        assert!(check_format("has space").is_err());
        assert!(check_format("quo\"te").is_err());
        assert!(check_format("K10abc::server:pw").is_err());
        assert!(check_format(&format!("K10{hash}::server:")).is_err());
        assert!(check_format("pass::word").is_err());
        let e = check_format("line\nbreak").unwrap_err();
        assert!(
            !e.contains("line"),
            "the error must not echo the token: {e}"
        );
    }
}
