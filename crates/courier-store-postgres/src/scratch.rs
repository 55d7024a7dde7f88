//! For tests: a store in a schema of its own, so that a test can fill and
//! analyze tables without meeting another test's rows.

use courier_core::Store;
use uuid::Uuid;

use crate::{PostgresOptions, PostgresStore};

/// A store in a schema of its own (`courier_test_<name>_<random>`), migrated,
/// with `pool` connections; and the schema's name, to drop.
pub(crate) async fn store_of_its_own(name: &str, pool: usize) -> (PostgresStore, String) {
    let url =
        std::env::var("COURIER_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("courier_test_{name}_{}", Uuid::new_v4().simple());
    let store = PostgresStore::connect(PostgresOptions::new(url).schema(&schema).pool_size(pool))
        .await
        .expect("Postgres reachable");
    store.init().await.unwrap();
    (store, schema)
}
