//! How a rank's CRIU images are stored in a generation when they do not go there straight from
//! CRIU: compressed (site `compress=zstd[:LEVEL]`) and/or incremental (site `incremental=yes`).
//!
//! Either way CRIU dumps into a node-local staging directory (site `stage_dir`); once every rank is
//! dumped the job runs again, and each rank packs its images into the generation on the shared
//! storage. Compression stores `NAME.zst`. Incremental storage cuts each page image into chunks of
//! [`CHUNK_BYTES`] (`pages-1.img.c00000`, ...) and hard-links every chunk that is unchanged since the
//! job's previous generation instead of writing it again (CRIU's own incremental dumps need the
//! kernel's dirty-page tracking, which this machine kind lacks); `chunks.json` records each
//! chunk's sha256 before compression for the next generation to compare against. A restore
//! unpacks into the staging directory first. docs/PERFORMANCE.md measures when either pays.
//!
//! Encryption (site `encrypt=yes`) wraps every stored file, after compression, in crypt.rs's
//! streaming AEAD under the user's key and adds `.enc`; `chunks.json` then holds keyed chunk ids
//! instead of plain hashes, and an unchanged chunk is linked as its previous ciphertext file.
use crate::auth::ImageKey;
use crate::crypt::{self, crypt_error, CryptError, DecryptReader, EncryptWriter};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Size of the pieces page images are cut into for incremental storage.
pub const CHUNK_BYTES: usize = 4 << 20;
/// The chunk index of a rank directory stored incrementally.
pub const INDEX: &str = "chunks.json";

/// Suffix of a compressed image file.
pub const SUFFIX: &str = ".zst";

pub use crate::site::Compression;

/// How to pack.
#[derive(Debug, Clone, Copy)]
pub struct Packing<'a> {
    pub compression: Compression,
    /// Store page images in chunks (and write `chunks.json`).
    pub incremental: bool,
    /// The previous generation's rank directory, to link unchanged chunks from.
    pub prev: Option<&'a Path>,
    /// Encrypt every stored file with this user's key.
    pub key: Option<&'a ImageKey>,
}

/// What packing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Packed {
    /// Bytes of CRIU's images.
    pub raw: u64,
    /// Of those, bytes in chunks linked from the previous generation instead of written.
    pub reused: u64,
}

/// `chunks.json`: stored chunk name (without `.zst`/`.enc`) -> sha256 of its raw bytes, or with
/// encryption its keyed id ([`ImageKey::chunk_id`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChunkIndex {
    chunk_bytes: usize,
    chunks: BTreeMap<String, String>,
    /// The ids are keyed (the chunks are encrypted): only then may they be linked when encrypting.
    #[serde(default)]
    keyed: bool,
}

/// Pack the image files of `src` (flat, as CRIU writes them) into `dst`.
pub fn pack_dir(src: &Path, dst: &Path, p: Packing) -> Result<Packed> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let prev = p
        .prev
        .filter(|_| p.incremental)
        .map(|d| (d, read_index(d, p.key.is_some())));
    let mut index = ChunkIndex {
        chunk_bytes: CHUNK_BYTES,
        keyed: p.key.is_some(),
        ..ChunkIndex::default()
    };
    let mut done = Packed::default();
    for (from, name) in files_of(src)? {
        let len = fs::metadata(&from).map_err(|e| Error::io(&from, e))?.len();
        done.raw += len;
        match p.incremental && is_page_image(&name) {
            true => {
                let prev = prev.as_ref().map(|(d, i)| (*d, i));
                done.reused += pack_chunks(&from, &name, dst, p, prev, &mut index)?;
            }
            false => {
                let mut input = fs::File::open(&from).map_err(|e| Error::io(&from, e))?;
                store(&mut input, dst, &name, p)?;
            }
        }
    }
    if p.incremental {
        let to = dst.join(INDEX);
        let body = serde_json::to_vec(&index).map_err(|why| Error::EncodeJson {
            path: to.clone(),
            what: "the chunk index",
            why,
        })?;
        fs::write(&to, body).map_err(|e| Error::io(&to, e))?;
    }
    Ok(done)
}

/// CRIU's page images (`pages-N.img`): the bulk of a dump, and what changes little between
/// generations of a mostly idle job.
fn is_page_image(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

/// The previous generation's chunk index (empty if absent, unreadable or of the other kind —
/// plain vs encrypted chunks: then nothing is reused).
fn read_index(dir: &Path, keyed: bool) -> ChunkIndex {
    fs::read(dir.join(INDEX))
        .ok()
        .and_then(|b| serde_json::from_slice::<ChunkIndex>(&b).ok())
        .filter(|i| i.chunk_bytes == CHUNK_BYTES && i.keyed == keyed)
        .unwrap_or_default()
}

/// Cut one page image into chunks; link each chunk unchanged since `prev`, store the others.
/// Returns the bytes reused.
fn pack_chunks(
    from: &Path,
    name: &str,
    dst: &Path,
    p: Packing,
    prev: Option<(&Path, &ChunkIndex)>,
    index: &mut ChunkIndex,
) -> Result<u64> {
    let mut input = BufReader::with_capacity(
        1 << 20,
        fs::File::open(from).map_err(|e| Error::io(from, e))?,
    );
    let mut buf = Vec::with_capacity(CHUNK_BYTES);
    let mut reused = 0;
    for i in 0.. {
        buf.clear();
        let n = (&mut input)
            .take(CHUNK_BYTES as u64)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io(from, e))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..];
        let cname = format!("{name}.c{i:05}");
        let sum = match p.key {
            Some(k) => k.chunk_id(chunk),
            None => format!("{:x}", Sha256::digest(chunk)),
        };
        // Only a file stored as this packing stores (encrypted or not) may be linked.
        let enc = if p.key.is_some() { crypt::SUFFIX } else { "" };
        let linked = prev.is_some_and(|(prev_dir, prev_index)| {
            prev_index.chunks.get(&cname) == Some(&sum)
                && [format!("{cname}{enc}"), format!("{cname}{SUFFIX}{enc}")]
                    .iter()
                    .any(|stored| {
                        let old = prev_dir.join(stored);
                        fs::symlink_metadata(&old).is_ok_and(|m| m.is_file())
                            && fs::hard_link(&old, dst.join(stored)).is_ok()
                    })
        });
        if linked {
            reused += n as u64;
        } else {
            store(&mut &chunk[..], dst, &cname, p)?;
        }
        index.chunks.insert(cname, sum);
    }
    Ok(reused)
}

/// Write `input` to `dst/name`, compressed to `name.zst` and/or encrypted to `name[.zst].enc`.
fn store(input: &mut impl Read, dst: &Path, name: &str, p: Packing) -> Result<()> {
    let logical = match p.compression {
        Compression::None => name.to_string(),
        Compression::Zstd(_) => format!("{name}{SUFFIX}"),
    };
    let to = match p.key {
        Some(_) => dst.join(format!("{logical}{}", crypt::SUFFIX)),
        None => dst.join(&logical),
    };
    let out = fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
    let w = BufWriter::with_capacity(1 << 20, out);
    match p.key {
        // Compress first: ciphertext does not compress.
        Some(k) => EncryptWriter::new(w, k, &logical)
            .and_then(|enc| encode(input, enc, p.compression))
            .and_then(|enc| enc.finish())
            .map(|_| ()),
        None => encode(input, w, p.compression).and_then(|mut w| w.flush()),
    }
    .map_err(|e| Error::io(&to, e))
}

/// Copy `input` into `w`, compressed as `c` says; hands `w` back to be finished.
fn encode<W: Write>(input: &mut impl Read, mut w: W, c: Compression) -> std::io::Result<W> {
    match c {
        Compression::None => std::io::copy(input, &mut w).map(|_| ()),
        Compression::Zstd(level) => zstd::stream::copy_encode(input, &mut w, level),
    }?;
    Ok(w)
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
    names.into_iter().any(|n| {
        let n = n.as_ref();
        n.ends_with(SUFFIX) || n.ends_with(crypt::SUFFIX) || n == INDEX
    })
}

/// What CRIU calls a stored file: `NAME[.zst][.enc]` -> `NAME`.
fn plain_name(name: &str) -> &str {
    let n = name.strip_suffix(crypt::SUFFIX).unwrap_or(name);
    n.strip_suffix(SUFFIX).unwrap_or(n)
}

fn compressed(name: &str) -> bool {
    name.strip_suffix(crypt::SUFFIX)
        .unwrap_or(name)
        .ends_with(SUFFIX)
}

/// `pages-1.img.c00003[.zst][.enc]` -> (`pages-1.img`, 3).
fn chunk_of(name: &str) -> Option<(&str, u32)> {
    let plain = plain_name(name);
    let (base, idx) = plain.rsplit_once(".c")?;
    (idx.len() == 5 && idx.bytes().all(|b| b.is_ascii_digit()) && is_page_image(base))
        .then(|| Some((base, idx.parse().ok()?)))
        .flatten()
}

/// Unpack the files of `src` into `dst`: chunks are joined in order into their page image,
/// `NAME.zst` is decompressed to `NAME`, `NAME[.zst].enc` decrypted with `key` (and
/// decompressed), anything else is copied. Returns the bytes written. A file that does not
/// decrypt is an error naming it: nothing unauthenticated reaches CRIU.
pub fn unpack_dir(src: &Path, dst: &Path, key: Option<&ImageKey>) -> Result<u64> {
    fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let mut written = 0;
    // files_of sorts by name, so chunks come in order, each image's chunks together.
    let mut open: Option<(String, u32, BufWriter<fs::File>)> = None;
    for (from, name) in files_of(src)? {
        if name == INDEX {
            continue;
        }
        if let Some((base, idx)) = chunk_of(&name) {
            let same = matches!(&open, Some((b, _, _)) if b == base);
            if !same {
                if let Some((b, _, mut w)) = open.take() {
                    w.flush().map_err(|e| Error::io(dst.join(b), e))?;
                }
                let to = dst.join(base);
                let f = fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
                open = Some((base.to_string(), 0, BufWriter::with_capacity(1 << 20, f)));
            }
            let Some((_, next, w)) = open.as_mut() else {
                continue;
            };
            if idx != *next {
                return Err(Error::ChunkOutOfSequence {
                    path: src.to_path_buf(),
                    file: base.to_string(),
                    chunk: idx,
                    expected: *next,
                });
            }
            *next += 1;
            written += copy_out(&from, &name, w, key)?;
            continue;
        }
        let to = dst.join(plain_name(&name));
        let f = fs::File::create(&to).map_err(|e| Error::io(&to, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        written += copy_out(&from, &name, &mut w, key)?;
        w.flush().map_err(|e| Error::io(&to, e))?;
    }
    if let Some((b, _, mut w)) = open.take() {
        w.flush().map_err(|e| Error::io(dst.join(b), e))?;
    }
    Ok(written)
}

/// Append one stored file to `w`, decrypting `.enc` and decompressing `.zst`; returns the bytes
/// written.
fn copy_out(from: &Path, name: &str, w: &mut impl Write, key: Option<&ImageKey>) -> Result<u64> {
    let input = BufReader::with_capacity(
        1 << 20,
        fs::File::open(from).map_err(|e| Error::io(from, e))?,
    );
    let mut counted = Counter { inner: w, n: 0 };
    let res = match name.strip_suffix(crypt::SUFFIX) {
        Some(logical) => {
            let k = key.ok_or_else(|| Error::Undecryptable {
                path: from.to_path_buf(),
                why: CryptError::NoKey,
            })?;
            DecryptReader::new(input, k, logical).and_then(|mut r| {
                decode(&mut r, logical, &mut counted)?;
                // Read to the end even if zstd stopped early: only the last segment proves that
                // nothing was cut off.
                std::io::copy(&mut r, &mut std::io::sink()).map(|_| ())
            })
        }
        None => decode(input, name, &mut counted),
    };
    res.map_err(|e| match crypt_error(&e) {
        Some(why) => Error::Undecryptable {
            path: from.to_path_buf(),
            why,
        },
        // A compressed stream that does not decode is damage, not an I/O failure.
        None if compressed(name) => Error::DamagedImage {
            path: from.to_path_buf(),
            why: e,
        },
        None => Error::io(from, e),
    })?;
    Ok(counted.n)
}

/// Copy `input` (the file `name`, after decryption) to `w`, decompressing `.zst`.
fn decode(mut input: impl Read, name: &str, w: &mut impl Write) -> std::io::Result<()> {
    match name.ends_with(SUFFIX) {
        true => zstd::stream::copy_decode(input, w),
        false => std::io::copy(&mut input, w).map(|_| ()),
    }
}

/// A writer that counts what passes through.
struct Counter<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counter<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let k = self.inner.write(b)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Regular files of a flat directory, sorted by name.
fn files_of(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let ty = e.file_type().map_err(|x| Error::io(e.path(), x))?;
        if ty.is_dir() {
            return Err(Error::UnexpectedDirectory { path: e.path() });
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

    fn zstd(level: i32) -> Packing<'static> {
        Packing {
            compression: Compression::Zstd(level),
            incremental: false,
            prev: None,
            key: None,
        }
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
        let done = pack_dir(&src, &packed, zstd(1)).unwrap();
        assert_eq!(done.raw, pages.len() as u64 + 4);
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
        assert_eq!(unpack_dir(&packed, &out, None).unwrap(), done.raw);
        assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), pages);
        assert_eq!(fs::read(out.join("core-1.img")).unwrap(), b"core");
        // A damaged compressed file is an error naming it, not garbage for CRIU.
        fs::write(packed.join("core-1.img.zst"), b"not zstd").unwrap();
        let e = unpack_dir(&packed, &base.join("bad"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("core-1.img.zst"), "{e}");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn incremental_links_unchanged_chunks() {
        use std::os::unix::fs::MetadataExt;
        let base = std::env::temp_dir().join(format!("scc-incr-{}", std::process::id()));
        let (src, g1, g2, out) = (
            base.join("src"),
            base.join("g1"),
            base.join("g2"),
            base.join("out"),
        );
        fs::create_dir_all(&src).unwrap();
        // 2.5 chunks of distinct content, so a changed chunk really differs.
        let mut pages: Vec<u8> = (0..(CHUNK_BYTES * 5 / 2) as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(src.join("pages-1.img"), &pages).unwrap();
        fs::write(src.join("pagemap-1.img"), b"map").unwrap();
        for (compression, tag) in [(Compression::None, "plain"), (Compression::Zstd(1), "zstd")] {
            let _ = fs::remove_dir_all(&g1);
            let _ = fs::remove_dir_all(&g2);
            let first = Packing {
                compression,
                incremental: true,
                prev: None,
                key: None,
            };
            let done = pack_dir(&src, &g1, first).unwrap();
            assert_eq!(done.reused, 0, "{tag}");
            // The job touched one page in the second chunk.
            let mut changed = pages.clone();
            changed[CHUNK_BYTES + 100] ^= 0xff;
            fs::write(src.join("pages-1.img"), &changed).unwrap();
            let next = Packing {
                compression,
                incremental: true,
                prev: Some(&g1),
                key: None,
            };
            let done = pack_dir(&src, &g2, next).unwrap();
            assert_eq!(done.reused, (CHUNK_BYTES + CHUNK_BYTES / 2) as u64, "{tag}");
            let sfx = if compression == Compression::None {
                ""
            } else {
                SUFFIX
            };
            let ino = |d: &Path, i: u32| {
                fs::metadata(d.join(format!("pages-1.img.c{i:05}{sfx}")))
                    .unwrap()
                    .ino()
            };
            assert_eq!(ino(&g1, 0), ino(&g2, 0), "{tag}: unchanged chunk linked");
            assert_ne!(ino(&g1, 1), ino(&g2, 1), "{tag}: changed chunk written");
            assert_eq!(ino(&g1, 2), ino(&g2, 2), "{tag}: short last chunk linked");
            let names: Vec<String> = files_of(&g2).unwrap().into_iter().map(|f| f.1).collect();
            assert!(is_packed(&names), "{tag}");
            let _ = fs::remove_dir_all(&out);
            assert_eq!(
                unpack_dir(&g2, &out, None).unwrap(),
                changed.len() as u64 + 3,
                "{tag}"
            );
            assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), changed, "{tag}");
            assert_eq!(
                fs::read(out.join("pagemap-1.img")).unwrap(),
                b"map",
                "{tag}"
            );
            assert!(!out.join(INDEX).exists());
            fs::write(src.join("pages-1.img"), &pages).unwrap();
        }
        // A missing chunk is an error, not a shorter image.
        fs::remove_file(g2.join(format!("pages-1.img.c00001{SUFFIX}"))).unwrap();
        let e = unpack_dir(&g2, &base.join("bad"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of sequence"), "{e}");
        pages.clear();
        fs::remove_dir_all(&base).unwrap();
    }

    fn names(d: &Path) -> Vec<String> {
        files_of(d).unwrap().into_iter().map(|f| f.1).collect()
    }

    #[test]
    fn encrypted_round_trip_with_and_without_zstd() {
        let d = tempfile::tempdir().unwrap();
        let (src, out) = (d.path().join("src"), d.path().join("out"));
        fs::create_dir_all(&src).unwrap();
        let pages: Vec<u8> = (0..3 * crypt::SEGMENT + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(src.join("pages-1.img"), &pages).unwrap();
        fs::write(src.join("core-1.img"), b"CRIU core").unwrap();
        fs::write(src.join("empty.img"), b"").unwrap();
        let site = crate::auth::SiteKey::derive(b"munge");
        let alice = site.image_key(1000, "alice");
        for (compression, sfx) in [
            (Compression::None, ".enc"),
            (Compression::Zstd(1), ".zst.enc"),
        ] {
            let packed = d.path().join(format!("packed{sfx}"));
            let p = Packing {
                compression,
                incremental: false,
                prev: None,
                key: Some(&alice),
            };
            pack_dir(&src, &packed, p).unwrap();
            let stored = names(&packed);
            assert_eq!(
                stored,
                ["core-1.img", "empty.img", "pages-1.img"].map(|n| format!("{n}{sfx}"))
            );
            assert!(is_packed(&stored));
            let core = fs::read(packed.join(format!("core-1.img{sfx}"))).unwrap();
            assert!(
                !core.windows(4).any(|w| w == b"CRIU"),
                "{sfx}: plaintext stored"
            );
            let _ = fs::remove_dir_all(&out);
            assert_eq!(
                unpack_dir(&packed, &out, Some(&alice)).unwrap(),
                pages.len() as u64 + 9
            );
            assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), pages, "{sfx}");
            assert_eq!(fs::read(out.join("core-1.img")).unwrap(), b"CRIU core");
            assert_eq!(fs::read(out.join("empty.img")).unwrap(), b"");
            // Another user's key, or none, is refused naming the file.
            let bob = site.image_key(1001, "bob");
            for key in [Some(&bob), None] {
                let e = unpack_dir(&packed, &d.path().join("bad"), key).unwrap_err();
                assert!(matches!(e, Error::Undecryptable { .. }), "{e}");
                assert!(e.to_string().contains(&format!("core-1.img{sfx}")), "{e}");
            }
            // A flipped byte in the middle of the pages.
            let pf = packed.join(format!("pages-1.img{sfx}"));
            let mut bytes = fs::read(&pf).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x40;
            fs::write(&pf, &bytes).unwrap();
            let e = unpack_dir(&packed, &d.path().join("bad2"), Some(&alice)).unwrap_err();
            assert!(matches!(e, Error::Undecryptable { .. }), "{e}");
            assert!(e.to_string().contains("pages-1.img"), "{e}");
        }
    }

    #[test]
    fn encrypted_incremental_links_unchanged_chunks() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let [src, g1, g2, g3, out] = ["src", "g1", "g2", "g3", "out"].map(|n| d.path().join(n));
        fs::create_dir_all(&src).unwrap();
        let pages: Vec<u8> = (0..(CHUNK_BYTES * 5 / 2) as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(src.join("pages-1.img"), &pages).unwrap();
        let site = crate::auth::SiteKey::derive(b"munge");
        let alice = site.image_key(1000, "alice");
        let packing = |prev, key| Packing {
            compression: Compression::Zstd(1),
            incremental: true,
            prev,
            key,
        };
        assert_eq!(
            pack_dir(&src, &g1, packing(None, Some(&alice)))
                .unwrap()
                .reused,
            0
        );
        let index = fs::read_to_string(g1.join(INDEX)).unwrap();
        let plain_sum = format!("{:x}", Sha256::digest(&pages[..CHUNK_BYTES]));
        assert!(
            !index.contains(&plain_sum),
            "plain chunk hashes leak: {index}"
        );
        let mut changed = pages.clone();
        changed[CHUNK_BYTES + 100] ^= 0xff;
        fs::write(src.join("pages-1.img"), &changed).unwrap();
        let done = pack_dir(&src, &g2, packing(Some(&g1), Some(&alice))).unwrap();
        assert_eq!(done.reused, (CHUNK_BYTES + CHUNK_BYTES / 2) as u64);
        let ino = |g: &Path, i: u32| {
            fs::metadata(g.join(format!("pages-1.img.c{i:05}.zst.enc")))
                .unwrap()
                .ino()
        };
        assert_eq!(ino(&g1, 0), ino(&g2, 0), "unchanged chunk linked");
        assert_ne!(ino(&g1, 1), ino(&g2, 1), "changed chunk written");
        assert_eq!(
            unpack_dir(&g2, &out, Some(&alice)).unwrap(),
            changed.len() as u64
        );
        assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), changed);
        // Encrypted chunks are never linked into a plain generation, nor plain ones into an
        // encrypted one.
        assert_eq!(
            pack_dir(&src, &g3, packing(Some(&g2), None))
                .unwrap()
                .reused,
            0
        );
        let g4 = d.path().join("g4");
        assert_eq!(
            pack_dir(&src, &g4, packing(Some(&g3), Some(&alice)))
                .unwrap()
                .reused,
            0
        );
        // Chunks swapped between positions are refused (the name is bound into each chunk).
        let (c0, c1) = (
            g2.join("pages-1.img.c00000.zst.enc"),
            g2.join("pages-1.img.c00001.zst.enc"),
        );
        let (b0, b1) = (fs::read(&c0).unwrap(), fs::read(&c1).unwrap());
        fs::remove_file(&c0).unwrap();
        fs::write(&c0, &b1).unwrap();
        fs::write(&c1, &b0).unwrap();
        let e = unpack_dir(&g2, &d.path().join("bad"), Some(&alice)).unwrap_err();
        assert!(e.to_string().contains("pages-1.img.c00000.zst.enc"), "{e}");
    }

    #[test]
    fn chunk_names() {
        assert_eq!(chunk_of("pages-1.img.c00003"), Some(("pages-1.img", 3)));
        assert_eq!(
            chunk_of("pages-12.img.c00010.zst"),
            Some(("pages-12.img", 10))
        );
        assert_eq!(
            chunk_of("pages-2.img.c00004.zst.enc"),
            Some(("pages-2.img", 4))
        );
        assert_eq!(chunk_of("pages-2.img.c00004.enc"), Some(("pages-2.img", 4)));
        assert_eq!(chunk_of("core-1.img.c00003"), None);
        assert_eq!(chunk_of("pages-1.img"), None);
        assert_eq!(chunk_of("pages-1.img.c3"), None);
    }
}
