//! The parts of the `shmguard` command that other crates reach: the audit
//! log reader and what it needs. The binary (main.rs) uses them from here.
#![deny(unsafe_code)]

pub mod logs;
#[allow(unsafe_code)]
pub mod os;
