//! The cases, grouped as the `Store` trait groups its methods. Each takes a fresh
//! store and panics on any deviation from the contract.

pub mod cache;
pub mod changes;
pub mod child_executions;
pub mod children;
pub mod claims;
pub mod cleanup;
pub mod completion;
pub mod counters;
pub mod dead_letters;
pub mod event_log;
pub mod executions;
pub mod functions;
pub mod maintenance;
pub mod nodes;
pub mod notifications;
pub mod nul;
pub mod pauses;
pub mod rate_limits;
pub mod schedules;
pub mod signals;
pub mod tasks;
pub mod webhooks;
