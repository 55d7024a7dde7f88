//! The runtime's behaviour tests, in-process and over loopback HTTP, as one
//! test binary: each module used to be a binary of its own, and linking thirteen
//! copies of the runtime and its support code was a large part of the suite's
//! build. The cluster and fault tests, which start `courier serve` processes,
//! stay binaries of their own (`tests/cluster.rs`, `tests/faults.rs`) so that
//! they never run beside these.

#[path = "../support/mod.rs"]
mod support;

mod cancel_and_expiry;
mod child_executions;
mod concurrency_limit;
mod deterministic;
mod durable_functions;
mod durable_sleep;
mod fairness;
mod fan_out;
mod http_api;
mod http_auth;
mod http_caps;
mod http_functions;
mod http_nodes;
mod http_notifications;
mod http_stats;
mod http_streams;
mod idempotency_and_cache;
mod idle_worker;
mod internal_events;
mod leftovers;
mod notifications;
mod pauses;
mod rate_limits;
mod replay;
mod retries;
mod schedules;
mod seed_behaviours;
mod test_servers;
mod wakeups;
mod webhooks;
mod write_door;
