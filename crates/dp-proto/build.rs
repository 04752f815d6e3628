//! Compiles `proto/dpdk.proto` (pure Rust via protox; no `protoc` needed).

#![forbid(unsafe_code)]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../../proto";
    println!("cargo:rerun-if-changed={proto_dir}/dpdk.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let fds = protox::compile(["dpdk.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
