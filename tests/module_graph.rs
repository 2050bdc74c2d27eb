//! The library's modules form layers: no two modules reach each other, by
//! any path, in a circle. `make lint` runs this test. A module reaches
//! another through a `use crate::...` line or through a path written inline
//! (`crate::audit::enable()`); both count. Test modules (`#[cfg(test)] mod
//! tests`, at the end of a file) and comments do not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `text` without its comments (`//` to the end of the line, `/* */`) and
/// without the contents of string literals.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            c => out.push(c),
        }
    }
    out
}

/// The part of a module's source that is not its test module.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level names of a `{a, b::c, d::{e, f}}` group (`text` starts
/// after its `{`).
fn group_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut expecting = true;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expecting = true,
            c if depth == 0 && expecting && (c.is_ascii_alphabetic() || c == '_') => {
                names.push(ident(rest).to_owned());
                expecting = false;
            }
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    names
}

/// Every module named right after `crate::` in `code`.
fn reached(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = code.len() - rest.len() + at;
        rest = &rest[at + "crate::".len()..];
        let preceded = code[..before]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if preceded {
            continue; // `shmguard_crate::` or similar
        }
        if let Some(group) = rest.strip_prefix('{') {
            out.extend(group_names(group));
        } else {
            out.insert(ident(rest).to_owned());
        }
    }
    out
}

/// Module -> the modules it reaches, for every `src/*.rs` but the root.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src/") {
        let path = entry.expect("read src/").path();
        let (Some(stem), Some("rs")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if stem != "lib" {
            let text = std::fs::read_to_string(&path).expect("read a module");
            files.insert(stem.to_owned(), text);
        }
    }
    files
        .iter()
        .map(|(name, text)| {
            let code = code_only(without_tests(text));
            let deps = reached(&code)
                .into_iter()
                .filter(|d| d != name && files.contains_key(d))
                .collect();
            (name.clone(), deps)
        })
        .collect()
}

/// One circle per module that lies on one, as `a -> b -> a`.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Breadth-first from `start`'s successors back to `start`: the
        // shortest circle through it.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::new();
        for next in &graph[start] {
            parent.entry(next).or_insert(start);
            queue.push_back(next.as_str());
        }
        while let Some(node) = queue.pop_front() {
            if node == start {
                let mut path = vec![start.as_str()];
                let mut at = parent[start.as_str()];
                while at != start {
                    path.push(at);
                    at = parent[at];
                }
                path.push(start);
                path.reverse();
                // The same circle from each of its modules: keep one.
                let mut key: Vec<&str> = path[1..].to_vec();
                key.sort_unstable();
                if found.iter().all(|(k, _): &(Vec<&str>, String)| *k != key) {
                    found.insert((key, path.join(" -> ")));
                }
                break;
            }
            for next in graph.get(node).into_iter().flatten() {
                if !parent.contains_key(next.as_str()) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
    }
    found.into_iter().map(|(_, text)| text).collect()
}

#[test]
fn no_module_reaches_itself_through_others() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.len() > 10,
        "too few modules found in {}",
        src.display()
    );
    let circles = circles(&graph);
    assert!(
        circles.is_empty(),
        "modules that import each other in a circle (state belongs below the \
         features, wiring above them):\n{}",
        circles.join("\n")
    );
}

#[test]
fn inline_paths_groups_and_comments() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e::f};\nfn x() { crate::g::h(); }\n\
         // crate::i\n/* crate::j */ let s = \"crate::k\"; not_crate::l();",
    );
    let got: Vec<String> = reached(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "e", "g"]);
}

#[test]
fn a_circle_is_found_once() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    };
    edge("runtime", "audit");
    edge("audit", "leak");
    edge("leak", "runtime");
    edge("shm", "runtime");
    assert_eq!(circles(&g), ["audit -> leak -> runtime -> audit"]);
    g.get_mut("leak").unwrap().clear();
    assert!(circles(&g).is_empty());
}
