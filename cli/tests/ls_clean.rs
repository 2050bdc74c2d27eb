//! `shmguard ls` against the kernel (/proc/sysvipc/shm and `ipcs -m`), and
//! `shmguard clean --orphans`: the dry run keeps, `--yes` removes only the
//! caller's orphans, never a segment in use or another user's, and
//! `--older-than` respects age.
//!
//! `clean --yes` runs as a dedicated uid (no /etc/passwd entry needed), so
//! it can never remove an orphan someone else on this machine left as root.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::*;
use serde_json::Value;

/// The uid `clean --yes` runs as: nobody else's segments carry it.
const OWN: u32 = 64_321;
/// Another user.
const NOBODY: u32 = 65_534;

fn ls_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["ls", "--json"];
    all.extend_from_slice(args);
    let out = shmguard_cmd(&all);
    assert!(out.status.success(), "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ls --json: {e}\n{}", show(&out)));
    serde_json::from_value(doc["segments"].clone())
        .unwrap_or_else(|e| panic!("ls --json: {e}\n{}", show(&out)))
}

fn find(list: &[Value], shmid: i32) -> Option<&Value> {
    list.iter().find(|e| e["shmid"] == shmid)
}

/// `ipcs` output rows whose column `id_col` equals `shmid`.
fn ipcs_row(args: &[&str], shmid: i32, id_col: usize) -> Vec<String> {
    let out = Command::new("ipcs").args(args).output().expect("run ipcs");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|f| f.get(id_col) == Some(&shmid.to_string()))
        .unwrap_or_else(|| panic!("ipcs {args:?} does not list {shmid}"))
}

/// A key unlikely to be in use, different per test run.
fn test_key() -> i32 {
    0x5347_0000 | (std::process::id() as i32 & 0xffff)
}

#[test]
fn ls_agrees_with_proc_and_ipcs() {
    let _serial = serial();
    let mut segs = Segments::default();
    let orphan = make(&mut segs, None, &["fork-orphan", "12345"])[0];
    let keyed = make(
        &mut segs,
        None,
        &["create", "4096", &test_key().to_string()],
    )[0];
    let (_held_proc, held) = hold(&mut segs, None);

    let list = ls_json(&[]);
    let proc: HashMap<String, HashMap<String, String>> = proc_table()
        .into_iter()
        .map(|r| (r["shmid"].clone(), r))
        .collect();
    for id in [orphan, keyed, held] {
        let e = find(&list, id).unwrap_or_else(|| panic!("ls --json lacks {id}"));
        let p = &proc[&id.to_string()];
        let key: i32 = p["key"].parse().unwrap();
        assert_eq!(e["key"], format!("0x{:08x}", key as u32), "{id}");
        for (json, procname) in [
            ("size", "size"),
            ("nattch", "nattch"),
            ("cpid", "cpid"),
            ("lpid", "lpid"),
            ("uid", "uid"),
            ("gid", "gid"),
            ("cuid", "cuid"),
            ("cgid", "cgid"),
            ("ctime", "ctime"),
        ] {
            assert_eq!(e[json].to_string(), p[procname], "{id}: {json}");
        }
        let perms = u32::from_str_radix(&p["perms"], 8).unwrap();
        assert_eq!(e["mode"], format!("0{:03o}", perms & 0o777), "{id}");
        assert_eq!(e["dest"], false);
        assert_eq!(e["owner"], "root");

        // ipcs -m: key shmid owner perms bytes nattch
        let i = ipcs_row(&["-m"], id, 1);
        assert_eq!(e["key"], i[0], "{id}: key");
        assert_eq!(e["owner"], i[2], "{id}: owner");
        assert_eq!(
            u32::from_str_radix(&i[3], 8).unwrap(),
            u32::from_str_radix(e["mode"].as_str().unwrap(), 8).unwrap()
        );
        assert_eq!(e["size"].to_string(), i[4], "{id}: bytes");
        assert_eq!(e["nattch"].to_string(), i[5], "{id}: nattch");
        // ipcs -m -p: shmid owner cpid lpid
        let i = ipcs_row(&["-m", "-p"], id, 0);
        assert_eq!(e["cpid"].to_string(), i[2], "{id}: cpid");
        assert_eq!(e["lpid"].to_string(), i[3], "{id}: lpid");
    }
    assert_eq!(
        find(&list, keyed).unwrap()["key"],
        format!("0x{:08x}", test_key())
    );

    // The forked child and the `create` helper are gone; `hold` runs.
    let o = find(&list, orphan).unwrap();
    assert_eq!(o["creator_alive"], false);
    assert_eq!(o["creator_command"], Value::Null);
    assert_eq!(o["orphan"], true);
    assert_eq!(o["size"], 12345);
    let h = find(&list, held).unwrap();
    assert_eq!(h["creator_alive"], true);
    assert_eq!(h["creator_command"], "shmhelper");
    assert_eq!(h["nattch"], 1);
    assert_eq!(h["orphan"], false);
    assert_eq!(find(&list, keyed).unwrap()["orphan"], true);

    let orphans = ls_json(&["--orphans"]);
    assert!(find(&orphans, orphan).is_some());
    assert!(find(&orphans, keyed).is_some());
    assert!(
        find(&orphans, held).is_none(),
        "a segment in use is no orphan"
    );
    assert!(orphans.iter().all(|e| e["orphan"] == true));

    // The table: the held segment's row names its live creator.
    let out = shmguard_cmd(&["ls", "--human"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&held.to_string()))
        .unwrap_or_else(|| panic!("ls lacks {held}:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[4], "8.0K", "{row}");
    assert_eq!(cols[7], "alive", "{row}");
    assert_eq!(cols[10], "shmhelper", "{row}");
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(&orphan.to_string()))
        .unwrap();
    assert!(
        row.contains(" 12K ") && row.contains(" gone ") && row.contains("orphan"),
        "{row}"
    );
}

#[test]
fn clean_needs_orphans_and_a_dry_run_keeps() {
    let _serial = serial();
    let mut segs = Segments::default();
    let out = shmguard_cmd(&["clean"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--orphans"));

    let orphan = make(&mut segs, None, &["fork-orphan", "4096"])[0];
    let others = make(&mut segs, Some(NOBODY), &["create", "4096"])[0];
    let (_held_proc, held) = hold(&mut segs, None);
    let out = shmguard_cmd(&["clean", "--orphans"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("would remove shmid={orphan} ")),
        "{text}"
    );
    assert!(!text.contains(&format!("shmid={held} ")), "{text}");
    // Root lists its own orphans only.
    assert!(!text.contains(&format!("shmid={others} ")), "{text}");
    assert!(text.contains("--yes"), "{text}");
    for id in [orphan, others, held] {
        assert!(exists(id), "the dry run removed {id}");
    }
}

fn clean_as(uid: u32, args: &[&str]) -> std::process::Output {
    as_user(uid)
        .arg(shmguard())
        .arg("clean")
        .args(args)
        .output()
        .expect("run shmguard clean")
}

#[test]
fn clean_yes_removes_only_the_callers_orphans() {
    let _serial = serial();
    let mut segs = Segments::default();
    let own_orphan = make(&mut segs, Some(OWN), &["fork-orphan", "4096"])[0];
    let (_held_proc, own_held) = hold(&mut segs, Some(OWN));
    let nobody_orphan = make(&mut segs, Some(NOBODY), &["create", "4096"])[0];
    let root_orphan = make(&mut segs, None, &["create", "4096"])[0];

    let out = clean_as(OWN, &["--orphans", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("removed shmid={own_orphan} ")),
        "{text}"
    );
    assert!(!exists(own_orphan), "{own_orphan} was not removed:\n{text}");
    for id in [own_held, nobody_orphan, root_orphan] {
        assert!(
            exists(id),
            "clean removed {id}, which is not the caller's orphan:\n{text}"
        );
        assert!(!text.contains(&format!("shmid={id} ")), "{text}");
    }
    assert!(text.contains("of other users left alone"), "{text}");

    // Nothing left to do: a second run removes nothing.
    let out = clean_as(OWN, &["--orphans", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 0 "));
}

#[test]
fn clean_older_than_respects_age() {
    let _serial = serial();
    let mut segs = Segments::default();
    let old = make(&mut segs, Some(OWN), &["create", "4096"])[0];
    std::thread::sleep(std::time::Duration::from_millis(3200));
    let young = make(&mut segs, Some(OWN), &["create", "4096"])[0];

    let out = clean_as(OWN, &["--orphans", "--older-than", "1h"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("would remove"), "{text}");

    // Durations too long for an age are usage errors, never wrapped to
    // "older than 0s" (which removed a segment 0 s old).
    for long in [
        "213503982334601d",
        "18446744073709551615",
        "9223372036854775808s",
        "106751991167301d",
        "99999999999999999999999",
    ] {
        let out = clean_as(OWN, &["--orphans", "--older-than", long, "--yes"]);
        assert_eq!(out.status.code(), Some(2), "{long}: {}", show(&out));
        assert!(exists(old) && exists(young), "{long}: {}", show(&out));
    }

    let out = clean_as(OWN, &["--orphans", "--older-than", "2s", "--yes"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!exists(old), "{old} is older than 2s:\n{text}");
    assert!(exists(young), "{young} is younger than 2s:\n{text}");

    for bad in ["2x", "-5s", "", "1.5.5h"] {
        let out = shmguard_cmd(&["clean", "--orphans", "--older-than", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", show(&out));
    }
}
