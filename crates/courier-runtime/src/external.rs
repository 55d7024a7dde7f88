//! Work done by external workers (any language, over HTTP): claims with
//! long-poll, heartbeats, checkpoints, progress and fenced outcomes, through the
//! same `StoreActor` and the same retry policies as in-process work.

use std::time::Duration;

use courier_core::{
    ClaimRequest, Claimed, Completed, Completion, LeaseKey, Outcome, Progress, Renewed, StoreError, TaskError,
    TaskKind, TaskRecord, Topic,
};
use serde_json::Value;

use crate::error::RuntimeError;
use crate::handle::Courier;
use crate::retry::outcome_of_error;
use crate::store_actor::{Checkpoint, Claim, Complete, Heartbeat, ReportProgress};

/// Prefix of the lease owner of a task an external worker claimed
/// (`external:<worker id>`): no in-process worker's id has it.
pub const EXTERNAL_OWNER: &str = "external:";

impl Courier {
    /// Claims activities for an external worker: the request as given (only the
    /// `activity` kind; this cluster's registered concurrency caps apply), waiting
    /// up to `wait` for work to appear. Wakes on new-work notices, polls as a
    /// safety net.
    pub async fn claim_external(&self, request: ClaimRequest, wait: Duration) -> Result<Vec<Claimed>, RuntimeError> {
        self.claim_external_until(request, wait, std::future::pending()).await
    }

    /// [`claim_external`](Self::claim_external), whose wait also ends (with no
    /// work) when `stop` resolves. Only the wait between two claims is cut
    /// short: a claim sent to the store is always seen through, so a lease it
    /// takes is never lost with a dropped answer.
    pub async fn claim_external_until(
        &self,
        mut request: ClaimRequest,
        wait: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Vec<Claimed>, RuntimeError> {
        request.kinds = vec![TaskKind::Activity];
        // Work this node runs itself, and Courier's own (webhook deliveries,
        // ingested messages), is never handed to an outside worker, whose
        // outcome routes would then accept it.
        request.exclude_functions = self.node.registry().runnable();
        request.exclude_functions.extend(self.node.functions().paused());
        request.exclude_internal = true;
        // The lease owner says the claim is an outside worker's, which the
        // outcome routes below check.
        request.worker_id = format!("{EXTERNAL_OWNER}{}", request.worker_id);
        for (function, max) in self.node.functions().limits() {
            request.limits.entry(function).or_insert(max);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut sub = self.notifier().subscribe(vec![Topic::Work]).await?;
        let poll = self.worker_options().poll;
        let mut interval = poll.min;
        let mut stop = std::pin::pin!(stop);
        loop {
            let claimed = self.node.writes().send(Claim(request.clone())).await??;
            // What waits for rate-limit tokens was given back; the rest is the answer.
            let admission = crate::flow_control::admit(&self.node, claimed).await;
            if !admission.start.is_empty() {
                return Ok(admission.start);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            // What was held back is due again then, and no notice will say so.
            let nap = admission
                .held_back_for()
                .map_or(interval, |due| due.min(interval))
                .min(left);
            tokio::select! {
                notice = sub.next_within(nap) => {
                    if notice.is_none() {
                        // The wait ran out with no notice of new work: answer
                        // now rather than after one more store round-trip,
                        // which under load made a 30 s wait answer after 31-36 s.
                        if nap == left {
                            return Ok(Vec::new());
                        }
                        interval = poll.next(interval);
                    }
                }
                () = &mut stop => return Ok(Vec::new()),
            }
        }
    }

    /// Renews an external worker's lease (and records a `task.heartbeat`).
    pub async fn heartbeat_external(
        &self,
        lease: LeaseKey,
        extend: Duration,
        details: Option<Value>,
    ) -> Result<Renewed, RuntimeError> {
        self.externally_claimed(lease).await?;
        let write = Heartbeat { lease, extend, details };
        Ok(self.node.writes().send(write).await??)
    }

    /// Saves a checkpoint for an external worker's task.
    pub async fn checkpoint_external(&self, lease: LeaseKey, data: Value) -> Result<(), RuntimeError> {
        self.externally_claimed(lease).await?;
        Ok(self.node.writes().send(Checkpoint { lease, data }).await??)
    }

    /// Records progress of an external worker's task, fenced by its lease.
    pub async fn progress_external(&self, lease: LeaseKey, progress: Progress) -> Result<(), RuntimeError> {
        let task = self.externally_claimed(lease).await?;
        let write = ReportProgress {
            execution: task.execution_id,
            task: Some(task.id),
            progress,
            fence: Some(lease),
        };
        Ok(self.node.writes().send(write).await??)
    }

    /// Completes an external worker's task with `result`, fenced by its lease.
    pub async fn complete_external(&self, lease: LeaseKey, result: Value) -> Result<Completed, RuntimeError> {
        self.externally_claimed(lease).await?;
        self.finish_external(
            lease,
            Outcome::Succeeded {
                result,
                remember: Vec::new(),
            },
        )
        .await
    }

    /// Fails an external worker's task: retried by the task's persisted policy
    /// unless the error is marked non-retryable; fenced by its lease.
    pub async fn fail_external(&self, lease: LeaseKey, error: TaskError) -> Result<Completed, RuntimeError> {
        let task = self.externally_claimed(lease).await?;
        self.finish_external(lease, outcome_of_error(&task, error)).await
    }

    /// The task `lease` is for, if an external worker claimed it. An in-process
    /// activity, an orchestrator or Courier's own work is refused with
    /// `Conflict` whatever token is shown: their outcomes are written by the
    /// node that runs them. (The write itself is still fenced by the token, so a
    /// task re-claimed in between is refused there.)
    async fn externally_claimed(&self, lease: LeaseKey) -> Result<TaskRecord, RuntimeError> {
        let task = self
            .store()
            .get_task(lease.task_id)
            .await?
            .ok_or(StoreError::TaskNotFound(lease.task_id))?;
        let external = task.kind == TaskKind::Activity
            && !courier_core::is_internal(&task.function)
            && task
                .lease_owner
                .as_deref()
                .is_some_and(|o| o.starts_with(EXTERNAL_OWNER));
        if !external {
            return Err(StoreError::Conflict {
                id: task.id.to_string(),
                detail: "the task was not claimed by an external worker".into(),
            }
            .into());
        }
        Ok(task)
    }

    async fn finish_external(&self, lease: LeaseKey, outcome: Outcome) -> Result<Completed, RuntimeError> {
        let admitted = self.node.admit(1).await?;
        let done = self
            .node
            .writes()
            .send(Complete::plain(Completion { lease, outcome }, admitted))
            .await??;
        Ok(done)
    }
}
