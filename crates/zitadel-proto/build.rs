//! Compiles the `.proto` files with protox (a protobuf compiler in Rust, so no `protoc` is
//! needed), then generates the prost messages, their canonical JSON (pbjson) and the tonic
//! service from the one descriptor set.

use std::path::PathBuf;

use prost::Message as _;

const ROOTS: [&str; 3] = [
    "zitadel/user/v2/user_service.proto",
    "zitadel/message.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(ROOTS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("descriptors.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // The one well-known type that appears in JSON, with protobuf's canonical JSON form.
        .extern_path(".google.protobuf.Timestamp", "crate::Timestamp")
        .compile_fds(descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptor_path)?)?
        .ignore_unknown_fields()
        .build(&[".zitadel"])?;
    Ok(())
}
