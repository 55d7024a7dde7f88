//! Courier SQLite store (being written).
