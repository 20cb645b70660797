//! Docker's local image verbs on the image store under `--root`: `images`, `tag`, `rmi`,
//! `save`, `load` and `image ls|inspect|history|prune|import|rm|tag|save|load`, with docker's
//! flags and output (tables aligned as docker's tabwriter does, sizes in decimal units, ages as
//! "2 hours ago").

use std::cell::RefCell;
use std::fs;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use runtime::image::{ArchiveFormat, ImageError, ImageStore, ImportOptions, RemoveAction};
use runtime::reference::Reference;

use crate::cli::GlobalArgs;

/// `ctl image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list", after_help = "Examples:\n  ctl image ls\n  ctl image ls busybox")]
    Ls(ImagesArgs),
    /// Display detailed information on one or more images
    #[command(after_help = "Examples:\n  ctl image inspect busybox")]
    Inspect(InspectArgs),
    /// Show the history of an image
    #[command(after_help = "Examples:\n  ctl image history busybox")]
    History(HistoryArgs),
    /// Remove dangling images (with -a, every image no container uses)
    #[command(after_help = "Examples:\n  # Remove untagged images without asking\n  ctl image prune -f")]
    Prune(PruneArgs),
    /// Import the contents of a tarball to create a filesystem image
    #[command(
        after_help = "Examples:\n  # Make an image of a root filesystem directory\n  tar -C rootfs -c . | ctl image import - mybase:1"
    )]
    Import(ImportArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove", after_help = "Examples:\n  ctl image rm busybox:old")]
    Rm(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    #[command(after_help = "Examples:\n  ctl image tag busybox localhost:5000/tools/busybox:1")]
    Tag(TagArgs),
    /// Save one or more images to a tar archive
    #[command(after_help = "Examples:\n  ctl image save -o busybox.tar busybox")]
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    #[command(after_help = "Examples:\n  ctl image load -i busybox.tar")]
    Load(LoadArgs),
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (there are no intermediate images here, so the same as without)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show images of this repository (and tag)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SaveFormat {
    Docker,
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Archive format: docker (docker load) or oci (an OCI image layout, skopeo's oci-archive)
    #[arg(long, value_enum, default_value = "docker")]
    pub format: SaveFormat,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A tar archive (plain, gzip or zstd) of a root filesystem, or - for STDIN
    #[arg(value_name = "FILE|-")]
    pub file: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: String,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `ctl image SUBCOMMAND`
pub fn run(global: &GlobalArgs, command: &ImageCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ImageCommand::Ls(args) => images(global, args, out),
        ImageCommand::Inspect(args) => inspect(global, args, out),
        ImageCommand::History(args) => history(global, args, out),
        ImageCommand::Prune(args) => prune(global, args, out),
        ImageCommand::Import(args) => import(global, args, out),
        ImageCommand::Rm(args) => rmi(global, args, out),
        ImageCommand::Tag(args) => tag(global, args, out),
        ImageCommand::Save(args) => save(global, args, out),
        ImageCommand::Load(args) => load(global, args, out),
    }
}

/// `ctl images`
pub fn images(global: &GlobalArgs, args: &ImagesArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let mut rows = store.list()?;
    if let Some(filter) = &args.repository {
        let wanted = Reference::parse(filter)?;
        // A filter without a tag matches every tag of the repository.
        let any_tag = !filter.rsplit('/').next().unwrap_or(filter).contains(':');
        rows.retain(|row| {
            let repo_match =
                Reference::parse(&row.repository).is_ok_and(|r| r.name() == wanted.name());
            repo_match && (any_tag || Some(&row.tag) == wanted.tag.as_ref())
        });
    }
    if args.quiet {
        let mut seen = Vec::new();
        for row in &rows {
            let id = if args.no_trunc {
                row.full_id.clone()
            } else {
                row.id.clone()
            };
            if !seen.contains(&id) {
                writeln!(out, "{id}")?;
                seen.push(id);
            }
        }
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let mut table = vec![cells(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])];
    for row in rows {
        table.push(vec![
            row.repository,
            row.tag,
            if args.no_trunc { row.full_id } else { row.id },
            row.created
                .map(|c| ago(now, c))
                .unwrap_or_else(|| "N/A".into()),
            human_size(row.size),
        ]);
    }
    write_table(out, &table)
}

/// `ctl tag`
pub fn tag(global: &GlobalArgs, args: &TagArgs, _out: &mut dyn Write) -> anyhow::Result<()> {
    open(global)?.tag(&args.source, &args.target)?;
    Ok(())
}

/// `ctl rmi`: every image is tried; errors are reported together at the end, as docker does.
pub fn rmi(global: &GlobalArgs, args: &RmiArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let mut errors = Vec::new();
    for name in &args.images {
        let user = RefCell::new(None);
        let in_use = |id: &str| match container_using(store.root(), id) {
            Some(container) => {
                *user.borrow_mut() = Some(container);
                true
            }
            None => false,
        };
        match store.remove(name, args.force, &in_use) {
            Ok(actions) => print_removals(out, &actions)?,
            Err(ImageError::InUse { image }) => {
                let container = user.borrow().clone().unwrap_or_default();
                errors.push(format!(
                    "error: conflict: unable to delete {image}: image is being used by container {}; use -f to remove it",
                    short(&container)
                ));
            }
            Err(error) => errors.push(format!("error: {error}")),
        }
    }
    match errors.len() {
        0 => Ok(()),
        _ => Err(crate::commands::objects::Reported(errors).into()),
    }
}

/// `ctl image inspect`: a JSON array, like docker's.
pub fn inspect(global: &GlobalArgs, args: &InspectArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.images {
        match store.inspect(name) {
            Ok(image) => found.push(image),
            Err(error) => errors.push(format!("error: {error}")),
        }
    }
    serde_json::to_writer_pretty(&mut *out, &found)?;
    writeln!(out)?;
    match errors.len() {
        0 => Ok(()),
        _ => Err(crate::commands::objects::Reported(errors).into()),
    }
}

/// `ctl image history`
pub fn history(global: &GlobalArgs, args: &HistoryArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let rows = store.history(&args.image)?;
    let id = |id: &str| {
        if args.no_trunc || id == "<missing>" {
            id.to_owned()
        } else {
            short(id)
        }
    };
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", id(&row.id))?;
        }
        return Ok(());
    }
    let now = jiff::Timestamp::now();
    let mut table = vec![cells(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])];
    for row in rows {
        let created_by = if args.no_trunc || row.created_by.chars().count() <= 45 {
            row.created_by.clone()
        } else {
            format!("{}…", row.created_by.chars().take(44).collect::<String>())
        };
        table.push(vec![
            id(&row.id),
            row.created
                .map(|c| ago(now, c))
                .unwrap_or_else(|| "N/A".into()),
            created_by,
            human_size(row.size),
            row.comment,
        ]);
    }
    write_table(out, &table)
}

/// `ctl image prune`
pub fn prune(global: &GlobalArgs, args: &PruneArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
    }
    let root = store.root().to_path_buf();
    let in_use = |id: &str| container_using(&root, id).is_some();
    let mut actions = Vec::new();
    if args.all {
        let mut ids: Vec<String> = store.list()?.into_iter().map(|r| r.full_id).collect();
        ids.dedup();
        for id in ids {
            if !in_use(&id) {
                // All names of an unused image go, so -f only skips the "several names" check.
                match store.remove(&id, true, &in_use) {
                    Ok(done) => actions.extend(done),
                    Err(ImageError::NotFound(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    actions.extend(
        store
            .remove_dangling(&in_use)?
            .into_iter()
            .map(RemoveAction::Deleted),
    );
    let freed = store.prune()?;
    if !actions.is_empty() {
        writeln!(out, "Deleted Images:")?;
        for action in &actions {
            match action {
                RemoveAction::Untagged(name) => writeln!(out, "untagged: {}", familiar(name))?,
                RemoveAction::Deleted(id) => writeln!(out, "deleted: {id}")?,
            }
        }
        writeln!(out)?;
    }
    writeln!(out, "Total reclaimed space: {}", human_size(freed))?;
    Ok(())
}

/// `ctl image import`: prints the new image's id, as docker does.
pub fn import(global: &GlobalArgs, args: &ImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let reference = Reference::parse(&args.reference)?;
    let options = ImportOptions {
        changes: args.changes.clone(),
        message: args.message.clone(),
    };
    let image = if args.file == "-" {
        store.import_rootfs_tar(io::stdin().lock(), &reference, &options)?
    } else {
        let path = Path::new(&args.file);
        let file =
            fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let options = ImportOptions {
            message: options
                .message
                .or_else(|| Some(format!("Imported from {}", args.file))),
            ..options
        };
        store.import_rootfs_tar(io::BufReader::new(file), &reference, &options)?
    };
    writeln!(out, "{}", image.id)?;
    Ok(())
}

/// `ctl save`
pub fn save(global: &GlobalArgs, args: &SaveArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let names: Vec<&str> = args.images.iter().map(String::as_str).collect();
    let format = match args.format {
        SaveFormat::Docker => ArchiveFormat::Docker,
        SaveFormat::Oci => ArchiveFormat::Oci,
    };
    match &args.output {
        Some(path) => {
            // Written next to the target and renamed, so a failed save leaves no half archive.
            let tmp = path.with_file_name(format!(
                ".{}.tmp",
                path.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let file = fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut writer = io::BufWriter::new(file);
            let result = store
                .save(&names, &mut writer, format)
                .map_err(anyhow::Error::from)
                .and_then(|()| writer.flush().map_err(anyhow::Error::from))
                .and_then(|()| {
                    fs::rename(&tmp, path)
                        .with_context(|| format!("cannot write {}", path.display()))
                });
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            store.save(&names, out, format)?;
            Ok(())
        }
    }
}

/// `ctl load`
pub fn load(global: &GlobalArgs, args: &LoadArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let store = open(global)?;
    let loaded = match &args.input {
        Some(path) => {
            let file =
                fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            store.load(io::BufReader::new(file))?
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is empty: use -i FILE or redirect");
            }
            store.load(stdin.lock())?
        }
    };
    if !args.quiet {
        for name in loaded {
            if name.starts_with("sha256:") {
                writeln!(out, "Loaded image ID: {name}")?;
            } else {
                writeln!(out, "Loaded image: {}", familiar(&name))?;
            }
        }
    }
    Ok(())
}

fn open(global: &GlobalArgs) -> anyhow::Result<ImageStore> {
    let root = global.root_dir();
    ImageStore::open(&root).with_context(|| {
        format!(
            "cannot open the image store under {} (set --root or FLOTILLA_ROOT to a directory you can write)",
            root.display()
        )
    })
}

/// The container (its id) whose `state.json` names image `id`, if any.
fn container_using(root: &Path, id: &str) -> Option<String> {
    let listing = fs::read_dir(root.join("containers")).ok()?;
    for item in listing.flatten() {
        let Ok(bytes) = fs::read(item.path().join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        if state.get("image").and_then(|v| v.as_str()) == Some(id) {
            return Some(item.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

fn print_removals(out: &mut dyn Write, actions: &[RemoveAction]) -> io::Result<()> {
    for action in actions {
        match action {
            RemoveAction::Untagged(name) => writeln!(out, "Untagged: {}", familiar(name))?,
            RemoveAction::Deleted(id) => writeln!(out, "Deleted: {id}")?,
        }
    }
    Ok(())
}

fn familiar(name: &str) -> String {
    Reference::parse(name)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| name.to_owned())
}

fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(12)
        .collect()
}

fn cells<const N: usize>(titles: [&str; N]) -> Vec<String> {
    titles.iter().map(|t| (*t).to_owned()).collect()
}

/// Columns as docker's tabwriter lays them out (min width 10, padding 3); the last column is
/// not padded.
fn write_table(out: &mut dyn Write, rows: &[Vec<String>]) -> anyhow::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            let widest = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            (widest + 3).max(10)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, 3 significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    // Go's %.3g: 3 significant digits, trailing zeros dropped.
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

/// Docker's `units.HumanDuration(now - then) + " ago"`.
pub fn ago(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    format!("{} ago", crate::output::human_duration(now, then))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_print_like_docker() {
        assert_eq!(human_size(745), "745B");
        assert_eq!(human_size(1200), "1.2kB");
        assert_eq!(human_size(4_263_540), "4.26MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(187_654_321), "188MB");
        let now: jiff::Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            ago(now, at("2024-05-01T12:00:00Z")),
            "Less than a second ago"
        );
        assert_eq!(ago(now, at("2024-05-01T11:59:30Z")), "30 seconds ago");
        assert_eq!(ago(now, at("2024-05-01T11:59:00Z")), "About a minute ago");
        assert_eq!(ago(now, at("2024-05-01T10:00:00Z")), "2 hours ago");
        assert_eq!(ago(now, at("2024-04-28T12:00:00Z")), "3 days ago");
        assert_eq!(ago(now, at("2024-03-01T12:00:00Z")), "2 months ago");
    }

    #[test]
    fn commands_work_on_a_store() {
        let tmp = tempfile::tempdir().unwrap();
        let global = GlobalArgs {
            root: Some(tmp.path().to_path_buf()),
            ..GlobalArgs::default()
        };
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(2);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "hello", &b"hi"[..])
            .unwrap();
        let tar_path = tmp.path().join("rootfs.tar");
        fs::write(&tar_path, builder.into_inner().unwrap()).unwrap();

        let mut out = Vec::new();
        let args = ImportArgs {
            file: tar_path.display().to_string(),
            reference: "hello:1".into(),
            changes: vec!["CMD [\"/hello\"]".into()],
            message: None,
        };
        import(&global, &args, &mut out).unwrap();
        let id = String::from_utf8(out).unwrap().trim().to_owned();
        assert!(id.starts_with("sha256:"));

        let mut out = Vec::new();
        images(
            &global,
            &ImagesArgs {
                all: false,
                quiet: false,
                no_trunc: false,
                repository: None,
            },
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
            "{text}"
        );
        assert!(
            lines[1].starts_with(&format!("hello        1         {}", short(&id))),
            "{text}"
        );

        tag(
            &global,
            &TagArgs {
                source: "hello:1".into(),
                target: "hello:2".into(),
            },
            &mut Vec::new(),
        )
        .unwrap();

        // A container using the image blocks rmi without -f, naming the container.
        let container = tmp.path().join("containers/c0ffee0123456789");
        fs::create_dir_all(&container).unwrap();
        fs::write(
            container.join("state.json"),
            format!(r#"{{"image":"{id}"}}"#),
        )
        .unwrap();
        let mut out = Vec::new();
        rmi(
            &global,
            &RmiArgs {
                force: false,
                images: vec!["hello:2".into()],
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "Untagged: hello:2\n");
        let error = rmi(
            &global,
            &RmiArgs {
                force: false,
                images: vec!["hello:1".into()],
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(
            crate::error_message(&error),
            "error: conflict: unable to delete hello:1: image is being used by container c0ffee012345; use -f to remove it"
        );
        fs::remove_dir_all(tmp.path().join("containers")).unwrap();

        let archive = tmp.path().join("out.tar");
        save(
            &global,
            &SaveArgs {
                output: Some(archive.clone()),
                format: SaveFormat::Oci,
                images: vec!["hello:1".into()],
            },
            &mut Vec::new(),
        )
        .unwrap();
        let mut out = Vec::new();
        rmi(
            &global,
            &RmiArgs {
                force: false,
                images: vec!["hello:1".into(), "nope".into()],
            },
            &mut out,
        )
        .unwrap_err();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("Untagged: hello:1\nDeleted: {id}\n")
        );

        let mut out = Vec::new();
        load(
            &global,
            &LoadArgs {
                input: Some(archive),
                quiet: false,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "Loaded image: hello:1\n");

        let mut out = Vec::new();
        inspect(
            &global,
            &InspectArgs {
                images: vec!["hello:1".into()],
            },
            &mut out,
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[0]["Id"], id.as_str());
        assert_eq!(value[0]["Config"]["Cmd"], serde_json::json!(["/hello"]));
    }
}
