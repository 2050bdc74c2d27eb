//! `shmguard run` on real process trees: the command's status is kept, a
//! leak fails the run with --fail-on-leak and is named by shmid, a
//! grandchild that outlives its parent is waited for, a static binary (no
//! preload, no log) is found through the kernel's table, and signals reach
//! the tree. Every segment a run made is removed afterwards.
//!
//! These tests need target/{debug,release}/libshmguard.so (built by
//! `cargo test --workspace`) and its audit log (`log_path`).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// One `shmguard run`, its report (from --json FILE) and its logs.
struct Run {
    out: Output,
    report: Value,
    _dir: Dir,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    fn leaked(&self) -> Vec<(i64, String)> {
        self.report["leaked_segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["shmid"].as_i64().unwrap(),
                    s["source"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn leaked_ids(&self) -> Vec<i32> {
        self.leaked().iter().map(|(id, _)| *id as i32).collect()
    }

    fn context(&self) -> String {
        format!(
            "{}\n--- report\n{}",
            show(&self.out),
            serde_json::to_string_pretty(&self.report).unwrap()
        )
    }
}

/// Every segment a report names, for the guard.
fn guard_report(segs: &mut Segments, report: &Value) {
    for list in ["leaked_segments", "notes"] {
        for s in report[list].as_array().into_iter().flatten() {
            if let Some(id) = s["shmid"].as_i64() {
                segs.add(id as i32);
            }
        }
    }
}

/// `shmguard run --json R --log-dir L --lib LIB [flags] -- cmd`.
fn run(segs: &mut Segments, flags: &[&str], cmd: &[&str]) -> Run {
    let dir = Dir::new("run");
    let report_path = dir.path().join("report.json");
    let logs = dir.path().join("logs");
    let out = Command::new(shmguard())
        .args(["run", "--json"])
        .arg(&report_path)
        .arg("--log-dir")
        .arg(&logs)
        .arg("--lib")
        .arg(library())
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run shmguard");
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    let report = std::fs::read(&report_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| panic!("no JSON report:\n{}", show(&out)));
    guard_report(segs, &report);
    Run {
        out,
        report,
        _dir: dir,
    }
}

fn h() -> String {
    helper().display().to_string()
}

fn hs() -> String {
    static_helper().display().to_string()
}

#[test]
fn a_clean_tree_keeps_the_commands_status() {
    let _serial = serial();
    let mut segs = Segments::default();
    let script = format!("{} tidy 4096 && exit 7", h());
    let r = run(&mut segs, &["--fail-on-leak"], &["sh", "-c", &script]);
    assert_eq!(r.code(), Some(7), "{}", r.context());
    assert_eq!(r.report["summary"]["leaks"], 0, "{}", r.context());
    assert_eq!(r.report["run"]["exit_code"], 7);
    assert_eq!(r.report["run"]["exit_status"], 7);
    // The helper's four calls are in its log.
    let p = r.report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["argv"].as_array().unwrap().iter().any(|a| a == "tidy"))
        .unwrap_or_else(|| panic!("the helper left no log:\n{}", r.context()));
    assert_eq!(p["calls"], 4, "{}", r.context());
    assert_eq!(p["segments_created"], 1);
    assert_eq!(p["segments_removed"], 1);
    assert_eq!(p["peak_attachments"], 1);
    assert_eq!(p["exit_event"], true);
    assert!(
        p.get("status").is_none(),
        "the shell reaped it, not shmguard"
    );

    // Killed by a signal: run reports, then dies of the same signal, so
    // its parent sees what it would have seen without run (128 + N for a
    // shell).
    let r = run(&mut segs, &[], &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(r.out.status.signal(), Some(15), "{}", r.context());
    assert_eq!(r.report["run"]["signal"], 15);
    assert_eq!(r.report["run"]["exit_status"], 128 + 15);

    // The text report goes to stderr, leaving stdout to the command. No
    // --lib: the library next to the binary (target/debug) is found.
    let out = Command::new(shmguard())
        .args(["run", "--", "sh", "-c", "echo hello; exit 3"])
        .env("TMPDIR", scratch())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shmguard: SUMMARY: no leaks"), "{err}");
    // Nothing was logged (no shm call): no log directory is named (nor
    // kept, see gate.rs).
    assert!(!err.contains("logs in "), "{err}");
}

#[test]
fn a_leak_fails_the_run_and_is_named() {
    let _serial = serial();
    let mut segs = Segments::default();
    let r = run(&mut segs, &["--fail-on-leak"], &[&h(), "mixed"]);
    let printed: Vec<i32> = r.stdout().lines().map(|l| l.parse().unwrap()).collect();
    let [leaked, attached] = printed[..] else {
        panic!("helper output: {}", r.context());
    };
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert_eq!(
        r.leaked(),
        [(i64::from(leaked), "log".to_owned())],
        "{}",
        r.context()
    );
    let att = r.report["leaked_attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1, "{}", r.context());
    assert_eq!(att[0]["shmid"], attached);
    assert_eq!(att[0]["size"], 8192);
    assert_eq!(r.report["failures"][0]["errno"], "EINVAL");
    assert_eq!(r.report["failures"][0]["count"], 2);
    assert_eq!(r.report["summary"]["leaks"], 2);

    // Without --fail-on-leak the status is the command's; the text names
    // each shmid.
    let logs = Dir::new("run-text");
    let out = Command::new(shmguard())
        .args(["run", "--lib"])
        .arg(library())
        .arg("--log-dir")
        .arg(logs.path())
        .args(["--", &h(), "mixed"])
        .output()
        .unwrap();
    let ids = segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("shmguard: leak: segment shmid={} ", ids[0])),
        "{err}"
    );
    assert!(
        err.contains(&format!("shmguard: leak: attachment shmid={} ", ids[1])),
        "{err}"
    );
    assert!(
        err.contains("failed calls: EINVAL 2 (shmctl 1, shmget 1)"),
        "{err}"
    );
    // `report` on the same logs agrees.
    let rep = shmguard_cmd(&["report", s(logs.path()), "--json"]);
    let rep: Value = serde_json::from_slice(&rep.stdout).unwrap();
    assert_eq!(rep["leaked_segments"][0]["shmid"], ids[0]);
    assert_eq!(rep["leaked_segments"][0]["in_kernel"], true);
    assert_eq!(rep["leaked_attachments"][0]["shmid"], ids[1]);
}

#[test]
fn grandchildren_that_outlive_their_parents_are_waited_for() {
    let _serial = serial();
    let mut segs = Segments::default();
    // Each double fork: the child exits at once, the grandchild waits
    // 600 ms, then creates a segment and exits without removing it.
    let script = format!(
        "{} double-fork 4096 600; {} double-fork 4096 600",
        h(),
        hs()
    );
    let start = Instant::now();
    let r = run(&mut segs, &["--fail-on-leak"], &["sh", "-c", &script]);
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "did not wait"
    );
    let printed = segs.add_printed(&r.stdout());
    assert_eq!(printed.len(), 2, "{}", r.context());
    assert_eq!(r.code(), Some(1), "{}", r.context());
    // The two grandchildren run at the same time, so either may create
    // (and print) first: compare the ids as sets, and tell the two apart by
    // their command below.
    let leaked = r.leaked();
    let mut ids: Vec<i64> = leaked.iter().map(|(id, _)| *id).collect();
    ids.sort();
    let mut want: Vec<i64> = printed.iter().map(|&id| i64::from(id)).collect();
    want.sort();
    assert_eq!(ids, want, "{}", r.context());
    let mut sources: Vec<&str> = leaked.iter().map(|(_, src)| src.as_str()).collect();
    sources.sort();
    assert_eq!(sources, ["kernel", "log"], "{}", r.context());
    // The static grandchild was reaped by shmguard: attributed by pid.
    let s = r.report["leaked_segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "kernel")
        .unwrap();
    assert!(s["why"].as_str().unwrap().contains("of the tree"), "{s}");
    assert_eq!(
        s["argv"],
        serde_json::json!(["shmhelper-stati"]),
        "comm of the reaped zombie: {s}"
    );
}

#[test]
fn static_binaries_are_found_through_the_kernel_table() {
    let _serial = serial();
    let mut segs = Segments::default();
    // The command itself is static: shmguard reaps it.
    let r = run(&mut segs, &["--fail-on-leak"], &[&hs(), "create", "4096"]);
    let printed = segs.add_printed(&r.stdout());
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert_eq!(r.leaked(), [(i64::from(printed[0]), "kernel".to_owned())]);
    assert_eq!(r.report["processes"], serde_json::json!([]), "no log");

    // Inside a shell: the shell reaps the static binary, and a static
    // parent reaps its forked child; shmguard never sees either pid.
    let script = format!("{} create 1000; {} fork-orphan 2000", hs(), hs());
    let r = run(&mut segs, &["--fail-on-leak"], &["sh", "-c", &script]);
    let printed = segs.add_printed(&r.stdout());
    assert_eq!(printed.len(), 2, "{}", r.context());
    assert_eq!(r.code(), Some(1), "{}", r.context());
    let mut ids = r.leaked_ids();
    ids.sort();
    let mut want = printed.clone();
    want.sort();
    assert_eq!(ids, want, "{}", r.context());
    for s in r.report["leaked_segments"].as_array().unwrap() {
        assert_eq!(s["source"], "kernel");
        assert!(
            s["why"]
                .as_str()
                .unwrap()
                .contains("started during the run"),
            "{s}"
        );
    }
    // A segment that existed before the run, orphaned, is not the tree's.
    let before = make(&mut segs, None, &["create", "4096"])[0];
    let r = run(&mut segs, &["--fail-on-leak"], &["true"]);
    assert_eq!(r.code(), Some(0), "{}", r.context());
    assert!(!r.leaked_ids().contains(&before));
}

#[test]
fn a_process_killed_by_sigkill_keeps_its_logged_calls() {
    let _serial = serial();
    let mut segs = Segments::default();
    // `hold` creates and attaches, then waits on its stdin (the pipe from
    // sleep), until SIGKILL ends it: no exit event, no leak check.
    let script = format!(
        "sleep 2 | {} hold & p=$!; sleep 0.5; kill -KILL $p; wait $p; exit 0",
        h()
    );
    let r = run(&mut segs, &["--fail-on-leak"], &["sh", "-c", &script]);
    let printed = segs.add_printed(&r.stdout());
    assert_eq!(printed.len(), 1, "{}", r.context());
    assert_eq!(r.code(), Some(1), "{}", r.context());
    assert_eq!(
        r.leaked(),
        [(i64::from(printed[0]), "log".to_owned())],
        "{}",
        r.context()
    );
    let p = r.report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["argv"]
                .as_array()
                .unwrap()
                .last()
                .is_some_and(|a| a == "hold")
        })
        .unwrap_or_else(|| panic!("no log of the killed process:\n{}", r.context()));
    assert_eq!(p["calls"], 2, "shmget and shmat: {}", r.context());
    assert_eq!(p["exit_event"], false);
    assert_eq!(
        r.report["warnings"],
        serde_json::json!([]),
        "{}",
        r.context()
    );
    // Its log ends with the last event written, whole (one write each).
    let log = std::fs::read(p["log"].as_str().unwrap()).unwrap();
    assert_eq!(
        log.last(),
        Some(&b'\n'),
        "the log of a killed process ends in a whole line"
    );
    assert!(!log.contains(&0), "no padding in the log");
}

#[test]
fn signals_are_passed_to_the_tree() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("run-signal");
    let report_path = dir.path().join("report.json");
    for (signal, number) in [("TERM", 15), ("INT", 2)] {
        let mut child = Command::new(shmguard())
            .args(["run", "--json"])
            .arg(&report_path)
            .arg("--lib")
            .arg(library())
            .args(["--", &h(), "hold"])
            .env("TMPDIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let id: i32 = lines.next().unwrap().unwrap().parse().unwrap();
        segs.add(id);
        assert_eq!(lines.next().unwrap().unwrap(), "attached");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // Keep the helper's stdin open while waiting (wait() would close
        // it, and EOF ends `hold` normally, racing with the signal).
        let stdin = child.stdin.take();
        let status = child.wait().unwrap();
        drop(stdin);
        let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
        guard_report(&mut segs, &report);
        assert_eq!(status.signal(), Some(number), "SIG{signal}: {report}");
        assert_eq!(report["run"]["signal"], number);
        // Killed while holding it: the segment stays, and is named.
        assert_eq!(report["leaked_segments"][0]["shmid"], id, "{report}");
        std::fs::remove_dir_all(report["log_dir"].as_str().unwrap()).unwrap();
    }
}

#[test]
fn bad_usage_is_refused() {
    let dir = Dir::new("run-usage");
    let out = shmguard_cmd(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let lib = library();
    let lib = s(&lib);
    // Refused runs leave no log directory behind.
    let tmp = Dir::new("run-usage-tmp");
    let refused = |args: &[&str]| {
        Command::new(shmguard())
            .args(args)
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap()
    };
    let out = refused(&[
        "run",
        "--lib",
        lib,
        "--options",
        "log_path=/x",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = refused(&["run", "--lib", lib, "--", "/nonexistent/cmd"]);
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    let out = shmguard_cmd(&["run", "--lib", "/nonexistent/libshmguard.so", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    let out = Command::new(shmguard())
        .args(["run", "--", "true"])
        .env("SHMGUARD_LIB", "/nonexistent/lib.so")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SHMGUARD_LIB"),
        "{}",
        show(&out)
    );
    let logs = dir.path().join("logs");
    let out = shmguard_cmd(&[
        "run",
        "--lib",
        lib,
        "--log-dir",
        s(&logs),
        "--",
        "/nonexistent/cmd",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", show(&out));
    std::fs::write(logs.join("shmguard.1.jsonl"), "").unwrap();
    let out = shmguard_cmd(&["run", "--lib", lib, "--log-dir", s(&logs), "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds logs"));
}
