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
    // The files are copied first and embedded from the copy: a `next build` running meanwhile
    // replaces the export's hashed files, which would otherwise vanish before rustc reads them.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let copy = out_dir.join("admin_ui");
    let _ = std::fs::remove_dir_all(&copy);
    let mut code = String::from(
        "/// The admin dashboard's files: (path in the export, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (i, (rel, path)) in list.iter().enumerate() {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let dest = copy.join(i.to_string());
        std::fs::create_dir_all(&copy).expect("create the copy of the export");
        std::fs::write(&dest, bytes).expect("copy an export file");
        let _ = writeln!(code, "    ({rel:?}, include_bytes!({:?})),", dest.display().to_string());
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("admin_ui.rs"), code).expect("write admin_ui.rs");
}
