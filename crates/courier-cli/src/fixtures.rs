//! Test fixtures `courier serve` registers when `testing.fixtures` is on: the
//! functions Courier's own cluster and fault tests run on real nodes.
//!
//! Their side effects are lines appended to `testing.effects_file` (one
//! `write` per line on a file opened for appending, so lines from several
//! processes never interleave), which lets a test count how often each activity
//! really ran, on which node, and when:
//!
//! ```text
//! start <key> <node> <pid> <unix-nanos>
//! end <key> <node> <pid> <unix-nanos>
//! ```
//!
//! * `fixture.effect` `{"key", "sleep_ms"}`: writes `start`, sleeps, writes `end`,
//!   returns the key. An `end` line is the side effect a retry must not repeat
//!   once its completion was committed.
//! * `fixture.limited`: the same, with `max_concurrent = 2` cluster-wide.
//! * `fixture.pipeline` `{"key", "steps", "sleep_ms"}`: an orchestrator calling
//!   `fixture.effect` `steps` times in sequence (keys `<key>/<i>`); returns `steps`.
//! * `fixture.notifying` `{"key", "user", "steps", "sleep_ms"}`: the same
//!   pipeline, and before each step it notifies `user` (one notification per
//!   step) and updates one progress toast grouped by the execution, so a test can
//!   count that a replay sends nothing twice.
//! * `fixture.family` `{"key", "children", "steps", "sleep_ms"}`: an orchestrator
//!   starting `children` child executions of `fixture.pipeline` (keys
//!   `<key>/c<i>`, `steps` each) and awaiting them all; returns the sum of their
//!   results.
//!
//! Off by default; production nodes never register them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use courier_core::{Progress, Target, TaskError};
use courier_runtime::{ActivityContext, CourierBuilder, FunctionOptions, OrchestratorContext};
use serde::{Deserialize, Serialize};

/// Arguments of `fixture.effect` and `fixture.limited`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Effect {
    key: String,
    #[serde(default)]
    sleep_ms: u64,
}

/// Arguments of `fixture.pipeline`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pipeline {
    key: String,
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
}

/// Arguments of `fixture.family`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Family {
    key: String,
    children: u32,
    #[serde(default = "one")]
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
}

fn one() -> u32 {
    1
}

/// Arguments of `fixture.notifying`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Notifying {
    key: String,
    user: String,
    steps: u32,
    #[serde(default)]
    sleep_ms: u64,
}

/// Where effects are written, and by whom.
#[derive(Clone)]
struct Journal {
    path: Option<Arc<PathBuf>>,
    node: Arc<str>,
}

impl Journal {
    fn write(&self, what: &str, key: &str) -> Result<(), TaskError> {
        let Some(path) = &self.path else { return Ok(()) };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let line = format!("{what} {key} {} {} {nanos}\n", self.node, std::process::id());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.as_ref())
            .map_err(|e| TaskError::new("effects_file", format!("{}: {e}", path.display())))?;
        file.write_all(line.as_bytes())
            .map_err(|e| TaskError::new("effects_file", format!("{}: {e}", path.display())))
    }

    async fn effect(&self, args: Effect) -> Result<String, TaskError> {
        self.write("start", &args.key)?;
        tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
        self.write("end", &args.key)?;
        Ok(args.key)
    }
}

/// Registers the fixtures on `builder`; `node` names this node in the effects.
pub fn register(builder: CourierBuilder, effects_file: &str, node: &str) -> CourierBuilder {
    let journal = Journal {
        path: (!effects_file.is_empty()).then(|| Arc::new(PathBuf::from(effects_file))),
        node: Arc::from(if node.is_empty() { "-" } else { node }),
    };
    let effect = journal.clone();
    let limited = journal;
    builder
        .activity("fixture.effect", move |_: ActivityContext, args: Effect| {
            let journal = effect.clone();
            async move { journal.effect(args).await }
        })
        .activity_with(
            "fixture.limited",
            FunctionOptions::default().max_concurrent(2),
            move |_: ActivityContext, args: Effect| {
                let journal = limited.clone();
                async move { journal.effect(args).await }
            },
        )
        .orchestrator(
            "fixture.pipeline",
            |ctx: OrchestratorContext, args: Pipeline| async move {
                for i in 0..args.steps {
                    let step = Effect {
                        key: format!("{}/{i}", args.key),
                        sleep_ms: args.sleep_ms,
                    };
                    let _: String = ctx.call("fixture.effect", step).await?;
                }
                Ok::<_, TaskError>(args.steps)
            },
        )
        .orchestrator("fixture.family", |ctx: OrchestratorContext, args: Family| async move {
            let mut started = Vec::with_capacity(args.children as usize);
            for i in 0..args.children {
                let pipeline = Pipeline {
                    key: format!("{}/c{i}", args.key),
                    steps: args.steps,
                    sleep_ms: args.sleep_ms,
                };
                started.push(ctx.start_child("fixture.pipeline", pipeline).await?);
            }
            let mut total = 0u32;
            for child in started {
                total += child.result::<u32>().await?;
            }
            Ok::<_, TaskError>(total)
        })
        .orchestrator(
            "fixture.notifying",
            |ctx: OrchestratorContext, args: Notifying| async move {
                for i in 0..args.steps {
                    let message = format!("step {}/{}", i + 1, args.steps);
                    ctx.notify_user(
                        &args.user,
                        "generic",
                        serde_json::json!({ "title": args.key, "message": message }),
                    )
                    .await?;
                    let progress = Progress {
                        percent: Some(f64::from(i) * 100.0 / f64::from(args.steps)),
                        message: Some(message),
                        ..Progress::default()
                    };
                    ctx.notify_progress(Target::User(args.user.clone()), &args.key, &progress)
                        .await?;
                    let step = Effect {
                        key: format!("{}/{i}", args.key),
                        sleep_ms: args.sleep_ms,
                    };
                    let _: String = ctx.call("fixture.effect", step).await?;
                }
                Ok::<_, TaskError>(args.steps)
            },
        )
}
