//! What the kernel says: the segment table (/proc/sysvipc/shm), processes
//! (/proc/PID/stat, /proc/PID/comm), boot time, user names.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

pub use shmguard::diagnose::SegmentRow;

use crate::os;

/// `shm_perm.mode` bit: marked for removal (`IPC_RMID` done, still attached).
pub const SHM_DEST: u32 = 0o1000;
/// `shm_perm.mode` bit: locked in memory (`SHM_LOCK`).
pub const SHM_LOCKED: u32 = 0o2000;

/// The kernel's segments, in the order /proc lists them.
pub fn segments() -> io::Result<Vec<SegmentRow>> {
    let text = fs::read("/proc/sysvipc/shm")?;
    Ok(shmguard::diagnose::parse_segments(&text))
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

/// The name in /proc/PID/comm (readable for zombies too), control
/// characters escaped (a thread may name itself "a\nb").
pub fn comm(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(crate::logs::printable(text.trim_end_matches('\n')))
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

/// User names by uid, from /etc/passwd.
#[derive(Debug, Default)]
pub struct Users(HashMap<u32, String>);

impl Users {
    pub fn read() -> Self {
        fs::read_to_string("/etc/passwd")
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text.lines() {
            let mut f = line.split(':');
            let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if let Ok(uid) = uid.parse::<u32>() {
                // The first entry for a uid wins, as getpwuid does.
                map.entry(uid).or_insert_with(|| name.to_owned());
            }
        }
        Self(map)
    }

    /// The user's name, or the number when /etc/passwd does not know it.
    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
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
        let users =
            Users::parse("root:x:0:0::/root:/bin/sh\nbad line\nnobody:x:65534:65534::/:/x\n");
        assert_eq!(users.name(0), "root");
        assert_eq!(users.name(65534), "nobody");
        assert_eq!(users.name(1234), "1234");
    }

    #[test]
    fn keys_and_modes() {
        assert_eq!(key_hex(0x1234), "0x00001234");
        assert_eq!(key_hex(-1), "0xffffffff");
        assert_eq!(mode_octal(0o1600), "0600");
    }
}
