//! Multipart upload state on disk, so that uploads survive a restart.
//!
//! ```text
//! <root>/.multipart/<upload-id>/upload.json            UploadState (its presence = upload exists)
//! <root>/.multipart/<upload-id>/part-<NNNNN>-<md5hex>  one file per part; name carries the ETag
//! <root>/.multipart/<upload-id>/tmp-<uuid>             in-flight writes, renamed into place
//! ```
//!
//! All functions here are blocking (std::fs); the S3 layer calls them from
//! `spawn_blocking`. Commits of parts, completion and abort of one upload are
//! serialised by a per-upload async lock ([`MultipartStore::lock`]); part bodies
//! are streamed to a temp file without holding it.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};
use tokio::sync::OwnedMutexGuard;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::layout::{self, ObjectAttributes};

pub(crate) const MULTIPART_DIR: &str = ".multipart";
const STATE_FILE: &str = "upload.json";
const PART_PREFIX: &str = "part-";
const TMP_PREFIX: &str = "tmp-";

/// What CreateMultipartUpload recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UploadState {
    pub bucket: String,
    pub key: String,
    pub initiated_unix_ms: u64,
    #[serde(default)]
    pub attributes: ObjectAttributes,
}

impl UploadState {
    pub fn initiated(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.initiated_unix_ms)
    }
}

/// One stored part.
#[derive(Debug, Clone)]
pub(crate) struct StoredPart {
    pub number: i32,
    /// Lower-case hex MD5 of the part: its ETag, unquoted.
    pub md5_hex: String,
    pub size: u64,
    pub modified: SystemTime,
    pub path: PathBuf,
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn part_file_name(number: i32, md5_hex: &str) -> String {
    format!("{PART_PREFIX}{number:05}-{md5_hex}")
}

fn parse_part_file_name(name: &str) -> Option<(i32, &str)> {
    let rest = name.strip_prefix(PART_PREFIX)?;
    let (num, md5_hex) = rest.split_once('-')?;
    let number: i32 = num.parse().ok()?;
    let valid_md5 = md5_hex.len() == 32 && md5_hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid_md5.then_some((number, md5_hex))
}

/// Writes `bytes` to `dest` atomically (temp file in `tmp_dir` + rename).
fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_dir.join(format!("{TMP_PREFIX}{}", Uuid::new_v4()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        drop(f);
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[derive(Debug)]
pub(crate) struct MultipartStore {
    /// The (canonical) storage root shared with s3s-fs.
    root: PathBuf,
    /// `<root>/.multipart`
    dir: PathBuf,
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

impl MultipartStore {
    /// Opens (creating if needed) the multipart area under `root`, dropping
    /// leftovers of interrupted writes and of half-removed uploads.
    pub fn open(root: &Path) -> io::Result<Self> {
        let dir = root.join(MULTIPART_DIR);
        fs::create_dir_all(&dir)?;
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let upload_dir = entry.path();
            if !upload_dir.join(STATE_FILE).exists() {
                debug!(dir = %upload_dir.display(), "removing leftover of a finished upload");
                let _ = fs::remove_dir_all(&upload_dir);
                continue;
            }
            for file in fs::read_dir(&upload_dir)? {
                let file = file?;
                if file.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(file.path());
                }
            }
        }
        Ok(Self {
            root: root.to_owned(),
            dir,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn upload_dir(&self, id: Uuid) -> PathBuf {
        self.dir.join(id.hyphenated().to_string())
    }

    /// A fresh temp path inside the upload's directory (same file system as
    /// the parts and the buckets, so renames are atomic).
    pub fn tmp_path(&self, id: Uuid) -> PathBuf {
        self.upload_dir(id)
            .join(format!("{TMP_PREFIX}{}", Uuid::new_v4()))
    }

    /// Serialises state changes of one upload.
    pub async fn lock(&self, id: Uuid) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(id).or_default())
        };
        mutex.lock_owned().await
    }

    fn forget_lock(&self, id: Uuid) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.remove(&id);
    }

    pub fn create(&self, state: &UploadState) -> io::Result<Uuid> {
        let id = Uuid::new_v4();
        let dir = self.upload_dir(id);
        fs::create_dir(&dir)?;
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        if let Err(e) = write_atomic(&dir, &dir.join(STATE_FILE), &bytes) {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(id)
    }

    pub fn load(&self, id: Uuid) -> io::Result<Option<UploadState>> {
        match fs::read(self.upload_dir(id).join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored parts by part number. Should two files exist for one part
    /// number (a crash between rename and cleanup), the newest wins.
    pub fn parts(&self, id: Uuid) -> io::Result<BTreeMap<i32, StoredPart>> {
        let mut parts: BTreeMap<i32, StoredPart> = BTreeMap::new();
        let entries = match fs::read_dir(self.upload_dir(id)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(parts),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some((number, md5_hex)) = name.to_str().and_then(parse_part_file_name) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // replaced concurrently
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let part = StoredPart {
                number,
                md5_hex: md5_hex.to_ascii_lowercase(),
                size: meta.len(),
                modified: meta.modified()?,
                path: entry.path(),
            };
            match parts.get(&number) {
                Some(existing) if existing.modified > part.modified => {}
                _ => {
                    parts.insert(number, part);
                }
            }
        }
        Ok(parts)
    }

    /// Moves a fully written part into place, replacing any earlier upload of
    /// the same part number. Returns `false` (and removes `tmp`) if the upload
    /// no longer exists. Call with the upload's lock held.
    pub fn commit_part(
        &self,
        id: Uuid,
        number: i32,
        md5_hex: &str,
        tmp: &Path,
    ) -> io::Result<bool> {
        let dir = self.upload_dir(id);
        if !dir.join(STATE_FILE).exists() {
            let _ = fs::remove_file(tmp);
            return Ok(false);
        }
        let file_name = part_file_name(number, md5_hex);
        fs::rename(tmp, dir.join(&file_name))?;
        let prefix = format!("{PART_PREFIX}{number:05}-");
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(&prefix) && name != file_name {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(true)
    }

    /// Removes an upload and its parts. Returns `false` if it did not exist.
    /// Call with the upload's lock held.
    pub fn remove(&self, id: Uuid) -> io::Result<bool> {
        let dir = self.upload_dir(id);
        match fs::remove_file(dir.join(STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        // The upload is gone once upload.json is; the rest is cleanup (also
        // retried at the next start).
        if let Err(e) = fs::remove_dir_all(&dir) {
            warn!(dir = %dir.display(), error = %e, "could not remove multipart upload directory");
        }
        self.forget_lock(id);
        Ok(true)
    }

    /// All uploads in progress.
    pub fn uploads(&self) -> io::Result<Vec<(Uuid, UploadState)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            if let Some(state) = self.load(id)? {
                out.push((id, state));
            }
        }
        Ok(out)
    }

    /// Writes the concatenation of `parts` as the object `state.bucket/state.key`
    /// in s3s-fs's layout, then removes the upload. Returns the multipart ETag
    /// (unquoted). The parts must have been validated; call with the upload's
    /// lock held. On error the upload is left as it was.
    pub fn complete(
        &self,
        id: Uuid,
        state: &UploadState,
        parts: &[StoredPart],
    ) -> io::Result<String> {
        let dir = self.upload_dir(id);
        let tmp_object = self.tmp_path(id);
        let result = self.write_object(id, &dir, &tmp_object, state, parts);
        let _ = fs::remove_file(&tmp_object);
        let e_tag = result?;
        self.remove(id)?;
        Ok(e_tag)
    }

    fn write_object(
        &self,
        id: Uuid,
        dir: &Path,
        tmp_object: &Path,
        state: &UploadState,
        parts: &[StoredPart],
    ) -> io::Result<String> {
        let mut out = File::create(tmp_object)?;
        let mut md5_of_md5s = Md5::new();
        for part in parts {
            let mut input = File::open(&part.path)?;
            // std::io::copy between files uses copy_file_range on Linux.
            let copied = io::copy(&mut input, &mut out)?;
            if copied != part.size {
                return Err(io::Error::other(format!(
                    "part {} changed size while completing ({} != {})",
                    part.number, copied, part.size
                )));
            }
            let digest = hex::decode(&part.md5_hex).map_err(io::Error::other)?;
            md5_of_md5s.update(&digest);
        }
        out.flush()?;
        drop(out);
        let e_tag = format!("{}-{}", hex::encode(md5_of_md5s.finalize()), parts.len());

        let object_path = layout::object_path(&self.root, &state.bucket, &state.key);
        if let Some(parent) = object_path.parent() {
            fs::create_dir_all(parent)?;
        }
        let attributes = serde_json::to_vec(&state.attributes).map_err(io::Error::other)?;
        let metadata_tmp = self.tmp_path(id);
        let info_tmp = self.tmp_path(id);
        let result = (|| {
            fs::write(&metadata_tmp, &attributes)?;
            fs::write(&info_tmp, layout::internal_info_json(&e_tag))?;
            fs::rename(tmp_object, &object_path)?;
            fs::rename(
                &metadata_tmp,
                layout::metadata_path(&self.root, &state.bucket, &state.key),
            )?;
            fs::rename(
                &info_tmp,
                layout::internal_info_path(&self.root, &state.bucket, &state.key),
            )
        })();
        let _ = fs::remove_file(&metadata_tmp);
        let _ = fs::remove_file(&info_tmp);
        result?;
        debug!(upload_id = %id, dir = %dir.display(), object = %object_path.display(), %e_tag, "multipart upload completed");
        Ok(e_tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_file_names_round_trip() {
        let md5 = "0123456789abcdef0123456789abcdef";
        let name = part_file_name(42, md5);
        assert_eq!(name, format!("part-00042-{md5}"));
        assert_eq!(parse_part_file_name(&name), Some((42, md5)));
        assert_eq!(parse_part_file_name("part-10000-short"), None);
        assert_eq!(parse_part_file_name("tmp-1234"), None);
    }
}
