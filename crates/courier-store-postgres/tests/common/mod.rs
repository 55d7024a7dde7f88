//! What the Postgres-specific tests share: a store in a schema of its own.

#![allow(dead_code)]

use courier_core::Store;
use courier_store_postgres::{PostgresOptions, PostgresStore};

/// The test server (`COURIER_TEST_POSTGRES_URL`, default the local one).
pub fn url() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, initialised store in a new schema named after `what`.
pub async fn fresh(what: &str) -> PostgresStore {
    let schema = format!("courier_test_{what}_{}", uuid::Uuid::new_v4().simple());
    open(&schema, 16).await
}

/// A store on `schema` (initialised), as another node would open it.
pub async fn open(schema: &str, pool: usize) -> PostgresStore {
    let store = PostgresStore::connect(PostgresOptions::new(url()).schema(schema).pool_size(pool))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {} ({e})", url()));
    store.init().await.expect("init");
    store
}
