//! `slurm-ckpt man --out DIR` (hidden): manual pages generated from the CLI definition, one for
//! `slurm-ckpt` and one per visible subcommand (`slurm-ckpt-status.1`, `slurm-ckpt-image-check.1`),
//! plus slurm-ckpt-runc(1). scripts/package installs them.

use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Directory the pages are written to (created if missing).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ManError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn main(cmd: clap::Command, args: Args) -> i32 {
    match write_all(cmd, &args.out) {
        Ok(pages) => {
            for p in pages {
                println!("{}", p.display());
            }
            0
        }
        Err(e) => {
            eprintln!("slurm-ckpt man: {e}");
            1
        }
    }
}

/// Writes every page into `out`; returns their paths.
pub fn write_all(cmd: clap::Command, out: &Path) -> Result<Vec<PathBuf>, ManError> {
    std::fs::create_dir_all(out).map_err(|source| ManError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, page) in pages(cmd) {
        let path = out.join(format!("{name}.1"));
        std::fs::write(&path, page).map_err(|source| ManError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// `(page name, roff)` for the command and, recursively, each subcommand that is not hidden.
pub fn pages(mut cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    cmd.build();
    let mut out = Vec::new();
    let name = cmd.get_name().to_string();
    collect(&cmd, name.clone(), name, &mut out);
    out.push(("slurm-ckpt-runc".to_string(), RUNC_PAGE.as_bytes().to_vec()));
    out
}

/// `name`: the page (`slurm-ckpt-image-check`); `bin`: how it is typed (`slurm-ckpt image check`).
fn collect(cmd: &clap::Command, name: String, bin: String, out: &mut Vec<(String, Vec<u8>)>) {
    let mut buf = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone().name(name.clone()).bin_name(bin.clone()))
        .render(&mut buf);
    out.push((name.clone(), buf));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = sub.get_name();
        collect(
            sub,
            format!("{name}-{sub_name}"),
            format!("{bin} {sub_name}"),
            out,
        );
    }
}

/// The runtime wrapper takes runc's own arguments; it has no CLI definition of its own.
const RUNC_PAGE: &str = r#".TH SLURM-CKPT-RUNC 1 "" "slurm-container-ckpt" "slurm-container-ckpt"
.SH NAME
slurm\-ckpt\-runc \- OCI runtime wrapper of slurm\-container\-ckpt, registered with dockerd
.SH SYNOPSIS
\fBslurm\-ckpt\-runc\fR \fIrunc arguments\fR ...
.SH DESCRIPTION
Not run by hand: dockerd runs it in place of \fBrunc\fR for containers started with the
runtime named by the site setting \fBruntime\fR (default \fBslurm\-ckpt\fR). It executes the real
runc (site setting \fBrunc_path\fR; by default /usr/sbin/runc, else /usr/bin/runc) unchanged, except that checkpoint and restore of rank
containers write and read CRIU images directly in the job's checkpoint directory, checked against
the site settings it reads from /etc/slurm/plugstack.conf.
.PP
Register it in /etc/docker/daemon.json:
.PP
.nf
"runtimes": { "slurm\-ckpt": { "path": "/usr/bin/slurm\-ckpt\-runc" } }
.fi
.PP
\fBslurm\-ckpt node\-setup \-\-check\fR tells whether the node's daemon has it.
.SH SEE ALSO
\fBslurm\-ckpt\fR(1), \fBcontainer_ckpt\fR(8), \fBdockerd\fR(8), \fBrunc\fR(8)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand() {
        let cmd = clap::Command::new("slurm-ckpt")
            .subcommand(clap::Command::new("status").about("Show status"))
            .subcommand(clap::Command::new("guard").hide(true))
            .subcommand(clap::Command::new("image").subcommand(clap::Command::new("check")));
        let names: Vec<String> = pages(cmd).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "slurm-ckpt",
                "slurm-ckpt-status",
                "slurm-ckpt-image",
                "slurm-ckpt-image-check",
                "slurm-ckpt-runc"
            ]
        );
    }
}
