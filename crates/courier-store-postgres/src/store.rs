//! [`Store`] for [`PostgresStore`]: the lifecycle, the group commit, the
//! cluster's singleton roles and shared values (the latter kept with
//! `notifications`). Every other method belongs to a concern trait, implemented
//! in that concern's module (`executions`, `tasks`, `event_log`, `dead_letters`,
//! `webhooks`, `cache`, `context`, `notifications`, `seed`); the provided
//! [`Store::dispatch`] goes through [`Store::commit`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use courier_core::{Store, StoreResult, WriteBatch, WriteResults};

use crate::transaction::in_transaction;
use crate::{PostgresStore, commit, maintenance, migrations, notifications};

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn init(&self) -> StoreResult<()> {
        let schema = self.schema.clone();
        let ageing = self.ageing;
        in_transaction!(self, |tx| migrations::migrate(tx, schema.as_deref(), ageing))
    }

    async fn close(&self) {
        self.pool.close();
    }

    async fn now(&self) -> StoreResult<DateTime<Utc>> {
        maintenance::now(self).await
    }

    async fn analyze(&self) -> StoreResult<()> {
        maintenance::analyze(self).await
    }

    async fn commit(&self, batch: Arc<WriteBatch>) -> StoreResult<WriteResults> {
        commit::commit(self, &batch).await
    }

    async fn cluster_value(&self, name: &str, candidate: &str) -> StoreResult<String> {
        notifications::cluster_value(self, name, candidate).await
    }

    async fn try_acquire_singleton(&self, name: &str, owner: &str, ttl: Duration) -> StoreResult<bool> {
        maintenance::try_acquire_singleton(self, name, owner, ttl).await
    }
}
