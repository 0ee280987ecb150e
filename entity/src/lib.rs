//! sea-orm entities: the database is partway's source of truth.
//!
//! Text columns hold enums (`status`, `provider`, job `kind`) as their lowercase or
//! contract spelling so that rows stay readable with `psql`/`sqlite3`; the domain
//! crate parses them back.

pub mod api_key;
pub mod idempotency_key;
pub mod job;
pub mod owner;
pub mod upload;
pub mod upload_part;
