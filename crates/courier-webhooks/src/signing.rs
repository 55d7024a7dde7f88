//! Webhook signatures, both schemes on every delivery:
//!
//! * seed 002: `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the body>`;
//! * Standard Webhooks: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! Both are keyed with the secret's bytes: the base64 after `whsec_`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of every webhook secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A fresh secret: `whsec_` and 24 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The key a secret signs with.
fn key(secret: &str) -> Vec<u8> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).unwrap_or_else(|_| secret.as_bytes().to_vec())
}

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// seed 002's `X-Webhook-Signature` value: `sha256=<hex>`.
///
/// ```
/// use courier_webhooks::signing::{seed_signature, verify_seed};
/// let sig = seed_signature("whsec_c2VjcmV0", b"{}");
/// assert!(sig.starts_with("sha256="));
/// assert!(verify_seed("whsec_c2VjcmV0", b"{}", &sig));
/// assert!(!verify_seed("whsec_c2VjcmV0", b"{ }", &sig));
/// ```
pub fn seed_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, &[body])))
}

/// The Standard Webhooks `webhook-signature` value: `v1,<base64>`.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let digest = mac(secret, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(digest))
}

/// Checks a seed 002 signature (constant time).
pub fn verify_seed(secret: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_sig) else { return false };
    let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// Checks a Standard Webhooks signature header (any of its space-separated
/// `v1,` signatures may match; constant time).
///
/// ```
/// use courier_webhooks::signing::{standard_signature, verify_standard};
/// let sig = standard_signature("whsec_c2VjcmV0", "msg_1", 1_700_000_000, b"{}");
/// assert!(verify_standard("whsec_c2VjcmV0", "msg_1", 1_700_000_000, b"{}", &sig));
/// assert!(!verify_standard("whsec_c2VjcmV0", "msg_2", 1_700_000_000, b"{}", &sig));
/// ```
pub fn verify_standard(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let ts = timestamp.to_string();
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|b64| {
        let Ok(given) = STANDARD.decode(b64) else { return false };
        let mut mac = HmacSha256::new_from_slice(&key(secret)).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&given).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_and_random() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(SECRET_PREFIX));
        assert_ne!(a, b);
        assert_eq!(key(&a).len(), 24);
    }

    #[test]
    fn standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test vectors.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
