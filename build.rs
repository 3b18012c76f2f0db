//! Generates the CRI `runtime.v1` client from the official protobuf (k8s.io/cri-api, vendored in
//! proto/cri-api), with the protoc binary that the protoc-bin-vendored crate ships: building needs
//! no system package.

fn main() {
    let proto = "proto/cri-api/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let protoc = match protoc_bin_vendored::protoc_bin_path() {
        Ok(p) => p,
        Err(e) => panic!("no vendored protoc for this build host: {e}"),
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_with_config(config, &[proto], &["proto/cri-api"])
        .unwrap_or_else(|e| panic!("cannot generate the CRI client from {proto}: {e}"));
}
