//! Flotilla's admin routes under `/flotilla/v1/cluster`: the state of every apiserver replica,
//! and adding or removing replicas. The types are shared by the apiserver that serves them and
//! the client that reads them.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{Client, ClientError};

/// The path of the cluster status.
pub const CLUSTER_PATH: &str = "/flotilla/v1/cluster";
/// The path replicas are added under.
pub const REPLICAS_PATH: &str = "/flotilla/v1/cluster/replicas";

/// `GET /flotilla/v1/cluster`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The id of the current Raft leader, if one is known.
    #[serde(default)]
    pub leader: Option<u64>,
    #[serde(default)]
    pub replicas: Vec<ReplicaStatus>,
}

/// One apiserver replica as the answering replica sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub id: u64,
    /// Where it serves the API (`host:port`).
    #[serde(default)]
    pub api_addr: String,
    /// Where it serves Raft (`host:port`).
    #[serde(default)]
    pub peer_addr: String,
    /// `leader`, `follower`, `candidate` or `learner`.
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub voter: bool,
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub last_log_index: Option<u64>,
    #[serde(default)]
    pub last_applied: Option<u64>,
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /flotilla/v1/cluster/replicas`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddReplica {
    pub id: u64,
    pub api_addr: String,
    pub peer_addr: String,
}

/// The path of one replica.
pub fn replica_path(id: u64) -> String {
    format!("{REPLICAS_PATH}/{id}")
}

impl Client {
    /// The cluster's replicas and leader.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.get_json(CLUSTER_PATH).await
    }

    /// Asks the cluster to add a replica; returns what the server answered (JSON, or `Null`
    /// for an empty body).
    pub async fn add_replica(
        &self,
        replica: &AddReplica,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::to_vec(replica).map_err(|error| ClientError::Encode { error })?;
        let response = self
            .request(
                Method::POST,
                REPLICAS_PATH,
                Some(("application/json", body)),
            )
            .await?;
        json_or_null(REPLICAS_PATH, &response.body)
    }

    /// Asks the cluster to remove a replica; returns what the server answered.
    pub async fn remove_replica(&self, id: u64) -> Result<serde_json::Value, ClientError> {
        let path = replica_path(id);
        let response = self.request(Method::DELETE, &path, None).await?;
        json_or_null(&path, &response.body)
    }
}

fn json_or_null(path: &str, body: &[u8]) -> Result<serde_json::Value, ClientError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    super::decode(path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_documented_status() {
        let body = r#"{"leader": 1, "replicas": [{"id":1,"apiAddr":"127.0.0.1:6443","peerAddr":"127.0.0.1:6444","role":"leader","voter":true,"term":3,"lastLogIndex":120,"lastApplied":120,"healthy":true,"error":null}]}"#;
        let status: ClusterStatus = match serde_json::from_str(body) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(status.leader, Some(1));
        let replica = &status.replicas[0];
        assert_eq!(replica.api_addr, "127.0.0.1:6443");
        assert_eq!(replica.last_log_index, Some(120));
        assert!(replica.healthy && replica.voter);
        let add = AddReplica {
            id: 4,
            api_addr: "a:1".into(),
            peer_addr: "a:2".into(),
        };
        assert_eq!(
            serde_json::to_string(&add).unwrap_or_default(),
            r#"{"id":4,"apiAddr":"a:1","peerAddr":"a:2"}"#
        );
    }
}
