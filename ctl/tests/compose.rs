//! Golden tests of `ctl compose convert`: every directory of tests/golden/compose holds a
//! compose.yaml (the project is named after the directory). A good project's stdout must equal
//! `convert.yaml` and its warnings `warnings.txt`; a bad one must fail with `error.txt` on stderr
//! and print nothing. Set `FLOTILLA_BLESS=1` to rewrite the expected files from what ctl prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/compose")
}

/// Runs ctl in `dir` with only PATH and HOME set, so the developer's environment cannot change
/// interpolation.
fn ctl(dir: &Path, args: &[&str]) -> Output {
    let result = Command::new(env!("CARGO_BIN_EXE_ctl"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .output();
    match result {
        Ok(output) => output,
        Err(e) => panic!("cannot run ctl: {e}"),
    }
}

/// Output with the case's directory replaced, so absolute paths do not depend on the checkout.
fn portable(bytes: &[u8], dir: &Path) -> String {
    String::from_utf8_lossy(bytes).replace(&dir.display().to_string(), "$CASE")
}

fn compare(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("FLOTILLA_BLESS").is_some() {
        if let Err(e) = std::fs::write(path, actual) {
            failures.push(format!("cannot write {}: {e}", path.display()));
        }
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!("{} differs (FLOTILLA_BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}", path.display()));
    }
}

fn cases() -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(golden_dir()) {
        Ok(entries) => entries,
        Err(e) => panic!("cannot read {}: {e}", golden_dir().display()),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("compose.yaml").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn convert_matches_golden_files() {
    let cases = cases();
    assert!(
        cases.len() >= 9,
        "expected the golden cases, found {cases:?}"
    );
    let mut failures = Vec::new();
    for dir in cases {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let output = ctl(&dir, &["compose", "convert"]);
        let stdout = portable(&output.stdout, &dir);
        let stderr = portable(&output.stderr, &dir);
        if name.starts_with("bad-") {
            if output.status.success() || !stdout.is_empty() {
                failures.push(format!(
                    "{name}: expected a failure and no output, got status {} and {stdout:?}",
                    output.status
                ));
            }
            compare(&dir.join("error.txt"), &stderr, &mut failures);
        } else {
            if !output.status.success() {
                failures.push(format!("{name}: failed: {stderr}"));
                continue;
            }
            compare(&dir.join("convert.yaml"), &stdout, &mut failures);
            compare(&dir.join("warnings.txt"), &stderr, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn config_is_interpolated_and_normalised() {
    let dir = golden_dir().join("shop");
    let output = ctl(&dir, &["compose", "-p", "Other Name", "config"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = portable(&output.stdout, &dir);
    assert!(stdout.starts_with("name: othername\n"), "{stdout}");
    assert!(stdout.contains("GREETING: hello from .env"), "{stdout}");
    assert!(stdout.contains("PRICE: $5"), "{stdout}");
    assert!(
        stdout.contains("MODE: production"),
        "environment wins over env_file: {stdout}"
    );
    assert!(stdout.contains("context: $CASE/api"), "{stdout}");
}

#[test]
fn environment_wins_over_dotenv_and_f_names_the_file() {
    let dir = golden_dir().join("shop");
    let result = Command::new(env!("CARGO_BIN_EXE_ctl"))
        .args(["compose", "-f", "compose.yaml", "config"])
        .current_dir(&dir)
        .env_clear()
        .env("GREETING", "from the shell")
        .output();
    let output = match result {
        Ok(output) => output,
        Err(e) => panic!("cannot run ctl: {e}"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("GREETING: from the shell"));
}

#[test]
fn a_missing_file_says_what_to_do() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let output = ctl(dir.path(), &["compose", "config"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no configuration file provided") && stderr.contains("pass -f FILE"),
        "{stderr}"
    );
}
