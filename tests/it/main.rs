//! partway's integration tests, as one test binary (`cargo test --test it`): each module
//! used to be its own binary that linked the whole app again. Run one module with a
//! filter, e.g. `scripts/test upload_flow::` or `cargo test --test it contract::`.
//!
//! The tests share one process when the runner is plain `cargo test` (cargo-nextest runs
//! each in its own), so they keep to per-test state: every server they start binds port 0
//! (or one the OS just handed out, `common::private::free_port`) and has its own temp data
//! dir, database, bucket and queue prefix; configuration and child-process environments are
//! passed explicitly, never through `std::env::set_var`.
mod common;

mod browser_tokens;
mod cli;
mod compose;
mod contract;
mod distributed;
mod operations;
mod outages;
mod quotas;
mod rate_limits;
mod security;
mod slow_clients;
mod upload_flow;
mod upload_page;
mod uppy;
mod uppy_browser;
mod webhooks;
