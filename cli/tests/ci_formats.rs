//! Machine-readable output never shares a stream with the command's:
//! `run --json FILE`, `--junit FILE` and `--sarif FILE` write files (any
//! of them in one run), checked before the command starts and written
//! whole; standard output stays the command's, byte for byte. `report`
//! writes JUnit and SARIF files too, and `ls --json` is a document with a
//! schema. The JUnit files are validated against the Jenkins JUnit schema,
//! the SARIF files against the SARIF 2.1.0 JSON schema (tests/schemas).
//!
//! These tests need target/{debug,release}/libshmguard.so, xmllint
//! (libxml2-utils) and python3-jsonschema. Every segment they make is
//! removed.

mod common;
mod formats;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use formats::*;
use serde_json::Value;

fn guard_report(segs: &mut Segments, report: &Value) {
    for list in ["leaked_segments", "notes"] {
        for s in report[list].as_array().into_iter().flatten() {
            if let Some(id) = s["shmid"].as_i64() {
                segs.add(id as i32);
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} is not JSON: {e}\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        )
    })
}

/// `shmguard run --lib LIB ARGS`.
fn run(args: &[&str]) -> Output {
    Command::new(shmguard())
        .arg("run")
        .arg("--lib")
        .arg(library())
        .args(args)
        .output()
        .expect("run shmguard")
}

/// The issue's first complaint: `shmguard run --json -- CMD | jq .summary`
/// failed, the command's own output coming first on the same stream.
/// Now the three forms go to files in one run, standard output is the
/// command's own, byte for byte (no newline added, control characters and
/// all), and each file is valid: JSON with `.summary`, JUnit XML by the
/// Jenkins schema, SARIF by the 2.1.0 schema, with argv bytes that XML
/// cannot carry replaced. (Before, `--json` took no file: the file name
/// was taken for the command.)
#[test]
fn run_writes_each_format_to_its_file_and_leaves_stdout_to_the_command() {
    let _serial = serial();
    let mut segs = Segments::default();
    let dir = Dir::new("ci-run");
    let d = dir.path();
    let (json, xml, sarif) = (d.join("r.json"), d.join("r.xml"), d.join("r.sarif"));
    let script = format!(
        "printf 'out\\001 <&> \"\\n'; {} create 4096 >&2; printf 'no newline'",
        s(&helper())
    );
    let weird = "arg\u{1}<&>'\"\u{1b}]0;x\u{7}\u{85}";
    let out = run(&[
        "--json",
        s(&json),
        "--junit",
        s(&xml),
        "--sarif",
        s(&sarif),
        "--log-dir",
        s(&d.join("logs")),
        "--",
        "sh",
        "-c",
        &script,
        weird,
    ]);
    let report = if json.exists() {
        read_json(&json)
    } else {
        Value::Null
    };
    guard_report(&mut segs, &report);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        out.stdout,
        b"out\x01 <&> \"\nno newline",
        "standard output is not the command's own\n{}",
        show(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shmguard: SUMMARY: 1 leak "), "{err}");

    assert_eq!(report["summary"]["leaked_segments"], 1, "{report:#}");
    assert_eq!(report["run"]["argv"][3], weird, "{report:#}");
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(
        text.starts_with("{\n  \"") && text.ends_with("}\n"),
        "not pretty: {text}"
    );

    assert_valid_junit(&xml);
    let junit = std::fs::read_to_string(&xml).unwrap();
    // One logged process (the helper; sh made no shm call) and the
    // kernel's table; the helper's case fails with its leak.
    assert_eq!(
        count(&junit, "<testcase classname=\"shmguard.process\""),
        1,
        "{junit}"
    );
    assert_eq!(
        count(&junit, "<testcase classname=\"shmguard.kernel\""),
        1,
        "{junit}"
    );
    assert!(
        junit.contains("<testsuite name=\"shmguard\" tests=\"2\" failures=\"1\" errors=\"0\""),
        "{junit}"
    );
    assert_eq!(
        count(&junit, "<failure type=\"leaked-segment\""),
        1,
        "{junit}"
    );
    assert!(
        // Shell-quoted ('\'' for the quote), then escaped for XML.
        junit.contains(r"arg\u{1}&lt;&amp;&gt;&apos;\&apos;&apos;&quot;\u{1b}]0;x\u{7}\u{85}"),
        "{junit}"
    );

    assert_valid_sarif(&sarif);
    let sarif = read_json(&sarif);
    let run0 = &sarif["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "shmguard");
    let results = run0["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{sarif:#}");
    assert_eq!(results[0]["ruleId"], "leaked-segment");
    assert_eq!(results[0]["level"], "error");
    let rules: Vec<&str> = run0["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for rule in [
        "leaked-segment",
        "leaked-attachment",
        "wide-mode",
        "key-without-excl",
        "key-squatting",
        "widening-ipc-set",
        "shm-exec",
    ] {
        assert!(rules.contains(&rule), "{rule} missing: {rules:?}");
    }
    // Written whole and renamed: no temporary file is left.
    assert_eq!(entries(d), ["logs", "r.json", "r.sarif", "r.xml"]);
}

/// A file that cannot be written is refused before anything starts (exit
/// 2): no command, no log directory. So are a directory, and two outputs
/// naming the same file.
#[test]
fn run_refuses_an_output_it_cannot_write_before_the_command_starts() {
    let dir = Dir::new("ci-refuse");
    let d = dir.path();
    let tmp = d.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let marker = d.join("started");
    let touch = format!("touch {}", s(&marker));
    let missing = d.join("no/such/dir/r.xml");
    for args in [
        vec!["--junit", s(&missing)],
        vec!["--sarif", s(&missing)],
        vec!["--json", s(&missing)],
        vec!["-o", s(&missing)],
        vec!["--json", s(&tmp)],
        vec!["--json", s(d), "--junit", s(&d.join("r.xml"))],
        vec!["--junit", s(&d.join("r")), "--sarif", s(&d.join("./r"))],
    ] {
        let mut all = args.clone();
        all.extend(["--", "sh", "-c", &touch]);
        let out = Command::new(shmguard())
            .arg("run")
            .arg("--lib")
            .arg(library())
            .args(&all)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", show(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(args[0]), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?}: the command ran");
        assert_eq!(entries(&tmp), Vec::<String>::new(), "{args:?}");
    }
}

/// A name in a shared sticky directory that another user got to first:
/// a symbolic link there is replaced, never written through (root's run
/// would otherwise overwrite the link's target); another user's file
/// that the kernel will not let us replace is refused up front.
#[test]
fn an_output_planted_by_another_user_is_never_written_through() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _serial = serial();
    let dir = Dir::reachable("ci-planted");
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = d.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    let plant = |what: &str| {
        let out = as_user(65534)
            .args(["sh", "-c", what])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{what}: {}", show(&out));
    };
    plant("ln -s victim r.json && ln -s victim r.xml && echo mine > theirs.sarif");
    let out = run(&[
        "--json",
        s(&d.join("r.json")),
        "--junit",
        s(&d.join("r.xml")),
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    for name in ["r.json", "r.xml"] {
        let meta = std::fs::symlink_metadata(d.join(name)).unwrap();
        assert!(meta.file_type().is_file(), "{name} is still a link");
        assert_eq!(meta.uid(), 0, "{name}");
    }
    read_json(&d.join("r.json"));
    assert_valid_junit(&d.join("r.xml"));

    // Another unprivileged user cannot replace nobody's file in the
    // sticky directory: refused before the command runs.
    let bin = dir.copy_in(&shmguard());
    let lib = dir.copy_in(&library());
    let marker = d.join("started");
    let out = as_user(64_322)
        .arg(&bin)
        .args(["run", "--lib"])
        .arg(&lib)
        .arg("--sarif")
        .arg(d.join("theirs.sarif"))
        .args(["--", "sh", "-c", &format!("touch {}", s(&marker))])
        .env("TMPDIR", d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sarif") && err.contains("sticky"), "{err}");
    assert!(!marker.exists());
    assert_eq!(
        std::fs::read_to_string(d.join("theirs.sarif")).unwrap(),
        "mine\n"
    );
}

/// Devices and descriptors are written as they are, never replaced:
/// `-o /dev/null` discards the text report (as root too: /dev/null stays a
/// device), `--json /dev/stderr` puts the JSON where the text would go.
#[test]
fn devices_and_descriptors_are_written_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let _serial = serial();
    let out = run(&["-o", "/dev/null", "--json", "/dev/stderr", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stderr).expect("the JSON report on stderr");
    assert_eq!(r["summary"]["leaks"], 0, "{r:#}");
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report")
}

/// `report --junit FILE --sarif FILE` (with --json still printing to
/// standard output, which `report` owns): a test case per process with a
/// failure per leak and finding, a SARIF result per leak and finding;
/// both valid.
#[test]
fn report_writes_junit_and_sarif_files() {
    let _serial = serial();
    let dir = Dir::new("ci-report");
    let (xml, sarif) = (dir.path().join("r.xml"), dir.path().join("r.sarif"));
    let out = shmguard_cmd(&[
        "report",
        s(&fixture()),
        "--json",
        "--junit",
        s(&xml),
        "--sarif",
        s(&sarif),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r: Value = serde_json::from_slice(&out.stdout).expect("report --json on stdout");
    let processes = r["processes"].as_array().unwrap().len();
    let leaks = r["summary"]["leaks"].as_u64().unwrap() as usize;
    let findings = r["summary"]["findings"].as_u64().unwrap() as usize;
    assert!(processes > 1 && leaks > 0 && findings > 0, "{r:#}");

    assert_valid_junit(&xml);
    let junit = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(
        count(&junit, "<testcase classname=\"shmguard.process\""),
        processes,
        "{junit}"
    );
    assert_eq!(count(&junit, "<failure "), leaks + findings, "{junit}");
    assert_eq!(
        count(&junit, "<failure type=\"finding:"),
        findings,
        "{junit}"
    );

    assert_valid_sarif(&sarif);
    let doc = read_json(&sarif);
    let results = doc["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), leaks + findings, "{doc:#}");
    let mut rules: Vec<&str> = results
        .iter()
        .filter(|x| x["level"] == "warning" || x["properties"]["refused"] == true)
        .map(|x| x["ruleId"].as_str().unwrap())
        .collect();
    let mut want: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    rules.sort_unstable();
    want.sort_unstable();
    assert_eq!(rules, want);
}

/// `ls --json` is a document, `{"schema": "shmguard-ls/1", "segments":
/// [...]}`, pretty-printed (it was a bare array).
#[test]
fn ls_json_is_a_document_with_a_schema() {
    let _serial = serial();
    let mut segs = Segments::default();
    let id = make(&mut segs, None, &["create", "4096"])[0];
    let out = shmguard_cmd(&["ls", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], "shmguard-ls/1", "{v:#}");
    assert!(
        v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["shmid"] == id),
        "{v:#}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("{\n  \""));
}

/// The validators themselves reject what the schemas forbid, so that a
/// pass means something.
#[test]
fn the_validators_reject_invalid_files() {
    let dir = Dir::new("ci-validators");
    let bad_xml = dir.path().join("bad.xml");
    std::fs::write(
        &bad_xml,
        "<testsuites><testsuite name=\"x\" tests=\"1\" failures=\"0\" errors=\"0\">\
         <testcase classname=\"c\"/></testsuite></testsuites>\n",
    )
    .unwrap();
    assert!(junit_errors(&bad_xml).is_err(), "a testcase needs a name");
    let bad_sarif = dir.path().join("bad.sarif");
    std::fs::write(
        &bad_sarif,
        r#"{"version":"2.1.0","runs":[{"tool":{"driver":{}},"results":[]}]}"#,
    )
    .unwrap();
    assert!(sarif_errors(&bad_sarif).is_err(), "a driver needs a name");
}
