//! Generates include/shmguard.h with cbindgen and sets the SONAME.

use std::env;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src/ffi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libshmguard.so.0");
    // dlclose never unloads an interposer (whose functions may be in use)
    // nor runs its destructor, which would run the exit check and maybe
    // exit: that happens at exit only.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // The unwinder (catch_unwind keeps a bug of ours from aborting the
    // program) linked in, whole, instead of libgcc_s.so.1: that library's
    // constructor probes the CPU with a dozen CPUID instructions, each a
    // trap to the hypervisor on a virtual machine (5 us here), in every
    // process the library is preloaded into. Not bundled into the rlib or
    // the staticlib: the final link finds it where gcc keeps it.
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle=gcc_eh");

    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    match cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include/shmguard.h"));
        }
        // A header that cannot be generated must not hide behind a stale
        // one: fail the build.
        Err(e) => panic!("cbindgen: {e}"),
    }
}
