//! Embeds the admin dashboard's static export (`web/admin/out`, made by `make web`) into the
//! binary: writes `admin_ui.rs` into OUT_DIR with every file of the export as a static byte
//! slice, or with none when there is no export (the binary then serves a page saying how to
//! build it). `BKG_DB_ADMIN_UI_DIR` points at another export directory.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            files(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            out.push((rel, path));
        }
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=BKG_DB_ADMIN_UI_DIR");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let web = manifest.join("../../web/admin");
    let export = std::env::var_os("BKG_DB_ADMIN_UI_DIR").map(PathBuf::from).unwrap_or_else(|| web.join("out"));
    // The export when there is one; otherwise the folder it would appear in, so that building
    // the export makes the next cargo build embed it.
    let has_export = export.join("index.html").is_file();
    let watched = if has_export {
        export.clone()
    } else if web.is_dir() {
        web.clone()
    } else {
        manifest.join("../../web")
    };
    println!("cargo:rerun-if-changed={}", watched.display());
    let mut list = Vec::new();
    if has_export {
        files(&export, &export, &mut list);
    }
    let mut code = String::from(
        "/// The admin dashboard's files: (path in the export, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, path) in &list {
        let abs = path.canonicalize().unwrap_or_else(|_| path.clone());
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({:?})),", abs.display().to_string());
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("admin_ui.rs");
    std::fs::write(out, code).expect("write admin_ui.rs");
}
