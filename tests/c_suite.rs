//! shmguard's C test suite (`c_tests/`) as a `cargo test`: the same programs,
//! modes and checks as `c_tests/run.sh`, against the `libshmguard.so` that
//! cargo built next to this test (`target/<profile>/`).
//!
//! - `t_*.c`: differential programs, run plain (glibc, the reference), linked
//!   with `-lshmguard` and plain with `LD_PRELOAD`; each run must exit 0 and
//!   the linked and preloaded traces must equal the plain one byte for byte.
//! - `x_api.c`: the extension API, linked only.
//! - `x_leak.c SCENARIO`: the leak report, linked and preloaded; stderr and
//!   the exit status are checked here.
//! - `x_policy.c`, `x_rules.c`, `x_help.c`, `x_guard.c`, `x_fault.c`, `x_stacks.c` (the options) and
//!   `x_stress_churn.c`, `x_stress_threads.c`, `x_stress_signals.c`,
//!   `x_stress_exec.c`, `x_hostile.c`, `x_log.c` (load, signals, fork/exec,
//!   hostile environments, the audit log under attack), `x_priv.c` (privileged
//!   processes, start-up races, escaped output), `x_safety.c` (how a
//!   program dies, signal handlers, guard page budgets), `x_suppress.c`
//!   (`suppressions=FILE`): one run per entry
//!   of [`OPTION_RUNS`] (program, argument, `SHMGUARD_OPTIONS`), linked and
//!   preloaded; each program
//!   checks itself (running itself again where it needs its own stderr or
//!   audit log), and a run passes if it exits 0 with nothing on stderr.
//!
//! Every program links the helpers of `check.c` (and `stress.c` for the
//! `x_stress_*` programs), compiled once per run with the programs' flags
//! and put before `-lshmguard`.
//!
//! Every program runs with a timeout, one at a time (the table of segments
//! in `/proc/sysvipc/shm` is compared before and after each: a new segment
//! whose creator is gone is a leak, a failure, and is removed), in an IPC
//! namespace of the suite's own when the kernel allows it; runs of the
//! suite on one machine wait for each other (`/tmp/shmguard-c-suite.lock`,
//! shared with `run.sh`). All failures are collected and reported together
//! at the end.
//!
//! Environment: `CC`/`CFLAGS` as the `cc` crate reads them; `SHMGUARD_MODES`
//! (default "plain linked preloaded"); `SHMGUARD_TEST_TIMEOUT` (seconds per
//! program, default 60); `SHMGUARD_SUITE` ("test", the default, or
//! "stress": only the long runs of [`STRESS_RUNS`], each phase
//! `SHMGUARD_STRESS_SECONDS` long); `SHMGUARD_PRELOAD_FIRST` (a library put
//! before libshmguard.so in `LD_PRELOAD`); `SHMGUARD_WRAPPER` (a command that
//! runs each program, e.g. valgrind); `SHMGUARD_SKIP` (runs not to make:
//! program names or `PROGRAM:ARGUMENT`), as in `run.sh`.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Serialises the suite against any other test of this binary: the segment
/// snapshots must not see another test's segments.
static SUITE_LOCK: Mutex<()> = Mutex::new(());

/// The lock `c_tests/run.sh` takes too: one run of the suite at a time on
/// this machine.
const MACHINE_LOCK: &str = "/tmp/shmguard-c-suite.lock";

/// Holds the machine-wide lock until dropped (the file closes).
fn lock_machine() -> fs::File {
    let file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(MACHINE_LOCK)
        .expect("open the suite's lock file");
    // SAFETY: flock on a descriptor we own; it is released when `file` closes.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock {MACHINE_LOCK}");
    file
}

const BASE_FLAGS: &[&str] = &[
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-D_GNU_SOURCE",
    "-pthread",
    "-g",
];

const SCENARIOS: &[&str] = &[
    "leaky",
    "exitcode23",
    "exitcode_unset",
    "clean",
    "atexit_cleanup",
    "dtor_cleanup",
    "underscore_exit",
    "raw_removed",
    "fork_inherit",
    "child_leak",
    "note",
    "leak_check_off",
    "unknown_option",
    "count",
    "many",
];

/// The option programs' runs: program, argument ("" for none) and
/// `SHMGUARD_OPTIONS` ("" for unset), as in `run.sh`'s `option_runs`.
const OPTION_RUNS: &[(&str, &str, &str)] = &[
    ("x_policy", "strict", "policy=strict"),
    ("x_policy", "audit", ""),
    ("x_rules", "strict", "policy=strict"),
    ("x_rules", "audit", ""),
    ("x_help", "help", ""),
    ("x_help", "comma", ""),
    ("x_guard", "", "guard_pages=1"),
    ("x_fault", "nth", "fault=shmget@2=ENOSPC"),
    ("x_fault", "twice", "fault=shmget@1=ENOSPC,shmget@3=ENOMEM"),
    ("x_fault", "fork", "fault=shmget@2=ENOSPC"),
    (
        "x_fault",
        "multi",
        "fault=shmat@1=ENOMEM,shmdt@2=EINVAL,shmctl@1=EIDRM,ftok@1=EACCES",
    ),
    ("x_fault", "invalid", ""),
    ("x_fault", "panic", ""),
    ("x_stacks", "", "stacks=1"),
    ("x_guardstack", "", "guard_pages=1:stacks=1"),
    ("x_stress_churn", "churn", ""),
    ("x_stress_churn", "churn_log", ""),
    ("x_stress_signals", "signals", ""),
    ("x_stress_signals", "signals_log", ""),
    ("x_stress_signals", "signals_fork", ""),
    ("x_stress_exec", "exec_log", ""),
    ("x_stress_threads", "reuse+stacks", "stacks=1"),
    ("x_stress_threads", "fork_busy+stacks", "stacks=1"),
    ("x_hostile", "late_calls", ""),
    ("x_hostile", "late_log", ""),
    ("x_hostile", "close_fds", ""),
    ("x_hostile", "close_all", ""),
    ("x_hostile", "dup2_fds", ""),
    ("x_hostile", "privdrop", ""),
    ("x_hostile", "log_unwritable", ""),
    ("x_hostile", "max_map", ""),
    ("x_hostile", "max_map+guard", "guard_pages=1"),
    ("x_hostile", "options", ""),
    ("x_priv", "secure", ""),
    ("x_priv", "preinit", "policy=strict"),
    ("x_priv", "fork_startup", "bogus=1"),
    ("x_priv", "signal_startup", "bogus=1"),
    ("x_priv", "escape", ""),
    ("x_priv", "seccomp", ""),
    ("x_log", "outside", ""),
    ("x_log", "pidns", ""),
    ("x_log", "forkraw", ""),
    ("x_log", "exec_chain", ""),
    ("x_log", "fsize", ""),
    ("x_log", "taken", ""),
    ("x_log", "aslimit", ""),
    ("x_log", "ext2", ""),
    ("x_safety", "segv_raise", "guard_pages=1"),
    ("x_safety", "segv_kill", "guard_pages=1"),
    ("x_safety", "segv_siginfo", "guard_pages=1"),
    ("x_safety", "segv_ign", "guard_pages=1"),
    ("x_safety", "ext_in_handler", ""),
    ("x_safety", "guard_unmapped", "guard_pages=1"),
    ("x_safety", "guard_map_count", "guard_pages=1"),
    ("x_safety", "raw_fork", ""),
    ("x_suppress", "match", ""),
    ("x_suppress", "command", ""),
    ("x_suppress", "badline", ""),
    ("x_suppress", "fifo", ""),
];

/// The long runs (`SHMGUARD_SUITE=stress`), as in `run.sh`'s `stress_runs`:
/// every stress scenario with the default options, the log, guard pages and
/// call stacks.
const STRESS_RUNS: &[(&str, &str, &str)] = &[
    ("x_stress_churn", "churn", ""),
    ("x_stress_churn", "churn_log", ""),
    ("x_stress_churn", "churn+guard", "guard_pages=1"),
    ("x_stress_churn", "churn+stacks", "stacks=1"),
    ("x_stress_signals", "signals", ""),
    ("x_stress_signals", "signals_log", ""),
    ("x_stress_signals", "signals+guard", "guard_pages=1"),
    ("x_stress_signals", "signals_fork", ""),
    ("x_stress_threads", "reuse", ""),
    ("x_stress_threads", "reuse+stacks", "stacks=1"),
    ("x_stress_threads", "fork_busy", ""),
    ("x_stress_threads", "fork_busy+stacks", "stacks=1"),
];

/// The stress programs (`SHMGUARD_SUITE=stress` builds only these).
const STRESS_PROGRAMS: &[&str] = &[
    "x_stress_churn",
    "x_stress_threads",
    "x_stress_signals",
    "x_stress_exec",
];

/// The option programs, in the order they are built.
const OPTION_PROGRAMS: &[&str] = &[
    "x_policy",
    "x_rules",
    "x_help",
    "x_guard",
    "x_fault",
    "x_stacks",
    "x_guardstack",
    "x_stress_churn",
    "x_stress_threads",
    "x_stress_signals",
    "x_stress_exec",
    "x_hostile",
    "x_priv",
    "x_log",
    "x_safety",
    "x_suppress",
];

/// Whether `SHMGUARD_SKIP` names the run `name` (or its program); says so.
fn skipped(name: &str, mode: Mode) -> bool {
    let skip = std::env::var("SHMGUARD_SKIP").unwrap_or_default();
    let program = name.split(':').next().unwrap_or(name);
    let hit = skip.split_whitespace().any(|w| w == name || w == program);
    if hit {
        println!("SKIP {name} {} (SHMGUARD_SKIP)", mode.name());
    }
    hit
}

/// Whether `SHMGUARD_SUITE=stress` asks for the long runs only.
fn stress_suite() -> bool {
    match std::env::var("SHMGUARD_SUITE").as_deref() {
        Ok("stress") => true,
        Ok("test") | Err(_) => false,
        Ok(other) => panic!("SHMGUARD_SUITE must be test or stress, not {other}"),
    }
}

/// The helpers every program links (`check.c`), and `stress.c` for the
/// `x_stress_*` programs, as in `run.sh`.
const HELPERS: &[&str] = &["check", "stress"];

/// The helpers program `name` links.
fn helpers_of(name: &str) -> &'static [&'static str] {
    if name.starts_with("x_stress_") {
        HELPERS
    } else {
        &HELPERS[..1]
    }
}

/// Flags a program needs after the suite's own (x_stacks checks the
/// file:line of its frames).
fn option_flags(program: &str) -> Vec<OsString> {
    match program {
        "x_stacks" | "x_guardstack" | "x_suppress" => vec!["-O0".into(), "-g".into()],
        _ => Vec::new(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Plain,
    Linked,
    Preloaded,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Linked => "linked",
            Mode::Preloaded => "preloaded",
        }
    }
}

/// How a program ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum End {
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

impl End {
    fn describe(self) -> String {
        match self {
            End::Exited(c) => format!("exit status {c}"),
            End::Signaled(s) => format!("killed by signal {s}"),
            End::TimedOut => "timed out".to_string(),
        }
    }
}

struct Run {
    end: End,
    stdout: String,
    stderr: String,
    /// Segments left behind by the run (already removed).
    leaked: Vec<String>,
}

struct Suite {
    root: PathBuf,
    lib: PathBuf,
    bin: PathBuf,
    compiler: cc::Tool,
    timeout: Duration,
    passed: usize,
    failures: Vec<String>,
}

/// `target/<profile>/`: this test binary lives in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    let dir = deps.parent().expect("profile dir").to_path_buf();
    if dir.join("libshmguard.so").exists() || dir.join("deps/libshmguard.so").exists() {
        return dir;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("debug")
}

/// The library under test: `target/<profile>/libshmguard.so`, or the copy in
/// `deps/` when that one is newer (`cargo test` rebuilds the cdylib there
/// without copying it up; only `cargo build` does).
fn library_path(profile: &Path) -> PathBuf {
    let candidates = [
        profile.join("libshmguard.so"),
        profile.join("deps").join("libshmguard.so"),
    ];
    let modified = |p: &PathBuf| fs::metadata(p).and_then(|m| m.modified()).ok();
    candidates
        .iter()
        .filter(|p| modified(p).is_some())
        .max_by_key(|p| modified(p))
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

fn target_triple() -> String {
    format!("{}-unknown-linux-gnu", std::env::consts::ARCH)
}

/// `shmid cpid` of every segment in the kernel.
fn snapshot() -> Vec<(i32, i32)> {
    let text = fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, f.get(4)?.parse().ok()?))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn remove_segment(id: i32) {
    // SAFETY: IPC_RMID ignores the buffer; a stale id just fails.
    unsafe {
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}

/// Segments new since `before` whose creator is gone: described, removed.
fn leak_check(before: &[(i32, i32)]) -> Vec<String> {
    let mut leaked = Vec::new();
    for (id, cpid) in snapshot() {
        if !before.iter().any(|(b, _)| *b == id) && !alive(cpid) {
            leaked.push(format!(
                "leaked segment shmid={id} (creator pid {cpid} is gone)"
            ));
            remove_segment(id);
        }
    }
    leaked
}

fn kill_group(child: &Child) {
    let Ok(pgid) = i32::try_from(child.id()) else {
        return;
    };
    // SAFETY: the child leads its own process group (process_group(0)); we
    // only signal that group, which we started.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn read_in_thread(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn lines_of(text: &str) -> Vec<&str> {
    text.lines().collect()
}

/// A short line diff of two traces.
fn trace_diff(reference: &str, other: &str) -> String {
    let (a, b) = (lines_of(reference), lines_of(other));
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x != y && shown < 40 {
            if let Some(x) = x {
                out.push_str(&format!("    -{x}\n"));
            }
            if let Some(y) = y {
                out.push_str(&format!("    +{y}\n"));
            }
            shown += 1;
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .take(40)
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Values printed by x_leak on stdout as `KEY VALUE` lines.
fn field<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .collect()
}

/// Whether `line` has `shmid=ID` (or ID) ending at a non-digit.
fn names_id(text: &str, pattern: &str) -> bool {
    let mut rest = text;
    while let Some(pos) = rest.find(pattern) {
        let after = &rest[pos + pattern.len()..];
        if !after.starts_with(|c: char| c.is_ascii_digit()) {
            return true;
        }
        rest = &rest[pos + 1..];
    }
    false
}

/// The leak report of `pid` names exactly `segs` and `atts`, every line has
/// the pid's prefix, the last line is the SUMMARY.
fn check_report(stderr: &str, pid: &str, segs: &[&str], atts: &[&str]) -> Option<String> {
    let prefix = format!("=={pid}== shmguard: ");
    let lines = lines_of(stderr);
    if let Some(bad) = lines.iter().find(|l| !l.starts_with(&prefix)) {
        return Some(format!(
            "a stderr line does not begin with '{prefix}': {bad}"
        ));
    }
    let leak_lines: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix)?.strip_prefix("leak: "))
        .collect();
    for (kind, ids) in [("segment", segs), ("attachment", atts)] {
        for id in ids {
            let want = format!("{kind} shmid={id}");
            let n = leak_lines
                .iter()
                .filter(|l| {
                    l.starts_with(&want)
                        && !l[want.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
                .count();
            if n != 1 {
                return Some(format!("{n} leak lines for {kind} shmid={id}, expected 1"));
            }
        }
    }
    if leak_lines.len() != segs.len() + atts.len() {
        return Some(format!(
            "expected {} leak lines, found {}",
            segs.len() + atts.len(),
            leak_lines.len()
        ));
    }
    match lines.last() {
        Some(l) if l.starts_with(&format!("{prefix}SUMMARY: ")) => None,
        _ => Some(format!("the last line is not '{prefix}SUMMARY: ...'")),
    }
}

/// Until process `pid` has ended (10 s at most).
fn wait_gone(pid: &str) {
    let Ok(pid) = pid.parse::<i32>() else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

/// What scenario `s` must produce; the first problem found.
fn check_scenario(s: &str, run: &Run) -> Option<String> {
    let want = if s == "exitcode23" { 23 } else { 0 };
    if run.end != End::Exited(want) {
        return Some(format!(
            "{}, expected exit status {want}",
            run.end.describe()
        ));
    }
    let Some(pid) = field(&run.stdout, "pid").first().copied() else {
        return Some("no 'pid N' line on stdout".to_string());
    };
    let err = run.stderr.as_str();
    match s {
        "leaky" | "exitcode23" | "exitcode_unset" => check_report(
            err,
            pid,
            &field(&run.stdout, "segment"),
            &field(&run.stdout, "attachment"),
        ),
        "child_leak" => match field(&run.stdout, "child").first() {
            None => Some("no 'child N' line on stdout".to_string()),
            Some(child) => check_report(err, child, &field(&run.stdout, "child_segment"), &[]),
        },
        "note" => {
            let prefix = format!("=={pid}== shmguard: ");
            let seg = field(&run.stdout, "note_segment")
                .first()
                .copied()
                .unwrap_or("?")
                .to_string();
            let lines = lines_of(err);
            if let Some(bad) = lines.iter().find(|l| !l.starts_with(&prefix)) {
                Some(format!(
                    "a stderr line does not begin with '{prefix}': {bad}"
                ))
            } else if lines.iter().any(|l| l.contains("leak: ")) {
                Some("a leak line for a segment another process still attaches".to_string())
            } else if !lines.iter().any(|l| {
                l.strip_prefix(&prefix)
                    .and_then(|r| r.strip_prefix("note: "))
                    .is_some_and(|r| names_id(r, &seg))
            }) {
                Some(format!("no '{prefix}note: ...' line naming shmid {seg}"))
            } else {
                None
            }
        }
        "unknown_option" => {
            let lines = lines_of(err);
            if lines.len() != 1 || !lines[0].contains("bogus") {
                Some("expected exactly one warning line naming 'bogus' on stderr".to_string())
            } else {
                None
            }
        }
        _ if !err.is_empty() => Some("unexpected output on stderr".to_string()),
        _ => None,
    }
}

impl Suite {
    fn new() -> Suite {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let profile = profile_dir();
        let so = library_path(&profile);
        assert!(
            so.exists(),
            "{} is missing: build the library first (cargo build)",
            so.display()
        );
        let out = profile.join("c_suite");
        let (lib, bin, log) = (out.join("lib"), out.join("bin"), out.join("log"));
        for d in [&lib, &bin, &log] {
            fs::create_dir_all(d).expect("create output dir");
        }
        // Our own lib dir: a copy of the library and the SONAME symlink.
        let _ = fs::remove_file(lib.join("libshmguard.so"));
        let _ = fs::remove_file(lib.join("libshmguard.so.0"));
        fs::copy(&so, lib.join("libshmguard.so")).expect("copy libshmguard.so");
        symlink("libshmguard.so", lib.join("libshmguard.so.0")).expect("symlink");

        let triple = target_triple();
        let compiler = cc::Build::new()
            .opt_level(0)
            .debug(true)
            .host(&triple)
            .target(&triple)
            .cargo_metadata(false)
            .cargo_warnings(false)
            .warnings(false)
            .extra_warnings(false)
            .get_compiler();
        let timeout = std::env::var("SHMGUARD_TEST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60);
        Suite {
            root,
            lib,
            bin,
            compiler,
            timeout: Duration::from_secs(timeout),
            passed: 0,
            failures: Vec::new(),
        }
    }

    fn c_tests(&self) -> PathBuf {
        self.root.join("c_tests")
    }

    fn pass(&mut self, name: &str, mode: Mode) {
        println!("PASS {name} {}", mode.name());
        self.passed += 1;
    }

    fn fail(&mut self, name: &str, mode: Mode, reason: &str, detail: &str) {
        let mut msg = format!("FAIL {name} {}: {reason}\n", mode.name());
        msg.push_str(detail);
        if !msg.ends_with('\n') {
            msg.push('\n');
        }
        print!("{msg}");
        self.failures.push(msg);
    }

    fn linked_args(&self) -> Vec<OsString> {
        let lib = self.lib.display();
        vec![
            format!("-L{lib}").into(),
            "-lshmguard".into(),
            format!("-Wl,-rpath,{lib}").into(),
        ]
    }

    /// Compiles the helpers once (`bin/NAME.o`); one failure for each that
    /// does not compile (the programs that need it then fail to link).
    fn build_helpers(&mut self) {
        let dir = self.c_tests();
        for helper in HELPERS {
            let obj = self.bin.join(format!("{helper}.o"));
            let _ = fs::remove_file(&obj);
            let args: Vec<OsString> = vec!["-c".into(), dir.join(format!("{helper}.c")).into()];
            if let Err(e) = self.build(&obj, &args) {
                let msg = format!("FAIL {helper}.c: does not compile\n{}", indent(&e));
                print!("{msg}");
                self.failures.push(msg);
            }
        }
    }

    /// `src`, then the helper objects program `name` links: the start of
    /// its compiler arguments (before `-lshmguard`).
    fn sources(&self, name: &str, src: OsString) -> Vec<OsString> {
        let mut args = vec![src];
        for helper in helpers_of(name) {
            args.push(self.bin.join(format!("{helper}.o")).into());
        }
        args
    }

    /// Compiles with the suite's flags; the compiler's output on failure.
    fn build(&self, output: &Path, args: &[OsString]) -> Result<(), String> {
        let mut cmd = self.compiler.to_command();
        cmd.args(BASE_FLAGS)
            .arg(format!("-I{}", self.c_tests().display()))
            .arg(format!("-I{}", self.root.join("include").display()))
            .arg("-o")
            .arg(output)
            .args(args);
        match cmd.output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!("cannot run the C compiler: {e}")),
        }
    }

    /// Runs `exe args` in `mode` with `extra_env`, under the timeout, with
    /// the segment snapshots around it. `after` runs before the leak check
    /// (to remove segments leaked on purpose).
    fn run(
        &self,
        exe: &Path,
        args: &[&str],
        mode: Mode,
        extra_env: &[(&str, String)],
        after: impl FnOnce(&str, &str),
    ) -> Run {
        let before = snapshot();
        let wrapper = std::env::var("SHMGUARD_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(first) => {
                let mut c = Command::new(first);
                c.args(words).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(args)
            .env_remove("SHMGUARD_OPTIONS")
            .env_remove("SHMGUARD_EXPECT")
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // The run's name for a wrapper's logs, as run.sh names its logs.
        let stem = exe.file_stem().unwrap_or_default().to_string_lossy();
        let mut label = stem.into_owned();
        for a in args {
            label.push('.');
            label.push_str(a);
        }
        label.push('.');
        label.push_str(mode.name());
        cmd.env("SHMGUARD_RUN", label);
        if mode != Mode::Plain {
            cmd.env("SHMGUARD_EXPECT", "1");
        }
        if mode == Mode::Preloaded {
            let mut preload = OsString::new();
            if let Some(first) =
                std::env::var_os("SHMGUARD_PRELOAD_FIRST").filter(|f| !f.is_empty())
            {
                preload.push(first);
                preload.push(":");
            }
            preload.push(self.lib.join("libshmguard.so"));
            cmd.env("LD_PRELOAD", preload);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Run {
                    end: End::Exited(127),
                    stdout: String::new(),
                    stderr: format!("cannot start {}: {e}", exe.display()),
                    leaked: Vec::new(),
                };
            }
        };
        let out_rx = read_in_thread(child.stdout.take().expect("stdout"));
        let err_rx = read_in_thread(child.stderr.take().expect("stderr"));
        let deadline = Instant::now() + self.timeout;
        let end = loop {
            match child.try_wait() {
                Ok(Some(st)) => {
                    break match (st.code(), st.signal()) {
                        (Some(c), _) => End::Exited(c),
                        (None, Some(s)) => End::Signaled(s),
                        _ => End::Exited(-1),
                    };
                }
                Ok(None) if Instant::now() >= deadline => {
                    kill_group(&child);
                    let _ = child.wait();
                    break End::TimedOut;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(_) => break End::Exited(-1),
            }
        };
        // Children that outlive the program keep the pipes open: wait for
        // them too, within the same deadline.
        let collect = |rx: mpsc::Receiver<Vec<u8>>| {
            let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
            match rx.recv_timeout(left) {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(_) => {
                    kill_group(&child);
                    rx.recv_timeout(Duration::from_secs(5))
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default()
                }
            }
        };
        let stdout = collect(out_rx);
        let stderr = collect(err_rx);
        after(&stdout, &stderr);
        let leaked = leak_check(&before);
        Run {
            end,
            stdout,
            stderr,
            leaked,
        }
    }

    fn modes() -> Vec<Mode> {
        let wanted = std::env::var("SHMGUARD_MODES")
            .unwrap_or_else(|_| "plain linked preloaded".to_string());
        [Mode::Plain, Mode::Linked, Mode::Preloaded]
            .into_iter()
            .filter(|m| wanted.split_whitespace().any(|w| w == m.name()))
            .collect()
    }

    fn differential(&mut self) {
        let dir = self.c_tests();
        let mut programs: Vec<String> = fs::read_dir(&dir)
            .expect("read c_tests")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("t_") && n.ends_with(".c"))
            .map(|n| n.trim_end_matches(".c").to_string())
            .collect();
        programs.sort();
        assert!(!programs.is_empty(), "no c_tests/t_*.c programs");

        let ctor_so = self.bin.join("lib_ctor.so");
        let ctor_built = self.build(
            &ctor_so,
            &[
                "-shared".into(),
                "-fPIC".into(),
                "-Wl,-soname,lib_ctor.so".into(),
                dir.join("lib_ctor.c").into(),
            ],
        );
        let modes = Suite::modes();
        for name in programs {
            let src: OsString = dir.join(format!("{name}.c")).into();
            let mut extra: Vec<OsString> = Vec::new();
            if name == "t_ctor" {
                if let Err(e) = &ctor_built {
                    for &m in &modes {
                        self.fail(&name, m, "lib_ctor.so did not compile", &indent(e));
                    }
                    continue;
                }
                extra.push(ctor_so.clone().into());
                extra.push(format!("-Wl,-rpath,{}", self.bin.display()).into());
            }
            let plain = self.bin.join(format!("{name}.plain"));
            let linked = self.bin.join(format!("{name}.linked"));
            let mut plain_args = self.sources(&name, src.clone());
            plain_args.extend(extra.iter().cloned());
            let mut linked_args = self.sources(&name, src.clone());
            linked_args.extend(self.linked_args());
            linked_args.extend(extra.iter().cloned());
            let plain_built = self.build(&plain, &plain_args);
            let linked_built = if modes.contains(&Mode::Linked) {
                self.build(&linked, &linked_args)
            } else {
                Err(String::new())
            };

            let mut reference: Option<String> = None;
            for &mode in &modes {
                if skipped(&name, mode) {
                    continue;
                }
                let (exe, built) = match mode {
                    Mode::Linked => (&linked, &linked_built),
                    _ => (&plain, &plain_built),
                };
                if let Err(e) = built {
                    let e = indent(e);
                    self.fail(&name, mode, "does not compile", &e);
                    continue;
                }
                let run = self.run(exe, &[], mode, &[], |_, _| {});
                let mut reasons = Vec::new();
                let mut detail = String::new();
                if run.end != End::Exited(0) {
                    reasons.push(run.end.describe());
                    detail.push_str(&indent(&run.stderr));
                } else if mode != Mode::Plain
                    && (run.stderr.contains("shmguard: leak:")
                        || run.stderr.contains("shmguard: SUMMARY:"))
                {
                    reasons.push("unexpected leak report on stderr".to_string());
                    detail.push_str(&indent(&run.stderr));
                }
                match &reference {
                    None => reference = Some(run.stdout.clone()),
                    Some(r) if *r != run.stdout => {
                        reasons.push("trace differs from the reference mode".to_string());
                        detail.push_str(&trace_diff(r, &run.stdout));
                    }
                    Some(_) => {}
                }
                if !run.leaked.is_empty() {
                    reasons.push("leaked segments".to_string());
                    detail.push_str(&indent(&run.leaked.join("\n")));
                }
                if reasons.is_empty() {
                    self.pass(&name, mode);
                } else {
                    self.fail(&name, mode, &reasons.join("; "), &detail);
                }
            }
        }
    }

    fn extensions(&mut self) {
        let modes: Vec<Mode> = Suite::modes()
            .into_iter()
            .filter(|m| *m != Mode::Plain)
            .collect();
        let dir = self.c_tests();

        // x_api: linked only (it calls the API directly).
        if modes.contains(&Mode::Linked) && !skipped("x_api", Mode::Linked) {
            let exe = self.bin.join("x_api.linked");
            let mut args = self.sources("x_api", dir.join("x_api.c").into());
            args.extend(self.linked_args());
            match self.build(&exe, &args) {
                Err(e) => self.fail("x_api", Mode::Linked, "does not compile", &indent(&e)),
                Ok(()) => {
                    let run = self.run(&exe, &[], Mode::Linked, &[], |_, _| {});
                    let mut reasons = Vec::new();
                    if run.end != End::Exited(0) {
                        reasons.push(run.end.describe());
                    } else if !run.stderr.is_empty() {
                        reasons.push("unexpected output on stderr".to_string());
                    }
                    if !run.leaked.is_empty() {
                        reasons.push("leaked segments".to_string());
                    }
                    if reasons.is_empty() {
                        self.pass("x_api", Mode::Linked);
                    } else {
                        let detail = indent(&format!("{}{}", run.stderr, run.leaked.join("\n")));
                        self.fail("x_api", Mode::Linked, &reasons.join("; "), &detail);
                    }
                }
            }
        }

        // x_leak: linked and preloaded, one run per scenario.
        let plain = self.bin.join("x_leak.plain");
        let linked = self.bin.join("x_leak.linked");
        let src: OsString = dir.join("x_leak.c").into();
        let plain_built = self.build(&plain, &self.sources("x_leak", src.clone()));
        let mut largs = self.sources("x_leak", src);
        largs.extend(self.linked_args());
        let linked_built = self.build(&linked, &largs);
        for &mode in &modes {
            let (exe, built) = match mode {
                Mode::Linked => (&linked, &linked_built),
                _ => (&plain, &plain_built),
            };
            for s in SCENARIOS {
                let name = format!("x_leak:{s}");
                if skipped(&name, mode) {
                    continue;
                }
                if let Err(e) = built {
                    let e = indent(e);
                    self.fail(&name, mode, "does not compile", &e);
                    continue;
                }
                let (arg, env): (&str, Vec<(&str, String)>) = match *s {
                    "exitcode23" => (
                        "exitcode",
                        vec![("SHMGUARD_OPTIONS", "exitcode=23".to_string())],
                    ),
                    "exitcode_unset" => ("exitcode", vec![]),
                    "leak_check_off" => (s, vec![("SHMGUARD_OPTIONS", "leak_check=0".to_string())]),
                    "unknown_option" => (s, vec![("SHMGUARD_OPTIONS", "bogus=1".to_string())]),
                    _ => (s, vec![]),
                };
                let run = self.run(exe, &[arg], mode, &env, |stdout, _| {
                    if let Some(child) = field(stdout, "child").first() {
                        wait_gone(child);
                    }
                    // The segments leaked on purpose are ours to remove.
                    for key in ["segment", "child_segment", "note_segment"] {
                        for id in field(stdout, key) {
                            if let Ok(id) = id.parse() {
                                remove_segment(id);
                            }
                        }
                    }
                });
                let mut reasons: Vec<String> = check_scenario(s, &run).into_iter().collect();
                if !run.leaked.is_empty() {
                    reasons.push("leaked segments".to_string());
                }
                if reasons.is_empty() {
                    self.pass(&name, mode);
                } else {
                    let detail = indent(&format!("{}{}", run.stderr, run.leaked.join("\n")));
                    self.fail(&name, mode, &reasons.join("; "), &detail);
                }
            }
        }
    }
}

impl Suite {
    fn option_programs(&mut self) {
        let modes: Vec<Mode> = Suite::modes()
            .into_iter()
            .filter(|m| *m != Mode::Plain)
            .collect();
        if modes.is_empty() {
            return;
        }
        let dir = self.c_tests();
        let (programs, runs) = if stress_suite() {
            (STRESS_PROGRAMS, STRESS_RUNS)
        } else {
            (OPTION_PROGRAMS, OPTION_RUNS)
        };
        let mut built = Vec::new();
        for program in programs {
            let src: OsString = dir.join(format!("{program}.c")).into();
            let plain = self.bin.join(format!("{program}.plain"));
            let linked = self.bin.join(format!("{program}.linked"));
            let mut pargs = self.sources(program, src.clone());
            pargs.extend(option_flags(program));
            let mut largs = self.sources(program, src);
            largs.extend(self.linked_args());
            largs.extend(option_flags(program));
            let plain_built = self.build(&plain, &pargs);
            let linked_built = self.build(&linked, &largs);
            built.push((*program, plain, plain_built, linked, linked_built));
        }
        for &mode in &modes {
            for &(program, arg, options) in runs {
                let name = if arg.is_empty() {
                    program.to_string()
                } else {
                    format!("{program}:{arg}")
                };
                if skipped(&name, mode) {
                    continue;
                }
                let Some((_, plain, plain_built, linked, linked_built)) =
                    built.iter().find(|b| b.0 == program)
                else {
                    continue;
                };
                let (exe, build) = match mode {
                    Mode::Linked => (linked, linked_built),
                    _ => (plain, plain_built),
                };
                if let Err(e) = build {
                    let e = indent(e);
                    self.fail(&name, mode, "does not compile", &e);
                    continue;
                }
                let args: Vec<&str> = if arg.is_empty() { vec![] } else { vec![arg] };
                let env: Vec<(&str, String)> = if options.is_empty() {
                    vec![]
                } else {
                    vec![("SHMGUARD_OPTIONS", options.to_string())]
                };
                let run = self.run(exe, &args, mode, &env, |_, _| {});
                let mut reasons = Vec::new();
                if run.end != End::Exited(0) {
                    reasons.push(run.end.describe());
                } else if !run.stderr.is_empty() {
                    reasons.push("unexpected output on stderr".to_string());
                }
                if !run.leaked.is_empty() {
                    reasons.push("leaked segments".to_string());
                }
                if reasons.is_empty() {
                    self.pass(&name, mode);
                } else {
                    let detail = indent(&format!("{}{}", run.stderr, run.leaked.join("\n")));
                    self.fail(&name, mode, &reasons.join("; "), &detail);
                }
            }
        }
    }
}

/// Moves this thread, and every program it starts from now on, into an
/// IPC namespace of its own (root, or user namespaces): the segment
/// snapshots then see only the suite's segments, never those other
/// programs on the machine create or remove meanwhile. False if the kernel
/// refuses; the suite then shares the machine's namespace.
fn private_ipc_namespace() -> bool {
    // SAFETY: unshare(2) changes only the calling thread's namespaces.
    unsafe { libc::unshare(libc::CLONE_NEWIPC) == 0 }
}

#[test]
fn c_suite() {
    let _guard = SUITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _machine = lock_machine();
    if !private_ipc_namespace() {
        println!("note: no IPC namespace of its own: the suite shares the machine's");
    }
    let mut suite = Suite::new();
    suite.build_helpers();
    if !stress_suite() {
        suite.differential();
        suite.extensions();
    }
    suite.option_programs();
    println!("{} passed, {} failed", suite.passed, suite.failures.len());
    assert!(
        suite.failures.is_empty(),
        "{} of {} C test runs failed:\n{}",
        suite.failures.len(),
        suite.passed + suite.failures.len(),
        suite.failures.join("")
    );
}
