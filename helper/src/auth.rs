//! Authenticated checkpoint records. Anyone who can write the checkpoint storage (a root-squashed
//! network file system, a storage admin, a restored backup, another compromised node) could
//! otherwise make root restore crafted CRIU images, since the image checksums sit in the same
//! files. A site key only root on the nodes can read — derived from the site's `key_file` (munge's
//! key by default), as the job ssh
//! keys are — keys an HMAC-SHA256 over the exact bytes of each rank record and of the manifest
//! (which lists every image file's sha256). Restore verifies it before anything else is trusted.
//! With site `encrypt=yes` the same site key also yields each user's [`ImageKey`] (crypt.rs).
use crate::ckpt::write_durable;
use crate::error::{Error, Result};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// The key that authenticates checkpoint records; never written anywhere.
#[derive(Clone)]
pub struct SiteKey([u8; 32]);

impl std::fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteKey(..)")
    }
}

impl SiteKey {
    /// Derive the checkpoint key from the site secret (munge's key): a key of its own, so a MAC
    /// never reveals anything about the secret that also seeds the job ssh keys.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = new_mac(secret);
        mac.update(b"slurm-container-ckpt checkpoint records v1");
        SiteKey(mac.finalize().into_bytes().into())
    }

    /// The key that encrypts `uid`'s checkpoint images: HKDF of the site key, with the user in the
    /// info, so one user's key never decrypts another's images (nor reveals the site key).
    pub fn image_key(&self, uid: u32, user: &str) -> ImageKey {
        let hk = Hkdf::<Sha256>::new(Some(b"slurm-container-ckpt image encryption v1"), &self.0);
        let part = |what: &[u8]| {
            let mut info = Vec::with_capacity(what.len() + 5 + user.len());
            info.extend_from_slice(what);
            info.extend_from_slice(&uid.to_be_bytes());
            info.push(0);
            info.extend_from_slice(user.as_bytes());
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit (8160): this cannot fail.
            hk.expand(&info, &mut out)
                .unwrap_or_else(|_| unreachable!());
            out
        };
        ImageKey {
            aead: part(b"aead\0"),
            ids: part(b"chunk-ids\0"),
        }
    }

    /// Hex HMAC of `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let mut mac = new_mac(&self.0);
        mac.update(bytes);
        format!("{:x}", mac.finalize().into_bytes())
    }

    /// Whether `tag` (hex) authenticates `bytes`; compared in constant time.
    pub fn verify(&self, bytes: &[u8], tag: &str) -> bool {
        let Some(raw) = unhex(tag.trim()) else {
            return false;
        };
        let mut mac = new_mac(&self.0);
        mac.update(bytes);
        mac.verify_slice(&raw).is_ok()
    }

    /// Write `bytes` to `path` and its MAC to `path.mac`, both durably.
    pub fn write_signed(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_durable(path, bytes)?;
        write_durable(&mac_path(path), self.sign(bytes).as_bytes())
    }

    /// Read `path` and check it against `path.mac`. The error says which of the two is wrong.
    pub fn read_signed(&self, path: &Path) -> Result<Vec<u8>> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mp = mac_path(path);
        let tag = std::fs::read_to_string(&mp).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Unauthenticated {
                path: path.to_path_buf(),
                why: "it has no MAC (written by another tool or an older version, or truncated)",
            },
            _ => Error::io(&mp, e),
        })?;
        if self.verify(&bytes, &tag) {
            Ok(bytes)
        } else {
            Err(Error::Unauthenticated {
                path: path.to_path_buf(),
                why: "its MAC does not match (altered after it was written, or written with another site key)",
            })
        }
    }
}

/// One user's key for checkpoint images at rest; never written anywhere.
#[derive(Clone)]
pub struct ImageKey {
    /// XChaCha20-Poly1305 key of the image files.
    aead: [u8; 32],
    /// Keys the chunk ids of incremental storage: plain hashes of the job's memory would let
    /// anyone who reads the storage confirm a guess of a chunk's content.
    ids: [u8; 32],
}

impl std::fmt::Debug for ImageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageKey(..)")
    }
}

impl ImageKey {
    pub(crate) fn aead_key(&self) -> &[u8; 32] {
        &self.aead
    }

    /// Hex id of a chunk's plaintext: equal for equal chunks of this user, meaningless to others.
    pub fn chunk_id(&self, bytes: &[u8]) -> String {
        let mut mac = new_mac(&self.ids);
        mac.update(bytes);
        format!("{:x}", mac.finalize().into_bytes())
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of every length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// `manifest.json` → `manifest.json.mac`.
pub fn mac_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".mac");
    PathBuf::from(s)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_bytes_to_the_key() {
        let k = SiteKey::derive(b"munge secret");
        let t = k.sign(b"manifest");
        assert_eq!(t.len(), 64);
        assert!(k.verify(b"manifest", &t));
        assert!(!k.verify(b"manifesT", &t));
        assert!(!SiteKey::derive(b"other secret").verify(b"manifest", &t));
        for bad in ["", "zz", &t[..62], "0"] {
            assert!(!k.verify(b"manifest", bad), "{bad}");
        }
    }

    #[test]
    fn image_keys_are_per_user_and_per_site() {
        let k = SiteKey::derive(b"munge secret");
        let id = |k: &ImageKey| k.chunk_id(b"chunk");
        let a = k.image_key(1000, "alice");
        assert_eq!(a.aead_key(), k.image_key(1000, "alice").aead_key());
        assert_ne!(a.aead_key(), k.image_key(1001, "alice").aead_key());
        assert_ne!(a.aead_key(), k.image_key(1000, "bob").aead_key());
        assert_ne!(
            a.aead_key(),
            SiteKey::derive(b"other")
                .image_key(1000, "alice")
                .aead_key()
        );
        assert_ne!(a.aead_key(), &a.ids);
        assert_eq!(id(&a), id(&k.image_key(1000, "alice")));
        assert_ne!(id(&a), id(&k.image_key(1001, "alice")));
    }

    #[test]
    fn signed_files_refuse_edits_and_missing_macs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("manifest.json");
        let k = SiteKey::derive(b"s");
        k.write_signed(&p, b"{\"a\":1}").unwrap();
        assert_eq!(k.read_signed(&p).unwrap(), b"{\"a\":1}");
        std::fs::write(&p, b"{\"a\":2}").unwrap();
        let e = k.read_signed(&p).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        std::fs::remove_file(mac_path(&p)).unwrap();
        let e = k.read_signed(&p).unwrap_err().to_string();
        assert!(e.contains("no MAC"), "{e}");
    }
}
