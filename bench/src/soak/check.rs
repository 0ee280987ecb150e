//! The invariants checked once faults have stopped and clients have finished.
use std::collections::{BTreeMap, BTreeSet};

use super::client::{Api, Outcome, Record, Verified};
use crate::Result;

#[derive(Default, Debug)]
pub struct Verdict {
    /// Client-completed uploads missing on storage or with the wrong sha256.
    pub lost: Vec<String>,
    /// Objects on storage no completed upload accounts for, or one key completed twice.
    pub duplicates: Vec<String>,
    /// Aborted or expired uploads whose multipart upload is still on storage.
    pub aborted_leftovers: Vec<String>,
    /// Jobs still pending or running, or failed without a recorded reason.
    pub unfinished_jobs: Vec<String>,
    /// Uploads whose API status disagrees with storage.
    pub status_mismatches: Vec<String>,
    /// A repeated complete that did not answer the same completed document.
    pub recomplete_mismatches: Vec<String>,
    /// Terminal events of uploads that reached that status, never delivered.
    pub undelivered_events: Vec<String>,
    /// Uploads of a CLI file left unfinished beside the one the CLI finished.
    pub left_behind: Vec<String>,
    /// (resume token, status the API reports) of every upload a client started.
    pub statuses: Vec<(String, String)>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.duplicates.is_empty()
            && self.aborted_leftovers.is_empty()
            && self.unfinished_jobs.is_empty()
            && self.status_mismatches.is_empty()
            && self.recomplete_mismatches.is_empty()
            && self.undelivered_events.is_empty()
            && self.left_behind.is_empty()
    }
}

async fn object_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page?.contents() {
            if let Some(k) = o.key() {
                keys.insert(k.to_string());
            }
        }
    }
    Ok(keys)
}

async fn multipart_ids(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    let mut key_marker: Option<String> = None;
    let mut id_marker: Option<String> = None;
    loop {
        let page = s3
            .list_multipart_uploads()
            .bucket(bucket)
            .set_key_marker(key_marker.clone())
            .set_upload_id_marker(id_marker.clone())
            .send()
            .await?;
        for u in page.uploads() {
            if let Some(id) = u.upload_id() {
                ids.insert(id.to_string());
            }
        }
        if page.is_truncated() != Some(true) {
            return Ok(ids);
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
    }
}

/// Jobs not finished yet (pending or running).
async fn busy_jobs(db_url: &str) -> Result<u64> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(db_url).await?;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM jobs WHERE state IN ('pending', 'running')",
        ))
        .await?;
    db.close().await?;
    let n: i64 = row.map(|r| r.try_get("", "n")).transpose()?.unwrap_or(0);
    Ok(n as u64)
}

/// Polls until no job is pending or running (the last aborts' and expiries' storage
/// calls), or the deadline; what is left then is reported by `run`.
pub async fn settle(db_url: &str, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match busy_jobs(db_url).await {
            Ok(0) => return,
            Ok(_) | Err(_) if std::time::Instant::now() > deadline => return,
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
}

pub async fn run(
    api: &Api,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    db_url: &str,
    records: &[Record],
) -> Result<Verdict> {
    let mut v = Verdict::default();
    let objects = object_keys(s3, bucket).await?;
    let multiparts = multipart_ids(s3, bucket).await?;

    let mut completed_keys: BTreeMap<&str, u32> = BTreeMap::new();
    for r in records {
        // The API's word on every upload a client started, against storage.
        let (code, doc) = api.status(&r.token).await?;
        let status = doc["status"].as_str().unwrap_or("?").to_string();
        let key = doc["fileKey"].as_str().unwrap_or(&r.file_key).to_string();
        let on_storage = objects.contains(&key);
        let mp_left = !r.upload_id.is_empty() && multiparts.contains(&r.upload_id);
        if r.outcome == Outcome::Completed {
            *completed_keys.entry(r.file_key.as_str()).or_default() += 1;
            // Verified by the client the moment it saw the upload completed (then deleted).
            match &r.verified {
                Verified::Ok => {}
                Verified::WrongSha256(sha) => v.lost.push(format!(
                    "{}: object {} has sha256 {sha}, content {}",
                    r.token, r.file_key, r.sha256
                )),
                Verified::Missing | Verified::No => v
                    .lost
                    .push(format!("{}: no object {}", r.token, r.file_key)),
            }
        }
        if r.deleted && on_storage {
            // Written again after the client verified and deleted it: a second complete.
            v.duplicates
                .push(format!("{key}: object back after the client deleted it"));
        }
        if matches!(r.outcome, Outcome::Aborted | Outcome::Expired) && mp_left {
            v.aborted_leftovers.push(format!(
                "{} ({status}): multipart {} left",
                r.token, r.upload_id
            ));
        }
        let agrees = match status.as_str() {
            // A client that verified its object deleted it.
            "completed" => (on_storage || r.deleted) && !mp_left,
            "aborted" | "expired" | "failed" => !on_storage && !mp_left,
            // In progress: a multipart upload, no object yet.
            "active" | "paused" => !on_storage && (mp_left || r.upload_id.is_empty()),
            _ => false,
        };
        v.statuses.push((r.token.clone(), status.clone()));
        if code != 200 || !agrees {
            v.status_mismatches.push(format!(
                "{}: API {code} {status}, object {on_storage}, multipart {mp_left}, client {:?}",
                r.token, r.outcome
            ));
        }
    }
    for (k, n) in &completed_keys {
        if *n > 1 {
            v.duplicates.push(format!("{k} completed {n} times"));
        }
    }
    let accounted: BTreeSet<&str> = completed_keys.keys().copied().collect();
    for k in &objects {
        if !accounted.contains(k.as_str()) {
            // An object a client did not see complete: only a duplicate if the API does
            // not report its upload completed either (a client that gave up may have
            // missed the answer).
            let known = records.iter().any(|r| {
                r.file_key == *k && !matches!(r.outcome, Outcome::Aborted | Outcome::Expired)
            });
            if !known {
                v.duplicates
                    .push(format!("{k}: object of no completed upload"));
            }
        }
    }

    use sea_orm::{ConnectionTrait, Database, Statement};
    let db = Database::connect(db_url).await?;
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id::text AS id, kind::text AS kind, state::text AS state, \
             COALESCE(last_error, '') AS last_error FROM jobs \
             WHERE state IN ('pending', 'running') \
                OR (state = 'failed' AND COALESCE(last_error, '') = '')",
        ))
        .await?;
    for row in rows {
        let id: String = row.try_get("", "id")?;
        let kind: String = row.try_get("", "kind")?;
        let state: String = row.try_get("", "state")?;
        v.unfinished_jobs.push(format!("{kind} job {id} {state}"));
    }
    db.close().await?;
    Ok(v)
}
