//! Issue 13: `SeededRandom` (predictable states, nonces and PKCE verifiers) is for tests only. It exists
//! only with the `test-util` feature, which no crate of the workspace turns on outside its
//! `[dev-dependencies]`, and no example a user may copy (doc comments, README, guides) uses it.
//!
//! (Whether the type is absent without the feature cannot be checked from here: a test build turns the
//! feature on. Its `#[cfg]` is in `src/random.rs`.)

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// The lines of `manifest` in each `[section]`.
fn sections(manifest: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if !line.starts_with('#') {
            out.push((section.clone(), line.to_owned()));
        }
    }
    out
}

#[test]
fn test_util_is_off_by_default_and_only_for_dev_dependencies() {
    let root = workspace();
    let core = std::fs::read_to_string(root.join("crates/erpnet-oauth-core/Cargo.toml")).unwrap();
    let core = sections(&core);
    assert!(core.iter().any(|(s, l)| s == "[features]" && l == "test-util = []"), "{core:?}");
    assert!(!core.iter().any(|(s, l)| s == "[features]" && l.starts_with("default")), "no default features");
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        let Ok(manifest) = std::fs::read_to_string(entry.path().join("Cargo.toml")) else { continue };
        for (section, line) in sections(&manifest) {
            if line.contains("test-util") && line.starts_with("erpnet-oauth-core") {
                assert_eq!(section, "[dev-dependencies]", "{}: {line}", entry.path().display());
            }
        }
    }
}

#[test]
fn no_example_uses_seeded_random() {
    let root = workspace();
    let mut sources = Vec::new();
    files(&root.join("crates"), "rs", &mut sources);
    let mut docs = vec![root.join("README.md")];
    files(&root.join("docs"), "md", &mut docs);
    files(&root.join("crates"), "md", &mut docs);
    let mut found = Vec::new();
    for path in sources.iter().filter(|p| p.components().any(|c| c.as_os_str() == "src")) {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if (line.starts_with("//!") || line.starts_with("///")) && line.contains("SeededRandom::new") {
                found.push(format!("{}:{}: {line}", path.display(), n + 1));
            }
        }
    }
    for path in &docs {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains("SeededRandom::new") {
            found.push(path.display().to_string());
        }
    }
    assert!(found.is_empty(), "examples and docs users may copy use SeededRandom: {found:#?}");
}
