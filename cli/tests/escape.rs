//! Output that cannot be forged: a process of an audited tree controls its
//! argv, its command name and (by hand) its log file, and may put escape
//! sequences and newlines in them. `report`, `run`, `ls` and `clean` show
//! every such field escaped in text (no control character, no line of its
//! own: no forged `SUMMARY` line), and their JSON stays valid.

mod common;

use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

/// What a hostile process writes in every field it controls.
const FORGED: &str =
    "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\n==1== shmguard: SUMMARY: no leaks\n\u{9b}31m\u{202e}";

/// Checks a text output: no control character but newlines ending lines,
/// no bidi override, no forged `==1==` line, and as many lines that begin
/// with the SUMMARY as expected.
fn assert_clean_text(text: &str, what: &str, expected_summaries: usize) {
    for (n, line) in text.lines().enumerate() {
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{what}: line {} holds a control character: {line:?}",
            n + 1
        );
        assert!(
            !line.starts_with("==1=="),
            "{what}: a forged line: {line:?}\n{text}"
        );
    }
    let summaries = text
        .lines()
        .filter(|l| l.starts_with("SUMMARY:") || l.starts_with("shmguard: SUMMARY:"))
        .count();
    assert_eq!(
        summaries, expected_summaries,
        "{what}: SUMMARY lines:\n{text}"
    );
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A log whose every string field holds [`FORGED`].
fn forged_log() -> String {
    let f = json_str(FORGED);
    let head = |ts: u32| format!(r#""v":1,"pid":4242,"ppid":1,"tid":4242,"ts_ns":{ts}"#);
    [
        format!(
            r#"{{{},"event":"start","argv":[{f},{f}],"exe":{f},"uid":0,"euid":0,"ipc_ns":1,"forked":false}}"#,
            head(1)
        ),
        format!(
            r#"{{{},"event":"call","call":"shmget","args":{{"key":{f},"size":4096,"shmflg":{f}}},"ret":77,"errno":null,"created":true}}"#,
            head(2)
        ),
        format!(
            r#"{{{},"event":"call","call":{f},"args":{{}},"ret":-1,"errno":{f}}}"#,
            head(3)
        ),
        format!(
            r#"{{{},"event":"finding","rule":{f},"call":{f},"refused":true,"detail":{f}}}"#,
            head(4)
        ),
        format!(
            r#"{{{},"event":"exit","leaks":[{{"kind":"attachment","shmid":77,"addr":{f},"size":1,"readonly":false}}],"notes":[]}}"#,
            head(5)
        ),
        // A line that does not parse, quoting the forged text in the
        // parser's message.
        format!(r#"{{"v":1,"event":{f},"pid":{f}}}"#),
    ]
    .join("\n")
        + "\n"
}

#[test]
fn report_escapes_every_field_of_a_forged_log() {
    let dir = Dir::new("escape-report");
    std::fs::write(dir.path().join("shmguard.4242.jsonl"), forged_log()).unwrap();
    // A file name is the writer's choice too.
    let name = format!("shmguard.{}.4243.jsonl", FORGED.replace('/', ""));
    std::fs::write(dir.path().join(name), "not json\n").unwrap();

    let out = shmguard_cmd(&["report", s(dir.path())]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8(out.stdout.clone()).expect("UTF-8 output");
    assert_clean_text(&text, "report", 1);
    // The fields are there, escaped.
    assert!(text.contains(r"\u{1b}[2J"), "{text}");
    assert!(
        text.contains(r"\r\n==1== shmguard: SUMMARY: no leaks\n"),
        "{text}"
    );
    assert!(text.contains(r"\u{202e}"), "{text}");

    let out = shmguard_cmd(&["report", "--json", s(dir.path())]);
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["summary"]["processes_logged"], 1, "{v}");
}

#[test]
fn run_escapes_the_command_line() {
    let dir = Dir::new("escape-run");
    let out = Command::new(shmguard())
        .args(["run", "--lib"])
        .arg(library())
        .args([
            "--log-dir",
            s(&dir.path().join("logs")),
            "--",
            "sh",
            "-c",
            "exit 0",
        ])
        .arg(FORGED)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8(out.stderr.clone()).expect("UTF-8 output");
    assert_clean_text(&text, "run", 1);
    assert!(text.contains(r"\u{1b}[2J"), "{text}");
}

#[test]
fn ls_and_clean_escape_command_names() {
    let _serial = serial();
    let mut segs = Segments::default();
    // A program whose name (and so its comm) holds an escape sequence and
    // a newline: a link to the helper.
    let dir = Dir::new("escape-ls");
    let link = dir.path().join("\u{1b}[31m\nSUMMARY");
    std::os::unix::fs::symlink(helper(), &link).unwrap();
    let mut child = Command::new(&link)
        .args(["hold", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap());
    lines.read_line(&mut first).unwrap();
    let id: i32 = first.trim().parse().unwrap();
    segs.add(id);
    let running = Running(child);

    let out = shmguard_cmd(&["ls"]);
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_clean_text(&text, "ls", 0);
    assert!(text.contains(r"\u{1b}[31m\nSUMMARY"), "{text}");
    let out = shmguard_cmd(&["ls", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert!(
        v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["shmid"] == id)
    );
    let out = shmguard_cmd(&["clean", "--orphans"]);
    assert_clean_text(&String::from_utf8(out.stdout).unwrap(), "clean", 0);
    drop(running);
}
