//! `shmguard __generate` (for packaging, not a subcommand clap knows): the
//! man pages and the shell completions, made from the command's own clap
//! definitions so that they never drift from `--help`. `make install`
//! runs it:
//!
//!   shmguard __generate man DIR            shmguard.1, shmguard-run.1, ... into DIR
//!   shmguard __generate completion SHELL   the script for bash, zsh, fish, ... on stdout
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::Path;

use clap_complete::Shell;

use crate::Failure;

/// The first argument that selects this mode.
pub const ARG: &str = "__generate";

/// Does what `args` (after [`ARG`]) ask.
pub fn generate(cmd: clap::Command, args: &[OsString]) -> Result<i32, Failure> {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    match args.as_slice() {
        ["man", dir] => man_pages(cmd, Path::new(dir)),
        ["completion", shell] => {
            let shell: Shell = shell
                .parse()
                .map_err(|e| Failure::new(2, format!("{ARG} completion: {e}")))?;
            completion(cmd, shell)
        }
        _ => Err(Failure::new(
            2,
            format!(
                "usage: shmguard {ARG} man DIR | {ARG} completion bash|zsh|fish|elvish|powershell"
            ),
        )),
    }
}

/// The manual pages `shmguard.1`, `shmguard-run.1`, ... into `dir`.
fn man_pages(cmd: clap::Command, dir: &Path) -> Result<i32, Failure> {
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(cmd, dir))
        .map_err(|e| {
            Failure::new(
                1,
                format!("cannot write man pages to {}: {e}", dir.display()),
            )
        })?;
    Ok(0)
}

/// The completion script for `shell` on standard output.
fn completion(mut cmd: clap::Command, shell: Shell) -> Result<i32, Failure> {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(0)
}
