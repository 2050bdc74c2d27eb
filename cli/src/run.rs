//! `shmguard run`: runs a command with the library preloaded across its
//! whole process tree, waits for every descendant, and reports.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::Failure;
use crate::kernel::{self, Clock};
use crate::logs;
use crate::os::{self, SignalSet};
use crate::report::{self, KernelView, Reaped, RunInfo, Tree};

/// Signals passed on to the tree instead of ending shmguard.
const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// What `run` was asked.
pub struct RunArgs {
    pub log_dir: Option<PathBuf>,
    pub fail_on_leak: bool,
    pub json: bool,
    pub options: Option<String>,
    pub lib: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// The library to preload: `--lib`, `$SHMGUARD_LIB`, `libshmguard.so`
/// next to this executable, or `../lib/libshmguard.so` from it (the layout
/// of `make install`).
pub fn find_library(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    let mut tried = Vec::new();
    let explicit = flag.map(|p| (p.to_path_buf(), "--lib")).or_else(|| {
        std::env::var_os("SHMGUARD_LIB")
            .filter(|v| !v.is_empty())
            .map(|v| (PathBuf::from(v), "SHMGUARD_LIB"))
    });
    let candidates: Vec<PathBuf> = match explicit {
        Some((path, from)) => {
            return fs::canonicalize(&path)
                .ok()
                .filter(|p| p.is_file())
                .ok_or_else(|| {
                    Failure::new(
                        125,
                        format!(
                            "the library named by {from} does not exist: {}",
                            path.display()
                        ),
                    )
                });
        }
        None => match std::env::current_exe() {
            Ok(exe) => {
                let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
                vec![
                    dir.join("libshmguard.so"),
                    dir.join("../lib/libshmguard.so"),
                ]
            }
            Err(_) => Vec::new(),
        },
    };
    for c in candidates {
        if let Ok(p) = fs::canonicalize(&c) {
            if p.is_file() {
                return Ok(p);
            }
        }
        tried.push(c.display().to_string());
    }
    Err(Failure::new(
        125,
        format!(
            "cannot find libshmguard.so (tried {}); name it with --lib PATH or SHMGUARD_LIB",
            if tried.is_empty() {
                "nothing: the executable's path is unknown".to_owned()
            } else {
                tried.join(", ")
            }
        ),
    ))
}

/// A fresh directory `shmguard.XXXXXX` (mode 0700) under `base`, as
/// `mkdtemp(3)` makes.
fn make_temp_dir(base: &Path) -> io::Result<PathBuf> {
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..100 {
        let mut name = String::from("shmguard.");
        for _ in 0..6 {
            // xorshift: unpredictable enough for a name; create_dir's
            // EEXIST makes collisions harmless.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            name.push(CHARS[(seed % CHARS.len() as u64) as usize] as char);
        }
        let path = base.join(name);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for a temporary directory",
    ))
}

/// The log directory: `--log-dir` (created if missing; it must hold no
/// logs yet), or a fresh one under `$TMPDIR`. Returns it and whether we
/// made it as a temporary directory.
fn prepare_log_dir(flag: Option<&Path>) -> Result<(PathBuf, bool), Failure> {
    let fail = |what: String| Failure::new(125, what);
    let (dir, temp) = match flag {
        Some(dir) => {
            fs::DirBuilder::new()
                .recursive(true)
                .create(dir)
                .map_err(|e| {
                    fail(format!(
                        "cannot create the log directory {}: {e}",
                        dir.display()
                    ))
                })?;
            let dir = fs::canonicalize(dir).map_err(|e| {
                fail(format!(
                    "cannot use the log directory {}: {e}",
                    dir.display()
                ))
            })?;
            let old = fs::read_dir(&dir)
                .map_err(|e| {
                    fail(format!(
                        "cannot read the log directory {}: {e}",
                        dir.display()
                    ))
                })?
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "jsonl"));
            if old {
                return Err(fail(format!(
                    "the log directory {} already holds logs (*.jsonl): they would mix with this run's; \
                     give an empty or new directory",
                    dir.display()
                )));
            }
            (dir, false)
        }
        None => {
            let base = std::env::temp_dir();
            let dir = make_temp_dir(&base).map_err(|e| {
                fail(format!(
                    "cannot create a log directory under {}: {e}",
                    base.display()
                ))
            })?;
            (fs::canonicalize(&dir).unwrap_or(dir), true)
        }
    };
    if dir.to_string_lossy().contains(':') {
        return Err(fail(format!(
            "the log directory {} contains ':', which SHMGUARD_OPTIONS cannot carry; choose another",
            dir.display()
        )));
    }
    Ok((dir, temp))
}

/// Refuses `--options` that set `log_path`: `run` owns it.
fn check_options(extra: Option<&str>) -> Result<(), Failure> {
    let sets_log = extra.is_some_and(|e| {
        e.split(':').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| k.trim() == "log_path")
        })
    });
    if sets_log {
        return Err(Failure::new(
            2,
            "--options may not set log_path: run sets it to LOGDIR/shmguard.%p.jsonl (use --log-dir)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// `SHMGUARD_OPTIONS` for the tree: the caller's own, then our `log_path`,
/// then `--options` (later keys win).
fn options_for_tree(log_dir: &Path, extra: Option<&str>) -> Result<OsString, Failure> {
    check_options(extra)?;
    let mut parts: Vec<OsString> = Vec::new();
    if let Some(own) = std::env::var_os("SHMGUARD_OPTIONS").filter(|v| !v.is_empty()) {
        parts.push(own);
    }
    let mut log = OsString::from("log_path=");
    log.push(log_dir.join("shmguard.%p.jsonl"));
    parts.push(log);
    if let Some(extra) = extra.filter(|e| !e.is_empty()) {
        parts.push(extra.into());
    }
    Ok(parts.join(OsStr::new(":")))
}

/// `LD_PRELOAD` for the tree: the caller's, with ours appended.
fn preload_for_tree(lib: &Path) -> Result<OsString, Failure> {
    let text = lib.to_string_lossy();
    if text.contains([':', ' ', '\t', '\n']) {
        return Err(Failure::new(
            125,
            format!(
                "the library path {text} contains a separator of LD_PRELOAD (':' or a space); \
                 move or link the library elsewhere"
            ),
        ));
    }
    Ok(
        match std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
            Some(mut own) => {
                own.push(":");
                own.push(lib);
                own
            }
            None => lib.as_os_str().to_owned(),
        },
    )
}

/// Shared between the reaper (main thread) and the signal forwarder.
struct State {
    cmd: u32,
    /// The command has been reaped: its pid may belong to someone else.
    cmd_reaped: bool,
}

/// `shmguard run`.
pub fn run(args: RunArgs) -> Result<i32, Failure> {
    // Everything that can be refused is checked before a directory is made.
    check_options(args.options.as_deref())?;
    let lib = find_library(args.lib.as_deref())?;
    let preload = preload_for_tree(&lib)?;
    let (log_dir, temp_dir) = prepare_log_dir(args.log_dir.as_deref())?;
    let options = options_for_tree(&log_dir, args.options.as_deref())?;
    let mut warnings = Vec::new();

    let before = kernel::segments().unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read /proc/sysvipc/shm ({e}): segments of programs that could not be preloaded are not found"
        ));
        Vec::new()
    });
    let last_pid_before = kernel::last_pid();

    let signals = SignalSet::new(&FORWARDED);
    signals
        .block()
        .map_err(|e| Failure::new(125, format!("cannot block signals: {e}")))?;
    if let Err(e) = os::become_subreaper() {
        warnings.push(format!(
            "cannot become a child subreaper ({e}): descendants that outlive their parents are not waited for"
        ));
    }

    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| Failure::new(2, "no command to run".to_owned()))?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .env("LD_PRELOAD", &preload)
        .env("SHMGUARD_OPTIONS", &options);
    signals.unblock_in(&mut command);
    let child = command.spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            if temp_dir {
                let _ = fs::remove_dir(&log_dir);
            }
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(Failure::new(
                code,
                format!("cannot run {}: {e}", program.to_string_lossy()),
            ));
        }
    };
    let cmd_pid = child.id();
    // We reap with waitpid(-1) ourselves; the handle is not waited on.
    drop(child);

    let state = Arc::new(Mutex::new(State {
        cmd: cmd_pid,
        cmd_reaped: false,
    }));
    {
        let state = Arc::clone(&state);
        std::thread::spawn(move || forward_signals(signals, &state));
    }

    let mut reaped: BTreeMap<u32, Reaped> = BTreeMap::new();
    let mut cmd_status = None;
    loop {
        match os::wait_any_exited() {
            Ok(Some(pid)) => {
                // The zombie still has its /proc entry: keep its name.
                let comm = kernel::comm(pid);
                // Reap under the lock, so the forwarder never signals a pid
                // that has been reaped (and could be reused).
                let mut guard = state.lock().unwrap_or_else(|e| e.into_inner());
                match os::reap(pid) {
                    Ok(status) => {
                        if pid == guard.cmd {
                            guard.cmd_reaped = true;
                            cmd_status = Some(status);
                        }
                        reaped.insert(pid, Reaped { comm, status });
                    }
                    Err(e) => warnings.push(format!("cannot reap pid {pid}: {e}")),
                }
            }
            Ok(None) => break,
            Err(e) => {
                warnings.push(format!(
                    "waiting for the process tree failed ({e}); the report may be incomplete"
                ));
                break;
            }
        }
    }

    let after = kernel::segments().unwrap_or_default();
    let last_pid_after = kernel::last_pid();
    let tree = Tree {
        before,
        after,
        reaped,
        pid_window: match (last_pid_before, last_pid_after, kernel::pid_max()) {
            (Some(b), Some(a), Some(m)) => Some((b, a, m)),
            _ => None,
        },
        ipc_ns: kernel::ipc_namespace(),
        uids: [os::uid(), os::euid()].into(),
    };
    let mut logs = logs::read(&log_dir).unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read the logs in {}: {e}",
            log_dir.display()
        ));
        logs::LogSet::default()
    });
    logs.warnings.splice(0..0, warnings);
    let clock = Clock::read();
    let mut report = report::analyze(
        &logs,
        &log_dir.display().to_string(),
        KernelView::Run(&tree),
        &|cpid, ctime| clock.creator_alive(cpid, ctime),
    );

    let status = cmd_status.unwrap_or(0);
    let exit = std::process::ExitStatus::from_raw(status);
    let cmd_exit = match (exit.code(), exit.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    };
    let exit_status = if args.fail_on_leak && report.leaked() {
        1
    } else {
        cmd_exit
    };
    report.run = Some(RunInfo {
        command: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        lib: lib.display().to_string(),
        status: report::status_text(status),
        exit_code: exit.code(),
        signal: exit.signal(),
        exit_status,
    });

    let text = if args.json {
        let mut s = serde_json::to_string(&report).map_err(|e| Failure::new(125, e.to_string()))?;
        s.push('\n');
        s
    } else {
        render_text(&report, args.fail_on_leak)
    };
    let written = match &args.output {
        Some(path) => fs::write(path, text.as_bytes()),
        None if args.json => io::stdout().write_all(text.as_bytes()),
        None => io::stderr().write_all(text.as_bytes()),
    };
    if let Err(e) = written {
        return Err(Failure::new(125, format!("cannot write the report: {e}")));
    }
    Ok(exit_status)
}

fn render_text(r: &report::Report, fail_on_leak: bool) -> String {
    let prefix = "shmguard: ";
    let mut out = String::new();
    if let Some(run) = &r.run {
        out.push_str(&format!(
            "{prefix}{}: {}\n",
            report::shorten(&run.command.join(" "), 200),
            run.status
        ));
    }
    out.push_str(&format!(
        "{prefix}logs in {} (shmguard report {} shows each process)\n",
        r.log_dir, r.log_dir
    ));
    out.push_str(&report::render_body(r, prefix));
    if fail_on_leak && r.leaked() {
        out.push_str(&format!(
            "{prefix}exit status 1: the tree leaked (--fail-on-leak)\n"
        ));
    }
    out
}

/// Passes signals sent to shmguard on to the tree: to every child of ours
/// (the command while it runs, and descendants reparented to us). A signal
/// from the terminal (`SI_KERNEL`) already reached every process of our
/// process group, so those are not sent it twice.
fn forward_signals(signals: SignalSet, state: &Mutex<State>) {
    let me = std::process::id();
    let our_group = os::pgrp();
    while let Ok((signal, from_terminal)) = signals.wait() {
        let guard = state.lock().unwrap_or_else(|e| e.into_inner());
        // Children cannot be reaped while we hold the lock, so every pid
        // here stays ours until we are done. The command first (no /proc
        // scan), then every other child: descendants reparented to us.
        let mut targets = Vec::new();
        if !guard.cmd_reaped {
            targets.push(guard.cmd);
        }
        targets.extend(
            kernel::children_of(me)
                .into_iter()
                .filter(|&p| p != guard.cmd),
        );
        for pid in targets {
            let same_group = kernel::proc_stat(pid).is_some_and(|s| s.pgrp == our_group);
            if from_terminal && same_group {
                continue;
            }
            let _ = os::kill(pid, signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_the_callers_and_refuse_log_path() {
        let dir = Path::new("/tmp/x");
        let o = options_for_tree(dir, Some("verbosity=1:policy=strict")).unwrap();
        let o = o.to_string_lossy();
        assert!(
            o.contains("log_path=/tmp/x/shmguard.%p.jsonl:verbosity=1:policy=strict"),
            "{o}"
        );
        assert!(options_for_tree(dir, Some("verbosity=1:log_path=/x")).is_err());
    }

    #[test]
    fn temp_dirs_are_fresh_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir();
        let a = make_temp_dir(&base).unwrap();
        let b = make_temp_dir(&base).unwrap();
        assert_ne!(a, b);
        let mode = fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        fs::remove_dir(&a).unwrap();
        fs::remove_dir(&b).unwrap();
        assert_eq!(mode, 0o700);
    }
}
