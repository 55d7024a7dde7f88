//! Connection tokens: who a browser's notification stream is for.
//!
//! An HS256 JWT signed with `notifications.token_secret`, claims `sid` (the
//! browser session, required), `sub` (the user, optional), `exp` (required, Unix
//! seconds) and `sources` (sources the connection may read beyond the user's
//! persistent subscriptions). An app's backend mints it (any JWT library, or
//! `POST /v1/notifications/tokens`); the browser presents it as `?token=`,
//! `Authorization: Bearer` or a `courier_token` cookie.

use std::sync::Once;
use std::time::Duration;

use courier_core::{Viewer, check_key};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest lifetime a minted token may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The claims of a connection token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The browser session.
    pub sid: String,
    /// The signed-in user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When it stops being valid (Unix seconds).
    pub exp: u64,
    /// Sources the connection may read besides the user's subscriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

impl Claims {
    /// Who the connection is.
    pub fn viewer(&self) -> Viewer {
        Viewer {
            session: self.sid.clone(),
            user: self.sub.clone(),
            sources: self.sources.clone(),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    /// It is not a JWT, or not HS256, or its signature does not match the secret.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Its `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// A claim is missing or not acceptable.
    #[error("invalid token claims: {0}")]
    Claims(String),
}

/// The JWT library's cryptography, chosen once per process: it refuses to guess
/// when its build could use more than one backend, so it is told.
fn crypto() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err only if another part of the process installed one first: fine.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

fn check_claims(claims: &Claims) -> Result<(), TokenError> {
    check_key("sid", &claims.sid).map_err(|e| TokenError::Claims(e.0))?;
    if let Some(sub) = &claims.sub {
        check_key("sub", sub).map_err(|e| TokenError::Claims(e.0))?;
    }
    if claims.sources.len() > 100 {
        return Err(TokenError::Claims("at most 100 sources".into()));
    }
    for source in &claims.sources {
        check_key("sources", source).map_err(|e| TokenError::Claims(e.0))?;
    }
    Ok(())
}

/// Signs `claims` with `secret`.
pub fn mint(secret: &str, claims: &Claims) -> Result<String, TokenError> {
    crypto();
    check_claims(claims)?;
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?,
    )
    .map_err(|e| TokenError::Invalid(e.to_string()))
}

/// Checks a token's signature, algorithm, expiry and claims.
pub fn verify(secret: &str, token: &str) -> Result<Claims, TokenError> {
    crypto();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp"]);
    validation.leeway = 0;
    let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let decoded = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(claim) => TokenError::Claims(format!("missing {claim}")),
        jsonwebtoken::errors::ErrorKind::Json(e) => TokenError::Claims(e.to_string()),
        _ => TokenError::Invalid(e.to_string()),
    })?;
    check_claims(&decoded.claims)?;
    Ok(decoded.claims)
}

/// Unix seconds `ttl` from now.
pub fn expiry_in(ttl: Duration) -> u64 {
    (chrono::Utc::now() + chrono::Duration::from_std(ttl.min(MAX_TTL)).unwrap_or_default()).timestamp() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sid: "s1".into(),
            sub: Some("u1".into()),
            exp,
            sources: vec!["blog:tech".into()],
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_secret_only() {
        // The first use of the JWT library in a process: it must not panic.
        let token = mint("secret", &claims(expiry_in(Duration::from_secs(60)))).unwrap();
        let back = verify("secret", &token).unwrap();
        assert_eq!(back.viewer().user.as_deref(), Some("u1"));
        assert!(matches!(verify("other secret", &token), Err(TokenError::Invalid(_))));
        assert!(matches!(verify("secret", "not.a.jwt"), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let past = (chrono::Utc::now().timestamp() - 10) as u64;
        let token = mint("secret", &claims(past)).unwrap();
        assert_eq!(verify("secret", &token), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_without_exp_or_sid_is_refused() {
        crypto();
        let key = EncodingKey::from_secret(b"secret").unwrap();
        let no_exp =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &serde_json::json!({"sid": "s"}), &key).unwrap();
        assert!(matches!(verify("secret", &no_exp), Err(TokenError::Claims(_))));
        let no_sid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"exp": expiry_in(Duration::from_secs(60))}),
            &key,
        )
        .unwrap();
        assert!(matches!(verify("secret", &no_sid), Err(TokenError::Claims(_))));
    }

    #[test]
    fn another_algorithm_is_refused() {
        crypto();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(expiry_in(Duration::from_secs(60))),
            &EncodingKey::from_secret(b"secret").unwrap(),
        )
        .unwrap();
        assert!(matches!(verify("secret", &token), Err(TokenError::Invalid(_))));
    }
}
