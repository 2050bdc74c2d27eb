//! The multi-process demo of examples/: `shmguard run --junit r.xml
//! --sarif r.sarif --json r.json -- make -C examples` builds and runs three
//! programs (a forked pair that cleans up, one with a policy finding, one
//! that leaks a segment) and gives three valid files, while make's
//! standard output is exactly what make prints without shmguard.
//!
//! Needs make, a C compiler, xmllint and python3-jsonschema. Runs in a
//! private IPC namespace; the leaked segment is removed afterwards
//! (`make -C examples clean`, and by shmid).

mod common;
mod formats;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use formats::*;
use serde_json::Value;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// `make -B -C examples OUT=out`, without the jobserver and the
/// `make[N]` level of a make this test may run under.
fn make(out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("make");
    c.args(["-B", "-C"])
        .arg(examples())
        .arg(format!("OUT={}", s(out)))
        .args(extra)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    c
}

/// Removes the demo's leaked segment (by its key) when dropped.
struct CleanDemo(PathBuf);

impl Drop for CleanDemo {
    fn drop(&mut self) {
        let _ = make(&self.0, &["clean"]).output();
    }
}

#[test]
fn the_demo_gives_three_valid_files_and_leaves_makes_output_alone() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("examples");
    let d = dir.path();
    let bin = d.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let _clean = CleanDemo(bin.clone());

    // What make prints on its own (in an IPC namespace of its own, which
    // takes the leaked segment with it).
    let plain = Command::new("unshare")
        .args(["--ipc", "--"])
        .arg("make")
        .args(make(&bin, &[]).get_args())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run unshare and make");
    assert_eq!(plain.status.code(), Some(0), "{}", show(&plain));

    let (json, xml, sarif) = (d.join("r.json"), d.join("r.xml"), d.join("r.sarif"));
    let mut run = Command::new(shmguard());
    run.arg("run")
        .arg("--lib")
        .arg(library())
        .args(["--junit", s(&xml), "--sarif", s(&sarif), "--json", s(&json)])
        .arg("--log-dir")
        .arg(d.join("logs"))
        .args(["--options", "stacks=1", "--"])
        .arg("make")
        .args(make(&bin, &[]).get_args())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL");
    let out = run.output().expect("run shmguard");
    let report: Value = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    for s in report["leaked_segments"].as_array().into_iter().flatten() {
        segs.add(s["shmid"].as_i64().unwrap() as i32);
    }
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&plain.stdout),
        "make's output changed under shmguard run"
    );
    assert_eq!(out.stdout, plain.stdout);

    // The JSON report: one leak (leaky's segment), wide's finding, and
    // every program's process logged (pingpong's child too).
    assert_eq!(report["summary"]["leaked_segments"], 1, "{report:#}");
    assert_eq!(report["leaked_segments"][0]["key"], "0x5eed0e01");
    let rules: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["wide-mode"], "{report:#}");
    let commands: Vec<&str> = report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["argv"][0].as_str().unwrap_or(""))
        .collect();
    for program in ["pingpong", "wide", "leaky"] {
        assert!(
            commands.iter().any(|c| c.contains(program)),
            "{program} not logged: {commands:?}"
        );
    }
    assert_eq!(
        commands.iter().filter(|c| c.contains("pingpong")).count(),
        2,
        "{commands:?}"
    );

    assert_valid_junit(&xml);
    let junit = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(
        count(&junit, "<testcase classname=\"shmguard.process\""),
        commands.len(),
        "{junit}"
    );
    assert_eq!(
        count(&junit, "<failure type=\"leaked-segment\""),
        1,
        "{junit}"
    );
    assert_eq!(
        count(&junit, "<failure type=\"finding:wide-mode\""),
        1,
        "{junit}"
    );

    assert_valid_sarif(&sarif);
    let doc: Value = serde_json::from_slice(&std::fs::read(&sarif).unwrap()).unwrap();
    let mut ids: Vec<&str> = doc["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["leaked-segment", "wide-mode"], "{doc:#}");

    // The demo cleans up after itself: the leaked segment goes with
    // `make clean`.
    let clean = make(&bin, &["clean"]).output().unwrap();
    assert!(clean.status.success(), "{}", show(&clean));
    let key = 0x5eed_0e01u32;
    assert!(
        !proc_table()
            .iter()
            .any(|r| r["key"].parse::<i64>().ok() == Some(i64::from(key as i32))),
        "make clean left the segment"
    );
}
