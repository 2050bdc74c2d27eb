//! `shmguard`: run process trees under the shmguard library and report what
//! they leaked; report from saved audit logs; list and clean orphaned
//! System V shared-memory segments. See docs/cli.md.
#![deny(unsafe_code)]

mod ci;
mod generate;
mod junit;
mod kernel;
mod outfile;
mod report;
mod run;
mod sarif;
mod segments;
mod suppressions;
mod table;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use shmguard_cli::{logs, os};

use crate::kernel::Clock;
use crate::report::KernelView;

/// An error that ends the command: the message, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: String) -> Self {
        Self { code, message }
    }
}

#[derive(Parser)]
#[command(
    name = "shmguard",
    version,
    about = "Audit System V shared memory: run programs under shmguard, report leaks, list and clean orphans",
    long_about = "Audit System V shared memory (shmget, shmat, shmdt, shmctl).\n\n\
        `shmguard run` runs a command with libshmguard.so preloaded across its\n\
        whole process tree, waits for every descendant, and reports the segments\n\
        the tree left in the kernel, attachments never detached, failed calls\n\
        and policy findings. `shmguard report` gives the same report from saved\n\
        audit logs. `shmguard ls` lists the kernel's segments with their\n\
        creator, and `shmguard clean --orphans` removes your orphaned ones.",
    after_help = "Examples:\n  \
        shmguard run --fail-on-leak -- make test\n  \
        shmguard report /tmp/shmguard.Ab12Cd\n  \
        shmguard ls --orphans --human\n  \
        shmguard clean --orphans --older-than 1h --yes\n\n\
        See docs/cli.md for the full reference."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Run(RunCmd),
    Report(ReportCmd),
    Ls(LsCmd),
    Clean(CleanCmd),
}

/// Run a command under shmguard and report what its process tree leaked
///
/// CMD runs with libshmguard.so added to LD_PRELOAD and SHMGUARD_OPTIONS set
/// to log every shm call of every process to LOGDIR/shmguard.PID.jsonl.
/// shmguard becomes a child subreaper, so descendants that outlive their
/// parents (daemons, double forks) are reparented to it, and it waits until
/// the whole tree is gone. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and
/// SIGUSR2 sent to shmguard are passed on to the tree, once: a signal sent
/// to the whole process group (kill -INT -PGID, Ctrl-C) is not sent again.
///
/// The tree's report is the one answer: each process's own leak report at
/// exit is off (leak_report=0; --per-process keeps it).
///
/// The report names, with shmid=N: segments the tree created that are still
/// in the kernel, unmarked, after the tree is gone; attachments a process
/// never detached (from its exit event); failed calls by errno; policy
/// findings. Programs that could not be preloaded (static binaries, setuid
/// programs) are covered by comparing the kernel's segment table before and
/// after: a new segment is the tree's when its creator pid was in the tree,
/// or when its creator started during the run, ran as the tree's user, and
/// has exited unseen (a heuristic: see docs/cli.md).
///
/// The report goes to standard error (so it does not mix with CMD's
/// output), or to a file with --output. Nothing of run's goes to standard
/// output, which is CMD's alone: --json FILE, --junit FILE and --sarif FILE
/// write the report as JSON, JUnit XML and SARIF 2.1.0 to files, any of
/// them in one run. Each FILE is checked before CMD starts (exit 2 if it
/// cannot be written), and written in full to a new file renamed over it
/// (a symbolic link there is replaced, not followed).
///
/// Exit status: CMD's; if signal N killed CMD, shmguard reports, then dies
/// of signal N itself (a shell sees 128+N); 1 with --fail-on-leak when the
/// tree leaked a segment or an attachment, or with --fail-on-finding when
/// the policy found something (neither suppressed); 2 for bad usage (also
/// an unsafe --log-dir, --options the library would not apply, or a bad
/// --suppressions file); 125 when
/// shmguard itself fails; 126 when CMD cannot be run; 127 when it is not
/// found.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "shmguard run [OPTIONS] [--] <CMD> [ARGS]...",
    after_help = "Examples:\n  \
    shmguard run -- ./server --port 8080\n  \
    shmguard run --fail-on-leak --log-dir logs -- make check\n  \
    shmguard run --json r.json --junit r.xml --sarif r.sarif -- make check\n  \
    shmguard run --json r.json --options policy=strict -- ./client && jq .summary r.json"
)]
struct RunCmd {
    /// Write the audit logs to DIR
    ///
    /// Created if missing, like the default: mode 1733 (sticky; anyone may
    /// add a file, no one may list, remove or replace another's) while the
    /// tree runs, so that processes that switch user can log, then 0700.
    /// An existing DIR must be yours, not a symbolic link, not writable by
    /// others without the sticky bit, and hold no logs (*.jsonl) yet; its
    /// parents must be yours or root's, and sticky if others may write.
    /// Default: a fresh directory shmguard.XXXXXX under $TMPDIR, kept and
    /// named in the report when a process logged (else removed). Logs of
    /// users the tree did not run as are ignored and renamed *.untrusted.
    #[arg(long, value_name = "DIR", verbatim_doc_comment)]
    log_dir: Option<PathBuf>,

    /// Exit with status 1 when the tree leaked
    ///
    /// A leak is a segment left in the kernel or an attachment never
    /// detached; notes (segments still attached by processes outside the
    /// tree) do not count.
    #[arg(long, verbatim_doc_comment)]
    fail_on_leak: bool,

    /// Exit with status 1 when the policy found something
    ///
    /// A policy finding (wide-mode, key-without-excl, key-squatting,
    /// widening-ipc-set, shm-exec) that no suppression names fails the run
    /// as a leak does under --fail-on-leak.
    #[arg(long, verbatim_doc_comment)]
    fail_on_finding: bool,

    /// Leave out the leaks and findings FILE names
    ///
    /// LeakSanitizer's format: one leak:PATTERN, finding:RULE or
    /// finding:RULE:PATTERN per line, # comments. PATTERN is a substring
    /// where `*` matches anything and `^`, `$` anchor; it matches the key
    /// in hex (0x5eed0001), the creating command, or a frame of the
    /// creation stack (stacks=1). Read once, before CMD starts: a bad line is an
    /// error (exit 2). Also passed to the tree as suppressions=FILE
    /// (unless SHMGUARD_OPTIONS or --options set their own). The SUMMARY
    /// counts what was suppressed.
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    suppressions: Option<PathBuf>,

    /// Write the report as JSON to FILE (pretty-printed)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Write the report as JUnit XML to FILE
    ///
    /// One test case per logged process, a failure per leak and per policy
    /// finding, and a test case for segments found only through the
    /// kernel's table (Jenkins, GitLab and other CI servers read it).
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    junit: Option<PathBuf>,

    /// Write the report as SARIF 2.1.0 to FILE
    ///
    /// A result per leak, note and policy finding, located at the call
    /// stack's first source line when there is one (--options stacks=1,
    /// programs built with -g), for code-scanning views.
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    sarif: Option<PathBuf>,

    /// More SHMGUARD_OPTIONS for the tree
    ///
    /// key=value pairs joined by ':', e.g. policy=strict:verbosity=1 (see
    /// the README). They follow the caller's SHMGUARD_OPTIONS and run's
    /// log_path, which they may not set. Checked by the library's parser
    /// before CMD starts: an unknown key or a bad value is refused (exit 2).
    #[arg(long, value_name = "OPTS", verbatim_doc_comment)]
    options: Option<String>,

    /// The library to preload
    ///
    /// Default: $SHMGUARD_LIB, else libshmguard.so next to this
    /// executable, else ../lib/libshmguard.so from it (make install).
    #[arg(long, value_name = "PATH", verbatim_doc_comment)]
    lib: Option<PathBuf>,

    /// Write the text report to FILE
    ///
    /// Instead of standard error.
    #[arg(short, long, value_name = "FILE", verbatim_doc_comment)]
    output: Option<PathBuf>,

    /// Also print each process's own leak report at its exit
    ///
    /// The library's `==PID== shmguard: leak: ...` lines, as without run.
    /// Off by default: run passes leak_report=0, and the tree's report is
    /// the one answer. leak_report=1 in SHMGUARD_OPTIONS or --options does
    /// the same. Either way the logs keep every exit event's leaks.
    #[arg(long, verbatim_doc_comment)]
    per_process: bool,

    /// The command to run, and its arguments
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

/// Report from saved audit logs, with a row per process
///
/// Reads every log of LOGDIR (or LOGDIR itself when it is a file), as
/// written by `shmguard run` or with SHMGUARD_OPTIONS=log_path=...: each
/// *.jsonl file, and each other file that begins with a start event
/// (log_path=DIR/app writes app.PID). Only regular files with one link, writable by no one but their owner,
/// are read; in a LOGDIR others may write, only those of its owner and
/// root. Fields from the logs are shown escaped.
///
/// Prints a table (pid, ppid, calls, failed calls, segments created and
/// removed, peak attachments, how the log ended, command), then each leak,
/// failed calls by errno, and policy findings (identical ones once, with
/// a count), with their call stacks when the logs have them (stacks=1):
/// the text `shmguard run` prints, every line prefixed "shmguard: ".
/// A leak is:
/// - a segment the logs show created and never marked with IPC_RMID (and
///   that its creator's exit check did not find removed), with whether it
///   is still in the kernel now;
/// - an attachment an exit event lists as never detached.
///
/// Logs cut short by SIGKILL (NUL padding, no exit event) are read up to
/// their last complete event; lines that do not parse are skipped with a
/// warning.
///
/// With --json the report is printed as JSON instead of text;
/// --junit FILE and --sarif FILE write it as JUnit XML and SARIF 2.1.0 to
/// files too (checked first, written as run writes them).
///
/// Exit status: 0; 1 when LOGDIR cannot be read, or with --fail-on-leak
/// when the logs show a leak, or with --fail-on-finding a policy finding
/// (neither suppressed); 2 for bad usage (a bad --suppressions file, or a
/// FILE that cannot be written), or with --fail-on-leak or
/// --fail-on-finding when no log was read (nothing to judge is no pass).
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  shmguard report /tmp/shmguard.Ab12Cd --json | jq '.leaked_segments[].shmid'\n  \
    shmguard report /tmp/shmguard.Ab12Cd --junit r.xml --sarif r.sarif"
)]
struct ReportCmd {
    /// The directory of logs (or one log file)
    #[arg(value_name = "LOGDIR")]
    log_dir: PathBuf,

    /// Print the report as JSON (pretty-printed) instead of text
    #[arg(long)]
    json: bool,

    /// Write the report as JUnit XML to FILE
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,

    /// Write the report as SARIF 2.1.0 to FILE
    #[arg(long, value_name = "FILE")]
    sarif: Option<PathBuf>,

    /// Exit with status 1 when the logs show a leak
    #[arg(long)]
    fail_on_leak: bool,

    /// Exit with status 1 when the logs show a policy finding
    ///
    /// One that no suppression names; with no log read, exit 2 (as
    /// --fail-on-leak).
    #[arg(long, verbatim_doc_comment)]
    fail_on_finding: bool,

    /// Leave out the leaks and findings FILE names
    ///
    /// The format of `shmguard run --suppressions` (LeakSanitizer's): a bad
    /// line is an error (exit 2). Findings and leaks the processes' own
    /// suppressions=FILE marked in the logs are left out too.
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    suppressions: Option<PathBuf>,
}

/// List the kernel's shared-memory segments, with their creator
///
/// Like `ipcs -m` and `lsipc -m`: key, shmid, owner, permissions, size,
/// attachments, creator pid, whether the creator still lives, status, age,
/// and the creator's command while it lives.
///
/// A creator is gone only when that is known: no process has its pid
/// (kill(pid, 0) says ESRCH), or the process with its pid started after the
/// segment's ctime (a reused pid), or it is a zombie. When it cannot be
/// known (cpid 0: a creator in another PID namespace; a pid /proc hides;
/// a /proc of another PID namespace; a kernel before 4.17) it is
/// unknown(WHY). Status: dest (marked for removal), locked (SHM_LOCK),
/// orphan (no process attached, creator gone, not marked), unknown (no
/// process attached, not marked, creator unknown: never an orphan).
///
/// Exit status: 0; 1 when /proc/sysvipc/shm cannot be read.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    after_help = "Examples:\n  shmguard ls --human\n  shmguard ls --orphans --json | jq '.segments[].shmid'"
)]
struct LsCmd {
    /// Only orphans: no process attached, creator gone, not marked
    #[arg(long)]
    orphans: bool,

    /// Print JSON: {"schema": "shmguard-ls/1", "segments": [...]}
    ///
    /// Pretty-printed; each segment is an object with the fields key,
    /// shmid, owner, uid, gid, cuid, cgid, mode, size, nattch, cpid, lpid,
    /// creator_command, creator_alive, creator (alive, gone, unknown),
    /// creator_unknown (why, or null), dest, locked, ctime, age, orphan.
    #[arg(long, verbatim_doc_comment)]
    json: bool,

    /// Sizes as 4.0K, 1.5M instead of bytes
    #[arg(long)]
    human: bool,
}

/// Remove your orphaned segments (a dry run unless --yes)
///
/// An orphan has no process attached, a creator that is provably gone (see
/// `shmguard ls --help`), and is not already marked for removal. Only
/// segments whose owner uid is your effective uid are considered (root too
/// removes only its own); a segment in use, or whose creator cannot be
/// known, is never touched. Each one is read again (IPC_STAT) just before
/// it is removed with IPC_RMID, and kept if it changed. Without --yes,
/// prints what it would remove.
///
/// Exit status: 0; 1 when a removal failed; 2 without --orphans.
#[derive(Args)]
#[command(
    verbatim_doc_comment,
    override_usage = "shmguard clean --orphans [--older-than <DUR>] [--yes]",
    after_help = "Examples:\n  shmguard clean --orphans\n  shmguard clean --orphans --older-than 2h --yes"
)]
struct CleanCmd {
    /// Required: clean removes orphans only, and says so
    #[arg(long)]
    orphans: bool,

    /// Only orphans older than DUR (30s, 10m, 2h, 7d, 2w, 1h30m)
    ///
    /// Age is the time since ctime. DUR is a number with a unit, as
    /// humantime reads it: 30s, 10m, 2h, 7d, 2w, or several, 1h30m or
    /// 1h 30m (a bare number is seconds). Longer than 2^63-1 seconds is
    /// an error (exit 2).
    #[arg(long, value_name = "DUR", value_parser = table::parse_duration, verbatim_doc_comment)]
    older_than: Option<u64>,

    /// Remove them (without it, a dry run)
    #[arg(short, long)]
    yes: bool,
}

fn report_cmd(cmd: ReportCmd) -> Result<i32, Failure> {
    let rules = cmd
        .suppressions
        .as_deref()
        .map(suppressions::read)
        .transpose()?;
    let dir = cmd.log_dir;
    let junit = cmd
        .junit
        .as_deref()
        .map(|p| outfile::check(p, "--junit"))
        .transpose()?;
    let sarif = cmd
        .sarif
        .as_deref()
        .map(|p| outfile::check(p, "--sarif"))
        .transpose()?;
    if let (Some(j), Some(s)) = (&junit, &sarif) {
        outfile::check_distinct(&[("--junit", j), ("--sarif", s)])?;
    }
    let gate = match (cmd.fail_on_leak, cmd.fail_on_finding) {
        (true, true) => "--fail-on-leak and --fail-on-finding",
        (true, false) => "--fail-on-leak",
        (false, true) => "--fail-on-finding",
        (false, false) => "",
    };
    let mut logs = logs::read(&dir).map_err(|e| {
        Failure::new(
            1,
            format!(
                "cannot read the logs in {}: {e}",
                logs::printable(&dir.display().to_string())
            ),
        )
    })?;
    if !gate.is_empty() && logs.processes.is_empty() {
        // A gate must not pass on nothing: logs that went elsewhere, or
        // that were all ignored, would look like a clean run.
        for w in &logs.warnings {
            eprintln!("shmguard: warning: {}", logs::printable(w));
        }
        return Err(Failure::new(
            2,
            format!(
                "{gate}: no log read in {} ({}), so there is nothing to judge; \
                 check where log_path sent the logs",
                logs::printable(&dir.display().to_string()),
                if logs.warnings.is_empty() {
                    "no file there is an audit log with an event".to_owned()
                } else {
                    format!(
                        "every file there that could be a log was ignored: {}",
                        if logs.warnings.len() == 1 {
                            "see the warning above"
                        } else {
                            "see the warnings above"
                        }
                    )
                }
            ),
        ));
    }
    let rows = kernel::segments().unwrap_or_default();
    let clock = Clock::read();
    let suppressed_findings = suppressions::take_findings(&mut logs, rules.as_ref());
    let mut report = report::analyze(
        &logs,
        &dir.display().to_string(),
        KernelView::Now(&rows, kernel::ipc_namespace()),
        &|cpid, ctime| clock.creator_alive(cpid, ctime),
    );
    suppressions::apply(
        &mut report,
        &logs,
        rules.as_ref(),
        suppressed_findings,
        &[&rows],
    );
    if let Some(f) = &junit {
        f.write(junit::render(&report).as_bytes())?;
    }
    if let Some(f) = &sarif {
        f.write(sarif::render(&report).as_bytes())?;
    }
    if cmd.json {
        let text =
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(1, e.to_string()))?;
        println!("{text}");
    } else {
        if logs.processes.is_empty() {
            println!(
                "{}no logs in {} (no process made a shm call, or the logs went elsewhere)",
                report::PREFIX,
                logs::printable(&dir.display().to_string())
            );
        }
        print!("{}", report::render_report(&report));
    }
    Ok(
        if (cmd.fail_on_leak && report.leaked()) || (cmd.fail_on_finding && report.found()) {
            1
        } else {
            0
        },
    )
}

fn main() -> ExitCode {
    // `shmguard __generate ...` (for `make install`) is no subcommand of
    // clap's, so that neither --help nor the completions it writes offer it.
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == generate::ARG) {
        return exit(generate::generate(Cli::command(), &argv[2..]));
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(c) => run::run(run::RunArgs {
            log_dir: c.log_dir,
            fail_on_leak: c.fail_on_leak,
            fail_on_finding: c.fail_on_finding,
            suppressions: c.suppressions,
            json: c.json,
            junit: c.junit,
            sarif: c.sarif,
            options: c.options,
            lib: c.lib,
            output: c.output,
            command: c.command,
            per_process: c.per_process,
        }),
        Command::Report(c) => report_cmd(c),
        Command::Ls(c) => segments::ls(c.orphans, c.json, c.human),
        Command::Clean(c) => segments::clean(c.orphans, c.older_than, c.yes),
    };
    exit(result)
}

fn exit(result: Result<i32, Failure>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(f) => {
            eprintln!("shmguard: {}", logs::printable(&f.message));
            ExitCode::from(f.code.clamp(1, 255) as u8)
        }
    }
}
