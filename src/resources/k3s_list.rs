//! List resources for `terraform query`: find k3s servers and agents on given host addresses.
//!
//! Why addresses and not discovery: a k3s node is a host reached over SSH; there is no inventory to enumerate, so
//! the user names the candidate hosts (e.g. the lab's address range) and the provider looks at each: which unit is
//! installed, the node name and version. Hosts that do not answer are reported as warnings and skipped, so one dead
//! host does not hide the rest. With `include_resource = true` each node is read exactly like an import, so
//! `-generate-config-out` produces configuration that imports the node.

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::k3s_agent::{AgentIdentity, AgentModel, K3sAgent};
use super::k3s_common::*;
use super::k3s_host::*;
use super::k3s_server::{K3sServer, ServerIdentity, ServerModel};
use crate::framework::*;
use crate::k3s::{self, Role};

/// The `config { }` of both lists.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeListConfig {
    pub addresses: Tf<Vec<String>>,
    pub port: Tf<i64>,
    pub user: Tf<String>,
    pub private_key: Tf<String>,
    pub sudo_password: Tf<String>,
    pub known_hosts: Tf<String>,
}

fn schema(what: &str) -> Schema {
    Schema::new(format!(
        "Finds k3s {what} on the given hosts (over SSH, like the resource). Hosts without one are skipped; \
         unreachable hosts give a warning."
    ))
    .attribute(
        Attribute::list("addresses", Type::String)
            .required()
            .description("Host names or addresses to look at."),
    )
    .attribute(
        Attribute::number("port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("SSH port (default: provider `ssh.port`, else 22)."),
    )
    .attribute(
        Attribute::string("user")
            .optional()
            .description("Login user (default: provider `ssh.user`, else `root`)."),
    )
    .attribute(
        Attribute::string("private_key")
            .optional()
            .sensitive()
            .description("Private key content (default: the provider's, else the SSH agent)."),
    )
    .attribute(
        Attribute::string("sudo_password")
            .optional()
            .sensitive()
            .description("Password for sudo for non-root users (sent on stdin)."),
    )
    .attribute(
        Attribute::string("known_hosts")
            .optional()
            .description("known_hosts content to verify host keys (default: the provider's `ssh.known_hosts`)."),
    )
}

fn connection(c: &NodeListConfig, address: &str) -> ConnectionModel {
    ConnectionModel {
        address: Tf::Known(address.to_string()),
        port: c.port,
        user: c.user.clone(),
        private_key: c.private_key.clone(),
        sudo_password: c.sudo_password.clone(),
        known_hosts: c.known_hosts.clone(),
        ..Default::default()
    }
}

/// What one host has in `role`: `Ok(None)` nothing, `Ok(Some(display name))`, or a warning.
async fn look(
    ctx: &Context,
    conn: &ConnectionModel,
    role: Role,
) -> Result<Option<String>, Diagnostic> {
    let address = conn.address.known().cloned().unwrap_or_default();
    let warn = |detail: String| Diagnostic::warning(format!("{address} not listed"), detail);
    let session = connect(ctx, Some(conn)).await.map_err(|d| {
        warn(
            d.iter()
                .map(|x| x.detail.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let probe = k3s::probe(&session, role)
        .await
        .map_err(|e| warn(e.to_string()))?;
    if !probe.installed(role) {
        return Ok(None);
    }
    let name = read_config(&probe)
        .and_then(|c| cfg_str(&c, "node-name"))
        .unwrap_or_else(|| probe.hostname.clone());
    Ok(Some(format!(
        "{name} ({address}, k3s {})",
        probe.version.as_deref().unwrap_or("?")
    )))
}

fn addresses(c: &NodeListConfig, limit: i64) -> Vec<String> {
    let mut a = c.addresses.known().cloned().unwrap_or_default();
    if limit > 0 {
        a.truncate(limit as usize);
    }
    a
}

/// What the generic lister needs from a node resource.
trait Listed: Resource + Default {
    const ROLE: Role;
    /// The model an import starts from, connecting through `conn`.
    fn start(address: &str, conn: ConnectionModel) -> Self::Model;
    /// The identity of the node at `address`.
    fn identity_of(address: String) -> Self::Identity;
    /// Replaces the model's `host` block (the listed object carries only the address).
    fn set_host(m: &mut Self::Model, address: &str);
}

impl Listed for K3sServer {
    const ROLE: Role = Role::Server;
    fn start(address: &str, conn: ConnectionModel) -> ServerModel {
        ServerModel {
            id: Tf::Known(address.to_string()),
            host: Some(conn),
            ..Default::default()
        }
    }
    fn identity_of(address: String) -> ServerIdentity {
        HostIdentity { address }
    }
    fn set_host(m: &mut ServerModel, address: &str) {
        m.host = host_for(address);
    }
}

impl Listed for K3sAgent {
    const ROLE: Role = Role::Agent;
    fn start(address: &str, conn: ConnectionModel) -> AgentModel {
        AgentModel {
            id: Tf::Known(address.to_string()),
            host: Some(conn),
            ..Default::default()
        }
    }
    fn identity_of(address: String) -> AgentIdentity {
        HostIdentity { address }
    }
    fn set_host(m: &mut AgentModel, address: &str) {
        m.host = host_for(address);
    }
}

/// Looks at every address in order; with `include_resource`, reads each node exactly like an import.
async fn list_nodes<R: Listed>(
    ctx: &Context,
    config: NodeListConfig,
    req: ListRequest,
) -> Result<ListStream<R>, Diagnostics> {
    let mut items = Vec::new();
    for address in addresses(&config, req.limit) {
        let conn = connection(&config, &address);
        let display_name = match look(ctx, &conn, R::ROLE).await {
            Err(d) => {
                items.push(Err(d));
                continue;
            }
            Ok(None) => continue,
            Ok(Some(n)) => n,
        };
        let object = if req.include_resource_object {
            match R::default().read(ctx, R::start(&address, conn)).await {
                Ok(Some(mut m)) => {
                    R::set_host(&mut m, &address);
                    Some(m)
                }
                Ok(None) => None,
                Err(d) => {
                    items.extend(d.into_iter().map(Err));
                    continue;
                }
            }
        } else {
            None
        };
        items.push(Ok(ListItem {
            identity: R::identity_of(address),
            display_name,
            object,
        }));
    }
    Ok(futures::stream::iter(items).boxed())
}

/// `list "homelab_k3s_server"`.
pub struct K3sServerList;

#[async_trait]
impl ListResource for K3sServerList {
    type Resource = K3sServer;
    type Config = NodeListConfig;

    fn type_name(&self) -> &'static str {
        super::k3s_server::TYPE
    }
    fn schema(&self) -> Schema {
        schema("servers")
    }
    async fn list(
        &self,
        ctx: &Context,
        config: NodeListConfig,
        req: ListRequest,
    ) -> Result<ListStream<K3sServer>, Diagnostics> {
        list_nodes::<K3sServer>(ctx, config, req).await
    }
}

/// `list "homelab_k3s_agent"`.
pub struct K3sAgentList;

#[async_trait]
impl ListResource for K3sAgentList {
    type Resource = K3sAgent;
    type Config = NodeListConfig;

    fn type_name(&self) -> &'static str {
        super::k3s_agent::TYPE
    }
    fn schema(&self) -> Schema {
        schema("agents")
    }
    async fn list(
        &self,
        ctx: &Context,
        config: NodeListConfig,
        req: ListRequest,
    ) -> Result<ListStream<K3sAgent>, Diagnostics> {
        list_nodes::<K3sAgent>(ctx, config, req).await
    }
}

pub fn register(r: &mut Registry) {
    r.list_resource(K3sServerList);
    r.list_resource(K3sAgentList);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_valid() {
        for s in [schema("servers"), schema("agents")] {
            assert!(s.problems().is_empty(), "{:?}", s.problems());
        }
    }

    #[test]
    fn connection_takes_the_list_settings() {
        let c = NodeListConfig {
            addresses: Tf::Known(vec!["a".into(), "b".into(), "c".into()]),
            user: Tf::Known("ops".into()),
            ..Default::default()
        };
        assert_eq!(addresses(&c, 2), vec!["a", "b"]);
        let conn = connection(&c, "b");
        assert_eq!(conn.address, Tf::Known("b".to_string()));
        assert_eq!(conn.user, Tf::Known("ops".to_string()));
    }
}
