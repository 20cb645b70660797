//! The build cache: step key -> the layer that step produced (or none, for metadata steps and
//! empty RUN diffs), kept in `ROOT/build-cache.json`. A step's key chains its parent's key, so
//! a hit means every earlier step was identical too. The config a step produces is not stored:
//! metadata instructions are re-applied (they are pure), and RUN and COPY leave it unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::executor::BuildError;

/// A layer blob in the image store, as the cache remembers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedLayer {
    /// The gzip blob's `sha256:` digest.
    pub digest: String,
    /// The uncompressed tar's `sha256:` digest.
    pub diff_id: String,
    pub size: u64,
}

/// What a step produced: its layer (none for metadata steps and empty RUN diffs) and when it
/// first ran, which goes into the history so a fully cached rebuild gives the same image id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub layer: Option<CachedLayer>,
    pub created: String,
}

/// The cache of one root, loaded at the start of a build and saved at its end.
pub struct BuildCache {
    path: PathBuf,
    entries: BTreeMap<String, CacheEntry>,
    dirty: bool,
}

impl BuildCache {
    /// Loads `ROOT/build-cache.json`; a missing or unreadable file is an empty cache, since
    /// the cache only saves work.
    pub fn open(root: &Path) -> BuildCache {
        let path = root.join("build-cache.json");
        let entries = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %path.display(), %error, "ignoring an unreadable build cache");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        BuildCache { path, entries, dirty: false }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn get(&self, key: &str) -> Option<CacheEntry> {
        self.entries.get(key).cloned()
    }

    pub fn insert(&mut self, key: &str, entry: CacheEntry) {
        if self.entries.get(key) != Some(&entry) {
            self.entries.insert(key.to_string(), entry);
            self.dirty = true;
        }
    }

    /// Writes the cache back (through a temp file and a rename, so readers never see half).
    pub fn save(&mut self) -> Result<(), BuildError> {
        if !self.dirty {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.entries).map_err(|e| BuildError::Io {
            action: "encoding",
            path: self.path.clone(),
            source: e.into(),
        })?;
        let tmp = self.path.with_extension(format!("json.{}", std::process::id()));
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|source| BuildError::Io { action: "writing", path: self.path.clone(), source })?;
        self.dirty = false;
        Ok(())
    }
}
