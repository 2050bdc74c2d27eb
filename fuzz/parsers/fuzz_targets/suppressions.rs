//! A suppression file from any bytes: see `shmguard::fuzzing::suppressions`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmguard::fuzzing::suppressions(data));
