//! `ctl version`: this client's version and the server's `/version` gitVersion, as kubectl
//! prints them.

use std::io::Write;

use serde_json::{json, Value};

use crate::cli::{GlobalArgs, VersionArgs};
use crate::connect;
use crate::output::{write_json, write_yaml};

/// The client's version, as kubectl spells versions.
pub fn client_version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub async fn run(
    global: &GlobalArgs,
    args: &VersionArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client_info = json!({ "gitVersion": client_version() });
    let server_info: Option<Value> = if args.client {
        None
    } else {
        let client = connect::client(global)?;
        match client.get_json::<Value>("/version").await {
            Ok(info) => Some(info),
            Err(error) => {
                // Like kubectl: say what is known before reporting the failure.
                if args.output.is_none() {
                    writeln!(out, "Client Version: {}", client_version())?;
                }
                return Err(error.into());
            }
        }
    };
    match args.output.as_deref() {
        Some(format) => {
            let mut doc = json!({ "clientVersion": client_info });
            if let Some(info) = &server_info {
                doc["serverVersion"] = info.clone();
            }
            if format == "json" {
                write_json(out, &doc)
            } else {
                write_yaml(out, &doc)
            }
        }
        None => {
            writeln!(out, "Client Version: {}", client_version())?;
            if let Some(info) = server_info {
                let version = info
                    .get("gitVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                writeln!(out, "Server Version: {version}")?;
            }
            Ok(())
        }
    }
}
