//! Names the command shows. User names come from the C library's name
//! service switch (getpwuid_r), not from reading /etc/passwd by hand: a
//! user that only a name service module knows (as with LDAP or sssd) is
//! shown by name. Signal names come from the platform's list, not from a
//! table of the common ones: a command killed by SIGPROF is reported as
//! such, not as "signal 27".
//!
//! Deterministic stand-in for such a directory: in a private mount
//! namespace, /etc/passwd without `nobody` and an /etc/nsswitch.conf of
//! `passwd: files systemd`; systemd's NSS module (libnss-systemd, which
//! .ci/run installs) always knows `nobody` (uid 65534), so only a lookup
//! through NSS finds the name. The segment lives in the test's private IPC
//! namespace, which `unshare` also makes, and goes with it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn ls_names_a_user_only_nss_knows() {
    let ldconfig = Command::new("ldconfig")
        .arg("-p")
        .output()
        .expect("run ldconfig -p");
    let nss_systemd = String::from_utf8_lossy(&ldconfig.stdout).contains("libnss_systemd.so.2");
    assert!(
        nss_systemd,
        "libnss_systemd.so.2 is missing (apt-get install libnss-systemd; .ci/run does)"
    );
    let dir = Dir::reachable("nss");
    let passwd: String = std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .filter(|l| l.split(':').nth(2) != Some("65534"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("passwd"), passwd).unwrap();
    std::fs::write(
        dir.path().join("nsswitch.conf"),
        "passwd: files systemd\ngroup: files systemd\n",
    )
    .unwrap();
    let script = format!(
        "set -e
         mount --make-rprivate /
         mount --bind {d}/passwd /etc/passwd
         mount --bind {d}/nsswitch.conf /etc/nsswitch.conf
         if awk -F: '$3 == 65534' /etc/passwd | grep -q .; then echo 'nobody still in /etc/passwd' >&2; exit 3; fi
         {helper} keep 4096 65534 </dev/null
         {shmguard} ls",
        d = s(dir.path()),
        helper = s(&helper()),
        shmguard = s(&shmguard()),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--ipc", "--", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let shmid = text.lines().next().unwrap().trim().to_owned();
    let row = text
        .lines()
        .skip(1)
        .find(|l| l.split_whitespace().nth(1) == Some(shmid.as_str()))
        .unwrap_or_else(|| panic!("no row for shmid {shmid}:\n{}", show(&out)));
    assert_eq!(
        row.split_whitespace().nth(2),
        Some("nobody"),
        "the owner is not named through NSS:\n{}",
        show(&out)
    );
}

#[test]
fn run_names_every_signal() {
    let _serial = serial();
    let out = Command::new(shmguard())
        .arg("run")
        .arg("--lib")
        .arg(library())
        .args(["--", "sh", "-c", "kill -PROF $$"])
        .output()
        .expect("run shmguard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(": SIGPROF") && !stderr.contains("signal 27"),
        "{}",
        show(&out)
    );
}
