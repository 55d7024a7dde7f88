//! What a test makes outside itself, and sweeping away what earlier runs left.
//!
//! A test's SQLite directory and Postgres schema outlive it: the store is held
//! by a runtime until the process ends. So may the scratch directory of a
//! `courier serve` test (kept when the test fails, for its logs), and a failed
//! test never reaches its clean-up. Instead of each test cleaning up, the first
//! directory or schema a test binary makes here sweeps away those older than
//! [`MAX_AGE`], left by any run: a directory by when it was last modified, a
//! schema (which Postgres keeps no time for) by the time its name carries. No
//! test runs that long, so nothing swept is in use; and the leftovers of one
//! run last only until the next.

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;

/// How old a leftover must be before a sweep takes it.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

/// What a test directory's name begins with, under the system's temp dir.
const DIR_PREFIX: &str = "courier-test-";

/// A new, empty directory for one test's store, under the system's temp dir.
pub fn scratch_dir() -> PathBuf {
    scratch_dir_for("")
}

/// A new, empty directory for one test, under the system's temp dir, its name
/// saying `what` it holds.
pub fn scratch_dir_for(what: &str) -> PathBuf {
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| {
        sweep_dirs();
    });
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what}-")
    };
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{what}{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the test directories last modified more than [`MAX_AGE`] ago.
pub fn sweep_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok());
        if age.is_some_and(|age| age > MAX_AGE) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new schema name for one test's Postgres store (the store creates it).
pub async fn scratch_schema() -> String {
    static SWEPT: OnceCell<()> = OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            if let Err(e) = sweep_schemas(&super::postgres_url()).await {
                eprintln!("tests: could not sweep earlier runs' schemas: {e}");
            }
        })
        .await;
    schema_made_at(SystemTime::now())
}

/// The name of a schema made at `at` (not created).
pub fn schema_made_at(at: SystemTime) -> String {
    format!("rt_{}_{}", secs(at), uuid::Uuid::new_v4().simple())
}

/// Drops the test schemas made more than [`MAX_AGE`] ago.
pub async fn sweep_schemas(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let names: Vec<String> = client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^rt_[0-9]+_[0-9a-f]{32}$'",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let oldest_kept = secs(SystemTime::now() - MAX_AGE);
    for name in names {
        let made: u64 = name[3..name.rfind('_').unwrap()].parse().unwrap_or(u64::MAX);
        if made < oldest_kept {
            // Another binary's sweep may drop it first; that is as good.
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
    drop(client);
    let _ = connection.await;
    Ok(())
}

fn secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
