//! Optional compression of checkpoint images (site `compress=zstd[:LEVEL]`).
//!
//! With compression on, CRIU dumps into a node-local staging directory (site `stage_dir`) instead
//! of the shared storage; once every rank is dumped the job runs again, and each rank then packs
//! its images into the generation on shared storage (`NAME.zst`). A restore unpacks them into the
//! staging directory first. It pays where the shared storage is slower than zstd on the node's
//! spare CPU and the memory compresses (docs/PERFORMANCE.md measures both).
use crate::error::{Error, Result};
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Suffix of a compressed image file.
pub const SUFFIX: &str = ".zst";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd(i32),
}

impl Compression {
    /// `none`, `zstd` (level 1: the fast end, where compression can keep up with storage) or
    /// `zstd:LEVEL` with LEVEL in 1..=19.
    pub fn parse(v: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{v}' (valid: none, zstd, zstd:LEVEL with LEVEL 1..19)");
        match v.split_once(':') {
            None if v == "none" => Ok(Compression::None),
            None if v == "zstd" => Ok(Compression::Zstd(1)),
            Some(("zstd", l)) => match l.parse::<i32>() {
                Ok(n) if (1..=19).contains(&n) && l.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(Compression::Zstd(n))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }

    pub fn name(self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Zstd(l) => format!("zstd:{l}"),
        }
    }
}

/// Pack the image files of `src` (flat, as CRIU writes them) into `dst`: compressed as `NAME.zst`
/// or copied as they are. Returns the bytes read from `src`.
pub fn pack_dir(src: &Path, dst: &Path, c: Compression) -> Result<u64> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut raw = 0;
    for (from, name) in files_of(src)? {
        raw += fs::metadata(&from).map_err(|e| Error::io(&from, e))?.len();
        match c {
            Compression::None => {
                fs::copy(&from, dst.join(&name)).map_err(|e| Error::io(&from, e))?;
            }
            Compression::Zstd(level) => {
                let to = dst.join(format!("{name}{SUFFIX}"));
                let input = fs::File::open(&from).map_err(|e| Error::io(&from, e))?;
                let out = fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
                let mut w = BufWriter::with_capacity(1 << 20, out);
                zstd::stream::copy_encode(BufReader::with_capacity(1 << 20, input), &mut w, level)
                    .map_err(|e| Error::io(&to, e))?;
                w.flush().map_err(|e| Error::io(&to, e))?;
            }
        }
    }
    Ok(raw)
}

/// A scratch directory, removed with everything in it when dropped (success or error).
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether a rank's stored files need unpacking before CRIU can read them.
pub fn is_packed(names: impl IntoIterator<Item = impl AsRef<str>>) -> bool {
    names.into_iter().any(|n| n.as_ref().ends_with(SUFFIX))
}

/// Unpack the files of `src` into `dst`: `NAME.zst` is decompressed to `NAME`, anything else is
/// copied. Returns the bytes written.
pub fn unpack_dir(src: &Path, dst: &Path) -> Result<u64> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut written = 0;
    for (from, name) in files_of(src)? {
        match name.strip_suffix(SUFFIX) {
            Some(plain) => {
                let to = dst.join(plain);
                let input = fs::File::open(&from).map_err(|e| Error::io(&from, e))?;
                let out = fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
                let mut w = BufWriter::with_capacity(1 << 20, out);
                zstd::stream::copy_decode(BufReader::with_capacity(1 << 20, input), &mut w)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", from.display())))?;
                w.flush().map_err(|e| Error::io(&to, e))?;
                written += fs::metadata(&to).map_err(|e| Error::io(&to, e))?.len();
            }
            None => {
                written += fs::copy(&from, dst.join(&name)).map_err(|e| Error::io(&from, e))?;
            }
        }
    }
    Ok(written)
}

/// Regular files of a flat directory, sorted by name.
fn files_of(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let ty = e.file_type().map_err(|x| Error::io(e.path(), x))?;
        if ty.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: unexpected directory among CRIU images",
                e.path().display()
            )));
        }
        if ty.is_file() {
            out.push((e.path(), e.file_name().to_string_lossy().into_owned()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings() {
        assert_eq!(Compression::parse("none"), Ok(Compression::None));
        assert_eq!(Compression::parse("zstd"), Ok(Compression::Zstd(1)));
        assert_eq!(Compression::parse("zstd:7"), Ok(Compression::Zstd(7)));
        for bad in ["", "lz4", "zstd:0", "zstd:20", "zstd:+3", "zstd:", "none:1"] {
            assert!(Compression::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Compression::Zstd(3).name(), "zstd:3");
    }

    #[test]
    fn round_trip() {
        let base = std::env::temp_dir().join(format!("scc-zstd-{}", std::process::id()));
        let (src, packed, out) = (base.join("src"), base.join("packed"), base.join("out"));
        fs::create_dir_all(&src).unwrap();
        let pages: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        fs::write(src.join("pages-1.img"), &pages).unwrap();
        fs::write(src.join("core-1.img"), b"core").unwrap();
        let raw = pack_dir(&src, &packed, Compression::Zstd(1)).unwrap();
        assert_eq!(raw, pages.len() as u64 + 4);
        let names: Vec<String> = files_of(&packed)
            .unwrap()
            .into_iter()
            .map(|f| f.1)
            .collect();
        assert_eq!(names, ["core-1.img.zst", "pages-1.img.zst"]);
        assert!(is_packed(&names));
        assert!(
            fs::metadata(packed.join("pages-1.img.zst")).unwrap().len() < pages.len() as u64 / 10
        );
        assert_eq!(unpack_dir(&packed, &out).unwrap(), raw);
        assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), pages);
        assert_eq!(fs::read(out.join("core-1.img")).unwrap(), b"core");
        // Plain packing is a copy, and unpacking copies plain files back.
        let plain = base.join("plain");
        pack_dir(&src, &plain, Compression::None).unwrap();
        assert!(!is_packed(
            files_of(&plain).unwrap().into_iter().map(|f| f.1)
        ));
        // A damaged compressed file is an error naming it, not garbage for CRIU.
        fs::write(packed.join("core-1.img.zst"), b"not zstd").unwrap();
        let e = unpack_dir(&packed, &base.join("bad"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("core-1.img.zst"), "{e}");
        fs::remove_dir_all(&base).unwrap();
    }
}
