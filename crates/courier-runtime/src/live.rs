//! The one registry of executions whose orchestrator this node holds in memory,
//! and the messages anyone may send them through it.
//!
//! An `ExecutionActor` registers itself when it starts and removes its own entry
//! when it stops (an entry replaced by a newer actor for the same execution is
//! left alone). The `StoreActor` hands settled children straight to a registered
//! orchestrator (`ChildrenSettled`); the `Coordinator` counts entries and drains
//! them on shutdown; the `WorkerActor` counts them to decide whether to claim
//! more orchestrators.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use courier_core::{ExecutionId, TaskError, TaskId, TaskState};
use dashmap::DashMap;
use serde_json::Value;

/// Children of an execution that settled on this node, one commit's worth, with
/// their results (sent by the `StoreActor`).
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub(crate) struct ChildrenSettled(pub Vec<Settled>);

/// One settled child.
#[derive(Clone, Debug)]
pub(crate) struct Settled {
    pub parent_id: TaskId,
    pub task_id: TaskId,
    pub state: TaskState,
    pub result: Option<Value>,
    pub error: Option<TaskError>,
}

/// Give the execution back (for replay here or elsewhere) and stop: node
/// shutdown, or a newer claim of the same execution.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// How to reach one live execution.
#[derive(Clone)]
pub(crate) struct Entry {
    /// Which actor registered it (a newer actor for the same execution replaces it).
    pub generation: u64,
    pub settled: Recipient<ChildrenSettled>,
    pub drain: Recipient<Drain>,
}

/// Executions live on this node. Cheap to clone; clones share the registry.
#[derive(Clone, Default)]
pub(crate) struct Live {
    entries: Arc<DashMap<ExecutionId, Entry>>,
    generations: Arc<AtomicU64>,
}

impl Live {
    /// A fresh generation for an actor about to register.
    pub(crate) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers an execution's actor, returning the entry it replaced.
    pub(crate) fn register(&self, execution: ExecutionId, entry: Entry) -> Option<Entry> {
        self.entries.insert(execution, entry)
    }

    /// Removes the execution's entry if it is still `generation`'s.
    pub(crate) fn deregister(&self, execution: ExecutionId, generation: u64) {
        self.entries.remove_if(&execution, |_, e| e.generation == generation);
    }

    /// The entry of an execution, if it lives here.
    pub(crate) fn get(&self, execution: ExecutionId) -> Option<Entry> {
        // Cloned out so no shard guard is held by the caller.
        self.entries.get(&execution).map(|e| e.clone())
    }

    /// Whether the execution lives here.
    pub(crate) fn contains(&self, execution: ExecutionId) -> bool {
        self.entries.contains_key(&execution)
    }

    /// How many executions live here.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every entry, for draining.
    pub(crate) fn all(&self) -> Vec<Entry> {
        self.entries.iter().map(|e| e.value().clone()).collect()
    }
}
