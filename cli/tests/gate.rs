//! A gate must not pass or fail for the wrong reason: `report` reads every
//! file the library can write, whatever `log_path` named it, and
//! `--fail-on-leak` with no log read is an error, not a pass; `run`
//! refuses `--options` the library would not apply before the command
//! starts; a run that logged nothing leaves no log directory behind and
//! names none; `clean --older-than` takes compound durations (`1h30m`).
//!
//! These tests need target/{debug,release}/libshmguard.so (built by
//! `cargo test --workspace`). Every segment they make is removed.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// Runs the helper with the library preloaded and `log_path=PATH` (no
/// `run`: as a user of `SHMGUARD_OPTIONS` would), as pid 1 of a new PID
/// namespace so that the file name is known in advance.
fn logged_as_pid_1(segs: &mut Segments, log_path: &Path, args: &[&str]) {
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--"])
        .arg(helper())
        .args(args)
        .env("LD_PRELOAD", library())
        .env("SHMGUARD_OPTIONS", format!("log_path={}", s(log_path)))
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "helper {args:?}: {}", show(&out));
}

fn report(args: &[&str]) -> (Output, Value) {
    let out = shmguard_cmd(args);
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

/// `log_path` without `%p` appends `.PID`, and without `.jsonl` a taken
/// name gets `.N` appended (docs/log-schema.md): `report` reads those
/// files, and `--fail-on-leak` fails on the leaks they show. (It read
/// only `*.jsonl`: "no logs", exit 0.)
#[test]
fn report_reads_every_name_the_library_writes() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("gate-names");
    let d = dir.path();
    // Taken names, so that the library goes on to the next one; neither
    // is a log, and neither is read (nor warned about).
    std::fs::write(d.join("app.1"), "taken\n").unwrap();
    std::fs::write(d.join("notes.txt"), "{\"v\":1,\"event\":\"call\"}\n").unwrap();
    // log_path=DIR/app: app.1 is taken, so app.1.1.
    logged_as_pid_1(&mut segs, &d.join("app"), &["create", "4096"]);
    // log_path=DIR/y.jsonl (no %p): y.jsonl.1.
    logged_as_pid_1(&mut segs, &d.join("y.jsonl"), &["create", "8192"]);
    // log_path=DIR/%p: 1 (taken after the first run: 1.1).
    logged_as_pid_1(&mut segs, &d.join("%p"), &["create", "12288"]);
    logged_as_pid_1(&mut segs, &d.join("%p"), &["tidy", "4096"]);
    let mut names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["1", "1.1", "app.1", "app.1.1", "notes.txt", "y.jsonl.1"],
        "the library's names changed: see docs/log-schema.md"
    );
    // A log that `run` set aside is not read.
    std::fs::copy(d.join("1.1"), d.join("shmguard.7.jsonl.untrusted")).unwrap();

    let (out, r) = report(&["report", s(d), "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(r["processes"].as_array().unwrap().len(), 4, "{r:#}");
    let mut sizes: Vec<u64> = r["leaked_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [4096, 8192, 12288], "{r:#}");
    assert_eq!(r["warnings"].as_array().unwrap().len(), 0, "{r:#}");

    let out = shmguard_cmd(&["report", s(d), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUMMARY: 3 leaks"), "{text}");
    // One such file named alone is read too.
    let out = shmguard_cmd(&["report", s(&d.join("app.1.1")), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

/// `report --fail-on-leak` that read no log fails (exit 2, with the
/// reason) instead of passing; without --fail-on-leak it says "no logs".
#[test]
fn fail_on_leak_with_no_log_read_is_an_error() {
    let dir = Dir::new("gate-nologs");
    let d = dir.path();
    let out = shmguard_cmd(&["report", s(d), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no log read in"), "{err}");
    let out = shmguard_cmd(&["report", s(d), "--fail-on-leak", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = shmguard_cmd(&["report", s(d)]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no logs"));

    // Files that are there but not read (here: writable by others) give
    // their warning and the error.
    use std::os::unix::fs::PermissionsExt;
    let log = d.join("shmguard.5.jsonl");
    std::fs::write(
        &log,
        "{\"v\":1,\"event\":\"start\",\"pid\":5,\"ppid\":1,\"tid\":5,\"ts_ns\":1}\n",
    )
    .unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = shmguard_cmd(&["report", s(d), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by group or others"), "{err}");
    assert!(err.contains("was ignored"), "{err}");
    // A log file with no event at all is no log read either.
    let empty = d.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let out = shmguard_cmd(&["report", s(&empty), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}

/// `shmguard run` with `TMPDIR` set to a fresh directory.
fn run_in_tmp(tmp: &Path, args: &[&str]) -> Output {
    Command::new(shmguard())
        .arg("run")
        .arg("--lib")
        .arg(library())
        .args(args)
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .output()
        .expect("run shmguard")
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect()
}

/// Bad `--options` are refused by the library's parser before the
/// command starts, with its reason and exit status 2, and leave nothing
/// behind. (They were passed on: each process warned and went on without
/// them.)
#[test]
fn run_refuses_options_the_library_would_skip() {
    let tmp = Dir::new("gate-options-tmp");
    let marker = tmp.path().join("ran");
    let script = format!("touch {}", s(&marker));
    for (options, why) in [
        (
            "policy=strict:verbosity=9",
            "bad value '9' for verbosity: expected 0, 1 or 2",
        ),
        ("polcy=strict", "unknown option 'polcy'"),
        (
            "fault=shmget@x=ENOMEM",
            "bad value 'shmget@x=ENOMEM' for fault",
        ),
        ("stacks", "'stacks' is not key=value"),
    ] {
        let out = run_in_tmp(
            tmp.path(),
            &["--options", options, "--", "sh", "-c", &script],
        );
        assert_eq!(out.status.code(), Some(2), "{options}: {}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{options}: {err}");
        assert!(!err.contains("(ignored)"), "{options}: {err}");
        assert_eq!(entries(tmp.path()), Vec::<String>::new(), "{options}");
    }
    // Good options run.
    let out = run_in_tmp(
        tmp.path(),
        &[
            "--options",
            "policy=strict:verbosity=1",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(marker.exists());
}

/// A run whose tree made no shm call removes the directory it made and
/// does not name one; a run that logged keeps it and names it; a
/// `--log-dir` is kept and named either way. (Every run left a directory
/// and said "logs in DIR".)
#[test]
fn a_run_that_logged_nothing_leaves_no_directory() {
    let _serial = serial();
    let mut segs = Segments::default();
    let tmp = Dir::new("gate-keep-tmp");
    let out_dir = Dir::new("gate-keep-out");

    let out = run_in_tmp(tmp.path(), &["--", "sh", "-c", "echo hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("logs in"), "{err}");
    assert!(
        err.contains("SUMMARY: no leaks; 0 failed calls; 0 findings; 0 processes logged"),
        "{err}"
    );
    assert_eq!(entries(tmp.path()), Vec::<String>::new());

    let json = out_dir.path().join("r.json");
    let out = run_in_tmp(tmp.path(), &["--json", s(&json), "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["log_dir"], Value::Null, "{r:#}");
    assert_eq!(entries(tmp.path()), Vec::<String>::new());

    // Something logged: kept, and named.
    let out = run_in_tmp(tmp.path(), &["--", s(&helper()), "tidy", "4096"]);
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    let kept = entries(tmp.path());
    assert_eq!(kept.len(), 1, "{err}");
    assert!(err.contains(&format!("logs in {}", kept[0])), "{err}");

    // Asked for: kept and named, also when empty.
    let logs = out_dir.path().join("logs");
    let out = run_in_tmp(tmp.path(), &["--log-dir", s(&logs), "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(logs.is_dir());
    assert!(err.contains(&format!("logs in {}", s(&logs))), "{err}");
}

/// `--older-than` takes humantime's compound durations, with or without
/// the space. (Before humantime, `1h30m` was refused with exit 2.)
#[test]
fn clean_accepts_compound_durations() {
    // Said as given, not rounded to "1h" as an age is.
    for (dur, said) in [
        ("1h30m", "1h30m"),
        ("1h 30m", "1h30m"),
        ("2h15m30s", "2h15m30s"),
        ("90m", "1h30m"),
    ] {
        let out = shmguard_cmd(&["clean", "--orphans", "--older-than", dur]);
        assert_eq!(out.status.code(), Some(0), "{dur}: {}", show(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("older than {said}")),
            "{dur}: {text}"
        );
    }
}
