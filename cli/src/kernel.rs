//! What the kernel says: the segment table (/proc/sysvipc/shm), processes
//! (/proc/PID/stat, /proc/PID/comm), boot time, user names.
#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

pub use shmguard::support::SegmentRow;

use crate::os;

/// `shm_perm.mode` bit: marked for removal (`IPC_RMID` done, still attached).
pub const SHM_DEST: u32 = 0o1000;
/// `shm_perm.mode` bit: locked in memory (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;

/// The kernel's segments, in the order /proc lists them.
pub fn segments() -> io::Result<Vec<SegmentRow>> {
    let text = fs::read("/proc/sysvipc/shm")?;
    Ok(shmguard::support::parse_segments(&text))
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A process as /proc/PID/stat shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The command name between the parentheses (also /proc/PID/comm).
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses the text of /proc/PID/stat. The command name may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    Some(ProcStat {
        pid,
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// /proc/PID/stat of a live (or zombie) process.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    if pid == 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The `btime` line of /proc/stat: boot time in seconds since the epoch.
pub fn parse_btime(text: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Facts needed to tell whether a segment's creator still lives.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Boot time, seconds since the epoch.
    pub btime: i64,
    /// Clock ticks per second.
    pub ticks: u64,
}

impl Clock {
    pub fn read() -> Self {
        let btime = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_btime(&t))
            .unwrap_or(0);
        Self {
            btime,
            ticks: os::clock_ticks(),
        }
    }

    /// A process's start, in whole seconds since the epoch (rounded down,
    /// and `btime` is itself rounded down, so never later than the truth).
    pub fn start_secs(&self, stat: &ProcStat) -> i64 {
        self.btime + (stat.start_ticks / self.ticks.max(1)) as i64
    }

    /// Whether `stat` can be the process that created a segment whose
    /// `ctime` is `ctime`: it must be running (not a zombie) and must have
    /// started no later than the segment's creation, or the pid has been
    /// reused by a newer process.
    pub fn is_creator(&self, stat: &ProcStat, ctime: i64) -> bool {
        !matches!(stat.state, 'Z' | 'X' | 'x') && self.start_secs(stat) <= ctime
    }

    /// Whether the creator `cpid` of a segment with `ctime` still lives.
    pub fn creator_alive(&self, cpid: u32, ctime: i64) -> bool {
        proc_stat(cpid).is_some_and(|s| self.is_creator(&s, ctime))
    }
}

/// Why a segment's creator can be neither shown alive nor known gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unknown {
    /// `cpid` is 0: the creator ran in a PID namespace that has no number
    /// for it in ours (an ancestor or a sibling: a container sharing the
    /// IPC namespace with its host, a sandbox).
    #[serde(rename = "pid-namespace")]
    OtherPidNamespace,
    /// A process with that pid exists, but /proc hides it from us
    /// (`hidepid`), so whether it is the creator cannot be checked.
    Hidden,
    /// Our /proc belongs to another PID namespace than ours (`unshare
    /// --pid` without a new /proc): its entries are not our pids.
    ProcNamespace,
    /// Kernels before 4.17 record `cpid` in the creator's own PID
    /// namespace, untranslated: the number may name another process.
    OldKernel,
    /// A live process has the pid but seems to have started after the
    /// segment was made: a newer process that reused the pid, or the
    /// creator itself after the wall clock was set forward (a process's
    /// start is known only as boot time plus ticks, and boot time moves
    /// with every clock step, while the segment's ctime does not). Which
    /// of the two cannot be proven.
    PidInUse,
}

impl Unknown {
    /// A short word for `ls`'s CREATOR column.
    pub fn word(self) -> &'static str {
        match self {
            Unknown::OtherPidNamespace => "pid-namespace",
            Unknown::Hidden => "hidden",
            Unknown::ProcNamespace => "proc-namespace",
            Unknown::OldKernel => "old-kernel",
            Unknown::PidInUse => "pid-in-use",
        }
    }
}

/// What is known of a segment's creator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    /// It runs (or may: a live process with its pid started no later than
    /// the segment's ctime).
    Alive,
    /// It is provably gone: no process has its pid in our namespace, or
    /// the process with its pid is a zombie.
    Gone,
    /// It cannot be known.
    Unknown(Unknown),
}

/// The facts, read once, that tell what a segment's creator is.
#[derive(Clone, Copy, Debug)]
pub struct Creators {
    pub clock: Clock,
    /// /proc shows our own PID namespace (its pids are ours).
    pub proc_is_ours: bool,
    /// The kernel translates `cpid` into the reader's PID namespace (4.17
    /// and later: it keeps the creator's `struct pid`).
    pub translated: bool,
}

impl Creators {
    pub fn read() -> Self {
        Self {
            clock: Clock::read(),
            proc_is_ours: proc_is_ours(),
            translated: kernel_at_least(4, 17),
        }
    }

    /// What the creator `cpid` of a segment with `ctime` is.
    ///
    /// `cpid` as /proc/sysvipc/shm and `IPC_STAT` give it is the creator's
    /// pid in our PID namespace, or 0 when it has none there. A pid that
    /// `kill(pid, 0)` does not find (ESRCH) is no process of our namespace
    /// or of those below it, so the creator is gone, whatever /proc shows.
    /// A pid that exists is the creator if it started no later than the
    /// segment's ctime (that needs its /proc entry); one that seems to have
    /// started later may still be it, after a clock step (see
    /// [`Unknown::PidInUse`]): a live process never makes its pid's
    /// segments orphans.
    pub fn creator(&self, cpid: u32, ctime: i64) -> Creator {
        if cpid == 0 {
            return Creator::Unknown(Unknown::OtherPidNamespace);
        }
        let exists = os::process_exists(cpid);
        if !self.translated {
            // The number may be another namespace's: only a live process
            // that could be the creator answers anything.
            return match (self.proc_is_ours, proc_stat(cpid)) {
                (true, Some(s)) if self.clock.is_creator(&s, ctime) => Creator::Alive,
                _ => Creator::Unknown(Unknown::OldKernel),
            };
        }
        match exists {
            Some(false) => return Creator::Gone,
            None => return Creator::Unknown(Unknown::Hidden),
            Some(true) => {}
        }
        if !self.proc_is_ours {
            return Creator::Unknown(Unknown::ProcNamespace);
        }
        let Some(stat) = proc_stat(cpid) else {
            // It exited in between, or /proc hides it.
            return match os::process_exists(cpid) {
                Some(false) => Creator::Gone,
                _ => Creator::Unknown(Unknown::Hidden),
            };
        };
        if matches!(stat.state, 'Z' | 'X' | 'x') && threads(cpid) == Some(1) {
            // A zombie (not a thread-group leader whose other threads
            // still run): the creator, or a process that reused its pid
            // after it died; gone either way.
            return Creator::Gone;
        }
        if self.clock.start_secs(&stat) > ctime {
            // A newer process, or the creator after a clock step.
            return Creator::Unknown(Unknown::PidInUse);
        }
        Creator::Alive
    }
}

/// The `Threads:` count of /proc/PID/status.
fn threads(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether /proc is the /proc of our own PID namespace: the `NSpid` line
/// of /proc/self/status lists our pid in every namespace from /proc's
/// down to ours, so it is ours when it holds one pid, our own.
pub fn proc_is_ours() -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let me = std::process::id().to_string();
    match text.lines().find_map(|l| l.strip_prefix("NSpid:")) {
        Some(pids) => pids.split_whitespace().eq([me.as_str()]),
        // Kernels before 4.1 have no NSpid: compare /proc/self.
        None => fs::read_link("/proc/self").is_ok_and(|p| p.as_os_str() == me.as_str()),
    }
}

/// Whether the running kernel's version is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(text) = fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return true;
    };
    parse_release(&text).is_none_or(|v| v >= (major, minor))
}

/// `6.1.0-13-amd64` -> (6, 1).
fn parse_release(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The name in /proc/PID/comm (readable for zombies too), control
/// characters escaped (a thread may name itself "a\nb").
pub fn comm(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(crate::logs::printable(text.trim_end_matches('\n')))
}

/// The real, effective, saved and file-system user ids of a process (a
/// zombie's too), from the `Uid:` line of /proc/PID/status.
pub fn uids(pid: u32) -> Vec<u32> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("Uid:").map(|v| {
                    v.split_whitespace()
                        .filter_map(|u| u.parse().ok())
                        .collect()
                })
            })
        })
        .unwrap_or_default()
}

/// Pids whose parent is `parent` (scans /proc).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// The most recently allocated pid (the last field of /proc/loadavg).
pub fn last_pid() -> Option<u32> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_ascii_whitespace().last()?.parse().ok()
}

/// `/proc/sys/kernel/pid_max`.
pub fn pid_max() -> Option<u32> {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The inode of /proc/self/ns/ipc: which IPC namespace we see.
pub fn ipc_namespace() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/ipc").ok().map(|m| m.ino())
}

/// User names by uid, through the C library's name service switch
/// (`getpwuid_r`): /etc/passwd, and LDAP, sssd, systemd's users or
/// whatever else /etc/nsswitch.conf names. Each uid is looked up once.
#[derive(Debug, Default)]
pub struct Users(RefCell<HashMap<u32, Option<String>>>);

impl Users {
    /// An empty cache: names are looked up when first asked for.
    pub fn read() -> Self {
        Self::default()
    }

    /// The user's name, or the number when the name service does not know
    /// it (or fails: a name is a nicety, never a reason to fail).
    pub fn name(&self, uid: u32) -> String {
        self.0
            .borrow_mut()
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
            .unwrap_or_else(|| uid.to_string())
    }
}

/// A key as `ipcs` prints it: `0x` and eight hex digits.
pub fn key_hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// Permission bits in octal, `0600`.
pub fn mode_octal(mode: u32) -> String {
    format!("0{:03o}", mode & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name() {
        let text = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10 1 2 3\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_ticks, 987654);
    }

    #[test]
    fn our_own_stat_is_read() {
        let me = proc_stat(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        let clock = Clock::read();
        assert!(clock.btime > 0);
        // We started before now, so we could be the creator of a segment
        // made now, and not of one made before boot.
        assert!(clock.is_creator(&me, now_secs()));
        assert!(!clock.is_creator(&me, clock.btime - 1));
    }

    #[test]
    fn btime_and_users() {
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"),
            Some(1700000000)
        );
        let users = Users::read();
        assert_eq!(users.name(0), "root");
        // No user has uid 3999999999.
        assert_eq!(users.name(3_999_999_999), "3999999999");
    }

    #[test]
    fn releases_and_our_proc() {
        assert_eq!(parse_release("6.1.0-13-amd64\n"), Some((6, 1)));
        assert_eq!(parse_release("4.17.0"), Some((4, 17)));
        assert_eq!(parse_release("x"), None);
        // The tests run with the /proc of their own namespace.
        assert!(proc_is_ours());
        let c = Creators::read();
        let me = proc_stat(std::process::id()).unwrap();
        assert_eq!(
            c.creator(std::process::id(), c.clock.start_secs(&me)),
            Creator::Alive
        );
        // Started after a segment made before boot: a reused pid, or
        // the creator after a clock step; not provably gone.
        assert_eq!(
            c.creator(std::process::id(), c.clock.btime - 1),
            Creator::Unknown(Unknown::PidInUse)
        );
        assert_eq!(
            c.creator(0, now_secs()),
            Creator::Unknown(Unknown::OtherPidNamespace)
        );
    }

    #[test]
    fn keys_and_modes() {
        assert_eq!(key_hex(0x1234), "0x00001234");
        assert_eq!(key_hex(-1), "0xffffffff");
        assert_eq!(mode_octal(0o1600), "0600");
    }
}
