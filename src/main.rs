//! The provider binary: Terraform starts it as a go-plugin (see `plugin::handshake`). This is where the homelab
//! provider is handed to the protocol layer, which serves any provider it is given.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    terraform_provider_homelab::plugin::serve::main_with_args(
        &args,
        terraform_provider_homelab::homelab::erased,
    )
}
