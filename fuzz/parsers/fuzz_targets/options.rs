//! `SHMGUARD_OPTIONS` from any bytes: see `shmguard::fuzzing::options`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmguard::fuzzing::options(data));
