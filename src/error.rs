//! The error type: an errno and the sentence that explains it.
//!
//! Sentences live in a fixed buffer so that neither a failure nor a
//! successful call ever needs the heap to carry its explanation.
#![forbid(unsafe_code)]

use core::fmt;

use crate::sys::Errno;

/// Capacity of a diagnostic sentence, in bytes.
pub const SENTENCE_CAP: usize = 480;

/// A short text in a fixed buffer; writes past the end are cut at a
/// character boundary and marked with "...".
#[derive(Clone)]
pub struct Sentence {
    buf: [u8; SENTENCE_CAP],
    len: usize,
    /// The text was cut and ends in "...": later writes are dropped.
    cut: bool,
}

impl Sentence {
    /// An empty sentence.
    pub const fn new() -> Self {
        Self {
            buf: [0; SENTENCE_CAP],
            len: 0,
            cut: false,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever stored (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Sentence {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Sentence {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        const ELLIPSIS: &[u8] = b"...";
        if self.cut {
            return Ok(());
        }
        if s.len() <= SENTENCE_CAP - self.len {
            self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
            self.len += s.len();
            return Ok(());
        }
        // Cut: keep whole characters, leaving room for the ellipsis.
        let keep = SENTENCE_CAP - ELLIPSIS.len();
        if self.len < keep {
            let mut n = keep - self.len;
            while !s.is_char_boundary(n) {
                n -= 1;
            }
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
        } else {
            self.len = keep;
            while self.len > 0 && self.buf[self.len] & 0xc0 == 0x80 {
                self.len -= 1;
            }
        }
        self.buf[self.len..self.len + ELLIPSIS.len()].copy_from_slice(ELLIPSIS);
        self.len += ELLIPSIS.len();
        self.cut = true;
        Ok(())
    }
}

impl fmt::Display for Sentence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sentence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A failed call: the errno the caller sees and why.
#[derive(Clone, Debug)]
pub struct Error {
    pub errno: Errno,
    pub detail: Sentence,
}

impl Error {
    /// An error whose sentence is still to be written.
    pub fn new(errno: Errno) -> Self {
        Self {
            errno,
            detail: Sentence::new(),
        }
    }
}

/// The symbolic name of an errno value (`"EINVAL"`), if it is one we know.
pub fn errno_name(errno: Errno) -> Option<&'static str> {
    ERRNOS
        .iter()
        .find(|(value, _, _)| *value == errno)
        .map(|(_, name, _)| *name)
}

/// The errno value of a name such as `"ENOSPC"`.
pub fn errno_from_name(name: &str) -> Option<Errno> {
    ERRNOS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(value, _, _)| *value)
}

/// The C library's description of an errno value, for the ones shm calls
/// and `stat` return.
pub fn errno_text(errno: Errno) -> &'static str {
    ERRNOS
        .iter()
        .find(|(value, _, _)| *value == errno)
        .map_or("unknown error", |(_, _, text)| *text)
}

/// Writes `EINVAL`, or `errno 1234` for values without a name.
pub struct ErrnoName(pub Errno);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match errno_name(self.0) {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

const ERRNOS: &[(Errno, &str, &str)] = &[
    (libc::EPERM, "EPERM", "Operation not permitted"),
    (libc::ENOENT, "ENOENT", "No such file or directory"),
    (libc::ESRCH, "ESRCH", "No such process"),
    (libc::EINTR, "EINTR", "Interrupted system call"),
    (libc::EIO, "EIO", "Input/output error"),
    (libc::E2BIG, "E2BIG", "Argument list too long"),
    (libc::EBADF, "EBADF", "Bad file descriptor"),
    (libc::EAGAIN, "EAGAIN", "Resource temporarily unavailable"),
    (libc::ENOMEM, "ENOMEM", "Cannot allocate memory"),
    (libc::EACCES, "EACCES", "Permission denied"),
    (libc::EFAULT, "EFAULT", "Bad address"),
    (libc::EBUSY, "EBUSY", "Device or resource busy"),
    (libc::EEXIST, "EEXIST", "File exists"),
    (libc::ENOTDIR, "ENOTDIR", "Not a directory"),
    (libc::EISDIR, "EISDIR", "Is a directory"),
    (libc::EINVAL, "EINVAL", "Invalid argument"),
    (libc::ENFILE, "ENFILE", "Too many open files in system"),
    (libc::EMFILE, "EMFILE", "Too many open files"),
    (libc::EFBIG, "EFBIG", "File too large"),
    (libc::ENOSPC, "ENOSPC", "No space left on device"),
    (libc::EROFS, "EROFS", "Read-only file system"),
    (libc::ERANGE, "ERANGE", "Numerical result out of range"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG", "File name too long"),
    (libc::ENOSYS, "ENOSYS", "Function not implemented"),
    (libc::ELOOP, "ELOOP", "Too many levels of symbolic links"),
    (libc::EIDRM, "EIDRM", "Identifier removed"),
    (
        libc::EOVERFLOW,
        "EOVERFLOW",
        "Value too large for defined data type",
    ),
    (libc::EDQUOT, "EDQUOT", "Disk quota exceeded"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn sentence_truncates_on_char_boundary() {
        let mut s = Sentence::new();
        for _ in 0..SENTENCE_CAP {
            write!(s, "é").unwrap();
        }
        assert!(s.as_str().ends_with("..."));
        assert!(s.as_str().len() <= SENTENCE_CAP);
        assert!(s.as_str().starts_with("éé"));
        let mut s = Sentence::new();
        write!(s, "{}", "a".repeat(SENTENCE_CAP - 1)).unwrap();
        write!(s, "é").unwrap();
        write!(s, "more").unwrap();
        assert!(s.as_str().ends_with("a..."), "{s}");
        assert_eq!(s.as_str().len(), SENTENCE_CAP);
        assert!(!s.as_str().contains("more"));
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EINVAL), Some("EINVAL"));
        assert_eq!(ErrnoName(libc::EIDRM).to_string(), "EIDRM");
        assert_eq!(ErrnoName(4242).to_string(), "errno 4242");
        assert_eq!(errno_text(libc::ENOENT), "No such file or directory");
    }
}
