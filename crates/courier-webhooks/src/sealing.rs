//! Webhook signing secrets at rest: sealed under `webhooks.secret_key`, so that
//! a copy of the database alone (a dump, a backup, a read replica) does not
//! give anyone what it takes to forge deliveries.
//!
//! A secret is sealed with XChaCha20-Poly1305, a fresh random 24-byte nonce
//! each time, and the webhook's id as associated data: a sealed value copied
//! to another webhook's row does not open there. The store keeps the result as
//! opaque text:
//!
//! ```text
//! sealed:v1:<key id>:<base64 of nonce || ciphertext and tag>
//! ```
//!
//! The key id is the first 4 bytes (8 hex digits) of a SHA-256 of the key, so
//! the node picks the key a value was sealed under among `webhooks.secret_key`
//! and `webhooks.retired_secret_keys` without trying each, and so an operator
//! can tell from a row which key it needs, without the id saying anything
//! useful about the key. New values are sealed under `secret_key` only;
//! retired keys only open. A stored value that does not start with `sealed:`
//! is a secret written in the open by a version before sealing (`whsec_...`):
//! it is used as it is, and sealed when a node with a key starts.
//!
//! ```
//! use courier_webhooks::sealing::{SecretKey, SecretKeys, SealError};
//! let key = SecretKey::parse("webhooks.secret_key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
//! let keys = SecretKeys::new(Some(key), Vec::new());
//! let hook = uuid::Uuid::new_v4();
//! let sealed = keys.seal(hook, "whsec_c2VjcmV0").unwrap();
//! assert!(sealed.starts_with("sealed:v1:"));
//! assert!(!sealed.contains("c2VjcmV0"));
//! assert_eq!(keys.open(hook, &sealed).unwrap(), "whsec_c2VjcmV0");
//! // Another webhook's row: refused.
//! let other = uuid::Uuid::new_v4();
//! assert!(matches!(keys.open(other, &sealed), Err(SealError::DoesNotOpen { .. })));
//! ```

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;
use uuid::Uuid;

/// What every sealed value starts with.
pub const SEALED_PREFIX: &str = "sealed:";
/// The format written (and the only one read) by this version.
const VERSION: &str = "v1";
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;
/// How to make a key, for the texts that ask for one.
const HOW_TO_MAKE_ONE: &str =
    "expected 32 random bytes in standard base64, e.g. the output of `openssl rand -base64 32`";

/// A configured key is not 32 bytes of standard base64. Names the setting,
/// never the value.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not standard base64 at all.
    #[error("{setting} is not standard base64: {HOW_TO_MAKE_ONE}")]
    NotBase64 {
        /// The setting, e.g. `webhooks.secret_key`.
        setting: String,
    },
    /// Base64 of the wrong number of bytes.
    #[error("{setting} is {len} bytes long: {HOW_TO_MAKE_ONE}")]
    WrongLength {
        /// The setting, e.g. `webhooks.retired_secret_keys[0]`.
        setting: String,
        /// How many bytes it decodes to.
        len: usize,
    },
}

/// A secret could not be sealed or opened. Names the webhook and, where one
/// is involved, the key's id; never the secret or the key.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SealError {
    /// No `webhooks.secret_key` is configured, so nothing can be sealed.
    #[error("webhook {webhook}'s secret can't be sealed: webhooks.secret_key (COURIER_WEBHOOKS_SECRET_KEY) is not set")]
    NoKey {
        /// The webhook.
        webhook: Uuid,
    },
    /// Sealed under a key that is neither the current nor a retired one.
    #[error(
        "webhook {webhook}'s secret is sealed under key {key_id}, which is neither webhooks.secret_key nor one of \
         webhooks.retired_secret_keys"
    )]
    UnknownKey {
        /// The webhook.
        webhook: Uuid,
        /// The id of the key it needs.
        key_id: String,
    },
    /// The key is right by its id but the value does not open: it was
    /// altered, or it was sealed for another webhook.
    #[error(
        "webhook {webhook}'s sealed secret does not open under key {key_id}: altered, or sealed for another webhook"
    )]
    DoesNotOpen {
        /// The webhook.
        webhook: Uuid,
        /// The id of the key tried.
        key_id: String,
    },
    /// Starts with `sealed:` but is not a value this version reads.
    #[error("webhook {webhook}'s stored secret is not a sealed value this version reads: {reason}")]
    Malformed {
        /// The webhook.
        webhook: Uuid,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One key and its id.
///
/// ```
/// use courier_webhooks::sealing::SecretKey;
/// let key = SecretKey::parse("webhooks.secret_key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
/// assert_eq!(key.id().len(), 8);
/// // Its Debug form shows the id only.
/// assert_eq!(format!("{key:?}"), format!("SecretKey({})", key.id()));
/// assert!(SecretKey::parse("webhooks.secret_key", "c2hvcnQ=").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
    id: String,
}

impl SecretKey {
    /// The key `text` (32 bytes in standard base64) given as `setting`.
    pub fn parse(setting: &str, text: &str) -> Result<SecretKey, KeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError::NotBase64 {
            setting: setting.to_string(),
        })?;
        let bytes: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| KeyError::WrongLength {
            setting: setting.to_string(),
            len: bytes.len(),
        })?;
        Ok(SecretKey::from_bytes(bytes))
    }

    /// The key of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        // Domain-separated, so the id is not a hash anything else computes of the key.
        let digest = Sha256::new()
            .chain_update(b"courier webhook secret key id\0")
            .chain_update(bytes)
            .finalize();
        SecretKey {
            bytes,
            id: hex::encode(&digest[..4]),
        }
    }

    /// Its id: 8 hex digits, written into every value it seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// The keys a node seals and opens secrets with: `webhooks.secret_key` (seals
/// and opens) and `webhooks.retired_secret_keys` (open only). Empty by default:
/// then nothing can be sealed, and only secrets stored in the open are read.
///
/// ```
/// use courier_webhooks::sealing::SecretKeys;
/// let old = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// let new = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
/// let hook = uuid::Uuid::new_v4();
/// let before = SecretKeys::parse(old, &[] as &[&str]).unwrap();
/// let sealed = before.seal(hook, "whsec_c2VjcmV0").unwrap();
/// // The operator moves to a new key and keeps the old one as retired.
/// let after = SecretKeys::parse(new, &[old.to_string()]).unwrap();
/// assert_eq!(after.open(hook, &sealed).unwrap(), "whsec_c2VjcmV0");
/// assert!(after.needs_sealing(&sealed), "re-sealed under the new key at start");
/// assert!(SecretKeys::parse("", &[] as &[&str]).unwrap().seal(hook, "whsec_x").is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretKeys {
    current: Option<SecretKey>,
    retired: Vec<SecretKey>,
}

impl SecretKeys {
    /// Seals under `current` (if any); opens under it and `retired`.
    pub fn new(current: Option<SecretKey>, retired: Vec<SecretKey>) -> SecretKeys {
        SecretKeys { current, retired }
    }

    /// The settings `webhooks.secret_key` (empty: none) and
    /// `webhooks.retired_secret_keys`, each 32 bytes in standard base64.
    pub fn parse<S: AsRef<str>>(current: &str, retired: &[S]) -> Result<SecretKeys, KeyError> {
        let current = match current.trim() {
            "" => None,
            text => Some(SecretKey::parse("webhooks.secret_key", text)?),
        };
        let retired = retired
            .iter()
            .map(|k| k.as_ref().trim())
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, text)| SecretKey::parse(&format!("webhooks.retired_secret_keys[{i}]"), text))
            .collect::<Result<_, _>>()?;
        Ok(SecretKeys { current, retired })
    }

    /// The key new secrets are sealed under, if one is configured.
    pub fn current(&self) -> Option<&SecretKey> {
        self.current.as_ref()
    }

    /// Seals `secret` for webhook `id`: the text to store.
    pub fn seal(&self, webhook: Uuid, secret: &str) -> Result<String, SealError> {
        let key = self.current.as_ref().ok_or(SealError::NoKey { webhook })?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = key
            .cipher()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: secret.as_bytes(),
                    aad: webhook.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message shorter than 256 GiB");
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{VERSION}:{}:{}",
            key.id,
            STANDARD.encode(payload)
        ))
    }

    /// The secret stored as `stored` for webhook `id`: opened if sealed, as it
    /// is if it was stored in the open by an earlier version.
    pub fn open(&self, webhook: Uuid, stored: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let malformed = |reason| SealError::Malformed { webhook, reason };
        let mut parts = rest.splitn(3, ':');
        let (Some(version), Some(key_id), Some(payload)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected sealed:v1:<key id>:<base64>"));
        };
        if version != VERSION {
            return Err(malformed("an unknown version"));
        }
        let payload = STANDARD.decode(payload).map_err(|_| malformed("not base64"))?;
        if payload.len() < NONCE_LEN {
            return Err(malformed("too short"));
        }
        let (nonce, sealed) = payload.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let mut candidates = self.keys().filter(|k| k.id == key_id).peekable();
        if candidates.peek().is_none() {
            return Err(SealError::UnknownKey {
                webhook,
                key_id: key_id.to_string(),
            });
        }
        // Two configured keys could share an id (4 bytes of hash): try each.
        candidates
            .find_map(|key| {
                key.cipher()
                    .decrypt(
                        &nonce.into(),
                        Payload {
                            msg: sealed,
                            aad: webhook.as_bytes(),
                        },
                    )
                    .ok()
            })
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or_else(|| SealError::DoesNotOpen {
                webhook,
                key_id: key_id.to_string(),
            })
    }

    /// Whether a stored value should be (re-)sealed under the current key:
    /// it is in the open, or sealed under another key. False without a key.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        match (&self.current, sealed_under(stored)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(current), Some(id)) => id != current.id,
        }
    }

    fn keys(&self) -> impl Iterator<Item = &SecretKey> {
        self.current.iter().chain(&self.retired)
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current)
            .field("retired", &self.retired)
            .finish()
    }
}

/// Whether a stored value is sealed (rather than a secret stored in the open).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The id of the key a stored value is sealed under; `None` if it is in the open.
pub fn sealed_under(stored: &str) -> Option<&str> {
    stored.strip_prefix(SEALED_PREFIX)?.split(':').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    const OTHER: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
    const SECRET: &str = "whsec_dGhpcyBpcyB0aGUgc2VjcmV0";

    fn keys(current: &str, retired: &[&str]) -> SecretKeys {
        SecretKeys::parse(current, retired).unwrap()
    }

    #[test]
    fn a_sealed_secret_round_trips_and_shows_nothing_of_itself() {
        let keys = keys(KEY, &[]);
        let hook = Uuid::new_v4();
        let sealed = keys.seal(hook, SECRET).unwrap();
        let key_id = keys.current().unwrap().id();
        assert!(sealed.starts_with(&format!("sealed:v1:{key_id}:")), "{sealed}");
        assert!(!sealed.contains("dGhpcyBpcyB0aGUgc2VjcmV0") && !sealed.contains("whsec_"));
        assert_eq!(keys.open(hook, &sealed).unwrap(), SECRET);
        assert_ne!(keys.seal(hook, SECRET).unwrap(), sealed, "a fresh nonce each time");
        assert_eq!(sealed_under(&sealed), Some(key_id));
        assert!(is_sealed(&sealed) && !is_sealed(SECRET));
    }

    #[test]
    fn the_wrong_key_does_not_open() {
        let hook = Uuid::new_v4();
        let sealed = keys(KEY, &[]).seal(hook, SECRET).unwrap();
        let err = keys(OTHER, &[]).open(hook, &sealed).unwrap_err();
        assert!(
            matches!(&err, SealError::UnknownKey { webhook, .. } if *webhook == hook),
            "{err}"
        );
        assert!(err.to_string().contains(&hook.to_string()), "{err}");
        assert!(!err.to_string().contains(KEY) && !err.to_string().contains(SECRET));
        // Same id, other bytes (a key id collision): refused, not mis-opened.
        let mut impostor = SecretKey::parse("k", OTHER).unwrap();
        impostor.id = SecretKey::parse("k", KEY).unwrap().id;
        let impostors = SecretKeys::new(Some(impostor), Vec::new());
        assert!(matches!(
            impostors.open(hook, &sealed),
            Err(SealError::DoesNotOpen { .. })
        ));
        assert!(matches!(
            SecretKeys::default().open(hook, &sealed),
            Err(SealError::UnknownKey { .. })
        ));
    }

    #[test]
    fn a_value_moved_to_another_webhook_does_not_open() {
        let keys = keys(KEY, &[]);
        let (hook, other) = (Uuid::new_v4(), Uuid::new_v4());
        let sealed = keys.seal(hook, SECRET).unwrap();
        let err = keys.open(other, &sealed).unwrap_err();
        assert!(
            matches!(&err, SealError::DoesNotOpen { webhook, .. } if *webhook == other),
            "{err}"
        );
    }

    #[test]
    fn a_retired_key_opens_but_does_not_seal() {
        let hook = Uuid::new_v4();
        let old = keys(KEY, &[]).seal(hook, SECRET).unwrap();
        let rotated = keys(OTHER, &[KEY]);
        assert_eq!(rotated.open(hook, &old).unwrap(), SECRET);
        let new = rotated.seal(hook, SECRET).unwrap();
        assert_eq!(sealed_under(&new), Some(rotated.current().unwrap().id()));
        assert!(rotated.needs_sealing(&old));
        assert!(!rotated.needs_sealing(&new));
        assert!(rotated.needs_sealing(SECRET), "a secret in the open");
        assert!(!SecretKeys::default().needs_sealing(SECRET), "nothing to seal with");
        // Retired keys alone open, and seal nothing.
        let retired_only = keys("", &[KEY]);
        assert_eq!(retired_only.open(hook, &old).unwrap(), SECRET);
        assert_eq!(retired_only.seal(hook, SECRET), Err(SealError::NoKey { webhook: hook }));
    }

    #[test]
    fn a_tampered_value_is_refused() {
        let keys = keys(KEY, &[]);
        let hook = Uuid::new_v4();
        let sealed = keys.seal(hook, SECRET).unwrap();
        let (head, payload) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD.decode(payload).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[i] ^= 1;
            let tampered = format!("{head}:{}", STANDARD.encode(&flipped));
            assert!(
                matches!(keys.open(hook, &tampered), Err(SealError::DoesNotOpen { .. })),
                "byte {i} flipped"
            );
        }
        bytes.truncate(NONCE_LEN + 3);
        let cut = format!("{head}:{}", STANDARD.encode(&bytes));
        assert!(matches!(keys.open(hook, &cut), Err(SealError::DoesNotOpen { .. })));
        for malformed in [
            "sealed:",
            "sealed:v1:abc",
            "sealed:v2:abc:AAAA",
            "sealed:v1:abc:not base64!",
            "sealed:v1:abc:AAAA",
        ] {
            assert!(
                matches!(keys.open(hook, malformed), Err(SealError::Malformed { .. })),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_secret_stored_in_the_open_is_read_as_it_is() {
        assert_eq!(SecretKeys::default().open(Uuid::new_v4(), SECRET).unwrap(), SECRET);
        assert_eq!(keys(KEY, &[]).open(Uuid::new_v4(), SECRET).unwrap(), SECRET);
    }

    #[test]
    fn keys_must_be_32_bytes_of_standard_base64() {
        let err = SecretKeys::parse("not base64!", &[] as &[&str]).unwrap_err();
        assert_eq!(
            err,
            KeyError::NotBase64 {
                setting: "webhooks.secret_key".into()
            }
        );
        assert!(err.to_string().contains("openssl rand -base64 32"), "{err}");
        let err = SecretKeys::parse(KEY, &["c2hvcnQ="]).unwrap_err();
        assert_eq!(
            err,
            KeyError::WrongLength {
                setting: "webhooks.retired_secret_keys[0]".into(),
                len: 5
            }
        );
        // URL-safe base64 is another alphabet: refused rather than misread.
        assert!(SecretKeys::parse("_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_=", &[] as &[&str]).is_err());
        assert_eq!(SecretKeys::parse("", &[""]).unwrap(), SecretKeys::default());
        let debug = format!("{:?}", keys(KEY, &[OTHER]));
        assert!(!debug.contains(KEY) && !debug.contains(OTHER), "{debug}");
    }
}
