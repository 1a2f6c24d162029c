//! One file per resource, data source and list resource.
//!
//! [`registry`] lists everything the provider serves. To add a resource: write `src/resources/<name>.rs`
//! implementing `crate::framework::Resource`, declare the module here and register it in [`registry`]. An OPNsense
//! object type is an `opnsense_object::ObjectSpec` instead (see "Adding an OPNsense object type" in
//! ARCHITECTURE.md).

use crate::framework::Registry;

pub mod k3s_agent;
pub mod k3s_common;
pub mod k3s_etcd_restore;
pub mod k3s_host;
pub mod k3s_kubeconfig;
pub mod k3s_kubeconfig_ephemeral;
pub mod k3s_list;
pub mod k3s_server;
pub mod k3s_snapshots;
pub mod opnsense_common;
pub mod opnsense_firewall_alias;
pub mod opnsense_firewall_rule;
pub mod opnsense_haproxy_backend;
pub mod opnsense_haproxy_backend_member;
pub mod opnsense_haproxy_frontend;
pub mod opnsense_haproxy_healthcheck;
pub mod opnsense_haproxy_server;
pub mod opnsense_haproxy_settings;
pub mod opnsense_haproxy_status;
pub mod opnsense_hasync;
pub mod opnsense_interfaces;
pub mod opnsense_object;
pub mod opnsense_vip;

/// Everything the provider serves.
pub fn registry() -> Registry {
    #[allow(unused_mut)]
    let mut r = Registry::new();
    opnsense_haproxy_server::register(&mut r);
    opnsense_haproxy_healthcheck::register(&mut r);
    opnsense_haproxy_backend::register(&mut r);
    opnsense_haproxy_backend_member::register(&mut r);
    opnsense_haproxy_frontend::register(&mut r);
    opnsense_haproxy_settings::register(&mut r);
    opnsense_hasync::register(&mut r);
    opnsense_vip::register(&mut r);
    opnsense_firewall_alias::register(&mut r);
    opnsense_firewall_rule::register(&mut r);
    opnsense_interfaces::register(&mut r);
    opnsense_haproxy_status::register(&mut r);
    k3s_server::register(&mut r);
    k3s_agent::register(&mut r);
    k3s_kubeconfig::register(&mut r);
    k3s_kubeconfig_ephemeral::register(&mut r);
    k3s_snapshots::register(&mut r);
    k3s_etcd_restore::register(&mut r);
    k3s_list::register(&mut r);
    #[cfg(feature = "test-fixtures")]
    crate::testing::fixture_resource::register(&mut r);
    r
}
