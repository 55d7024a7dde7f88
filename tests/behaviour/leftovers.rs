//! The test support's sweep of what earlier runs left behind: a test's
//! directory and Postgres schema are taken once they are older than any test
//! runs, and never while they may still be in use.

use std::time::{Duration, SystemTime};

use crate::support::leftovers::{self, MAX_AGE};
use crate::support::postgres_url;

#[actix_rt::test]
async fn what_earlier_runs_left_is_swept_and_what_may_be_in_use_is_kept() {
    let long_ago = SystemTime::now() - MAX_AGE - Duration::from_secs(60);
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {} ({e})", postgres_url()));
    actix_rt::spawn(connection);

    // As a failed run an hour ago would have left them, and as a test running now has them.
    let old_schema = leftovers::schema_made_at(long_ago);
    let new_schema = leftovers::scratch_schema().await;
    let new_dir = leftovers::scratch_dir();
    for schema in [&old_schema, &new_schema] {
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (x int)"))
            .await
            .unwrap();
    }
    let old_dir = leftovers::scratch_dir_for("cluster");
    std::fs::write(old_dir.join("courier.db"), b"left behind").unwrap();
    std::fs::File::open(&old_dir).unwrap().set_modified(long_ago).unwrap();

    // (Another test's first scratch directory or schema may sweep them first.)
    leftovers::sweep_schemas(&postgres_url()).await.unwrap();
    leftovers::sweep_dirs();

    let exists = |schema: String| {
        let client = &client;
        async move {
            client
                .query_one("SELECT count(*) FROM pg_namespace WHERE nspname = $1", &[&schema])
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        }
    };
    assert!(!exists(old_schema).await, "an hour-old schema was kept");
    assert!(exists(new_schema.clone()).await, "a schema in use was dropped");
    assert!(!old_dir.exists(), "an hour-old directory was kept");
    assert!(new_dir.exists(), "a directory in use was removed");

    client
        .batch_execute(&format!("DROP SCHEMA {new_schema} CASCADE"))
        .await
        .unwrap();
    std::fs::remove_dir_all(new_dir).unwrap();
}
