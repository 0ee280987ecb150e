//! The local resume state: `uploads.json`, keyed by canonical path + size + mtime.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A file's upload on a server: its resume token once init answered; before that, the
/// `Idempotency-Key` the init was sent with, so a run killed before the answer sends
/// the same key again and gets the upload that init made (not a second one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_key: Option<String>,
}

type State = BTreeMap<String, Entry>;

/// `$PARTWAY_STATE_DIR/uploads.json`, else `$XDG_STATE_HOME/partway/uploads.json`, else
/// `~/.local/state/partway/uploads.json`.
pub(crate) fn state_file() -> Option<PathBuf> {
    let non_empty = |v: &str| std::env::var_os(v).filter(|s| !s.is_empty());
    if let Some(dir) = non_empty("PARTWAY_STATE_DIR") {
        return Some(PathBuf::from(dir).join("uploads.json"));
    }
    if let Some(dir) = non_empty("XDG_STATE_HOME") {
        return Some(PathBuf::from(dir).join("partway").join("uploads.json"));
    }
    non_empty("HOME").map(|home| {
        PathBuf::from(home)
            .join(".local/state/partway")
            .join("uploads.json")
    })
}

fn load(path: &Path) -> State {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn store(path: &Path, state: &State) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write the state file {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    std::fs::write(&tmp, bytes).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn update(f: impl FnOnce(&mut State)) -> Result<(), String> {
    let Some(path) = state_file() else {
        return Ok(()); // nowhere to keep state: uploads are still fine, just not resumable
    };
    let mut state = load(&path);
    f(&mut state);
    store(&path, &state)
}

pub(crate) fn get(key: &str) -> Option<Entry> {
    state_file().and_then(|p| load(&p).get(key).cloned())
}

pub(crate) fn put(key: &str, entry: Entry) -> Result<(), String> {
    update(|s| {
        s.insert(key.to_string(), entry);
    })
}

pub(crate) fn remove(key: &str) -> Result<(), String> {
    update(|s| {
        s.remove(key);
    })
}

pub(crate) fn forget_token(token: &str) -> Result<(), String> {
    update(|s| s.retain(|_, e| e.resume_token.as_deref() != Some(token)))
}
