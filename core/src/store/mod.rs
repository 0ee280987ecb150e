//! Every SQL statement partway runs, in one place (zero2prod's and lldap's "one
//! backend"): the use cases and the job handlers call these methods and never build a
//! query themselves. Works on SQLite (embedded) and PostgreSQL (distributed).
//!
//! - [`uploads`]: upload rows, and the one status compare-and-set ([`Store::transition`]).
//! - [`parts`]: the parts a client reported or storage listed, and the progress counters.
//! - [`jobs`]: the job rows (the outbox): creation, the lease-based claim, outcomes, relay.
//! - [`events`]: events for applications (written with the status change that causes
//!   them), webhook endpoints, deliveries and attempts, the event exchange's relay batches.
//! - [`idempotency`]: remembered `Idempotency-Key`s.
//! - [`history`]: deleting what only records the past (finished jobs, settled deliveries,
//!   old events and keys) after the retention.
//! - [`keys`]: owners and API keys.
//! - [`browser_tokens`]: browser tokens and the count behind their `maxUploads`.
//! - [`owners`]: owners' quota overrides, the per-owner lock and usage count.
//! - [`stats`]: the counts behind the metrics gauges.
//! - [`uppy`]: size-unknown uploads (the Uppy routes): the size fixed at complete, form-POST checks.
use sea_orm::{DatabaseConnection, DbErr};

pub mod browser_tokens;
pub mod events;
pub mod history;
pub mod idempotency;
pub mod jobs;
pub mod keys;
pub mod owners;
pub mod parts;
pub mod stats;
pub mod uploads;
pub mod uppy;

pub use jobs::{OutboxBatch, MAX_ATTEMPTS};
pub use uploads::{ErrorPatch, UploadFilter, UploadPatch};

/// The database, behind the statements partway needs.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    pub fn new(db: DatabaseConnection) -> Store {
        Store { db }
    }

    /// The connection, for migrations and for tests that inspect rows.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    pub async fn close(&self) {
        self.db.clone().close().await.ok();
    }
}

/// Whether a database error means "the database is unreachable" (503, retry) rather
/// than a bug: no connection, a dropped one, a pool that timed out.
pub fn database_unreachable(e: &DbErr) -> bool {
    use sea_orm::{sqlx::Error as Sqlx, RuntimeErr};
    match e {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            matches!(
                inner.as_ref(),
                Sqlx::Io(_)
                    | Sqlx::PoolTimedOut
                    | Sqlx::PoolClosed
                    | Sqlx::WorkerCrashed
                    | Sqlx::Tls(_)
            ) || matches!(
                inner.as_ref(),
                Sqlx::Database(db) if db.code().is_some_and(|c| unavailable_sqlstate(&c))
            )
        }
        _ => false,
    }
}

/// SQLSTATEs that mean the server went away or is not accepting work, not that the
/// statement was wrong: class 08 (connection exception) and 57P01–57P03 (the server
/// terminated the connection: shut down, crashed, or still starting). Seen when
/// PostgreSQL stops in the middle of a query (the chaos soak, issue 15).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod unavailable_tests {
    use super::unavailable_sqlstate;

    #[test]
    fn a_terminated_or_refused_connection_is_unavailable_and_a_bad_statement_is_not() {
        for code in ["57P01", "57P02", "57P03", "08006", "08001", "08003"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "57014", "22001"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }
}
