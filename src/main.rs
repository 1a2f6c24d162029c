//! The provider binary: Terraform starts it as a go-plugin (see `plugin::handshake`). This is where the homelab
//! provider is handed to the protocol layer, which serves any provider it is given.

use terraform_provider_homelab::{homelab, plugin::serve};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    serve::main_with_args(
        &args,
        serve::Plugin {
            name: "homelab",
            version: env!("CARGO_PKG_VERSION"),
            make: homelab::erased,
        },
    )
}
