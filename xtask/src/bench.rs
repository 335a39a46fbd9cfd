//! `cargo xtask bench [--quick]`: this toolkit vs oauth2-rs 5 (criterion, same run) and the authorized-call
//! overhead (session vs bare ureq against the mock), printed as one table.
//!
//! Runs `cargo bench -p erpnet-oauth-bench --bench vs_oauth2` and reads criterion's estimates (the median of
//! each benchmark) from `<target>/criterion/`, then `cargo bench -p erpnet-oauth-ureq --bench overhead` and
//! reads the throughput ratio it prints. `--quick` shortens criterion's warm-up and measurement times.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The operations compared, as criterion group names, with the table's labels.
const OPERATIONS: &[(&str, &str)] = &[
    ("authorize_url", "authorize URL (PKCE, state, nonce)"),
    ("code_exchange", "code exchange (build + parse)"),
    ("refresh", "refresh (build + parse)"),
    ("refresh_invalid_grant", "refresh -> invalid_grant (build + parse)"),
];

const USAGE: &str = "usage: cargo xtask bench [--quick]";

/// Runs the task.
pub fn main(args: &[String]) -> ExitCode {
    let mut quick = false;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            _ => {
                eprintln!("unexpected argument `{arg}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let started = std::time::Instant::now();
    let root = workspace_root();
    let timing: &[&str] = if quick {
        &["--warm-up-time", "0.3", "--measurement-time", "1"]
    } else {
        &["--warm-up-time", "2", "--measurement-time", "5"]
    };
    // Build both benches first, so that the compile is not mixed with the measurements.
    for (package, bench) in [("erpnet-oauth-bench", "vs_oauth2"), ("erpnet-oauth-ureq", "overhead")] {
        let status = Command::new(cargo())
            .current_dir(&root)
            .args(["bench", "--no-run", "-p", package, "--bench", bench])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("building the bench {package}/{bench} failed");
            return ExitCode::FAILURE;
        }
    }
    let built = started.elapsed();

    let status = Command::new(cargo())
        .current_dir(&root)
        .args(["bench", "-p", "erpnet-oauth-bench", "--bench", "vs_oauth2", "--"])
        .args(timing)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        eprintln!("cargo bench -p erpnet-oauth-bench failed");
        return ExitCode::FAILURE;
    }
    let criterion = target_dir(&root).join("criterion");
    let mut rows = Vec::new();
    for (group, label) in OPERATIONS {
        let ours = median_ns(&criterion, group, "ours");
        let theirs = median_ns(&criterion, group, "oauth2-rs");
        match (ours, theirs) {
            (Ok(o), Ok(t)) => rows.push((*label, o, t)),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let overhead = Command::new(cargo())
        .current_dir(&root)
        .args(["bench", "-p", "erpnet-oauth-ureq", "--bench", "overhead", "--"])
        .args(timing)
        .output();
    let overhead = match overhead {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        other => {
            if let Ok(o) = other {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
            }
            eprintln!("cargo bench -p erpnet-oauth-ureq --bench overhead failed");
            return ExitCode::FAILURE;
        }
    };
    let Some(overhead) = parse_overhead(&overhead) else {
        eprintln!("the overhead bench printed no `session/bare ratio` line");
        return ExitCode::FAILURE;
    };

    println!("{}", table(&rows, &overhead));
    let slowest = rows.iter().map(|(_, o, t)| t / o).fold(f64::INFINITY, f64::min);
    println!(
        "goals: ours >= 2x on each operation: {} (lowest {:.2}x); session >= 0.97 of bare: {} ({:.3})",
        if slowest >= 2.0 { "met" } else { "MISSED" },
        slowest,
        if overhead.median >= 0.97 { "met" } else { "MISSED" },
        overhead.median
    );
    println!(
        "(medians; {} mode; build {:.0} s, measurements {:.0} s)",
        if quick { "quick" } else { "full" },
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// What the overhead bench measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Overhead {
    /// Bare ureq calls per second.
    pub bare_per_s: f64,
    /// Session calls per second.
    pub session_per_s: f64,
    /// The median over interleaved rounds of session throughput / bare throughput.
    pub median: f64,
}

/// Reads the overhead bench's summary line: `throughput: bare ureq N calls/s, session M calls/s;
/// session/bare ratio: overall X, median of K interleaved rounds Y (goal >= 0.97)`.
pub fn parse_overhead(output: &str) -> Option<Overhead> {
    let line = output.lines().find(|l| l.contains("session/bare ratio"))?;
    let number_after = |marker: &str| -> Option<f64> {
        let rest = line.get(line.find(marker)? + marker.len()..)?;
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        rest.get(..end)?.parse().ok()
    };
    let median_at = line.find("interleaved rounds ")?;
    let median = line.get(median_at..).and_then(|rest| {
        let rest = rest.strip_prefix("interleaved rounds ")?;
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        rest.get(..end)?.parse().ok()
    })?;
    Some(Overhead {
        bare_per_s: number_after("bare ureq ")?,
        session_per_s: number_after("session ")?,
        median,
    })
}

/// The table, in Markdown.
pub fn table(rows: &[(&str, f64, f64)], overhead: &Overhead) -> String {
    let mut out = String::from("| operation | ours | oauth2-rs | ratio |\n|---|---:|---:|---:|\n");
    for (label, ours, theirs) in rows {
        out.push_str(&format!(
            "| {label} | {} | {} | {:.2}x |\n",
            duration(*ours),
            duration(*theirs),
            theirs / ours
        ));
    }
    out.push_str(&format!(
        "| authorized Domain API call vs bare ureq (mock, loopback) | {:.0} calls/s | bare: {:.0} calls/s | {:.3} |",
        overhead.session_per_s, overhead.bare_per_s, overhead.median
    ));
    out
}

fn duration(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The median of a benchmark in nanoseconds, from criterion's `estimates.json`.
fn median_ns(criterion: &Path, group: &str, function: &str) -> Result<f64, String> {
    let path = criterion.join(group).join(function).join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    json.pointer("/median/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format!("{}: no median", path.display()))
}

/// `cargo`, as the one running xtask.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace's root (xtask's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The cargo target directory criterion writes to.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { root.join(dir) }
        }
        None => root.join("target"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_overhead_line() {
        let out = "noise\nthroughput: bare ureq 8123 calls/s, session 8011 calls/s; session/bare ratio: overall \
                   0.986, median of 10 interleaved rounds 0.991 (goal >= 0.97)\n";
        assert_eq!(
            parse_overhead(out),
            Some(Overhead { bare_per_s: 8123.0, session_per_s: 8011.0, median: 0.991 })
        );
        assert_eq!(parse_overhead("nothing"), None);
    }

    #[test]
    fn the_table_prints_ratios_like_2_31x() {
        let t = table(
            &[("op", 1_000.0, 2_310.0)],
            &Overhead { bare_per_s: 100.0, session_per_s: 99.0, median: 0.99 },
        );
        assert!(t.contains("| op | 1.00 µs | 2.31 µs | 2.31x |"), "{t}");
        assert!(t.ends_with("| 99 calls/s | bare: 100 calls/s | 0.990 |"), "{t}");
    }
}
