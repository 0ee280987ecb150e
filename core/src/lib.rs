//! partway's core: domain rules (no I/O), the ports (small traits around storage,
//! job queue and progress cache), their implementations, and the use cases written
//! once against them.
pub mod domain;

pub mod auth;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod jobs;
pub mod metrics;
pub mod ports;
pub mod presign;
pub mod service;
pub mod storage;
