//! An open event stream (`GET …/events`) holds a [`StreamLease`] (DESIGN §7): one of
//! its owner's slots on this API process, a credential checked again while the stream
//! is open, and a bounded lifetime. Without them one owner could hold thousands of
//! idle streams, and a revoked key could keep reading for days.
use std::time::Instant;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use uuid::Uuid;

use super::{App, AppError};
use crate::{auth::Caller, domain::ErrorCode};

/// How many streams an owner may hold open, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Open streams per owner on one API process.
    pub per_owner: u32,
    /// A stream ends after this long; clients reconnect.
    pub max_age: Duration,
    /// How often an open stream checks its credential again.
    pub recheck: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_owner: 256,
            max_age: Duration::from_secs(3600),
            recheck: crate::config::MAX_STREAM_RECHECK,
        }
    }
}

/// Open streams per owner on this process.
#[derive(Default)]
pub(crate) struct OpenStreams {
    by_owner: Mutex<HashMap<Uuid, u32>>,
}

impl OpenStreams {
    fn try_take(&self, owner: Uuid, limit: u32) -> bool {
        let mut by_owner = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        let open = by_owner.entry(owner).or_default();
        if *open >= limit {
            return false;
        }
        *open += 1;
        true
    }

    fn give_back(&self, owner: Uuid) {
        let mut by_owner = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = by_owner.get_mut(&owner) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_owner.remove(&owner);
            }
        }
    }

    #[cfg(test)]
    fn open(&self, owner: Uuid) -> u32 {
        let by_owner = self.by_owner.lock().unwrap_or_else(|e| e.into_inner());
        by_owner.get(&owner).copied().unwrap_or(0)
    }
}

/// Why a stream must end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// It reached `max_age`; the client reconnects.
    Aged,
    /// Its credential was revoked or expired (or now names another owner).
    CredentialGone,
}

/// A stream's slot; dropping it (the client went away or the stream ended) frees it.
pub struct StreamLease {
    streams: Arc<OpenStreams>,
    owner: Uuid,
    /// The credential as presented, to check again; kept only in memory, for the
    /// stream's life.
    credential: String,
    limits: StreamLimits,
    opened: Instant,
    checked: Instant,
}

impl std::fmt::Debug for StreamLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLease")
            .field("owner", &self.owner)
            .field("credential", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.streams.give_back(self.owner);
    }
}

impl App {
    /// Takes one of the caller's stream slots, or refuses with 403 `QUOTA_EXCEEDED`.
    pub fn open_stream(&self, caller: &Caller, credential: &str) -> Result<StreamLease, AppError> {
        let limits = self.settings.streams;
        if !self.streams.try_take(caller.owner_id, limits.per_owner) {
            return Err(AppError::client(
                ErrorCode::QuotaExceeded,
                format!(
                    "this owner already has {} open event streams, the most allowed; close one or poll the status",
                    limits.per_owner
                ),
            ));
        }
        let now = Instant::now();
        Ok(StreamLease {
            streams: Arc::clone(&self.streams),
            owner: caller.owner_id,
            credential: credential.to_string(),
            limits,
            opened: now,
            checked: now,
        })
    }

    /// Whether the stream may go on: not too old, and (checked every `recheck`, past
    /// the key cache) its credential still names its owner. A database that does not
    /// answer keeps the stream open; the next check tries again.
    pub async fn stream_may_continue(&self, lease: &mut StreamLease) -> Result<(), StreamEnd> {
        if lease.opened.elapsed() >= lease.limits.max_age {
            return Err(StreamEnd::Aged);
        }
        if lease.checked.elapsed() < lease.limits.recheck {
            return Ok(());
        }
        match self.keys.recheck(&self.store, &lease.credential).await {
            Ok(crate::auth::Credential::Valid(caller)) if caller.owner_id == lease.owner => {
                lease.checked = Instant::now();
                Ok(())
            }
            Ok(_) => Err(StreamEnd::CredentialGone),
            Err(e) => {
                tracing::warn!(owner = %lease.owner, "event stream: credential check failed: {e}");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestApp;

    fn limits(per_owner: u32, max_age: Duration, recheck: Duration) -> StreamLimits {
        StreamLimits {
            per_owner,
            max_age,
            recheck,
        }
    }

    #[tokio::test]
    async fn an_owner_holds_at_most_per_owner_streams_and_a_dropped_one_frees_its_slot() {
        let t = TestApp::with_stream_limits(limits(
            2,
            Duration::from_secs(60),
            Duration::from_secs(30),
        ))
        .await;
        let a = t.app.open_stream(&t.caller, &t.api_key).unwrap();
        let _b = t.app.open_stream(&t.caller, &t.api_key).unwrap();
        match t.app.open_stream(&t.caller, &t.api_key) {
            Err(AppError::Client { code, .. }) => assert_eq!(code, ErrorCode::QuotaExceeded),
            other => panic!("third stream: {other:?}"),
        }
        // Another owner has slots of its own.
        let other = Caller {
            owner_id: Uuid::new_v4(),
            owner_name: "other".into(),
            browser: None,
        };
        let _c = t.app.open_stream(&other, "key").unwrap();
        drop(a);
        assert_eq!(t.app.streams.open(t.caller.owner_id), 1);
        let _d = t.app.open_stream(&t.caller, &t.api_key).unwrap();
        assert_eq!(t.app.streams.open(t.caller.owner_id), 2);
    }

    /// Moves the lease's clocks back, as if `by` had passed.
    fn age(lease: &mut StreamLease, by: Duration) {
        lease.opened -= by;
        lease.checked -= by;
    }

    #[tokio::test]
    async fn a_stream_ends_at_its_max_age() {
        let t = TestApp::with_stream_limits(limits(
            4,
            Duration::from_secs(60),
            Duration::from_secs(30),
        ))
        .await;
        let mut lease = t.app.open_stream(&t.caller, &t.api_key).unwrap();
        age(&mut lease, Duration::from_secs(59));
        assert_eq!(t.app.stream_may_continue(&mut lease).await, Ok(()));
        age(&mut lease, Duration::from_secs(1));
        assert_eq!(
            t.app.stream_may_continue(&mut lease).await,
            Err(StreamEnd::Aged)
        );
    }

    #[tokio::test]
    async fn a_revoked_key_ends_the_stream_at_the_next_recheck_despite_the_key_cache() {
        let t = TestApp::with_stream_limits(limits(
            4,
            Duration::from_secs(3600),
            Duration::from_secs(5),
        ))
        .await;
        let mut lease = t.app.open_stream(&t.caller, &t.api_key).unwrap();
        age(&mut lease, Duration::from_secs(5));
        assert_eq!(t.app.stream_may_continue(&mut lease).await, Ok(()));
        t.revoke_key().await;
        // Still cached as valid for new requests, and not yet time to check again.
        assert!(t.app.authenticate(Some(&t.api_key)).await.is_ok());
        age(&mut lease, Duration::from_secs(4));
        assert_eq!(t.app.stream_may_continue(&mut lease).await, Ok(()));
        // The check goes past the cache to the store.
        age(&mut lease, Duration::from_secs(1));
        assert_eq!(
            t.app.stream_may_continue(&mut lease).await,
            Err(StreamEnd::CredentialGone)
        );
        // It refreshed the cache: new requests with the key fail at once too.
        assert!(t.app.authenticate(Some(&t.api_key)).await.is_err());
    }
}
