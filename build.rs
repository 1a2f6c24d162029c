//! Generates the gRPC server code for `proto/` at build time.
//!
//! `protox` parses the `.proto` files in pure Rust, so no `protoc` has to be installed on a fresh machine;
//! `tonic-prost-build` then writes prost messages and tonic server traits into `OUT_DIR`. We serve only, so no
//! clients are generated. Default stubs make every RPC we do not override answer `UNIMPLEMENTED`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/tfplugin6.proto", "proto/plugin.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
