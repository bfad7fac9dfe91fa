//! Builds the migrations of `crates/bkg-db/migrations/` into the crate (`migrate::BUILTIN`).

use std::fmt::Write as _;

fn main() {
    // The migrations live with the binary (crates/bkg-db/migrations), which applies them at start.
    // CARGO_MANIFEST_DIR as cargo sets it for this run (not `env!`, fixed when the script was
    // compiled: a shared target directory reuses the script for checkouts at other paths).
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("../bkg-db/migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    // A missing directory is an error: a binary without its built-in migrations would start
    // on a database without the auth schema.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    let mut out = String::from("/// Built-in migrations: (file name, SQL).\npub const BUILTIN: &[(&str, &str)] = &[\n");
    for f in files {
        println!("cargo:rerun-if-changed={}", f.display());
        let name = f.file_name().expect("file name").to_string_lossy().into_owned();
        writeln!(out, "    ({name:?}, include_str!({:?})),", f.display().to_string()).expect("write to string");
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin_migrations.rs");
    std::fs::write(dest, out).expect("write builtin_migrations.rs");
}
