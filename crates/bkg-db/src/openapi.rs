//! The server's OpenAPI document: the HTTP door's routes with realtime's and storage's merged in.

use utoipa::OpenApi;

/// Every door's routes.
pub fn document() -> utoipa::openapi::OpenApi {
    bkg_http::openapi::document(vec![bkg_realtime::http::RealtimeDoc::openapi(), bkg_storage::StorageDoc::openapi()])
}

/// The document as pretty JSON (served at `/openapi.json`, printed by `bkg-db openapi`).
pub fn json() -> String {
    bkg_http::openapi::json(&document())
}

/// `docs/api.md`.
pub fn markdown() -> String {
    bkg_http::openapi::markdown(&document())
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_matches_docs() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
        let want = super::markdown();
        if std::env::var_os("BKG_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(have == want, "docs/api.md is out of date: run BKG_UPDATE_DOCS=1 cargo nextest run -p bkg-db openapi");
        // The document itself, for clients checked against it (the admin dashboard's API client).
        let json_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let want_json = super::json() + "\n";
        if std::env::var_os("BKG_UPDATE_DOCS").is_some() {
            std::fs::write(&json_path, &want_json).unwrap();
        }
        let have_json = std::fs::read_to_string(&json_path).unwrap_or_default();
        assert!(
            have_json == want_json,
            "docs/openapi.json is out of date: run BKG_UPDATE_DOCS=1 cargo nextest run -p bkg-db openapi"
        );
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/realtime/v1/api/broadcast"]["post"].is_object());
    }
}
