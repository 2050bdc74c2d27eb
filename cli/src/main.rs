//! The `shmguard` command (work in progress).
fn main() {
    println!("shmguard {}", env!("CARGO_PKG_VERSION"));
}
