//! The few process-control system calls std does not offer: becoming a
//! child subreaper, waiting for any descendant, signal masks, `kill`,
//! re-raising a signal, the signal canary, System V `IPC_STAT` and
//! `IPC_RMID`, random bytes, and two `sysconf`-style facts; and the C
//! library's `memchr`.
//!
//! This is the only module of the command with `unsafe`; every block is one
//! libc call with plain values, pointers to locals, or a slice's pointer and
//! length.

use std::io;

/// `prctl(PR_SET_CHILD_SUBREAPER, 1)`: orphaned descendants are reparented
/// to this process instead of init, so `run` can wait for them.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A set of signals.
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    pub fn new(signals: &[i32]) -> Self {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, initialised sigset_t we own.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: as above; an invalid signal number only returns EINVAL.
            unsafe { libc::sigaddset(&mut set, s) };
        }
        Self(set)
    }

    /// Blocks these signals in the calling thread (and so in every thread
    /// and child process it starts later: see [`SignalSet::unblock_in`]).
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: a valid set; the old mask is not wanted (NULL).
        let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if ret != 0 {
            Err(io::Error::from_raw_os_error(ret))
        } else {
            Ok(())
        }
    }

    /// Makes `cmd` unblock these signals in the child, between fork and
    /// exec: a signal mask survives exec, and the command must start with
    /// the signals shmguard blocked for itself deliverable.
    pub fn unblock_in(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let set = self.0;
        // SAFETY: the closure runs in the forked child before exec; it makes
        // one async-signal-safe call (pthread_sigmask) on a copied set and
        // neither allocates nor takes locks.
        unsafe {
            cmd.pre_exec(move || {
                let ret = libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                if ret != 0 {
                    return Err(io::Error::from_raw_os_error(ret));
                }
                Ok(())
            })
        };
    }

    /// Waits for one of these (blocked) signals; returns its number and
    /// whether the kernel itself sent it (`SI_KERNEL`: a terminal's
    /// interrupt, quit or hang-up key, delivered to the whole foreground
    /// process group at once).
    pub fn wait(&self) -> io::Result<(i32, bool)> {
        loop {
            // SAFETY: siginfo_t is plain data; sigwaitinfo fills it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid set and a pointer to our local siginfo_t.
            let signo = unsafe { libc::sigwaitinfo(&self.0, &mut info) };
            if signo >= 0 {
                return Ok((signo, info.si_code == libc::SI_KERNEL));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// Waits until some child has exited, without reaping it (`waitid` with
/// `WNOWAIT`): the zombie keeps its pid (and its /proc entry) until
/// [`reap`]. `None` when there are no children left (`ECHILD`).
pub fn wait_any_exited() -> io::Result<Option<u32>> {
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: a pointer to our local siginfo_t; P_ALL ignores the id.
        let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if ret == 0 {
            // SAFETY: waitid succeeded for WEXITED, so the sigchld fields
            // (si_pid) are the ones the kernel filled.
            let pid = unsafe { info.si_pid() };
            return Ok(Some(pid as u32));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Reaps child `pid`, which has exited; returns its raw wait status (decode
/// it with `std::os::unix::process::ExitStatusExt::from_raw`).
pub fn reap(pid: u32) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: a pointer to our local status word.
        let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if ret >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `kill(pid, signal)`. The caller makes sure `pid` is an unreaped child of
/// ours, so it cannot have been reused by another process.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    let ret = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether a process with this pid exists in our PID namespace, as
/// `kill(pid, 0)` tells (zombies included; `EPERM` means it exists but is
/// not ours to signal). `None` when the call fails otherwise, or for pid 0
/// (which `kill` reads as our process group).
pub fn process_exists(pid: u32) -> Option<bool> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    // SAFETY: kill with signal 0 only checks; plain integers.
    let ret = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if ret == 0 {
        return Some(true);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => Some(true),
        Some(libc::ESRCH) => Some(false),
        _ => None,
    }
}

/// What `shmctl(IPC_STAT)` says about a segment (the fields `clean`
/// compares just before it removes one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    pub uid: u32,
    pub cuid: u32,
    pub mode: u32,
    pub cpid: u32,
    pub nattch: u64,
    pub ctime: i64,
}

/// `shmctl(shmid, IPC_STAT)`. The creator's pid is the kernel's number for
/// it in our PID namespace (0 when it has none there).
pub fn shm_stat(shmid: i32) -> io::Result<ShmStat> {
    // SAFETY: shmid_ds is plain data, filled by the kernel.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds to our local.
    let ret = unsafe { libc::shmctl(shmid, libc::IPC_STAT, &mut ds) };
    if ret == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(ShmStat {
        uid: ds.shm_perm.uid,
        cuid: ds.shm_perm.cuid,
        mode: u32::from(ds.shm_perm.mode),
        cpid: ds.shm_cpid as u32,
        nattch: ds.shm_nattch as u64,
        ctime: ds.shm_ctime,
    })
}

/// `shmctl(shmid, IPC_RMID)`.
pub fn shm_rmid(shmid: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer (NULL).
    let ret = unsafe { libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Clears `O_NONBLOCK` on an open file (a FIFO or device opened without
/// blocking, to be written to as usual).
pub fn set_blocking(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor the File owns; plain flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Dies of `signal` as the command did, so that our parent sees the same
/// death (a shell's loop stops on Ctrl-C): no core file, the default
/// action, the signal unblocked, then raised. Returns only if that did not
/// end the process (a signal whose default action is not to terminate).
pub fn die_of(signal: i32) {
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads our local; lowering a limit cannot fail
    // harmfully (the hard limit 0 too: we are about to die).
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
    // SAFETY: SIG_DFL is a valid disposition for any catchable signal;
    // for SIGKILL and SIGSTOP signal() fails harmlessly.
    unsafe { libc::signal(signal, libc::SIG_DFL) };
    let set = SignalSet::new(&[signal]);
    // SAFETY: a valid set; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set.0, std::ptr::null_mut()) };
    // SAFETY: raise takes an integer; the signal goes to this thread,
    // which has it unblocked now, so it is delivered before raise returns.
    unsafe { libc::raise(signal) };
}

/// A process that shares our process group (and session and cgroup) but
/// is not our child, blocks the signals `run` passes on, and tells which of
/// them are pending in it: a signal that reached `run` and the canary alike
/// was sent to the whole group (`kill -INT -PGID`, a terminal's Ctrl-C),
/// or to every process (a cgroup's kill), so the command got it too.
pub struct Canary {
    /// We write a byte: "which are pending?"
    request: std::fs::File,
    /// It answers with a 64-bit mask (bit N: signal N), after taking them.
    reply: std::fs::File,
}

impl Canary {
    /// Starts the canary: call it while this process has one thread, with
    /// `watched` blocked (the canary inherits the mask), and before
    /// becoming a child subreaper (the canary is a grandchild whose parent
    /// exits at once, so it is reparented away from us and never waited
    /// for by `run`). It exits when `run` does (end of file on `request`).
    pub fn start(watched: &[i32; 6]) -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        let (req_read, req_write) = pipe()?;
        let (rep_read, rep_write) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                close_all(&[req_read, req_write]);
                return Err(e);
            }
        };
        let watched = *watched;
        // SAFETY: we are single-threaded here (the caller's promise); the
        // child only makes async-signal-safe calls (fork, close, _exit,
        // and in the grandchild read, write, sigpending, sigtimedwait).
        let child = unsafe { libc::fork() };
        if child == -1 {
            let e = io::Error::last_os_error();
            close_all(&[req_read, req_write, rep_read, rep_write]);
            return Err(e);
        }
        if child == 0 {
            // SAFETY: as above.
            unsafe {
                if libc::fork() == 0 {
                    canary_main(req_read, rep_write, &watched);
                }
                libc::_exit(0);
            }
        }
        // Reap the intermediate child; the canary is now someone else's.
        let _ = reap(child as u32);
        close_all(&[req_read, rep_write]);
        // SAFETY: both descriptors are ours, open, and owned by nothing else.
        let (request, reply) = unsafe {
            (
                std::fs::File::from_raw_fd(req_write),
                std::fs::File::from_raw_fd(rep_read),
            )
        };
        Ok(Self { request, reply })
    }

    /// The watched signals pending in the canary (bit N: signal N), which
    /// it then takes; `None` when it does not answer within half a second.
    pub fn pending(&self) -> Option<u64> {
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        (&self.request).write_all(&[1]).ok()?;
        let mut fd = libc::pollfd {
            fd: self.reply.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, ours.
        let ready = unsafe { libc::poll(&mut fd, 1, 500) };
        if ready != 1 {
            return None;
        }
        let mut mask = [0u8; 8];
        (&self.reply).read_exact(&mut mask).ok()?;
        Some(u64::from_ne_bytes(mask))
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

fn close_all(fds: &[i32]) {
    for &fd in fds {
        // SAFETY: closing descriptors this module opened and owns.
        unsafe { libc::close(fd) };
    }
}

/// The canary's life, in a forked process of a threaded program: only
/// async-signal-safe calls, no allocation, never returns.
///
/// # Safety
/// Call only in the grandchild made by [`Canary::start`].
unsafe fn canary_main(request: i32, reply: i32, watched: &[i32; 6]) -> ! {
    // SAFETY (whole body): plain system calls on our own descriptors and
    // locals; _exit ends the process without running anything of Rust's.
    unsafe {
        // Keep nothing of the caller's open (a pipe someone reads to end
        // of file, a terminal): only our two pipe ends.
        for fd in 0..1024 {
            if fd != request && fd != reply {
                libc::close(fd);
            }
        }
        loop {
            let mut byte = 0u8;
            let n = libc::read(request, (&raw mut byte).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                libc::_exit(0);
            }
            if n < 0 {
                continue;
            }
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let mut mask = 0u64;
            for &s in watched {
                if libc::sigismember(&pending, s) == 1 {
                    mask |= 1 << s;
                    let mut one: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut one);
                    libc::sigaddset(&mut one, s);
                    let zero = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    libc::sigtimedwait(&one, std::ptr::null_mut(), &zero);
                }
            }
            let bytes = mask.to_ne_bytes();
            if libc::write(reply, bytes.as_ptr().cast(), bytes.len()) != bytes.len() as isize {
                libc::_exit(0);
            }
        }
    }
}

/// The real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's process group.
pub fn pgrp() -> u32 {
    // SAFETY: getpgrp cannot fail.
    unsafe { libc::getpgrp() as u32 }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the start
/// time in /proc/PID/stat.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes an integer.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// The index of the first `byte` in `bytes`: the C library's `memchr`,
/// vectorised, several times faster than what std offers (the audit logs'
/// reader looks for every newline of up to hundreds of megabytes).
pub fn memchr(byte: u8, bytes: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most bytes.len() bytes from the start of the
    // slice, and returns null or a pointer into them.
    let found = unsafe { libc::memchr(bytes.as_ptr().cast(), byte.into(), bytes.len()) };
    (!found.is_null()).then(|| found as usize - bytes.as_ptr() as usize)
}

/// The name of a signal as the kernel's headers spell it (`SIGTERM`,
/// `SIGPROF`, `SIGWINCH`), from nix's list of the platform's signals;
/// `SIGRTMIN+N` for a real-time signal; `signal N` for a number that is
/// no signal.
pub fn signal_name(signal: i32) -> String {
    if let Ok(s) = nix::sys::signal::Signal::try_from(signal) {
        return s.as_str().to_owned();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&signal) {
        return match signal - min {
            0 => "SIGRTMIN".to_owned(),
            n => format!("SIGRTMIN+{n}"),
        };
    }
    format!("signal {signal}")
}

#[cfg(test)]
mod tests {
    use super::signal_name;

    #[test]
    fn signal_names_come_from_the_platforms_list() {
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        // Signals a hand-written table of the common ones missed.
        assert_eq!(signal_name(libc::SIGPROF), "SIGPROF");
        assert_eq!(signal_name(libc::SIGWINCH), "SIGWINCH");
        assert_eq!(signal_name(libc::SIGVTALRM), "SIGVTALRM");
        assert_eq!(signal_name(libc::SIGURG), "SIGURG");
        assert_eq!(signal_name(libc::SIGRTMIN()), "SIGRTMIN");
        assert_eq!(signal_name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(0), "signal 0");
        assert_eq!(signal_name(200), "signal 200");
    }
}
