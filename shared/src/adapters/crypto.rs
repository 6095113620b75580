//! Token encryption at rest: AES-256-GCM with a random nonce per value, stored as base64 text.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// Why a key could not be loaded or a value could not be decrypted. Never carries key material or
/// plaintext, and is never retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("token key must be base64 of exactly 32 bytes")]
    InvalidKey,
    #[error("encrypted value is not base64 of nonce and ciphertext")]
    Malformed,
    /// Authentication failed: the value was altered or was encrypted under another key.
    #[error("encrypted value failed authentication")]
    Decrypt,
    #[error("decrypted value is not UTF-8 text")]
    NotText,
}

/// Encrypts and decrypts OAuth tokens. Cheap to clone; `Debug` never shows the key.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCipher(<redacted>)")
    }
}

impl TokenCipher {
    /// Builds a cipher from base64 (standard alphabet, padded) of 32 key bytes, as in
    /// `Config::token_key`.
    pub fn from_base64_key(key: &SecretString) -> Result<Self, CryptoError> {
        let bytes = B64.decode(key.expose_secret().trim()).map_err(|_| CryptoError::InvalidKey)?;
        let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
        Ok(Self { cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)) })
    }

    /// A fresh random key in the form `from_base64_key` reads (for dev setups and tests).
    pub fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// Encrypts `plaintext` under a fresh random nonce: base64 of `nonce || ciphertext+tag`. Two
    /// encryptions of one value differ.
    pub fn encrypt(&self, plaintext: &SecretString) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = match self.cipher.encrypt(&nonce, plaintext.expose_secret().as_bytes()) {
            Ok(sealed) => sealed,
            Err(_) => unreachable!("AES-GCM encryption fails only for inputs over 64 GiB"),
        };
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// Decrypts what `encrypt` produced; any change to the value, or another key, is `Decrypt`.
    pub fn decrypt(&self, encoded: &str) -> Result<SecretString, CryptoError> {
        let bytes = B64.decode(encoded).map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
        let plain = self.cipher.decrypt(&Nonce::from(nonce), sealed).map_err(|_| CryptoError::Decrypt)?;
        let text = String::from_utf8(plain).map_err(|_| CryptoError::NotText)?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> TokenCipher {
        TokenCipher::from_base64_key(&SecretString::from(TokenCipher::generate_key())).unwrap()
    }

    #[test]
    fn encrypted_token_round_trips_and_never_contains_the_plaintext() {
        let c = cipher();
        let token = SecretString::from("pat-na1-secret-token");
        let a = c.encrypt(&token);
        let b = c.encrypt(&token);
        assert_ne!(a, b, "each encryption uses a fresh nonce");
        assert!(!a.contains("secret"));
        assert_eq!(c.decrypt(&a).unwrap().expose_secret(), "pat-na1-secret-token");
        assert_eq!(c.decrypt(&c.encrypt(&SecretString::from(""))).unwrap().expose_secret(), "");
    }

    #[test]
    fn tampered_ciphertext_is_detected() {
        let c = cipher();
        let mut bytes = B64.decode(c.encrypt(&SecretString::from("token"))).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(c.decrypt(&B64.encode(&bytes)).unwrap_err(), CryptoError::Decrypt);
        bytes[last] ^= 1;
        bytes[0] ^= 0x80;
        assert_eq!(c.decrypt(&B64.encode(&bytes)).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(c.decrypt("not base64!").unwrap_err(), CryptoError::Malformed);
        assert_eq!(c.decrypt(&B64.encode([0u8; 20])).unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn a_value_encrypted_under_another_key_does_not_decrypt() {
        let sealed = cipher().encrypt(&SecretString::from("token"));
        assert_eq!(cipher().decrypt(&sealed).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn keys_that_are_not_base64_of_32_bytes_are_rejected() {
        for bad in ["", "not base64!", &B64.encode([0u8; 16]), &B64.encode([0u8; 33])] {
            assert_eq!(
                TokenCipher::from_base64_key(&SecretString::from(bad)).unwrap_err(),
                CryptoError::InvalidKey
            );
        }
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = TokenCipher::generate_key();
        let c = TokenCipher::from_base64_key(&SecretString::from(key.clone())).unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains(&key));
        assert!(shown.contains("redacted"));
    }
}
