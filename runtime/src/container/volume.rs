//! Named volumes (`ctl volume create|ls|rm|inspect`): directories `ROOT/volumes/<name>/_data`
//! that outlive the containers mounting them, shaped as docker's `local` driver shows them.

use std::fs;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use super::{ContainerError, Runtime};
use crate::spec::MountKind;

/// A volume as `docker volume inspect` prints it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub created_at: String,
    pub driver: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub mountpoint: PathBuf,
    pub name: String,
    pub options: std::collections::BTreeMap<String, String>,
    pub scope: String,
}

impl Runtime {
    /// Creates a volume (a random 64-hex name when none is given); creating an existing one
    /// returns it unchanged, as docker does.
    pub fn volume_create(&self, name: Option<&str>) -> Result<Volume, ContainerError> {
        let name = match name {
            Some(n) if super::valid_name(n) => n.to_string(),
            Some(n) => return Err(ContainerError::InvalidVolumeName(n.to_string())),
            None => super::new_id(),
        };
        let data = self.root.join("volumes").join(&name).join("_data");
        fs::create_dir_all(&data).map_err(|e| ContainerError::io("creating", &data, e))?;
        self.volume_inspect(&name)
    }

    pub fn volume_inspect(&self, name: &str) -> Result<Volume, ContainerError> {
        if !super::valid_name(name) {
            return Err(ContainerError::NoSuchVolume { name: name.to_string() });
        }
        let dir = self.root.join("volumes").join(name);
        let meta = fs::metadata(dir.join("_data")).map_err(|_| ContainerError::NoSuchVolume { name: name.to_string() })?;
        let created = meta
            .modified()
            .ok()
            .and_then(|t| Timestamp::try_from(t).ok())
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        Ok(Volume {
            created_at: created,
            driver: "local".into(),
            labels: Default::default(),
            mountpoint: dir.join("_data"),
            name: name.to_string(),
            options: Default::default(),
            scope: "local".into(),
        })
    }

    /// Every volume, by name.
    pub fn volume_list(&self) -> Result<Vec<Volume>, ContainerError> {
        let dir = self.root.join("volumes");
        let entries = fs::read_dir(&dir).map_err(|e| ContainerError::io("reading", &dir, e))?;
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.volume_inspect(n).ok()).collect())
    }

    /// Removes a volume no container uses (`force` does not override that, as in docker).
    pub fn volume_remove(&self, name: &str) -> Result<(), ContainerError> {
        self.volume_inspect(name)?;
        let users: Vec<String> = self
            .list(true)?
            .into_iter()
            .filter(|c| c.spec.mounts.iter().any(|m| matches!(&m.kind, MountKind::Volume { name: n, .. } if n == name)))
            .map(|c| c.id)
            .collect();
        if !users.is_empty() {
            return Err(ContainerError::VolumeInUse { name: name.to_string(), ids: users.join(", ") });
        }
        let dir = self.root.join("volumes").join(name);
        fs::remove_dir_all(&dir).map_err(|e| ContainerError::io("removing", &dir, e))
    }
}
