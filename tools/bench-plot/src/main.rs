//! bench-plot IN.tsv OUT.svg [TITLE]: the scale section's growth curves (see lib.rs).

use std::error::Error as _;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-plot IN.tsv OUT.svg [TITLE]\n\
    Draws scripts/bench section 10's table (bench-scale.tsv) as an SVG: x = total ranks,\n\
    y = seconds, one line per measure and a dashed 'grows like ranks per node' reference.";
const DEFAULT_TITLE: &str =
    "slurm-container-ckpt: cost against job size (scripts/bench section 10)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (input, output, title) = match args.as_slice() {
        [i, o] => (i, o, DEFAULT_TITLE),
        [i, o, t] => (i, o, t.as_str()),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match bench_plot::run(Path::new(input), Path::new(output), title) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("bench-plot: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
