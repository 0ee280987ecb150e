//! AES-256-GCM sealing of bring-your-own storage credentials, and API keys.
//!
//! Sealed credentials (DESIGN §7) are `v2:` ‖ nonce (12 bytes) ‖ ciphertext+tag, under a
//! key derived from the master key with HKDF-SHA256 and a label, with the upload they
//! belong to (owner, upload id, provider, bucket, region, endpoint) as associated data:
//! moved to another row, or with the row's target changed, they no longer open.
//! Values from before (`v1`: no prefix, the master key itself, no associated data) are
//! re-sealed at start ([`crate::App::reseal_legacy_credentials`]) and never opened
//! otherwise. The prefix names the format and key version a re-seal (e.g. a master key
//! rotation) moves rows to.
use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Key, Nonce,
};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, given as 64 hex digits or base64")]
    BadMasterKey,
    #[error("sealed data could not be opened (wrong master key, another upload's, or corrupted)")]
    Unseal,
}

/// The prefix of sealed values in the current format and key version.
pub const SEALED_PREFIX: &[u8] = b"v2:";
/// HKDF `info` of the credential-sealing key: one derived key per purpose and version.
const CREDENTIALS_KEY_LABEL: &[u8] = b"partway/credentials/v2";

/// HKDF `info` of the webhook-secret sealing key.
const WEBHOOK_KEY_LABEL: &[u8] = b"partway/webhook-secrets/v2";

/// What a sealed webhook secret is bound to: its endpoint row.
fn webhook_binding(owner_id: uuid::Uuid, webhook_id: uuid::Uuid) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!([
        "partway/webhook/v2",
        owner_id,
        webhook_id
    ]))
    .unwrap_or_default()
}

/// HKDF-SHA256 (RFC 5869) of `ikm` with an empty salt, 32 bytes of output for `info`.
fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> [u8; 32] {
    // Extract: PRK = HMAC(salt = 32 zero bytes, IKM). HMAC takes keys of any length.
    let mut extract = <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("any key length");
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    // Expand, one block: T(1) = HMAC(PRK, info ‖ 0x01).
    let mut expand = <Hmac<Sha256> as Mac>::new_from_slice(&prk).expect("any key length");
    expand.update(info);
    expand.update(&[1u8]);
    expand.finalize().into_bytes().into()
}

/// What sealed credentials are bound to: the upload whose row holds them. Its encoding
/// (a JSON array) is unambiguous, so no two bindings share associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialBinding<'a> {
    pub owner_id: uuid::Uuid,
    pub upload_id: uuid::Uuid,
    pub provider: &'a str,
    pub bucket: &'a str,
    pub region: Option<&'a str>,
    pub endpoint: Option<&'a str>,
}

impl CredentialBinding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!([
            "partway/credentials/v2",
            self.owner_id,
            self.upload_id,
            self.provider,
            self.bucket,
            self.region,
            self.endpoint,
        ]))
        .unwrap_or_default()
    }
}

/// The server master key. `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Accepts 64 hex digits or standard/url-safe base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| CryptoError::BadMasterKey)?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| CryptoError::BadMasterKey)?
        };
        let array: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self(array))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The AES-256-GCM key for credentials, derived from the master key.
    fn credentials_cipher(&self) -> Aes256Gcm {
        let key = hkdf_sha256(&self.0, CREDENTIALS_KEY_LABEL);
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
    }

    /// `v2:` ‖ nonce (12 bytes) ‖ ciphertext+tag, bound to `binding`.
    pub fn seal(&self, plaintext: &[u8], binding: &CredentialBinding<'_>) -> Vec<u8> {
        seal_with(
            &self.credentials_cipher(),
            plaintext,
            &binding.associated_data(),
        )
    }

    /// Opens a current (`v2:`) value sealed for exactly `binding`.
    pub fn open(
        &self,
        sealed: &[u8],
        binding: &CredentialBinding<'_>,
    ) -> Result<Vec<u8>, CryptoError> {
        open_with(
            &self.credentials_cipher(),
            sealed,
            &binding.associated_data(),
        )
    }

    /// The AES-256-GCM key for webhook signing secrets (DESIGN §6), derived apart from
    /// the credentials' key.
    fn webhook_cipher(&self) -> Aes256Gcm {
        let key = hkdf_sha256(&self.0, WEBHOOK_KEY_LABEL);
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key))
    }

    /// A webhook secret, `v2:` ‖ nonce ‖ ciphertext+tag, bound to its endpoint row.
    pub fn seal_webhook_secret(
        &self,
        secret: &[u8],
        owner_id: uuid::Uuid,
        webhook_id: uuid::Uuid,
    ) -> Vec<u8> {
        seal_with(
            &self.webhook_cipher(),
            secret,
            &webhook_binding(owner_id, webhook_id),
        )
    }

    /// Opens a webhook secret sealed for exactly this endpoint row.
    pub fn open_webhook_secret(
        &self,
        sealed: &[u8],
        owner_id: uuid::Uuid,
        webhook_id: uuid::Uuid,
    ) -> Result<Vec<u8>, CryptoError> {
        open_with(
            &self.webhook_cipher(),
            sealed,
            &webhook_binding(owner_id, webhook_id),
        )
    }

    /// Whether `sealed` is in the current format (else a re-seal moves it there).
    pub fn is_current(sealed: &[u8]) -> bool {
        sealed.starts_with(SEALED_PREFIX)
    }

    /// Opens a value sealed before bindings existed (`v1`: nonce ‖ ciphertext+tag under
    /// the master key itself, no associated data). Only the start-up re-seal uses it.
    pub fn open_legacy(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 12 + 16 {
            return Err(CryptoError::Unseal);
        }
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0));
        let (nonce, ciphertext) = sealed.split_at(12);
        cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Unseal)
    }

    /// A `v1` value as versions before issue 11 sealed them (tests of the re-seal).
    #[cfg(any(test, feature = "testing"))]
    pub fn seal_legacy(&self, plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0));
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }
}

/// Prefix of every API key, so leaked keys are recognisable by secret scanners.
pub const API_KEY_PREFIX: &str = "pwk_";

/// A new API key: 256 random bits, base64url.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 (hex) of an API key: keys are high-entropy, so a fast hash is safe and
/// keeps lookups cheap.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The first characters of a key, safe to show in listings.
pub fn api_key_display_prefix(key: &str) -> String {
    key.chars().take(API_KEY_PREFIX.len() + 6).collect()
}

/// `v2:` ‖ a fresh nonce (12 bytes) ‖ ciphertext+tag under `cipher`, bound to `aad`.
fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    // Encryption with a valid key and a 12-byte nonce cannot fail.
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut sealed = SEALED_PREFIX.to_vec();
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Opens what [`seal_with`] sealed under `cipher` for exactly `aad`.
fn open_with(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let body = sealed
        .strip_prefix(SEALED_PREFIX)
        .filter(|b| b.len() >= 12 + 16)
        .ok_or(CryptoError::Unseal)?;
    let (nonce, ciphertext) = body.split_at(12);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Unseal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(upload_id: uuid::Uuid) -> CredentialBinding<'static> {
        CredentialBinding {
            owner_id: uuid::Uuid::nil(),
            upload_id,
            provider: "S3",
            bucket: "theirs",
            region: Some("us-east-1"),
            endpoint: Some("http://127.0.0.1:9000"),
        }
    }

    #[test]
    fn seal_then_open_round_trips_and_tampering_is_detected() {
        let key = MasterKey::generate();
        let id = uuid::Uuid::new_v4();
        let sealed = key.seal(b"secret", &binding(id));
        assert!(sealed.starts_with(b"v2:") && MasterKey::is_current(&sealed));
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(key.open(&sealed, &binding(id)).unwrap(), b"secret");
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(key.open(&tampered, &binding(id)), Err(CryptoError::Unseal));
        assert_eq!(
            MasterKey::generate().open(&sealed, &binding(id)),
            Err(CryptoError::Unseal)
        );
        // Bound to its upload: any other field and it does not open.
        let others = [
            CredentialBinding {
                upload_id: uuid::Uuid::new_v4(),
                ..binding(id)
            },
            CredentialBinding {
                owner_id: uuid::Uuid::new_v4(),
                ..binding(id)
            },
            CredentialBinding {
                provider: "R2",
                ..binding(id)
            },
            CredentialBinding {
                bucket: "mine",
                ..binding(id)
            },
            CredentialBinding {
                region: None,
                ..binding(id)
            },
            CredentialBinding {
                endpoint: Some("http://evil.test"),
                ..binding(id)
            },
        ];
        for other in others {
            assert_eq!(
                key.open(&sealed, &other),
                Err(CryptoError::Unseal),
                "{other:?}"
            );
        }
        // The derived key is not the master key: v1 opening of a v2 body fails.
        assert!(key.open_legacy(&sealed[3..]).is_err());
    }

    #[test]
    fn legacy_values_open_only_as_legacy() {
        let key = MasterKey::generate();
        let legacy = key.seal_legacy(b"secret");
        assert_eq!(key.open_legacy(&legacy).unwrap(), b"secret");
        let id = uuid::Uuid::new_v4();
        assert_eq!(key.open(&legacy, &binding(id)), Err(CryptoError::Unseal));
    }

    #[test]
    fn hkdf_matches_rfc_5869_with_an_empty_salt() {
        // RFC 5869 test case 3 (SHA-256, zero-length salt and info), first 32 bytes.
        let okm = hkdf_sha256(&[0x0b; 22], b"");
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        );
    }

    #[test]
    fn master_key_parses_hex_and_base64_and_rejects_other_lengths() {
        let key = MasterKey::generate();
        let hex_form = key.to_hex();
        assert_eq!(MasterKey::parse(&hex_form).unwrap().0, key.0);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.0);
        assert_eq!(MasterKey::parse(&b64).unwrap().0, key.0);
        assert_eq!(
            MasterKey::parse("abcd").unwrap_err(),
            CryptoError::BadMasterKey
        );
        assert!(!format!("{key:?}").contains(&hex_form));
    }

    #[test]
    fn api_keys_are_unique_and_hash_to_hex_sha256() {
        let a = generate_api_key();
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_ne!(a, generate_api_key());
        assert_eq!(hash_api_key("abc").len(), 64);
        assert!(constant_time_eq(&hash_api_key(&a), &hash_api_key(&a)));
        assert!(!constant_time_eq(&hash_api_key(&a), &hash_api_key("x")));
    }
}
