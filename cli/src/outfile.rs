//! The files the command writes its reports to (`run --json FILE`,
//! `--junit FILE`, `--sarif FILE`, `-o FILE`; `report --junit FILE`,
//! `--sarif FILE`): checked before anything starts, written in full to a
//! fresh file in the target's directory and renamed over the target.
//!
//! A report file is often named in a shared directory (`/tmp/r.json`),
//! where another user may have put a file or a symbolic link under that
//! name first. Opening the name with `O_CREAT|O_TRUNC` would write through
//! such a link (into whatever it points to), or into a file that user
//! owns and can read or change again. Instead the report goes to a new
//! file (`O_CREAT|O_EXCL`: made by us, never a link, never someone
//! else's), which `rename(2)` puts in place of the name: a planted link
//! is replaced, never followed, and readers never see a half-written
//! report. A link is followed only when it is trusted, as the kernel's
//! `protected_symlinks` judges: not in a sticky directory others may
//! write, or owned by us or by that directory's owner. In a sticky
//! directory (`/tmp`) the kernel refuses to let us replace a name another
//! user owns (unless we own the directory, or are root); that is refused
//! up front, as is a name that is a directory or a directory we cannot
//! create files in.
//!
//! What is not a regular file is written as it is, never replaced: a
//! device or a FIFO (`/dev/null`, a terminal, a named pipe), and every
//! path under `/dev` or `/proc` or reached through them (`/dev/stderr`,
//! `/dev/fd/N`: a descriptor the caller redirected, perhaps to a file the
//! command writes to as well, which is appended to). Such a file is
//! opened when it is checked, without creating anything.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Failure;
use crate::os;

/// How a report reaches its file.
#[derive(Debug)]
enum How {
    /// A new file in `dir`, renamed to `name` (absolute `dir`, without
    /// symbolic links).
    Replace { dir: PathBuf, name: OsString },
    /// An open device, FIFO or descriptor, written as it is.
    Direct(fs::File),
}

/// A report file, checked and ready to be written.
#[derive(Debug)]
pub struct OutFile {
    /// What the user wrote (for messages).
    shown: PathBuf,
    how: How,
}

impl OutFile {
    /// The file a new report replaces (`None` for one written as it is).
    pub fn target(&self) -> Option<PathBuf> {
        match &self.how {
            How::Replace { dir, name } => Some(dir.join(name)),
            How::Direct(_) => None,
        }
    }

    /// The file as the user named it.
    pub fn shown(&self) -> String {
        crate::logs::printable(&self.shown.display().to_string())
    }
}

/// Whether a symbolic link may be followed, as `protected_symlinks` says:
/// not in a sticky directory that others may write, or owned by us or by
/// that directory's owner.
fn trusted_link(link: &fs::Metadata, dir: &fs::Metadata) -> bool {
    let open_sticky = dir.mode() & 0o1002 == 0o1002;
    !open_sticky || link.uid() == os::euid() || link.uid() == dir.uid()
}

/// Whether `path`, or a symbolic link on the way from it, is under
/// `/dev` or `/proc` (`/dev/stderr` -> `/proc/self/fd/2` -> ...).
fn via_dev_or_proc(path: &Path) -> bool {
    let special = |p: &Path| p.starts_with("/dev") || p.starts_with("/proc");
    let mut at = match std::path::absolute(path) {
        Ok(p) => p,
        Err(_) => return false,
    };
    for _ in 0..40 {
        if special(&at) {
            return true;
        }
        match fs::read_link(&at) {
            Ok(next) => {
                at = match at.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Checks that a report can be written to `path` (by `flag`, for the
/// message), before anything else is done: see the module's comment.
/// Refused with exit status 2.
pub fn check(path: &Path, flag: &str) -> Result<OutFile, Failure> {
    let refuse = |why: String| {
        Failure::new(
            2,
            format!(
                "cannot write {flag} {}: {why}",
                crate::logs::printable(&path.display().to_string())
            ),
        )
    };
    if path.as_os_str() == "-" {
        return Err(refuse(
            "a report file must be named: standard output is not one \
             (run's is the command's; report --json prints there)"
                .to_owned(),
        ));
    }
    let out = |how| OutFile {
        shown: path.to_path_buf(),
        how,
    };
    if via_dev_or_proc(path) {
        return direct(path).map(out).map_err(refuse);
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            replace(path, None).map(out).map_err(refuse)
        }
        Err(e) => Err(refuse(e.to_string())),
        Ok(m) if m.is_dir() => Err(refuse("it is a directory".to_owned())),
        Ok(m) if m.is_file() => replace(path, Some(&m)).map(out).map_err(refuse),
        Ok(m) if m.file_type().is_symlink() => {
            let dir =
                fs::metadata(parent(path)).map_err(|e| refuse(format!("its directory: {e}")))?;
            if !trusted_link(&m, &dir) {
                // Planted: replaced, never followed.
                return replace(path, Some(&m)).map(out).map_err(refuse);
            }
            match fs::metadata(path) {
                Ok(t) if t.is_dir() => Err(refuse("it is a directory".to_owned())),
                Ok(t) if t.is_file() => {
                    let real = fs::canonicalize(path).map_err(|e| refuse(e.to_string()))?;
                    replace(&real, Some(&t)).map(out).map_err(refuse)
                }
                Ok(_) => direct(path).map(out).map_err(refuse),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(refuse(
                    "it is a symbolic link to nothing (name the file itself)".to_owned(),
                )),
                Err(e) => Err(refuse(e.to_string())),
            }
        }
        Ok(_) => direct(path).map(out).map_err(refuse),
    }
}

/// The directory `path` names a file in.
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A regular file (`existing`, if there is one) to be replaced by a new
/// one: the directory must let us create files, and in a sticky directory
/// the name must be ours to replace.
fn replace(path: &Path, existing: Option<&fs::Metadata>) -> Result<How, String> {
    let name = match path.file_name() {
        Some(n) if !path.as_os_str().to_string_lossy().ends_with('/') => n.to_owned(),
        _ => return Err("it names a directory, not a file".to_owned()),
    };
    let dir = fs::canonicalize(parent(path)).map_err(|e| format!("its directory: {e}"))?;
    let dir_meta = fs::metadata(&dir).map_err(|e| format!("its directory: {e}"))?;
    if !dir_meta.is_dir() {
        return Err("its parent is not a directory".to_owned());
    }
    if let Some(meta) = existing {
        let sticky = dir_meta.mode() & 0o1000 != 0;
        let euid = os::euid();
        if sticky && euid != 0 && meta.uid() != euid && dir_meta.uid() != euid {
            return Err(format!(
                "it exists and belongs to uid {} in a sticky directory: it cannot be \
                 replaced (remove it, or choose another name)",
                meta.uid()
            ));
        }
    }
    // Whether we may create files there: make (and remove) the kind of
    // file the report will be written to.
    let (file, temp) = create_temp(&dir, &name)
        .map_err(|e| format!("cannot create a file in its directory: {e}"))?;
    drop(file);
    let _ = fs::remove_file(temp);
    Ok(How::Replace { dir, name })
}

/// A device, FIFO or descriptor, opened now for writing (appending),
/// without creating anything; a FIFO no process reads is refused.
fn direct(path: &Path) -> Result<How, String> {
    let file = fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => "no process reads it (a FIFO without a reader?)".to_owned(),
            _ => e.to_string(),
        })?;
    if file.metadata().map_err(|e| e.to_string())?.is_dir() {
        return Err("it is a directory".to_owned());
    }
    os::set_blocking(&file).map_err(|e| e.to_string())?;
    Ok(How::Direct(file))
}

/// Refuses two outputs that name the same file (exit status 2).
pub fn check_distinct(files: &[(&str, &OutFile)]) -> Result<(), Failure> {
    for (i, (flag_a, a)) in files.iter().enumerate() {
        for (flag_b, b) in &files[i + 1..] {
            if a.target().is_some() && a.target() == b.target() {
                return Err(Failure::new(
                    2,
                    format!(
                        "{flag_a} and {flag_b} name the same file ({}): give each its own",
                        a.shown()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A new file `.NAME.XXXXXX` in `dir`, made exclusively (`O_EXCL`, so
/// nothing planted under that name is ever opened), with the mode a new
/// file gets from the umask.
fn create_temp(dir: &Path, target: &std::ffi::OsStr) -> io::Result<(fs::File, PathBuf)> {
    let mut prefix = OsString::from(".");
    prefix.push(target);
    prefix.push(".");
    let temp = tempfile::Builder::new()
        .prefix(&prefix)
        .rand_bytes(6)
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    temp.keep().map_err(|e| e.error)
}

impl OutFile {
    /// Writes `text`: to a new file renamed over the target (which then
    /// holds the whole report or is left as it was), or to the device,
    /// FIFO or descriptor as it is.
    pub fn write(&self, text: &[u8]) -> Result<(), Failure> {
        let fail = |e: io::Error| {
            Failure::new(
                125,
                format!("cannot write the report to {}: {e}", self.shown()),
            )
        };
        let (dir, name) = match &self.how {
            How::Direct(file) => {
                let mut file: &fs::File = file;
                return file
                    .write_all(text)
                    .and_then(|()| file.flush())
                    .map_err(fail);
            }
            How::Replace { dir, name } => (dir, name),
        };
        let (mut file, temp) = create_temp(dir, name).map_err(fail)?;
        let written = file
            .write_all(text)
            .and_then(|()| file.flush())
            .and_then(|()| fs::rename(&temp, dir.join(name)));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(fail(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("shmguard-outfile.{name}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_replace_a_planted_symbolic_link_instead_of_following_it() {
        use std::os::unix::fs::PermissionsExt;
        // Another user's link in a sticky directory anyone may write (as
        // in /tmp; needs root, to give the link away).
        let d = scratch("link");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).unwrap();
        let victim = d.join("victim");
        fs::write(&victim, "keep\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("r.json")).unwrap();
        std::os::unix::fs::lchown(d.join("r.json"), Some(65534), Some(65534)).unwrap();
        let out = check(&d.join("r.json"), "--json").unwrap();
        out.write(b"{}\n").unwrap();
        let victim_text = fs::read_to_string(&victim).unwrap();
        let meta = fs::symlink_metadata(d.join("r.json")).unwrap();
        let text = fs::read_to_string(d.join("r.json")).unwrap();
        let left: Vec<_> = fs::read_dir(&d).unwrap().collect();
        fs::remove_dir_all(&d).unwrap();
        assert_eq!(victim_text, "keep\n");
        assert!(meta.file_type().is_file());
        assert_eq!(text, "{}\n");
        assert_eq!(left.len(), 2, "no temporary file is left behind");
    }

    #[test]
    fn devices_are_written_as_they_are_and_trusted_links_followed() {
        let null = check(Path::new("/dev/null"), "-o").unwrap();
        assert!(null.target().is_none());
        null.write(b"report\n").unwrap();
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        // A link of our own, in a directory only we may write: followed,
        // the file it names replaced.
        let d = scratch("trusted");
        fs::create_dir(d.join("out")).unwrap();
        std::os::unix::fs::symlink("out/real.json", d.join("r.json")).unwrap();
        fs::write(d.join("out/real.json"), "old\n").unwrap();
        let f = check(&d.join("r.json"), "--json").unwrap();
        f.write(b"new\n").unwrap();
        let link = fs::symlink_metadata(d.join("r.json")).unwrap();
        let text = fs::read_to_string(d.join("out/real.json")).unwrap();
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        let e = check(&dangling, "--json").unwrap_err();
        fs::remove_dir_all(&d).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(text, "new\n");
        assert_eq!(e.code, 2);
    }

    #[test]
    fn refuses_directories_missing_parents_and_the_same_file_twice() {
        let d = scratch("refuse");
        let e1 = check(&d, "--json").unwrap_err();
        let e2 = check(&d.join("no/such/r.xml"), "--junit").unwrap_err();
        let e4 = check(Path::new("-"), "--sarif").unwrap_err();
        let a = check(&d.join("r"), "--json").unwrap();
        let b = check(&d.join("./r"), "--sarif").unwrap();
        let e3 = check_distinct(&[("--json", &a), ("--sarif", &b)]).unwrap_err();
        fs::remove_dir_all(&d).unwrap();
        assert_eq!((e1.code, e2.code, e3.code, e4.code), (2, 2, 2, 2));
        assert!(e1.message.contains("directory"), "{}", e1.message);
        assert!(e2.message.contains("--junit"), "{}", e2.message);
        assert!(e3.message.contains("same file"), "{}", e3.message);
    }
}
