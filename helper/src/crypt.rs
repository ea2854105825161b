//! Streaming authenticated encryption of checkpoint image files at rest (site `encrypt=yes`).
//!
//! A stored file is `MAGIC | prefix | segment...`: the plaintext is cut into [`SEGMENT`]-byte
//! pieces, each sealed with XChaCha20-Poly1305 under the user's [`ImageKey`], nonce = the file's
//! random 20-byte prefix + the segment's counter (big-endian u32), and associated data = the
//! magic, the file's logical name and whether the segment is the last. So a segment cannot be
//! altered, moved to another position or file, or dropped from the end (the new last one was
//! not sealed as last) without the restore noticing. The last segment may be short or empty;
//! an empty file is one empty last segment. Memory stays at one segment either way.
use crate::auth::ImageKey;
use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::io::{self, Read, Write};

/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 1 << 20;
/// Suffix of an encrypted stored file (after `.zst` when compressed too).
pub const SUFFIX: &str = ".enc";
/// Names the format and its version; also bound into every segment.
const MAGIC: &[u8; 8] = b"SCCENC1\n";
const PREFIX: usize = 20;
const TAG: usize = 16;
/// The cipher's name, as recorded in a rank record.
pub const CIPHER: &str = "xchacha20poly1305";

/// Why an encrypted file was refused. Carried inside `io::Error` through readers (zstd) and
/// turned into `Error::Undecryptable` naming the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    #[error("not an encrypted image file (bad header)")]
    BadHeader,
    #[error("truncated (a segment is shorter than its tag, or the file ends after the header)")]
    Truncated,
    #[error("authentication failed at segment {0}: altered, truncated, reordered, renamed, or encrypted with another user's or site's key")]
    Forged(u32),
    #[error("longer than the format allows")]
    TooLong,
    #[error("encrypted, but no key was given to decrypt it")]
    NoKey,
    #[error("the system's random source failed")]
    Random,
}

impl From<CryptError> for io::Error {
    fn from(e: CryptError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// The `CryptError` inside an `io::Error` from this module's adapters, if it is one.
pub fn crypt_error(e: &io::Error) -> Option<CryptError> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<CryptError>())
        .copied()
}

fn nonce(prefix: &[u8; PREFIX], counter: u32) -> XNonce {
    let mut n = [0u8; PREFIX + 4];
    n[..PREFIX].copy_from_slice(prefix);
    n[PREFIX..].copy_from_slice(&counter.to_be_bytes());
    XNonce::from(n)
}

fn associated(name: &str, last: bool) -> Vec<u8> {
    let mut ad = Vec::with_capacity(MAGIC.len() + name.len() + 1);
    ad.extend_from_slice(MAGIC);
    ad.extend_from_slice(name.as_bytes());
    ad.push(u8::from(last));
    ad
}

fn cipher(key: &ImageKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.aead_key().into())
}

/// Encrypts what is written to it into `inner`. Call [`EncryptWriter::finish`]: without it the
/// last segment is never sealed and the file does not decrypt (fails safe).
pub struct EncryptWriter<W: Write> {
    inner: W,
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX],
    counter: u32,
    name: String,
    buf: Vec<u8>,
}

impl<W: Write> EncryptWriter<W> {
    /// Start the file `name` (its logical name, bound into every segment) in `inner`.
    pub fn new(mut inner: W, key: &ImageKey, name: &str) -> io::Result<Self> {
        let mut prefix = [0u8; PREFIX];
        OsRng
            .try_fill_bytes(&mut prefix)
            .map_err(|_| CryptError::Random)?;
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        Ok(EncryptWriter {
            inner,
            cipher: cipher(key),
            prefix,
            counter: 0,
            name: name.to_string(),
            buf: Vec::with_capacity(SEGMENT + TAG),
        })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter);
        self.cipher
            .encrypt_in_place(&n, &associated(&self.name, last), &mut self.buf)
            .map_err(|_| CryptError::TooLong)?;
        self.inner.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or(CryptError::TooLong)?;
        Ok(())
    }

    /// Seal the last segment and hand back the inner writer (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.seal(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for EncryptWriter<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if b.is_empty() {
            return Ok(0);
        }
        // A full segment is sealed only once more bytes come: the last one must be marked last.
        if self.buf.len() == SEGMENT {
            self.seal(false)?;
        }
        let k = (SEGMENT - self.buf.len()).min(b.len());
        self.buf.extend_from_slice(&b[..k]);
        Ok(k)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a file written by [`EncryptWriter`]; every byte it returns is authenticated.
pub struct DecryptReader<R: Read> {
    inner: R,
    cipher: XChaCha20Poly1305,
    prefix: [u8; PREFIX],
    counter: u32,
    name: String,
    /// Ciphertext read ahead: one segment, plus one byte that tells whether another follows.
    ahead: Vec<u8>,
    /// The current segment's plaintext and how much of it was returned.
    out: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> DecryptReader<R> {
    /// Open the file `name` (its logical name, as given to the writer) from `inner`.
    pub fn new(mut inner: R, key: &ImageKey, name: &str) -> io::Result<Self> {
        let mut head = [0u8; 8 + PREFIX];
        inner.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => CryptError::BadHeader.into(),
            _ => e,
        })?;
        if &head[..8] != MAGIC {
            return Err(CryptError::BadHeader.into());
        }
        let mut prefix = [0u8; PREFIX];
        prefix.copy_from_slice(&head[8..]);
        Ok(DecryptReader {
            inner,
            cipher: cipher(key),
            prefix,
            counter: 0,
            name: name.to_string(),
            ahead: Vec::with_capacity(SEGMENT + TAG + 1),
            out: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    /// Read up to `want` bytes into `ahead` (fewer only at the end of the input).
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.ahead.len() < want {
            let k = (&mut self.inner)
                .take((want - self.ahead.len()) as u64)
                .read_to_end(&mut self.ahead)?;
            if k == 0 {
                break;
            }
        }
        Ok(())
    }

    fn next_segment(&mut self) -> io::Result<()> {
        self.fill(SEGMENT + TAG + 1)?;
        let last = self.ahead.len() <= SEGMENT + TAG;
        let carry = if last { None } else { self.ahead.pop() };
        if self.ahead.len() < TAG {
            return Err(CryptError::Truncated.into());
        }
        let n = nonce(&self.prefix, self.counter);
        self.cipher
            .decrypt_in_place(&n, &associated(&self.name, last), &mut self.ahead)
            .map_err(|_| CryptError::Forged(self.counter))?;
        std::mem::swap(&mut self.out, &mut self.ahead);
        self.ahead.clear();
        self.ahead.extend(carry);
        self.pos = 0;
        self.done = last;
        self.counter = self.counter.checked_add(1).ok_or(CryptError::TooLong)?;
        Ok(())
    }
}

impl<R: Read> Read for DecryptReader<R> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done || b.is_empty() {
                return Ok(0);
            }
            self.next_segment()?;
        }
        let k = (self.out.len() - self.pos).min(b.len());
        b[..k].copy_from_slice(&self.out[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SiteKey;

    fn key(user: &str) -> ImageKey {
        SiteKey::derive(b"munge").image_key(1000, user)
    }

    fn seal(data: &[u8], k: &ImageKey, name: &str) -> Vec<u8> {
        let mut w = EncryptWriter::new(Vec::new(), k, name).unwrap();
        // Odd write sizes, so segment edges fall inside writes.
        for piece in data.chunks(77_777) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn open(stored: &[u8], k: &ImageKey, name: &str) -> Result<Vec<u8>, CryptError> {
        let mut out = Vec::new();
        DecryptReader::new(stored, k, name)
            .and_then(|mut r| r.read_to_end(&mut out))
            .map_err(|e| crypt_error(&e).unwrap_or_else(|| panic!("not a crypt error: {e}")))?;
        Ok(out)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
            .collect()
    }

    /// Offset of segment `i` in a stored file.
    fn at(i: usize) -> usize {
        8 + PREFIX + i * (SEGMENT + TAG)
    }

    #[test]
    fn round_trips() {
        let k = key("alice");
        for len in [
            0,
            1,
            4097,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            2 * SEGMENT,
            3 * SEGMENT + 12345,
        ] {
            let plain = data(len);
            let stored = seal(&plain, &k, "pages-1.img");
            let segments = len.div_ceil(SEGMENT).max(1);
            assert_eq!(stored.len(), 8 + PREFIX + len + segments * TAG, "{len}");
            assert_eq!(open(&stored, &k, "pages-1.img").unwrap(), plain, "{len}");
        }
        // Random prefixes: the same plaintext never gives the same ciphertext.
        assert_ne!(seal(b"x", &k, "a"), seal(b"x", &k, "a"));
    }

    #[test]
    fn refuses_other_keys_and_names() {
        let stored = seal(&data(1000), &key("alice"), "core-1.img");
        assert_eq!(
            open(&stored, &key("bob"), "core-1.img"),
            Err(CryptError::Forged(0))
        );
        let other_site = SiteKey::derive(b"other").image_key(1000, "alice");
        assert_eq!(
            open(&stored, &other_site, "core-1.img"),
            Err(CryptError::Forged(0))
        );
        // Renamed onto another image file.
        assert_eq!(
            open(&stored, &key("alice"), "mm-1.img"),
            Err(CryptError::Forged(0))
        );
        assert_eq!(
            open(b"plain CRIU image", &key("alice"), "x"),
            Err(CryptError::BadHeader)
        );
        assert_eq!(
            open(&stored[..8 + PREFIX], &key("alice"), "core-1.img"),
            Err(CryptError::Truncated)
        );
    }

    #[test]
    fn refuses_flips_truncation_and_reordering() {
        let k = key("alice");
        let plain = data(3 * SEGMENT + 10);
        let stored = seal(&plain, &k, "pages-1.img");
        let open = |s: &[u8]| open(s, &k, "pages-1.img");
        for pos in [0, 8, 8 + PREFIX, at(1) + 5, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[pos] ^= 1;
            assert!(open(&bad).is_err(), "flip at {pos}");
        }
        // The last segment dropped: the one before was not sealed as last.
        assert_eq!(open(&stored[..at(3)]), Err(CryptError::Forged(2)));
        // Cut inside a segment.
        assert!(open(&stored[..at(2) + 100]).is_err());
        // Two full segments swapped.
        let mut swapped = stored[..at(0)].to_vec();
        swapped.extend_from_slice(&stored[at(1)..at(2)]);
        swapped.extend_from_slice(&stored[at(0)..at(1)]);
        swapped.extend_from_slice(&stored[at(2)..]);
        assert_eq!(open(&swapped), Err(CryptError::Forged(0)));
        // Trailing bytes after the last segment.
        let mut longer = stored.clone();
        longer.extend_from_slice(&[0; TAG + 1]);
        assert!(open(&longer).is_err());
        assert_eq!(open(&stored).unwrap(), plain);
    }
}
