//! How to reach the database: a DSN, an optional schema, a pool size, a
//! statement timeout.

use std::time::Duration;

use courier_core::{PriorityAgeing, StoreError, StoreResult};

use crate::tls::{PostgresTls, parse_postgres_url};

/// Connection settings for [`PostgresStore::connect`](crate::PostgresStore::connect).
///
/// ```
/// use courier_store_postgres::PostgresOptions;
/// let options = PostgresOptions::new("postgres://courier@db.internal:5432/courier?sslmode=disable")
///     .schema("courier")
///     .pool_size(32);
/// assert_eq!(options.url(), "postgres://courier@db.internal:5432/courier?sslmode=disable");
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    url: String,
    schema: Option<String>,
    pool_size: usize,
    statement_timeout: Option<Duration>,
    priority_ageing: PriorityAgeing,
}

/// Connections the pool keeps at most unless told otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How long one statement may run unless told otherwise (`store.statement_timeout`).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

impl PostgresOptions {
    /// Settings for the database a `postgres://` or `postgresql://` DSN names (user,
    /// password, host, port, database; `sslmode` and `sslrootcert` as
    /// [`crate::tls`] describes).
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: None,
            pool_size: DEFAULT_POOL_SIZE,
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            priority_ageing: PriorityAgeing::DEFAULT,
        }
    }

    /// Cancels any statement running longer than `limit` on every pooled
    /// connection (`None`: never), so a stuck query fails with
    /// [`StoreError::Unavailable`] instead of holding its connection and its
    /// locks forever. Sub-millisecond limits round up to 1 ms.
    pub fn statement_timeout(mut self, limit: Option<Duration>) -> Self {
        self.statement_timeout = limit;
        self
    }

    /// What one priority level is worth in waiting (`store.priority_aging`): the
    /// store's claim order, applied by `init` (which rebuilds the order of every
    /// task if the database had another; see [`PriorityAgeing`] for the bound).
    pub fn priority_ageing(mut self, ageing: PriorityAgeing) -> Self {
        self.priority_ageing = ageing;
        self
    }

    /// The priority ageing.
    pub fn priority_ageing_setting(&self) -> PriorityAgeing {
        self.priority_ageing
    }

    /// The statement timeout, if any.
    pub fn statement_timeout_limit(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// Keeps every table in schema `name` (created by `init`), so that several
    /// deployments or test runs can share one database. The name must be a plain
    /// lower-case SQL identifier.
    pub fn schema(mut self, name: impl Into<String>) -> Self {
        self.schema = Some(name.into());
        self
    }

    /// Keeps at most `n` connections open (at least one).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The DSN.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema, if one was set.
    pub fn schema_name(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The pool size.
    pub fn max_connections(&self) -> usize {
        self.pool_size
    }

    /// The driver configuration and the TLS its `sslmode` calls for (see
    /// [`crate::tls`]), with `search_path` pinned to the schema on every
    /// connection so that no statement needs to name it.
    pub(crate) fn driver_config(&self) -> StoreResult<(tokio_postgres::Config, PostgresTls)> {
        let (mut config, tls) = parse_postgres_url(&self.url).map_err(|e| StoreError::Invalid(e.to_string()))?;
        // JIT compilation costs milliseconds whenever a plan's estimate crosses
        // jit_above_cost, and never pays for statements as short as the store's.
        let mut session = String::from("-c jit=off");
        // 0 is Postgres's spelling of "no limit".
        let timeout_ms = self
            .statement_timeout
            .map_or(0, |d| d.as_millis().clamp(1, i32::MAX as u128));
        session.push_str(&format!(" -c statement_timeout={timeout_ms}"));
        if let Some(schema) = &self.schema {
            validate_schema(schema)?;
            session.push_str(&format!(" -c search_path={schema}"));
        }
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {session}"),
            _ => session,
        };
        config.options(options);
        if config.get_application_name().is_none() {
            config.application_name("courier");
        }
        Ok((config, tls))
    }
}

/// Schema names go into `search_path` and DDL unquoted, so only names that need
/// no quoting are accepted.
fn validate_schema(name: &str) -> StoreResult<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if name.starts_with("pg_") {
        return Err(StoreError::Invalid(format!(
            "schema name {name:?} starts with pg_, which Postgres reserves for itself"
        )));
    }
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name {name:?} must be a lower-case identifier (a-z, 0-9, _; at most 63 characters)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_are_accepted_and_unknown_ones_refused_clearly() {
        let (config, tls) = PostgresOptions::new("postgres://u@h/db?sslmode=require")
            .driver_config()
            .unwrap();
        assert_eq!(config.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(tls.mode(), crate::tls::PostgresSslMode::Require);
        let err = PostgresOptions::new("postgres://u@h/db?sslmode=sometimes")
            .driver_config()
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(m) if m.contains("sslmode=sometimes")));
    }

    #[test]
    fn schema_names_are_checked_and_pinned() {
        assert!(
            PostgresOptions::new("postgres://u@h/db")
                .schema("Bad-Name")
                .driver_config()
                .is_err()
        );
        assert!(
            PostgresOptions::new("postgres://u@h/db")
                .schema("pg_mine")
                .driver_config()
                .is_err()
        );
        let config = PostgresOptions::new("postgresql://u:p@h:5433/db?sslmode=prefer")
            .schema("courier_1")
            .driver_config()
            .unwrap()
            .0;
        assert_eq!(
            config.get_options(),
            Some("-c jit=off -c statement_timeout=30000 -c search_path=courier_1")
        );
        assert_eq!(config.get_dbname(), Some("db"));
    }

    #[test]
    fn other_schemes_are_refused() {
        assert!(PostgresOptions::new("mysql://h/db").driver_config().is_err());
    }
}
