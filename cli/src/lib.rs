//! The parts of the `shmguard` command that other crates reach: the audit
//! log reader and what it needs, and the body of the log reader's fuzz
//! target (fuzz/parsers). The binary (main.rs) uses them from here.
#![deny(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
pub mod logs;
#[allow(unsafe_code)]
pub mod os;
