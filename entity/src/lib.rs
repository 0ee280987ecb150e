//! sea-orm entities: the database is partway's source of truth.
//!
//! Text columns hold enums (`status`, `provider`, job `kind` and `state`) as their
//! lowercase or contract spelling so that rows stay readable with `psql`/`sqlite3`;
//! they are typed here (sea-orm active enums), so an unknown stored value is an error
//! when the row is read, never a silent default.

pub mod api_key;
pub mod browser_token;
pub mod event;
pub mod idempotency_key;
pub mod job;
pub mod owner;
pub mod upload;
pub mod upload_part;
pub mod webhook;
pub mod webhook_attempt;
pub mod webhook_delivery;
