//! `shmguard ls` and `shmguard clean`: the kernel's segments, with their
//! creator's command and whether that creator still lives; removing the
//! calling user's orphans.
#![forbid(unsafe_code)]

use serde::Serialize;

use crate::Failure;
use crate::kernel::{self, Creator, Creators, SHM_DEST, SHM_LOCKED, SegmentRow, Unknown, Users};
use crate::logs::printable;
use crate::os;
use crate::table::{self, exact_duration, human_age, human_size};

/// The `schema` of `ls --json`'s document.
pub const LS_SCHEMA: &str = "shmguard-ls/1";

/// One segment, as `ls` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    /// The key in hex, `0x00001234` (`0x00000000` for IPC_PRIVATE and for
    /// segments marked for removal).
    pub key: String,
    pub shmid: i32,
    /// The owner's name (or uid).
    pub owner: String,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits in octal, `0600`.
    pub mode: String,
    pub size: u64,
    pub nattch: u64,
    /// The creator's pid.
    pub cpid: u32,
    /// The pid of the last shmat/shmdt.
    pub lpid: u32,
    /// The creator's /proc/PID/comm while it lives; `null` once it is gone.
    pub creator_command: Option<String>,
    /// The creator runs (its pid exists and started before the segment was
    /// created: a reused pid does not count).
    pub creator_alive: bool,
    /// `alive`, `gone` (provably: see docs/cli.md) or `unknown`.
    pub creator: &'static str,
    /// Why the creator is unknown (`pid-namespace`, `hidden`,
    /// `proc-namespace`, `old-kernel`); `null` otherwise.
    pub creator_unknown: Option<Unknown>,
    /// Marked for removal (`IPC_RMID` done, still attached).
    pub dest: bool,
    /// Locked in memory (`SHM_LOCK`).
    pub locked: bool,
    /// `ctime`: creation, or the last `IPC_SET` (seconds since the epoch).
    pub ctime: i64,
    /// Seconds since `ctime`.
    pub age: i64,
    /// No process attached, creator provably gone, not marked for removal.
    pub orphan: bool,
}

impl Entry {
    pub fn from_row(row: &SegmentRow, users: &Users, creators: &Creators, now: i64) -> Self {
        let creator = creators.creator(row.cpid, row.ctime);
        let alive = creator == Creator::Alive;
        let creator_command = if alive {
            kernel::comm(row.cpid)
                .or_else(|| kernel::proc_stat(row.cpid).map(|s| printable(&s.comm)))
        } else {
            None
        };
        let dest = row.mode & SHM_DEST != 0;
        Self {
            key: kernel::key_hex(row.key),
            shmid: row.shmid,
            owner: users.name(row.uid),
            uid: row.uid,
            gid: row.gid,
            cuid: row.cuid,
            cgid: row.cgid,
            mode: kernel::mode_octal(row.mode),
            size: row.size,
            nattch: row.nattch,
            cpid: row.cpid,
            lpid: row.lpid,
            creator_command,
            creator_alive: alive,
            creator: match creator {
                Creator::Alive => "alive",
                Creator::Gone => "gone",
                Creator::Unknown(_) => "unknown",
            },
            creator_unknown: match creator {
                Creator::Unknown(why) => Some(why),
                _ => None,
            },
            dest,
            locked: row.mode & SHM_LOCKED != 0,
            ctime: row.ctime,
            age: now - row.ctime,
            orphan: row.nattch == 0 && creator == Creator::Gone && !dest,
        }
    }

    /// No process attached and not marked, but whether its creator lives
    /// cannot be known: never an orphan.
    fn undecided(&self) -> bool {
        self.nattch == 0 && !self.dest && self.creator_unknown.is_some()
    }

    /// The CREATOR column: `alive`, `gone`, or `unknown(WHY)`.
    fn creator_column(&self) -> String {
        match self.creator_unknown {
            Some(why) => format!("unknown({})", why.word()),
            None => self.creator.to_owned(),
        }
    }

    fn status(&self) -> String {
        let mut s = Vec::new();
        if self.dest {
            s.push("dest");
        }
        if self.locked {
            s.push("locked");
        }
        if self.orphan {
            s.push("orphan");
        }
        if self.undecided() {
            s.push("unknown");
        }
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.join(",")
        }
    }
}

fn entries() -> Result<Vec<Entry>, Failure> {
    let rows = kernel::segments()
        .map_err(|e| Failure::new(1, format!("cannot read /proc/sysvipc/shm: {e}")))?;
    let users = Users::read();
    let creators = Creators::read();
    let now = kernel::now_secs();
    Ok(rows
        .iter()
        .map(|r| Entry::from_row(r, &users, &creators, now))
        .collect())
}

/// `shmguard ls`.
pub fn ls(orphans: bool, json: bool, human: bool) -> Result<i32, Failure> {
    let list: Vec<Entry> = entries()?
        .into_iter()
        .filter(|e| !orphans || e.orphan)
        .collect();
    if json {
        let doc = serde_json::json!({ "schema": LS_SCHEMA, "segments": list });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| Failure::new(1, e.to_string()))?
        );
        return Ok(0);
    }
    let header = [
        "KEY", "SHMID", "OWNER", "PERMS", "SIZE", "NATTCH", "CPID", "CREATOR", "STATUS", "AGE",
        "COMMAND",
    ];
    let rows: Vec<[String; 11]> = list
        .iter()
        .map(|e| {
            [
                e.key.clone(),
                e.shmid.to_string(),
                printable(&e.owner),
                format!("{:o}", u32::from_str_radix(&e.mode, 8).unwrap_or(0)),
                if human {
                    human_size(e.size)
                } else {
                    e.size.to_string()
                },
                e.nattch.to_string(),
                e.cpid.to_string(),
                e.creator_column(),
                e.status(),
                human_age(e.age),
                e.creator_command
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), printable),
            ]
        })
        .collect();
    // Numbers (shmid, size, attachments, creator pid, age) align right,
    // words left.
    use table::Align::{Left, Right};
    let align = [
        Left, Right, Left, Left, Right, Right, Right, Left, Left, Right, Left,
    ];
    print!("{}", table::render(&header, &rows, &align));
    Ok(0)
}

/// `shmguard clean`.
pub fn clean(orphans: bool, older_than: Option<u64>, yes: bool) -> Result<i32, Failure> {
    if !orphans {
        return Err(Failure::new(
            2,
            "clean removes only orphaned segments and needs --orphans to say so \
             (no process attached, creator gone, not marked for removal); see shmguard clean --help"
                .to_owned(),
        ));
    }
    let euid = os::euid();
    let all = entries()?;
    let old_enough = |e: &Entry| older_than.is_none_or(|d| i128::from(e.age) > i128::from(d));
    let (mine, others): (Vec<&Entry>, Vec<&Entry>) = all
        .iter()
        .filter(|e| e.orphan && old_enough(e))
        .partition(|e| e.uid == euid);
    let undecided = all
        .iter()
        .filter(|e| e.uid == euid && e.undecided() && old_enough(e))
        .count();
    let describe = |e: &Entry| {
        format!(
            "shmid={} key={} size={} owner={} created by pid {}, {} old",
            e.shmid,
            e.key,
            e.size,
            printable(&e.owner),
            e.cpid,
            human_age(e.age)
        )
    };
    let age_note = older_than
        .map(|s| format!(" older than {}", exact_duration(s)))
        .unwrap_or_default();
    let mut failed = 0;
    let mut removed = 0;
    if !yes {
        for e in &mine {
            println!("would remove {}", describe(e));
        }
    } else {
        let creators = Creators::read();
        for e in &mine {
            match remove_if_still_orphan(e, euid, &creators) {
                Ok(true) => {
                    removed += 1;
                    println!("removed {}", describe(e));
                }
                Ok(false) => println!(
                    "kept shmid={}: it changed since it was listed (attached, removed or replaced)",
                    e.shmid
                ),
                Err(why) => {
                    failed += 1;
                    eprintln!("shmguard: cannot remove shmid={}: {why}", e.shmid);
                }
            }
        }
    }
    let mut users = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; {} of other users left alone",
            segments(others.len(), "orphaned segment")
        )
    };
    if undecided > 0 {
        users.push_str(&format!(
            "; {} of uid {euid} whose creator cannot be known \
             left alone (shmguard ls says why)",
            segments(undecided, "unattached segment")
        ));
    }
    if !yes {
        if mine.is_empty() {
            println!("no orphaned segments of uid {euid}{age_note} to remove{users}");
        } else {
            println!(
                "dry run: {} of uid {euid}{age_note} would be removed{users}; \
                 run again with --yes to remove {}",
                segments(mine.len(), "orphaned segment"),
                if mine.len() == 1 { "it" } else { "them" }
            );
        }
    } else {
        println!(
            "removed {} of uid {euid}{age_note}{users}",
            segments(removed, "orphaned segment")
        );
    }
    Ok(if failed > 0 { 1 } else { 0 })
}

/// `N WHAT` or `N WHATs`: `1 orphaned segment`, `2 orphaned segments`.
fn segments(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Removes `e` if, read again just now with `IPC_STAT`, it is still the
/// same segment (same owner, creator uid, creator pid and ctime), still
/// ours, unattached, unmarked, and its creator still provably gone. The
/// kernel has no "remove if unattached", so a process attaching in the
/// instant between this check and `IPC_RMID` keeps its attachment and the
/// segment goes away when it detaches.
fn remove_if_still_orphan(e: &Entry, euid: u32, creators: &Creators) -> Result<bool, String> {
    let now = match os::shm_stat(e.shmid) {
        Ok(st) => st,
        Err(err) if err.raw_os_error() == Some(libc::EACCES) => {
            // A segment its owner may not read (mode 0200, 0000): the
            // kernel's table says the same without a permission check.
            let rows = kernel::segments()
                .map_err(|err| format!("cannot read /proc/sysvipc/shm: {err}"))?;
            let Some(row) = rows.iter().find(|r| r.shmid == e.shmid) else {
                return Ok(false);
            };
            os::ShmStat {
                uid: row.uid,
                cuid: row.cuid,
                mode: row.mode,
                cpid: row.cpid,
                nattch: row.nattch,
                ctime: row.ctime,
            }
        }
        Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)) => {
            return Ok(false);
        }
        Err(err) => return Err(format!("IPC_STAT: {err}")),
    };
    let same = now.cpid == e.cpid && now.ctime == e.ctime && now.cuid == e.cuid;
    let still_orphan = now.nattch == 0
        && now.mode & SHM_DEST == 0
        && creators.creator(now.cpid, now.ctime) == Creator::Gone;
    if !(same && still_orphan && now.uid == euid) {
        return Ok(false);
    }
    match os::shm_rmid(e.shmid) {
        Ok(()) => Ok(true),
        Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::EIDRM)) => Ok(false),
        Err(err) => Err(err.to_string()),
    }
}
