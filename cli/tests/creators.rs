//! `ls` and `clean --orphans` when the creator of a segment cannot be seen:
//! a creator in another PID namespace that shares the IPC namespace, a
//! creator that /proc hides (`hidepid=2`), and a creator whose pid was
//! reused. A creator counts as gone only when that is known; otherwise the
//! segment is "unknown", never an orphan, and `clean --yes` keeps it.
//!
//! Each test has a private IPC namespace (common::serial) and makes the
//! PID and mount namespaces it needs with unshare (root).

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// Starts `cmd` (which ends with the helper's `keep`), reads the shmid it
/// prints; the process keeps running (and the segment unattached) until
/// dropped.
fn keep(segs: &mut Segments, cmd: &mut Command) -> (Running, i32) {
    let (running, id, _) = spawn_printing_shmid(segs, cmd);
    (running, id)
}

fn entry(out: &Output, shmid: i32) -> Value {
    assert!(out.status.success(), "{}", show(out));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ls --json: {e}\n{}", show(out)));
    assert_eq!(doc["schema"], "shmguard-ls/1", "{}", show(out));
    let list: Vec<Value> = serde_json::from_value(doc["segments"].clone())
        .unwrap_or_else(|e| panic!("ls --json: {e}\n{}", show(out)));
    list.into_iter()
        .find(|e| e["shmid"] == shmid)
        .unwrap_or_else(|| panic!("ls lacks {shmid}\n{}", show(out)))
}

fn in_child_pid_namespace(args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(shmguard())
        .args(args)
        .output()
        .expect("run unshare (util-linux)")
}

#[test]
fn a_creator_in_an_outer_pid_namespace_is_unknown_not_gone() {
    let _serial = serial();
    let mut segs = Segments::default();
    let (_keeper, id) = keep(&mut segs, Command::new(helper()).args(["keep", "4096"]));
    // Seen from a child PID namespace that shares the IPC namespace (a
    // sandbox, a container with the host's IPC), the creator has no pid:
    // cpid reads 0.
    let e = entry(&in_child_pid_namespace(&["ls", "--json"]), id);
    assert_eq!(e["cpid"], 0, "{e}");
    assert_eq!(e["creator"], "unknown", "{e}");
    assert_eq!(e["creator_unknown"], "pid-namespace", "{e}");
    assert_eq!(e["orphan"], false, "{e}");
    let out = in_child_pid_namespace(&["clean", "--orphans", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        exists(id),
        "clean removed a live creator's segment\n{}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("whose creator cannot be known"),
        "{}",
        show(&out)
    );
    // And `ls` says why in its text too.
    let out = in_child_pid_namespace(&["ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unknown(pid-namespace)"), "{text}");
}

#[test]
fn a_creator_in_an_inner_pid_namespace_is_seen_alive() {
    let _serial = serial();
    let mut segs = Segments::default();
    let (_keeper, id) = keep(
        &mut segs,
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--"])
            .arg(helper())
            .args(["keep", "4096"]),
    );
    // Its pid in the child namespace is small; the kernel gives us its pid
    // in ours, and that process lives.
    let e = entry(&shmguard_cmd(&["ls", "--json"]), id);
    assert_eq!(e["creator"], "alive", "{e}");
    let out = shmguard_cmd(&["clean", "--orphans", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(exists(id), "{}", show(&out));
}

#[test]
fn a_creator_hidden_by_hidepid_is_unknown_not_gone() {
    let _serial = serial();
    let mut segs = Segments::default();
    // Made by a root process as effective uid nobody: owned by nobody,
    // whose /proc under hidepid=2 does not show the (root) creator, and
    // who may not signal it (kill says EPERM: it exists).
    let (_keeper, id) = keep(
        &mut segs,
        Command::new(helper()).args(["keep", "4096", "65534"]),
    );
    let as_nobody_with_hidepid = |args: &str| {
        let script = format!(
            "mount -t proc -o hidepid=2 proc /proc && \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups {} {args}",
            shmguard().display()
        );
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .output()
            .expect("run unshare");
        assert!(out.status.success(), "hidepid=2 as nobody: {}", show(&out));
        out
    };
    let e = entry(&as_nobody_with_hidepid("ls --json"), id);
    assert_eq!(e["uid"], 65534, "{e}");
    assert_eq!(e["creator"], "unknown", "{e}");
    assert_eq!(e["creator_unknown"], "hidden", "{e}");
    assert_eq!(e["orphan"], false, "{e}");
    let out = as_nobody_with_hidepid("clean --orphans --yes");
    assert!(
        exists(id),
        "clean removed a live creator's segment\n{}",
        show(&out)
    );
}

#[test]
fn a_reused_pid_is_not_the_creator() {
    let _serial = serial();
    let mut segs = Segments::default();
    // In a PID namespace of its own, the creator exits, and a process
    // started later is given the same pid (ns_last_pid). The start times
    // say the pid was reused, but they are wall-clock estimates that a
    // clock step can fake (see the next test): the creator is unknown
    // (pid-in-use), never an orphan, and clean keeps the segment. Once the
    // reuser is gone, the creator is provably gone and clean removes it.
    let script = format!(
        r#"set -e
id=$({h} create 4096)
echo "ID $id"
cpid=$(awk -v id="$id" 'NR > 1 && $2 == id {{ print $5 }}' /proc/sysvipc/shm)
sleep 1.2
echo $((cpid - 1)) > /proc/sys/kernel/ns_last_pid
sleep 30 &
reuser=$!
if [ "$reuser" != "$cpid" ]; then echo "NO-REUSE $reuser $cpid"; kill $reuser; exit 3; fi
echo "LS $({s} ls --json | tr -d '\n')"
{s} clean --orphans --yes
kill $reuser
wait $reuser || true
echo "AFTER"
{s} clean --orphans --yes
"#,
        h = helper().display(),
        s = shmguard().display()
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if let Some(id) = text.lines().find_map(|l| l.strip_prefix("ID ")) {
        segs.add(id.trim().parse().unwrap());
    }
    assert!(out.status.success(), "{}", show(&out));
    let id: i32 = text
        .lines()
        .find_map(|l| l.strip_prefix("ID "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ls = text.lines().find_map(|l| l.strip_prefix("LS ")).unwrap();
    let doc: Value = serde_json::from_str(ls).unwrap();
    let list = doc["segments"].as_array().unwrap();
    let e = list.iter().find(|e| e["shmid"] == id).unwrap();
    assert_eq!(e["creator"], "unknown", "{e}");
    assert_eq!(e["creator_unknown"], "pid-in-use", "{e}");
    assert_eq!(e["orphan"], false, "{e}");
    let (before, after) = text.split_once("AFTER").unwrap();
    assert!(!before.contains(&format!("removed shmid={id} ")), "{text}");
    assert!(after.contains(&format!("removed shmid={id} ")), "{text}");
    assert!(!exists(id));
}

#[test]
fn a_live_creator_stays_alive_after_the_clock_is_set_forward() {
    let _serial = serial();
    let mut segs = Segments::default();
    let (_keeper, id) = keep(&mut segs, Command::new(helper()).args(["keep", "4096"]));
    // Setting the wall clock forward (an NTP step at boot, `date -s`, a
    // VM resumed from a snapshot) moves /proc/stat's btime by the same
    // amount, while the segment's ctime keeps the wall-clock time of its
    // creation: a creator's start computed from btime then looks later
    // than its segment. Simulated without touching the machine's clock:
    // a /proc/stat whose btime is one hour later, bind-mounted in a
    // private mount namespace. The creator still runs: its segment is no
    // orphan, and clean must keep it.
    let dir = Dir::new("clock-step");
    let fake = dir.path().join("stat");
    let script = format!(
        "awk '/^btime /{{$2 = $2 + 3600}} {{print}}' /proc/stat > {f} && \
         mount --bind {f} /proc/stat && {s} ls --json && {s} clean --orphans --yes >&2",
        f = fake.display(),
        s = shmguard().display()
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .expect("run unshare");
    let e = entry(&out, id);
    assert_ne!(e["creator"], "gone", "{e}");
    assert_eq!(e["orphan"], false, "{e}");
    assert!(
        exists(id),
        "clean removed a live creator's segment\n{}",
        show(&out)
    );
}
