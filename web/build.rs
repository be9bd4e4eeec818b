//! Embeds every file of the built UI bundle (`ui/dist`, built by `cd web/ui && npm run build`
//! and committed) in the crate: writes `$OUT_DIR/assets.rs`, a sorted list of
//! `(path, include_bytes!(file))` that `src/assets.rs` includes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("ui").join("dist");
    // a directory here makes cargo rerun this script when any file under it changes, is added
    // or is removed
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = vec![];
    walk(&root, &root, &mut files);
    files.sort();
    if !files.iter().any(|(name, _)| name == "index.html") {
        panic!(
            "{} has no index.html: the web UI bundle is missing; build it with \"cd web/ui && npm ci && npm run build\" (or restore web/ui/dist from git)",
            root.display()
        );
    }
    let mut out = String::from("/// Every file of `web/ui/dist`: its path below it (`/`-separated) and its bytes, sorted by path.\n");
    out.push_str("pub(crate) static FILES: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        writeln!(out, "    ({name:?}, include_bytes!({:?})),", path.display().to_string()).expect("writing to a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("assets.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("writing {}: {e}", dest.display()));
}

/// Every regular file below `dir` but hidden ones, as (path relative to `root`, path).
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!("reading the web UI bundle {}: {e}; build it with \"cd web/ui && npm ci && npm run build\"", dir.display())
    });
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue; // .gitkeep and editor files are not part of the page
        }
        let kind = entry.file_type().unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if kind.is_dir() {
            walk(root, &path, out);
        } else if path.is_file() {
            let rel = path.strip_prefix(root).expect("below the root");
            let name = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/");
            out.push((name, path));
        }
    }
}
