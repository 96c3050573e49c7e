//! The committed OpenAPI document is the one the service serves.

#[test]
fn committed_document_matches_the_routes() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi/producer.json");
    if let Err(e) =
        sessionfold_edge::openapi::check_committed(&sessionfold_producer::document(), &path)
    {
        panic!("{e}");
    }
}
