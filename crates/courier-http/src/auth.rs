//! Bearer tokens and their scopes: who may call `/v1` (when `api.tokens` is set)
//! and `/metrics` (when `metrics.require_token` is set too).
//!
//! A token comes in `Authorization: Bearer <token>` (the scheme in any case), or,
//! on the two routes whose browser clients cannot set headers (`EventSource` on
//! `/v1/events/stream`, a WebSocket on `/v1/ws`), in `?access_token=`: a token
//! in a URL ends up in histories and proxies, so nowhere else. A 401 says
//! `WWW-Authenticate: Bearer`.
//!
//! Each token grants [`Scope`]s and each operation of the route table
//! (`routes.rs`) requires one. The token is checked once for the whole `/v1`
//! scope (so an unknown path under it wants a token too), which leaves what it
//! grants in the request; each resource then checks the scope its method needs
//! and answers 403 without it. Without any token configured, everything is
//! granted: `courier serve` refuses to run that way on a non-loopback address
//! unless told to (`api.allow_unauthenticated`).

use std::rc::Rc;
use std::str::FromStr;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Http;
use crate::error::{ApiError, ErrorBody};

/// What a token may do. `admin` may do everything; each other scope one kind of
/// work (see the README's authentication section for the operations of each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every operation, including webhook management, dead-letter replay and
    /// discard, cleanup, notification subscriptions and connection tokens.
    Admin,
    /// An external worker's: claim, then heartbeat, checkpoint, progress,
    /// complete and fail the tasks it holds.
    Worker,
    /// Every `GET` under `/v1` (the event streams included), and `/metrics`.
    Read,
    /// Starting and steering work: create executions, signal and cancel them,
    /// send notifications (`POST /v1/notifications`) and messages (`POST /v1/notify`).
    Dispatch,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Worker, Scope::Read, Scope::Dispatch];

    /// Its name in configuration and in answers.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Worker => "worker",
            Scope::Read => "read",
            Scope::Dispatch => "dispatch",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a token's configuration was refused. It never carries the token itself:
/// the message may reach a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A scope name that is not one of [`Scope::ALL`].
    #[error("unknown scope {scope:?} (the scopes are admin, worker, read, dispatch)")]
    UnknownScope {
        /// The name given.
        scope: String,
    },
    /// A token listed with no scope at all would grant nothing.
    #[error("a token with no scopes grants nothing (give it at least one of admin, worker, read, dispatch)")]
    NoScopes,
}

impl FromStr for Scope {
    type Err = TokenError;

    fn from_str(name: &str) -> Result<Scope, TokenError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| TokenError::UnknownScope {
                scope: name.trim().to_string(),
            })
    }
}

/// An API token and the scopes it grants. Its `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    token: String,
    scopes: Vec<Scope>,
}

impl ApiToken {
    /// A token that may do everything (what a plain `api.tokens` entry means).
    pub fn admin(token: impl Into<String>) -> ApiToken {
        ApiToken {
            token: token.into(),
            scopes: vec![Scope::Admin],
        }
    }

    /// A token granting `scopes` (at least one).
    pub fn new(token: impl Into<String>, scopes: impl IntoIterator<Item = Scope>) -> Result<ApiToken, TokenError> {
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(TokenError::NoScopes);
        }
        Ok(ApiToken {
            token: token.into(),
            scopes,
        })
    }

    /// Reads the short form of the environment and of plain list entries:
    /// `token` (admin) or `token:scope+scope` (e.g. `k3y:worker+read`). A token
    /// that itself contains `:` must be written in the table form instead.
    pub fn parse(entry: &str) -> Result<ApiToken, TokenError> {
        match entry.rsplit_once(':') {
            None => Ok(ApiToken::admin(entry.trim())),
            Some((token, scopes)) => {
                let scopes = scopes
                    .split('+')
                    .filter(|s| !s.trim().is_empty())
                    .map(Scope::from_str)
                    .collect::<Result<Vec<_>, _>>()?;
                ApiToken::new(token.trim(), scopes)
            }
        }
    }

    /// The scopes it grants, sorted.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Whether it grants `scope` (an admin token grants every scope).
    pub fn grants(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }

    /// Whether the token is empty, which never matches anything.
    pub fn is_empty(&self) -> bool {
        self.token.is_empty()
    }
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl From<&str> for ApiToken {
    fn from(token: &str) -> ApiToken {
        ApiToken::admin(token)
    }
}

impl From<String> for ApiToken {
    fn from(token: String) -> ApiToken {
        ApiToken::admin(token)
    }
}

/// What the request's token grants, left in its extensions by [`require_token`].
#[derive(Clone, Debug)]
struct Granted(Vec<Scope>);

impl Granted {
    fn allows(&self, scope: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&scope)
    }
}

/// Constant-time comparison that leaks neither the bytes nor the length: both
/// sides are hashed first, so every comparison is of 32 bytes, and the digests
/// are compared with `subtle`, whose comparison the optimiser cannot turn into
/// an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.as_slice().ct_eq(b.as_slice()).into()
}

fn presented(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        return value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_string());
    }
    if !takes_query_token(req.path()) {
        return None;
    }
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("access_token").cloned())
}

/// Whether `path` accepts the token as `?access_token=`.
pub(crate) fn takes_query_token(path: &str) -> bool {
    matches!(path, "/v1/events/stream" | "/v1/ws")
}

/// What the request's token grants, or why it is refused (answered by [`unauthorized`]).
fn authenticate(req: &ServiceRequest) -> Result<Granted, ErrorBody> {
    let http = req.app_data::<web::Data<Http>>();
    let tokens = http.map(|http| http.options().tokens.as_slice()).unwrap_or_default();
    if tokens.is_empty() {
        return Ok(Granted(vec![Scope::Admin]));
    }
    let refusal = match presented(req) {
        // An empty token never matches, even if one was configured by mistake.
        Some(token) if !token.is_empty() => {
            let found = tokens
                .iter()
                .find(|t| !t.is_empty() && same(t.token.as_bytes(), token.as_bytes()));
            if let Some(found) = found {
                return Ok(Granted(found.scopes.clone()));
            }
            ErrorBody {
                error: "invalid token".into(),
                detail: json!(null),
            }
        }
        Some(_) => ErrorBody {
            error: "invalid token".into(),
            detail: json!(null),
        },
        None => ErrorBody {
            error: "missing bearer token".into(),
            detail: json!("send Authorization: Bearer <token>"),
        },
    };
    Err(refusal)
}

/// The 401 answer, naming the scheme.
fn unauthorized(refusal: ErrorBody) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"))
        .json(refusal)
}

/// Refuses requests without a configured token (401) when tokens are configured,
/// and leaves what the token grants for [`require_scope`].
pub(crate) async fn require_token<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match authenticate(&req) {
        Ok(granted) => {
            req.extensions_mut().insert(granted);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => Ok(req.into_response(unauthorized(refusal)).map_into_right_body()),
    }
}

/// Refuses a request whose token lacks the scope its method needs on this
/// resource (`required`, from the route table) with 403.
///
/// Under `/v1`, [`require_token`] has already authenticated the request. Outside
/// it the one scoped route is `/metrics`, which asks for a token only when
/// `metrics.require_token` is set.
pub(crate) async fn require_scope<B: MessageBody + 'static>(
    required: Rc<[(Method, Scope)]>,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(scope) = required
        .iter()
        .find(|(method, _)| method == req.method())
        .map(|(_, scope)| *scope)
    else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let granted = req.extensions().get::<Granted>().cloned();
    let granted = match granted {
        Some(granted) => granted,
        None => {
            let wanted = req
                .app_data::<web::Data<Http>>()
                .is_some_and(|http| http.options().metrics_require_token);
            if !wanted {
                return Ok(next.call(req).await?.map_into_left_body());
            }
            match authenticate(&req) {
                Ok(granted) => granted,
                Err(refusal) => return Ok(req.into_response(unauthorized(refusal)).map_into_right_body()),
            }
        }
    };
    if granted.allows(scope) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let refusal = ApiError::new(
        actix_web::http::StatusCode::FORBIDDEN,
        "forbidden",
        json!(format!("this token lacks the {scope} scope")),
    );
    Ok(req.into_response(refusal.error_response()).map_into_right_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_form_names_a_token_and_its_scopes() {
        let plain = ApiToken::parse("abc").unwrap();
        assert_eq!(plain.scopes(), [Scope::Admin]);
        let scoped = ApiToken::parse("k3y:worker+read").unwrap();
        assert_eq!(scoped.scopes(), [Scope::Worker, Scope::Read]);
        assert!(scoped.grants(Scope::Read) && !scoped.grants(Scope::Dispatch));
        assert!(plain.grants(Scope::Dispatch), "admin grants every scope");
        assert_eq!(scoped, ApiToken::new("k3y", [Scope::Read, Scope::Worker]).unwrap());
        assert_eq!(
            ApiToken::parse("k3y:root"),
            Err(TokenError::UnknownScope { scope: "root".into() })
        );
        assert_eq!(ApiToken::parse("k3y:"), Err(TokenError::NoScopes));
        assert!(!format!("{scoped:?}").contains("k3y"), "Debug hides the token");
    }

    #[test]
    fn tokens_match_only_whole_and_exact() {
        assert!(same(b"s3cret-token", b"s3cret-token"));
        for other in [
            &b"s3cret-toke"[..],
            b"s3cret-token2",
            b"S3cret-token",
            b"",
            b"s3cret-token\0",
        ] {
            assert!(!same(b"s3cret-token", other), "{:?}", String::from_utf8_lossy(other));
        }
    }
}
