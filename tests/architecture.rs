//! The invariants of ARCHITECTURE.md that a grep can check: where ureq and tiny_http may be
//! named, every module in the code map, every module opening with what it owns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn ureq_is_named_only_in_upstream_and_transport() {
    for (path, text) in src_files() {
        if path != "src/upstream.rs" && path != "src/transport.rs" {
            assert!(!text.contains("ureq::"), "{path} names ureq: only upstream.rs and transport.rs may");
        }
    }
}

#[test]
fn tiny_http_is_named_only_in_server() {
    for (path, text) in src_files() {
        if path != "src/server.rs" {
            assert!(!text.contains("tiny_http::"), "{path} names tiny_http: only server.rs may");
        }
    }
}

#[test]
fn every_module_is_in_the_code_map_and_says_what_it_owns() {
    let map = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    for (path, text) in src_files() {
        let shown = path.strip_suffix("/mod.rs").map(|d| format!("{d}/")).unwrap_or_else(|| path.clone());
        let in_map = map.contains(&format!("`{shown}`"))
            || ["src/openai/", "src/anthropic/", "src/responses/"]
                .iter()
                .any(|d| path.starts_with(d) && map.contains(&format!("`{d}`")));
        assert!(in_map, "{path} is missing from ARCHITECTURE.md's code map");
        assert!(
            text.trim_start().starts_with("//!"),
            "{path} does not open with a //! line saying what it owns"
        );
    }
}
