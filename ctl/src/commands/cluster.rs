//! `ctl cluster status|add-replica|remove-replica`: the apiserver replicas, through Flotilla's
//! admin routes.

use std::io::Write;

use anyhow::bail;
use api::client::cluster::{AddReplica, ClusterStatus, ReplicaStatus, CLUSTER_PATH};
use serde_json::Value;

use crate::cli::{
    AddReplicaArgs, ClusterCommand, ClusterStatusArgs, GlobalArgs, RemoveReplicaArgs,
};
use crate::connect;
use crate::output::{write_json, write_yaml, OutputFormat};
use crate::table::Table;

pub async fn run(
    global: &GlobalArgs,
    command: &ClusterCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status(args) => status(global, args, out).await,
        ClusterCommand::AddReplica(args) => add_replica(global, args, out).await,
        ClusterCommand::RemoveReplica(args) => remove_replica(global, args, out).await,
    }
}

async fn status(
    global: &GlobalArgs,
    args: &ClusterStatusArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    // Read as a plain value so -o json|yaml shows every field the server sent.
    let raw: Value = client.get_json(CLUSTER_PATH).await?;
    match args.output {
        Some(OutputFormat::Json) => write_json(out, &raw),
        Some(OutputFormat::Yaml) => write_yaml(out, &raw),
        format => {
            let status: ClusterStatus = serde_json::from_value(raw).map_err(|e| {
                anyhow::anyhow!("the server's cluster status is not in the expected shape: {e}")
            })?;
            status_table(&status, format == Some(OutputFormat::Wide)).write(out)?;
            Ok(())
        }
    }
}

/// The `cluster status` table; `wide` adds PEER-ADDRESS, LAST-LOG and ERROR.
pub fn status_table(status: &ClusterStatus, wide: bool) -> Table {
    let mut headers = vec!["ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "HEALTH"];
    if wide {
        headers.extend(["PEER-ADDRESS", "LAST-LOG", "ERROR"]);
    }
    let mut table = Table::new(&headers);
    let mut replicas: Vec<&ReplicaStatus> = status.replicas.iter().collect();
    replicas.sort_by_key(|r| r.id);
    for replica in replicas {
        let mut row = vec![
            replica.id.to_string(),
            or_none(&replica.api_addr),
            role(replica),
            replica.term.to_string(),
            optional(replica.last_applied),
            if replica.healthy {
                "healthy"
            } else {
                "unhealthy"
            }
            .to_string(),
        ];
        if wide {
            row.push(or_none(&replica.peer_addr));
            row.push(optional(replica.last_log_index));
            row.push(
                replica
                    .error
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "<none>".to_string()),
            );
        }
        table.row(row);
    }
    table
}

async fn add_replica(
    global: &GlobalArgs,
    args: &AddReplicaArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    if args.id == 0 {
        bail!("replica id must be a positive number");
    }
    check_host_port("--api-addr", &args.api_addr)?;
    check_host_port("--peer-addr", &args.peer_addr)?;
    let client = connect::client(global)?;
    let request = AddReplica {
        id: args.id,
        api_addr: args.api_addr.clone(),
        peer_addr: args.peer_addr.clone(),
    };
    client.add_replica(&request).await?;
    writeln!(out, "replica/{} added", args.id)?;
    Ok(())
}

async fn remove_replica(
    global: &GlobalArgs,
    args: &RemoveReplicaArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = connect::client(global)?;
    client.remove_replica(args.id).await?;
    writeln!(out, "replica/{} removed", args.id)?;
    Ok(())
}

/// The Raft role, marking a non-voting member the way it matters to an operator.
fn role(replica: &ReplicaStatus) -> String {
    let role = if replica.role.is_empty() {
        "<unknown>"
    } else {
        replica.role.as_str()
    };
    if replica.voter || role == "learner" {
        role.to_string()
    } else {
        format!("{role} (non-voter)")
    }
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text.to_string()
    }
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "<none>".to_string(), |v| v.to_string())
}

fn check_host_port(flag: &str, value: &str) -> anyhow::Result<()> {
    let valid = value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0));
    if !valid {
        bail!("{flag} {value:?} is not HOST:PORT, for example 10.0.0.4:6443");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: u64, role: &str, healthy: bool) -> ReplicaStatus {
        ReplicaStatus {
            id,
            api_addr: format!("127.0.0.1:{}", 6443 + id * 10),
            peer_addr: format!("127.0.0.1:{}", 6444 + id * 10),
            role: role.to_string(),
            voter: true,
            term: 3,
            last_log_index: Some(120),
            last_applied: Some(120),
            healthy,
            error: (!healthy).then(|| "connection refused".to_string()),
        }
    }

    #[test]
    fn status_tables() {
        let status = ClusterStatus {
            leader: Some(1),
            replicas: vec![replica(2, "follower", false), replica(1, "leader", true)],
        };
        assert_eq!(
            status_table(&status, false).render(),
            "ID    ADDRESS          ROLE       TERM   APPLIED   HEALTH\n\
             1     127.0.0.1:6453   leader     3      120       healthy\n\
             2     127.0.0.1:6463   follower   3      120       unhealthy\n"
        );
        assert_eq!(
            status_table(&status, true).render(),
            "ID    ADDRESS          ROLE       TERM   APPLIED   HEALTH      PEER-ADDRESS     LAST-LOG   ERROR\n\
             1     127.0.0.1:6453   leader     3      120       healthy     127.0.0.1:6454   120        <none>\n\
             2     127.0.0.1:6463   follower   3      120       unhealthy   127.0.0.1:6464   120        connection refused\n"
        );
    }

    #[test]
    fn host_port_checks() {
        for good in ["10.0.0.4:6443", "node-a:1", "[::1]:6443"] {
            assert!(check_host_port("--api-addr", good).is_ok(), "{good}");
        }
        for bad in ["10.0.0.4", ":6443", "host:0", "host:99999", "host:port"] {
            assert!(check_host_port("--api-addr", bad).is_err(), "{bad}");
        }
    }
}
