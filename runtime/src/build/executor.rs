//! Executes a parsed Dockerfile into an image of the local store (`ctl build`).
//!
//! Each needed stage starts from its base (`scratch`, an earlier stage, or a local image),
//! then its instructions run in order: metadata instructions edit the image config, COPY and
//! ADD write a layer tar straight from the context (or another stage or image), and RUN runs
//! the command as a container of our runtime on an overlay of the stage's layers, whose upper
//! directory becomes the next layer ([`super::diff`]).
//!
//! Layers are deterministic: entries sorted by path, mtimes clamped to 0 (as BuildKit does with
//! `SOURCE_DATE_EPOCH=0`), owners numeric with no user or group names, so identical inputs give
//! identical layer digests. The cache ([`super::cache`]) keys each step by the parent step's
//! key, the instruction as written and, for COPY/ADD, the digest of the layer tar it produces
//! (which covers every file's path, content, mode and owner): a changed file invalidates the
//! steps from its COPY on, and nothing before it. Touching a file without changing it keeps
//! the cache, since mtimes are not part of the layer.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use oci_spec::image::{
    Config, Descriptor, HistoryBuilder, ImageConfiguration, ImageManifestBuilder, MediaType,
    RootFsBuilder,
};

use super::cache::{BuildCache, CacheEntry, CachedLayer};
use super::dockerfile::{self, Command, CopyArgs, Dockerfile, DockerfileError, Instruction, Source};
use super::dockerignore::{DockerIgnore, DockerIgnoreError};
use crate::container::{ContainerError, ImageInfo, LogOptions, Runtime, StartOptions};
use crate::image::{ImageError, ImageStore, LayerRef};
use crate::layer::{LayerError, LayerStore};
use crate::reference::Reference;
use crate::registry::{Registry, RegistryError, RegistryOptions};
use crate::spec::{NetworkMode, RunOptions};

/// What `ctl build` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    pub context_dir: PathBuf,
    /// Defaults to `context_dir/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// `-t` names; the image is left unnamed (`<none>`) without any.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// `--label`, applied to the final image over the Dockerfile's LABELs.
    pub labels: BTreeMap<String, String>,
    /// Print only the image id.
    pub quiet: bool,
    /// The store root (`/var/lib/flotilla`, `ctl --root`).
    pub root: PathBuf,
    /// How to reach registries when a base image must be pulled.
    pub registry: RegistryOptions,
}

/// The built image.
#[derive(Clone, Debug)]
pub struct BuildResult {
    /// The config digest, `sha256:...`.
    pub image_id: String,
    /// Full names it was tagged with.
    pub names: Vec<String>,
    /// Steps run, and how many of them came from the cache.
    pub steps: usize,
    pub cached: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    #[error(".dockerignore: {0}")]
    DockerIgnore(#[from] DockerIgnoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("invalid tag {tag:?}: {message}")]
    Tag { tag: String, message: String },
    #[error("base image {image:?} is not in the local store and pulling it failed: {source}")]
    Pull {
        image: String,
        #[source]
        source: RegistryError,
    },
    #[error("pulling base image {image:?}: {message}")]
    PullSetup { image: String, message: String },
    #[error("RUN {command}: exit code {code}")]
    RunFailed { command: String, code: i32 },
    #[error("line {line}: {instruction}: {message}")]
    Step { line: usize, instruction: String, message: String },
    #[error("writing the build output: {0}")]
    Output(#[source] io::Error),
}

/// Builds the image `opts` describe, writing BuildKit-like plain progress to `out`.
pub fn build(opts: &BuildOptions, out: &mut dyn Write) -> Result<BuildResult, BuildError> {
    let dockerfile_path = opts.dockerfile.clone().unwrap_or_else(|| opts.context_dir.join("Dockerfile"));
    let text = fs::read_to_string(&dockerfile_path).map_err(|source| BuildError::Io {
        action: "reading",
        path: dockerfile_path.clone(),
        source,
    })?;
    let file_name = dockerfile_path.display().to_string();
    let parsed = dockerfile::parse(&text, &file_name, &opts.build_args)?;
    let ignore_path = opts.context_dir.join(".dockerignore");
    let ignore = match fs::read_to_string(&ignore_path) {
        Ok(text) => DockerIgnore::parse(&text)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => DockerIgnore::parse("")?,
        Err(source) => return Err(BuildError::Io { action: "reading", path: ignore_path, source }),
    };
    let mut names = Vec::new();
    for tag in &opts.tags {
        let reference = Reference::parse(tag).map_err(|e| BuildError::Tag { tag: tag.clone(), message: e.to_string() })?;
        if reference.digest.is_some() {
            return Err(BuildError::Tag { tag: tag.clone(), message: "a tag cannot carry a digest".into() });
        }
        names.push(reference);
    }
    let store = ImageStore::open(&opts.root)?;
    // Blobs written before the image names them must survive a concurrent `image prune`.
    let _gc = store.gc_shared()?;
    let layers = LayerStore::open(&opts.root)?;
    let runtime = Runtime::open(&opts.root)?;
    let cache = BuildCache::open(&opts.root);
    let mut builder = Builder {
        opts,
        parsed: &parsed,
        ignore,
        store,
        layers,
        runtime,
        cache,
        out: Progress { out, quiet: opts.quiet, step: 0 },
        stages: HashMap::new(),
        steps: 0,
        cached: 0,
    };
    let needed = parsed.target_stages(opts.target.as_deref())?;
    let last = *needed.last().ok_or_else(|| DockerfileError::UnknownTarget { target: "(none)".into() })?;
    for &i in &needed {
        match builder.run_stage(i) {
            Ok(state) => {
                builder.stages.insert(i, state);
            }
            Err(error) => {
                // The steps that did succeed stay cached for the next attempt.
                if let Err(save_error) = builder.cache.save() {
                    tracing::warn!(error = %save_error, "saving the build cache");
                }
                return Err(error);
            }
        }
    }
    let mut final_state = builder.stages.remove(&last).ok_or_else(|| DockerfileError::UnknownTarget {
        target: opts.target.clone().unwrap_or_default(),
    })?;
    if !opts.labels.is_empty() {
        let mut config = runtime_config(&final_state.image);
        let mut labels = config.labels().clone().unwrap_or_default();
        labels.extend(opts.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        config.set_labels(Some(labels));
        final_state.image.set_config(Some(config));
    }
    let image = builder.commit(&final_state, &names)?;
    builder.cache.save()?;
    if opts.quiet {
        writeln!(builder.out.out, "{}", image.id).map_err(BuildError::Output)?;
    } else {
        let n = builder.out.next();
        writeln!(builder.out.out, "#{n} writing image {} done", image.id).map_err(BuildError::Output)?;
        for name in &names {
            writeln!(builder.out.out, "#{n} naming to {} done", name.full_name()).map_err(BuildError::Output)?;
        }
    }
    Ok(BuildResult {
        image_id: image.id,
        names: names.iter().map(Reference::full_name).collect(),
        steps: builder.steps,
        cached: builder.cached,
    })
}

/// Progress lines, numbered like BuildKit's plain output.
struct Progress<'a> {
    out: &'a mut dyn Write,
    quiet: bool,
    step: usize,
}

impl Progress<'_> {
    fn next(&mut self) -> usize {
        self.step += 1;
        self.step
    }

    fn line(&mut self, text: &str) -> Result<(), BuildError> {
        if self.quiet {
            return Ok(());
        }
        writeln!(self.out, "{text}").map_err(BuildError::Output)
    }
}

/// A stage as built so far: the image config (with rootfs and history) and its layers.
#[derive(Clone)]
struct StageState {
    image: ImageConfiguration,
    layers: Vec<LayerRef>,
    /// The cache key of the last step (the chain id of everything so far).
    key: String,
    shell: Vec<String>,
    /// ARGs in scope with a value: RUN sees them as environment variables (ENV wins).
    args: Vec<(String, String)>,
    /// Docker's `Healthcheck` config extension, which the OCI config type has no field for;
    /// written into the config JSON at commit.
    healthcheck: Option<serde_json::Value>,
    /// Whether this stage set CMD (ENTRYPOINT then keeps it; an inherited CMD is dropped).
    cmd_set: bool,
    /// ONBUILD triggers this stage records for images built FROM it (Docker's `OnBuild`).
    onbuild: Vec<String>,
    /// The base image's triggers, run right after FROM (Docker then drops them from the child).
    inherited_triggers: Vec<String>,
}

struct Builder<'a> {
    opts: &'a BuildOptions,
    parsed: &'a Dockerfile,
    ignore: DockerIgnore,
    store: ImageStore,
    layers: LayerStore,
    runtime: Runtime,
    cache: BuildCache,
    out: Progress<'a>,
    stages: HashMap<usize, StageState>,
    steps: usize,
    cached: usize,
}

/// What one instruction did to the stage.
enum Outcome {
    Config,
    Layer(Option<CachedLayer>),
}

impl Builder<'_> {
    fn run_stage(&mut self, i: usize) -> Result<StageState, BuildError> {
        let stage = &self.parsed.stages[i];
        let label = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
        let total = stage.instructions.len() + 1;
        let n = self.out.next();
        self.out.line(&format!("#{n} [{label} 1/{total}] FROM {}", stage.base))?;
        let started = Instant::now();
        let mut state = self.base(i, &stage.base)?;
        self.out.line(&format!("#{n} DONE {:.1}s", started.elapsed().as_secs_f64()))?;
        // the base image's ONBUILD triggers run first, as Docker runs them
        for trigger in std::mem::take(&mut state.inherited_triggers) {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{trigger}\n"), "ONBUILD trigger", &self.opts.build_args)?;
            for spanned in parsed.stages.into_iter().flat_map(|s| s.instructions) {
                let n = self.out.next();
                let original = spanned.original.trim().replace('\n', " ");
                self.out.line(&format!("#{n} [{label} onbuild] {original}"))?;
                let started = Instant::now();
                self.steps += 1;
                if self.step(&mut state, &spanned.node, &original, stage.line, n)? {
                    self.cached += 1;
                    self.out.line(&format!("#{n} CACHED"))?;
                } else {
                    self.out.line(&format!("#{n} DONE {:.1}s", started.elapsed().as_secs_f64()))?;
                }
            }
        }
        for (k, spanned) in stage.instructions.iter().enumerate() {
            if let Instruction::Onbuild(_) = &spanned.node {
                // the original line minus its ONBUILD keyword (any case), as Docker stores it
                let text = spanned.original.trim();
                let trigger = text.split_once(char::is_whitespace).map(|(_, rest)| rest.trim()).unwrap_or_default();
                state.onbuild.push(trigger.to_string());
            }
            let n = self.out.next();
            let original = spanned.original.trim().replace('\n', " ");
            self.out.line(&format!("#{n} [{label} {}/{total}] {original}", k + 2))?;
            let started = Instant::now();
            self.steps += 1;
            let hit = self.step(&mut state, &spanned.node, &original, spanned.line, n)?;
            if hit {
                self.cached += 1;
                self.out.line(&format!("#{n} CACHED"))?;
            } else {
                self.out.line(&format!("#{n} DONE {:.1}s", started.elapsed().as_secs_f64()))?;
            }
        }
        Ok(state)
    }

    /// The starting state of a stage: `scratch`, an earlier stage, or a local image.
    fn base(&mut self, i: usize, base: &str) -> Result<StageState, BuildError> {
        if let Some(j) = self.parsed.stage_index(base).filter(|&j| j < i && self.parsed.stages[j].name.is_some()) {
            if let Some(state) = self.stages.get(&j) {
                return Ok(state.clone());
            }
        }
        let default_shell = vec!["/bin/sh".to_string(), "-c".to_string()];
        if base.eq_ignore_ascii_case("scratch") {
            let rootfs = RootFsBuilder::default()
                .typ("layers")
                .diff_ids(Vec::<String>::new())
                .build()
                .map_err(|e| step_error(0, "FROM", e))?;
            let mut image = ImageConfiguration::default();
            image.set_rootfs(rootfs);
            image.set_history(Some(Vec::new()));
            return Ok(StageState { image, layers: Vec::new(), key: "scratch".into(), shell: default_shell, args: Vec::new(), healthcheck: None, cmd_set: false, onbuild: Vec::new(), inherited_triggers: Vec::new() });
        }
        let image = match self.store.resolve(base) {
            Ok(image) => image,
            Err(ImageError::NotFound(_)) => self.pull(base)?,
            Err(e) => return Err(e.into()),
        };
        // Docker's config extensions the OCI type drops: the base's Healthcheck is inherited,
        // its OnBuild triggers run in this stage
        let raw: serde_json::Value = self
            .store
            .read_blob(&image.id)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let healthcheck = raw.pointer("/config/Healthcheck").filter(|v| !v.is_null()).cloned();
        let inherited_triggers = raw
            .pointer("/config/OnBuild")
            .and_then(serde_json::Value::as_array)
            .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Ok(StageState {
            key: image.id.clone(),
            image: image.config,
            layers: image.layers,
            shell: default_shell,
            args: Vec::new(),
            healthcheck,
            cmd_set: false,
            onbuild: Vec::new(),
            inherited_triggers,
        })
    }

    /// Pulls a missing base image. The registry client is async; the pull runs on a thread of
    /// its own with a private tokio runtime, since the caller may already be inside one.
    fn pull(&mut self, base: &str) -> Result<crate::image::Image, BuildError> {
        let setup = |message: String| BuildError::PullSetup { image: base.to_string(), message };
        let reference = Reference::parse(base).map_err(|e| setup(e.to_string()))?;
        let registry = Registry::new(self.opts.registry.clone()).map_err(|source| BuildError::Pull { image: base.to_string(), source })?;
        let lines = std::sync::Mutex::new(Vec::<String>::new());
        let store = &self.store;
        let result = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| setup(e.to_string()))?;
                    let out = |line: &str| {
                        if let Ok(mut lines) = lines.lock() {
                            lines.push(line.to_string());
                        }
                    };
                    rt.block_on(registry.pull(store, &reference, &out))
                        .map_err(|source| BuildError::Pull { image: base.to_string(), source })
                })
                .join()
                .map_err(|_| setup("the pull thread panicked".into()))?
        });
        for line in lines.into_inner().unwrap_or_default() {
            self.out.line(&format!("#{} {line}", self.out.step))?;
        }
        result
    }

    /// Runs one instruction; true when it came from the cache.
    fn step(
        &mut self,
        state: &mut StageState,
        instruction: &Instruction,
        original: &str,
        line: usize,
        n: usize,
    ) -> Result<bool, BuildError> {
        // The typed instruction carries the values after ARG/ENV expansion, so a changed
        // --build-arg changes the key even when the text as written does not.
        let mut key_input = format!("{}\n{original}\n{instruction:?}", state.key);
        let outcome_key;
        let mut hit = false;
        let now = jiff::Timestamp::now().to_string();
        let mut created = now.clone();
        let outcome = match instruction {
            Instruction::Copy(args) | Instruction::Add(args) => {
                let is_add = matches!(instruction, Instruction::Add(_));
                let tar = self.copy_layer(state, args, is_add, line, original)?;
                let diff_id = sha256(&tar);
                key_input.push('\n');
                key_input.push_str(&diff_id);
                outcome_key = sha(&key_input);
                match self.cached(&outcome_key) {
                    Some(entry) => {
                        hit = true;
                        created = entry.created;
                        Outcome::Layer(entry.layer)
                    }
                    None => {
                        let layer = self.store_layer(&tar, &diff_id)?;
                        self.cache.insert(&outcome_key, CacheEntry { layer: Some(layer.clone()), created: now });
                        Outcome::Layer(Some(layer))
                    }
                }
            }
            Instruction::Run { command, heredocs, mounts, network, .. } => {
                if !mounts.is_empty() || network.as_deref().is_some_and(|n| n != "host" && n != "default") {
                    return Err(step_error(line, "RUN", "--mount and --network other than host are not supported yet"));
                }
                let command = &with_heredocs(command, heredocs).map_err(|m| step_error(line, "RUN", m))?;
                // The config the command sees is part of what it produces.
                if let Some(config) = state.image.config() {
                    key_input.push('\n');
                    key_input.push_str(&serde_json::to_string(config).unwrap_or_default());
                }
                key_input.push_str(&format!("\n{:?}", state.args));
                outcome_key = sha(&key_input);
                match self.cached(&outcome_key) {
                    Some(entry) => {
                        hit = true;
                        created = entry.created;
                        Outcome::Layer(entry.layer)
                    }
                    None => {
                        let layer = self.run(state, command, original, n)?;
                        self.cache.insert(&outcome_key, CacheEntry { layer: layer.clone(), created: now });
                        Outcome::Layer(layer)
                    }
                }
            }
            other => {
                outcome_key = sha(&key_input);
                apply_config(state, other)?;
                match self.cached(&outcome_key) {
                    Some(entry) => {
                        hit = true;
                        created = entry.created;
                    }
                    None => self.cache.insert(&outcome_key, CacheEntry { layer: None, created: now }),
                }
                Outcome::Config
            }
        };
        state.key = outcome_key;
        let empty = !matches!(outcome, Outcome::Layer(Some(_)));
        if let Outcome::Layer(Some(layer)) = outcome {
            let mut diff_ids = state.image.rootfs().diff_ids().clone();
            diff_ids.push(layer.diff_id.clone());
            let rootfs = RootFsBuilder::default().typ("layers").diff_ids(diff_ids).build().map_err(|e| step_error(line, "rootfs", e))?;
            state.image.set_rootfs(rootfs);
            state.layers.push(LayerRef {
                digest: layer.digest,
                diff_id: layer.diff_id,
                media_type: MediaType::ImageLayerGzip.to_string(),
                size: layer.size,
            });
        }
        let mut history = HistoryBuilder::default()
            .created(created.clone())
            .created_by(original.to_string())
            .comment("buildkit.dockerfile.v0")
            .build()
            .map_err(|e| step_error(line, "history", e))?;
        if empty {
            history.set_empty_layer(Some(true));
        }
        let mut all = state.image.history().clone().unwrap_or_default();
        all.push(history);
        state.image.set_history(Some(all));
        if let Instruction::Shell(shell) = instruction {
            state.shell = shell.clone();
        }
        if let Instruction::Arg(args) = instruction {
            for arg in args {
                state.args.retain(|(k, _)| k != &arg.name);
                if let Some(value) = &arg.value {
                    state.args.push((arg.name.clone(), value.clone()));
                }
            }
        }
        Ok(hit)
    }

    /// A cached result whose blob (if it has one) is still in the store.
    fn cached(&self, key: &str) -> Option<CacheEntry> {
        if self.opts.no_cache {
            return None;
        }
        let entry = self.cache.get(key)?;
        match &entry.layer {
            Some(layer) if !self.store.blob_path(&layer.digest).is_file() => None,
            _ => Some(entry),
        }
    }

    /// Gzips a layer tar into the store.
    fn store_layer(&self, tar: &[u8], diff_id: &str) -> Result<CachedLayer, BuildError> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).and_then(|()| gz.flush()).map_err(BuildError::Output)?;
        let bytes = gz.finish().map_err(BuildError::Output)?;
        let digest = self.store.put_blob(&bytes)?;
        Ok(CachedLayer { digest, diff_id: diff_id.to_string(), size: bytes.len() as u64 })
    }

    /// The extracted dirs of the stage's layers, top first.
    fn lowers(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>, BuildError> {
        let mut lowers = Vec::new();
        for layer in layers.iter().rev() {
            lowers.push(self.layers.ensure(layer, &self.store.blob_path(&layer.digest))?);
        }
        Ok(lowers)
    }

    /// Runs a RUN command as a container and turns its upper dir into a layer.
    fn run(&mut self, state: &StageState, command: &Command, original: &str, n: usize) -> Result<Option<CachedLayer>, BuildError> {
        let argv = match command {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(text) => {
                let mut argv = state.shell.clone();
                argv.push(text.clone());
                argv
            }
        };
        let config = runtime_config(&state.image);
        let opts = RunOptions {
            // An explicit unique name: the runtime's random names come from a small set.
            name: Some(format!("build-{:016x}", rand::random::<u64>())),
            cmd: argv,
            entrypoint: Some(Vec::new()),
            env: run_env(&config, &state.args),
            workdir: config.working_dir().clone().filter(|w| !w.is_empty()),
            user: config.user().clone().filter(|u| !u.is_empty()),
            network: NetworkMode::Host,
            ..RunOptions::default()
        };
        let lowers = self.lowers(&state.layers)?;
        let info = ImageInfo { id: state.key.clone(), name: "build".into(), config: state.image.clone() };
        let id = self.runtime.create_from_layers(&info, lowers.clone(), &opts)?;
        let result = self.run_container(&id, original, n, &lowers);
        if let Err(error) = self.runtime.remove(&id, true) {
            tracing::warn!(%id, %error, "removing a build container");
        }
        result
    }

    fn run_container(&mut self, id: &str, original: &str, n: usize, lowers: &[PathBuf]) -> Result<Option<CachedLayer>, BuildError> {
        let started = self.runtime.start(id, &StartOptions::default())?;
        {
            // Stream both output streams as they come, each line under the step's number, as
            // BuildKit's plain progress shows them; following stops when the command exits.
            let progress = std::cell::RefCell::new(&mut self.out);
            let mut stdout = StepOutput { progress: &progress, n, pending: Vec::new() };
            let mut stderr = StepOutput { progress: &progress, n, pending: Vec::new() };
            let follow = LogOptions { follow: true, ..LogOptions::default() };
            self.runtime.logs(id, &follow, &mut stdout, &mut stderr)?;
            stdout.flush().and_then(|()| stderr.flush()).map_err(BuildError::Output)?;
        }
        let code = match started.wait() {
            Some(code) => code,
            None => self.runtime.wait(id)?,
        };
        if code != 0 {
            let command = original.strip_prefix("RUN").unwrap_or(original).trim().to_string();
            return Err(BuildError::RunFailed { command, code });
        }
        let upper = self.runtime.container_dir(id).join("upper");
        let tar = super::diff::upper_to_tar(&upper, lowers).map_err(|(path, source)| BuildError::Io {
            action: "reading the RUN changes in",
            path,
            source,
        })?;
        match tar {
            None => Ok(None),
            Some(tar) => {
                let diff_id = sha256(&tar);
                Ok(Some(self.store_layer(&tar, &diff_id)?))
            }
        }
    }

    /// The layer tar of a COPY or ADD.
    fn copy_layer(&self, state: &StageState, args: &CopyArgs, is_add: bool, line: usize, original: &str) -> Result<Vec<u8>, BuildError> {
        let what = if is_add { "ADD" } else { "COPY" };
        let err = |m: String| step_error(line, what, m);
        let config = runtime_config(&state.image);
        let workdir = config.working_dir().clone().unwrap_or_default();
        let joined = if args.dest.starts_with('/') {
            args.dest.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), args.dest)
        };
        // `/app/./` -> `/app/`: layer paths stay canonical; `..` cannot climb above `/`.
        let mut dest_abs = clean_abs(&joined);
        if (joined.ends_with('/') || joined.ends_with("/.")) && dest_abs != "/" {
            dest_abs.push('/');
        }
        let lowers = self.lowers(&state.layers)?;
        let owner = match &args.chown {
            Some(spec) => Some(resolve_chown(spec, &lowers).map_err(err)?),
            None => None,
        };
        let chmod = match &args.chmod {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| err(format!("--chmod={m}: give an octal mode like 0755")))?),
            None => None,
        };
        // The source tree: the context, or the filesystem of a stage or image mounted read-only.
        let mut mount: Option<MountGuard> = None;
        let (src_root, from_context) = match &args.from {
            None => (self.opts.context_dir.clone(), true),
            Some(from) => {
                let from_layers = match self.parsed.stage_index(from).and_then(|j| self.stages.get(&j)) {
                    Some(st) => st.layers.clone(),
                    None => self.store.resolve(from).map_err(|e| err(format!("--from={from}: {e}")))?.layers,
                };
                let target = self.opts.root.join("build-mounts").join(format!("{}", std::process::id()));
                fs::create_dir_all(&target).map_err(|source| BuildError::Io { action: "creating", path: target.clone(), source })?;
                let from_lowers = self.lowers(&from_layers)?;
                if from_lowers.is_empty() {
                    return Err(err(format!("--from={from}: the stage has no files")));
                }
                crate::layer::rootfs::mount_readonly(&from_lowers, &target)?;
                mount = Some(MountGuard(target.clone()));
                (target, false)
            }
        };
        let mut entries: Vec<(String, PathBuf)> = Vec::new(); // (dest path, source path)
        let mut heredocs: Vec<(String, Vec<u8>)> = Vec::new();
        let multi = args.sources.len() > 1 || dest_abs.ends_with('/');
        let mut tars: Vec<(PathBuf, String)> = Vec::new();
        let mut matched_total = 0;
        for source in &args.sources {
            match source {
                Source::Heredoc(doc) => {
                    let dest = if multi { format!("{}/{}", dest_abs.trim_end_matches('/'), doc.name) } else { dest_abs.clone() };
                    heredocs.push((dest, doc.content.clone().into_bytes()));
                    matched_total += 1;
                }
                Source::Path(pattern) => {
                    if is_add && (pattern.starts_with("http://") || pattern.starts_with("https://") || pattern.starts_with("git@")) {
                        return Err(err(format!("{pattern}: ADD from a URL is not supported here (no network access for builds): download the file into the context and ADD or COPY it")));
                    }
                    let matches = expand_source(&src_root, pattern, from_context.then_some(&self.ignore)).map_err(err)?;
                    if matches.is_empty() {
                        return Err(err(format!("{pattern}: no such file or directory in the {}", if from_context { "build context (or it is excluded by .dockerignore)" } else { "source stage" })));
                    }
                    let as_dir = multi || matches.len() > 1;
                    for rel in matches {
                        matched_total += 1;
                        let abs = src_root.join(&rel);
                        let meta = fs::symlink_metadata(&abs).map_err(|source| BuildError::Io { action: "reading", path: abs.clone(), source })?;
                        let base_name = Path::new(&rel).file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                        if meta.is_dir() {
                            walk_dir(&src_root, &rel, dest_abs.trim_end_matches('/'), from_context.then_some(&self.ignore), &mut entries).map_err(err)?;
                        } else if is_add && from_context && is_tar(&abs) {
                            tars.push((abs, dest_abs.clone()));
                        } else {
                            let dest = if as_dir || exists_dir(&lowers, &dest_abs) {
                                format!("{}/{base_name}", dest_abs.trim_end_matches('/'))
                            } else {
                                dest_abs.clone()
                            };
                            entries.push((dest, abs));
                        }
                    }
                }
            }
        }
        if matched_total == 0 {
            return Err(err(format!("{original}: nothing to copy")));
        }
        let mut tar = LayerTar::new();
        let dest_dir = if multi || entries.iter().any(|(d, _)| d.len() > dest_abs.len()) || !tars.is_empty() { dest_abs.trim_end_matches('/') } else { parent_of(&dest_abs) };
        // Parent directories that do not exist yet are created root-owned, 0755, as Docker does.
        for dir in ancestors(dest_dir) {
            if !exists_dir(&lowers, &dir) {
                tar.dir(&dir, 0o755, owner.unwrap_or((0, 0)))?;
            }
        }
        entries.sort();
        for (dest, src) in &entries {
            tar.add_path(dest, src, from_context, owner, chmod, &lowers)?;
        }
        for (dest, content) in &heredocs {
            tar.file(dest, content, chmod.unwrap_or(0o644), owner.unwrap_or((0, 0)))?;
        }
        for (src, dest) in &tars {
            tar.add_archive(src, dest)?;
        }
        drop(mount);
        tar.finish()
    }

    /// Writes the config and manifest and names the image.
    fn commit(&self, state: &StageState, names: &[Reference]) -> Result<crate::image::Image, BuildError> {
        let mut image = state.image.clone();
        // The newest step's time, not now: a fully cached rebuild then gives the same id.
        let created = image
            .history()
            .as_ref()
            .and_then(|h| h.iter().filter_map(|e| e.created().clone()).max())
            .unwrap_or_else(|| jiff::Timestamp::now().to_string());
        image.set_created(Some(created));
        let mut json = serde_json::to_value(&image).map_err(|e| step_error(0, "image config", e))?;
        if let Some(check) = &state.healthcheck {
            if let Some(object) = json.as_object_mut() {
                let config = object.entry("config").or_insert_with(|| serde_json::json!({}));
                config["Healthcheck"] = check.clone();
            }
        }
        if !state.onbuild.is_empty() {
            if let Some(object) = json.as_object_mut() {
                let config = object.entry("config").or_insert_with(|| serde_json::json!({}));
                config["OnBuild"] = serde_json::json!(state.onbuild);
            }
        }
        let config_bytes = serde_json::to_vec(&json).map_err(|e| step_error(0, "image config", e))?;
        let config_digest = self.store.put_blob(&config_bytes)?;
        let mut layers = Vec::new();
        for layer in &state.layers {
            let media_type = if layer.media_type.is_empty() { MediaType::ImageLayerGzip } else { MediaType::from(layer.media_type.as_str()) };
            layers.push(Descriptor::new(media_type, layer.size, parse_digest(&layer.digest)?));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(MediaType::ImageConfig, config_bytes.len() as u64, parse_digest(&config_digest)?))
            .layers(layers)
            .build()
            .map_err(|e| step_error(0, "manifest", e))?;
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| step_error(0, "manifest", e))?;
        if names.is_empty() {
            return Ok(self.store.store_unnamed(&manifest_bytes)?);
        }
        let mut last = None;
        for name in names {
            last = Some(self.store.store_manifest(name, &manifest_bytes)?);
        }
        last.ok_or_else(|| step_error(0, "tag", "no name"))
    }
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, BuildError> {
    digest.parse().map_err(|e| step_error(0, "digest", format!("{digest}: {e}")))
}

fn step_error(line: usize, instruction: &str, message: impl std::fmt::Display) -> BuildError {
    BuildError::Step { line, instruction: instruction.to_string(), message: message.to_string() }
}

fn sha(text: &str) -> String {
    sha256(text.as_bytes())
}

/// `sha256:<hex>` of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn runtime_config(image: &ImageConfiguration) -> Config {
    image.config().clone().unwrap_or_default()
}

/// Applies a metadata instruction to the image config.
fn apply_config(state: &mut StageState, instruction: &Instruction) -> Result<(), BuildError> {
    let mut config = runtime_config(&state.image);
    match instruction {
        Instruction::Env(pairs) => {
            let mut env = config.env().clone().unwrap_or_default();
            for (k, v) in pairs {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
            config.set_env(Some(env));
        }
        Instruction::Workdir(dir) => {
            let current = config.working_dir().clone().unwrap_or_default();
            let next = if dir.starts_with('/') { dir.clone() } else { format!("{}/{dir}", current.trim_end_matches('/')) };
            config.set_working_dir(Some(next));
        }
        Instruction::User(user) => {
            config.set_user(Some(user.clone()));
        }
        Instruction::Cmd(command) => {
            config.set_cmd(Some(argv(command, &state.shell)));
            state.cmd_set = true;
        }
        Instruction::Entrypoint(command) => {
            config.set_entrypoint(Some(argv(command, &state.shell)));
            // Docker drops an inherited CMD when ENTRYPOINT is set, not one this stage set.
            if !state.cmd_set {
                config.set_cmd(None);
            }
        }
        Instruction::Healthcheck(check) => state.healthcheck = Some(healthcheck_json(check.as_ref(), &state.shell)),
        Instruction::Expose(ports) => {
            let mut exposed = config.exposed_ports().clone().unwrap_or_default();
            for port in ports {
                for p in port.start..=port.end {
                    let text = format!("{p}/{}", port.protocol);
                    if !exposed.contains(&text) {
                        exposed.push(text);
                    }
                }
            }
            config.set_exposed_ports(Some(exposed));
        }
        Instruction::Label(pairs) => {
            let mut labels = config.labels().clone().unwrap_or_default();
            labels.extend(pairs.iter().cloned());
            config.set_labels(Some(labels));
        }
        Instruction::Maintainer(who) => {
            let mut labels = config.labels().clone().unwrap_or_default();
            labels.insert("maintainer".into(), who.clone());
            config.set_labels(Some(labels));
            state.image.set_author(Some(who.clone()));
        }
        Instruction::Volume(paths) => {
            let mut volumes = config.volumes().clone().unwrap_or_default();
            for p in paths {
                if !volumes.contains(p) {
                    volumes.push(p.clone());
                }
            }
            config.set_volumes(Some(volumes));
        }
        Instruction::StopSignal(signal) => {
            config.set_stop_signal(Some(signal.clone()));
        }
        // SHELL only changes how later shell forms run (kept in the stage state); ARG values
        // were expanded by the parser.
        Instruction::Shell(_) | Instruction::Arg(_) => {}
        // the trigger text is recorded by run_stage and written into the config at commit
        Instruction::Onbuild(_) => {}
        Instruction::Run { .. } | Instruction::Copy(_) | Instruction::Add(_) => {}
    }
    state.image.set_config(Some(config));
    Ok(())
}

/// Docker's `Healthcheck` object: `Test` as `["CMD", ...]`, `["CMD-SHELL", cmd]` or `["NONE"]`,
/// durations in nanoseconds.
fn healthcheck_json(check: Option<&dockerfile::Healthcheck>, shell: &[String]) -> serde_json::Value {
    let Some(check) = check else { return serde_json::json!({ "Test": ["NONE"] }) };
    let test: Vec<String> = match &check.command {
        Command::Exec(argv) => std::iter::once("CMD".to_string()).chain(argv.iter().cloned()).collect(),
        Command::Shell(text) => {
            // CMD-SHELL runs through the default shell; a custom SHELL is spelled out instead.
            if shell == ["/bin/sh", "-c"] {
                vec!["CMD-SHELL".to_string(), text.clone()]
            } else {
                std::iter::once("CMD".to_string()).chain(shell.iter().cloned()).chain(std::iter::once(text.clone())).collect()
            }
        }
    };
    let mut value = serde_json::json!({ "Test": test });
    for (key, duration) in [
        ("Interval", check.interval),
        ("Timeout", check.timeout),
        ("StartPeriod", check.start_period),
        ("StartInterval", check.start_interval),
    ] {
        if let Some(d) = duration {
            value[key] = serde_json::json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        }
    }
    if let Some(retries) = check.retries {
        value["Retries"] = serde_json::json!(retries);
    }
    value
}

/// A RUN command with its here-documents: `RUN <<EOF` alone runs the document as the
/// script; otherwise the documents follow the command line, as a shell script spells them.
fn with_heredocs(command: &Command, heredocs: &[dockerfile::Heredoc]) -> Result<Command, String> {
    if heredocs.is_empty() {
        return Ok(command.clone());
    }
    let Command::Shell(text) = command else {
        return Err("here-documents need the shell form".into());
    };
    if let [doc] = heredocs {
        let marker = text.trim().trim_start_matches("<<").trim_start_matches('-');
        let word = marker.trim_matches(|c| c == '"' || c == '\'');
        if word == doc.name {
            return Ok(Command::Shell(doc.content.clone()));
        }
        if text.trim().starts_with("<<") {
            return Err("RUN <<EOF with an interpreter after it is not supported yet: write RUN <interpreter> <<EOF".into());
        }
    }
    let mut script = text.clone();
    for doc in heredocs {
        script.push('\n');
        script.push_str(&doc.content);
        script.push_str(&doc.name);
    }
    script.push('\n');
    Ok(Command::Shell(script))
}

/// The image's environment plus the ARGs in scope that ENV does not set.
fn run_env(config: &Config, args: &[(String, String)]) -> Vec<String> {
    let mut env = config.env().clone().unwrap_or_default();
    for (name, value) in args {
        if !env.iter().any(|e| e.split('=').next() == Some(name.as_str())) {
            env.push(format!("{name}={value}"));
        }
    }
    env
}

fn argv(command: &Command, shell: &[String]) -> Vec<String> {
    match command {
        Command::Exec(argv) => argv.clone(),
        Command::Shell(text) => {
            let mut argv = shell.to_vec();
            argv.push(text.clone());
            argv
        }
    }
}

/// A writer that prints each complete line of a RUN's output as a progress line.
struct StepOutput<'p, 'o> {
    progress: &'p std::cell::RefCell<&'p mut Progress<'o>>,
    n: usize,
    pending: Vec<u8>,
}

impl Write for StepOutput<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            self.emit(&text)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let text = String::from_utf8_lossy(&self.pending).into_owned();
            self.pending.clear();
            self.emit(&text)?;
        }
        Ok(())
    }
}

impl StepOutput<'_, '_> {
    fn emit(&self, text: &str) -> io::Result<()> {
        let mut progress = self.progress.borrow_mut();
        if progress.quiet {
            return Ok(());
        }
        writeln!(progress.out, "#{} {text}", self.n)?;
        progress.out.flush()
    }
}

/// Unmounts a `--from` source when the COPY is done, also on errors.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(error) = crate::layer::rootfs::unmount(&self.0) {
            tracing::warn!(path = %self.0.display(), %error, "unmounting a COPY --from source");
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// `/a/b/c` -> `/a/b`.
fn parent_of(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) => &trimmed[..i],
        None => "",
    }
}

/// `/a/b` -> [`/a`, `/a/b`].
fn ancestors(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        current.push('/');
        current.push_str(part);
        out.push(current.clone());
    }
    out
}

/// Whether `path` is a directory in any of the layers (an approximation that ignores whiteouts).
fn exists_dir(lowers: &[PathBuf], path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return true;
    }
    lowers.iter().any(|l| l.join(rel).is_dir())
}

fn is_tar(path: &Path) -> bool {
    let mut head = [0u8; 262];
    let Ok(mut file) = fs::File::open(path) else { return false };
    let n = file.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// `--chown=user[:group]`, numeric or looked up in the stage's /etc/passwd and /etc/group.
fn resolve_chown(spec: &str, lowers: &[PathBuf]) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = lowers.iter().find_map(|l| fs::read_to_string(l.join("etc").join(file)).ok())?;
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().unwrap_or(0))))
                .flatten()
        })
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup("passwd", user).ok_or_else(|| format!("--chown={spec}: no user {user:?} in the stage's /etc/passwd"))?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("group", g).map(|(gid, _)| gid).ok_or_else(|| format!("--chown={spec}: no group {g:?} in the stage's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

/// The relative paths a COPY source names: the path itself, or the glob's matches, sorted.
fn expand_source(root: &Path, pattern: &str, ignore: Option<&DockerIgnore>) -> Result<Vec<String>, String> {
    let clean = clean_rel(pattern)?;
    let has_glob = clean.contains(['*', '?', '[']);
    if !has_glob {
        if clean.is_empty() {
            return Ok(vec![String::new()]);
        }
        if ignore.is_some_and(|i| i.matches(&clean)) {
            return Ok(Vec::new());
        }
        return Ok(if fs::symlink_metadata(root.join(&clean)).is_ok() { vec![clean] } else { Vec::new() });
    }
    let depth = clean.split('/').count();
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(depth).max_depth(depth).sort_by_file_name() {
        let entry = entry.map_err(|e| format!("{pattern}: {e}"))?;
        let rel = entry.path().strip_prefix(root).map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        if glob_match(&clean, &rel) && !ignore.is_some_and(|i| i.matches(&rel)) {
            out.push(rel);
        }
    }
    Ok(out)
}

/// A relative, normalised path inside the source root; `..` may not leave it.
fn clean_rel(path: &str) -> Result<String, String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{path}: the source is outside the build context"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// An absolute path with `.` and `..` resolved, `..` stopping at `/` as the kernel's does.
fn clean_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Go `filepath.Match`-like matching of `*`, `?` and `[...]`, `/` never matched by a wildcard.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != '/').any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && n[0] != '/' && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().position(|&c| c == ']') else { return !n.is_empty() && n[0] == '[' && go(&p[1..], &n[1..]) };
                let Some(&c) = n.first() else { return false };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut found = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        found |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        found |= class[i] == c;
                        i += 1;
                    }
                }
                found != negate && go(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// Adds everything under `rel` (a directory: its contents) to `entries` as dest paths.
fn walk_dir(root: &Path, rel: &str, dest: &str, ignore: Option<&DockerIgnore>, entries: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let base = root.join(rel);
    let mut walker = walkdir::WalkDir::new(&base).min_depth(1).sort_by_file_name().into_iter();
    while let Some(entry) = walker.next() {
        let entry = entry.map_err(|e| format!("{}: {e}", base.display()))?;
        let inner = entry.path().strip_prefix(&base).map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let context_rel = if rel.is_empty() { inner.clone() } else { format!("{rel}/{inner}") };
        if let Some(ignore) = ignore {
            if ignore.matches(&context_rel) {
                if entry.file_type().is_dir() && ignore.may_skip_dir(&context_rel) {
                    walker.skip_current_dir();
                }
                continue;
            }
        }
        entries.push((format!("{dest}/{inner}"), entry.path().to_path_buf()));
    }
    Ok(())
}

/// A deterministic layer tar being written in memory.
struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl LayerTar {
    fn new() -> LayerTar {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        LayerTar { builder }
    }

    fn header(kind: tar::EntryType, mode: u32, (uid, gid): (u32, u32), size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode & 0o7777);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    fn io(path: &str, source: io::Error) -> BuildError {
        BuildError::Io { action: "writing the layer entry", path: PathBuf::from(path), source }
    }

    fn dir(&mut self, path: &str, mode: u32, owner: (u32, u32)) -> Result<(), BuildError> {
        let mut h = Self::header(tar::EntryType::Directory, mode, owner, 0);
        let name = format!("{}/", path.trim_matches('/'));
        self.builder.append_data(&mut h, &name, io::empty()).map_err(|e| Self::io(path, e))
    }

    fn file(&mut self, path: &str, content: &[u8], mode: u32, owner: (u32, u32)) -> Result<(), BuildError> {
        let mut h = Self::header(tar::EntryType::Regular, mode, owner, content.len() as u64);
        self.builder.append_data(&mut h, path.trim_start_matches('/'), content).map_err(|e| Self::io(path, e))
    }

    /// A file, dir or symlink from disk; files from the context are root-owned unless `--chown`.
    fn add_path(&mut self, dest: &str, src: &Path, from_context: bool, owner: Option<(u32, u32)>, chmod: Option<u32>, _lowers: &[PathBuf]) -> Result<(), BuildError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(src).map_err(|source| BuildError::Io { action: "reading", path: src.to_path_buf(), source })?;
        let owner = owner.unwrap_or(if from_context { (0, 0) } else { (meta.uid(), meta.gid()) });
        let mode = chmod.unwrap_or(meta.mode());
        let rel = dest.trim_start_matches('/');
        if meta.is_dir() {
            self.dir(dest, mode, owner)
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(src).map_err(|source| BuildError::Io { action: "reading", path: src.to_path_buf(), source })?;
            let mut h = Self::header(tar::EntryType::Symlink, 0o777, owner, 0);
            self.builder.append_link(&mut h, rel, &target).map_err(|e| Self::io(dest, e))
        } else if meta.is_file() {
            let file = fs::File::open(src).map_err(|source| BuildError::Io { action: "opening", path: src.to_path_buf(), source })?;
            let mut h = Self::header(tar::EntryType::Regular, mode, owner, meta.len());
            self.builder.append_data(&mut h, rel, file).map_err(|e| Self::io(dest, e))
        } else {
            // Sockets, fifos and devices have no place in a COPY.
            tracing::debug!(path = %src.display(), "skipping a special file in COPY");
            Ok(())
        }
    }

    /// ADD of a local (maybe gzipped) tar: its entries land under `dest`.
    fn add_archive(&mut self, src: &Path, dest: &str) -> Result<(), BuildError> {
        let file = fs::File::open(src).map_err(|source| BuildError::Io { action: "opening", path: src.to_path_buf(), source })?;
        let (_, reader) = crate::layer::decompress(io::BufReader::new(file)).map_err(|source| BuildError::Io { action: "decompressing", path: src.to_path_buf(), source })?;
        let mut archive = tar::Archive::new(reader);
        let bad = |source: io::Error| BuildError::Io { action: "reading the tar", path: src.to_path_buf(), source };
        let mut items: Vec<(String, tar::Header, Option<PathBuf>, Vec<u8>)> = Vec::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            let rel = clean_rel(&path).map_err(|m| step_error(0, "ADD", m))?;
            if rel.is_empty() {
                continue;
            }
            let link = entry.link_name().map_err(bad)?.map(|l| l.into_owned());
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(bad)?;
            let dest_path = format!("{}/{rel}", dest.trim_matches('/'));
            let dest_path = dest_path.trim_start_matches('/').to_string();
            // A fresh header with only what the layer needs: source tars may leave fields blank.
            let source = entry.header();
            let owner = (
                source.uid().ok().and_then(|u| u32::try_from(u).ok()).unwrap_or(0),
                source.gid().ok().and_then(|g| u32::try_from(g).ok()).unwrap_or(0),
            );
            let mut header = Self::header(source.entry_type(), source.mode().unwrap_or(0o644), owner, data.len() as u64);
            if source.entry_type().is_dir() {
                header.set_size(0);
            }
            items.push((dest_path, header, link, data));
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, mut header, link, data) in items {
            match link {
                Some(target) if header.entry_type().is_hard_link() => {
                    let target = format!("{}/{}", dest.trim_matches('/'), target.to_string_lossy().trim_start_matches('/'));
                    self.builder.append_link(&mut header, &path, target.trim_start_matches('/')).map_err(|e| Self::io(&path, e))?;
                }
                Some(target) => self.builder.append_link(&mut header, &path, &target).map_err(|e| Self::io(&path, e))?,
                None => self.builder.append_data(&mut header, &path, data.as_slice()).map_err(|e| Self::io(&path, e))?,
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, BuildError> {
        self.builder.into_inner().map_err(|e| Self::io("(end of layer)", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_go() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "dir/a.txt"));
        assert!(glob_match("src/?.rs", "src/a.rs"));
        assert!(glob_match("f[0-9]", "f7"));
        assert!(!glob_match("f[!0-9]", "f7"));
    }

    #[test]
    fn clean_rel_refuses_escapes() {
        assert_eq!(clean_rel("./a/../b/").as_deref(), Ok("b"));
        assert!(clean_rel("../etc/passwd").is_err());
    }

    #[test]
    fn destinations_are_canonical() {
        assert_eq!(clean_abs("/app/./"), "/app");
        assert_eq!(clean_abs("/../x/../y"), "/y");
    }

    #[test]
    fn healthcheck_is_dockers_json() {
        let check = dockerfile::Healthcheck {
            interval: Some(std::time::Duration::from_secs(5)),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: Some(3),
            command: Command::Shell("true".into()),
        };
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        assert_eq!(
            healthcheck_json(Some(&check), &shell),
            serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64, "Retries": 3})
        );
        assert_eq!(healthcheck_json(None, &shell), serde_json::json!({"Test": ["NONE"]}));
    }

    #[test]
    fn ancestors_of_a_dir() {
        assert_eq!(ancestors("/a/b"), vec!["/a".to_string(), "/a/b".to_string()]);
        assert_eq!(parent_of("/app/file"), "/app");
    }
}
