//! The signing key: ECDSA P-256 with SHA-256, the key type `cosign generate-key-pair` makes.
//!
//! The private key is `<audit dir>/signing-key.pem` (PKCS#8, mode 0600), created on first start.
//! Every public key ever used is kept as `<audit dir>/keys/<key id>.pem` (SubjectPublicKeyInfo,
//! what `cosign verify-blob --key` and `openssl dgst -verify` read); the key id is the first 16
//! hex digits of the SHA-256 of the public key's DER. Signatures are DER ECDSA signatures in
//! base64, as `cosign sign-blob` writes them.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use crate::error::{AuditError, Result, io};
use crate::event::hex;

/// DER prefix of a P-256 SubjectPublicKeyInfo holding an uncompressed point (65 bytes follow).
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The private key's file name in the audit directory.
pub(crate) const PRIVATE_KEY_FILE: &str = "signing-key.pem";
/// The directory of public keys in the audit directory.
pub(crate) const PUBLIC_KEYS_DIR: &str = "keys";

pub struct SigningKey {
    pair: EcdsaKeyPair,
    pub info: KeyInfo,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("key_id", &self.info.key_id).finish()
    }
}

/// A public key as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub public_pem: String,
}

impl SigningKey {
    /// Loads the audit directory's key, creating it (0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<SigningKey> {
        let path = dir.join(PRIVATE_KEY_FILE);
        if path.exists() {
            let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
            let key = SigningKey::from_pkcs8_pem(&pem, &path)?;
            key.publish(dir)?;
            return Ok(key);
        }
        SigningKey::create(dir)
    }

    /// A new key, replacing the directory's private key; its public key is published.
    pub fn create(dir: &Path) -> Result<SigningKey> {
        let path = dir.join(PRIVATE_KEY_FILE);
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| AuditError::Key { path: path.clone(), detail: "could not generate a key".into() })?;
        let pem = pem_encode("PRIVATE KEY", doc.as_ref());
        write_private(&path, pem.as_bytes())?;
        let key = SigningKey::from_pkcs8_pem(&pem, &path)?;
        key.publish(dir)?;
        Ok(key)
    }

    fn from_pkcs8_pem(pem: &str, path: &Path) -> Result<SigningKey> {
        let bad = |detail: String| AuditError::Key { path: path.to_path_buf(), detail };
        let der = pem_decode(pem, "PRIVATE KEY").ok_or_else(|| bad("not a PEM PRIVATE KEY (PKCS#8)".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new())
            .map_err(|e| bad(format!("not an ECDSA P-256 key: {e}")))?;
        let mut spki = SPKI_P256_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let info = KeyInfo { key_id: key_id(&spki), public_pem: pem_encode("PUBLIC KEY", &spki) };
        Ok(SigningKey { pair, info })
    }

    /// Writes the public key to `keys/<key id>.pem` if it is not there yet.
    fn publish(&self, dir: &Path) -> Result<()> {
        let keys = dir.join(PUBLIC_KEYS_DIR);
        std::fs::create_dir_all(&keys).map_err(io(&keys))?;
        let path = keys.join(format!("{}.pem", self.info.key_id));
        if !path.exists() {
            std::fs::write(&path, &self.info.public_pem).map_err(io(&path))?;
        }
        Ok(())
    }

    /// The base64 DER signature of `data` (what `cosign sign-blob` prints).
    pub fn sign(&self, data: &[u8]) -> Result<String> {
        let sig =
            self.pair.sign(&SystemRandom::new(), data).map_err(|_| AuditError::Invalid("signing failed".into()))?;
        Ok(B64.encode(sig.as_ref()))
    }
}

/// Signs a file's bytes with a PKCS#8 PEM key (for tools; the log uses [`SigningKey`]).
pub fn sign_blob(private_pem: &str, data: &[u8]) -> Result<String> {
    SigningKey::from_pkcs8_pem(private_pem, Path::new("<key>"))?.sign(data)
}

/// Whether `signature` (base64 DER, surrounding white space ignored) is a valid signature of
/// `data` by the PEM public key.
pub fn verify_blob(public_pem: &str, data: &[u8], signature: &str) -> bool {
    let (Some(spki), Ok(sig)) = (pem_decode(public_pem, "PUBLIC KEY"), B64.decode(signature.trim())) else {
        return false;
    };
    let Some(point) = spki.strip_prefix(&SPKI_P256_PREFIX[..]) else {
        return false;
    };
    ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(data, &sig).is_ok()
}

/// The key id of a PEM public key, if it is one.
pub fn key_id_of_pem(public_pem: &str) -> Option<String> {
    pem_decode(public_pem, "PUBLIC KEY").map(|der| key_id(&der))
}

fn key_id(spki_der: &[u8]) -> String {
    hex(&ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref()[..8])
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp: PathBuf = path.with_extension("pem.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_signs_and_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(dir.path()).unwrap();
        let sig = key.sign(b"segment bytes").unwrap();
        assert!(verify_blob(&key.info.public_pem, b"segment bytes", &sig));
        assert!(!verify_blob(&key.info.public_pem, b"segment bytez", &sig));
        // Loaded again: the same key, published once.
        let again = SigningKey::load_or_create(dir.path()).unwrap();
        assert_eq!(again.info, key.info);
        assert_eq!(key_id_of_pem(&key.info.public_pem).as_deref(), Some(key.info.key_id.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(PRIVATE_KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = SigningKey::create(dir.path()).unwrap();
        assert_ne!(other.info.key_id, key.info.key_id);
        assert!(!verify_blob(&other.info.public_pem, b"segment bytes", &sig));
        assert_eq!(std::fs::read_dir(dir.path().join(PUBLIC_KEYS_DIR)).unwrap().count(), 2);
    }
}
