//! `cargo xtask package [--allow-dirty]`: proves that every publishable crate of the workspace can be
//! published, as CI runs it (`cargo xtask ci`).
//!
//! From `cargo metadata`, the publishable crates are the members without `publish = false`. It checks, before
//! packaging anything:
//!
//! - every workspace crate a publishable crate depends on (normal and build dependencies, and dev-dependencies
//!   with a version, which stay in the published manifest) is publishable too;
//! - every member declares the workspace's one `rust-version`;
//! - each publishable crate has the metadata crates.io shows (description, license, repository, readme,
//!   keywords, categories), and its directory holds `LICENSE-MIT` and `LICENSE-APACHE` identical to the
//!   root's (cargo packages only files inside the crate's directory, so each crate keeps a copy);
//! - each package (`cargo package --list`) holds the licenses and a README and no tests, benchmarks or
//!   fixtures.
//!
//! Then it runs `cargo package --locked -p A -p B ...` with every publishable crate, in dependency order:
//! cargo builds each package from its `.crate` file alone, resolving the workspace crates it depends on
//! through a local overlay of the packages made before it, and fails when a crate cannot be published.
//! `--allow-dirty` is passed on to cargo (for a working tree with uncommitted changes).

use crate::bench::{cargo, workspace_root};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask package [--allow-dirty]";

/// Files a package must hold.
const REQUIRED_FILES: &[&str] = &["Cargo.toml", "README.md", "LICENSE-MIT", "LICENSE-APACHE"];
/// Directories a package must not hold: they stay in the repository.
const EXCLUDED_DIRS: &[&str] = &["tests/", "benches/", "fixtures/", "proptest-regressions/"];
/// The license files at the root, copied into each publishable crate.
const LICENSES: &[&str] = &["LICENSE-MIT", "LICENSE-APACHE"];

/// Runs the task.
pub fn main(args: &[String]) -> ExitCode {
    let mut allow_dirty = false;
    for arg in args {
        match arg.as_str() {
            "--allow-dirty" => allow_dirty = true,
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if run(allow_dirty) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// A workspace member, as `cargo metadata` describes it.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub dir: PathBuf,
    pub publishable: bool,
    pub rust_version: Option<String>,
    /// Workspace members it depends on in a way publishing keeps: (name, kind).
    pub kept_deps: Vec<(String, String)>,
    /// description, license, repository, readme, keywords, categories: which are missing.
    pub missing_metadata: Vec<&'static str>,
}

/// Checks, then packages; prints what it does and every problem on stderr. True when all went well.
pub fn run(allow_dirty: bool) -> bool {
    let root = workspace_root();
    let members = match members(&root) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cargo xtask package: {e}");
            return false;
        }
    };
    let mut problems = check(&root, &members);
    let order = match publish_order(&members) {
        Ok(order) => order,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    };
    for name in &order {
        problems.extend(check_list(&root, name, allow_dirty));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("cargo xtask package: {p}");
        }
        return false;
    }
    eprintln!("cargo xtask package: packaging, in dependency order: {}", order.join(", "));
    let verify_dir = match verify_target_dir(&root) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cargo xtask package: {e}");
            return false;
        }
    };
    let mut cmd = Command::new(cargo());
    cmd.current_dir(&root).args(["package", "--locked", "--target-dir"]).arg(&verify_dir);
    if allow_dirty {
        cmd.arg("--allow-dirty");
    }
    for name in &order {
        cmd.args(["-p", name]);
    }
    match cmd.status() {
        Ok(s) if s.success() => {
            eprintln!("cargo xtask package: {} crates can be published", order.len());
            true
        }
        Ok(s) => {
            eprintln!("cargo xtask package: cargo package failed ({s})");
            false
        }
        Err(e) => {
            eprintln!("cargo xtask package: cannot run cargo: {e}");
            false
        }
    }
}

/// The target directory of the packages' verification builds, `<target>/package-verify`, with every earlier
/// build of this workspace's crates removed from it. The verification builds each crate from its package,
/// the crates it depends on coming from the local registry of packages as version 0.1.0 (say) of
/// crates.io; cargo takes a registry crate's build as final, so a build left from an earlier run (of other
/// sources under the same version) would be reused, and a crate checked against its dependencies' old code.
/// The third-party crates' builds are kept.
fn verify_target_dir(root: &Path) -> Result<PathBuf, String> {
    let output = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    let json: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let target = json["target_directory"].as_str().ok_or("cargo metadata named no target directory")?;
    let dir = Path::new(target).join("package-verify");
    for profile in ["debug", "release"] {
        for sub in [".fingerprint", "deps", "build"] {
            let Ok(entries) = std::fs::read_dir(dir.join(profile).join(sub)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("erpnet-oauth-")
                    || name.starts_with("erpnet_oauth_")
                    || name.starts_with("liberpnet_oauth_")
                {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
                }
            }
        }
    }
    Ok(dir)
}

/// The workspace members, from `cargo metadata --no-deps`.
pub fn members(root: &Path) -> Result<Vec<Member>, String> {
    let output = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let json: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata's output: {e}"))?;
    parse_members(&json)
}

/// [`members`] from `cargo metadata`'s JSON.
pub fn parse_members(json: &Value) -> Result<Vec<Member>, String> {
    let packages = json["packages"].as_array().ok_or("cargo metadata: no packages")?;
    let names: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut out = Vec::new();
    for p in packages {
        let name = p["name"].as_str().ok_or("cargo metadata: a package without a name")?.to_owned();
        let manifest = p["manifest_path"].as_str().ok_or("cargo metadata: no manifest_path")?;
        let dir = Path::new(manifest).parent().map(Path::to_path_buf).unwrap_or_default();
        // `publish`: null = anywhere, [] = nowhere (publish = false), [..] = those registries.
        let publishable = !p["publish"].as_array().is_some_and(|r| r.is_empty());
        let kept_deps = p["dependencies"]
            .as_array()
            .map(|deps| {
                deps.iter()
                    .filter(|d| d["name"].as_str().is_some_and(|n| names.contains(n) && n != name))
                    .filter_map(|d| {
                        let kind = d["kind"].as_str().unwrap_or("normal").to_owned();
                        // A dev-dependency without a version (only a path) is left out when publishing.
                        let kept = kind != "dev" || d["req"].as_str().is_some_and(|r| r != "*");
                        kept.then(|| (d["name"].as_str().unwrap_or_default().to_owned(), kind))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut missing_metadata = Vec::new();
        for (field, present) in [
            ("description", p["description"].is_string()),
            ("license", p["license"].is_string()),
            ("repository", p["repository"].is_string()),
            ("readme", p["readme"].is_string()),
            ("keywords", p["keywords"].as_array().is_some_and(|k| !k.is_empty())),
            ("categories", p["categories"].as_array().is_some_and(|k| !k.is_empty())),
        ] {
            if !present {
                missing_metadata.push(field);
            }
        }
        out.push(Member {
            name,
            dir,
            publishable,
            rust_version: p["rust_version"].as_str().map(str::to_owned),
            kept_deps,
            missing_metadata,
        });
    }
    Ok(out)
}

/// The checks made before packaging (dependencies, rust-version, metadata, license copies).
pub fn check(root: &Path, members: &[Member]) -> Vec<String> {
    let mut problems = Vec::new();
    let publishable: BTreeSet<&str> =
        members.iter().filter(|m| m.publishable).map(|m| m.name.as_str()).collect();
    if publishable.is_empty() {
        problems.push("no publishable crate in the workspace".to_owned());
    }
    let versions: BTreeSet<Option<&str>> = members.iter().map(|m| m.rust_version.as_deref()).collect();
    if versions.len() != 1 || versions.contains(&None) {
        let each: Vec<String> = members
            .iter()
            .map(|m| format!("{} {}", m.name, m.rust_version.as_deref().unwrap_or("(none)")))
            .collect();
        problems.push(format!(
            "the crates declare different minimum Rust versions (use `rust-version.workspace = true`): {}",
            each.join(", ")
        ));
    }
    for m in members.iter().filter(|m| m.publishable) {
        for (dep, kind) in &m.kept_deps {
            if !publishable.contains(dep.as_str()) {
                problems.push(format!(
                    "{} is publishable but depends ({kind}) on {dep}, which is not (publish = false)",
                    m.name
                ));
            }
        }
        if !m.missing_metadata.is_empty() {
            problems.push(format!("{} lacks {} in its Cargo.toml", m.name, m.missing_metadata.join(", ")));
        }
        for license in LICENSES {
            let copy = m.dir.join(license);
            match (std::fs::read(root.join(license)), std::fs::read(&copy)) {
                (Ok(a), Ok(b)) if a == b => {}
                (Ok(_), Ok(_)) => problems.push(format!(
                    "{} differs from the root's {license}: cp {license} {}",
                    copy.display(),
                    copy.display()
                )),
                (Err(e), _) => problems.push(format!("{license} at the root: {e}")),
                (_, Err(e)) => problems.push(format!(
                    "{}: {e} (copy the root's {license} there: cargo packages only the crate's own files)",
                    copy.display()
                )),
            }
        }
    }
    problems
}

/// The publishable crates, each after the workspace crates it depends on.
pub fn publish_order(members: &[Member]) -> Result<Vec<String>, String> {
    let publishable: BTreeMap<&str, &Member> =
        members.iter().filter(|m| m.publishable).map(|m| (m.name.as_str(), m)).collect();
    let mut order: Vec<String> = Vec::new();
    let mut left: BTreeSet<&str> = publishable.keys().copied().collect();
    while !left.is_empty() {
        let ready: Vec<&str> = left
            .iter()
            .copied()
            .filter(|name| {
                publishable
                    .get(name)
                    .is_some_and(|m| m.kept_deps.iter().all(|(dep, _)| !left.contains(dep.as_str())))
            })
            .collect();
        if ready.is_empty() {
            return Err(format!("the publishable crates depend on each other in a cycle: {left:?}"));
        }
        for name in ready {
            left.remove(name);
            order.push(name.to_owned());
        }
    }
    Ok(order)
}

/// `cargo package --list -p NAME`: the package holds [`REQUIRED_FILES`] and nothing under
/// [`EXCLUDED_DIRS`].
fn check_list(root: &Path, name: &str, allow_dirty: bool) -> Vec<String> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(["package", "--list", "--locked", "-p", name]);
    if allow_dirty {
        cmd.arg("--allow-dirty");
    }
    let output = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            return vec![format!(
                "cargo package --list -p {name} failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )];
        }
        Err(e) => return vec![format!("cannot run cargo: {e}")],
    };
    list_problems(name, &String::from_utf8_lossy(&output.stdout))
}

/// What is wrong with a package's file list.
pub fn list_problems(name: &str, list: &str) -> Vec<String> {
    let files: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut problems = Vec::new();
    for required in REQUIRED_FILES {
        if !files.contains(required) {
            problems.push(format!("the package of {name} lacks {required}"));
        }
    }
    for file in &files {
        if EXCLUDED_DIRS.iter().any(|d| file.starts_with(d)) {
            problems.push(format!("the package of {name} holds {file}, which stays in the repository"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, publishable: bool, deps: &[(&str, &str)]) -> Member {
        Member {
            name: name.into(),
            dir: PathBuf::from(name),
            publishable,
            rust_version: Some("1.89".into()),
            kept_deps: deps.iter().map(|(d, k)| ((*d).into(), (*k).into())).collect(),
            missing_metadata: vec![],
        }
    }

    #[test]
    fn dependency_order_puts_each_crate_after_what_it_needs() {
        let members = [
            member("cli", true, &[("ureq", "normal"), ("mock", "normal")]),
            member("ureq", true, &[("core", "normal"), ("mock", "dev")]),
            member("mock", true, &[]),
            member("core", true, &[]),
            member("bench", false, &[("ureq", "normal")]),
        ];
        assert_eq!(publish_order(&members).unwrap(), ["core", "mock", "ureq", "cli"]);
        let cycle = [member("a", true, &[("b", "normal")]), member("b", true, &[("a", "dev")])];
        assert!(publish_order(&cycle).unwrap_err().contains("cycle"));
    }

    #[test]
    fn a_publishable_crate_on_an_unpublishable_one_is_refused() {
        let members = [member("cli", true, &[("mock", "normal")]), member("mock", false, &[])];
        let problems = check(Path::new("/nonexistent"), &members);
        assert!(
            problems
                .iter()
                .any(|p| p
                    == "cli is publishable but depends (normal) on mock, which is not (publish = false)"),
            "{problems:?}"
        );
        // The license copies are checked too.
        assert!(problems.iter().any(|p| p.starts_with("LICENSE-MIT at the root")), "{problems:?}");
    }

    #[test]
    fn different_rust_versions_are_refused() {
        let mut other = member("b", false, &[]);
        other.rust_version = Some("1.85".into());
        let problems = check(Path::new("/nonexistent"), &[member("a", false, &[]), other]);
        assert!(problems.iter().any(|p| p.contains("different minimum Rust versions")), "{problems:?}");
    }

    #[test]
    fn metadata_and_dev_dependencies_from_cargo_metadata() {
        let json = serde_json::json!({"packages": [
            {"name": "a", "manifest_path": "/w/a/Cargo.toml", "publish": null, "rust_version": "1.89",
             "description": "A", "license": "MIT", "repository": "https://x", "readme": "README.md",
             "keywords": ["k"], "categories": [],
             "dependencies": [
                {"name": "b", "kind": null, "req": "^0.1.0"},
                {"name": "c", "kind": "dev", "req": "*"},
                {"name": "d", "kind": "dev", "req": "^0.1.0"},
                {"name": "a", "kind": "dev", "req": "*"},
                {"name": "serde", "kind": null, "req": "^1"}]},
            {"name": "b", "manifest_path": "/w/b/Cargo.toml", "publish": [], "dependencies": []},
            {"name": "c", "manifest_path": "/w/c/Cargo.toml", "publish": [], "dependencies": []},
            {"name": "d", "manifest_path": "/w/d/Cargo.toml", "publish": ["crates-io"], "dependencies": []}
        ]});
        let members = parse_members(&json).unwrap();
        let a = &members[0];
        assert!(a.publishable && !members[1].publishable && members[3].publishable);
        assert_eq!(a.kept_deps, [("b".to_owned(), "normal".to_owned()), ("d".to_owned(), "dev".to_owned())]);
        assert_eq!(a.missing_metadata, ["categories"]);
        assert_eq!(a.dir, PathBuf::from("/w/a"));
    }

    #[test]
    fn a_package_needs_its_licenses_and_readme_and_no_tests() {
        let ok = "Cargo.toml\nCargo.toml.orig\nLICENSE-APACHE\nLICENSE-MIT\nREADME.md\nsrc/lib.rs\n";
        assert!(list_problems("x", ok).is_empty());
        let bad = "Cargo.toml\nLICENSE-MIT\nsrc/lib.rs\ntests/a.rs\nfixtures/b.toml\n";
        assert_eq!(
            list_problems("x", bad),
            [
                "the package of x lacks README.md",
                "the package of x lacks LICENSE-APACHE",
                "the package of x holds tests/a.rs, which stays in the repository",
                "the package of x holds fixtures/b.toml, which stays in the repository",
            ]
        );
    }
}
