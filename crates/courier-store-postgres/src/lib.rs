//! Courier Postgres store (being written).
