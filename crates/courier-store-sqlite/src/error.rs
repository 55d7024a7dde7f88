//! The crate's internal error: either the database failed (the whole call fails)
//! or the store refused something (a [`StoreError`] the caller is owed).
//!
//! Keeping the two apart lets batch code decide per item: a refusal fails only its
//! item, a database error fails the batch.

use courier_core::StoreError;
use rusqlite::ErrorCode;

/// What an operation running on a connection can fail with.
#[derive(Debug)]
pub(crate) enum Error {
    /// SQLite reported an error.
    Sqlite(rusqlite::Error),
    /// The store refused the operation (not found, lease lost, wrong state, ...).
    Store(StoreError),
    /// A value could not be encoded as JSON.
    Encode(serde_json::Error),
}

/// Shorthand for results inside the crate.
pub(crate) type Result<T> = std::result::Result<T, Error>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Encode(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Sqlite(e) => sqlite_to_store(e),
            Error::Encode(e) => StoreError::Backend(format!("JSON encoding failed: {e}")),
        }
    }
}

/// Maps a SQLite error to the store's vocabulary: lock contention is transient
/// (another process holds the write lock past `busy_timeout`), the rest is not.
pub(crate) fn sqlite_to_store(e: rusqlite::Error) -> StoreError {
    match sqlite_code(&e) {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The primary result code of a SQLite failure, if it is one.
pub(crate) fn sqlite_code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

/// Turns a uniqueness violation of a raw insert into [`StoreError::Conflict`] on `id`.
pub(crate) fn conflict_on(id: impl std::fmt::Display, what: &str) -> impl FnOnce(rusqlite::Error) -> Error {
    let id = id.to_string();
    let what = what.to_string();
    move |e| match sqlite_code(&e) {
        Some(ErrorCode::ConstraintViolation) => Error::Store(StoreError::Conflict {
            id,
            detail: format!("{what} already exists"),
        }),
        _ => Error::Sqlite(e),
    }
}

/// A store thread (the writer, a reader, the WAL checkpointer) could not start.
pub(crate) fn thread_error(e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("could not start a SQLite thread: {e}"))
}
