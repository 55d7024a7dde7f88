//! What the ingestion crate's integration tests share: a real node (an
//! in-memory SQLite store, a worker) with ingestion installed and its inputs
//! started. `smtp_sink.py` beside this file is the SMTP server they send to.
#![allow(dead_code)] // each test binary uses a part

use std::time::Duration;

use courier_ingest::{Ingest, IngestOptions};
use courier_runtime::{Courier, WorkerOptions};

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A started node with ingestion on `options`.
pub async fn node(options: IngestOptions) -> Result<(Courier, Ingest)> {
    let store = courier_store::open("sqlite::memory:").await?;
    let builder = Courier::builder().store(store).worker(WorkerOptions::default());
    let (builder, ingest) = courier_ingest::install(builder, options)?;
    let courier = builder.start().await?;
    ingest.start_inputs().await?;
    Ok((courier, ingest))
}

/// Stops the inputs, then the node, each bounded in time.
pub async fn stop(courier: Courier, ingest: Ingest) {
    let within = Duration::from_secs(30);
    let _ = tokio::time::timeout(within, ingest.shutdown()).await;
    let _ = tokio::time::timeout(within, courier.shutdown()).await;
}
