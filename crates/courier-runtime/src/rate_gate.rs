//! Rate limits, applied to what a claim took: each rate-limited activity task
//! takes a token from its bucket in the store (one take per bucket per claim);
//! the tasks that find none are given back to their queue, due when their
//! token will be, without using an attempt. So a limit holds across every node
//! and outside worker, and work over it waits rather than fails.
//!
//! Only activity tasks count: they are the work that reaches the outside world,
//! while an orchestrator's claims are replays of one execution.

use std::collections::BTreeMap;
use std::time::Duration;

use courier_core::{Claimed, RateLimit, TaskKind, metric};

use crate::node::Node;
use crate::store_actor::ReleaseLease;

/// How long a task waits when its bucket could not be read (the store is
/// failing): long enough not to spin, short enough to notice recovery.
const UNREAD_BUCKET_WAIT: Duration = Duration::from_secs(1);

/// The claimed tasks that may start now, in claim order; the others are given
/// back to wait for their tokens.
pub(crate) async fn admit(node: &Node, claimed: Vec<Claimed>) -> Vec<Claimed> {
    let limits = node.functions().rate_limits();
    if limits.is_empty() {
        return claimed;
    }
    let mut admitted = Vec::with_capacity(claimed.len());
    // Per bucket, its limit and its tasks in claim order.
    let mut buckets: BTreeMap<String, (&RateLimit, Vec<Claimed>)> = BTreeMap::new();
    for c in claimed {
        match limits.get(&c.task.function) {
            Some(limit) if c.task.kind == TaskKind::Activity => {
                let bucket = limit.bucket(&c.task.function, &c.task.args);
                buckets.entry(bucket).or_insert_with(|| (limit, Vec::new())).1.push(c);
            }
            _ => admitted.push(c),
        }
    }
    for (bucket, (limit, mut tasks)) in buckets {
        let want = tasks.len() as u32;
        let (granted, next_token_in) = match node
            .store()
            .take_tokens(&bucket, limit.per_second, limit.burst(), want)
            .await
        {
            Ok(grant) => (grant.granted as usize, grant.next_token_in),
            Err(e) => {
                tracing::warn!(%bucket, error = %e, "a rate-limit bucket could not be read; its tasks wait");
                (0, UNREAD_BUCKET_WAIT)
            }
        };
        let refused = tasks.split_off(granted.min(tasks.len()));
        admitted.extend(tasks);
        if refused.is_empty() {
            continue;
        }
        metrics::counter!(metric::RATE_LIMITED, "function" => refused[0].task.function.clone())
            .increment(refused.len() as u64);
        for (n, c) in refused.into_iter().enumerate() {
            let delay = limit.wait_of(n as u32, next_token_in);
            let release = ReleaseLease {
                lease: c.lease.key(),
                delay,
            };
            // A release that fails leaves the lease to expire: the task is
            // claimed again then, never lost.
            if let Err(e) = node
                .writes()
                .send(release)
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                tracing::warn!(task = %c.task.id, error = %e, "a rate-limited task could not be given back; its lease will expire");
            }
        }
    }
    admitted
}
