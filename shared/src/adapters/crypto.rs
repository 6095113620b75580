//! Token encryption at rest: AES-256-GCM with a random nonce per value, stored as text.
//!
//! Two modes. **Local key** (dev, and items written before envelope encryption): one 32-byte key
//! (`TOKEN_KEY`). **KMS envelope** (AWS, `TOKEN_KMS_KEY_ID`): a data key from KMS
//! `GenerateDataKey` (AES_256), fetched once per process (cold start), encrypts values locally; the
//! KMS-encrypted data key travels with every value, and reading a value written by another
//! process asks KMS `Decrypt` for its data key once, then keeps it in memory.
//!
//! Formats (the prefix is the version tag):
//! - `lk1:` + base64(nonce || ciphertext+tag): local key.
//! - `kms1:` + base64(encrypted data key) + `:` + base64(nonce || ciphertext+tag): envelope.
//! - no prefix: base64(nonce || ciphertext+tag) under the local key (items written before the
//!   tags existed); still read, never written.
//!
//! Item conversion is synchronous, KMS is not: the store calls [`TokenCipher::ready`] before it
//! encrypts and [`TokenCipher::prepare`] with the values it is about to decrypt; after that,
//! [`TokenCipher::encrypt`] and [`TokenCipher::decrypt`] need no I/O.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const LOCAL_TAG: &str = "lk1:";
const ENVELOPE_TAG: &str = "kms1:";
/// The KMS encryption context of every data key: a data key made for something else does not
/// decrypt here, and CloudTrail shows what each KMS call was for.
const CONTEXT_KEY: &str = "purpose";
const CONTEXT_VALUE: &str = "syncbridge-oauth-tokens";
/// Decrypted data keys kept in memory per process (each process writes with one; this bounds
/// what many cold starts over months could accumulate).
const MAX_CACHED_DATA_KEYS: usize = 1024;

/// Why a key could not be loaded or a value could not be encrypted or decrypted. Never carries
/// key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("token key must be base64 of exactly 32 bytes")]
    InvalidKey,
    #[error("encrypted value is not in a known format")]
    Malformed,
    /// Authentication failed: the value was altered or was encrypted under another key.
    #[error("encrypted value failed authentication")]
    Decrypt,
    #[error("decrypted value is not UTF-8 text")]
    NotText,
    /// A local-key value, but this cipher has no local key (KMS mode without `TOKEN_KEY`).
    #[error("the value was encrypted with the local key, which is not configured")]
    NoLocalKey,
    /// An envelope value, but this cipher has no KMS client (local mode).
    #[error("the value was encrypted with a KMS data key, and KMS is not configured")]
    NoKms,
    /// `encrypt`/`decrypt` before `ready`/`prepare` resolved the data key (a bug in the caller).
    #[error("the data key has not been resolved from KMS yet")]
    KeyNotReady,
    /// KMS refused or failed; `retryable` for throttling and service faults.
    #[error("KMS {operation} failed: {code}")]
    Kms { operation: &'static str, code: String, retryable: bool },
}

impl CryptoError {
    /// True when trying again later may succeed (KMS throttling, timeouts, service faults).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CryptoError::Kms { retryable: true, .. })
    }
}

/// A data key: the AES key and its KMS-encrypted form (stored with each value).
struct DataKey {
    encrypted: Vec<u8>,
    cipher: Aes256Gcm,
}

struct Envelope {
    kms: aws_sdk_kms::Client,
    key_id: String,
    /// The data key this process encrypts with: one `GenerateDataKey` per process.
    current: OnceCell<DataKey>,
    /// Data keys of values read so far, by encrypted data key.
    cache: RwLock<HashMap<Vec<u8>, Aes256Gcm>>,
}

struct Inner {
    /// Encrypts in local mode; decrypts local-key values in both modes.
    local: Option<Aes256Gcm>,
    envelope: Option<Envelope>,
}

/// Encrypts and decrypts OAuth tokens. Cheap to clone (clones share the data key cache); `Debug`
/// never shows a key.
#[derive(Clone)]
pub struct TokenCipher {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.inner.envelope.is_some() { "kms" } else { "local" };
        write!(f, "TokenCipher({mode}, <redacted>)")
    }
}

fn local_key(key: &SecretString) -> Result<Aes256Gcm, CryptoError> {
    let bytes = B64.decode(key.expose_secret().trim()).map_err(|_| CryptoError::InvalidKey)?;
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)))
}

fn seal(cipher: &Aes256Gcm, plaintext: &SecretString) -> String {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = match cipher.encrypt(&nonce, plaintext.expose_secret().as_bytes()) {
        Ok(sealed) => sealed,
        Err(_) => unreachable!("AES-GCM encryption fails only for inputs over 64 GiB"),
    };
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    B64.encode(out)
}

fn open(cipher: &Aes256Gcm, encoded: &str) -> Result<SecretString, CryptoError> {
    let bytes = B64.decode(encoded).map_err(|_| CryptoError::Malformed)?;
    if bytes.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Malformed);
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
    let plain = cipher.decrypt(&Nonce::from(nonce), sealed).map_err(|_| CryptoError::Decrypt)?;
    let text = String::from_utf8(plain).map_err(|_| CryptoError::NotText)?;
    Ok(SecretString::from(text))
}

/// A stored value, split by its version tag.
enum Sealed<'a> {
    Local(&'a str),
    Envelope { data_key: Vec<u8>, body: &'a str },
}

fn parse(encoded: &str) -> Result<Sealed<'_>, CryptoError> {
    if let Some(body) = encoded.strip_prefix(LOCAL_TAG) {
        return Ok(Sealed::Local(body));
    }
    if let Some(rest) = encoded.strip_prefix(ENVELOPE_TAG) {
        let (key, body) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
        let data_key = B64.decode(key).map_err(|_| CryptoError::Malformed)?;
        if data_key.is_empty() {
            return Err(CryptoError::Malformed);
        }
        return Ok(Sealed::Envelope { data_key, body });
    }
    // Untagged: the format before version tags (base64 has no ':').
    Ok(Sealed::Local(encoded))
}

fn kms_error<E: ProvideErrorMetadata>(
    operation: &'static str,
    err: &aws_sdk_kms::error::SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> CryptoError {
    use aws_sdk_kms::error::SdkError;
    let (code, retryable) = match err {
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or("unknown").to_owned();
            let retryable = matches!(
                code.as_str(),
                "ThrottlingException"
                    | "KMSInternalException"
                    | "DependencyTimeoutException"
                    | "KeyUnavailableException"
                    | "LimitExceededException"
            );
            (code, retryable)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ("unreachable".to_owned(), true)
        }
        _ => ("request".to_owned(), false),
    };
    CryptoError::Kms { operation, code, retryable }
}

fn aes_key(bytes: &[u8]) -> Result<Aes256Gcm, CryptoError> {
    let bytes: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::InvalidKey)?;
    Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(bytes)))
}

impl TokenCipher {
    /// Local-key mode from base64 (standard alphabet, padded) of 32 key bytes, as in
    /// `Config::token_key`.
    pub fn from_base64_key(key: &SecretString) -> Result<Self, CryptoError> {
        Ok(Self { inner: Arc::new(Inner { local: Some(local_key(key)?), envelope: None }) })
    }

    /// KMS envelope mode with the KMS key `key_id` (id, ARN or alias). `legacy_key` (the local
    /// key) still decrypts values written before; it encrypts nothing.
    pub fn kms(
        kms: aws_sdk_kms::Client,
        key_id: impl Into<String>,
        legacy_key: Option<&SecretString>,
    ) -> Result<Self, CryptoError> {
        Ok(Self {
            inner: Arc::new(Inner {
                local: legacy_key.map(local_key).transpose()?,
                envelope: Some(Envelope {
                    kms,
                    key_id: key_id.into(),
                    current: OnceCell::new(),
                    cache: RwLock::new(HashMap::new()),
                }),
            }),
        })
    }

    /// A fresh random key in the form `from_base64_key` reads (for dev setups and tests).
    pub fn generate_key() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// True in KMS envelope mode.
    pub fn is_envelope(&self) -> bool {
        self.inner.envelope.is_some()
    }

    /// Makes `encrypt` usable: in KMS mode, the first call asks KMS for this process's data key
    /// (`GenerateDataKey`, AES_256); later calls return at once. Nothing to do in local mode.
    pub async fn ready(&self) -> Result<(), CryptoError> {
        let Some(env) = &self.inner.envelope else {
            return Ok(());
        };
        env.current
            .get_or_try_init(|| async {
                let out = env
                    .kms
                    .generate_data_key()
                    .key_id(&env.key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
                    .send()
                    .await
                    .map_err(|e| kms_error("GenerateDataKey", &e))?;
                let plain = out.plaintext.ok_or(CryptoError::Kms {
                    operation: "GenerateDataKey",
                    code: "no plaintext key".into(),
                    retryable: false,
                })?;
                let encrypted = out.ciphertext_blob.ok_or(CryptoError::Kms {
                    operation: "GenerateDataKey",
                    code: "no encrypted key".into(),
                    retryable: false,
                })?;
                let cipher = aes_key(plain.as_ref())?;
                let encrypted = encrypted.into_inner();
                self.remember(encrypted.clone(), cipher.clone());
                Ok(DataKey { encrypted, cipher })
            })
            .await
            .map(|_| ())
    }

    /// Makes `decrypt` usable for `values`: asks KMS `Decrypt` for every data key among them that
    /// this process has not seen yet (once each). Local-key values need nothing.
    pub async fn prepare(&self, values: &[String]) -> Result<(), CryptoError> {
        let Some(env) = &self.inner.envelope else {
            return Ok(());
        };
        for value in values {
            let Ok(Sealed::Envelope { data_key, .. }) = parse(value.as_str()) else {
                continue;
            };
            if self.cached(&data_key).is_some() {
                continue;
            }
            let out = env
                .kms
                .decrypt()
                .key_id(&env.key_id)
                .ciphertext_blob(Blob::new(data_key.clone()))
                .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
                .send()
                .await
                .map_err(|e| kms_error("Decrypt", &e))?;
            let plain = out.plaintext.ok_or(CryptoError::Kms {
                operation: "Decrypt",
                code: "no plaintext key".into(),
                retryable: false,
            })?;
            self.remember(data_key, aes_key(plain.as_ref())?);
        }
        Ok(())
    }

    fn cached(&self, data_key: &[u8]) -> Option<Aes256Gcm> {
        let env = self.inner.envelope.as_ref()?;
        let cache = env.cache.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.get(data_key).cloned()
    }

    fn remember(&self, data_key: Vec<u8>, cipher: Aes256Gcm) {
        if let Some(env) = &self.inner.envelope {
            let mut cache = env.cache.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if cache.len() >= MAX_CACHED_DATA_KEYS {
                cache.clear();
            }
            cache.insert(data_key, cipher);
        }
    }

    /// Encrypts `plaintext` under a fresh random nonce (two encryptions of one value differ): with
    /// the local key, or in KMS mode with this process's data key (after [`Self::ready`]).
    pub fn encrypt(&self, plaintext: &SecretString) -> Result<String, CryptoError> {
        match (&self.inner.envelope, &self.inner.local) {
            (Some(env), _) => {
                let key = env.current.get().ok_or(CryptoError::KeyNotReady)?;
                Ok(format!("{ENVELOPE_TAG}{}:{}", B64.encode(&key.encrypted), seal(&key.cipher, plaintext)))
            }
            (None, Some(local)) => Ok(format!("{LOCAL_TAG}{}", seal(local, plaintext))),
            (None, None) => Err(CryptoError::NoLocalKey),
        }
    }

    /// Decrypts any format above (envelope values after [`Self::prepare`]); any change to the value,
    /// or another key, is `Decrypt`.
    pub fn decrypt(&self, encoded: &str) -> Result<SecretString, CryptoError> {
        match parse(encoded)? {
            Sealed::Local(body) => open(self.inner.local.as_ref().ok_or(CryptoError::NoLocalKey)?, body),
            Sealed::Envelope { data_key, body } => {
                if self.inner.envelope.is_none() {
                    return Err(CryptoError::NoKms);
                }
                open(&self.cached(&data_key).ok_or(CryptoError::KeyNotReady)?, body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> TokenCipher {
        TokenCipher::from_base64_key(&SecretString::from(TokenCipher::generate_key())).unwrap()
    }

    /// The format written before version tags: base64 of nonce and ciphertext, no prefix.
    fn legacy_encrypt(key: &str, plaintext: &str) -> String {
        seal(&local_key(&SecretString::from(key.to_owned())).unwrap(), &SecretString::from(plaintext))
    }

    #[test]
    fn encrypted_token_round_trips_and_never_contains_the_plaintext() {
        let c = cipher();
        let token = SecretString::from("pat-na1-secret-token");
        let a = c.encrypt(&token).unwrap();
        let b = c.encrypt(&token).unwrap();
        assert_ne!(a, b, "each encryption uses a fresh nonce");
        assert!(a.starts_with("lk1:"), "{a}");
        assert!(!a.contains("secret"));
        assert_eq!(c.decrypt(&a).unwrap().expose_secret(), "pat-na1-secret-token");
        let empty = c.encrypt(&SecretString::from("")).unwrap();
        assert_eq!(c.decrypt(&empty).unwrap().expose_secret(), "");
    }

    #[test]
    fn values_written_before_the_version_tag_still_decrypt() {
        let key = TokenCipher::generate_key();
        let c = TokenCipher::from_base64_key(&SecretString::from(key.clone())).unwrap();
        let old = legacy_encrypt(&key, "old-token");
        assert!(!old.contains(':'));
        assert_eq!(c.decrypt(&old).unwrap().expose_secret(), "old-token");
    }

    #[test]
    fn tampered_ciphertext_is_detected() {
        let c = cipher();
        let sealed = c.encrypt(&SecretString::from("token")).unwrap();
        let mut bytes = B64.decode(sealed.strip_prefix("lk1:").unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(c.decrypt(&format!("lk1:{}", B64.encode(&bytes))).unwrap_err(), CryptoError::Decrypt);
        bytes[last] ^= 1;
        bytes[0] ^= 0x80;
        assert_eq!(c.decrypt(&B64.encode(&bytes)).unwrap_err(), CryptoError::Decrypt);
        assert_eq!(c.decrypt("not base64!").unwrap_err(), CryptoError::Malformed);
        assert_eq!(c.decrypt(&B64.encode([0u8; 20])).unwrap_err(), CryptoError::Malformed);
        assert_eq!(c.decrypt("kms1:no-separator").unwrap_err(), CryptoError::Malformed);
    }

    #[test]
    fn a_value_encrypted_under_another_key_does_not_decrypt() {
        let sealed = cipher().encrypt(&SecretString::from("token")).unwrap();
        assert_eq!(cipher().decrypt(&sealed).unwrap_err(), CryptoError::Decrypt);
    }

    #[test]
    fn an_envelope_value_in_local_mode_is_refused_not_misread() {
        let value = format!("kms1:{}:{}", B64.encode([1u8; 40]), B64.encode([0u8; 40]));
        assert_eq!(cipher().decrypt(&value).unwrap_err(), CryptoError::NoKms);
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
