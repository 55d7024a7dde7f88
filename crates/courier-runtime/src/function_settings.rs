//! `FunctionSettingsWatch`: keeps this node's copy of the functions' stored
//! settings (`PUT /v1/functions/{name}`) fresh.
//!
//! Settings change rarely and are read on every dispatch, so each node keeps
//! them in memory and reads the (small) table again every [`REFRESH`]. A write
//! made through this node applies here at once; one made through another node
//! applies here within [`REFRESH`]. A failed read keeps the last copy and is
//! tried again at the next tick.

use std::time::Duration;

use actix::prelude::*;

use crate::node::Node;

/// How often a node reads the stored settings again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Stop reading (the node is shutting down and will close its store).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopWatch;

/// The actor. See the module documentation.
pub(crate) struct FunctionSettingsWatch {
    node: Node,
    reading: bool,
}

impl FunctionSettingsWatch {
    pub(crate) fn new(node: Node) -> Self {
        FunctionSettingsWatch { node, reading: false }
    }

    fn read(&mut self, ctx: &mut Context<Self>) {
        if self.reading {
            return;
        }
        self.reading = true;
        let (store, table) = (self.node.store().clone(), self.node.functions().clone());
        let writes_seen = table.writes_seen();
        async move { store.list_function_settings().await }
            .into_actor(self)
            .map(move |read, act, _| {
                act.reading = false;
                match read {
                    Ok(records) => table.reload(records, writes_seen),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the functions' settings; keeping the last ones")
                    }
                }
            })
            .spawn(ctx);
    }
}

impl Actor for FunctionSettingsWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The node read them once before it started; from here on, every tick.
        ctx.run_interval(REFRESH, |act, ctx| act.read(ctx));
    }
}

impl Handler<StopWatch> for FunctionSettingsWatch {
    type Result = ();

    fn handle(&mut self, _: StopWatch, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
