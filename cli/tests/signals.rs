//! `shmguard run` and signals: a signal sent to the whole process group
//! (`kill -INT -PGID`, as `timeout` and service managers send it) reaches
//! the command once, as does one sent to `run` alone; and when the command
//! dies of a signal, `run` dies of the same signal after its report.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};

use common::*;

/// Starts `shmguard run -- CMD` as the leader of a new process group (so
/// that a group kill reaches it and its tree, not this test).
fn start(dir: &Dir, cmd: &[&str]) -> Child {
    Command::new(shmguard())
        .args(["run", "--lib"])
        .arg(library())
        .arg("--")
        .args(cmd)
        .env("TMPDIR", dir.path())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmguard run")
}

fn kill(target: i32, signal: i32) {
    // SAFETY: kill takes plain integers.
    assert_eq!(unsafe { libc::kill(target, signal) }, 0, "kill({target})");
}

/// Waits for `child`; returns its status, stdout and stderr.
fn finish(mut child: Child) -> (ExitStatus, String, String) {
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (child.wait().unwrap(), out, err)
}

/// Runs the counting helper under `run`, sends `signal` to the process
/// group (`group`) or to `run` alone, and returns what the helper counted.
fn count(signal: i32, group: bool) -> String {
    let dir = Dir::new(&format!("signals-{signal}-{group}"));
    let mut child = start(
        &dir,
        &[&helper().display().to_string(), "count-signals", "1500"],
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = child.id() as i32;
    kill(if group { -pid } else { pid }, signal);
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let (status, _, err) = finish(child);
    assert_eq!(status.code(), Some(0), "{err}");
    rest.trim().to_owned()
}

#[test]
fn a_signal_to_the_process_group_reaches_the_command_once() {
    assert_eq!(count(libc::SIGINT, true), "INT=1 TERM=0");
    assert_eq!(count(libc::SIGTERM, true), "INT=0 TERM=1");
}

#[test]
fn a_signal_to_run_alone_is_passed_on_once() {
    assert_eq!(count(libc::SIGINT, false), "INT=1 TERM=0");
    assert_eq!(count(libc::SIGTERM, false), "INT=0 TERM=1");
}

#[test]
fn run_dies_of_the_signal_that_killed_the_command() {
    for (signal, group) in [
        (libc::SIGINT, true),
        (libc::SIGINT, false),
        (libc::SIGTERM, true),
        (libc::SIGHUP, false),
    ] {
        let dir = Dir::new("signals-die");
        // The shell prints once it has its trap-free wait going; sleep dies
        // of the signal, and so does the shell (it has no handler).
        let mut child = start(&dir, &["sh", "-c", "echo ready; exec sleep 30"]);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        // Give exec a moment: the signal must find sleep, not sh.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pid = child.id() as i32;
        kill(if group { -pid } else { pid }, signal);
        let (status, _, err) = finish(child);
        // WIFSIGNALED with the command's signal, after the report.
        assert_eq!(
            status.signal(),
            Some(signal),
            "{signal} {group}: {status:?}\n{err}"
        );
        assert!(!status.core_dumped());
        assert!(err.contains("shmguard: SUMMARY:"), "{err}");
        // Nothing was logged: no log directory is kept, none is named.
        assert!(!err.contains("logs in "), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn a_shell_loop_stops_when_the_command_is_interrupted() {
    // bash stops a loop when a child dies of SIGINT and bash itself got
    // SIGINT (the terminal's Ctrl-C reaches the whole foreground group).
    let dir = Dir::new("signals-loop");
    let script = format!(
        "for i in 1 2; do {} run --lib {} -- sleep 5; echo next; done",
        shmguard().display(),
        library().display()
    );
    let Ok(mut child) = Command::new("bash")
        .args(["-c", &script])
        .env("TMPDIR", dir.path())
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        panic!("bash is needed for this test");
    };
    std::thread::sleep(std::time::Duration::from_millis(800));
    kill(-(child.id() as i32), libc::SIGINT);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !out.contains("next"),
        "the loop went on: {out:?} {status:?}"
    );
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let _ = std::fs::remove_dir_all(e.unwrap().path());
    }
}
