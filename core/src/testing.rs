//! Doubles for tests without a network: [`MemoryStorage`], an S3 lookalike in memory
//! that enforces S3's rules (parts listed in pages, ETags and sizes checked at
//! completion, an upload gone after complete or abort) and can be told to fail; and
//! [`TestApp`], the whole [`App`] on SQLite in memory with that storage, whose jobs a
//! test runs when it chooses.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use chrono::Utc;
use partway_migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database};

use crate::{
    auth::Caller,
    cache::InMemoryCache,
    crypto::{hash_api_key, MasterKey},
    domain::{Provider, MIN_PART_SIZE},
    outbound::{AllowList, OutboundMode, OutboundPolicy, StaticResolver},
    ports::{
        CompletedObject, JobQueue, JobRun, ObjectStorage, PresignedUrl, SharedStorage,
        StorageError, StorageFactory, StoredPart,
    },
    storage::{StorageCredentials, StorageRegistry, StorageTarget},
    store::Store,
    usecases::{App, Settings},
};

/// ListParts answers at most this many parts per page, like S3.
pub const LIST_PAGE_SIZE: usize = 1000;

/// A storage call a test can make fail once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageCall {
    Create,
    ListParts,
    Complete,
    Abort,
    HeadObject,
}

#[derive(Debug, Default)]
struct MultipartUpload {
    key: String,
    parts: BTreeMap<u32, (String, u64)>,
}

#[derive(Debug, Default)]
struct State {
    uploads: HashMap<String, MultipartUpload>,
    objects: HashMap<String, (u64, String)>,
    failures: HashMap<StorageCall, StorageError>,
    /// Calls that wait until the test lets them go on.
    holds: HashMap<StorageCall, Arc<tokio::sync::Notify>>,
    next_id: u64,
    list_pages: u64,
    completes: u64,
}

/// One bucket in memory.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

impl MemoryStorage {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `call` answers `error` (once).
    pub fn fail_next(&self, call: StorageCall, error: StorageError) {
        self.state().failures.insert(call, error);
    }

    /// The next `call` waits until the returned handle is notified (a slow storage call).
    pub fn hold_next(&self, call: StorageCall) -> Arc<tokio::sync::Notify> {
        let release = Arc::new(tokio::sync::Notify::new());
        self.state().holds.insert(call, release.clone());
        release
    }

    async fn wait_if_held(&self, call: StorageCall) {
        let hold = self.state().holds.remove(&call);
        if let Some(release) = hold {
            release.notified().await;
        }
    }

    fn take_failure(&self, call: StorageCall) -> Result<(), StorageError> {
        match self.state().failures.remove(&call) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// What a client's PUT of `size` bytes to a part URL does; returns the ETag.
    pub fn put_part(&self, upload_id: &str, part_number: u32, size: u64) -> String {
        let etag = format!("{:x}", md5_like(upload_id, part_number, size));
        let mut state = self.state();
        if let Some(upload) = state.uploads.get_mut(upload_id) {
            upload.parts.insert(part_number, (etag.clone(), size));
        }
        etag
    }

    /// Drops a multipart upload as a lifecycle rule or another client would.
    pub fn lose_upload(&self, upload_id: &str) {
        self.state().uploads.remove(upload_id);
    }

    /// What a browser's form POST of `size` bytes to `key` does.
    pub fn put_object(&self, key: &str, size: u64) {
        let etag = format!("{:x}", md5_like(key, 1, size));
        self.state().objects.insert(key.to_string(), (size, etag));
    }

    pub fn object(&self, key: &str) -> Option<(u64, String)> {
        self.state().objects.get(key).cloned()
    }

    pub fn has_upload(&self, upload_id: &str) -> bool {
        self.state().uploads.contains_key(upload_id)
    }

    /// ListParts pages answered so far.
    pub fn list_pages(&self) -> u64 {
        self.state().list_pages
    }

    /// Successful CompleteMultipartUpload calls so far.
    pub fn completes(&self) -> u64 {
        self.state().completes
    }

    fn presigned(&self, what: String, expires_in: Duration) -> PresignedUrl {
        PresignedUrl {
            url: Arc::new(format!("http://storage.invalid/test/{what}")),
            expires_at: Utc::now() + chrono::Duration::from_std(expires_in).unwrap_or_default(),
        }
    }
}

/// A stable stand-in for S3's MD5 ETag (tests need distinct, repeatable values).
fn md5_like(upload_id: &str, part_number: u32, size: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (upload_id, part_number, size).hash(&mut hasher);
    hasher.finish()
}

#[async_trait]
impl ObjectStorage for MemoryStorage {
    async fn create_multipart(
        &self,
        key: &str,
        _content_type: &str,
        _metadata: &BTreeMap<String, String>,
    ) -> Result<String, StorageError> {
        self.wait_if_held(StorageCall::Create).await;
        self.take_failure(StorageCall::Create)?;
        let mut state = self.state();
        if let Some((id, _)) = state.uploads.iter().find(|(_, u)| u.key == key) {
            return Ok(id.clone());
        }
        state.next_id += 1;
        let id = format!("mem-{}", state.next_id);
        state.uploads.insert(
            id.clone(),
            MultipartUpload {
                key: key.to_string(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn presign_upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        part_numbers: &[u32],
        expires_in: Duration,
    ) -> Result<Vec<PresignedUrl>, StorageError> {
        Ok(part_numbers
            .iter()
            .map(|n| {
                self.presigned(
                    format!("{key}?partNumber={n}&uploadId={upload_id}"),
                    expires_in,
                )
            })
            .collect())
    }

    async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<StoredPart>, StorageError> {
        self.take_failure(StorageCall::ListParts)?;
        let mut state = self.state();
        let parts: Vec<StoredPart> = match state.uploads.get(upload_id) {
            Some(upload) if upload.key == key => upload
                .parts
                .iter()
                .map(|(n, (etag, size))| StoredPart {
                    part_number: *n,
                    etag: etag.clone(),
                    size: *size,
                })
                .collect(),
            _ => return Err(StorageError::NoSuchUpload),
        };
        // One ListParts page per LIST_PAGE_SIZE parts (at least one), as S3 answers.
        state.list_pages += parts.len().div_ceil(LIST_PAGE_SIZE).max(1) as u64;
        Ok(parts)
    }

    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<CompletedObject, StorageError> {
        self.take_failure(StorageCall::Complete)?;
        let mut state = self.state();
        let Some(upload) = state.uploads.get(upload_id).filter(|u| u.key == key) else {
            return Err(StorageError::NoSuchUpload);
        };
        let mut size = 0;
        for (i, (number, etag)) in parts.iter().enumerate() {
            if i > 0 && parts[i - 1].0 >= *number {
                return Err(StorageError::InvalidParts("InvalidPartOrder".into()));
            }
            match upload.parts.get(number) {
                Some((stored, part_size)) if stored == etag.trim_matches('"') => {
                    if i + 1 < parts.len() && *part_size < MIN_PART_SIZE {
                        return Err(StorageError::InvalidParts(format!(
                            "EntityTooSmall: part {number}"
                        )));
                    }
                    size += part_size;
                }
                _ => {
                    return Err(StorageError::InvalidParts(format!(
                        "InvalidPart: part {number} was not uploaded or its ETag differs"
                    )))
                }
            }
        }
        let etag = format!("{:x}-{}", md5_like(upload_id, 0, size), parts.len());
        state.uploads.remove(upload_id);
        state.objects.insert(key.to_string(), (size, etag.clone()));
        state.completes += 1;
        Ok(CompletedObject {
            etag,
            location: None,
        })
    }

    async fn abort(&self, _key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.take_failure(StorageCall::Abort)?;
        self.state().uploads.remove(upload_id);
        Ok(())
    }

    async fn head_object(&self, key: &str) -> Result<Option<(u64, String)>, StorageError> {
        self.take_failure(StorageCall::HeadObject)?;
        Ok(self.object(key))
    }

    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        content_disposition: &str,
    ) -> Result<PresignedUrl, StorageError> {
        Ok(self.presigned(
            format!("{key}?download&disposition={content_disposition}"),
            expires_in,
        ))
    }

    fn object_url(&self, key: &str) -> String {
        format!("http://storage.invalid/test/{key}")
    }
}

/// Every target gets the same in-memory bucket.
pub struct MemoryStorageFactory(pub Arc<MemoryStorage>);

impl StorageFactory for MemoryStorageFactory {
    fn storage(&self, _target: &StorageTarget) -> SharedStorage {
        self.0.clone()
    }
}

/// Jobs wait in their rows until the test runs them ([`TestApp::run_jobs`]).
struct ManualQueue;

#[async_trait]
impl JobQueue for ManualQueue {
    async fn wake(&self) {}

    async fn is_ready(&self) -> bool {
        true
    }
}

/// An init of `file_size` bytes named `filename`, with the server's defaults for the rest.
pub fn init_input(filename: &str, file_size: u64) -> crate::usecases::InitInput {
    crate::usecases::InitInput {
        filename: filename.into(),
        file_size,
        content_type: "application/octet-stream".into(),
        provider: None,
        part_size: None,
        metadata: BTreeMap::new(),
        credentials: Default::default(),
        sizing: None,
    }
}

/// The App on SQLite in memory with [`MemoryStorage`], and a caller to act as.
pub struct TestApp {
    pub app: Arc<App>,
    pub storage: Arc<MemoryStorage>,
    pub caller: Caller,
    pub api_key: String,
}

impl TestApp {
    /// On [`MemoryStorage`], guarded, with a test resolver that knows no names (no DNS).
    pub async fn new() -> TestApp {
        let outbound = OutboundPolicy::new(
            AllowList::default(),
            OutboundMode::Guarded,
            Arc::new(StaticResolver::new()),
        );
        TestApp::with(outbound, None).await
    }

    /// [`TestApp::new`] with this server-wide quota.
    pub async fn with_quota(quota: crate::domain::Quota) -> TestApp {
        let mut t = TestApp::new().await;
        Arc::get_mut(&mut t.app)
            .expect("the app is not shared yet")
            .settings
            .quota = quota;
        t
    }

    /// [`TestApp::new`] with job leases this short (the heartbeat a quarter of it).
    pub async fn with_lease(lease: Duration) -> TestApp {
        let mut t = TestApp::new().await;
        Arc::get_mut(&mut t.app)
            .expect("the app is not shared yet")
            .lease_timing = crate::jobs::LeaseTiming {
            lease,
            heartbeat: lease / 4,
        };
        t
    }

    /// [`TestApp::new`] with these event-stream limits.
    pub async fn with_stream_limits(limits: crate::usecases::StreamLimits) -> TestApp {
        let mut t = TestApp::new().await;
        Arc::get_mut(&mut t.app)
            .expect("the app is not shared yet")
            .settings
            .streams = limits;
        t
    }

    /// Revokes the caller's API key in the store (as `partway keys revoke` does).
    pub async fn revoke_key(&self) {
        let key = self
            .app
            .store
            .key_with_hash(&hash_api_key(&self.api_key))
            .await
            .expect("key lookup")
            .expect("the test key");
        crate::auth::revoke_key(&self.app.store, key.id)
            .await
            .expect("revoke");
    }

    /// With this outbound guard, and `factory` instead of [`MemoryStorage`]'s when given
    /// (e.g. the real `S3Factory`, to see what a connection does).
    pub async fn with(
        outbound: OutboundPolicy,
        factory: Option<Arc<dyn StorageFactory>>,
    ) -> TestApp {
        let mut options = ConnectOptions::new("sqlite::memory:");
        // One connection: every connection to `:memory:` would be another database.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .sqlx_logging(false);
        let db = Database::connect(options).await.expect("sqlite in memory");
        Migrator::up(&db, None).await.expect("migrations");
        let storage = Arc::new(MemoryStorage::default());
        let target = StorageTarget::with_credentials(
            Provider::S3,
            "test".into(),
            "us-east-1".into(),
            Some("http://storage.invalid".into()),
            StorageCredentials {
                access_key_id: "test".into(),
                secret_access_key: "test-secret".into(),
            },
        );
        let factory = factory.unwrap_or_else(|| Arc::new(MemoryStorageFactory(storage.clone())));
        let registry = StorageRegistry::new(HashMap::from([(Provider::S3, target)]), factory)
            .with_outbound(outbound);
        let store = Store::new(db);
        let (_, api_key) = crate::auth::create_key(&store, "tester")
            .await
            .expect("key");
        let app = App::new(
            store,
            Arc::new(registry),
            Arc::new(InMemoryCache::default()),
            Arc::new(ManualQueue),
            MasterKey::generate(),
            Settings {
                upload_ttl: Duration::from_secs(3600),
                url_ttl: Duration::from_secs(3600),
                download_url_ttl: Duration::from_secs(3600),
                key_prefix: "uploads".into(),
                default_provider: Provider::S3,
                quota: crate::domain::Quota::default(),
                streams: crate::usecases::StreamLimits::default(),
            },
        );
        let caller = app
            .authenticate(Some(&api_key))
            .await
            .expect("the key just made");
        debug_assert_eq!(hash_api_key(&api_key).len(), 64);
        TestApp {
            app: Arc::new(app),
            storage,
            caller,
            api_key,
        }
    }

    /// Runs every due job until none is left; returns how each run ended.
    pub async fn run_jobs(&self) -> Vec<JobRun> {
        let mut runs = Vec::new();
        for _ in 0..100 {
            let due = self.app.due_jobs(100).await.expect("due jobs");
            if due.is_empty() {
                return runs;
            }
            for id in due {
                runs.push(self.app.process_job(id, false).await.expect("job runs"));
            }
        }
        panic!("jobs kept coming: {runs:?}");
    }

    /// An upload of `file_size` bytes in parts of `part_size`, created on storage and
    /// active (its init job run). Returns the token and the row.
    pub async fn active_upload(
        &self,
        file_size: u64,
        part_size: u64,
    ) -> (String, partway_entity::upload::Model) {
        let input = crate::usecases::InitInput {
            part_size: Some(part_size),
            ..init_input("file.bin", file_size)
        };
        let accepted = self
            .app
            .init(&self.caller, input, None)
            .await
            .expect("init");
        self.run_jobs().await;
        let upload = self.app.reload(accepted.upload.id).await.expect("row");
        (crate::usecases::token_of(&upload).to_string(), upload)
    }

    /// PUTs every part `numbers` names to storage with its planned size.
    pub fn put_parts(
        &self,
        upload: &partway_entity::upload::Model,
        numbers: impl IntoIterator<Item = u32>,
    ) -> Vec<(u32, String)> {
        let plan = crate::usecases::parts::plan_of(upload).expect("plan");
        let storage_upload_id = upload
            .storage_upload_id
            .clone()
            .expect("created on storage");
        numbers
            .into_iter()
            .map(|n| {
                let size = plan.part(n).expect("in plan").size;
                (n, self.storage.put_part(&storage_upload_id, n, size))
            })
            .collect()
    }

    /// A browser token of the caller's owner with this `maxFileSize`, as its caller.
    pub async fn browser_caller(&self, max_file_size: Option<u64>) -> Caller {
        let limits = crate::domain::TokenLimits {
            max_file_size,
            ..Default::default()
        };
        let (_, token) = self
            .app
            .create_browser_token(&self.caller, &limits)
            .await
            .expect("token");
        self.app
            .authenticate(Some(&token))
            .await
            .expect("the token just made")
    }

    /// The upload's id for storage (its multipart UploadId).
    pub fn storage_upload_id(upload: &partway_entity::upload::Model) -> String {
        upload
            .storage_upload_id
            .clone()
            .expect("created on storage")
    }
}
