//! Probe for docs/PERFORMANCE.md (section 11's copy): `copy_summed` of a staged image directory
//! to a directory on the storage, then an fsync of every copied file, timed, to set beside
//! `dd ... conv=fsync` of the same bytes through the same client.
//! Usage: cargo build --release --example copy_probe; copy_probe SRC_DIR DST_DIR
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, dst] = args.as_slice() else {
        eprintln!("usage: copy_probe SRC_DIR DST_DIR");
        std::process::exit(2);
    };
    let (src, dst) = (std::path::Path::new(src), std::path::Path::new(dst));
    let t0 = Instant::now();
    let (bytes, files) = match slurm_ckpt::ckpt::copy_summed(src, dst) {
        Ok(done) => done,
        Err(e) => {
            eprintln!("copy_probe: {e}");
            std::process::exit(1);
        }
    };
    let t1 = Instant::now();
    for f in &files {
        let p = dst.join(&f.name);
        if let Err(e) = std::fs::File::open(&p).and_then(|f| f.sync_all()) {
            eprintln!("copy_probe: {}: {e}", p.display());
            std::process::exit(1);
        }
    }
    let t2 = Instant::now();
    println!(
        "{bytes} bytes, {} files: copy {:.3} s, fsync {:.3} s",
        files.len(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
}
