//! One process's audit log from any bytes: see
//! `shmguard_cli::fuzzing::log_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmguard_cli::fuzzing::log_file(data));
