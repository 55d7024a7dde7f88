//! Flow control, applied to what a claim took: concurrency keys, then rate
//! limits. A rate-limited or keyed activity task starts only with a slot of its
//! key (fewer than `max` of its key running) and a token of its bucket, both
//! held in the store; a task that finds none is given back to its queue, due a
//! little later, without using an attempt. So the limits hold across every node
//! and outside worker, and work over them waits rather than fails.
//!
//! No notice says when a held-back task is due again, so the claimer is told
//! ([`Admission::held_back_due`]) and looks again by each time: a backlog over a
//! rate limit drains at the rate, not at the pace of an idle worker's backoff.
//!
//! Only activity tasks count: they are the work that reaches the outside world,
//! while an orchestrator's claims are replays of one execution.

use std::collections::BTreeMap;
use std::time::Duration;

use courier_core::{Claimed, Release, TaskKind, metric};

use crate::node::Node;
use crate::store_actor::ReleaseLeases;

/// How long a task waits when its bucket or slots could not be read (the store
/// is failing): long enough not to spin, short enough to notice recovery.
const UNREAD_WAIT: Duration = Duration::from_secs(1);

/// How long the first task refused a slot of its key waits; the ones after it
/// wait a little longer each, so they come back spread out. Being due later,
/// they go behind every task already due, which bounds how long a flood on one
/// key holds back another key's task of the same priority: one claim pass over
/// the work due before it (tests/behaviour/fairness.rs).
const KEY_WAIT: Duration = Duration::from_millis(250);

/// The most a task refused a slot waits before it looks again.
const KEY_WAIT_MAX: Duration = Duration::from_secs(5);

/// What flow control made of a claim.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// The claimed tasks that may start now, in claim order.
    pub(crate) start: Vec<Claimed>,
    /// How long until each task given back is due again. A worker must look
    /// again at each of these times, not only the first: a claim made when the
    /// first comes due does not find the later ones, and no notice says when
    /// they are due.
    pub(crate) held_back_due: Vec<Duration>,
}

impl Admission {
    /// How long until the first task given back is due again, if any was.
    pub(crate) fn held_back_for(&self) -> Option<Duration> {
        self.held_back_due.iter().copied().min()
    }

    fn held_back(&mut self, due_in: Vec<Duration>) {
        self.held_back_due.extend(due_in);
    }
}

/// Splits what a claim took into the tasks that may start now and those
/// given back to wait.
pub(crate) async fn admit(node: &Node, claimed: Vec<Claimed>) -> Admission {
    let mut admission = Admission::default();
    let keyed = node.functions().concurrency_keys();
    let claimed = if keyed.is_empty() {
        claimed
    } else {
        let (admitted, groups) = group(claimed, |c| {
            keyed
                .get(&c.task.function)
                .map(|k| (k.bucket(&c.task.function, &c.task.args), k))
        });
        let mut admitted = admitted;
        for (bucket, (key, mut tasks)) in groups {
            let holders: Vec<_> = tasks.iter().map(|c| (c.task.id, c.lease.token)).collect();
            let (granted, wait) = match node.store().take_slots(&bucket, key.max, &holders).await {
                Ok(n) => (n as usize, KEY_WAIT),
                Err(e) => {
                    tracing::warn!(%bucket, error = %e, "a concurrency key's slots could not be read; its tasks wait");
                    (0, UNREAD_WAIT)
                }
            };
            let refused = tasks.split_off(granted.min(tasks.len()));
            admitted.extend(tasks);
            let spread = |n: u32| (wait + wait.mul_f64(f64::from(n) / f64::from(key.max))).min(KEY_WAIT_MAX);
            admission.held_back(give_back(node, refused, metric::KEY_LIMITED, spread).await);
        }
        admitted
    };

    let limits = node.functions().rate_limits();
    if limits.is_empty() {
        admission.start = claimed;
        return admission;
    }
    let (mut admitted, groups) = group(claimed, |c| {
        limits
            .get(&c.task.function)
            .map(|l| (l.bucket(&c.task.function, &c.task.args), l))
    });
    for (bucket, (limit, mut tasks)) in groups {
        let want = tasks.len() as u32;
        let (granted, next_token_in) = match node
            .store()
            .take_tokens(&bucket, limit.per_second, limit.burst(), want)
            .await
        {
            Ok(grant) => (grant.granted as usize, grant.next_token_in),
            Err(e) => {
                tracing::warn!(%bucket, error = %e, "a rate-limit bucket could not be read; its tasks wait");
                (0, UNREAD_WAIT)
            }
        };
        let refused = tasks.split_off(granted.min(tasks.len()));
        admitted.extend(tasks);
        admission.held_back(give_back(node, refused, metric::RATE_LIMITED, |n| limit.wait_of(n, next_token_in)).await);
    }
    admission.start = admitted;
    admission
}

/// Per bucket, the rule that made it and its tasks in claim order.
type Buckets<'a, R> = BTreeMap<String, (&'a R, Vec<Claimed>)>;

/// Splits `claimed` into the tasks no rule applies to and, per bucket that
/// `rule` names, the rule and its activity tasks in claim order.
fn group<'a, R>(
    claimed: Vec<Claimed>,
    rule: impl Fn(&Claimed) -> Option<(String, &'a R)>,
) -> (Vec<Claimed>, Buckets<'a, R>) {
    let mut free = Vec::with_capacity(claimed.len());
    let mut buckets: Buckets<'a, R> = BTreeMap::new();
    for c in claimed {
        match rule(&c).filter(|_| c.task.kind == TaskKind::Activity) {
            Some((bucket, r)) => buckets.entry(bucket).or_insert_with(|| (r, Vec::new())).1.push(c),
            None => free.push(c),
        }
    }
    (free, buckets)
}

/// Gives each refused task back to its queue, the `n`th due after `wait(n)`,
/// and counts them in `counter` by function. Returns when each is due (empty
/// if none was refused).
async fn give_back(
    node: &Node,
    refused: Vec<Claimed>,
    counter: &'static str,
    wait: impl Fn(u32) -> Duration,
) -> Vec<Duration> {
    let Some(first) = refused.first() else {
        return Vec::new();
    };
    metrics::counter!(counter, "function" => first.task.function.clone()).increment(refused.len() as u64);
    // All in one write of the next group commit: a claim can refuse hundreds,
    // and the claim loop waits for them before it claims again.
    let releases = refused
        .iter()
        .enumerate()
        .map(|(n, c)| Release {
            lease: c.lease.key(),
            delay: wait(n as u32),
        })
        .collect();
    // A release that fails leaves the lease to expire: the task is claimed
    // again then, never lost.
    match ReleaseLeases::send(node.writes(), node.admission(), releases).await {
        Ok(results) => {
            for (c, result) in refused.iter().zip(results) {
                if let Err(e) = result {
                    tracing::warn!(task = %c.task.id, error = %e, "a held-back task could not be given back; its lease will expire");
                }
            }
        }
        Err(e) => {
            tracing::warn!(tasks = refused.len(), error = %e, "held-back tasks could not be given back; their leases will expire");
        }
    }
    (0..refused.len()).map(|n| wait(n as u32)).collect()
}
