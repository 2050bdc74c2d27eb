//! The repository holds sources, not build products: no Python bytecode
//! (`__pycache__/`, `*.pyc`) or object files are committed, and
//! `.gitignore` keeps them out. Its documentation stands on its own: no
//! reference to files outside the repository, and every link between its
//! pages leads somewhere.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<std::process::Output> {
    let root = env!("CARGO_MANIFEST_DIR");
    if !Path::new(root).join(".git").exists() {
        // A source tarball: nothing is committed, nothing to check.
        eprintln!("note: {root} is not a git checkout; hygiene not checked");
        return None;
    }
    Some(
        Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .expect("run git (a git checkout needs git to be tested)"),
    )
}

fn is_build_product(path: &str) -> bool {
    path.split('/').any(|part| part == "__pycache__")
        || [".pyc", ".pyo", ".o"].iter().any(|ext| path.ends_with(ext))
}

#[test]
fn no_build_products_are_committed() {
    let Some(out) = git(&["ls-files", "-z"]) else {
        return;
    };
    assert!(out.status.success(), "git ls-files failed");
    let files = String::from_utf8_lossy(&out.stdout);
    let products: Vec<&str> = files.split('\0').filter(|p| is_build_product(p)).collect();
    assert!(
        products.is_empty(),
        "build products committed: {products:?}"
    );
}

#[test]
fn python_bytecode_is_ignored() {
    for path in [
        "fuzz/__pycache__/logcheck.cpython-311.pyc",
        "fuzz/logcheck.pyc",
        "tests/__pycache__/x.cpython-313.pyc",
    ] {
        let Some(out) = git(&["check-ignore", "--no-index", "-q", path]) else {
            return;
        };
        assert!(out.status.success(), "{path} is not ignored by .gitignore");
    }
}

/// The committed files, as paths relative to the root.
fn committed() -> Option<Vec<String>> {
    let out = git(&["ls-files", "-z"])?;
    assert!(out.status.success(), "git ls-files failed");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

fn is_text_source(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name == "Makefile"
        || [
            ".md", ".rs", ".c", ".h", ".hpp", ".sh", ".toml", ".py", ".in",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
        || path.starts_with(".ci/")
}

/// Where `text` names something that only the project's planning notes
/// had: their files, their numbered issues, their numbered habits.
fn outside_references(text: &str) -> Vec<String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    // Built from pieces, so that this file does not name them itself.
    let spec = ["SP", "EC"].concat();
    let mut from = 0;
    while let Some(i) = text[from..].find(&spec) {
        let at = from + i;
        let end = at + spec.len();
        let before = at == 0 || !word(bytes[at - 1]);
        let after = end >= bytes.len() || !word(bytes[end]);
        if before && after {
            found.push(text[at..(end + 20).min(text.len())].to_owned());
        }
        from = end;
    }
    let lower = text.to_ascii_lowercase();
    for needle in [["sty", "le.md"].concat(), ["../sha", "red"].concat()] {
        if let Some(at) = lower.find(&needle) {
            found.push(text[at..(at + needle.len() + 20).min(text.len())].to_owned());
        }
    }
    for needle in [["iss", "ue "].concat(), ["hab", "it "].concat()] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(&needle) {
            let at = from + i;
            let end = at + needle.len();
            if bytes.get(end).is_some_and(u8::is_ascii_digit) && (at == 0 || !word(bytes[at - 1])) {
                found.push(text[at..(end + 5).min(text.len())].to_owned());
            }
            from = end;
        }
    }
    found
}

#[test]
fn outside_references_are_found() {
    let sp = ["SP", "EC"].concat();
    assert_eq!(outside_references(&format!("see {sp} section 5")).len(), 1);
    assert_eq!(outside_references(&format!("({sp}: x)")).len(), 1);
    assert!(outside_references(&format!("PANIC_{sp} timespec {sp}IAL")).is_empty());
    assert_eq!(
        outside_references(&["targets of iss", "ue 5"].concat()).len(),
        1
    );
    assert_eq!(
        outside_references(&["(STY", "LE.md, hab", "it 10)"].concat()).len(),
        2
    );
    assert!(outside_references("an issue with 2 parts; inhabit 3").is_empty());
}

#[test]
fn docs_and_code_refer_to_nothing_outside_the_repository() {
    let Some(files) = committed() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    for path in files.iter().filter(|p| is_text_source(p)) {
        if path == "tests/hygiene.rs" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(path)) else {
            continue;
        };
        for r in outside_references(&text) {
            bad.push(format!("{path}: {r:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "references to files outside the repository:\n{}",
        bad.join("\n")
    );
}

/// GitHub's anchor for a heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// Every `](target)` of a Markdown text, outside code blocks.
fn links(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn links_between_pages_lead_somewhere() {
    let Some(files) = committed() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut bad = Vec::new();
    for page in files.iter().filter(|p| p.ends_with(".md")) {
        let Ok(text) = std::fs::read_to_string(root.join(page)) else {
            continue;
        };
        let dir = Path::new(page).parent().unwrap_or(Path::new(""));
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                root.join(page)
            } else {
                root.join(dir).join(file)
            };
            if !target.exists() {
                bad.push(format!("{page}: {link}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment {
                let heads = std::fs::read_to_string(&target)
                    .map(|t| anchors(&t))
                    .unwrap_or_default();
                if !heads.iter().any(|h| h == fragment) {
                    bad.push(format!("{page}: {link}: no such heading"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(anchor(" The API"), "the-api");
    assert_eq!(anchor(" `exit`: the last event"), "exit-the-last-event");
    assert_eq!(links("see [a](b.md#c) and [d](e)"), ["b.md#c", "e"]);
}
