//! Docker's network verbs on the local store under `--root`: `network create|ls|rm|inspect`
//! and `port`, with docker's output and wording. The networks themselves live in
//! `runtime::network::docker`; this module only parses and prints.

use std::io::Write;

use clap::{Args, Subcommand};
use runtime::network::docker::{self, Network, NetworkError};
use runtime::network::ports::ports_column;
use serde_json::{json, Value};

use super::containers::Exit;
use crate::cli::GlobalArgs;

/// `ctl network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network
    #[command(after_help = "Examples:\n  # A network with the next free 172.31.N.0/24\n  ctl network create backend\n\n  # With a subnet of your choice\n  ctl network create --subnet 10.10.0.0/24 backend")]
    Create {
        /// Subnet in CIDR format (default: the next free 172.31.N.0/24)
        #[arg(long)]
        subnet: Option<String>,
        /// Driver to manage the network (only bridge)
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// The network's name
        name: String,
    },
    /// List networks
    #[command(visible_alias = "list", after_help = "Examples:\n  ctl network ls\n\n  # Ids only\n  ctl network ls -q")]
    Ls {
        /// Only display network IDs
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Do not truncate the output
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Remove one or more networks
    #[command(visible_alias = "remove", after_help = "Examples:\n  ctl network rm backend")]
    Rm {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
    /// Display detailed information on one or more networks
    #[command(after_help = "Examples:\n  ctl network inspect backend")]
    Inspect {
        #[arg(required = true, value_name = "NETWORK")]
        names: Vec<String>,
    },
}

/// `ctl port`
#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// Show only this port of the container (PORT[/PROTO])
    pub port: Option<String>,
}

/// `ctl network ...`
pub fn run(global: &GlobalArgs, command: &NetworkCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = global.root_dir();
    match command {
        NetworkCommand::Create { subnet, driver, name } => {
            if driver != "bridge" {
                return Err(daemon(format!("plugin \"{driver}\" not found: only the bridge driver is supported")));
            }
            let network = docker::create(&root, name, subnet.as_deref()).map_err(failed)?;
            writeln!(out, "{}", network.id)?;
        }
        NetworkCommand::Ls { quiet, no_trunc } => {
            let networks = docker::list(&root).map_err(failed)?;
            let short = |id: &str| if *no_trunc { id.to_string() } else { id.chars().take(12).collect() };
            let mut rows = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"].map(String::from).to_vec()];
            for n in &networks {
                rows.push(vec![short(&n.id), n.name.clone(), n.driver.clone(), "local".into()]);
            }
            for (name, driver) in [("host", "host"), ("none", "null")] {
                rows.push(vec![short(&predefined_id(name)), name.into(), driver.into(), "local".into()]);
            }
            if *quiet {
                for row in &rows[1..] {
                    writeln!(out, "{}", row[0])?;
                }
            } else {
                super::containers::write_table(out, &rows)?;
            }
        }
        NetworkCommand::Rm { names } => {
            let mut failed_any = false;
            for name in names {
                let removed = if name == "host" || name == "none" {
                    Err(NetworkError::PredefinedRemove(name.clone()))
                } else {
                    docker::remove(&root, name)
                };
                match removed {
                    Ok(_) => writeln!(out, "{name}")?,
                    Err(e) => {
                        out.flush()?;
                        eprintln!("Error response from daemon: {e}");
                        failed_any = true;
                    }
                }
            }
            if failed_any {
                return Err(Exit { code: 1, message: None }.into());
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut docs = Vec::new();
            for name in names {
                docs.push(inspect(&root, name)?);
            }
            serde_json::to_writer_pretty(&mut *out, &docs)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// `ctl port CONTAINER [PORT[/PROTO]]`: the container's published ports, as docker prints them.
pub fn port(global: &GlobalArgs, args: &PortArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = global.root_dir();
    let rt = runtime::container::Runtime::open(&root).map_err(|e| daemon(e.to_string()))?;
    let id = rt.resolve_id(&args.container).map_err(|e| daemon(e.to_string()))?;
    let ports = docker::published_ports(&root, &id);
    let wanted = args.port.as_deref().map(|p| if p.contains('/') { p.to_string() } else { format!("{p}/tcp") });
    let mut shown = 0;
    for p in &ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        if wanted.as_ref().is_some_and(|w| *w != key) {
            continue;
        }
        let host = ports_column(std::slice::from_ref(p));
        let host = host.split("->").next().unwrap_or_default().to_string();
        if wanted.is_some() {
            writeln!(out, "{host}")?;
        } else {
            writeln!(out, "{key} -> {host}")?;
        }
        shown += 1;
    }
    if let (Some(w), 0) = (&wanted, shown) {
        return Err(daemon(format!("No public port '{w}' published for {}", args.container)));
    }
    Ok(())
}

fn inspect(root: &std::path::Path, name: &str) -> anyhow::Result<Value> {
    if name == "host" || name == "none" {
        let driver = if name == "host" { "host" } else { "null" };
        return Ok(json!({
            "Name": name, "Id": predefined_id(name), "Scope": "local", "Driver": driver,
            "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []},
            "Internal": false, "Containers": {}, "Options": {}, "Labels": {}
        }));
    }
    let network: Network = docker::get(root, name).map_err(failed)?;
    let endpoints = docker::endpoints(root, &network.name).map_err(failed)?;
    let containers: serde_json::Map<String, Value> = endpoints
        .iter()
        .map(|e| {
            (
                e.container_id.clone(),
                json!({
                    "Name": e.container_name,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": "",
                    "Ports": ports_column(&e.ports),
                }),
            )
        })
        .collect();
    Ok(json!({
        "Name": network.name,
        "Id": network.id,
        "Created": network.created.to_string(),
        "Scope": "local",
        "Driver": network.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": network.subnet, "Gateway": network.gateway.to_string()}]},
        "Internal": false,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": network.bridge},
        "Labels": {},
    }))
}

/// A stable id for the predefined `host` and `none` networks, which have no file.
fn predefined_id(name: &str) -> String {
    let seed: u64 = name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{seed:016x}").repeat(4)
}

fn daemon(message: String) -> anyhow::Error {
    Exit { code: 1, message: Some(format!("Error response from daemon: {message}")) }.into()
}

fn failed(error: NetworkError) -> anyhow::Error {
    daemon(error.to_string())
}
