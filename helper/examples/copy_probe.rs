//! Ad-hoc probe: copy_summed of a directory to DST, then fsync every copied file, timed.
use std::time::Instant;
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (src, dst) = (std::path::Path::new(&a[1]), std::path::Path::new(&a[2]));
    let t0 = Instant::now();
    let (bytes, files) = slurm_ckpt::ckpt::copy_summed(src, dst).expect("copy");
    let t1 = Instant::now();
    for f in &files {
        std::fs::File::open(dst.join(&f.name))
            .and_then(|f| f.sync_all())
            .expect("fsync");
    }
    let t2 = Instant::now();
    println!(
        "{bytes} bytes {} files: copy {:.3} s fsync {:.3} s",
        files.len(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
}
