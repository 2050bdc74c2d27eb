//! `shmguard report` on a fixed set of logs (tests/fixtures/report), whose
//! text and `--json` output must match, byte for byte, the saved
//! tests/fixtures/report.expected.{txt,json}.
//!
//! The logs cover what a reader must get right besides the common case:
//! NUL padding and NULs inside a line, blank and CRLF lines, lines that do
//! not parse (each warning quotes serde_json's message), an incomplete last
//! line, a newer schema version, escapes in strings, unknown events and
//! fields (nested deeper than serde_json's recursion limit, numbers out of
//! range), `args` and `ret` of unexpected types, repeated names, failures,
//! findings, a truncated exit event, an exec (second `start`), a removal
//! logged before the creation, another IPC namespace, and files that are
//! empty, padding only or not logs. The creators' pids are above any
//! pid_max, so no segment of the kernel matches, and the output does not
//! depend on the machine.
//!
//! The expected files were written by the reader as it was before the
//! report was made to stream its logs (commit b996726), then rewritten
//! once for the one text format (every line prefixed `shmguard: `,
//! commands shell-quoted) and the JSON's `schema` and `argv` arrays: a
//! difference is a change of behaviour.

mod common;

use std::path::Path;
use std::process::Command;

fn report(args: &[&str]) -> String {
    let out = Command::new(common::shmguard())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("report")
        .arg("tests/fixtures/report")
        .args(args)
        .output()
        .expect("run shmguard");
    assert!(out.status.success(), "{}", common::show(&out));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn expected(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_same(got: &str, want: &str, what: &str) {
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{what} differs from the saved output, first at line {}:\n got: {:?}\nwant: {:?}\n\nwhole output:\n{got}",
            line + 1,
            got.lines().nth(line),
            want.lines().nth(line)
        );
    }
}

#[test]
fn text_report_of_the_fixture_is_unchanged() {
    assert_same(
        &report(&[]),
        &expected("report.expected.txt"),
        "the text report",
    );
}

#[test]
fn json_report_of_the_fixture_is_unchanged() {
    assert_same(
        &report(&["--json"]),
        &expected("report.expected.json"),
        "the JSON report",
    );
}
