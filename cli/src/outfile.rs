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
//! else's), which `rename(2)` puts in place of the name: a symbolic link
//! there is replaced, never followed, and readers never see a half-written
//! report. In a sticky directory (`/tmp`) the kernel refuses to let us
//! replace a name another user owns (unless we own the directory, or are
//! root); that is refused up front, as is a name that is a directory or a
//! directory we cannot create files in.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::Failure;
use crate::os;

/// A report file, checked and ready to be written.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// What the user wrote (for messages).
    shown: PathBuf,
    /// The directory it goes into (absolute, without symbolic links).
    dir: PathBuf,
    /// Its name in `dir`.
    name: OsString,
}

impl OutFile {
    /// The target as `dir/name` (for comparing two targets).
    pub fn target(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The file as the user named it.
    pub fn shown(&self) -> String {
        crate::logs::printable(&self.shown.display().to_string())
    }
}

/// Checks that a report can be written to `path` (by `flag`, for the
/// message), before anything else is done: its directory exists and we
/// can create files in it, the name is not a directory, and the name is
/// not another user's in a sticky directory that we do not own. Refused
/// with exit status 2.
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
    let name = match path.file_name() {
        Some(n) if !path.as_os_str().to_string_lossy().ends_with('/') => n.to_owned(),
        _ => return Err(refuse("it names a directory, not a file".to_owned())),
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = fs::canonicalize(parent).map_err(|e| refuse(format!("its directory: {e}")))?;
    let dir_meta = fs::metadata(&dir).map_err(|e| refuse(format!("its directory: {e}")))?;
    if !dir_meta.is_dir() {
        return Err(refuse("its parent is not a directory".to_owned()));
    }
    let out = OutFile {
        shown: path.to_path_buf(),
        dir,
        name,
    };
    match fs::symlink_metadata(out.target()) {
        Ok(meta) => {
            if meta.is_dir() {
                return Err(refuse("it is a directory".to_owned()));
            }
            let sticky = dir_meta.mode() & 0o1000 != 0;
            let euid = os::euid();
            if sticky && euid != 0 && meta.uid() != euid && dir_meta.uid() != euid {
                return Err(refuse(format!(
                    "it exists and belongs to uid {} in a sticky directory: it cannot be \
                     replaced (remove it, or choose another name)",
                    meta.uid()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(e.to_string())),
    }
    // Whether we may create files there: make (and remove) the kind of
    // file the report will be written to.
    let (file, temp) = out
        .create_temp()
        .map_err(|e| refuse(format!("cannot create a file in its directory: {e}")))?;
    drop(file);
    let _ = fs::remove_file(temp);
    Ok(out)
}

/// Refuses two outputs that name the same file (exit status 2).
pub fn check_distinct(files: &[(&str, &OutFile)]) -> Result<(), Failure> {
    for (i, (flag_a, a)) in files.iter().enumerate() {
        for (flag_b, b) in &files[i + 1..] {
            if a.target() == b.target() {
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

impl OutFile {
    /// A new file `.NAME.XXXXXX` next to the target, made exclusively.
    fn create_temp(&self) -> io::Result<(fs::File, PathBuf)> {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        for _ in 0..100 {
            let mut random = [0u8; 6];
            os::random_bytes(&mut random)?;
            let mut name = OsString::from(".");
            name.push(&self.name);
            name.push(".");
            name.push(
                random
                    .iter()
                    .map(|&b| CHARS[usize::from(b) % CHARS.len()] as char)
                    .collect::<String>(),
            );
            let path = self.dir.join(name);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(f) => return Ok((f, path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free name for a temporary file",
        ))
    }

    /// Writes `text` to a new file and renames it over the target: the
    /// target holds the whole report or is left as it was.
    pub fn write(&self, text: &[u8]) -> Result<(), Failure> {
        let fail = |e: io::Error| {
            Failure::new(
                125,
                format!("cannot write the report to {}: {e}", self.shown()),
            )
        };
        let (mut file, temp) = self.create_temp().map_err(fail)?;
        let written = file
            .write_all(text)
            .and_then(|()| file.flush())
            .and_then(|()| fs::rename(&temp, self.target()));
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

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("shmguard-outfile.{name}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_replace_a_symbolic_link_instead_of_following_it() {
        let d = scratch("link");
        let victim = d.join("victim");
        fs::write(&victim, "keep\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("r.json")).unwrap();
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
