//! Notifications for people: sending (with group replacement), dismissing per
//! subscriber, replaying to a connecting viewer, subscriptions to sources, the
//! expiry sweep, and the values nodes share; [`NotificationStore`] for
//! [`PostgresStore`].
//!
//! # Sequence numbers
//!
//! A notification's `seq` is the sequence number of its `notification.sent`
//! event, which is only known once the transaction appends its events (its last
//! statement, see `event_log`). So a notification row is inserted with seq 0, the
//! events are appended ([`event_log::append_changes`] tells each change its
//! number), and [`stamp_seqs`] then writes the numbers into the rows the
//! transaction inserted. The head lock is held to the commit, so no reader ever
//! sees a row with seq 0 (the row is not visible before the commit either).
//!
//! # Races
//!
//! * **Group replacement.** Replacing the live notification of a (target, group)
//!   takes a transaction-scoped advisory lock on them first ([`lock_groups`]), so
//!   replacements of one group run one after another and each sees the previous
//!   one's row (READ COMMITTED: every statement after the lock has a fresh
//!   snapshot). The partial unique index on (target, group) backs this up.
//! * **Dismissal against deletion.** A dismissal key-share-locks the notification
//!   it dismisses; a replacement or the sweep deletes the notification first
//!   (waiting for that lock) and its dismissals in a later statement, whose
//!   snapshot sees a dismissal that committed meanwhile. A dismissal that comes
//!   second finds the notification gone. So no dismissal outlives its notification.
//! * **Dismissing twice.** Dismissals insert with `ON CONFLICT DO NOTHING`; of two
//!   racing dismissals by one subscriber, only the first reports a change.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{
    Change, Committed, Cursor, Dismissal, Effect, EffectWrite, NewNotification, NotificationFilter, NotificationMode,
    NotificationRecord, NotificationSent, NotificationStore, NotificationTtl, Replay, StoreResult, Target, Viewer,
};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::PostgresStore;
use crate::codec::{limit, micros, now_plus, parse};
use crate::error::{Error, Result, corrupt};
use crate::event_log::{self, Then};
use crate::statements::{Statements, execute, query, query_one, query_opt, query_typed};
use crate::transaction::{Tx, in_transaction};

#[async_trait]
impl NotificationStore for PostgresStore {
    async fn send_notification(
        &self,
        new: NewNotification,
        ttl: &NotificationTtl,
    ) -> StoreResult<Committed<NotificationSent>> {
        send(self, &new, ttl).await
    }

    async fn dismiss_notification(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Committed<Dismissal>> {
        in_transaction!(self, |tx| dismiss(tx, viewer, id))
    }

    async fn dismiss_group(&self, viewer: &Viewer, group: &str) -> StoreResult<Committed<Vec<Uuid>>> {
        in_transaction!(self, |tx| dismiss_group(tx, viewer, group))
    }

    async fn replay_notifications(&self, viewer: &Viewer, cursor: Option<Cursor>, max: u32) -> StoreResult<Replay> {
        let client = self.client().await?;
        Ok(replay(&client, viewer, cursor, max).await?)
    }

    async fn get_notifications(&self, ids: &[Uuid]) -> StoreResult<Vec<NotificationRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!("SELECT {COLUMNS} FROM notifications WHERE id = ANY($1)"),
            &[&ids],
        )
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_>>()?)
    }

    async fn list_notifications(&self, filter: &NotificationFilter) -> StoreResult<Vec<NotificationRecord>> {
        let client = self.client().await?;
        Ok(list(&client, filter).await?)
    }

    async fn subscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>> {
        let client = self.client().await?;
        let added = execute(
            &client,
            "INSERT INTO notification_subscriptions (user_id, source, created_at) VALUES ($1, $2, now())
             ON CONFLICT DO NOTHING",
            &[&user, &source],
        )
        .await?
            > 0;
        Ok(subscription(user, source, true, added))
    }

    async fn unsubscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>> {
        let client = self.client().await?;
        let removed = execute(
            &client,
            "DELETE FROM notification_subscriptions WHERE user_id = $1 AND source = $2",
            &[&user, &source],
        )
        .await?
            > 0;
        Ok(subscription(user, source, false, removed))
    }

    async fn user_sources(&self, user: &str) -> StoreResult<Vec<String>> {
        let client = self.client().await?;
        // Byte order, as Rust sorts (the database's collation may differ).
        let rows = query(
            &client,
            "SELECT source FROM notification_subscriptions WHERE user_id = $1 ORDER BY source COLLATE \"C\"",
            &[&user],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0).map_err(Error::from))
            .collect::<Result<_>>()?)
    }

    async fn sweep_notifications(&self, max: u32) -> StoreResult<u64> {
        in_transaction!(self, |tx| sweep(tx, max))
    }
}

/// The columns [`record`] reads, in order.
const COLUMNS: &str = "id, seq, target_kind, target_key, kind, mode, grp, payload, created_at, expires_at";

/// [`COLUMNS`] qualified by the alias `n`.
const COLUMNS_N: &str =
    "n.id, n.seq, n.target_kind, n.target_key, n.kind, n.mode, n.grp, n.payload, n.created_at, n.expires_at";

fn record(row: &Row) -> Result<NotificationRecord> {
    let kind: &str = row.try_get(2)?;
    let key: &str = row.try_get(3)?;
    let target = Target::parse(kind, Some(key)).map_err(|e| corrupt(format!("notification target: {e}")))?;
    Ok(NotificationRecord {
        id: row.try_get(0)?,
        seq: row.try_get(1)?,
        target,
        kind: row.try_get(4)?,
        mode: parse(row.try_get::<_, &str>(5)?)?,
        group: row.try_get(6)?,
        payload: row.try_get(7)?,
        created_at: row.try_get(8)?,
        expires_at: Some(row.try_get(9)?),
    })
}

/// The name of the advisory lock that serialises replacements of `group`'s live
/// notification for `target` (per schema, as every lock of this crate).
fn group_lock(store: &PostgresStore, target: &Target, group: &str) -> String {
    let key = serde_json::json!([target.kind(), target.key(), group]);
    store.lock_name(&format!("notify:{key}"))
}

/// The group lock `new` needs, if sending it may replace a live notification.
fn replacing_lock(store: &PostgresStore, new: &NewNotification) -> Option<String> {
    let group = new.group.as_deref()?;
    new.effective_mode()
        .is_stored()
        .then(|| group_lock(store, &new.target, group))
}

/// The group locks the notification effects of a batch need (whether or not
/// their fence holds or their step was recorded before: locking one too many
/// only serialises a little more).
pub(crate) fn effect_group_locks(store: &PostgresStore, effects: &[EffectWrite]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|write| match &write.effect {
            Effect::Notify { notification, .. } => replacing_lock(store, notification),
            _ => None,
        })
        .collect()
}

/// Takes the advisory locks `names` until the end of the transaction, in name
/// order, so that transactions taking several never wait for each other in a
/// cycle. A transaction takes them before any row lock (see `commit`).
pub(crate) async fn lock_groups(tx: &Tx, mut names: Vec<String>) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    names.dedup();
    execute(
        tx,
        "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) FROM unnest($1::text[]) AS k",
        &[&names],
    )
    .await?;
    Ok(())
}

/// Sends a notification in its own transaction.
async fn send(
    store: &PostgresStore,
    new: &NewNotification,
    ttl: &NotificationTtl,
) -> StoreResult<Committed<NotificationSent>> {
    let lock = replacing_lock(store, new);
    let lock = &lock;
    in_transaction!(store, |tx| async move {
        if let Some(lock) = lock {
            lock_groups(tx, vec![lock.clone()]).await?;
        }
        let mut changes = Vec::with_capacity(1);
        let sent = send_in(tx, new, ttl, &mut changes).await?;
        event_log::append_changes(tx, &mut changes, Then::Continue).await?;
        stamp_seqs(tx, &changes).await?;
        let seq = match changes.first() {
            Some(Change::NotificationSent { notification, .. }) => notification.seq,
            _ => 0,
        };
        let sent = NotificationSent {
            notification: NotificationRecord {
                seq,
                ..sent.notification
            },
            ..sent
        };
        Ok::<_, Error>(Committed::new(sent, changes))
    })
}

/// Sends a notification in `tx` (the caller holds its group's lock, see
/// [`lock_groups`], and appends the events): deletes the live notification of
/// its target and group with its dismissals, stores it (unless ephemeral) with
/// seq 0, and records `NotificationSent`. The seq is the event's, told to the
/// change by [`event_log::append_changes`] and written by [`stamp_seqs`]; the
/// answer here carries 0.
pub(crate) async fn send_in(
    tx: &Tx,
    new: &NewNotification,
    ttl: &NotificationTtl,
    changes: &mut Vec<Change>,
) -> Result<NotificationSent> {
    let mode = new.effective_mode();
    let target = &new.target;
    let mut replaced: Vec<Uuid> = Vec::new();
    if mode.is_stored()
        && let Some(group) = &new.group
    {
        // The notification first, waiting for dismissals of it in flight; then, in a
        // statement of its own (a fresh snapshot), the dismissals, those included.
        replaced = query(
            tx,
            "DELETE FROM notifications WHERE target_kind = $1 AND target_key = $2 AND grp = $3 RETURNING id",
            &[&target.kind(), &target.key(), group],
        )
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()?;
        delete_dismissals(tx, &replaced).await?;
    }
    let (created_at, expires_at): (DateTime<Utc>, Option<DateTime<Utc>>) = match ttl.of(mode) {
        Some(ttl) => {
            let row = query_one(
                tx,
                &format!(
                    "INSERT INTO notifications (id, seq, target_kind, target_key, kind, mode, grp, payload,
                         created_at, expires_at)
                     VALUES ($1, 0, $2, $3, $4, $5, $6, $7, now(), {})
                     RETURNING created_at, expires_at",
                    now_plus("$8")
                ),
                &[
                    &new.id,
                    &target.kind(),
                    &target.key(),
                    &new.kind,
                    &mode.as_str(),
                    &new.group,
                    &new.payload,
                    &micros(ttl),
                ],
            )
            .await
            .map_err(|e| e.conflict_on(new.id))?;
            (row.try_get(0)?, Some(row.try_get(1)?))
        }
        None => (query_one(tx, "SELECT now()", &[]).await?.try_get(0)?, None),
    };
    let notification = NotificationRecord {
        id: new.id,
        seq: 0,
        target: target.clone(),
        kind: new.kind.clone(),
        mode,
        group: new.group.clone(),
        payload: new.payload.clone(),
        created_at,
        expires_at,
    };
    changes.push(Change::NotificationSent {
        notification: notification.clone(),
        replaced: replaced.clone(),
    });
    Ok(NotificationSent { notification, replaced })
}

/// Writes into the notification rows a transaction stored the seqs their
/// `NotificationSent` changes were told by [`event_log::append_changes`]. Runs
/// after the append (see the module documentation); nothing when the changes
/// stored no notification.
pub(crate) async fn stamp_seqs(tx: &Tx, changes: &[Change]) -> Result<()> {
    let (ids, seqs): (Vec<Uuid>, Vec<i64>) = stamped(changes).map(|n| (n.id, n.seq)).unzip();
    if ids.is_empty() {
        return Ok(());
    }
    // A notification replaced later in the same batch is gone: nothing to stamp.
    execute(
        tx,
        "UPDATE notifications n SET seq = x.seq
         FROM unnest($1::uuid[], $2::int8[]) AS x(id, seq) WHERE n.id = ANY($1) AND n.id = x.id",
        &[&ids, &seqs],
    )
    .await?;
    Ok(())
}

/// Whether [`stamp_seqs`] has anything to write for `changes`.
pub(crate) fn need_stamps(changes: &[Change]) -> bool {
    stamped(changes).next().is_some()
}

/// The notifications among `changes` whose rows carry their seq: those stored,
/// not the ephemeral ones (which have no row).
fn stamped(changes: &[Change]) -> impl Iterator<Item = &NotificationRecord> {
    changes.iter().filter_map(|change| match change {
        Change::NotificationSent { notification, .. } if notification.expires_at.is_some() => Some(notification),
        _ => None,
    })
}

async fn delete_dismissals(tx: &Tx, ids: &[Uuid]) -> Result<()> {
    if !ids.is_empty() {
        execute(
            tx,
            "DELETE FROM notification_dismissals WHERE notification_id = ANY($1)",
            &[&ids],
        )
        .await?;
    }
    Ok(())
}

/// The SQL condition "the viewer can see `n`", reading the viewer's session,
/// user (nullable) and sources from parameters `$p`, `$p+1` and `$p+2` (see
/// [`viewer_params`]). The targets it may read are gathered first, so that the
/// notifications are read by index, target by target.
fn visible(p: usize) -> String {
    let (session, user, sources) = (p, p + 1, p + 2);
    format!(
        "(n.target_kind, n.target_key) IN (
             SELECT 'session'::text, ${session}::text
             UNION ALL SELECT 'user', ${user}::text WHERE ${user}::text IS NOT NULL
             UNION ALL SELECT 'source', s.source FROM notification_subscriptions s WHERE s.user_id = ${user}::text
             UNION ALL SELECT 'source', x.source FROM unnest(${sources}::text[]) AS x(source)
         )"
    )
}

/// The viewer's parameters for [`visible`].
fn viewer_params(viewer: &Viewer) -> [&(dyn tokio_postgres::types::ToSql + Sync); 3] {
    [&viewer.session, &viewer.user, &viewer.sources]
}

async fn dismiss(tx: &Tx, viewer: &Viewer, id: Uuid) -> Result<Committed<Dismissal>> {
    // Key-share-locked: a replacement or the sweep deleting it waits for this
    // dismissal, then deletes it too (see the module documentation).
    let [session, user, sources] = viewer_params(viewer);
    let found = query_opt(
        tx,
        &format!(
            "SELECT n.mode FROM notifications n WHERE n.id = $4 AND n.expires_at > now() AND {}
             FOR KEY SHARE OF n",
            visible(1)
        ),
        &[session, user, sources, &id],
    )
    .await?;
    let Some(found) = found else {
        return Ok(Committed::unchanged(Dismissal::NotFound));
    };
    let mode: NotificationMode = parse(found.try_get::<_, &str>(0)?)?;
    if !mode.is_dismissible() {
        return Ok(Committed::unchanged(Dismissal::NotDismissible));
    }
    let subscriber = viewer.subscriber();
    let inserted = execute(
        tx,
        "INSERT INTO notification_dismissals (notification_id, subscriber, at) VALUES ($1, $2, now())
         ON CONFLICT DO NOTHING",
        &[&id, &subscriber.storage_key()],
    )
    .await?;
    if inserted == 0 {
        return Ok(Committed::unchanged(Dismissal::Dismissed));
    }
    let mut changes = vec![Change::NotificationsDismissed {
        ids: vec![id],
        subscriber,
        group: None,
        seq: 0,
    }];
    event_log::append_changes(tx, &mut changes, Then::Continue).await?;
    Ok(Committed::new(Dismissal::Dismissed, changes))
}

async fn dismiss_group(tx: &Tx, viewer: &Viewer, group: &str) -> Result<Committed<Vec<Uuid>>> {
    let [session, user, sources] = viewer_params(viewer);
    let ids: Vec<Uuid> = query(
        tx,
        &format!(
            "SELECT n.id FROM notifications n
             WHERE n.grp = $4 AND n.mode = 'queued' AND n.expires_at > now() AND {}
             ORDER BY n.seq
             FOR KEY SHARE OF n",
            visible(1)
        ),
        &[session, user, sources, &group],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Committed::unchanged(Vec::new()));
    }
    let subscriber = viewer.subscriber();
    let inserted: HashSet<Uuid> = query(
        tx,
        "INSERT INTO notification_dismissals (notification_id, subscriber, at)
         SELECT x.id, $2, now() FROM unnest($1::uuid[]) AS x(id)
         ON CONFLICT DO NOTHING
         RETURNING notification_id",
        &[&ids, &subscriber.storage_key()],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    let new: Vec<Uuid> = ids.into_iter().filter(|id| inserted.contains(id)).collect();
    if new.is_empty() {
        return Ok(Committed::unchanged(new));
    }
    let mut changes = vec![Change::NotificationsDismissed {
        ids: new.clone(),
        subscriber,
        group: Some(group.to_string()),
        seq: 0,
    }];
    event_log::append_changes(tx, &mut changes, Then::Continue).await?;
    Ok(Committed::new(new, changes))
}

/// What a connecting viewer is sent: one statement for its queued notifications,
/// and one for the timeseries ones after its cursor that also reads the sweep's
/// watermark (in the same snapshot, so `reset` matches what was read).
async fn replay<C: Statements>(client: &C, viewer: &Viewer, cursor: Option<Cursor>, max: u32) -> Result<Replay> {
    let [session, user, sources] = viewer_params(viewer);
    let subscriber = viewer.subscriber().storage_key();
    let max = limit(max);
    let queued = query(
        client,
        &format!(
            "SELECT {COLUMNS_N} FROM notifications n
             WHERE n.mode = 'queued' AND n.expires_at > now() AND {}
               AND NOT EXISTS (
                   SELECT 1 FROM notification_dismissals d WHERE d.notification_id = n.id AND d.subscriber = $4
               )
             ORDER BY n.seq
             LIMIT $5",
            visible(1)
        ),
        &[session, user, sources, &subscriber, &max],
    )
    .await?
    .iter()
    .map(record)
    .collect::<Result<Vec<_>>>()?;
    let Some(cursor) = cursor else {
        return Ok(Replay {
            queued,
            ..Replay::default()
        });
    };
    // After the cursor by sequence or by time; the watermark says whether the
    // sweep deleted a timeseries notification after it.
    let (column, watermark, after): (&str, &str, &(dyn tokio_postgres::types::ToSql + Sync)) = match &cursor {
        Cursor::Seq(seq) => ("seq", "max_seq", seq),
        Cursor::Time(at) => ("created_at", "max_created_at", at),
    };
    let cast = match cursor {
        Cursor::Seq(_) => "int8",
        Cursor::Time(_) => "timestamptz",
    };
    let rows = query(
        client,
        &format!(
            "WITH w AS (SELECT max_seq, max_created_at FROM notification_watermark),
             ts AS (
                 SELECT {COLUMNS_N} FROM notifications n
                 WHERE n.mode = 'timeseries' AND n.expires_at > now() AND n.{column} > $4::{cast} AND {}
                 ORDER BY n.seq
                 LIMIT $5
             )
             SELECT ts.*, $4::{cast} < w.{watermark} FROM w LEFT JOIN ts ON true ORDER BY ts.seq",
            visible(1)
        ),
        &[session, user, sources, after, &max],
    )
    .await?;
    let mut timeseries = Vec::with_capacity(rows.len());
    let mut reset = false;
    for row in &rows {
        reset = row.try_get(10)?;
        // The watermark's row comes with no notification when none is after the cursor.
        if row.try_get::<_, Option<Uuid>>(0)?.is_some() {
            timeseries.push(record(row)?);
        }
    }
    Ok(Replay {
        queued,
        timeseries,
        reset,
    })
}

/// Stored notifications matching `filter`, newest first. Each filter shape has
/// its own statement, so that the planner can use the target index.
async fn list<C: Statements>(client: &C, filter: &NotificationFilter) -> Result<Vec<NotificationRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM notifications WHERE true");
    if filter.target.is_some() {
        sql.push_str(" AND target_kind = $1 AND target_key = $2");
    }
    if filter.mode.is_some() {
        sql.push_str(" AND mode = $3");
    }
    if filter.before.is_some() {
        sql.push_str(" AND seq < $4");
    }
    sql.push_str(" ORDER BY seq DESC LIMIT $5");
    let kind = filter.target.as_ref().map(Target::kind);
    let key = filter.target.as_ref().map(Target::key);
    let mode = filter.mode.map(NotificationMode::as_str);
    let rows = query_typed(
        client,
        &sql,
        &[Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8, Type::INT8],
        &[&kind, &key, &mode, &filter.before, &limit(filter.limit)],
    )
    .await?;
    rows.iter().map(record).collect()
}

/// What (un)subscribing answers: whether it changed anything, and if so the change.
fn subscription(user: &str, source: &str, subscribed: bool, changed: bool) -> Committed<bool> {
    if !changed {
        return Committed::unchanged(false);
    }
    let change = Change::SourceSubscription {
        user: user.to_string(),
        source: source.to_string(),
        subscribed,
    };
    Committed::new(true, vec![change])
}

/// Deletes up to `max` expired notifications (skipping any a dismissal holds;
/// the next sweep takes them), raising the watermark to the newest timeseries
/// one deleted; then their dismissals, in a statement of its own (see the module
/// documentation).
async fn sweep(tx: &Tx, max: u32) -> Result<u64> {
    let gone: Vec<Uuid> = query(
        tx,
        "WITH gone AS (
             DELETE FROM notifications WHERE id IN (
                 SELECT id FROM notifications WHERE expires_at <= now()
                 ORDER BY expires_at LIMIT $1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING id, seq, created_at, mode
         ),
         series AS (
             SELECT max(seq) AS seq, max(created_at) AS created_at FROM gone WHERE mode = 'timeseries'
         ),
         mark AS (
             UPDATE notification_watermark w
             SET max_seq = GREATEST(w.max_seq, series.seq),
                 max_created_at = GREATEST(w.max_created_at, series.created_at)
             FROM series WHERE series.seq IS NOT NULL
         )
         SELECT id FROM gone",
        &[&i64::from(max)],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<std::result::Result<_, _>>()?;
    delete_dismissals(tx, &gone).await?;
    Ok(gone.len() as u64)
}

/// The value every node shares under `name`, stored as `candidate` if absent.
/// Two statements: the second's snapshot sees a value a racer committed while
/// this insert waited for it.
pub(crate) async fn cluster_value(store: &PostgresStore, name: &str, candidate: &str) -> StoreResult<String> {
    let client = store.client().await?;
    execute(
        &client,
        "INSERT INTO cluster_values (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&name, &candidate],
    )
    .await?;
    let row = query_one(&client, "SELECT value FROM cluster_values WHERE name = $1", &[&name]).await?;
    Ok(row.try_get(0).map_err(Error::from)?)
}
