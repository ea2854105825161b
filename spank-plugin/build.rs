// Generate SPANK bindings from the installed <slurm/spank.h>, so the plugin's ABI and
// plugin_version always match the Slurm it is built for (a mismatch makes slurmd refuse to load it).
use std::env;
use std::path::PathBuf;

fn main() {
    let header =
        env::var("SLURM_SPANK_HEADER").unwrap_or_else(|_| "/usr/include/slurm/spank.h".into());
    println!("cargo:rerun-if-changed={header}");
    println!("cargo:rerun-if-env-changed=SLURM_SPANK_HEADER");
    // The special step ids (batch, extern, interactive) live in slurm.h, next to spank.h.
    let slurm_h = PathBuf::from(&header).with_file_name("slurm.h");
    println!("cargo:rerun-if-changed={}", slurm_h.display());
    let wrapper = format!(
        "#include \"{header}\"\n#include \"{}\"\n",
        slurm_h.display()
    );
    let bindings = bindgen::Builder::default()
        .header_contents("spank_wrapper.h", &wrapper)
        .allowlist_function("spank_.*")
        .allowlist_function("slurm_(error|info|verbose|debug|spank_log)")
        .allowlist_type("spank_.*")
        .allowlist_var("SLURM_VERSION_NUMBER|ESPANK_.*|S_.*|SLURM_BATCH_SCRIPT|SLURM_EXTERN_CONT|SLURM_INTERACTIVE_STEP")
        .generate()
        .expect("bindgen failed on spank.h (install libslurm-dev and libclang-dev)");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("spank_sys.rs");
    bindings.write_to_file(out).expect("writing bindings");

    // Export only the symbols Slurm looks up (plugin_* and slurm_spank_*), like pyxis' version script.
    let map = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("exports.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
}
