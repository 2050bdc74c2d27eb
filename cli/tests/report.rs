//! `shmguard report LOGDIR` on fixture logs written here as
//! docs/log-schema.md describes them: a server, its forked child, a worker
//! killed by SIGKILL (its file ends in NUL padding, with no exit event), and
//! a process whose leaked segment really is in the kernel.

mod common;

use std::fmt::Write as _;

use common::*;
use serde_json::Value;

/// Pids above any pid_max (4194304), so no real process has them.
const SERVER: u32 = 4_194_401;
const CHILD: u32 = 4_194_402;
const WORKER: u32 = 4_194_403;
const PARENT: u32 = 4_194_400;
/// Shmids the kernel is very unlikely to hold with these creators.
const X1: i32 = 2_000_000_001; // server: leaked, attached at exit
const X2: i32 = 2_000_000_002; // server: removed by the server
const X3: i32 = 2_000_000_003; // worker: never removed (worker killed)
const X4: i32 = 2_000_000_004; // worker: removed by the child
const X5: i32 = 2_000_000_005; // child: wide mode, removed by the child
const X6: i32 = 2_000_000_006; // server: not in its exit event: removed unseen

/// This thread's IPC namespace (`serial` may have given it its own), as the
/// library writes it in `start` events.
fn ipc_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/ipc").unwrap().ino()
}

struct Log {
    text: String,
    ts: u64,
    pid: u32,
    ppid: u32,
}

impl Log {
    fn new(pid: u32, ppid: u32, argv: &[&str], forked: bool) -> Self {
        let mut log = Self {
            text: String::new(),
            ts: 1_795_851_315_000_000_000 + u64::from(pid % 100) * 1_000_000,
            pid,
            ppid,
        };
        let argv: Vec<String> = argv.iter().map(|a| format!("\"{a}\"")).collect();
        log.event(
            "start",
            &format!(
                r#""argv":[{}],"exe":"/srv/app","uid":0,"euid":0,"ipc_ns":{},"forked":{forked}"#,
                argv.join(","),
                ipc_namespace()
            ),
        );
        log
    }

    fn event(&mut self, kind: &str, rest: &str) {
        self.ts += 1000;
        writeln!(
            self.text,
            r#"{{"v":1,"event":"{kind}","pid":{},"ppid":{},"tid":{},"ts_ns":{},{rest}}}"#,
            self.pid, self.ppid, self.pid, self.ts
        )
        .unwrap();
    }

    fn call(&mut self, rest: &str) {
        self.event("call", rest);
    }

    fn create(&mut self, shmid: i32, size: u64) {
        self.call(&format!(
            r#""call":"shmget","args":{{"key":"0x00000000","size":{size},"shmflg":"IPC_CREAT|0600"}},"ret":{shmid},"errno":null,"created":true"#
        ));
    }

    fn attach(&mut self, shmid: i32, addr: &str, size: u64) {
        self.call(&format!(
            r#""call":"shmat","args":{{"shmid":{shmid},"shmaddr":null,"shmflg":"0"}},"ret":"{addr}","errno":null,"size":{size}"#
        ));
    }

    fn rmid(&mut self, shmid: i32) {
        self.call(&format!(
            r#""call":"shmctl","args":{{"shmid":{shmid},"cmd":"IPC_RMID","buf":null}},"ret":0,"errno":null"#
        ));
    }

    fn write(&self, dir: &std::path::Path, pad: usize) {
        let mut bytes = self.text.clone().into_bytes();
        bytes.extend(std::iter::repeat_n(0u8, pad));
        std::fs::write(dir.join(format!("shmguard.{}.jsonl", self.pid)), bytes).unwrap();
    }
}

/// Writes the fixture; returns the real segment's shmid and creator pid.
fn fixture(dir: &std::path::Path, segs: &mut Segments) -> (i32, u32) {
    let mut server = Log::new(SERVER, PARENT, &["./server", "-p", "80"], false);
    server.create(X1, 4096);
    server.attach(X1, "0x7f0000001000", 4096);
    server.call(
        r#""call":"shmget","args":{"key":"0x00001234","size":8192,"shmflg":"IPC_CREAT|IPC_EXCL|0600"},"ret":2000000002,"errno":null,"created":true"#,
    );
    server.attach(X2, "0x7f0000003000", 8192);
    server.call(
        r#""call":"shmdt","args":{"shmaddr":"0x7f0000003000"},"ret":0,"errno":null,"shmid":2000000002"#,
    );
    server.rmid(X2);
    server.call(
        r#""call":"shmget","args":{"key":"0x00000000","size":0,"shmflg":"IPC_CREAT|0600"},"ret":-1,"errno":"EINVAL","detail":"size 0 is below SHMMIN (1 byte)""#,
    );
    server.create(X6, 100);
    // A later schema's event kind and field: ignored.
    server.event("rusage", r#""maxrss":1234"#);
    server.event(
        "exit",
        &format!(
            r#""leaks":[{{"kind":"segment","shmid":{X1},"key":"0x00000000","size":4096,"mode":"0600"}},{{"kind":"attachment","shmid":{X1},"addr":"0x7f0000001000","size":4096,"readonly":false}}],"notes":[],"future_field":true"#
        ),
    );
    server.write(dir, 0);

    let mut worker = Log::new(WORKER, SERVER, &["./worker"], false);
    worker.create(X3, 65536);
    worker.create(X4, 4096);
    worker.attach(X3, "0x7f0000010000", 65536);
    // Killed by SIGKILL: no exit event, the mapping's unused tail is NULs.
    worker.write(dir, 65536 - worker.text.len());

    let mut child = Log::new(CHILD, SERVER, &["./server", "-p", "80"], true);
    child.ts += 10_000_000; // after the worker's calls
    child.call(&format!(
        r#""call":"shmget","args":{{"key":"0x00000000","size":4096,"shmflg":"IPC_CREAT|0666"}},"ret":{X5},"errno":null,"created":true"#
    ));
    child.event(
        "finding",
        r#""rule":"wide-mode","call":"shmget","refused":false,"detail":"the new segment is readable and writable by others (mode 0666)""#,
    );
    child.call(&format!(
        r#""call":"shmat","args":{{"shmid":{X1},"shmaddr":null,"shmflg":"SHM_RDONLY"}},"ret":"0xffffffffffffffff","errno":"EACCES","detail":"no read permission""#
    ));
    child.rmid(X4);
    child.rmid(X5);
    child.call(&format!(
        r#""call":"shmctl","args":{{"shmid":{X1},"cmd":"IPC_STAT","buf":"0x7ffd5a1c3e40"}},"ret":0,"errno":null"#
    ));
    child.event("exit", r#""leaks":[],"notes":[]"#);
    child.write(dir, 0);

    // A real orphan, and a log saying who made it.
    let real = make(segs, None, &["create", "3000"])[0];
    let cpid: u32 = proc_table()
        .iter()
        .find(|r| r["shmid"] == real.to_string())
        .unwrap()["cpid"]
        .parse()
        .unwrap();
    let mut maker = Log::new(cpid, SERVER, &["./maker"], false);
    maker.create(real, 3000);
    maker.event(
        "exit",
        &format!(
            r#""leaks":[{{"kind":"segment","shmid":{real},"key":"0x00000000","size":3000,"mode":"0600"}}],"notes":[]"#
        ),
    );
    maker.write(dir, 0);

    // A file with nothing but padding, and one with a broken line.
    std::fs::write(dir.join("shmguard.4194499.jsonl"), vec![0u8; 4096]).unwrap();
    (real, cpid)
}

#[test]
fn report_lists_processes_and_leaks_from_logs() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("report-fixture");
    let (real, real_pid) = fixture(dir.path(), &mut segs);

    // JSON first: exact numbers.
    let out = shmguard_cmd(&["report", s(dir.path()), "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        r["warnings"],
        serde_json::json!([]),
        "the fixture is well formed"
    );
    let rows = r["processes"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        4,
        "the padding-only file is no process: {rows:?}"
    );
    let row = |pid: u32| rows.iter().find(|p| p["pid"] == pid).unwrap();
    let counts = |pid: u32| {
        let p = row(pid);
        [
            "calls",
            "failures",
            "segments_created",
            "segments_removed",
            "peak_attachments",
        ]
        .map(|k| p[k].as_u64().unwrap())
    };
    assert_eq!(counts(SERVER), [8, 1, 3, 1, 2]);
    assert_eq!(counts(CHILD), [5, 1, 1, 2, 0]);
    assert_eq!(counts(WORKER), [3, 0, 2, 0, 1]);
    assert_eq!(counts(real_pid), [1, 0, 1, 0, 0]);
    assert_eq!(
        row(SERVER)["argv"],
        serde_json::json!(["./server", "-p", "80"])
    );
    assert_eq!(row(SERVER)["ppid"], PARENT);
    assert_eq!(row(CHILD)["forked"], true);
    assert_eq!(row(WORKER)["exit_event"], false);
    assert_eq!(row(SERVER)["exit_event"], true);

    let mut leaked: Vec<(i64, u64, bool)> = r["leaked_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shmid"].as_i64().unwrap(),
                s["cpid"].as_u64().unwrap(),
                s["in_kernel"].as_bool().unwrap(),
            )
        })
        .collect();
    leaked.sort();
    let mut want = vec![
        (i64::from(X1), u64::from(SERVER), false),
        (i64::from(X3), u64::from(WORKER), false),
        (i64::from(real), u64::from(real_pid), true),
    ];
    want.sort();
    assert_eq!(leaked, want, "X2, X4, X5 were removed; X6 was gone at exit");
    let att = r["leaked_attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1);
    assert_eq!(att[0]["shmid"], X1);
    assert_eq!(att[0]["pid"], SERVER);
    assert_eq!(att[0]["addr"], "0x7f0000001000");
    let failures: Vec<(String, u64)> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["errno"].as_str().unwrap().to_owned(),
                f["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [("EACCES".to_owned(), 1), ("EINVAL".to_owned(), 1)]
    );
    assert_eq!(r["findings"][0]["rule"], "wide-mode");
    assert_eq!(r["findings"][0]["pid"], CHILD);
    assert_eq!(r["summary"]["leaks"], 4);
    assert_eq!(r["summary"]["leaked_segment_bytes"], 4096 + 65536 + 3000);
    assert!(r.get("run").is_none());

    // The text: the table's rows and one line per leak naming its shmid,
    // every line prefixed `shmguard: `.
    let out = shmguard_cmd(&["report", s(dir.path())]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().all(|l| l.starts_with("shmguard: ")), "{text}");
    let text = text.replace("shmguard: ", "");
    let table_row = |pid: u32| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(&pid.to_string()))
            .unwrap_or_else(|| panic!("no row for {pid}:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        table_row(SERVER),
        [
            "4194401", "4194400", "8", "1", "3", "1", "2", "exit", "./server", "-p", "80"
        ]
    );
    assert_eq!(
        table_row(WORKER),
        [
            "4194403", "4194401", "3", "0", "2", "0", "1", "no-exit", "./worker"
        ]
    );
    for id in [X1, X3, real] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("leak: segment") && l.contains(&format!("shmid={id} "))),
            "no leak line for {id}:\n{text}"
        );
    }
    for id in [X2, X4, X5, X6] {
        assert!(
            !text.contains(&format!("segment shmid={id} ")),
            "{id}:\n{text}"
        );
    }
    assert!(
        text.contains(&format!("leak: attachment shmid={X1} addr=0x7f0000001000")),
        "{text}"
    );
    assert!(text.contains("still in the kernel now"), "{text}");
    assert!(
        text.contains("failed calls: EACCES 1 (shmat 1); EINVAL 1 (shmget 1)"),
        "{text}"
    );
    assert!(
        text.contains("finding: wide-mode in shmget by pid 4194402"),
        "{text}"
    );
    assert!(
        text.contains("SUMMARY: 4 leaks (3 segments holding 72632 bytes, 1 attachment)"),
        "{text}"
    );

    let out = shmguard_cmd(&["report", s(dir.path()), "--fail-on-leak"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

#[test]
fn report_survives_broken_lines_and_empty_dirs() {
    let dir = Dir::new("report-broken");
    let mut log = Log::new(SERVER, PARENT, &["./x"], false);
    log.create(X1, 4096);
    log.text.push_str("this is not json\n");
    log.rmid(X1);
    // A last event cut in the middle of its line.
    log.text.push_str(r#"{"v":1,"event":"call","pid":4194401,"#);
    log.write(dir.path(), 100);
    let out = shmguard_cmd(&["report", s(dir.path()), "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["processes"][0]["calls"], 2);
    assert_eq!(r["summary"]["leaks"], 0);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    let empty = Dir::new("report-empty");
    let out = shmguard_cmd(&["report", s(empty.path())]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no logs"));

    let out = shmguard_cmd(&["report", "/nonexistent/shmguard-logs"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}
