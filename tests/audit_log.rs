//! The audit log, end to end: a child process (this test binary, re-run as
//! a workload) makes known calls through the library's exports with
//! `log_path` set; the test reads its log back.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use shmguard::ffi;

/// Set in the child: which workload to run.
const WORKLOAD: &str = "SHMGUARD_TEST_WORKLOAD";

fn log_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmguard-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `workload` in a child process with the log under `dir`.
fn spawn(workload: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "workload", "--nocapture", "--test-threads=1"])
        .env(WORKLOAD, workload)
        .env(
            "SHMGUARD_OPTIONS",
            format!("log_path={}/log.%p.jsonl", dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every event of every file in `dir`, parsed by hand-rolled field lookup
/// (this crate does not depend on a JSON parser).
fn events(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for line in data.split(|&b| b == b'\n') {
            let line: Vec<u8> = line.iter().copied().filter(|&b| b != 0).collect();
            if !line.is_empty() {
                out.push(String::from_utf8(line).unwrap());
            }
        }
    }
    out
}

fn calls<'a>(events: &'a [String], name: &str) -> Vec<&'a String> {
    let needle = format!("\"call\":\"{name}\"");
    events
        .iter()
        .filter(|e| e.contains("\"event\":\"call\"") && e.contains(&needle))
        .collect()
}

/// Removes a segment on drop, so a failing test leaves nothing behind.
struct Segment(i32);

impl Drop for Segment {
    fn drop(&mut self) {
        let _ = shmguard::support::shm_rmid(self.0);
    }
}

/// The workloads, run only in the child.
#[test]
fn workload() {
    let Ok(which) = std::env::var(WORKLOAD) else {
        return;
    };
    let mut out = std::io::stdout();
    match which.as_str() {
        "known" => {
            let id = ffi::shmguard_shmget(libc::IPC_PRIVATE, 8192, 0o600);
            // SAFETY: the kernel chooses the address; nothing else refers
            // to the attachment when it is detached; IPC_RMID takes no buffer.
            let at = unsafe { ffi::shmguard_shmat(id, std::ptr::null(), libc::SHM_RDONLY) };
            assert_eq!(ffi::shmguard_shmget(libc::IPC_PRIVATE, 0, 0o600), -1);
            unsafe {
                ffi::shmguard_shmdt(at);
                ffi::shmguard_shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            }
            // libtest may print its own text on the same line: mark ours.
            writeln!(out, "\n@@id {id}").unwrap();
        }
        "killed" => {
            // Each line on stdout is written after the call returned.
            for i in 0.. {
                let id = ffi::shmguard_shmget(libc::IPC_PRIVATE, 4096, 0o600);
                // SAFETY: IPC_RMID takes no buffer.
                unsafe { ffi::shmguard_shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                writeln!(out, "\n@@ret {i}").unwrap();
                out.flush().unwrap();
                if i == 200 {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
            }
        }
        "example" => {
            // The calls of docs/log-schema.md's example, leaks included
            // (the test removes the segment).
            let id = ffi::shmguard_shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
            // SAFETY: the kernel chooses the address; the attachment is
            // left for the exit check, and nothing refers to it.
            let _at = unsafe { ffi::shmguard_shmat(id, std::ptr::null(), 0) };
            assert_eq!(ffi::shmguard_shmget(libc::IPC_PRIVATE, 0, 0o600), -1);
            writeln!(out, "\n@@id {id}").unwrap();
        }
        other => panic!("unknown workload {other}"),
    }
}

#[test]
fn known_calls_are_logged_exactly() {
    let dir = log_dir("known");
    let child = spawn("known", &dir);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@id "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("child output: {stdout}"));
    let _seg = Segment(id);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let ev = events(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let all_calls: Vec<&String> = ev
        .iter()
        .filter(|e| e.contains("\"event\":\"call\""))
        .collect();
    assert_eq!(all_calls.len(), 5, "{ev:#?}");
    assert!(ev[0].contains("\"event\":\"start\""), "{}", ev[0]);
    assert!(ev.last().unwrap().contains("\"event\":\"exit\""));
    assert!(ev.last().unwrap().contains("\"leaks\":[]"));

    let get = calls(&ev, "shmget");
    assert!(
        get[0].contains(&format!("\"ret\":{id},\"errno\":null,\"created\":true")),
        "{}",
        get[0]
    );
    assert!(get[0].contains("\"args\":{\"key\":\"0x00000000\",\"size\":8192,\"shmflg\":\"0600\"}"));
    assert!(
        get[1].contains("\"ret\":-1,\"errno\":\"EINVAL\",\"detail\":\"size 0"),
        "{}",
        get[1]
    );
    let at = calls(&ev, "shmat");
    assert!(at[0].contains(&format!(
        "\"args\":{{\"shmid\":{id},\"shmaddr\":null,\"shmflg\":\"SHM_RDONLY\"}}"
    )));
    let dt = calls(&ev, "shmdt");
    assert!(
        dt[0].contains(&format!("\"ret\":0,\"errno\":null,\"shmid\":{id}")),
        "{}",
        dt[0]
    );
    let ctl = calls(&ev, "shmctl");
    assert!(ctl[0].contains(&format!(
        "\"args\":{{\"shmid\":{id},\"cmd\":\"IPC_RMID\",\"buf\":null}}"
    )));
}

#[test]
fn sigkill_loses_no_returned_call() {
    let dir = log_dir("killed");
    let mut child = spawn("killed", &dir);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut returned = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("@@ret ") {
            returned += 1;
        }
        if line == "@@ret 200" {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let ev = events(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(returned, 201);
    // Every call that had returned is there: 201 creations and removals.
    assert_eq!(calls(&ev, "shmget").len(), 201, "{:?}", ev.last());
    assert_eq!(calls(&ev, "shmctl").len(), 201);
    assert!(!ev.iter().any(|e| e.contains("\"event\":\"exit\"")));
}

/// The keys of a JSON Lines event, in order (every `"name":`).
fn keys(event: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = event;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let name = &after[..end];
        rest = &after[end + 1..];
        if rest.starts_with(':') {
            out.push(name.to_owned());
        }
    }
    out
}

/// docs/log-schema.md's example shows what the library writes: the same
/// events, each with the same fields in the same order.
#[test]
fn the_documented_example_is_what_the_library_writes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/log-schema.md"))
        .unwrap();
    let example = doc
        .split("## Example")
        .nth(1)
        .and_then(|s| s.split("```json\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("docs/log-schema.md has an Example section with a json block");
    let documented: Vec<&str> = example.lines().filter(|l| !l.is_empty()).collect();

    let dir = log_dir("example");
    let output = spawn("example", &dir).wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id: i32 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@id "))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("child output: {stdout}"));
    let _seg = Segment(id);
    let written = events(&dir);
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(documented.len(), written.len(), "{written:#?}");
    for (doc_line, line) in documented.iter().zip(&written) {
        assert_eq!(
            keys(doc_line),
            keys(line),
            "documented:\n{doc_line}\nwritten:\n{line}"
        );
    }
}
