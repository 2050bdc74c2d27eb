//! `--suppressions FILE` and `--fail-on-finding` for `run` and `report`:
//! suppressions by key, by command, by a frame of the creation stack, by
//! rule and by rule and pattern; comments; a bad line or file refused
//! before the command starts (exit 2); the SUMMARY and JSON counts; the
//! per-process lines of the tree agree; `--fail-on-finding` exits 1 on
//! findings that are not suppressed, as `--fail-on-leak` does on leaks,
//! and `report --fail-on-finding` with no log read is exit 2.
//!
//! These tests need target/{debug,release}/libshmguard.so (built by
//! `cargo test --workspace`). Each runs in a private IPC namespace (see
//! `serial`) and removes every segment it makes and every file it writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// tests/helpers/supphelper.c, built with -g -O0 so that its frames have
/// names and lines.
fn supphelper() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/supphelper.c");
        let out = scratch().join("supphelper");
        let tmp = scratch().join(format!("supphelper.{}.tmp", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let status = Command::new(&cc)
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O0", "-g"])
            .arg("-o")
            .arg(&tmp)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        assert!(status.success(), "{cc} failed to build supphelper");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .clone()
}

/// `shmguard run --lib LIB ARGS...` with `TMPDIR` set to the test's own
/// directory (a log directory `run` keeps goes there, and is removed with
/// it); the shmids the command printed go to `segs`.
fn run(segs: &mut Segments, tmp: &Path, args: &[&str]) -> Output {
    let out = Command::new(shmguard())
        .arg("run")
        .arg("--lib")
        .arg(library())
        .args(args)
        .env_remove("SHMGUARD_OPTIONS")
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .output()
        .expect("run shmguard");
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    out
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `shmguard report DIR --json ARGS...`, parsed.
fn report_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["report", s(dir), "--json"];
    all.extend_from_slice(args);
    let out = shmguard_cmd(&all);
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn keys(r: &Value, field: &str) -> Vec<String> {
    let mut k: Vec<String> = r[field]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|l| l["key"].as_str().unwrap_or("?").to_owned())
        .collect();
    k.sort();
    k
}

fn rules(r: &Value) -> Vec<String> {
    let mut v: Vec<String> = r
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// A leak is suppressed by a frame of its creation stack (`stacks=1`),
/// by its key, or by its command; the text SUMMARY and the JSON count
/// what was suppressed and list it apart; the tree's own per-process
/// lines leave it out too (run passes the file on).
#[test]
fn leaks_are_suppressed_by_frame_key_and_command() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("supp-leaks");
    let d = dir.path();
    let helper = supphelper();
    let by_frame = write(
        d,
        "frame.supp",
        "# the table is kept on purpose\n\n   leak:^make_table$  \n",
    );
    let logs = d.join("logs-frame");
    let out = run(
        &mut segs,
        d,
        &[
            "--suppressions",
            s(&by_frame),
            "--options",
            "stacks=1:leak_check=1",
            "--log-dir",
            s(&logs),
            "--fail-on-leak",
            "--per-process",
            "--",
            s(&helper),
            "leaks",
        ],
    );
    let err = stderr(&out);
    // The segment of make_scratch and its attachment are left.
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        err.contains(
            "SUMMARY: 2 leaks (1 segment holding 8192 bytes, 1 attachment); 0 failed calls; \
             0 findings; 1 process logged; 1 suppressed (1 leak)"
        ),
        "{err}"
    );
    assert!(!err.contains("key=0x5eed0001"), "{err}");
    // The line that did it, as LSan's "Suppressions used:".
    assert!(
        err.contains("shmguard: suppression used: line 3 leak:^make_table$: 1 item\n"),
        "{err}"
    );
    // The per-process report (--per-process) agrees: the library read
    // the same file.
    assert!(
        err.lines()
            .any(|l| l.starts_with("==") && l.contains("; 1 suppressed")),
        "{err}"
    );
    let r = report_json(&logs, &["--suppressions", s(&by_frame)]);
    assert_eq!(keys(&r, "leaked_segments"), ["0x00000000"], "{r:#}");
    assert_eq!(
        r["leaked_attachments"].as_array().unwrap().len(),
        1,
        "{r:#}"
    );
    assert_eq!(
        keys(&r["suppressed"], "leaked_segments"),
        ["0x5eed0001"],
        "{r:#}"
    );
    assert_eq!(r["summary"]["suppressed_leaks"], 1, "{r:#}");
    assert_eq!(r["summary"]["suppressed_findings"], 0, "{r:#}");
    assert_eq!(r["summary"]["leaks"], 2, "{r:#}");
    assert_eq!(
        r["suppressed"]["used"],
        serde_json::json!([{"line": 3, "suppression": "leak:^make_table$", "count": 1}]),
        "{r:#}"
    );
    // Without --suppressions, report still honours what the process's own
    // suppressions marked in its log.
    let r = report_json(&logs, &[]);
    assert_eq!(keys(&r, "leaked_segments"), ["0x00000000"], "{r:#}");
    assert_eq!(r["summary"]["suppressed_leaks"], 1, "{r:#}");
    // No line of a file of ours did that.
    assert_eq!(r["suppressed"]["used"], serde_json::json!([]), "{r:#}");
    for id in segs.0.clone() {
        let _ = shmguard::support::shm_rmid(id);
    }

    // By key: no stacks needed; the attachment's segment has key 0, so it
    // stays.
    let by_key = write(d, "key.supp", "leak:0x5eed0001\n");
    let out = run(
        &mut segs,
        d,
        &["--suppressions", s(&by_key), "--", s(&helper), "leaks"],
    );
    let err = stderr(&out);
    assert!(err.contains("SUMMARY: 2 leaks"), "{err}");
    assert!(err.contains("1 suppressed (1 leak)"), "{err}");
    assert!(
        err.contains("suppression used: line 1 leak:0x5eed0001: 1 item\n"),
        "{err}"
    );
    for id in segs.0.clone() {
        let _ = shmguard::support::shm_rmid(id);
    }

    // By command: every leak of the program, the attachment included.
    let by_command = write(d, "command.supp", "leak:^supphelper$\n");
    let out = run(
        &mut segs,
        d,
        &[
            "--suppressions",
            s(&by_command),
            "--fail-on-leak",
            "--",
            s(&helper),
            "leaks",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(err.contains("SUMMARY: no leaks"), "{err}");
    assert!(err.contains("3 suppressed (3 leaks)"), "{err}");
    assert!(!err.contains("shmguard: leak:"), "{err}");
    assert!(
        err.contains("suppression used: line 1 leak:^supphelper$: 3 items\n"),
        "{err}"
    );
}

/// `finding:RULE` suppresses every finding of RULE, `finding:RULE:PATTERN`
/// those whose key, command or stack PATTERN matches; `--fail-on-finding`
/// fails on what is left (exit 1, with the reason), for `run` and for
/// `report`.
#[test]
fn findings_are_suppressed_by_rule_and_pattern_and_fail_the_gate() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("supp-findings");
    let d = dir.path();
    let helper = supphelper();

    // No suppressions: two findings, exit 1.
    let logs = d.join("logs");
    let out = run(
        &mut segs,
        d,
        &[
            "--fail-on-finding",
            "--log-dir",
            s(&logs),
            "--",
            s(&helper),
            "wide",
            "0x4321",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(err.contains("; 2 findings;"), "{err}");
    assert!(
        err.contains("exit status 1: the tree had policy findings (--fail-on-finding)"),
        "{err}"
    );
    // Without the flag, the command's status.
    let out = run(&mut segs, d, &["--", s(&helper), "wide", "0x4321"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(!stderr(&out).contains("--fail-on-finding"));

    // finding:RULE
    let rule = write(d, "rule.supp", "finding:wide-mode\n");
    let out = run(
        &mut segs,
        d,
        &[
            "--fail-on-finding",
            "--suppressions",
            s(&rule),
            "--",
            s(&helper),
            "wide",
            "0x4321",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(err.contains("finding: key-without-excl"), "{err}");
    assert!(!err.contains("finding: wide-mode"), "{err}");
    assert!(err.contains("; 1 finding;"), "{err}");
    assert!(err.contains("1 suppressed (1 finding)"), "{err}");

    // finding:RULE:PATTERN by key (the finding event carries it) and by
    // command; a pattern that matches nothing suppresses nothing.
    let both = write(
        d,
        "both.supp",
        "finding:key-without-excl:^0x00004321$\nfinding:wide-mode:supphelper\n\
         finding:wide-mode:^no_such_function$\n",
    );
    let out = run(
        &mut segs,
        d,
        &[
            "--fail-on-finding",
            "--fail-on-leak",
            "--suppressions",
            s(&both),
            "--",
            s(&helper),
            "wide",
            "0x4321",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(err.contains("; 0 findings;"), "{err}");
    assert!(err.contains("2 suppressed (2 findings)"), "{err}");
    // Each line that suppressed something, once; line 3 did nothing.
    assert!(
        err.contains(
            "suppression used: line 1 finding:key-without-excl:^0x00004321$: 1 item\n\
             shmguard: suppression used: line 2 finding:wide-mode:supphelper: 1 item\n"
        ),
        "{err}"
    );
    assert!(!err.contains("suppression used: line 3"), "{err}");
    // The tree's own policy lines (verbosity=1) left them out as well.
    let out = run(
        &mut segs,
        d,
        &[
            "--suppressions",
            s(&both),
            "--options",
            "verbosity=1",
            "--",
            s(&helper),
            "wide",
            "0x4321",
        ],
    );
    assert!(
        !stderr(&out).contains("shmguard: policy:"),
        "{}",
        show(&out)
    );
    let unmatched = write(d, "none.supp", "finding:wide-mode:^no_such_function$\n");
    let out = run(
        &mut segs,
        d,
        &[
            "--fail-on-finding",
            "--suppressions",
            s(&unmatched),
            "--",
            s(&helper),
            "wide",
            "0x4321",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("; 2 findings;"), "{}", show(&out));
    assert!(stderr(&out).contains("; 0 suppressed"), "{}", show(&out));

    // report: the same gate on the saved logs.
    let out = shmguard_cmd(&["report", s(&logs), "--fail-on-finding"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let out = shmguard_cmd(&[
        "report",
        s(&logs),
        "--fail-on-finding",
        "--suppressions",
        s(&both),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = report_json(&logs, &["--suppressions", s(&rule)]);
    assert_eq!(rules(&r["findings"]), ["key-without-excl"], "{r:#}");
    assert_eq!(rules(&r["suppressed"]["findings"]), ["wide-mode"], "{r:#}");
    assert_eq!(r["summary"]["findings"], 1, "{r:#}");
    assert_eq!(r["summary"]["suppressed_findings"], 1, "{r:#}");
}

/// `report --fail-on-finding` that read no log is exit 2, as
/// `--fail-on-leak` is.
#[test]
fn fail_on_finding_with_no_log_read_is_an_error() {
    let dir = Dir::new("supp-nologs");
    let out = shmguard_cmd(&["report", s(dir.path()), "--fail-on-finding"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("--fail-on-finding: no log read in"), "{err}");
}

/// A bad line, a file that is not a regular file (a FIFO must not hang
/// it, /dev/zero must not eat its memory), one too large, or a path the
/// tree's options cannot carry is refused before the command starts
/// (exit 2, naming FILE:LINE).
#[test]
fn bad_suppression_files_are_refused_before_the_command_starts() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("supp-bad");
    let d = dir.path();
    let marker = d.join("ran");
    let touch = ["--", "touch", s(&marker)];
    let bad = write(d, "bad.supp", "leak:ok\n# fine\nleak ok\n");
    let fifo = d.join("fifo.supp");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = write(d, "big.supp", &"#".repeat((1 << 20) + 1));
    let colon = write(d, "a:b.supp", "leak:x\n");
    let unknown_rule = write(d, "rule.supp", "finding:wide_mode\n");
    for (file, why) in [
        (
            bad.clone(),
            format!("{}:3: 'leak ok' is not leak:PATTERN", s(&bad)),
        ),
        (fifo.clone(), "not a regular file".to_owned()),
        (PathBuf::from("/dev/zero"), "not a regular file".to_owned()),
        (big.clone(), "larger than 1048576 bytes".to_owned()),
        (d.join("missing.supp"), "cannot open it".to_owned()),
        (colon.clone(), "holds ':'".to_owned()),
        (
            unknown_rule.clone(),
            format!("{}:1: unknown rule 'wide_mode'", s(&unknown_rule)),
        ),
    ] {
        let mut args = vec!["--suppressions", s(&file)];
        args.extend_from_slice(&touch);
        let started = std::time::Instant::now();
        let out = run(&mut segs, d, &args);
        assert!(started.elapsed().as_secs() < 20, "{file:?} took too long");
        assert_eq!(out.status.code(), Some(2), "{file:?}: {}", show(&out));
        let err = stderr(&out);
        assert!(err.contains("--suppressions: "), "{file:?}: {err}");
        assert!(err.contains(&why), "{file:?}: {err}");
        assert!(!marker.exists(), "{file:?}: the command ran");
        // report refuses it the same way (it passes no path on, so ':'
        // is fine there).
        if file != colon {
            let out = shmguard_cmd(&["report", s(d), "--suppressions", s(&file)]);
            assert_eq!(out.status.code(), Some(2), "{file:?}: {}", show(&out));
        }
    }
}
