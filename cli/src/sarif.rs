//! The report as SARIF 2.1.0 (OASIS Static Analysis Results Interchange
//! Format), as code-scanning views read it: one run of the tool
//! `shmguard`, whose rules are the leak kinds and the library's policy
//! rules, and a result per leak, note and finding. A result whose item
//! carries a call stack (`stacks=1`) is located at the first frame with a
//! source file (`function (file:line:col)`), and carries the whole stack;
//! files under the current directory are given relative to `SRCROOT`
//! (the current directory), others as `file://` URIs. Validated against
//! the SARIF 2.1.0 JSON schema in tests (tests/schemas).
#![forbid(unsafe_code)]

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::ci;
use crate::report::Report;

/// Where the schema is published (SARIF 2.1.0 with its errata).
pub const SCHEMA_URI: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// A frame of a stack as the library writes it: `function (file:line:col)`,
/// `function (file:line)`, or `function` alone.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u64>,
    pub column: Option<u64>,
}

pub fn parse_frame(frame: &str) -> Frame {
    let bare = || Frame {
        function: frame.to_owned(),
        file: None,
        line: None,
        column: None,
    };
    let Some(inner) = frame.strip_suffix(')') else {
        return bare();
    };
    let Some(open) = inner.rfind(" (") else {
        return bare();
    };
    let (function, at) = (&inner[..open], &inner[open + 2..]);
    let mut parts = at.rsplitn(3, ':');
    let last = parts.next().and_then(|n| n.parse::<u64>().ok());
    let middle = parts.next();
    let (file, line, column) = match (last, middle, parts.next()) {
        (Some(col), Some(line), Some(file)) if line.parse::<u64>().is_ok() => {
            (file.to_owned(), line.parse().ok(), Some(col))
        }
        (Some(line), Some(first), Some(second)) => (format!("{second}:{first}"), Some(line), None),
        (Some(line), Some(file), None) => (file.to_owned(), Some(line), None),
        _ => (at.to_owned(), None, None),
    };
    Frame {
        function: function.to_owned(),
        file: Some(file).filter(|f| !f.is_empty()),
        line: line.filter(|&l| l > 0),
        column: column.filter(|&c| c > 0),
    }
}

/// `path` percent-encoded for a URI (everything but unreserved
/// characters and `/`).
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The artifact location of `file`: relative to `SRCROOT` (`root`) when
/// under it or relative, else an absolute `file://` URI.
fn artifact(file: &str, root: Option<&Path>) -> Value {
    let path = Path::new(file);
    if path.is_absolute() {
        if let Some(rel) = root.and_then(|r| path.strip_prefix(r).ok()) {
            return json!({
                "uri": percent_encode(&rel.to_string_lossy()),
                "uriBaseId": "SRCROOT",
            });
        }
        return json!({ "uri": format!("file://{}", percent_encode(file)) });
    }
    let rel = file.strip_prefix("./").unwrap_or(file);
    json!({ "uri": percent_encode(rel), "uriBaseId": "SRCROOT" })
}

/// A location for one frame.
fn location(frame: &Frame, root: Option<&Path>) -> Value {
    let mut loc = Map::new();
    if let Some(file) = &frame.file {
        let mut physical = Map::new();
        physical.insert("artifactLocation".into(), artifact(file, root));
        if let Some(line) = frame.line {
            let mut region = json!({ "startLine": line });
            if let Some(col) = frame.column {
                region["startColumn"] = json!(col);
            }
            physical.insert("region".into(), region);
        }
        loc.insert("physicalLocation".into(), Value::Object(physical));
    }
    if !frame.function.is_empty() {
        loc.insert(
            "logicalLocations".into(),
            json!([{ "name": frame.function, "kind": "function" }]),
        );
    }
    Value::Object(loc)
}

fn rule_json(r: &ci::Rule) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "shortDescription": { "text": r.short },
        "fullDescription": { "text": r.full },
        "help": { "text": r.help },
        "defaultConfiguration": { "level": r.level },
    })
}

/// The rules: every known one, then those of findings the command does
/// not know (a newer library).
fn rules(r: &Report) -> Vec<Value> {
    let mut list: Vec<Value> = ci::RULES.iter().map(rule_json).collect();
    let mut unknown: Vec<&str> = r
        .findings
        .iter()
        .map(|f| f.rule.as_str())
        .filter(|id| ci::rule(id).is_none())
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    for id in unknown {
        list.push(json!({
            "id": id,
            "shortDescription": { "text": format!("Policy rule {id} of the shmguard library") },
            "defaultConfiguration": { "level": "warning" },
        }));
    }
    list
}

/// One result.
fn result(
    rules: &[Value],
    rule_id: &str,
    level: &str,
    message: String,
    stack: &[String],
    properties: Value,
    root: Option<&Path>,
) -> Value {
    let mut res = Map::new();
    res.insert("ruleId".into(), json!(rule_id));
    if let Some(i) = rules.iter().position(|r| r["id"] == rule_id) {
        res.insert("ruleIndex".into(), json!(i));
    }
    res.insert("level".into(), json!(level));
    res.insert("message".into(), json!({ "text": message }));
    if !stack.is_empty() {
        let frames: Vec<Frame> = stack.iter().map(|f| parse_frame(f)).collect();
        let first = frames
            .iter()
            .find(|f| f.file.is_some())
            .unwrap_or(&frames[0]);
        res.insert("locations".into(), json!([location(first, root)]));
        let frames: Vec<Value> = frames
            .iter()
            .map(|f| json!({ "location": location(f, root) }))
            .collect();
        res.insert(
            "stacks".into(),
            json!([{ "message": { "text": "call stack" }, "frames": frames }]),
        );
    }
    res.insert("properties".into(), properties);
    Value::Object(res)
}

/// The report as a SARIF 2.1.0 log; `root` is the directory relative
/// source files are taken from (`SRCROOT`), normally the current one.
pub fn render_value(r: &Report, root: Option<&Path>) -> Value {
    let rules = rules(r);
    let mut results = Vec::new();
    let segment_props = |s: &crate::report::SegmentLeak| {
        json!({
            "shmid": s.shmid,
            "key": s.key,
            "size": s.size,
            "mode": s.mode,
            "cpid": s.cpid,
            "argv": s.argv,
            "source": s.source,
            "inKernel": s.in_kernel,
            "nattch": s.nattch,
        })
    };
    for s in &r.leaked_segments {
        results.push(result(
            &rules,
            ci::LEAKED_SEGMENT,
            "error",
            ci::segment_message(s),
            &s.stack,
            segment_props(s),
            root,
        ));
    }
    for a in &r.leaked_attachments {
        results.push(result(
            &rules,
            ci::LEAKED_ATTACHMENT,
            "error",
            ci::attachment_message(a),
            &a.stack,
            json!({
                "pid": a.pid,
                "argv": a.argv,
                "shmid": a.shmid,
                "addr": a.addr,
                "size": a.size,
                "readonly": a.readonly,
            }),
            root,
        ));
    }
    for s in &r.notes {
        results.push(result(
            &rules,
            ci::HELD_SEGMENT,
            "note",
            ci::segment_message(s),
            &s.stack,
            segment_props(s),
            root,
        ));
    }
    for f in &r.findings {
        results.push(result(
            &rules,
            &f.rule,
            if f.refused { "error" } else { "warning" },
            ci::finding_message(f),
            &f.stack,
            json!({
                "pid": f.pid,
                "argv": f.argv,
                "call": f.call,
                "refused": f.refused,
            }),
            root,
        ));
    }

    let mut invocation = Map::new();
    invocation.insert("executionSuccessful".into(), json!(true));
    if let Some(run) = &r.run {
        invocation.insert("exitCode".into(), json!(run.exit_status));
    }
    if !r.warnings.is_empty() {
        let notes: Vec<Value> = r
            .warnings
            .iter()
            .map(|w| json!({ "level": "warning", "message": { "text": w } }))
            .collect();
        invocation.insert("toolExecutionNotifications".into(), json!(notes));
    }
    let mut props = Map::new();
    if let Some(run) = &r.run {
        props.insert("argv".into(), json!(run.argv));
        props.insert("status".into(), json!(run.status));
    }
    props.insert("logDir".into(), json!(r.log_dir));
    invocation.insert("properties".into(), Value::Object(props));

    let mut run = json!({
        "tool": {
            "driver": {
                "name": "shmguard",
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }
        },
        "invocations": [Value::Object(invocation)],
        "results": results,
        "properties": {
            "summary": serde_json::to_value(&r.summary).unwrap_or(Value::Null),
        },
    });
    if let Some(root) = root {
        let mut dir = root.to_string_lossy().into_owned();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        run["originalUriBaseIds"] =
            json!({ "SRCROOT": { "uri": format!("file://{}", percent_encode(&dir)) } });
    }
    json!({
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [run],
    })
}

/// The report as SARIF text (pretty, with a final newline), relative to
/// the current directory.
pub fn render(r: &Report) -> String {
    let root = std::env::current_dir().ok();
    let mut text = serde_json::to_string_pretty(&render_value(r, root.as_deref()))
        .unwrap_or_else(|_| "{}".to_owned());
    text.push('\n');
    text
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::logs::LogSet;
    use crate::report::{self, AttachmentLeak, FindingRow, KernelView, SegmentLeak};

    /// A report with one item of every kind, each with a call stack, and
    /// strings XML and URIs must escape.
    pub fn sample() -> Report {
        let mut r = report::analyze(
            &LogSet::default(),
            "/tmp/logs",
            KernelView::Now(&[], None),
            &|_, _| false,
        );
        let stack = vec![
            "make_it (/w/proj/src/a b.c:12:5)".to_owned(),
            "main (./main.c:40:3)".to_owned(),
            "<unknown>".to_owned(),
        ];
        let seg = SegmentLeak {
            shmid: 7,
            key: "0x5eed0001".into(),
            size: 4096,
            mode: "0600".into(),
            cpid: 42,
            argv: Some(vec!["./p".into(), "<&>\u{1}\u{1b}".into()]),
            source: "log",
            why: "never marked".into(),
            in_kernel: true,
            nattch: Some(0),
            stack: stack.clone(),
        };
        r.leaked_segments.push(seg.clone());
        r.notes.push(SegmentLeak {
            stack: Vec::new(),
            ..seg
        });
        r.leaked_attachments.push(AttachmentLeak {
            pid: 42,
            argv: vec!["./p".into()],
            shmid: 7,
            addr: "0x7f0000000000".into(),
            size: Some(4096),
            readonly: false,
            stack: vec!["<unknown>".into()],
        });
        for (rule, refused) in [("wide-mode", false), ("rule-from-the-future", true)] {
            r.findings.push(FindingRow {
                pid: 42,
                argv: vec!["./p".into()],
                rule: rule.into(),
                call: "shmget".into(),
                refused,
                detail: "detail \"quoted\"".into(),
                stack: stack.clone(),
            });
        }
        r
    }

    #[test]
    fn results_are_located_at_the_first_frame_with_a_file() {
        let doc = render_value(&sample(), Some(Path::new("/w/proj")));
        let run = &doc["runs"][0];
        let results = run["results"].as_array().unwrap();
        let ids: Vec<&str> = results
            .iter()
            .map(|r| r["ruleId"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "leaked-segment",
                "leaked-attachment",
                "segment-held-outside-tree",
                "wide-mode",
                "rule-from-the-future"
            ]
        );
        let levels: Vec<&str> = results
            .iter()
            .map(|r| r["level"].as_str().unwrap())
            .collect();
        assert_eq!(levels, ["error", "error", "note", "warning", "error"]);
        let loc = &results[0]["locations"][0];
        assert_eq!(
            loc["physicalLocation"],
            json!({
                "artifactLocation": { "uri": "src/a%20b.c", "uriBaseId": "SRCROOT" },
                "region": { "startLine": 12, "startColumn": 5 },
            })
        );
        assert_eq!(loc["logicalLocations"][0]["name"], "make_it");
        assert_eq!(
            results[0]["stacks"][0]["frames"].as_array().unwrap().len(),
            3
        );
        // A stack without any file: the function only; no stack: no location.
        assert!(results[1]["locations"][0].get("physicalLocation").is_none());
        assert!(results[2].get("locations").is_none());
        // Every result's rule is in the driver's list, at its index.
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        for r in results {
            let i = r["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[i]["id"], r["ruleId"]);
        }
        assert_eq!(
            run["originalUriBaseIds"]["SRCROOT"]["uri"],
            "file:///w/proj/"
        );
    }

    #[test]
    fn frames_are_split_into_function_file_line_and_column() {
        assert_eq!(
            parse_frame("make_it (/src/a b.c:12:5)"),
            Frame {
                function: "make_it".into(),
                file: Some("/src/a b.c".into()),
                line: Some(12),
                column: Some(5)
            }
        );
        let f = parse_frame("main (./x.c:7)");
        assert_eq!(
            (f.file.as_deref(), f.line, f.column),
            (Some("./x.c"), Some(7), None)
        );
        let f = parse_frame("f (C:odd:9:3)");
        assert_eq!(
            (f.file.as_deref(), f.line, f.column),
            (Some("C:odd"), Some(9), Some(3))
        );
        assert_eq!(parse_frame("<unknown>").file, None);
        assert_eq!(parse_frame("g (x.c)").file.as_deref(), Some("x.c"));
        assert_eq!(parse_frame("g (x.c)").line, None);
    }

    #[test]
    fn files_under_the_root_are_relative_and_others_are_file_uris() {
        let root = Path::new("/w/proj");
        assert_eq!(
            artifact("/w/proj/src/a b.c", Some(root)),
            json!({ "uri": "src/a%20b.c", "uriBaseId": "SRCROOT" })
        );
        assert_eq!(
            artifact("/usr/include/x.h", Some(root)),
            json!({ "uri": "file:///usr/include/x.h" })
        );
        assert_eq!(
            artifact("./x.c", Some(root)),
            json!({ "uri": "x.c", "uriBaseId": "SRCROOT" })
        );
    }

    /// The sample, with stacks, notes and a rule the command does not
    /// know, is valid SARIF 2.1.0 and valid JUnit XML (the integration
    /// tests check real runs; their items carry stacks only with
    /// `stacks=1`).
    #[test]
    fn the_sample_validates_against_both_schemas() {
        use std::process::Command;
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/schemas");
        let dir = std::env::temp_dir().join(format!("shmguard-ci-unit.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (sarif, xml) = (dir.join("s.sarif"), dir.join("j.xml"));
        std::fs::write(&sarif, render(&sample())).unwrap();
        std::fs::write(&xml, crate::junit::render(&sample())).unwrap();
        let checks = [
            Command::new("/usr/bin/python3")
                .arg(schemas.join("validate-sarif.py"))
                .arg(&sarif)
                .output(),
            Command::new("xmllint")
                .args(["--noout", "--nonet", "--schema"])
                .arg(schemas.join("junit-10.xsd"))
                .arg(&xml)
                .output(),
        ];
        let texts = (
            std::fs::read_to_string(&sarif).unwrap(),
            std::fs::read_to_string(&xml).unwrap(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        for (check, install) in checks
            .into_iter()
            .zip(["python3 and python3-jsonschema", "xmllint (libxml2-utils)"])
        {
            let out = check.unwrap_or_else(|e| panic!("cannot validate ({e}): install {install}"));
            assert!(
                out.status.success(),
                "{}{}\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                texts.0,
                texts.1
            );
        }
        assert!(
            texts
                .1
                .contains("call stack:\n  make_it (/w/proj/src/a b.c:12:5)")
        );
    }
}
