//! What the reports show, `run`'s (standard error) and `report`'s
//! (standard output) alike, on a real tree: one prefix on every line
//! (`shmguard: `) and one table layout in both; the call stacks of leaks
//! and findings (`stacks=1`) under their lines and in the JSON; identical
//! findings grouped with a count in the text, one row each in the JSON;
//! no per-process `==PID==` report under `run` unless asked
//! (`--per-process`), while the log keeps every exit event's leaks and
//! `exitcode` keeps its meaning; commands shell-quoted in the text and
//! arrays (`argv`) in the JSON, whose documents carry a `schema`; numbers
//! right-aligned in `ls`'s table. Every segment made is removed.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::*;
use serde_json::Value;

/// A program that makes N segments of mode 0666 (a `wide-mode` finding
/// each, all from the one call in `make_wide`), removing each, then with
/// LEAK=1 leaks one segment made in `leak_one` and prints its shmid.
const WIDE_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

static __attribute__((noinline)) int make_wide(void) {
    return shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0666);
}

static __attribute__((noinline)) int leak_one(void) {
    return shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    int leak = argc > 2 ? atoi(argv[2]) : 0;
    for (int i = 0; i < n; i++) {
        int id = make_wide();
        if (id < 0)
            return 1;
        shmctl(id, IPC_RMID, NULL);
    }
    if (leak) {
        int id = leak_one();
        if (id < 0)
            return 1;
        printf("%d\n", id);
    }
    return 0;
}
"#;

/// The program, built once (-g -O0: its frames have file:line).
fn wide() -> String {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let src = scratch().join(format!("wide.{}.c", std::process::id()));
        std::fs::write(&src, WIDE_C).unwrap();
        let out = scratch().join("wide");
        let tmp = scratch().join(format!("wide.{}.tmp", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
        let status = Command::new(&cc)
            .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O0", "-g", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        let _ = std::fs::remove_file(&src);
        assert!(status.success(), "{cc} failed to build wide");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
    .display()
    .to_string()
}

/// `shmguard run --log-dir LOGS --lib LIB FLAGS -- CMD` (text report).
fn run(segs: &mut Segments, logs: &std::path::Path, flags: &[&str], cmd: &[&str]) -> Output {
    let out = Command::new(shmguard())
        .arg("run")
        .arg("--log-dir")
        .arg(logs)
        .arg("--lib")
        .arg(library())
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run shmguard");
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    out
}

fn report(logs: &std::path::Path, json: bool) -> Output {
    let mut c = Command::new(shmguard());
    c.arg("report").arg(logs);
    if json {
        c.arg("--json");
    }
    let out = c.output().expect("run shmguard report");
    assert!(out.status.success(), "{}", show(&out));
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_and_report_show_stacks_grouped_findings_and_one_answer() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("report-text");
    let logs = dir.path().join("logs");
    let wide = wide();
    let out = run(
        &mut segs,
        &logs,
        &["--options", "stacks=1"],
        &[&wide, "8", "1"],
    );
    let stderr = text(&out.stderr);
    let ctx = show(&out);
    assert_eq!(out.status.code(), Some(0), "{ctx}");
    let leaked = segs.0.clone();
    assert_eq!(leaked.len(), 1, "{ctx}");

    // One answer: no process's own ==PID== report under run.
    assert!(
        !stderr.contains("== shmguard:"),
        "per-process lines under run without --per-process:\n{ctx}"
    );
    // One prefix on every line of run's report.
    for line in stderr.lines() {
        assert!(line.starts_with("shmguard: "), "{line:?}\n{ctx}");
    }
    // Eight identical findings, one line with the count.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("shmguard: finding: "))
        .collect();
    assert_eq!(findings.len(), 1, "{ctx}");
    assert!(
        findings[0].starts_with("shmguard: finding: wide-mode in shmget by pid "),
        "{ctx}"
    );
    assert!(
        findings[0].contains(&format!(" ({wide} 8 1) (8 times): ")),
        "{ctx}"
    );
    // Stacks under the finding and the leak: file:line, as the library
    // prints them.
    let lines: Vec<&str> = stderr.lines().collect();
    let at = |i: usize| lines.get(i).copied().unwrap_or("");
    let f = lines.iter().position(|l| l == &findings[0]).unwrap();
    assert!(
        at(f + 1).starts_with("shmguard:     at make_wide (") && at(f + 1).contains(".c:"),
        "{ctx}"
    );
    let leak = lines
        .iter()
        .position(|l| l.starts_with(&format!("shmguard: leak: segment shmid={} ", leaked[0])))
        .unwrap_or_else(|| panic!("no leak line:\n{ctx}"));
    assert!(
        at(leak + 1).starts_with("shmguard:     at leak_one (") && at(leak + 1).contains(".c:"),
        "{ctx}"
    );
    assert!(at(leak + 2).starts_with("shmguard:     at main ("), "{ctx}");

    // report: the same prefix, the same table and finding lines.
    let rep = text(&report(&logs, false).stdout);
    for line in rep.lines() {
        assert!(line.starts_with("shmguard: "), "{line:?}\n{rep}");
    }
    // (Up to END: run knows how each process ended, `exit 0`, a report
    // from logs only whether it logged its exit, `exit`.)
    let header = |t: &str| {
        t.lines()
            .find(|l| l.contains("PID") && l.contains("COMMAND"))
            .map(|l| l[..l.find("END").unwrap()].to_owned())
    };
    assert!(header(&stderr).is_some(), "no table under run:\n{ctx}");
    assert_eq!(header(&stderr), header(&rep), "run:\n{ctx}\nreport:\n{rep}");
    let finding_lines = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("shmguard: finding") || l.starts_with("shmguard:     at "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(finding_lines(&stderr), finding_lines(&rep), "{rep}");
    // The process's row: numbers right-aligned under their headers.
    let head = rep.lines().find(|l| l.contains("COMMAND")).unwrap();
    let row = rep
        .lines()
        .find(|l| l.contains(&wide))
        .unwrap_or_else(|| panic!("no row:\n{rep}"));
    let end_of = |name: &str| head.find(name).unwrap() + name.len();
    let calls_end = end_of("CALLS");
    assert!(
        row.as_bytes()[calls_end - 1].is_ascii_digit() && row.as_bytes()[calls_end] == b' ',
        "CALLS not right-aligned:\n{rep}"
    );

    // JSON: the schema, argv arrays, one finding row per event, stacks.
    let json: Value = serde_json::from_slice(&report(&logs, true).stdout).unwrap();
    assert_eq!(json["schema"], "shmguard-report/1");
    let p = &json["processes"][0];
    assert_eq!(p["argv"], serde_json::json!([wide, "8", "1"]), "{json}");
    let rows = json["findings"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{json}");
    for r in rows {
        assert_eq!(r["argv"], p["argv"]);
        let first = r["stack"][0].as_str().unwrap_or("");
        assert!(first.starts_with("make_wide ("), "{r}");
    }
    let s = &json["leaked_segments"][0];
    assert_eq!(s["shmid"], leaked[0]);
    assert_eq!(s["argv"], p["argv"]);
    assert!(
        s["stack"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("leak_one ("),
        "{s}"
    );
    // The log still lists the leak in the exit event (leak_report=0 left
    // the check alone).
    let log = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    let exit = log
        .lines()
        .find(|l| l.contains("\"event\":\"exit\""))
        .unwrap_or_else(|| panic!("no exit event:\n{log}"));
    assert!(
        exit.contains(&format!(
            "\"leaks\":[{{\"kind\":\"segment\",\"shmid\":{},",
            leaked[0]
        )),
        "{exit}"
    );
}

#[test]
fn per_process_reports_on_request_and_exitcode_keeps_its_meaning() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("report-per-process");
    let wide = wide();

    // Asked for: the process's own report too.
    let out = run(
        &mut segs,
        &dir.path().join("a"),
        &["--per-process"],
        &[&wide, "0", "1"],
    );
    let ctx = show(&out);
    let id = segs.0.last().copied().unwrap_or_else(|| panic!("{ctx}"));
    assert!(
        text(&out.stderr).contains(&format!("== shmguard: leak: segment shmid={id} ")),
        "{ctx}"
    );
    // leak_report=1 in --options does the same.
    let out = run(
        &mut segs,
        &dir.path().join("b"),
        &["--options", "leak_report=1"],
        &[&wide, "0", "1"],
    );
    assert!(
        text(&out.stderr).contains("== shmguard: leak: segment shmid="),
        "{}",
        show(&out)
    );
    // Not asked for: silent, but exitcode still makes the leaking process
    // exit 3, and run passes that on.
    let out = run(
        &mut segs,
        &dir.path().join("c"),
        &["--options", "exitcode=3"],
        &[&wide, "0", "1"],
    );
    let ctx = show(&out);
    assert!(!text(&out.stderr).contains("== shmguard:"), "{ctx}");
    assert_eq!(out.status.code(), Some(3), "{ctx}");
    assert!(
        text(&out.stderr).contains(": exit 3\n"),
        "the run line names the status:\n{ctx}"
    );
}

#[test]
fn commands_are_shown_shell_quoted() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("report-quoted");
    let wide = wide();
    let script = format!("exec {wide} 1 0");
    let out = run(
        &mut segs,
        &dir.path().join("logs"),
        &[],
        &["sh", "-c", &script],
    );
    let ctx = show(&out);
    assert!(
        text(&out.stderr).starts_with(&format!("shmguard: sh -c 'exec {wide} 1 0': exit 0\n")),
        "{ctx}"
    );
}

#[test]
fn ls_right_aligns_its_numbers() {
    let _serial = serial();
    let mut segs = Segments::default();
    // SAFETY: shmget takes no pointer; the segment is removed by `segs`.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0);
    segs.add(id);
    let out = Command::new(shmguard()).arg("ls").output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let t = text(&out.stdout);
    let head = t.lines().next().unwrap_or("");
    let row = t
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&id.to_string()))
        .unwrap_or_else(|| panic!("no row for {id}:\n{t}"));
    for name in ["SHMID", "SIZE", "NATTCH", "CPID"] {
        let end = head.find(name).unwrap() + name.len();
        let b = row.as_bytes();
        assert!(
            b[end - 1].is_ascii_digit() && b.get(end).is_none_or(|&c| c == b' '),
            "{name} is not right-aligned:\n{t}"
        );
    }
}
