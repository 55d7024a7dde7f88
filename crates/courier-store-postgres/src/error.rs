//! The crate's internal error, and how database errors become [`StoreError`]s.
//!
//! Inside a transaction an operation can fail two ways: the database reports an
//! error (some worth retrying: serialization failures and deadlocks), or the
//! operation itself decides to refuse (an execution in the wrong state) and the
//! transaction must roll back. [`Error`] carries either until the edge of the
//! crate, where it becomes a [`StoreError`].

use std::fmt::Display;

use courier_core::StoreError;
use tokio_postgres::error::SqlState;

/// An error inside the crate.
#[derive(Debug)]
pub(crate) enum Error {
    /// The database or the driver failed.
    Db(tokio_postgres::Error),
    /// The operation refused, or failed in a way already phrased for callers.
    Store(StoreError),
}

/// Shorthand for results inside the crate.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Db(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl Error {
    /// Whether running the whole transaction again may succeed: the database chose
    /// it as a deadlock victim or could not serialize it.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Error::Db(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            Error::Store(_) => false,
        }
    }

    /// Turns a unique violation into a [`StoreError::Conflict`] on `id` (raw
    /// inserts, whose callers want to know which record collided).
    pub(crate) fn conflict_on(self, id: impl Display) -> Error {
        match &self {
            Error::Db(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let detail = match e.as_db_error().and_then(|db| db.constraint()) {
                    Some(constraint) => format!("already exists ({constraint})"),
                    None => "already exists".to_string(),
                };
                Error::Store(StoreError::Conflict {
                    id: id.to_string(),
                    detail,
                })
            }
            _ => self,
        }
    }
}

/// A value read back from the database that does not decode.
pub(crate) fn corrupt(what: impl Display) -> Error {
    Error::Store(StoreError::Backend(format!("unreadable stored value: {what}")))
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Db(e) => from_db(&e),
        }
    }
}

/// The error and its causes: the driver's own text for a failed TLS handshake is
/// only "error performing TLS handshake", the reason (an untrusted certificate, a
/// name mismatch) is in its source.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Connection trouble and resource exhaustion may pass; everything else is a
/// definite answer.
pub(crate) fn from_db(e: &tokio_postgres::Error) -> StoreError {
    let Some(db) = e.as_db_error() else {
        // No server error: the connection broke, or a value failed to convert.
        let e_text = with_causes(e);
        if e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
            return StoreError::Unavailable(format!("lost the Postgres connection: {e_text}"));
        }
        return StoreError::Backend(format!("Postgres client error: {e_text}"));
    };
    let code = db.code();
    let class = &code.code()[..2];
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return StoreError::Unavailable(format!("Postgres kept aborting the transaction: {}", db.message()));
    }
    // 57014: cancelled, in practice by `statement_timeout`; the database was slow,
    // not the request wrong, so callers may try again.
    if *code == SqlState::QUERY_CANCELED {
        return StoreError::Unavailable(format!(
            "a Postgres statement was cancelled (store.statement_timeout): {}",
            db.message()
        ));
    }
    // A NUL in text (22021) or a `\u0000` in jsonb (22P05): refused like SQLite
    // refuses it (see `courier_core::HoldsNul`), without the server's wording.
    if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *code == SqlState::UNTRANSLATABLE_CHARACTER {
        return StoreError::Invalid(
            "a text or JSON value holds a NUL character (\\u0000), which no Courier store keeps".into(),
        );
    }
    if *code == SqlState::UNIQUE_VIOLATION {
        // The constraint names what collided; the server's sentence (which quotes
        // the key's value) is not for API answers.
        return StoreError::Conflict {
            id: db.constraint().unwrap_or("unknown").to_string(),
            detail: "a record with this identity already exists".into(),
        };
    }
    // 08: connection exception; 53: insufficient resources; 57P0x: shutdown, crash
    // recovery, "cannot connect now".
    if class == "08" || class == "53" || code.code().starts_with("57P0") {
        return StoreError::Unavailable(format!("Postgres unavailable: {}", db.message()));
    }
    StoreError::Backend(format!("Postgres error {}: {}", code.code(), db.message()))
}

/// What a failure to get a pooled connection means for callers.
pub(crate) fn from_pool(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Closed => StoreError::Unavailable("the Postgres store is closed".into()),
        PoolError::Backend(e) => match from_db(&e) {
            StoreError::Backend(m) => StoreError::Unavailable(m),
            other => other,
        },
        other => StoreError::Unavailable(format!("no Postgres connection available: {other}")),
    }
}
