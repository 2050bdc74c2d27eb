//! The committed man page shmguard(3) (man/shmguard.3) against the code:
//! its OPTIONS section lists exactly the options the library knows, in
//! `help=1`'s order, each with its values and default, and every function
//! the header declares is named in it. `make install` installs the page;
//! c_tests/check-install.sh renders it with man.

use std::path::PathBuf;

fn page() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/shmguard.3");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// roff text without font escapes and markup: `\fB`, `\fR`, `\-`, `\&`.
fn plain(roff: &str) -> String {
    roff.replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\-", "-")
        .replace("\\&", "")
}

/// The `.TP` items of the OPTIONS section: (key=values as the tag shows
/// it, the default the body gives).
fn documented_options(page: &str) -> Vec<(String, String)> {
    let start = page.find("\n.SH OPTIONS\n").expect("an OPTIONS section");
    let section = &page[start + 1..];
    let end = section[1..].find("\n.SH ").map_or(section.len(), |e| e + 1);
    let lines: Vec<&str> = section[..end].lines().collect();
    let mut items = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if *l != ".TP" {
            continue;
        }
        let tag = lines[i + 1];
        let (macro_, args) = tag.split_once(' ').expect("a tag line");
        assert!(
            [".B", ".BR", ".BI"].contains(&macro_),
            "unexpected tag {tag:?}"
        );
        // The alternating-font macros join their arguments.
        let tag = plain(&args.split(' ').collect::<String>());
        let default = lines[i + 2]
            .strip_prefix("Default ")
            .and_then(|d| d.strip_suffix('.'))
            .unwrap_or_else(|| panic!("no `Default X.` line after {tag:?}"));
        items.push((tag, default.to_owned()));
    }
    items
}

#[test]
fn the_man_page_lists_every_option_with_its_default() {
    let documented = documented_options(&page());
    let known: Vec<(String, String)> = shmguard::support::option_docs()
        .into_iter()
        .map(|(key, values, default)| (format!("{key}={values}"), default.to_owned()))
        .collect();
    assert_eq!(
        documented, known,
        "man/shmguard.3's OPTIONS (left) differ from the options the library knows (right, src/options.rs DOCS)"
    );
}

#[test]
fn the_man_page_names_every_function_of_the_header() {
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/shmguard.h"),
    )
    .unwrap();
    let page = plain(&page());
    let mut functions: Vec<&str> = header
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("shmguard_"))
        .collect();
    functions.sort_unstable();
    functions.dedup();
    assert!(functions.len() >= 12, "{functions:?}");
    for f in functions {
        assert!(page.contains(f), "man/shmguard.3 does not name {f}");
    }
}
