//! Validation of the CI formats against the schemas CI servers and
//! code-scanning tools document (tests/schemas, with their sources): JUnit
//! XML with `xmllint --schema` (libxml2-utils), SARIF with
//! python3-jsonschema (Debian's, through /usr/bin/python3). A missing tool
//! fails the test with what to install: it is never skipped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// tests/schemas of the repository.
pub fn schemas() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/schemas")
}

fn run_validator(mut cmd: Command, what: &str, install: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): install {install} (.ci/run does)"));
    if out.status.code() == Some(3) && what.contains("python") {
        panic!(
            "{what}: {} (install {install}; .ci/run does)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Checks `file` against the Jenkins JUnit schema.
pub fn junit_errors(file: &Path) -> Result<(), String> {
    let mut cmd = Command::new("xmllint");
    cmd.args(["--noout", "--nonet", "--schema"])
        .arg(schemas().join("junit-10.xsd"))
        .arg(file);
    run_validator(cmd, "xmllint", "libxml2-utils")
}

/// Checks `file` against the SARIF 2.1.0 JSON schema.
pub fn sarif_errors(file: &Path) -> Result<(), String> {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(schemas().join("validate-sarif.py")).arg(file);
    run_validator(
        cmd,
        "/usr/bin/python3 validate-sarif.py",
        "python3 python3-jsonschema",
    )
}

pub fn assert_valid_junit(file: &Path) {
    if let Err(e) = junit_errors(file) {
        panic!(
            "{} is not valid JUnit XML (tests/schemas/junit-10.xsd): {e}\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
    }
}

pub fn assert_valid_sarif(file: &Path) {
    if let Err(e) = sarif_errors(file) {
        panic!(
            "{} is not valid SARIF 2.1.0: {e}\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
    }
}

/// How many times `needle` occurs in `hay`.
pub fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}
