//! Functions' settings, as operators set them over the API: one small record per
//! function, read by every node (see [`FunctionSettings`]).

use async_trait::async_trait;

use crate::error::StoreResult;
use crate::function::{FunctionRecord, FunctionSettings};

/// Stored function settings.
#[async_trait]
pub trait FunctionStore: Send + Sync {
    /// Sets `name`'s settings to `settings` (replacing what was set), stamping
    /// the store's clock and one more revision; the record as written. Writes to
    /// one name at once each get their own revision.
    async fn put_function_settings(&self, name: &str, settings: &FunctionSettings) -> StoreResult<FunctionRecord>;

    /// One function's settings.
    async fn get_function_settings(&self, name: &str) -> StoreResult<Option<FunctionRecord>>;

    /// Every function's settings, by name (in byte order).
    async fn list_function_settings(&self) -> StoreResult<Vec<FunctionRecord>>;

    /// Forgets `name`'s settings (its tasks get the code's options again);
    /// whether there were any.
    async fn delete_function_settings(&self, name: &str) -> StoreResult<bool>;
}
