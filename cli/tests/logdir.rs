//! The log directory: `run` makes one that no one outside the tree can
//! tamper with but that processes of the tree that switch user can still
//! log to (sticky, mode 1733 while the tree runs, 0700 after); it refuses
//! a `--log-dir` that another user owns, that others may write without the
//! sticky bit, or that is a symbolic link; and `report` (like `run`) reads
//! no symbolic link, no file others may write, and, in a directory others
//! may write, no file of a user the tree did not run as.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// A user of no one else's: the "other user" of these tests.
const OTHER: u32 = 64_322;
const NOBODY: u32 = 65_534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn run_in(log_dir: &Path) -> std::process::Output {
    Command::new(shmguard())
        .args(["run", "--lib"])
        .arg(library())
        .arg("--log-dir")
        .arg(log_dir)
        .args(["--", "true"])
        .output()
        .unwrap()
}

/// A log of one process that leaked an attachment (its exit event).
fn log_of(pid: u32) -> String {
    let head = |ts: u32| format!(r#""v":1,"pid":{pid},"ppid":1,"tid":{pid},"ts_ns":{ts}"#);
    format!(
        "{{{},\"event\":\"start\",\"argv\":[\"p{pid}\"],\"exe\":\"/p\",\"uid\":0,\"euid\":0,\"forked\":false}}\n\
         {{{},\"event\":\"exit\",\"leaks\":[{{\"kind\":\"attachment\",\"shmid\":5,\"addr\":\"0x7f0000000000\",\"size\":4096,\"readonly\":false}}],\"notes\":[]}}\n",
        head(1),
        head(2)
    )
}

fn pids(report: &Value) -> Vec<u64> {
    report["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect()
}

#[test]
fn unsafe_log_dirs_are_refused() {
    let dir = Dir::new("logdir-refused");
    let refused = |path: &Path, why: &str| {
        let out = run_in(path);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            path.display(),
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{}: {err}", path.display());
    };
    let others = dir.path().join("others");
    std::fs::create_dir(&others).unwrap();
    chown(&others, NOBODY);
    refused(&others, "owned by uid 65534");

    let writable = dir.path().join("writable");
    std::fs::create_dir(&writable).unwrap();
    chmod(&writable, 0o777);
    refused(&writable, "without the sticky bit");
    chmod(&writable, 0o775);
    refused(&writable, "without the sticky bit");

    let good = dir.path().join("good");
    std::fs::create_dir(&good).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    refused(&link, "symbolic link");

    // A parent others may write: the directory could be swapped.
    let open_parent = dir.path().join("open");
    std::fs::create_dir(&open_parent).unwrap();
    chmod(&open_parent, 0o777);
    refused(&open_parent.join("logs"), "its parent");
    assert!(!open_parent.join("logs").exists());

    // Ours, and sticky: fine.
    let sticky = dir.path().join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    chmod(&sticky, 0o1777);
    let out = run_in(&sticky);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // Ours, private: fine.
    let out = run_in(&good);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn a_log_dir_under_another_users_parent_is_refused() {
    // The parent is not writable by group or others, but it belongs to
    // another user, who can rename the log directory away mid-run and put
    // a symbolic link to a directory of their own in its place: the tree's
    // later logs are then created where that user can remove them.
    let dir = Dir::new("logdir-foreign-parent");
    let parent = dir.path().join("nobodys");
    std::fs::create_dir(&parent).unwrap();
    chmod(&parent, 0o755);
    chown(&parent, NOBODY);
    for logs in [parent.join("existing"), parent.join("missing")] {
        if logs.ends_with("existing") {
            std::fs::create_dir(&logs).unwrap();
            chmod(&logs, 0o700);
        }
        let out = run_in(&logs);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: {}",
            logs.display(),
            show(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("its parent"),
            "{}: {}",
            logs.display(),
            show(&out)
        );
    }
}

#[test]
fn a_process_that_switches_user_can_log_and_the_dir_is_sealed_after() {
    let _serial = serial();
    let mut segs = Segments::default();
    // nobody must reach the log directory, the program and the library.
    let dir = Dir::reachable("logdir-switch");
    let (lib, prog) = (dir.copy_in(&library()), dir.copy_in(&helper()));
    let report_path = dir.path().join("report.json");
    // run (root) runs a command that becomes nobody, as a server started
    // by root does.
    let out = Command::new(shmguard())
        .args(["run", "--json"])
        .arg(&report_path)
        .arg("--lib")
        .arg(&lib)
        .arg("--")
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(&prog)
        .arg("tidy")
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    segs.add_printed(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let log_dir = report["log_dir"].as_str().unwrap().to_owned();
    let procs = report["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "nobody's process could not log: {report}");
    assert_eq!(procs[0]["calls"], 4, "{report}");
    let log = procs[0]["log"].as_str().unwrap();
    let meta = std::fs::metadata(log).unwrap();
    assert_eq!(meta.uid(), NOBODY);
    // The tree is gone: no one but us may add files any more.
    let mode = std::fs::metadata(&log_dir).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{mode:o}");
    // And `report` later reads the same.
    let out = shmguard_cmd(&["report", "--json", &log_dir]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids(&again), pids(&report));
    std::fs::remove_dir_all(&log_dir).unwrap();
}

#[test]
fn logs_planted_by_another_user_are_ignored_and_moved_aside() {
    let _serial = serial();
    let mut segs = Segments::default();
    // The other user must reach the log directory.
    let dir = Dir::reachable("logdir-planted");
    let log_dir = dir.path().join("logs");
    let report_path = dir.path().join("report.json");
    let mut child = Command::new(shmguard())
        .args(["run", "--json"])
        .arg(&report_path)
        .arg("--lib")
        .arg(library())
        .arg("--log-dir")
        .arg(&log_dir)
        .arg("--")
        .arg(helper())
        .args(["hold", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    segs.add(lines.next().unwrap().unwrap().trim().parse().unwrap());
    assert_eq!(lines.next().unwrap().unwrap(), "attached");
    // While the tree runs, another user (outside it) adds a log of a
    // process that never was.
    let planted = log_dir.join("shmguard.999999.jsonl");
    let status = as_user(OTHER)
        .args(["sh", "-c", "cat > \"$0\""])
        .arg(&planted)
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(log_of(999_999).as_bytes())?;
            c.wait()
        })
        .unwrap();
    drop(child.stdin.take());
    let run_status = child.wait().unwrap();
    assert!(
        status.success(),
        "the other user could not create a file in the log directory"
    );
    assert!(run_status.success(), "{run_status:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    guard(&mut segs, &report);
    assert!(!pids(&report).contains(&999_999), "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("owned by uid 64322"), "{warnings}");
    assert!(!planted.exists());
    let aside = log_dir.join("shmguard.999999.jsonl.untrusted");
    assert!(aside.exists(), "{warnings}");
    let out = shmguard_cmd(&["report", "--json", s(&log_dir)]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids(&again), pids(&report));
}

fn guard(segs: &mut Segments, report: &Value) {
    for s in report["leaked_segments"].as_array().into_iter().flatten() {
        segs.add(s["shmid"].as_i64().unwrap() as i32);
    }
}

#[test]
fn report_reads_only_regular_private_files_of_trusted_owners() {
    let dir = Dir::new("logdir-report");
    // A directory anyone may write (sticky), owned by us (root).
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    chmod(&logs, 0o1777);
    let write = |name: &str, pid: u32, mode: u32| {
        let p = logs.join(name);
        std::fs::write(&p, log_of(pid)).unwrap();
        chmod(&p, mode);
        p
    };
    write("shmguard.100.jsonl", 100, 0o600);
    // Another user's file: in a directory others may write, not trusted.
    let foreign = write("shmguard.200.jsonl", 200, 0o600);
    chown(&foreign, OTHER);
    // Writable by others: anyone could have written it.
    write("shmguard.300.jsonl", 300, 0o666);
    // A symbolic link to a log elsewhere.
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, log_of(400)).unwrap();
    chmod(&elsewhere, 0o600);
    std::os::unix::fs::symlink(&elsewhere, logs.join("shmguard.400.jsonl")).unwrap();
    // A FIFO would block a reader that opened it.
    let fifo = logs.join("shmguard.500.jsonl");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A hard link of a trusted log: one file, two names.
    std::fs::hard_link(
        logs.join("shmguard.100.jsonl"),
        logs.join("shmguard.600.jsonl"),
    )
    .unwrap();

    let out = shmguard_cmd(&["report", "--json", s(&logs)]);
    assert!(out.status.success(), "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(pids(&report).is_empty(), "{report}");
    let warnings = report["warnings"].to_string();
    for (what, why) in [
        ("200", "owned by uid 64322"),
        ("300", "writable by group or others"),
        ("400", "not a regular file"),
        ("500", "not a regular file"),
        ("100", "hard links"),
    ] {
        assert!(
            warnings.contains(&format!("shmguard.{what}.jsonl: ")) && warnings.contains(why),
            "{what}: {why}: {warnings}"
        );
    }
    // Without the hard link, the trusted log is read; in a directory that
    // only its owner may write, any owner's file is.
    std::fs::remove_file(logs.join("shmguard.600.jsonl")).unwrap();
    chmod(&logs, 0o755);
    let out = shmguard_cmd(&["report", "--json", s(&logs)]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pids(&report), [100, 200], "{report}");
}
