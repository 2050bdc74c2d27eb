//! Shared by the command's integration tests: the binaries under test, the
//! C helper (built once per test binary), a lock that serialises tests that
//! make or look for orphaned segments, and guards that remove every segment
//! a test made, even when it fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The `shmguard` binary under test: this build's, or `SHMGUARD_BIN` (to
/// run the tests against another build, e.g. an older one, to see which
/// of them it fails).
pub fn shmguard() -> PathBuf {
    std::env::var_os("SHMGUARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_shmguard")))
}

/// The library built by this `cargo test` (target/debug/libshmguard.so,
/// next to the binary), or the release one; `SHMGUARD_LIB` overrides.
pub fn library() -> PathBuf {
    if let Some(p) = std::env::var_os("SHMGUARD_LIB") {
        return PathBuf::from(p);
    }
    let bin_dir = shmguard().parent().unwrap().to_path_buf();
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    for candidate in [
        bin_dir.join("libshmguard.so"),
        target.join("debug/libshmguard.so"),
        target.join("release/libshmguard.so"),
    ] {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("libshmguard.so is not built (cargo build --workspace)");
}

/// A directory for this test binary's files under target/tmp, readable by
/// other users (the helpers run as nobody and as a dedicated uid).
pub fn scratch() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("shmguard-cli");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    })
    .clone()
}

/// A fresh, empty directory under [`scratch`], removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Self {
        let dir = scratch().join(format!("{name}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Dir {
    /// A fresh, empty directory that every user can reach (mode 0755 under
    /// the system's temporary directory, root's sticky /tmp), for files
    /// that processes of other users must open: a checkout, and so
    /// [`scratch`], may sit in a directory only its owner can enter (CI
    /// clones into `mktemp -d`, mode 0700). Created exclusively.
    pub fn reachable(name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&format!("shmguard-cli.{name}."))
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temporary directory for {name}: {e}"))
            .keep();
        // Whatever the umask left of 0755.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    /// A copy of `file` in this directory, with its mode (for a program or
    /// library that another user's process must load).
    pub fn copy_in(&self, file: &Path) -> PathBuf {
        let to = self.0.join(file.file_name().unwrap());
        std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
        to
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn compile(name: &str, extra: &[&str]) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/shmhelper.c");
    let out = scratch().join(name);
    // Built under a private name and renamed, so concurrent test runs
    // never execute a half-written file.
    let tmp = scratch().join(format!("{name}.{}.tmp", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .args(extra)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(status.success(), "{cc} failed to build {name}");
    std::fs::rename(&tmp, &out).unwrap();
    out
}

/// The helper, dynamically linked (it can be preloaded).
pub fn helper() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile("shmhelper", &[])).clone()
}

/// The helper, linked statically: LD_PRELOAD cannot reach it.
pub fn static_helper() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| compile("shmhelper-static", &["-static"]))
        .clone()
}

/// Prepares a test that makes segments or compares the kernel's table:
/// gives the calling thread (each test runs in a thread of its own) a
/// private IPC namespace, which every process it starts inherits, so no
/// other program on the machine sees or removes the test's segments, and
/// the test sees no other program's; the kernel frees the namespace, and
/// any segment left in it, when the test's last process is gone. Without
/// CAP_SYS_ADMIN the test shares the machine's namespace. Also serialises
/// the tests of one binary, for that case.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: unshare takes a flag; CLONE_NEWIPC only moves the calling
    // thread to a new IPC namespace (allowed in a threaded process).
    let _ = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
    guard
}

/// Removes its segments (IPC_RMID) when dropped, even if the test fails.
#[derive(Default)]
pub struct Segments(pub Vec<i32>);

impl Segments {
    pub fn add(&mut self, shmid: i32) -> i32 {
        if !self.0.contains(&shmid) {
            self.0.push(shmid);
        }
        shmid
    }

    /// Adds every number printed alone on a line of `text`.
    pub fn add_printed(&mut self, text: &str) -> Vec<i32> {
        let ids: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        for &id in &ids {
            self.add(id);
        }
        ids
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        for &id in &self.0 {
            // Removal as root reaches other users' segments too; EINVAL
            // means it is gone already.
            let _ = shmguard::support::shm_rmid(id);
        }
    }
}

/// A running helper, killed and waited for when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `setpriv` arguments that run a command as `uid` (group `uid`) with no
/// supplementary groups.
pub fn as_user(uid: u32) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups");
    c
}

/// Runs the helper (as `uid` when given) and returns the shmids it printed;
/// they are added to `guard` first, so they are removed whatever happens.
pub fn make(guard: &mut Segments, uid: Option<u32>, args: &[&str]) -> Vec<i32> {
    let mut c = match uid {
        Some(uid) => {
            let mut c = as_user(uid);
            c.arg(helper());
            c
        }
        None => Command::new(helper()),
    };
    let out = c.args(args).output().expect("run the helper");
    let ids = guard.add_printed(&String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "helper {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ids
}

/// Starts the helper's `hold` (as `uid` when given): a segment it keeps
/// attached until the returned process is dropped.
pub fn hold(guard: &mut Segments, uid: Option<u32>) -> (Running, i32) {
    let mut c = match uid {
        Some(uid) => {
            let mut c = as_user(uid);
            c.arg(helper());
            c
        }
        None => Command::new(helper()),
    };
    let (running, id, mut lines) = spawn_printing_shmid(guard, c.args(["hold", "8192"]));
    assert_eq!(lines.next().unwrap().unwrap(), "attached");
    (running, id)
}

/// Starts `cmd`, a helper that prints a shmid as its first line and keeps
/// running; the segment is removed with `guard`, the process killed when
/// the returned `Running` is dropped. The rest of its output follows.
pub fn spawn_printing_shmid(
    guard: &mut Segments,
    cmd: &mut Command,
) -> (
    Running,
    i32,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the helper");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let running = Running(child);
    let id: i32 = lines
        .next()
        .expect("the helper's shmid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    guard.add(id);
    (running, id, lines)
}

/// Runs `shmguard ARGS` and returns its output.
pub fn shmguard_cmd(args: &[&str]) -> Output {
    Command::new(shmguard())
        .args(args)
        .output()
        .expect("run shmguard")
}

/// The text of a command's output, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The rows of /proc/sysvipc/shm, parsed here independently of the
/// library: shmid -> the fields by name.
pub fn proc_table() -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string("/proc/sysvipc/shm").unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(str::to_owned))
                .collect()
        })
        .collect()
}

/// Whether the kernel has `shmid` now.
pub fn exists(shmid: i32) -> bool {
    proc_table().iter().any(|r| r["shmid"] == shmid.to_string())
}

/// `path` as a string.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
