//! No lost wake-ups: with polling effectively off, every waiter is woken by the
//! commit it waits for, however the commit races its subscription.

use std::time::Duration;

use crate::support::*;
use courier::core::TaskError;
use courier::{Courier, OrchestratorContext, PollBackoff};

fn no_polling() -> courier::WorkerOptions {
    let mut worker = fast_worker();
    worker.poll = PollBackoff {
        min: Duration::from_secs(60),
        max: Duration::from_secs(60),
        factor: 1.0,
    };
    worker
}

#[actix_rt::test]
async fn wait_for_is_woken_by_every_completion_without_polling() {
    let courier = Courier::builder()
        .store(sqlite().await)
        .activity("echo", |_ctx, n: u32| async move { Ok::<_, TaskError>(n) })
        .worker(no_polling())
        .start()
        .await
        .unwrap();
    for n in 0..200u32 {
        let id = courier.dispatch("echo", n).await.unwrap();
        // Without a notice this would sleep a minute; the bound catches a lost wake-up.
        let got: u32 = courier
            .result_when_done(id, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(got, n);
    }
}

#[actix_rt::test]
async fn a_signal_racing_its_wait_always_wakes_the_orchestrator() {
    let courier = Courier::builder()
        .store(sqlite().await)
        .orchestrator("gate", |ctx: OrchestratorContext, _: ()| async move {
            let v: u32 = ctx.wait_signal("open").await?;
            Ok::<_, TaskError>(v)
        })
        .worker(no_polling())
        .start()
        .await
        .unwrap();
    for n in 0..60u32 {
        let id = courier.dispatch("gate", ()).await.unwrap();
        // Vary when the signal lands: before, around, and after the wait is created.
        tokio::time::sleep(Duration::from_micros(u64::from(n % 6) * 400)).await;
        courier.send_signal(id, "open", n).await.unwrap();
        let got: u32 = courier
            .result_when_done(id, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(got, n);
    }
}
