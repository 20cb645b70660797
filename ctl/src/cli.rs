//! The command tree. Cluster verbs follow kubectl (`ctl get`, `ctl apply`, ...) and local
//! container verbs follow docker (`ctl build`, `ctl run`, ...); each verb is a variant of
//! [`Command`] with its own arguments struct, and only verbs that work are in the tree.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::OutputFormat;

/// Flotilla's command-line tool: kubectl-shaped cluster commands and docker-shaped local commands.
#[derive(Debug, Parser)]
#[command(
    name = "ctl",
    version,
    propagate_version = true,
    after_help = "Examples:\n  # Show the apiserver replicas of the cluster in the current context\n  ctl cluster status\n\n  # Print the client and server versions\n  ctl version\n\n  # Load completions into the current bash shell\n  source <(ctl completion bash)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every cluster command understands, as kubectl spells them.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use instead of its current-context
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Address of an apiserver replica (repeat for fail-over); replaces the kubeconfig's servers
    #[arg(short = 's', long = "server", global = true, value_name = "URL")]
    pub servers: Vec<String>,

    /// Bearer token for the apiserver
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Path to the cluster's certificate authority (PEM)
    #[arg(long = "certificate-authority", global = true, value_name = "PATH")]
    pub certificate_authority: Option<PathBuf>,

    /// The namespace for this request
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Directory of the local image and container store (default: $FLOTILLA_ROOT, then /var/lib/flotilla)
    #[arg(long, global = true, env = "FLOTILLA_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

impl GlobalArgs {
    /// The local store's root directory: `--root`, then `$FLOTILLA_ROOT`, then /var/lib/flotilla.
    pub fn root_dir(&self) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/flotilla"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show and change the apiserver replicas that make up the cluster
    #[command(
        subcommand,
        after_help = "Examples:\n  # Show every replica, its role and health\n  ctl cluster status\n\n  # Add replica 4, then remove replica 2\n  ctl cluster add-replica 4 --api-addr 10.0.0.4:6443 --peer-addr 10.0.0.4:6444\n  ctl cluster remove-replica 2"
    )]
    Cluster(ClusterCommand),

    /// Print the client and server version information
    #[command(
        after_help = "Examples:\n  # Print the client and server versions\n  ctl version\n\n  # Print only the client version, without contacting a server\n  ctl version --client"
    )]
    Version(VersionArgs),

    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  # Load completions into the current bash shell\n  source <(ctl completion bash)\n\n  # Install them for zsh\n  ctl completion zsh > \"${fpath[1]}/_ctl\"\n\n  # Install them for fish\n  ctl completion fish > ~/.config/fish/completions/ctl.fish"
    )]
    Completion(CompletionArgs),

    /// Display one or many objects
    Get(crate::commands::get::GetArgs),

    /// Show details of an object or group of objects, with the events about them
    Describe(crate::commands::describe::DescribeArgs),

    /// Create or update objects from files so they match them
    Apply(crate::commands::apply::ApplyArgs),

    /// Run a Compose project on the cluster
    #[command(after_help = "Examples:\n  # Print the objects compose.yaml becomes\n  ctl compose convert\n\n  # Build, push and start the project in the background\n  ctl compose --registry 10.0.0.1:5000 up -d\n\n  # Remove it\n  ctl compose down")]
    Compose(crate::commands::compose::ComposeArgs),

    /// Create objects from files
    Create(crate::commands::create::CreateArgs),

    /// Replace objects with the content of files
    Replace(crate::commands::create::ReplaceArgs),

    /// Delete objects by file, by type and name, or by label selector
    Delete(crate::commands::delete::DeleteArgs),

    /// Set the number of replicas of a deployment or replica set
    Scale(crate::commands::scale::ScaleArgs),

    /// Change specific fields of objects
    #[command(subcommand, after_help = "Examples:\n  # Set the image of container web of deployment web\n  ctl set image deploy/web web=nginx:1.27")]
    Set(crate::commands::set::SetCommand),

    /// Manage the rollout of a deployment
    #[command(subcommand, after_help = "Examples:\n  # Restart deployment web and wait for the rollout\n  ctl rollout restart deploy/web\n  ctl rollout status deploy/web")]
    Rollout(crate::commands::rollout::RolloutCommand),

    /// Mark nodes unschedulable
    Cordon(crate::commands::node::CordonArgs),

    /// Mark nodes schedulable again
    #[command(after_help = "Examples:\n  # Let pods be scheduled on node n1 again\n  ctl uncordon n1")]
    Uncordon(crate::commands::node::CordonArgs),

    /// Cordon a node and delete the pods on it, for maintenance
    Drain(crate::commands::node::DrainArgs),

    /// Add, change or remove labels of objects
    Label(crate::commands::label::LabelArgs),

    /// Add, change or remove annotations of objects
    #[command(after_help = "Examples:\n  # Annotate pod x\n  ctl annotate pod x owner=team-a\n\n  # Change it, which needs --overwrite\n  ctl annotate pod x owner=team-b --overwrite\n\n  # Remove it\n  ctl annotate pod x owner-")]
    Annotate(crate::commands::label::LabelArgs),

    /// Show and change the kubeconfig file
    #[command(subcommand, after_help = "Examples:\n  # Show the kubeconfig, secrets hidden\n  ctl config view\n\n  # Switch to context prod\n  ctl config use-context prod")]
    Config(crate::commands::config::ConfigCommand),

    // Local image commands, as docker names them.
    /// Build an image from a Dockerfile
    #[command(after_help = "Examples:\n  # Build ./Dockerfile with the current directory as context\n  ctl build -t myapp:1 .\n\n  # Build only the stage named build, passing a build argument\n  ctl build --target build --build-arg VERSION=2 -f docker/Dockerfile -t myapp:build .")]
    Build(crate::commands::build::BuildArgs),

    /// List images
    #[command(after_help = "Examples:\n  # List every image\n  ctl images\n\n  # Only the ids, e.g. for scripts\n  ctl images -q")]
    Images(crate::commands::images::ImagesArgs),

    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(after_help = "Examples:\n  # Give busybox a name in a local registry\n  ctl tag busybox localhost:5000/tools/busybox:1")]
    Tag(crate::commands::images::TagArgs),

    /// Remove one or more images
    #[command(after_help = "Examples:\n  # Remove an image no container uses\n  ctl rmi busybox:old\n\n  # Remove it even though a container uses it\n  ctl rmi -f busybox:old")]
    Rmi(crate::commands::images::RmiArgs),

    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    #[command(after_help = "Examples:\n  # Save busybox for docker load\n  ctl save -o busybox.tar busybox\n\n  # Save it as an OCI archive (skopeo's oci-archive:)\n  ctl save --format oci -o busybox-oci.tar busybox")]
    Save(crate::commands::images::SaveArgs),

    /// Load an image from a tar archive or STDIN
    #[command(after_help = "Examples:\n  # Load an archive made by docker save or ctl save\n  ctl load -i busybox.tar")]
    Load(crate::commands::images::LoadArgs),

    /// Manage images
    #[command(subcommand, after_help = "Examples:\n  # Show how an image was made\n  ctl image history busybox\n\n  # Remove images no container uses\n  ctl image prune -a -f")]
    Image(crate::commands::images::ImageCommand),

    // Registry commands, as docker names them.
    /// Download an image from a registry
    #[command(after_help = "Examples:\n  # Pull busybox from Docker Hub\n  ctl pull busybox\n\n  # Pull from a local registry by digest\n  ctl pull localhost:5000/tools/busybox@sha256:<digest>")]
    Pull(crate::commands::registry::PullArgs),

    /// Upload an image to a registry
    #[command(after_help = "Examples:\n  # Push to a local registry\n  ctl tag busybox localhost:5000/tools/busybox:1\n  ctl push localhost:5000/tools/busybox:1")]
    Push(crate::commands::registry::PushArgs),

    /// Log in to a registry
    #[command(after_help = "Examples:\n  # Log in with the password on stdin\n  echo \"$PASS\" | ctl login -u me --password-stdin registry.example.com")]
    Login(crate::commands::registry::LoginArgs),

    /// Log out from a registry
    #[command(after_help = "Examples:\n  ctl logout registry.example.com")]
    Logout(crate::commands::registry::LogoutArgs),

    /// Run a registry of Flotilla's own over the local image store
    #[command(subcommand, after_help = "Examples:\n  # Serve the local store on 127.0.0.1:5000 until Ctrl-C\n  ctl registry serve")]
    Registry(crate::commands::registry_serve::RegistryCommand),

    // Local container commands, as docker names them.
    /// Create and run a new container from an image
    Run(crate::commands::containers::RunArgs),

    /// List containers
    #[command(after_help = "Examples:\n  # Running containers\n  ctl ps\n\n  # All of them, ids only\n  ctl ps -a -q")]
    Ps(crate::commands::containers::PsArgs),

    /// Stop one or more running containers
    #[command(after_help = "Examples:\n  # Stop web, killing it after 30 seconds if it has not exited\n  ctl stop -t 30 web")]
    Stop(crate::commands::containers::StopArgs),

    /// Kill one or more running containers
    #[command(after_help = "Examples:\n  # Send SIGKILL\n  ctl kill web\n\n  # Send SIGHUP (-s is --server, as in kubectl, so the signal goes by --signal)\n  ctl kill --signal HUP web")]
    Kill(crate::commands::containers::KillArgs),

    /// Remove one or more containers
    #[command(after_help = "Examples:\n  # Remove a stopped container\n  ctl rm web\n\n  # Stop and remove a running one\n  ctl rm -f web")]
    Rm(crate::commands::containers::RmArgs),

    /// Start one or more stopped containers
    #[command(after_help = "Examples:\n  # Start web again and follow its output\n  ctl start -a web")]
    Start(crate::commands::containers::StartArgs),

    /// Restart one or more containers
    #[command(after_help = "Examples:\n  ctl restart -t 5 web")]
    Restart(crate::commands::containers::StopArgs),

    /// Fetch the logs of a container
    #[command(after_help = "Examples:\n  # The last 20 lines, then follow\n  ctl logs --tail 20 -f web")]
    Logs(crate::commands::containers::LogsArgs),

    /// Execute a command in a running container
    #[command(after_help = "Examples:\n  # A shell inside web\n  ctl exec -it web sh\n\n  # One command with an extra variable\n  ctl exec -e DEBUG=1 web env")]
    Exec(crate::commands::containers::ExecArgs),

    /// Return low-level information on containers
    #[command(after_help = "Examples:\n  ctl inspect web")]
    Inspect(crate::commands::containers::ContainersArgs),

    /// Block until one or more containers stop, then print their exit codes
    #[command(after_help = "Examples:\n  ctl wait web")]
    Wait(crate::commands::containers::ContainersArgs),

    /// Manage volumes
    #[command(subcommand, after_help = "Examples:\n  ctl volume create data\n  ctl run -v data:/data busybox touch /data/x\n  ctl volume ls\n  ctl volume rm data")]
    Volume(crate::commands::containers::VolumeCommand),

    /// Manage networks
    #[command(subcommand, after_help = "Examples:\n  ctl network create backend\n  ctl run -d --name web --network backend busybox httpd -f\n  ctl run --rm --network backend busybox wget -q -O - http://web/\n  ctl network ls\n  ctl network rm backend")]
    Network(crate::commands::network::NetworkCommand),

    /// List port mappings or a specific mapping for the container
    #[command(after_help = "Examples:\n  # Every published port of web\n  ctl port web\n\n  # Where container port 80/tcp is published\n  ctl port web 80")]
    Port(crate::commands::network::PortArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show every apiserver replica: address, Raft role, term, applied index and health
    #[command(
        after_help = "Examples:\n  # Show the replicas\n  ctl cluster status\n\n  # Also show peer addresses, last log index and errors\n  ctl cluster status -o wide\n\n  # The raw status as JSON\n  ctl cluster status -o json"
    )]
    Status(ClusterStatusArgs),

    /// Add an apiserver replica to the cluster (it must already be running)
    #[command(
        after_help = "Examples:\n  # Add replica 4, serving the API on 10.0.0.4:6443 and Raft on 10.0.0.4:6444\n  ctl cluster add-replica 4 --api-addr 10.0.0.4:6443 --peer-addr 10.0.0.4:6444"
    )]
    AddReplica(AddReplicaArgs),

    /// Remove an apiserver replica from the cluster
    #[command(after_help = "Examples:\n  # Remove replica 2\n  ctl cluster remove-replica 2")]
    RemoveReplica(RemoveReplicaArgs),
}

#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    /// Output format: json, yaml, or wide (a table with more columns)
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct AddReplicaArgs {
    /// The new replica's id (a positive number no other replica has)
    pub id: u64,

    /// Where the new replica serves the API
    #[arg(long, value_name = "HOST:PORT")]
    pub api_addr: String,

    /// Where the new replica serves Raft to its peers
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_addr: String,
}

#[derive(Debug, Args)]
pub struct RemoveReplicaArgs {
    /// The id of the replica to remove
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only the client version, without contacting a server
    #[arg(long)]
    pub client: bool,

    /// Output format: json or yaml
    #[arg(short = 'o', long = "output", value_parser = ["json", "yaml"], value_name = "FORMAT")]
    pub output: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to print completions for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
