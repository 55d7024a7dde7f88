//! Notifications for people: sending (with group replacement), dismissing per
//! subscriber, replaying to a connecting viewer, subscriptions to sources, and
//! the expiry sweep. [`NotificationStore`] is implemented here.

use async_trait::async_trait;
use courier_core::{
    Change, Committed, Cursor, Dismissal, NewNotification, NotificationFilter, NotificationMode, NotificationRecord,
    NotificationSent, NotificationStore, NotificationTtl, Replay, StoreResult, Subscriber, Target, Viewer,
};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::{after, enum_at, json, json_at, limit, micros, time, time_at, uuid_at};
use crate::error::Result;
use crate::event_log;

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn send_notification(
        &self,
        new: NewNotification,
        ttl: &NotificationTtl,
    ) -> StoreResult<Committed<NotificationSent>> {
        let ttl = *ttl;
        self.write_changes(move |conn, now, changes| send(conn, now, &new, &ttl, changes))
            .await
    }

    async fn dismiss_notification(&self, viewer: &Viewer, id: Uuid) -> StoreResult<Committed<Dismissal>> {
        let viewer = viewer.clone();
        self.write_changes(move |conn, now, changes| dismiss(conn, now, &viewer, id, changes))
            .await
    }

    async fn dismiss_group(&self, viewer: &Viewer, group: &str) -> StoreResult<Committed<Vec<Uuid>>> {
        let (viewer, group) = (viewer.clone(), group.to_string());
        self.write_changes(move |conn, now, changes| dismiss_group(conn, now, &viewer, &group, changes))
            .await
    }

    async fn replay_notifications(&self, viewer: &Viewer, cursor: Option<Cursor>, max: u32) -> StoreResult<Replay> {
        let viewer = viewer.clone();
        self.read(move |conn, now| replay(conn, now, &viewer, cursor, max))
            .await
    }

    async fn get_notifications(&self, ids: &[Uuid]) -> StoreResult<Vec<NotificationRecord>> {
        let ids = ids.to_vec();
        self.read(move |conn, _| get_many(conn, &ids)).await
    }

    async fn list_notifications(&self, filter: &NotificationFilter) -> StoreResult<Vec<NotificationRecord>> {
        let filter = filter.clone();
        self.read(move |conn, _| list(conn, &filter)).await
    }

    async fn subscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>> {
        let (user, source) = (user.to_string(), source.to_string());
        self.write_changes(move |conn, now, changes| {
            let added = conn
                .prepare_cached(
                    "INSERT INTO notification_subscriptions (user_id, source, created_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )?
                .execute((&user, &source, now))?
                > 0;
            if added {
                let change = Change::SourceSubscription {
                    user,
                    source,
                    subscribed: true,
                };
                event_log::record(conn, now, changes, change)?;
            }
            Ok(added)
        })
        .await
    }

    async fn unsubscribe_source(&self, user: &str, source: &str) -> StoreResult<Committed<bool>> {
        let (user, source) = (user.to_string(), source.to_string());
        self.write_changes(move |conn, now, changes| {
            let removed = conn
                .prepare_cached("DELETE FROM notification_subscriptions WHERE user_id = ?1 AND source = ?2")?
                .execute((&user, &source))?
                > 0;
            if removed {
                let change = Change::SourceSubscription {
                    user,
                    source,
                    subscribed: false,
                };
                event_log::record(conn, now, changes, change)?;
            }
            Ok(removed)
        })
        .await
    }

    async fn user_sources(&self, user: &str) -> StoreResult<Vec<String>> {
        let user = user.to_string();
        self.read(move |conn, _| {
            let mut stmt = conn
                .prepare_cached("SELECT source FROM notification_subscriptions WHERE user_id = ?1 ORDER BY source")?;
            let rows = stmt.query_map([&user], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn sweep_notifications(&self, max: u32) -> StoreResult<u64> {
        self.write(move |conn, now| sweep(conn, now, max)).await
    }
}

/// The columns [`record_at`] reads, in order.
const COLUMNS: &str = "id, seq, target_kind, target_key, kind, mode, grp, payload, created_at, expires_at";

fn record_at(row: &Row<'_>) -> rusqlite::Result<NotificationRecord> {
    let kind: String = row.get(2)?;
    let key: String = row.get(3)?;
    let target = Target::parse(&kind, Some(&key))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(NotificationRecord {
        id: uuid_at(row, 0)?,
        seq: row.get(1)?,
        target,
        kind: row.get(4)?,
        mode: enum_at(row, 5)?,
        group: row.get(6)?,
        payload: json_at(row, 7)?,
        created_at: time_at(row, 8)?,
        expires_at: Some(time_at(row, 9)?),
    })
}

/// Sends a notification: replaces its group's live one, stores it (unless
/// ephemeral), and records the change (whose event gives it its seq).
fn send(
    conn: &Connection,
    now: i64,
    new: &NewNotification,
    ttl: &NotificationTtl,
    changes: &mut Vec<Change>,
) -> Result<NotificationSent> {
    let mode = new.effective_mode();
    let target = &new.target;
    let mut replaced = Vec::new();
    if mode.is_stored()
        && let Some(group) = &new.group
    {
        let old: Option<Uuid> = conn
            .prepare_cached("SELECT id FROM notifications WHERE target_kind = ?1 AND target_key = ?2 AND grp = ?3")?
            .query_row((target.kind(), target.key(), group), |row| uuid_at(row, 0))
            .optional()?;
        if let Some(old) = old {
            delete(conn, old)?;
            replaced.push(old);
        }
    }
    let expires_at = ttl.of(mode).map(|ttl| after(now, ttl));
    let notification = NotificationRecord {
        id: new.id,
        seq: 0,
        target: target.clone(),
        kind: new.kind.clone(),
        mode,
        group: new.group.clone(),
        payload: new.payload.clone(),
        created_at: time(now),
        expires_at: expires_at.map(time),
    };
    let change = Change::NotificationSent {
        notification: notification.clone(),
        replaced: replaced.clone(),
    };
    let seq = event_log::record(conn, now, changes, change)?;
    if let Some(expires_at) = expires_at {
        conn.prepare_cached(
            "INSERT INTO notifications (id, seq, target_kind, target_key, kind, mode, grp, payload, created_at, \
             expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            new.id.as_bytes(),
            seq,
            target.kind(),
            target.key(),
            new.kind,
            mode.as_str(),
            new.group,
            json(&new.payload)?,
            now,
            expires_at,
        ])
        .map_err(crate::error::conflict_on(new.id, "notification"))?;
    }
    Ok(NotificationSent {
        notification: NotificationRecord { seq, ..notification },
        replaced,
    })
}

fn delete(conn: &Connection, id: Uuid) -> Result<()> {
    conn.prepare_cached("DELETE FROM notification_dismissals WHERE notification_id = ?1")?
        .execute([id.as_bytes()])?;
    conn.prepare_cached("DELETE FROM notifications WHERE id = ?1")?
        .execute([id.as_bytes()])?;
    Ok(())
}

/// The SQL condition "the viewer can see `n`", and its arguments, appended.
fn visible_to(viewer: &Viewer, args: &mut Vec<SqlValue>) -> Result<String> {
    args.push(SqlValue::Text(viewer.session.clone()));
    let mut sql = String::from("((n.target_kind = 'session' AND n.target_key = ?)");
    if let Some(user) = &viewer.user {
        sql.push_str(" OR (n.target_kind = 'user' AND n.target_key = ?)");
        args.push(SqlValue::Text(user.clone()));
        sql.push_str(
            " OR (n.target_kind = 'source' AND n.target_key IN \
             (SELECT source FROM notification_subscriptions WHERE user_id = ?))",
        );
        args.push(SqlValue::Text(user.clone()));
    }
    if !viewer.sources.is_empty() {
        sql.push_str(" OR (n.target_kind = 'source' AND n.target_key IN (SELECT value FROM json_each(?)))");
        args.push(SqlValue::Text(json(&viewer.sources)?));
    }
    sql.push(')');
    Ok(sql)
}

/// The viewer's live stored notification `id`, if it can see it.
fn visible(conn: &Connection, now: i64, viewer: &Viewer, id: Uuid) -> Result<Option<NotificationRecord>> {
    let mut args = vec![SqlValue::Blob(id.as_bytes().to_vec()), SqlValue::Integer(now)];
    let condition = visible_to(viewer, &mut args)?;
    let sql = format!("SELECT {COLUMNS} FROM notifications n WHERE n.id = ? AND n.expires_at > ? AND {condition}");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params_from_iter(args), record_at)
        .optional()?)
}

/// Records dismissals of `ids` by `subscriber`; those that were new.
fn record_dismissals(conn: &Connection, now: i64, subscriber: &Subscriber, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let key = subscriber.storage_key();
    let mut insert = conn.prepare_cached(
        "INSERT INTO notification_dismissals (notification_id, subscriber, at) VALUES (?1, ?2, ?3) \
         ON CONFLICT DO NOTHING",
    )?;
    let mut new = Vec::new();
    for id in ids {
        if insert.execute((id.as_bytes(), &key, now))? > 0 {
            new.push(*id);
        }
    }
    Ok(new)
}

fn dismiss(conn: &Connection, now: i64, viewer: &Viewer, id: Uuid, changes: &mut Vec<Change>) -> Result<Dismissal> {
    let Some(found) = visible(conn, now, viewer, id)? else {
        return Ok(Dismissal::NotFound);
    };
    if !found.mode.is_dismissible() {
        return Ok(Dismissal::NotDismissible);
    }
    let subscriber = viewer.subscriber();
    let new = record_dismissals(conn, now, &subscriber, &[id])?;
    if !new.is_empty() {
        let change = Change::NotificationsDismissed {
            ids: new,
            subscriber,
            group: None,
            seq: 0,
        };
        event_log::record(conn, now, changes, change)?;
    }
    Ok(Dismissal::Dismissed)
}

fn dismiss_group(
    conn: &Connection,
    now: i64,
    viewer: &Viewer,
    group: &str,
    changes: &mut Vec<Change>,
) -> Result<Vec<Uuid>> {
    let mut args = vec![SqlValue::Text(group.to_string()), SqlValue::Integer(now)];
    let condition = visible_to(viewer, &mut args)?;
    let sql = format!(
        "SELECT n.id FROM notifications n WHERE n.grp = ? AND n.mode = 'queued' AND n.expires_at > ? AND {condition} \
         ORDER BY n.seq"
    );
    let ids: Vec<Uuid> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), |row| uuid_at(row, 0))?
        .collect::<rusqlite::Result<_>>()?;
    let subscriber = viewer.subscriber();
    let new = record_dismissals(conn, now, &subscriber, &ids)?;
    if !new.is_empty() {
        let change = Change::NotificationsDismissed {
            ids: new.clone(),
            subscriber,
            group: Some(group.to_string()),
            seq: 0,
        };
        event_log::record(conn, now, changes, change)?;
    }
    Ok(new)
}

fn replay(conn: &Connection, now: i64, viewer: &Viewer, cursor: Option<Cursor>, max: u32) -> Result<Replay> {
    let subscriber = viewer.subscriber().storage_key();
    let mut args = vec![SqlValue::Integer(now)];
    let condition = visible_to(viewer, &mut args)?;
    args.push(SqlValue::Text(subscriber));
    args.push(SqlValue::Integer(limit(max)));
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications n WHERE n.mode = 'queued' AND n.expires_at > ? AND {condition} \
         AND NOT EXISTS (SELECT 1 FROM notification_dismissals d WHERE d.notification_id = n.id AND d.subscriber = ?) \
         ORDER BY n.seq LIMIT ?"
    );
    let queued = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), record_at)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let Some(cursor) = cursor else {
        return Ok(Replay {
            queued,
            ..Replay::default()
        });
    };
    let (column, after) = match cursor {
        Cursor::Seq(seq) => ("seq", seq),
        Cursor::Time(at) => ("created_at", micros(at)),
    };
    let mut args = vec![SqlValue::Integer(now), SqlValue::Integer(after)];
    let condition = visible_to(viewer, &mut args)?;
    args.push(SqlValue::Integer(limit(max)));
    let sql = format!(
        "SELECT {COLUMNS} FROM notifications n WHERE n.mode = 'timeseries' AND n.expires_at > ? AND n.{column} > ? \
         AND {condition} ORDER BY n.seq LIMIT ?"
    );
    let timeseries = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), record_at)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (max_seq, max_created_at): (i64, i64) = conn
        .prepare_cached("SELECT max_seq, max_created_at FROM notification_watermark WHERE id = 1")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let reset = match cursor {
        Cursor::Seq(seq) => seq < max_seq,
        Cursor::Time(at) => micros(at) < max_created_at,
    };
    Ok(Replay {
        queued,
        timeseries,
        reset,
    })
}

fn get_many(conn: &Connection, ids: &[Uuid]) -> Result<Vec<NotificationRecord>> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM notifications n WHERE n.id = ?1"))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(record) = stmt.query_row([id.as_bytes()], record_at).optional()? {
            out.push(record);
        }
    }
    Ok(out)
}

fn list(conn: &Connection, filter: &NotificationFilter) -> Result<Vec<NotificationRecord>> {
    let mut sql = format!("SELECT {COLUMNS} FROM notifications n WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(target) = &filter.target {
        sql.push_str(" AND n.target_kind = ? AND n.target_key = ?");
        args.push(SqlValue::Text(target.kind().into()));
        args.push(SqlValue::Text(target.key().into()));
    }
    if let Some(mode) = filter.mode {
        sql.push_str(" AND n.mode = ?");
        args.push(SqlValue::Text(mode.as_str().into()));
    }
    if let Some(before) = filter.before {
        sql.push_str(" AND n.seq < ?");
        args.push(SqlValue::Integer(before));
    }
    sql.push_str(" ORDER BY n.seq DESC LIMIT ?");
    args.push(SqlValue::Integer(limit(filter.limit)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), record_at)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn sweep(conn: &Connection, now: i64, max: u32) -> Result<u64> {
    let expired: Vec<(Uuid, i64, i64, NotificationMode)> = conn
        .prepare_cached(
            "SELECT id, seq, created_at, mode FROM notifications INDEXED BY notifications_expiry \
             WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
        )?
        .query_map((now, i64::from(max)), |row| {
            Ok((uuid_at(row, 0)?, row.get(1)?, row.get(2)?, enum_at(row, 3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let (mut max_seq, mut max_created_at) = (0i64, 0i64);
    for (id, seq, created_at, mode) in &expired {
        delete(conn, *id)?;
        if *mode == NotificationMode::Timeseries {
            max_seq = max_seq.max(*seq);
            max_created_at = max_created_at.max(*created_at);
        }
    }
    if max_seq > 0 {
        conn.prepare_cached(
            "UPDATE notification_watermark SET max_seq = max(max_seq, ?1), \
             max_created_at = max(max_created_at, ?2) WHERE id = 1",
        )?
        .execute((max_seq, max_created_at))?;
    }
    Ok(expired.len() as u64)
}

/// The value every node shares under `name`, stored as `candidate` if absent.
pub(crate) fn cluster_value(conn: &Connection, name: &str, candidate: &str) -> Result<String> {
    conn.prepare_cached("INSERT INTO cluster_values (name, value) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?
        .execute((name, candidate))?;
    Ok(conn
        .prepare_cached("SELECT value FROM cluster_values WHERE name = ?1")?
        .query_row([name], |row| row.get(0))?)
}

/// Sends a notification recorded as an orchestrator's effect, in the commit's
/// transaction.
pub(crate) fn send_as_effect(
    conn: &Connection,
    now: i64,
    new: &NewNotification,
    ttl: &NotificationTtl,
    changes: &mut Vec<Change>,
) -> Result<Uuid> {
    send(conn, now, new, ttl, changes).map(|sent| sent.notification.id)
}
