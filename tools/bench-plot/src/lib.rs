//! bench-plot: draws scripts/bench section 10 (scale) as an SVG. A development tool: not part of
//! the Debian package (helper/Cargo.toml lists the package's files one by one).

pub mod plot;
pub mod tsv;

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed table", path.display())]
    Tsv {
        path: PathBuf,
        source: tsv::TsvError,
    },
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the table at `input` and writes the chart to `output`.
pub fn run(input: &Path, output: &Path, title: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(input).map_err(|source| Error::Read {
        path: input.into(),
        source,
    })?;
    let rows = tsv::parse(&text).map_err(|source| Error::Tsv {
        path: input.into(),
        source,
    })?;
    let svg = plot::render(&rows, title)?;
    // Whole file or nothing: the chart is written beside the target, then renamed over it.
    let tmp = output.with_extension("svg.tmp");
    std::fs::write(&tmp, svg)
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            Error::Write {
                path: output.into(),
                source,
            }
        })
}
