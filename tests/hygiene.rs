//! The repository holds sources, not build products: no Python bytecode
//! (`__pycache__/`, `*.pyc`) or object files are committed, and
//! `.gitignore` keeps them out.

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
