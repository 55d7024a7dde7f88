//! The store conformance suite against PostgreSQL, each case in a schema of its own.
//!
//! Postgres must be reachable at `COURIER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); `scripts/test` installs and starts
//! it. These tests never skip: an unreachable server fails them.

use std::sync::Arc;

use courier_core::Store;
use courier_store_conformance::{Fixture, conformance_tests};
use courier_store_postgres::{PostgresOptions, PostgresStore};

fn url() -> String {
    std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn fresh() -> Fixture {
    let schema = format!("conformance_{}", uuid::Uuid::new_v4().simple());
    let store = PostgresStore::connect(PostgresOptions::new(url()).schema(schema).pool_size(8))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL must be reachable at {} ({e}); scripts/test starts it",
                url()
            )
        });
    store.init().await.expect("init");
    let handle = store.clone();
    Fixture::new(Arc::new(store)).with_teardown(async move {
        handle.drop_schema().await.expect("drop schema");
    })
}

conformance_tests!(postgres, fresh);
