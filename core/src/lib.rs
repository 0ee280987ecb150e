//! partway's core: domain rules (no I/O), the ports (small traits around storage, job
//! queue and progress cache) with their in-process implementations, the store (every
//! SQL statement), the use cases written once against them, and the job handlers.
//! See ARCHITECTURE.md at the repository root for how a request and a job flow through.
pub mod domain;

pub mod auth;
pub mod browser_token;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod events;
pub mod jobs;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod ports;
pub mod post_policy;
pub mod presign;
pub mod queue;
pub mod rate_limit;
pub mod storage;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod usecases;

pub use usecases::{App, AppError};
