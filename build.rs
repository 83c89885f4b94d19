//! Compiles `proto/` with protox (no protoc needed) and keeps the descriptor set for gRPC reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "umpire/v1/verifier.proto",
            "envoy/service/auth/v3/external_auth.proto",
        ],
        ["proto"],
    )?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    // Reflection lists what each listener serves: the Verifier on the main port, the Envoy
    // Authorization service on the gate's (each set holds its own file and what it imports).
    let verifier = protox::compile(["umpire/v1/verifier.proto"], ["proto"])?;
    std::fs::write(
        out.join("umpire_descriptor.bin"),
        prost::Message::encode_to_vec(&verifier),
    )?;
    let gate = protox::compile(["envoy/service/auth/v3/external_auth.proto"], ["proto"])?;
    std::fs::write(
        out.join("gate_descriptor.bin"),
        prost::Message::encode_to_vec(&gate),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    // The Verifier once more, server side only, answering `Verify` with a response umpire keeps
    // encoded (`api::wire`): a cached verdict costs the same whatever it holds.
    let wire = out.join("wire");
    std::fs::create_dir_all(&wire)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&wire)
        .extern_path(".umpire.v1", "crate::proto")
        .extern_path(
            ".umpire.v1.VerifyResponse",
            "crate::api::wire::VerifyResponseWire",
        )
        .compile_fds(verifier)?;
    Ok(())
}
