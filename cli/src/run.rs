//! `shmguard run`: runs a command with the library preloaded across its
//! whole process tree, waits for every descendant, and reports.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::Failure;
use crate::kernel::{self, Clock};
use crate::logs;
use crate::os::{self, SignalSet};
use crate::outfile::{self, OutFile};
use crate::report::{self, KernelView, Reaped, RunInfo, Tree};
use crate::suppressions;

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
    /// `--json FILE`, `--junit FILE`, `--sarif FILE`.
    pub json: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub sarif: Option<PathBuf>,
    pub fail_on_finding: bool,
    pub suppressions: Option<PathBuf>,
    pub options: Option<String>,
    pub lib: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub command: Vec<OsString>,
    /// Keep each process's own leak report at exit (`--per-process`).
    pub per_process: bool,
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

/// The mode of a log directory that `run` makes, while the tree runs:
/// everyone may create files (processes of the tree that switch to another
/// user must be able to log), no one may list it, and the sticky bit keeps
/// each file to its owner (no one else may remove, rename or replace it).
/// The library creates its files exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`,
/// mode 0600).
const OPEN_MODE: u32 = 0o1733;
/// The mode `run` leaves its log directory in once the tree is gone.
const SEALED_MODE: u32 = 0o700;

/// Makes directory `path` (exclusively: it must not exist, a symbolic link
/// included) for the tree's logs, mode [`OPEN_MODE`], and checks that what
/// was made is ours.
fn make_log_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::DirBuilder::new().mode(0o700).create(path)?;
    let dir = open_dir(path)?;
    dir.set_permissions(fs::Permissions::from_mode(OPEN_MODE))?;
    Ok(())
}

/// Opens a directory without following a symbolic link, and checks that
/// we own it.
fn open_dir(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)?;
    if dir.metadata()?.uid() != os::euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "it is not ours (replaced by another user?)",
        ));
    }
    Ok(dir)
}

/// A fresh directory `shmguard.XXXXXX` under `base`, as `mkdtemp(3)` makes
/// one, made by `tempfile`: created exclusively (`mkdir`, mode 0700; a
/// taken name, a symbolic link included, makes it draw another), the
/// six characters drawn at random (its generator is re-seeded from
/// `getrandom(2)` when a name is taken); then, through a descriptor that
/// checks it is ours, mode [`OPEN_MODE`].
fn make_temp_dir(base: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = tempfile::Builder::new()
        .prefix("shmguard.")
        .rand_bytes(6)
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir_in(base)?
        .keep();
    let opened =
        open_dir(&path).and_then(|dir| dir.set_permissions(fs::Permissions::from_mode(OPEN_MODE)));
    if let Err(e) = opened {
        let _ = fs::remove_dir(&path);
        return Err(e);
    }
    Ok(path)
}

/// Why a directory is no safe place for logs, if it is not: a symbolic
/// link, another user's, or writable by group or others without the
/// sticky bit (someone else could remove or replace the tree's files).
fn unsafe_dir(meta: &fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        return Some("is a symbolic link".to_owned());
    }
    if !meta.is_dir() {
        return Some("is not a directory".to_owned());
    }
    if meta.uid() != os::euid() {
        return Some(format!(
            "is owned by uid {}, not by you (uid {}): its owner could remove or replace the logs",
            meta.uid(),
            os::euid()
        ));
    }
    sticky_problem(meta)
}

/// Whether group or others may write `meta`'s directory without the
/// sticky bit.
fn sticky_problem(meta: &fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    (meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0).then(|| {
        format!(
            "is writable by group or others without the sticky bit (mode {:04o}): \
             anyone could remove or replace the logs",
            meta.mode() & 0o7777
        )
    })
}

/// Refuses a log directory one of whose ancestors another user owns, or
/// others may write without the sticky bit: they could move the directory
/// away and put another in its place (OpenSSH checks its files' paths the
/// same way).
fn check_ancestors(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    for a in dir.ancestors().skip(1) {
        if let Ok(meta) = fs::metadata(a) {
            let owner = meta.uid();
            let foreign = (owner != 0 && owner != os::euid()).then(|| {
                format!(
                    "belongs to {} (uid {owner}), who could replace the log directory",
                    crate::kernel::Users::read().name(owner)
                )
            });
            if let Some(why) = foreign.or_else(|| sticky_problem(&meta)) {
                return Err(Failure::new(
                    2,
                    format!(
                        "cannot use the log directory {}: its parent {} {why}",
                        dir.display(),
                        a.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The log directory of a run.
struct LogDir {
    path: PathBuf,
    /// Made under `$TMPDIR` (removed again if the command cannot start).
    temp: bool,
    /// Made by this run, mode [`OPEN_MODE`]: sealed once the tree is gone.
    made: bool,
}

/// The log directory: `--log-dir` (made if missing; an existing one must
/// be ours, not a symbolic link, not writable by others without the sticky
/// bit, and hold no logs yet), or a fresh one under `$TMPDIR`.
fn prepare_log_dir(flag: Option<&Path>) -> Result<LogDir, Failure> {
    let fail = |what: String| Failure::new(125, what);
    let refuse = |dir: &Path, why: String| {
        Failure::new(
            2,
            format!("refusing the log directory {}: it {why}", dir.display()),
        )
    };
    let dir = match flag {
        Some(dir) => match fs::symlink_metadata(dir) {
            Ok(meta) => {
                if let Some(why) = unsafe_dir(&meta) {
                    return Err(refuse(dir, why));
                }
                let dir = fs::canonicalize(dir).map_err(|e| {
                    fail(format!(
                        "cannot use the log directory {}: {e}",
                        dir.display()
                    ))
                })?;
                check_ancestors(&dir)?;
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
                LogDir {
                    path: dir,
                    temp: false,
                    made: false,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let cannot = |e: io::Error| {
                    fail(format!(
                        "cannot create the log directory {}: {e}",
                        dir.display()
                    ))
                };
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // What exists of the path is checked before anything is
                    // made under it.
                    if let Some(existing) = parent.ancestors().find(|a| fs::metadata(a).is_ok()) {
                        let existing = fs::canonicalize(existing).map_err(cannot)?;
                        check_ancestors(&existing.join("x"))?;
                    }
                    fs::DirBuilder::new()
                        .recursive(true)
                        .create(parent)
                        .map_err(cannot)?;
                    let parent = fs::canonicalize(parent).map_err(cannot)?;
                    check_ancestors(&parent.join("x"))?;
                }
                make_log_dir(dir).map_err(cannot)?;
                LogDir {
                    path: fs::canonicalize(dir).map_err(cannot)?,
                    temp: false,
                    made: true,
                }
            }
            Err(e) => {
                return Err(fail(format!(
                    "cannot use the log directory {}: {e}",
                    dir.display()
                )));
            }
        },
        None => {
            let base = std::env::temp_dir();
            let base = fs::canonicalize(&base).unwrap_or(base);
            check_ancestors(&base.join("x"))?;
            let dir = make_temp_dir(&base).map_err(|e| {
                fail(format!(
                    "cannot create a log directory under {}: {e}",
                    base.display()
                ))
            })?;
            LogDir {
                path: dir,
                temp: true,
                made: true,
            }
        }
    };
    if dir.path.to_string_lossy().contains(':') {
        if dir.made {
            let _ = fs::remove_dir(&dir.path);
        }
        return Err(fail(format!(
            "the log directory {} contains ':', which SHMGUARD_OPTIONS cannot carry; choose another",
            dir.path.display()
        )));
    }
    Ok(dir)
}

/// Once the tree is gone: moves the files that [`logs::read_trusting`]
/// did not trust out of the way (`NAME.untrusted`, so that a later
/// `shmguard report` does not read them either), then, for a directory
/// this run made, takes back everyone's right to create files in it
/// (mode [`SEALED_MODE`]): from then on it holds only what the tree wrote.
fn seal_log_dir(dir: &LogDir, untrusted: &[PathBuf], warnings: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    for file in untrusted {
        let mut aside = file.clone().into_os_string();
        aside.push(".untrusted");
        match fs::rename(file, &aside) {
            Ok(()) => warnings.push(format!(
                "{}: moved aside to {} (not this tree's)",
                file.display(),
                Path::new(&aside).display()
            )),
            Err(e) => warnings.push(format!("{}: cannot move it aside: {e}", file.display())),
        }
    }
    if dir.made {
        let sealed = open_dir(&dir.path)
            .and_then(|d| d.set_permissions(fs::Permissions::from_mode(SEALED_MODE)));
        if let Err(e) = sealed {
            warnings.push(format!(
                "cannot make the log directory {} private again: {e}",
                dir.path.display()
            ));
        }
    }
}

/// Refuses `--options` that set `log_path` (`run` owns it), or that the
/// library would not apply in full: an unknown key, a bad value, a pair
/// that is not `key=value`. The library's own parser judges them (it would
/// otherwise only warn, once per process, and go on without them), so the
/// command never starts with options other than those asked for.
fn check_options(extra: Option<&str>) -> Result<(), Failure> {
    let Some(extra) = extra else {
        return Ok(());
    };
    let sets_log = extra.split(':').any(|p| {
        p.split_once('=')
            .is_some_and(|(k, _)| k.trim() == "log_path")
    });
    if sets_log {
        return Err(Failure::new(
            2,
            "--options may not set log_path: run sets it to LOGDIR/shmguard.%p.jsonl (use --log-dir)"
                .to_owned(),
        ));
    }
    let problems: Vec<String> = shmguard::support::option_problems(extra)
        .into_iter()
        .map(|p| match p.rfind(" (ignored") {
            // Nothing is ignored here: the run is refused.
            Some(at) if p.ends_with(')') => p[..at].to_owned(),
            _ => p,
        })
        .collect();
    if !problems.is_empty() {
        return Err(Failure::new(
            2,
            format!("bad --options: {}", problems.join("; ")),
        ));
    }
    Ok(())
}

/// `SHMGUARD_OPTIONS` for the tree: `leak_report=0` (the tree's report is
/// the one answer; `leak_report=1` with `per_process`), `suppressions=`
/// the file of --suppressions, the caller's own, then our `log_path`, then
/// `--options` (later keys win, so the caller's `leak_report=1` or
/// `suppressions=`, or those of `--options`, win in the tree).
fn options_for_tree(
    log_dir: &Path,
    suppressions: Option<&str>,
    extra: Option<&str>,
    per_process: bool,
) -> Result<OsString, Failure> {
    check_options(extra)?;
    let mut parts: Vec<OsString> = vec![OsString::from(if per_process {
        "leak_report=1"
    } else {
        "leak_report=0"
    })];
    if let Some(path) = suppressions {
        parts.push(format!("suppressions={path}").into());
    }
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

/// What the tree's AddressSanitizer programs must be told so that the
/// library may be preloaded ahead of their runtime.
const ASAN_LINK_ORDER: &str = "verify_asan_link_order=0";

/// `ASAN_OPTIONS` for the tree: the caller's, with
/// [`ASAN_LINK_ORDER`] appended.
///
/// A program built with `-fsanitize=address` by gcc (or by clang with
/// `-shared-libasan`) loads ASan's runtime as a shared library, and that
/// runtime dies at start ("ASan runtime does not come first in initial
/// library list") when any other library, ours, is loaded before it: it
/// wants to be the first to interpose `malloc` and the rest. Preloading the
/// runtime ourselves would satisfy it, but `LD_PRELOAD` reaches every
/// process of the tree, and a sanitizer runtime in a program not built for
/// it (the shell, `make`, a non-instrumented test) either dies or changes
/// that program's behaviour. So the check is turned off instead: it is the
/// documented switch for this case, and it is safe here: of the functions
/// ASan intercepts the library defines only `shmctl`, so the one check
/// lost is ASan's that the buffer given to `shmctl` is addressable (TSan,
/// which makes no link-order check, loses the same). Only ASan reads the
/// variable; the other processes of the tree ignore it.
///
/// Appended, so that it wins over a `verify_asan_link_order=1` in the
/// caller's options (later flags override earlier ones) while the caller's
/// other options stay as they are. UBSan, LSan and TSan runtimes make no
/// such check.
fn asan_options_for_tree(own: Option<&OsStr>) -> OsString {
    match own.filter(|v| !v.is_empty()) {
        Some(own) => {
            let mut v = own.to_owned();
            v.push(":");
            v.push(ASAN_LINK_ORDER);
            v
        }
        None => OsString::from(ASAN_LINK_ORDER),
    }
}

/// Shared between the reaper (main thread) and the signal forwarder.
struct State {
    cmd: u32,
    /// The command has been reaped: its pid may belong to someone else.
    cmd_reaped: bool,
}

/// The files `run` writes its report to, checked before anything is done.
struct Outputs {
    text: Option<OutFile>,
    json: Option<OutFile>,
    junit: Option<OutFile>,
    sarif: Option<OutFile>,
}

fn check_outputs(args: &RunArgs) -> Result<Outputs, Failure> {
    let check =
        |path: &Option<PathBuf>, flag| path.as_deref().map(|p| outfile::check(p, flag)).transpose();
    let out = Outputs {
        text: check(&args.output, "--output")?,
        json: check(&args.json, "--json")?,
        junit: check(&args.junit, "--junit")?,
        sarif: check(&args.sarif, "--sarif")?,
    };
    let named: Vec<(&str, &OutFile)> = [
        ("--output", &out.text),
        ("--json", &out.json),
        ("--junit", &out.junit),
        ("--sarif", &out.sarif),
    ]
    .into_iter()
    .filter_map(|(flag, f)| f.as_ref().map(|f| (flag, f)))
    .collect();
    outfile::check_distinct(&named)?;
    Ok(out)
}

/// `shmguard run`.
pub fn run(args: RunArgs) -> Result<i32, Failure> {
    // Everything that can be refused is checked before a directory is made.
    check_options(args.options.as_deref())?;
    let outputs = check_outputs(&args)?;
    // Read once, before the command starts: a bad file is refused here.
    let rules = match &args.suppressions {
        Some(path) => Some((suppressions::read(path)?, suppressions::for_tree(path)?)),
        None => None,
    };
    let lib = find_library(args.lib.as_deref())?;
    let preload = preload_for_tree(&lib)?;
    let dir = prepare_log_dir(args.log_dir.as_deref())?;
    let log_dir = dir.path.clone();
    let temp_dir = dir.temp;
    let options = options_for_tree(
        &log_dir,
        rules.as_ref().map(|(_, path)| path.as_str()),
        args.options.as_deref(),
        args.per_process,
    )?;
    let rules = rules.map(|(rules, _)| rules);
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
    // Still one thread, not yet a subreaper: the canary's moment.
    let canary = if std::process::id() == 1 {
        // As a namespace's init we would inherit the canary ourselves.
        None
    } else {
        match os::Canary::start(&FORWARDED) {
            Ok(c) => Some(c),
            Err(e) => {
                warnings.push(format!(
                    "cannot start the signal canary ({e}): a signal sent to the whole process \
                     group may reach the command twice"
                ));
                None
            }
        }
    };
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
        .env("SHMGUARD_OPTIONS", &options)
        .env(
            "ASAN_OPTIONS",
            asan_options_for_tree(std::env::var_os("ASAN_OPTIONS").as_deref()),
        );
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
        std::thread::spawn(move || forward_signals(signals, &state, canary.as_ref()));
    }

    let mut reaped: BTreeMap<u32, Reaped> = BTreeMap::new();
    let mut cmd_status = None;
    // The users the tree ran as, as far as run sees: its own, and those
    // of every process it reaps (a server started as root that switches
    // to its own user).
    let mut tree_uids: BTreeSet<u32> = [os::uid(), os::euid()].into();
    loop {
        match os::wait_any_exited() {
            Ok(Some(pid)) => {
                // The zombie still has its /proc entry: keep its name, and
                // the users it ran as.
                let comm = kernel::comm(pid);
                tree_uids.extend(kernel::uids(pid));
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
    let mut logs = logs::read_trusting(&log_dir, &tree_uids).unwrap_or_else(|e| {
        warnings.push(format!(
            "cannot read the logs in {}: {e}",
            log_dir.display()
        ));
        logs::LogSet::default()
    });
    seal_log_dir(&dir, &logs.untrusted, &mut warnings);
    // A directory of our own making under $TMPDIR that nothing was written
    // into (no process made a shm call) is not kept: there is nothing to
    // read. `rmdir` removes only an empty directory, and once sealed no
    // one else can add to it. A --log-dir is always kept.
    let kept = !dir.temp || fs::remove_dir(&log_dir).is_err();
    logs.warnings.splice(0..0, warnings);
    let clock = Clock::read();
    let suppressed_findings = suppressions::take_findings(&mut logs, rules.as_ref());
    let mut report = report::analyze(
        &logs,
        &log_dir.display().to_string(),
        KernelView::Run(&tree),
        &|cpid, ctime| clock.creator_alive(cpid, ctime),
    );
    suppressions::apply(
        &mut report,
        &logs,
        rules.as_ref(),
        suppressed_findings,
        &[&tree.after, &tree.before],
    );
    if !kept {
        report.log_dir = None;
    }

    let status = cmd_status.unwrap_or(0);
    let exit = std::process::ExitStatus::from_raw(status);
    let cmd_exit = match (exit.code(), exit.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        _ => 1,
    };
    // A command killed by a signal: run dies of it too, after the report
    // (what the shell then sees is 128+N).
    let failed = (args.fail_on_leak && report.leaked()) || (args.fail_on_finding && report.found());
    let exit_status = if exit.signal().is_none() && failed {
        1
    } else {
        cmd_exit
    };
    report.run = Some(RunInfo {
        argv: args
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

    // The text report to standard error (or --output); the other forms
    // only ever to files: standard output is the command's.
    let text = render_text(&report, args.fail_on_leak, args.fail_on_finding);
    let mut failed = None;
    match &outputs.text {
        Some(f) => failed = f.write(text.as_bytes()).err(),
        None => {
            if let Err(e) = io::stderr().write_all(text.as_bytes()) {
                failed = Some(Failure::new(125, format!("cannot write the report: {e}")));
            }
        }
    }
    type Render = fn(&report::Report) -> String;
    let forms: [(&Option<OutFile>, Render); 3] = [
        (&outputs.json, report_json),
        (&outputs.junit, crate::junit::render),
        (&outputs.sarif, crate::sarif::render),
    ];
    for (file, render) in forms {
        if let Some(f) = file {
            if let Err(e) = f.write(render(&report).as_bytes()) {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(signal) = exit.signal() {
        // As `env`, `time` and `timeout --foreground` do: our parent sees
        // the command's death (a shell's loop stops on Ctrl-C).
        let _ = io::stdout().flush();
        let _ = io::stderr().flush();
        os::die_of(signal);
    }
    Ok(exit_status)
}

/// The report as JSON, pretty-printed, with a final newline.
fn report_json(r: &report::Report) -> String {
    let mut text = serde_json::to_string_pretty(r).unwrap_or_else(|e| {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::json!({ "error": e.to_string() }).to_string()
    });
    text.push('\n');
    text
}

/// `run`'s text: the command and how it ended, where the logs are, then
/// the report as `shmguard report` prints it (same prefix, same table).
fn render_text(r: &report::Report, fail_on_leak: bool, fail_on_finding: bool) -> String {
    let prefix = report::PREFIX;
    let mut out = String::new();
    if let Some(run) = &r.run {
        out.push_str(&format!(
            "{prefix}{}: {}\n",
            report::shorten(&logs::shell_line(&run.argv), 200),
            run.status
        ));
    }
    // Named only when kept: a run that logged nothing leaves no directory.
    if let Some(dir) = &r.log_dir {
        let dir = logs::printable(dir);
        out.push_str(&format!(
            "{prefix}logs in {dir} (shmguard report {dir} shows each process)\n"
        ));
    }
    out.push_str(&report::render_report(r));
    if fail_on_leak && r.leaked() {
        out.push_str(&format!(
            "{prefix}exit status 1: the tree leaked (--fail-on-leak)\n"
        ));
    }
    if fail_on_finding && r.found() {
        out.push_str(&format!(
            "{prefix}exit status 1: the tree had policy findings (--fail-on-finding)\n"
        ));
    }
    out
}

/// Passes signals sent to shmguard on to the tree: to every child of ours
/// (the command while it runs, and descendants reparented to us), once. A
/// signal that was sent to our whole process group (`kill -INT -PGID`, as
/// `timeout` and service managers do; a terminal's Ctrl-C) or to every
/// process reached the children of our process group already: they are
/// not sent it again. The canary, in our process group but not our child,
/// tells: it has the signal pending too. Without a canary, only a signal
/// from the terminal (`SI_KERNEL`) is known to be the group's.
fn forward_signals(signals: SignalSet, state: &Mutex<State>, canary: Option<&os::Canary>) {
    let me = std::process::id();
    let our_group = os::pgrp();
    while let Ok((signal, from_terminal)) = signals.wait() {
        let group_wide = from_terminal || canary.is_some_and(|c| sent_to_group(c, signal));
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
            if group_wide && same_group {
                continue;
            }
            let _ = os::kill(pid, signal);
        }
    }
}

/// Whether `signal`, which reached us, reached the canary too. A kill of a
/// process group makes the signal pending in every member within the one
/// system call, but we may be woken before the kernel reaches the canary:
/// ask twice, 20 ms apart, before deciding it was sent to us alone.
fn sent_to_group(canary: &os::Canary, signal: i32) -> bool {
    let bit = 1u64 << signal;
    for attempt in 0..2 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        match canary.pending() {
            Some(mask) if mask & bit != 0 => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_the_callers_and_refuse_log_path() {
        let dir = Path::new("/tmp/x");
        let o = options_for_tree(dir, None, Some("verbosity=1:policy=strict"), false).unwrap();
        let o = o.to_string_lossy();
        assert!(
            o.contains("log_path=/tmp/x/shmguard.%p.jsonl:verbosity=1:policy=strict"),
            "{o}"
        );
        assert!(o.starts_with("leak_report=0:"), "{o}");
        let o = options_for_tree(dir, None, None, true).unwrap();
        assert!(o.to_string_lossy().starts_with("leak_report=1:"), "{o:?}");
        assert!(options_for_tree(dir, None, Some("verbosity=1:log_path=/x"), false).is_err());
        let o = options_for_tree(dir, Some("/s.supp"), Some("stacks=1"), false).unwrap();
        let o = o.to_string_lossy();
        assert!(o.starts_with("leak_report=0:suppressions=/s.supp:"), "{o}");
        assert!(o.ends_with(":stacks=1"), "{o}");
    }

    #[test]
    fn options_the_library_would_skip_are_refused_with_its_reason() {
        assert!(check_options(None).is_ok());
        assert!(check_options(Some("")).is_ok());
        assert!(check_options(Some("policy=strict:verbosity=2:fault=shmget@1=ENOMEM")).is_ok());
        for (bad, why) in [
            (
                "verbosity=9",
                "bad value '9' for verbosity: expected 0, 1 or 2",
            ),
            ("polcy=strict", "unknown option 'polcy'"),
            ("policy=strict:stacks", "'stacks' is not key=value"),
        ] {
            let e = check_options(Some(bad)).unwrap_err();
            assert_eq!(e.code, 2, "{bad}");
            assert_eq!(e.message, format!("bad --options: {why}"), "{bad}");
        }
    }

    #[test]
    fn asan_options_keep_the_callers() {
        assert_eq!(asan_options_for_tree(None), "verify_asan_link_order=0");
        assert_eq!(
            asan_options_for_tree(Some(OsStr::new(""))),
            "verify_asan_link_order=0"
        );
        assert_eq!(
            asan_options_for_tree(Some(OsStr::new("detect_leaks=0:halt_on_error=1"))),
            "detect_leaks=0:halt_on_error=1:verify_asan_link_order=0"
        );
    }

    #[test]
    fn temp_dirs_are_fresh_and_sticky() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir();
        let a = make_temp_dir(&base).unwrap();
        let b = make_temp_dir(&base).unwrap();
        assert_ne!(a, b);
        let mode = fs::metadata(&a).unwrap().permissions().mode() & 0o7777;
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        fs::remove_dir(&a).unwrap();
        fs::remove_dir(&b).unwrap();
        assert_eq!(mode, OPEN_MODE);
        assert!(
            name.len() == "shmguard.".len() + 6
                && name.starts_with("shmguard.")
                && name["shmguard.".len()..]
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric()),
            "{name}"
        );
    }
}
