//! Webhook registrations, the deliveries made for them, and their attempts.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::change::Committed;
use crate::error::StoreResult;
use crate::webhook::{
    DeliveryAttempt, DeliveryForAttempt, DeliveryRecord, DeliveryReplay, DeliveryState, NewDelivery, WebhookRecord,
};

/// Webhooks: registrations, the dispatcher's cursor, deliveries and attempts.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Registers a webhook as given. `Conflict` if the id is taken.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> StoreResult<()>;

    /// One webhook.
    async fn get_webhook(&self, id: Uuid) -> StoreResult<Option<WebhookRecord>>;

    /// Webhooks, oldest first (`limit` 0: all).
    async fn list_webhooks(&self, limit: u32, offset: u32) -> StoreResult<Vec<WebhookRecord>>;

    /// Deletes a webhook with its deliveries and their attempts (the deliveries'
    /// executions stay, to finish or be cleaned up); whether it existed.
    async fn delete_webhook(&self, id: Uuid) -> StoreResult<bool>;

    /// Enables or disables a webhook, recording `reason` when disabling; whether it exists.
    async fn set_webhook_enabled(&self, id: Uuid, enabled: bool, reason: Option<&str>) -> StoreResult<bool>;

    /// Rotates a webhook's signing secret in one statement: the current secret
    /// becomes the previous one, signing until `grace` from now (store clock),
    /// `secret` becomes current, and `updated_at` is stamped. As the previous
    /// secret is whatever is current when the write lands (never a value read
    /// before it), two rotations at once chain: each keeps the secret the other
    /// put in place. The webhook as this rotation left it; `None` (nothing
    /// written) if it does not exist. The store keeps both values opaque.
    async fn rotate_webhook_secret(
        &self,
        id: Uuid,
        secret: &str,
        grace: Duration,
    ) -> StoreResult<Option<WebhookRecord>>;

    /// Replaces the stored secret value `from` with `to` wherever webhook `id`
    /// still holds it (its secret, its previous secret, or both), leaving
    /// `updated_at` alone: sealing or re-sealing a secret is a compare-and-set,
    /// so it never undoes a rotation made meanwhile. Whether anything changed.
    async fn replace_webhook_secret(&self, id: Uuid, from: &str, to: &str) -> StoreResult<bool>;

    /// The webhook dispatcher's position in the event log (0 at first).
    async fn webhook_cursor(&self) -> StoreResult<i64>;

    /// Atomically, if the cursor still equals `from`: creates each delivery and
    /// its execution (exactly as a dispatch would, changes included) and moves the
    /// cursor to `to`. A delivery marked `skipped` is recorded as
    /// [`DeliveryState::Skipped`] and its execution is not dispatched. Answers false, writing nothing, if the cursor moved (another
    /// node enqueued these events), so each event is delivered once per webhook
    /// however many nodes race.
    async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: Vec<NewDelivery>,
    ) -> StoreResult<Committed<bool>>;

    /// Records an attempt and sets the delivery's `state`, `attempts` (to the
    /// attempt's number), `last_status` and `last_error`. `Invalid` if the
    /// delivery does not exist, or if the attempt's response or error holds a
    /// NUL (nothing is written then, on every store alike).
    async fn record_delivery_attempt(&self, attempt: &DeliveryAttempt, state: DeliveryState) -> StoreResult<()>;

    /// One delivery.
    async fn get_delivery(&self, id: Uuid) -> StoreResult<Option<DeliveryRecord>>;

    /// Deliveries with their webhooks and their events, as one read: what
    /// attempts need (a delivery's execution makes one every time it runs),
    /// so that attempts running at once can share it. Only the deliveries
    /// that exist are returned, in no particular order; an id asked twice is
    /// answered once.
    async fn get_deliveries_for_attempts(&self, ids: &[Uuid]) -> StoreResult<Vec<DeliveryForAttempt>>;

    /// A webhook's deliveries, newest first.
    async fn list_deliveries(&self, webhook_id: Uuid, limit: u32, offset: u32) -> StoreResult<Vec<DeliveryRecord>>;

    /// A delivery's attempts, oldest first.
    async fn list_delivery_attempts(&self, delivery_id: Uuid) -> StoreResult<Vec<DeliveryAttempt>>;

    /// Marks a pending delivery skipped (its webhook was disabled by the time its
    /// attempt came up); whether it was pending.
    async fn skip_delivery(&self, id: Uuid) -> StoreResult<bool>;

    /// A webhook's deliveries in `state` recorded at or after `since`, oldest
    /// first, at most `limit` (0: all): the skipped ones to replay, the failed
    /// ones to recover.
    async fn list_deliveries_in_state(
        &self,
        webhook_id: Uuid,
        state: DeliveryState,
        since: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    /// Atomically, for each replay whose delivery is still skipped: sets the
    /// delivery pending, made by the replay's execution, and dispatches that
    /// execution (exactly as a dispatch would, changes included). A delivery that
    /// is no longer skipped (replayed meanwhile by another caller) or unknown is
    /// left alone, so each skipped delivery is replayed once. The ids replayed,
    /// in the order given.
    async fn replay_deliveries(&self, replays: Vec<DeliveryReplay>) -> StoreResult<Committed<Vec<Uuid>>>;
}
