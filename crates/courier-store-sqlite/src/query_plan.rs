//! How SQLite would run a statement, for the tests that pin a read's plan
//! (keyset paging, an index instead of a sort).

use rusqlite::Connection;
use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;

/// Each step of the plan of `sql` bound to `args`, in order.
pub(crate) fn steps(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(params_from_iter(args), |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}
