//! Registered functions: activities and orchestrators by name, with their
//! options, behind type-erased handlers that speak JSON.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use courier_core::{TaskError, TaskKind};
use futures::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::activity::{ActivityContext, ActivityFn};
use crate::options::{FunctionOptions, FunctionTable};
use crate::orchestrator::{OrchestratorContext, OrchestratorFn};

/// A registered function's code.
#[derive(Clone)]
pub(crate) enum Handler {
    Activity(ActivityFn),
    Orchestrator(OrchestratorFn),
}

/// A registered function.
#[derive(Clone)]
pub(crate) struct FunctionDef {
    pub(crate) kind: TaskKind,
    pub(crate) options: FunctionOptions,
    /// `None` for a function that runs on an external worker.
    pub(crate) handler: Option<Handler>,
}

/// The functions a node can run, by name.
///
/// ```
/// use courier_runtime::{ActivityContext, FunctionOptions, Registry};
/// use courier_core::TaskError;
/// let mut registry = Registry::default();
/// registry.activity("double", FunctionOptions::default(), |_ctx: ActivityContext, n: i64| async move {
///     Ok::<_, TaskError>(n * 2)
/// });
/// assert!(registry.contains("double"));
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    functions: HashMap<String, FunctionDef>,
}

fn decode<A: DeserializeOwned>(function: &str, args: Value) -> Result<A, TaskError> {
    serde_json::from_value(args).map_err(|e| {
        TaskError::non_retryable(
            TaskError::SERIALIZATION,
            format!("arguments of {function} do not match its signature: {e}"),
        )
    })
}

fn encode<R: Serialize>(function: &str, result: R) -> Result<Value, TaskError> {
    serde_json::to_value(result).map_err(|e| {
        TaskError::non_retryable(
            TaskError::SERIALIZATION,
            format!("result of {function} cannot be stored as JSON: {e}"),
        )
    })
}

impl Registry {
    /// Registers an activity: ordinary async code with side effects, retried by
    /// its policy. Arguments and result are serde types, stored as JSON.
    pub fn activity<F, Fut, A, R>(&mut self, name: &str, options: FunctionOptions, f: F) -> &mut Self
    where
        F: Fn(ActivityContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let function = name.to_string();
        let handler: ActivityFn = Arc::new(move |ctx, args| {
            let function = function.clone();
            match decode::<A>(&function, args) {
                Ok(args) => {
                    let fut = f(ctx, args);
                    async move { encode(&function, fut.await?) }.boxed_local()
                }
                Err(e) => futures::future::ready(Err(e)).boxed_local(),
            }
        });
        self.functions.insert(
            name.to_string(),
            FunctionDef {
                kind: TaskKind::Activity,
                options,
                handler: Some(Handler::Activity(handler)),
            },
        );
        self
    }

    /// Registers an orchestrator: deterministic code that calls activities,
    /// sleeps and waits for signals through its [`OrchestratorContext`], and is
    /// replayed from history after a crash.
    pub fn orchestrator<F, Fut, A, R>(&mut self, name: &str, options: FunctionOptions, f: F) -> &mut Self
    where
        F: Fn(OrchestratorContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, TaskError>> + 'static,
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
    {
        let function = name.to_string();
        let handler: OrchestratorFn = Arc::new(move |ctx, args| {
            let function = function.clone();
            match decode::<A>(&function, args) {
                Ok(args) => {
                    let fut = f(ctx, args);
                    async move { encode(&function, fut.await?) }.boxed_local()
                }
                Err(e) => futures::future::ready(Err(e)).boxed_local(),
            }
        });
        self.functions.insert(
            name.to_string(),
            FunctionDef {
                kind: TaskKind::Orchestrator,
                options,
                handler: Some(Handler::Orchestrator(handler)),
            },
        );
        self
    }

    /// Declares an activity that runs on an external worker (over HTTP), so that
    /// dispatches and calls of it use these options (queue, retry policy,
    /// concurrency cap, ...). This node never claims it.
    pub fn external(&mut self, name: &str, options: FunctionOptions) -> &mut Self {
        self.functions.insert(
            name.to_string(),
            FunctionDef {
                kind: TaskKind::Activity,
                options,
                handler: None,
            },
        );
        self
    }

    /// Whether `name` is registered here.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&FunctionDef> {
        self.functions.get(name)
    }

    /// Names of the functions this node runs itself (not the external ones).
    pub fn runnable(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .iter()
            .filter(|(_, def)| def.handler.is_some())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every function's kind and options, frozen for a running node.
    pub(crate) fn table(&self) -> FunctionTable {
        FunctionTable::new(
            self.functions
                .iter()
                .map(|(name, def)| (name.clone(), (def.kind, def.options.clone())))
                .collect(),
        )
    }
}
