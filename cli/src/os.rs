//! The few process-control system calls std does not offer: becoming a
//! child subreaper, waiting for any descendant, signal masks, `kill`,
//! System V `IPC_STAT` and `IPC_RMID`, random bytes, and two
//! `sysconf`-style facts; and the C library's `memchr`.
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

/// Fills `buf` with random bytes from the kernel (`getrandom(2)`).
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most rest.len() bytes into rest.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
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

/// The name of a signal, `SIGTERM`, or `signal N` for one without a name
/// here.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_owned()
}
