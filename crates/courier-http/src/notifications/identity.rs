//! Who a browser connection is, for its notification stream and its dismissals.
//!
//! In order: an identity the embedding app plugs in ([`NotificationIdentity`],
//! from its own session middleware); else a connection token (`?token=`,
//! `Authorization: Bearer`, or a `courier_token` cookie), required when
//! `notifications.token_secret` is set; else, with no secret configured
//! (zero-config), an anonymous session kept in an HMAC-signed `courier_nid`
//! cookie, whose key every node reads from the store so they all agree.
//! Anonymous sessions can read session-scoped notifications only: user and
//! source scopes need tokens.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use courier_core::{Viewer, check_key};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use serde_json::json;
use sha2::Sha256;

use super::token::{self, TokenError};
use crate::Http;
use crate::error::{ApiError, ApiResult};

/// The anonymous-session cookie.
pub const SESSION_COOKIE: &str = "courier_nid";
/// The connection-token cookie.
pub const TOKEN_COOKIE: &str = "courier_token";
/// Where the anonymous-session key is kept in the store.
const KEY_NAME: &str = "notifications.session_cookie_key";

/// An identity an embedding app supplies from its own request handling (its
/// session middleware, its auth): return the viewer, or `None` to refuse (401).
///
/// ```
/// use actix_web::HttpRequest;
/// use courier_core::Viewer;
/// use courier_http::NotificationIdentity;
///
/// struct FromHeader;
/// impl NotificationIdentity for FromHeader {
///     fn identify(&self, req: &HttpRequest) -> Option<Viewer> {
///         let user = req.headers().get("x-user")?.to_str().ok()?;
///         Some(Viewer { user: Some(user.to_string()), ..Viewer::session(format!("app-{user}")) })
///     }
/// }
/// ```
pub trait NotificationIdentity: Send + Sync + 'static {
    /// Who `req` is, or `None` if it is nobody allowed to read notifications.
    fn identify(&self, req: &HttpRequest) -> Option<Viewer>;
}

/// A shared [`NotificationIdentity`] in the options (compared by identity).
#[derive(Clone)]
pub struct IdentityProvider(pub Arc<dyn NotificationIdentity>);

impl std::fmt::Debug for IdentityProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityProvider(..)")
    }
}

impl PartialEq for IdentityProvider {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Who a connection is, and the cookie to set if an anonymous session was just made.
pub(crate) struct Identified {
    pub viewer: Viewer,
    pub new_cookie: Option<Cookie<'static>>,
}

fn unauthorized(error: &str, detail: serde_json::Value) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, error, detail)
}

/// The token the request presents, if any.
fn presented_token(req: &HttpRequest, query_token: Option<&str>) -> Option<String> {
    if let Some(token) = query_token.filter(|t| !t.is_empty()) {
        return Some(token.to_string());
    }
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some((scheme, token)) = value.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim().to_string());
    }
    req.cookie(TOKEN_COOKIE).map(|c| c.value().to_string())
}

fn mac(key: &[u8], session: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(session.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The cluster's anonymous-session key (made by the first node that needs it).
async fn session_key(http: &Http) -> ApiResult<Vec<u8>> {
    if let Some(key) = http.session_key() {
        return Ok(key);
    }
    let mut candidate = [0u8; 32];
    rand::rng().fill_bytes(&mut candidate);
    let stored = http
        .courier()
        .store()
        .cluster_value(KEY_NAME, &hex::encode(candidate))
        .await?;
    let key = hex::decode(stored).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the anonymous session key in the store is unreadable",
            json!(e.to_string()),
        )
    })?;
    http.remember_session_key(key.clone());
    Ok(key)
}

/// The session an anonymous-session cookie names, if its signature holds.
fn session_of(cookie: &str, key: &[u8]) -> Option<String> {
    let (session, signature) = cookie.rsplit_once('.')?;
    let expected = mac(key, session);
    // Constant time: the signature must not be guessable byte by byte.
    let same = expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (same && check_key("session", session).is_ok()).then(|| session.to_string())
}

/// Who the request is. `mint_anonymous`: make an anonymous session if it has
/// none (the stream does; a dismissal without one is refused).
pub(crate) async fn identify(
    http: &Http,
    req: &HttpRequest,
    query_token: Option<&str>,
    mint_anonymous: bool,
) -> ApiResult<Identified> {
    let options = &http.options().notifications;
    if let Some(provider) = &options.identity {
        return match provider.0.identify(req) {
            Some(viewer) => Ok(Identified {
                viewer,
                new_cookie: None,
            }),
            None => Err(unauthorized("not signed in", json!(null))),
        };
    }
    let token = presented_token(req, query_token);
    match (&options.token_secret, token) {
        (Some(secret), Some(token)) => match token::verify(secret, &token) {
            Ok(claims) => Ok(Identified {
                viewer: claims.viewer(),
                new_cookie: None,
            }),
            Err(e @ TokenError::Expired) => Err(unauthorized("the connection token has expired", json!(e.to_string()))),
            Err(e) => Err(unauthorized("invalid connection token", json!(e.to_string()))),
        },
        (Some(_), None) => Err(unauthorized(
            "missing connection token",
            json!("pass it as ?token=, Authorization: Bearer, or the courier_token cookie"),
        )),
        (None, Some(_)) => Err(unauthorized(
            "connection tokens are not enabled on this server",
            json!("set notifications.token_secret (COURIER_NOTIFICATIONS_TOKEN_SECRET)"),
        )),
        (None, None) => {
            let key = session_key(http).await?;
            if let Some(session) = req.cookie(SESSION_COOKIE).and_then(|c| session_of(c.value(), &key)) {
                return Ok(Identified {
                    viewer: Viewer::session(session),
                    new_cookie: None,
                });
            }
            if !mint_anonymous {
                return Err(unauthorized("no notification session", json!("open the stream first")));
            }
            let session = uuid::Uuid::new_v4().simple().to_string();
            let cookie = Cookie::build(SESSION_COOKIE, format!("{session}.{}", mac(&key, &session)))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .max_age(actix_web::cookie::time::Duration::days(365))
                .finish();
            Ok(Identified {
                viewer: Viewer::session(session),
                new_cookie: Some(cookie),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_cookie_holds_only_with_its_key() {
        let key = b"0123456789abcdef0123456789abcdef";
        let cookie = format!("s1.{}", mac(key, "s1"));
        assert_eq!(session_of(&cookie, key), Some("s1".into()));
        assert_eq!(session_of(&cookie, b"another key entirely............"), None);
        assert_eq!(session_of("s2.00", key), None);
        assert_eq!(session_of("no-signature", key), None);
        let forged = format!("s2.{}", mac(key, "s1"));
        assert_eq!(session_of(&forged, key), None);
    }
}
