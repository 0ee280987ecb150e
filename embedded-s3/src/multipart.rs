//! Multipart upload state on disk, so that uploads survive a restart.
//!
//! ```text
//! <root>/.multipart/<upload-id>/upload.json            UploadState (its presence = upload exists)
//! <root>/.multipart/<upload-id>/part-<NNNNN>-<md5hex>  one file per part; name carries the ETag
//! <root>/.multipart/<upload-id>/tmp-<uuid>             in-flight writes, renamed into place
//! ```
//!
//! No name here embeds the object key (it is in `upload.json`), so keys of any
//! length S3 allows fit; the completed object's sidecar is named by a hash
//! (`layout.rs`).
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
        fs::create_dir_all(layout::sidecar_dir(root))?;
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
    /// with its sidecar (see `layout.rs`), then removes the upload. Returns the
    /// multipart ETag (unquoted). The parts must have been validated; call with
    /// the upload's lock held.
    ///
    /// The object appears last, by one rename, after everything that can fail:
    /// on error no object is visible at the key (an earlier object there stays)
    /// and the upload is left as it was, so the complete can be retried.
    pub fn complete(
        &self,
        id: Uuid,
        state: &UploadState,
        parts: &[StoredPart],
    ) -> io::Result<String> {
        let tmp_object = self.tmp_path(id);
        let result = self.write_object(id, &tmp_object, state, parts);
        let _ = fs::remove_file(&tmp_object);
        let e_tag = result?;
        // The object is in place: the complete happened whatever follows. An
        // upload that cannot be removed now is only a leftover (also removed
        // at the next start once its upload.json is gone).
        if let Err(e) = self.remove(id) {
            warn!(upload_id = %id, error = %e, "completed, but could not remove the multipart upload");
        }
        Ok(e_tag)
    }

    fn write_object(
        &self,
        id: Uuid,
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
        // A directory at the key (other keys below it) would make the final
        // rename fail: find out before anything is replaced.
        if object_path.is_dir() {
            return Err(io::Error::other(format!(
                "{} is a directory",
                object_path.display()
            )));
        }

        let sidecar = layout::Sidecar {
            bucket: state.bucket.clone(),
            key: state.key.clone(),
            e_tag: e_tag.clone(),
            attributes: state.attributes.clone(),
        };
        let sidecar_bytes = serde_json::to_vec(&sidecar).map_err(io::Error::other)?;
        let sidecar_path = layout::sidecar_path(&self.root, &state.bucket, &state.key);
        write_atomic(&self.upload_dir(id), &sidecar_path, &sidecar_bytes)?;

        // Last: the object becomes visible. Should even this fail, take the
        // sidecar back so it does not describe another object at the key (an
        // earlier object there then falls back to s3s-fs's sidecars or none).
        if let Err(e) = fs::rename(tmp_object, &object_path) {
            let _ = fs::remove_file(&sidecar_path);
            return Err(e);
        }
        // s3s-fs's sidecars of an earlier object at this key are stale now;
        // the hashed sidecar takes precedence anyway, so this is tidying only.
        for stale in [
            layout::metadata_path(&self.root, &state.bucket, &state.key),
            layout::internal_info_path(&self.root, &state.bucket, &state.key),
        ]
        .into_iter()
        .flatten()
        {
            let _ = fs::remove_file(stale);
        }
        debug!(upload_id = %id, object = %object_path.display(), %e_tag, "multipart upload completed");
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

    /// A store under a fresh root with bucket `b` and one upload of `key`
    /// holding one part.
    fn one_part_upload(
        key: &str,
    ) -> (
        tempfile::TempDir,
        MultipartStore,
        Uuid,
        UploadState,
        StoredPart,
    ) {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("b")).unwrap();
        let store = MultipartStore::open(root.path()).unwrap();
        let state = UploadState {
            bucket: "b".into(),
            key: key.into(),
            initiated_unix_ms: now_unix_ms(),
            attributes: ObjectAttributes {
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
        };
        let id = store.create(&state).unwrap();
        let data = b"hello";
        let md5_hex = hex::encode(Md5::digest(data));
        let tmp = store.tmp_path(id);
        fs::write(&tmp, data).unwrap();
        assert!(store.commit_part(id, 1, &md5_hex, &tmp).unwrap());
        let part = store.parts(id).unwrap().remove(&1).unwrap();
        (root, store, id, state, part)
    }

    /// Keys up to S3's 1024 bytes (255 between slashes, multi-byte characters
    /// included) complete, and leave nothing behind but the object and its
    /// sidecar.
    #[test]
    fn a_1024_byte_key_completes() {
        let segment = format!("{}x", "é".repeat(127)); // 255 bytes
        let key = format!("x/{segment}/{segment}/{segment}/{}", "k".repeat(254));
        assert_eq!(key.len(), 1024);
        let (root, store, id, state, part) = one_part_upload(&key);
        let e_tag = store.complete(id, &state, &[part]).unwrap();

        let object = layout::object_path(root.path(), "b", &key);
        assert_eq!(fs::read(&object).unwrap(), b"hello");
        let sidecar = layout::read_sidecar(root.path(), "b", &key)
            .unwrap()
            .unwrap();
        assert_eq!(sidecar.e_tag, e_tag);
        assert_eq!(
            sidecar.attributes.content_type.as_deref(),
            Some("text/plain")
        );
        assert!(store.load(id).unwrap().is_none());
        assert!(!store.upload_dir(id).exists());
        let top: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut top = top;
        top.sort();
        assert_eq!(top, [MULTIPART_DIR, layout::SIDECAR_DIR, "b"]);
    }

    /// A complete that fails shows no object at the key and keeps the upload,
    /// so it can be retried.
    #[test]
    fn a_failed_complete_leaves_no_object_and_keeps_the_upload() {
        let (root, store, id, state, part) = one_part_upload("dir/k.txt");
        // The sidecar cannot be written: its directory is a file.
        let sidecars = layout::sidecar_dir(root.path());
        fs::remove_dir(&sidecars).unwrap();
        fs::write(&sidecars, b"").unwrap();

        assert!(store
            .complete(id, &state, std::slice::from_ref(&part))
            .is_err());
        assert!(!layout::object_path(root.path(), "b", "dir/k.txt").exists());
        assert!(store.load(id).unwrap().is_some());
        assert_eq!(store.parts(id).unwrap().len(), 1);
        let leftovers: Vec<_> = fs::read_dir(store.upload_dir(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(TMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // Repaired, the same complete succeeds.
        fs::remove_file(&sidecars).unwrap();
        fs::create_dir(&sidecars).unwrap();
        store.complete(id, &state, &[part]).unwrap();
        assert!(layout::object_path(root.path(), "b", "dir/k.txt").is_file());
    }
}
