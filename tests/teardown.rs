//! The exit check sees the program's whole teardown: a library whose
//! destructor removes a segment (c_tests/teardown_peer.c) is never reported
//! as leaking, whatever the link order, linked, preloaded or static; with
//! `exitcode=N` that destructor, the program's `atexit` handlers and stdio's
//! final flush still run before the process exits with N; and `dlopen` +
//! `dlclose` of libshmguard runs no check (and no exit) inside `dlclose`.
//!
//! Each program runs in an IPC namespace of its own (`unshare --ipc`), which
//! takes any segment left behind with it; the segments left at exit are
//! read from inside it.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>/`: this test binary lives in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

/// The newer of `target/<profile>/NAME` and `target/<profile>/deps/NAME`
/// (`cargo test` rebuilds the library in `deps/` without copying it up).
fn built(name: &str) -> PathBuf {
    let profile = profile_dir();
    let candidates = [profile.join(name), profile.join("deps").join(name)];
    let modified = |p: &PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter(|p| modified(p).is_some())
        .max_by_key(|p| modified(p))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not built in {}", profile.display()))
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn c_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c_tests")
}

fn cc(out: &Path, args: &[&str]) {
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let result = Command::new(&compiler)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-D_GNU_SOURCE",
            "-g",
            "-o",
        ])
        .arg(out)
        .args(args)
        .output()
        .expect("run the C compiler");
    assert!(
        result.status.success(),
        "{compiler} {args:?}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
}

struct Outcome {
    status: i32,
    stdout: String,
    stderr: String,
    /// shmids left in the program's IPC namespace after it exited.
    left: Vec<i32>,
}

/// Runs `argv` in an IPC namespace of its own, with `env`.
fn run(dir: &Path, env: &[(&str, &str)], argv: &[&str]) -> Outcome {
    let status_file = dir.join("status");
    let shm_file = dir.join("shm");
    let _ = fs::remove_file(&status_file);
    let _ = fs::remove_file(&shm_file);
    let output = Command::new("unshare")
        .args(["--ipc", "sh", "-c"])
        .arg(r#""$@"; echo "$?" > "$STATUS_FILE"; tail -n +2 /proc/sysvipc/shm > "$SHM_FILE""#)
        .arg("sh")
        .args(argv)
        .env_remove("SHMGUARD_OPTIONS")
        .env_remove("LD_PRELOAD")
        .env("STATUS_FILE", &status_file)
        .env("SHM_FILE", &shm_file)
        .envs(env.iter().copied())
        .output()
        .expect("unshare --ipc (util-linux; run as root)");
    assert!(
        output.status.success(),
        "unshare --ipc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = fs::read_to_string(&status_file)
        .expect("status")
        .trim()
        .parse()
        .expect("a status");
    let left = fs::read_to_string(&shm_file)
        .expect("the segment table")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect();
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        left,
    }
}

fn field(stdout: &str, key: &str) -> i32 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{key} N' line in {stdout:?}"))
}

fn leak_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(" shmguard: leak: "))
        .collect()
}

/// The two runs of teardown_prog for one way of building it.
fn check_program(dir: &Path, how: &str, env: &[(&str, &str)], exe: &str) {
    // No leak: the peer's destructor removes its segment after ours ran.
    let o = run(dir, env, &[exe]);
    let what = format!("{how}: status {}, stderr:\n{}", o.status, o.stderr);
    assert_eq!(o.status, 0, "{what}");
    assert!(!o.stderr.contains("shmguard:"), "{what}");
    assert!(!o.stderr.contains("FAIL"), "{what}");
    assert!(
        o.stdout.ends_with("buffered, no newline;atexit ran\n"),
        "{how}: stdout {:?}",
        o.stdout
    );
    assert!(o.left.is_empty(), "{how}: segments left {:?}", o.left);

    // exitcode=23 and a real leak: the status is 23, only the real leak is
    // reported, and the peer's destructor, the atexit handler and the final
    // flush all ran first.
    let mut env23 = env.to_vec();
    env23.push(("SHMGUARD_OPTIONS", "exitcode=23"));
    let o = run(dir, &env23, &[exe, "leak"]);
    let what = format!(
        "{how} exitcode=23: status {}, stderr:\n{}",
        o.status, o.stderr
    );
    assert_eq!(o.status, 23, "{what}");
    let leaked = field(&o.stdout, "leaked ");
    let peer = field(&o.stdout, "shmid ");
    let leaks = leak_lines(&o.stderr);
    assert_eq!(leaks.len(), 1, "{what}");
    assert!(
        leaks[0].contains(&format!("segment shmid={leaked} ")),
        "{what}"
    );
    assert!(!o.stderr.contains("FAIL"), "{what}");
    assert!(
        o.stdout.ends_with("buffered, no newline;atexit ran\n"),
        "{how}: stdout {:?}",
        o.stdout
    );
    assert_eq!(
        o.left,
        vec![leaked],
        "{how}: the peer's segment {peer} must be gone, the leaked one left"
    );
}

#[test]
fn the_exit_check_sees_every_destructor_and_atexit_handler() {
    let dir = Dir(std::env::temp_dir().join(format!("shmguard-teardown-{}", std::process::id())));
    let d = &dir.0;
    let _ = fs::remove_dir_all(d);
    fs::create_dir_all(d.join("lib")).unwrap();
    let lib = d.join("lib");
    fs::copy(built("libshmguard.so"), lib.join("libshmguard.so")).unwrap();
    symlink("libshmguard.so", lib.join("libshmguard.so.0")).unwrap();
    let so = lib.join("libshmguard.so");
    let so = so.to_str().unwrap();
    let src = c_tests();
    let prog = src.join("teardown_prog.c");
    let peer = src.join("teardown_peer.c");
    let (prog, peer) = (prog.to_str().unwrap(), peer.to_str().unwrap());
    let libdir = lib.to_str().unwrap();
    let l_flag = format!("-L{libdir}");
    let rpath = format!("-Wl,-rpath,{libdir}");
    cc(
        &lib.join("libpeer.so"),
        &["-shared", "-fPIC", "-Wl,-soname,libpeer.so", peer],
    );

    let exe = |name: &str| d.join(name).to_str().unwrap().to_owned();
    // Linked, the peer before and after libshmguard.
    cc(
        &d.join("peer_first"),
        &[prog, &l_flag, "-lpeer", "-lshmguard", &rpath],
    );
    check_program(d, "linked, -lpeer -lshmguard", &[], &exe("peer_first"));
    cc(
        &d.join("shmguard_first"),
        &[prog, &l_flag, "-lshmguard", "-lpeer", &rpath],
    );
    check_program(d, "linked, -lshmguard -lpeer", &[], &exe("shmguard_first"));
    // Preloaded.
    cc(&d.join("plain"), &[prog, &l_flag, "-lpeer", &rpath]);
    check_program(d, "preloaded", &[("LD_PRELOAD", so)], &exe("plain"));
    // Static, the peer's object before and after libshmguard.a.
    let archive = built("libshmguard.a");
    let archive = archive.to_str().unwrap();
    let static_libs = ["-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];
    let mut args = vec!["-static", prog, peer, archive];
    args.extend(static_libs);
    cc(&d.join("static_peer_first"), &args);
    check_program(d, "static, peer first", &[], &exe("static_peer_first"));
    let mut args = vec!["-static", prog, archive, peer];
    args.extend(static_libs);
    cc(&d.join("static_shmguard_first"), &args);
    check_program(
        d,
        "static, libshmguard.a first",
        &[],
        &exe("static_shmguard_first"),
    );
}

#[test]
fn dlclose_runs_no_exit_check() {
    let dir = Dir(std::env::temp_dir().join(format!("shmguard-dlclose-{}", std::process::id())));
    let d = &dir.0;
    let _ = fs::remove_dir_all(d);
    fs::create_dir_all(d).unwrap();
    let so = d.join("libshmguard.so");
    fs::copy(built("libshmguard.so"), &so).unwrap();
    let exe = d.join("dlopen");
    cc(
        &exe,
        &[
            c_tests().join("teardown_dlopen.c").to_str().unwrap(),
            "-ldl",
        ],
    );
    let o = run(
        d,
        &[("SHMGUARD_OPTIONS", "exitcode=23")],
        &[exe.to_str().unwrap(), so.to_str().unwrap()],
    );
    let what = format!(
        "status {}, stdout {:?}, stderr:\n{}",
        o.status, o.stdout, o.stderr
    );
    // dlclose returned (no exit inside it), then the check ran at exit.
    assert!(o.stdout.contains("after dlclose\n"), "{what}");
    let leaked = field(&o.stdout, "leaked ");
    assert_eq!(o.status, 23, "{what}");
    let leaks = leak_lines(&o.stderr);
    assert_eq!(leaks.len(), 1, "{what}");
    assert!(
        leaks[0].contains(&format!("segment shmid={leaked} ")),
        "{what}"
    );
}
