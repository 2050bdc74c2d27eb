//! The report as JUnit XML, as CI servers read test results (Jenkins'
//! JUnit plugin, GitLab's unit test reports): one test suite `shmguard`,
//! one test case per logged process with a `<failure>` per leak and per
//! policy finding of that process, and under `run` one test case for the
//! segments found only through the kernel's table (their creators left
//! no log). The shape follows the Jenkins/Ant JUnit schema
//! (tests/schemas/junit-10.xsd).
//!
//! Every string from a log, /proc or the command line is escaped for
//! XML; characters XML 1.0 does not allow at all, even as character
//! references (C0 controls but tab, newline and carriage return; U+FFFE,
//! U+FFFF), and the C1 controls, are replaced by their Rust escape
//! (`\u{1b}`), as the text report shows them.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::ci::{self, Items};
use crate::report::Report;

/// Whether `c` may stand in an XML 1.0 document as itself (and is not a
/// C1 control, allowed but discouraged).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r')
        || ('\u{20}'..='\u{7e}').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || ('\u{e000}'..='\u{fffd}').contains(&c)
        || c >= '\u{10000}'
}

/// `text` escaped for XML character data (`attr: false`) or a quoted
/// attribute value (`attr: true`, where a newline or a tab would be
/// turned into a space by the reader unless given as a reference).
pub fn escape(text: &str, attr: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attr => out.push_str("&#10;"),
            '\t' if attr => out.push_str("&#9;"),
            c if xml_char(c) => out.push(c),
            c => out.extend(c.escape_default()),
        }
    }
    out
}

/// Multi-line text with each line's control characters escaped (see
/// [`crate::logs::printable`]): only the newlines stay.
fn printable_lines(text: &str) -> String {
    text.split('\n')
        .map(crate::logs::printable)
        .collect::<Vec<_>>()
        .join("\n")
}

fn attr(text: &str) -> String {
    escape(text, true)
}

fn text(text: &str) -> String {
    escape(text, false)
}

/// A `<failure>`: the message, and in the body the message again and the
/// call stack, when there is one.
fn failure(out: &mut String, kind: &str, message: &str, stack: &[String]) {
    let mut body = message.to_owned();
    if !stack.is_empty() {
        body.push_str("\ncall stack:");
        for frame in stack {
            body.push_str("\n  ");
            body.push_str(&crate::logs::printable(frame));
        }
    }
    let _ = writeln!(
        out,
        "      <failure type=\"{}\" message=\"{}\">{}</failure>",
        attr(kind),
        attr(message),
        text(&body)
    );
}

fn failures(out: &mut String, items: &Items<'_>) {
    for s in &items.segments {
        failure(out, ci::LEAKED_SEGMENT, &ci::segment_message(s), &s.stack);
    }
    for a in &items.attachments {
        failure(
            out,
            ci::LEAKED_ATTACHMENT,
            &ci::attachment_message(a),
            &a.stack,
        );
    }
    for f in &items.findings {
        failure(
            out,
            &format!("finding:{}", f.rule),
            &ci::finding_message(f),
            &f.stack,
        );
    }
}

/// The report as a JUnit XML document.
pub fn render(r: &Report) -> String {
    let (per, rest) = ci::by_process(r);
    let kernel_case = r.run.is_some() || rest.failures() > 0 || !rest.notes.is_empty();
    let tests = per.len() + usize::from(kernel_case);
    let failed = per.iter().filter(|i| i.failures() > 0).count()
        + usize::from(kernel_case && rest.failures() > 0);

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"shmguard\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\">"
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"shmguard\" tests=\"{tests}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">"
    );
    out.push_str("    <properties>\n");
    let mut props: Vec<(String, String)> =
        vec![("shmguard.version".into(), env!("CARGO_PKG_VERSION").into())];
    if let Some(run) = &r.run {
        props.push(("command".into(), shell_words::join(&run.argv)));
        props.push(("status".into(), run.status.clone()));
        props.push(("exit_status".into(), run.exit_status.to_string()));
    }
    if let Some(dir) = &r.log_dir {
        props.push(("log_dir".into(), dir.clone()));
    }
    let s = &r.summary;
    for (name, n) in [
        ("leaks", s.leaks),
        ("leaked_segments", s.leaked_segments),
        ("leaked_segment_bytes", s.leaked_segment_bytes),
        ("leaked_attachments", s.leaked_attachments),
        ("notes", s.notes),
        ("failed_calls", s.failed_calls),
        ("findings", s.findings),
        ("processes_logged", s.processes_logged),
    ] {
        props.push((format!("summary.{name}"), n.to_string()));
    }
    for (name, value) in &props {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            attr(name),
            attr(value)
        );
    }
    out.push_str("    </properties>\n");

    for (p, items) in r.processes.iter().zip(&per) {
        let mut name = format!(
            "pid {}: {}",
            p.pid,
            crate::report::shorten(&ci::command_text(p), 200)
        );
        // Two logs of one pid (processes of other PID namespaces): test
        // cases of one name would merge in a CI server's view.
        if r.processes.iter().filter(|q| q.pid == p.pid).count() > 1 {
            let file = std::path::Path::new(&p.log)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.push_str(&format!(" [{}]", crate::logs::printable(&file)));
        }
        let _ = writeln!(
            out,
            "    <testcase classname=\"shmguard.process\" name=\"{}\">",
            attr(&name)
        );
        failures(&mut out, items);
        let mut info = format!(
            "pid {} (parent {}): {}\nlog: {}\ncalls: {} ({} failed)\nsegments created: {}, removed: {}\n\
             peak attachments: {}\nend: {}\n",
            p.pid,
            p.ppid,
            ci::command_text(p),
            p.log,
            p.calls,
            p.failures,
            p.segments_created,
            p.segments_removed,
            p.peak_attachments,
            ci::end_text(p)
        );
        for n in &items.notes {
            let _ = writeln!(info, "note: {}", ci::segment_message(n));
        }
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            text(&printable_lines(&info))
        );
        out.push_str("    </testcase>\n");
    }
    if kernel_case {
        let _ = writeln!(
            out,
            "    <testcase classname=\"shmguard.kernel\" name=\"{}\">",
            attr("segments found through the kernel's table (creators without a log)")
        );
        failures(&mut out, &rest);
        let mut info = String::from(
            "Segments new in the kernel's table after the tree, whose creators left no log \
             (static or setuid programs, or creations before an exec).\n",
        );
        for n in &rest.notes {
            let _ = writeln!(info, "note: {}", ci::segment_message(n));
        }
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            text(&printable_lines(&info))
        );
        out.push_str("    </testcase>\n");
    }
    let _ = writeln!(
        out,
        "    <system-out>{}</system-out>",
        text(&printable_lines(&crate::report::render_body(r, "")))
    );
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_replaces_what_xml_forbids() {
        assert_eq!(
            escape("a<b>&\"c'\u{1}\u{1b}\u{0}\u{fffe}\u{85}é\u{1f600}", false),
            "a&lt;b&gt;&amp;&quot;c&apos;\\u{1}\\u{1b}\\u{0}\\u{fffe}\\u{85}é\u{1f600}"
        );
        assert_eq!(escape("x\ny\tz\r", true), "x&#10;y&#9;z&#13;");
        assert_eq!(escape("x\ny\tz\r", false), "x\ny\tz&#13;");
        // Every char either passes as itself or becomes ASCII.
        for c in (0..=0x10ffffu32).filter_map(char::from_u32) {
            let e = escape(&c.to_string(), true);
            assert!(
                e.chars().all(|d| xml_char(d) && d != '\n' && d != '\t'),
                "{c:?} -> {e:?}"
            );
        }
    }

    #[test]
    fn each_logged_process_is_a_test_case_with_its_failures() {
        use crate::report::ProcessRow;
        let mut r = crate::sarif::tests::sample();
        let row = |pid: u32, log: &str| ProcessRow {
            pid,
            ppid: 1,
            argv: vec!["./p".into()],
            calls: 3,
            failures: 0,
            segments_created: 1,
            segments_removed: 0,
            peak_attachments: 1,
            exit_event: true,
            status: None,
            forked: false,
            log: log.into(),
        };
        r.processes = vec![
            row(42, "/l/shmguard.42.jsonl"),
            row(42, "/l/shmguard.42.1.jsonl"),
            row(43, "/l/shmguard.43.jsonl"),
        ];
        let xml = render(&r);
        assert!(
            xml.contains("name=\"pid 42: ./p [shmguard.42.jsonl]\""),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"pid 42: ./p [shmguard.42.1.jsonl]\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"pid 43: ./p\">"), "{xml}");
        // pid 42's leak, attachment and two findings go to its first log's
        // case; the note to its system-out; nothing is left for the
        // kernel's case (no run: there is none).
        assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 4, "{xml}");
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(xml.contains("note: segment shmid=7"), "{xml}");
        assert!(
            xml.contains("type=\"finding:rule-from-the-future\""),
            "{xml}"
        );
        assert!(
            xml.contains("./p &apos;&lt;&amp;&gt;\\u{1}\\u{1b}&apos;"),
            "{xml}"
        );
    }
}
