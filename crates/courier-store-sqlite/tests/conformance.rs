//! The store conformance suite against SQLite: in memory (every operation on the
//! writer connection) and on a file (WAL, with separate reader connections).

use std::sync::Arc;

use courier_core::Store;
use courier_store_conformance::{Fixture, conformance_tests};
use courier_store_sqlite::{SqliteOptions, SqliteStore};

async fn fresh_memory() -> Fixture {
    let store = SqliteStore::open(SqliteOptions::memory())
        .await
        .expect("open in-memory SQLite");
    store.init().await.expect("init");
    Fixture::new(Arc::new(store))
}

async fn fresh_file() -> Fixture {
    let dir = std::env::temp_dir().join(format!("courier-conformance-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = SqliteStore::open(SqliteOptions::file(dir.join("courier.db")))
        .await
        .expect("open SQLite file");
    store.init().await.expect("init");
    let handle = store.clone();
    Fixture::new(Arc::new(store)).with_teardown(async move {
        handle.close().await;
        let _ = std::fs::remove_dir_all(dir);
    })
}

conformance_tests!(sqlite, fresh_memory);
conformance_tests!(sqlite_file, fresh_file);
