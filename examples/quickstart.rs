//! Quickstart: an orchestrator that calls an activity (which fails once and is
//! retried), sleeps durably, and waits for a signal, on the embedded default
//! (SQLite at `COURIER_STORE_URL`, default `./courier.db`, and the in-process
//! notifier). Run it with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use courier::core::{RetryPolicy, TaskError};
use courier::{ActivityContext, FunctionOptions, OrchestratorContext, Registry};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    id: u32,
    cents: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Receipt {
    order: u32,
    charged: u64,
    approved_by: String,
}

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Charges a card. The first call fails with a transient error; the retry policy retries it.
async fn charge(ctx: ActivityContext, order: Order) -> Result<u64, TaskError> {
    if CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        println!(
            "charge: attempt {} failed (payment gateway timeout), will retry",
            ctx.attempt()
        );
        return Err(TaskError::new("gateway_timeout", "the payment gateway did not answer"));
    }
    println!("charge: attempt {} charged {} cents", ctx.attempt(), order.cents);
    Ok(order.cents)
}

/// The workflow: charge, wait a moment (durably), wait for a human's approval.
async fn checkout(ctx: OrchestratorContext, order: Order) -> Result<Receipt, TaskError> {
    let id = order.id;
    let charged: u64 = ctx.call("charge", order).await?;
    ctx.sleep(Duration::from_secs(1)).await?;
    let approved_by: String = ctx.wait_signal("approve").await?;
    Ok(Receipt {
        order: id,
        charged,
        approved_by,
    })
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut registry = Registry::default();
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    registry.activity("charge", FunctionOptions::default().retry(retry), charge);
    registry.orchestrator("checkout", FunctionOptions::default(), checkout);

    let courier = courier::bootstrap(registry).await?;
    let id = courier.dispatch("checkout", Order { id: 7, cents: 1250 }).await?;
    println!("dispatched execution {id}");

    // A person approves a little later; the signal is kept until the workflow waits for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    courier.send_signal(id, "approve", "ada").await?;

    let receipt: Receipt = courier.result_when_done(id, Some(Duration::from_secs(30))).await?;
    println!("result: {}", serde_json::to_string(&receipt)?);
    courier.shutdown().await?;
    Ok(())
}
