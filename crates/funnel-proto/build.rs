use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        proto_root.join("funnel/events/v1/events.proto"),
        proto_root.join("funnel/ingest/v1/features.proto"),
    ];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("funnel_descriptor.bin"))
        .compile_protos(&files, std::slice::from_ref(&proto_root))?;
    // A set of its own, so each server's reflection lists only the services it serves.
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("behavior_descriptor.bin"))
        .compile_protos(
            &[proto_root.join("funnel/behavior/v1/behavior.proto")],
            std::slice::from_ref(&proto_root),
        )?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("recommender_descriptor.bin"))
        .compile_protos(
            &[proto_root.join("funnel/recommender/v1/recommender.proto")],
            std::slice::from_ref(&proto_root),
        )?;
    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
