//! `shmguard run` on programs built with the compiler's sanitizers
//! (`-fsanitize=address`, `undefined`, `thread`, `leak`), alone and in a
//! tree with programs built without them: every program runs, the library
//! sees and logs its calls, the leak is reported, a sanitizer still finds
//! a real bug in the same run, the caller's `ASAN_OPTIONS` are kept, and no
//! sanitizer runtime is put into a process that was not built with it.
//!
//! The programs are compiled here from tests/helpers/sanitized.c with `$CC`
//! (gcc by default: its runtimes libasan, libubsan, libtsan and liblsan
//! come with it). Each test runs in a private IPC namespace
//! ([`serial`]) and removes the segments it made.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::*;

/// `sanitized.c` built with `-fsanitize=SANITIZER` (or without, for ""),
/// once per test binary.
fn program(sanitizer: &str) -> PathBuf {
    static BUILT: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let name = if sanitizer.is_empty() {
        "sanitized-plain".to_owned()
    } else {
        format!("sanitized-{sanitizer}")
    };
    let out = scratch().join(&name);
    if built.contains(&name) {
        return out;
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/sanitized.c");
    let tmp = scratch().join(format!("{name}.{}.tmp", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut c = Command::new(&cc);
    c.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O0"]);
    if !sanitizer.is_empty() {
        c.arg(format!("-fsanitize={sanitizer}"));
    }
    let status = c
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        status.success(),
        "{cc} -fsanitize={sanitizer} failed (is the compiler's {sanitizer} runtime installed?)"
    );
    std::fs::rename(&tmp, &out).unwrap();
    built.insert(name);
    out
}

/// `shmguard run --log-dir DIR -- ARGS` with `ASAN_OPTIONS` set to
/// `asan_options` (or unset); the segments it printed go to `guard`.
fn run(guard: &mut Segments, dir: &Path, asan_options: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(shmguard());
    c.arg("run")
        .arg("--lib")
        .arg(library())
        .arg("--log-dir")
        .arg(dir)
        .arg("--")
        .args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("SHMGUARD_OPTIONS");
    match asan_options {
        Some(o) => c.env("ASAN_OPTIONS", o),
        None => c.env_remove("ASAN_OPTIONS"),
    };
    let out = c.output().expect("run shmguard");
    guard.add_printed(&String::from_utf8_lossy(&out.stdout));
    out
}

/// The lines each process printed after its shmid: (shmid, runtimes,
/// preloaded or not), in the order they ran.
fn printed(out: &Output) -> Vec<(i32, String, String)> {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let mut seen = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let (Ok(id), Some(r), Some(p)) = (l.parse(), lines.get(i + 1), lines.get(i + 2)) {
            if r.starts_with("runtimes:") {
                seen.push((id, r.to_string(), p.to_string()));
            }
        }
    }
    seen
}

/// The text of every log in `dir`.
fn logs(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        all.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap_or_default());
    }
    all
}

/// The library logged `shmid`'s creation, and `run`'s report names it as
/// a leak.
fn seen_and_reported(out: &Output, dir: &Path, shmid: i32) {
    let logs = logs(dir);
    assert!(
        logs.lines()
            .any(|l| l.contains("\"shmget\"") && l.contains(&format!("\"ret\":{shmid}"))),
        "no shmget event for {shmid} in the logs:\n{logs}\n{}",
        show(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("leak") && l.contains(&format!("shmid={shmid} "))),
        "the leak of {shmid} is not reported:\n{}",
        show(out)
    );
}

fn no_link_order_abort(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("does not come first"),
        "ASan refused the preload:\n{}",
        show(out)
    );
}

/// An ASan program, then a plain one, from one shell: both run and are
/// preloaded, both leaks are reported, and only the ASan program has
/// ASan's runtime.
#[test]
fn asan_and_plain_programs_in_one_tree() {
    let asan = program("address");
    let plain = program("");
    let _serial = serial();
    let mut guard = Segments::default();
    let dir = Dir::new("san-mixed");
    let logs = dir.path().join("logs");
    let script = format!("{} && {}", asan.display(), plain.display());
    let out = run(&mut guard, &logs, None, &["sh", "-c", &script]);
    no_link_order_abort(&out);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let seen = printed(&out);
    assert_eq!(seen.len(), 2, "{}", show(&out));
    assert_eq!(seen[0].1, "runtimes: asan", "{}", show(&out));
    assert_eq!(seen[1].1, "runtimes:", "{}", show(&out));
    for (id, _, preloaded) in &seen {
        assert_eq!(preloaded, "preloaded", "{}", show(&out));
        seen_and_reported(&out, &logs, *id);
    }
}

/// ASan still finds a heap overflow in the same run, with the caller's
/// ASAN_OPTIONS in force (its exit code), and the leak the program made
/// before it died is still reported from its log.
#[test]
fn asan_finds_a_heap_overflow_under_run() {
    let asan = program("address");
    let _serial = serial();
    let mut guard = Segments::default();
    let dir = Dir::new("san-overflow");
    let logs = dir.path().join("logs");
    let out = run(
        &mut guard,
        &logs,
        Some("exitcode=42:verify_asan_link_order=1"),
        &[asan.to_str().unwrap(), "overflow"],
    );
    no_link_order_abort(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR: AddressSanitizer: heap-buffer-overflow"),
        "{}",
        show(&out)
    );
    assert_eq!(out.status.code(), Some(42), "{}", show(&out));
    let seen = printed(&out);
    assert_eq!(seen.len(), 1, "{}", show(&out));
    seen_and_reported(&out, &logs, seen[0].0);
}

/// UBSan, TSan and LSan programs in a tree with a plain one: each runs
/// preloaded with its own runtime only, and its leak is reported; UBSan
/// still reports undefined behaviour.
#[test]
fn ubsan_tsan_lsan_programs_in_one_tree() {
    let programs = ["undefined", "thread", "leak"].map(program);
    let plain = program("");
    let _serial = serial();
    let mut guard = Segments::default();
    let dir = Dir::new("san-others");
    let logs = dir.path().join("logs");
    let script = format!(
        "{} signed && {} && {} && {}",
        programs[0].display(),
        programs[1].display(),
        programs[2].display(),
        plain.display()
    );
    let out = run(&mut guard, &logs, None, &["sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runtime error: signed integer overflow"),
        "{}",
        show(&out)
    );
    let seen = printed(&out);
    let runtimes: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(
        runtimes,
        [
            "runtimes: ubsan",
            "runtimes: tsan",
            "runtimes: lsan",
            "runtimes:"
        ],
        "{}",
        show(&out)
    );
    for (id, _, preloaded) in &seen {
        assert_eq!(preloaded, "preloaded", "{}", show(&out));
        seen_and_reported(&out, &logs, *id);
    }
}
