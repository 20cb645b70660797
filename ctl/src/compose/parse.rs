//! Reading a Compose file: YAML into `serde_yaml::Value`, interpolation of every string, then a
//! walk into [`Project`] that knows the path of each value. Walking by hand, rather than deriving
//! `Deserialize`, is what lets an error say `services.web.ports[0]: invalid port "abc"` and lets
//! every key Flotilla does not support become a warning that names it instead of a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::interpolate::{interpolate, parse_dotenv, Vars};
use super::model::*;
use super::ComposeError;

/// The file names looked for when `-f` is not given, in docker compose's order.
pub const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// What [`load`] needs besides the file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `-f`; without it the default names are looked for in `dir`.
    pub file: Option<PathBuf>,
    /// The directory to look in without `-f` (the current directory).
    pub dir: PathBuf,
    /// `-p`.
    pub project_name: Option<String>,
    /// The process environment; it wins over `.env`.
    pub env: Vars,
}

/// A parsed project and what the user should hear about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub project: Project,
    /// The file that was read.
    pub file: PathBuf,
    /// The directory relative paths are resolved against (the file's directory).
    pub dir: PathBuf,
    pub warnings: Vec<String>,
}

/// Finds, reads and parses the project's file, with `.env` from the file's directory.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ComposeError> {
    let file = match &opts.file {
        Some(file) => file.clone(),
        None => DEFAULT_FILES
            .iter()
            .map(|name| opts.dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| ComposeError::NoFile {
                dir: opts.dir.display().to_string(),
            })?,
    };
    let file = std::path::absolute(&file).map_err(|source| ComposeError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let text = std::fs::read_to_string(&file).map_err(|source| ComposeError::Read {
        path: file.display().to_string(),
        source,
    })?;
    let mut vars = Vars::new();
    let dotenv = dir.join(".env");
    if dotenv.is_file() {
        let text = std::fs::read_to_string(&dotenv).map_err(|source| ComposeError::Read {
            path: dotenv.display().to_string(),
            source,
        })?;
        vars = parse_dotenv(&text).map_err(|message| ComposeError::DotEnv {
            path: dotenv.display().to_string(),
            message,
        })?;
    }
    vars.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let dir_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let name_hint = opts
        .project_name
        .clone()
        .or_else(|| vars.get("COMPOSE_PROJECT_NAME").cloned());
    let (project, warnings) = parse(
        &text,
        &file.display().to_string(),
        &dir,
        &vars,
        name_hint.as_deref(),
        &dir_name,
    )?;
    Ok(Loaded {
        project,
        file,
        dir,
        warnings,
    })
}

/// Parses a file's text. `name` (from `-p` or `COMPOSE_PROJECT_NAME`) wins over the file's
/// `name:`, which wins over `dir_name`; the result is normalised as docker compose does.
pub fn parse(
    text: &str,
    source: &str,
    dir: &Path,
    vars: &Vars,
    name: Option<&str>,
    dir_name: &str,
) -> Result<(Project, Vec<String>), ComposeError> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| ComposeError::Yaml {
        path: source.to_string(),
        message: e.to_string(),
    })?;
    let mut walker = Walker {
        source,
        dir,
        vars,
        warnings: Vec::new(),
    };
    let mut missing = Vec::new();
    walker.interpolate_all(&mut root, "", &mut missing)?;
    missing.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for name in missing {
        if seen.insert(name.clone()) {
            walker.warnings.push(format!(
                "the \"{name}\" variable is not set, defaulting to a blank string"
            ));
        }
    }
    let project = walker.project(&root, name, dir_name)?;
    Ok((project, walker.warnings))
}

/// Docker compose's project name rule: lower case, only `a-z0-9_-`, starting with a letter or
/// digit.
pub fn normalize_project_name(name: &str) -> String {
    let kept: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

struct Walker<'a> {
    source: &'a str,
    dir: &'a Path,
    vars: &'a Vars,
    warnings: Vec<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A scalar as a string: Compose accepts numbers and booleans where strings are meant.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl Walker<'_> {
    fn invalid(&self, path: &str, message: impl Into<String>) -> ComposeError {
        ComposeError::Invalid {
            file: self.source.to_string(),
            path: path.to_string(),
            message: message.into(),
        }
    }

    fn interpolate_all(
        &self,
        value: &mut Value,
        path: &str,
        missing: &mut Vec<String>,
    ) -> Result<(), ComposeError> {
        match value {
            Value::String(s) => {
                *s = interpolate(s, self.vars, missing).map_err(|m| self.invalid(path, m))?;
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.interpolate_all(item, &index(path, i), missing)?;
                }
            }
            Value::Mapping(map) => {
                for (key, item) in map.iter_mut() {
                    let key = scalar(key).unwrap_or_default();
                    self.interpolate_all(item, &join(path, &key), missing)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The entries of a mapping with string keys; keys not in `known` are warned about.
    fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Result<Vec<(String, &'v Value)>, ComposeError> {
        let Value::Mapping(map) = value else {
            return Err(self.invalid(path, format!("must be a mapping, not {}", kind(value))));
        };
        let mut entries = Vec::new();
        for (key, item) in map {
            let Some(key) = scalar(key) else {
                return Err(self.invalid(path, "keys must be strings"));
            };
            if !known.is_empty() && !known.contains(&key.as_str()) {
                self.warnings
                    .push(format!("{}: unsupported key, ignored", join(path, &key)));
                continue;
            }
            entries.push((key, item));
        }
        Ok(entries)
    }

    fn string(&self, value: &Value, path: &str) -> Result<String, ComposeError> {
        scalar(value)
            .ok_or_else(|| self.invalid(path, format!("must be a string, not {}", kind(value))))
    }

    fn list<'v>(&self, value: &'v Value, path: &str) -> Result<&'v Vec<Value>, ComposeError> {
        match value {
            Value::Sequence(items) => Ok(items),
            _ => Err(self.invalid(path, format!("must be a list, not {}", kind(value)))),
        }
    }

    fn project(
        &mut self,
        root: &Value,
        name: Option<&str>,
        dir_name: &str,
    ) -> Result<Project, ComposeError> {
        let entries = self.mapping(root, "", &["name", "services", "volumes", "version"])?;
        let mut project = Project::default();
        let mut file_name = None;
        for (key, value) in entries {
            match key.as_str() {
                "name" => file_name = Some(self.string(value, "name")?),
                // `version` is obsolete in the Compose specification and ignored, as docker does.
                "version" => {}
                "services" => {
                    for (service, spec) in self.mapping(value, "services", &[])? {
                        let path = join("services", &service);
                        if !is_service_name(&service) {
                            return Err(self.invalid(&path, "a service name must be lower-case letters, digits and '-', starting with a letter (it becomes a DNS name)"));
                        }
                        let parsed = self.service(spec, &path)?;
                        project.services.insert(service, parsed);
                    }
                }
                "volumes" => {
                    for (volume, spec) in self.mapping(value, "volumes", &[])? {
                        let path = join("volumes", &volume);
                        let mut parsed = Volume::default();
                        if !spec.is_null() {
                            for (key, item) in self.mapping(spec, &path, &["driver"])? {
                                if key == "driver" {
                                    parsed.driver =
                                        Some(self.string(item, &join(&path, "driver"))?);
                                }
                            }
                        }
                        project.volumes.insert(volume, parsed);
                    }
                }
                _ => {}
            }
        }
        let chosen = name
            .map(str::to_string)
            .or(file_name)
            .unwrap_or_else(|| dir_name.to_string());
        project.name = normalize_project_name(&chosen);
        if project.name.is_empty() {
            return Err(self.invalid(
                "name",
                format!("project name {chosen:?} has no letters or digits: pass -p NAME"),
            ));
        }
        if project.services.is_empty() {
            return Err(self.invalid("services", "the project has no services"));
        }
        self.check_references(&project)?;
        Ok(project)
    }

    fn check_references(&self, project: &Project) -> Result<(), ComposeError> {
        for (name, service) in &project.services {
            for dependency in service.depends_on.keys() {
                if !project.services.contains_key(dependency) {
                    return Err(self.invalid(
                        &format!("services.{name}.depends_on"),
                        format!("depends on undefined service {dependency:?}"),
                    ));
                }
            }
            for (i, mount) in service.volumes.iter().enumerate() {
                if let (MountKind::Volume, Some(source)) = (mount.kind, &mount.source) {
                    if !project.volumes.contains_key(source) {
                        return Err(self.invalid(&format!("services.{name}.volumes[{i}]"), format!("refers to undefined volume {source:?}: declare it under the top-level volumes")));
                    }
                }
            }
            if service.image.is_none() && service.build.is_none() {
                return Err(self.invalid(
                    &format!("services.{name}"),
                    "has neither an image nor a build context specified",
                ));
            }
        }
        Ok(())
    }

    fn service(&mut self, value: &Value, path: &str) -> Result<Service, ComposeError> {
        const KNOWN: &[&str] = &[
            "image",
            "build",
            "command",
            "entrypoint",
            "environment",
            "env_file",
            "ports",
            "expose",
            "volumes",
            "depends_on",
            "healthcheck",
            "restart",
            "deploy",
            "labels",
            "working_dir",
            "user",
        ];
        let mut service = Service::default();
        let mut env_files = Vec::new();
        let mut environment = BTreeMap::new();
        for (key, item) in self.mapping(value, path, KNOWN)? {
            let here = join(path, &key);
            match key.as_str() {
                "image" => service.image = Some(self.string(item, &here)?),
                "build" => service.build = Some(self.build(item, &here)?),
                "command" => service.command = Some(self.command(item, &here)?),
                "entrypoint" => service.entrypoint = Some(self.command(item, &here)?),
                "environment" => environment = self.key_values(item, &here, true)?,
                "env_file" => {
                    env_files = match item {
                        Value::Sequence(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| self.string(v, &index(&here, i)))
                            .collect::<Result<_, _>>()?,
                        other => vec![self.string(other, &here)?],
                    }
                }
                "ports" => {
                    for (i, port) in self.list(item, &here)?.iter().enumerate() {
                        service.ports.push(self.port(port, &index(&here, i))?);
                    }
                }
                "expose" => {
                    for (i, port) in self.list(item, &here)?.iter().enumerate() {
                        let at = index(&here, i);
                        let text = self.string(port, &at)?;
                        let number = text.split('/').next().unwrap_or_default();
                        service.expose.push(
                            parse_port(number).ok_or_else(|| {
                                self.invalid(&at, format!("invalid port {text:?}"))
                            })?,
                        );
                    }
                }
                "volumes" => {
                    for (i, mount) in self.list(item, &here)?.iter().enumerate() {
                        service.volumes.push(self.mount(mount, &index(&here, i))?);
                    }
                }
                "depends_on" => service.depends_on = self.depends_on(item, &here)?,
                "healthcheck" => service.healthcheck = self.healthcheck(item, &here)?,
                "restart" => {
                    let policy = self.string(item, &here)?;
                    if !["no", "always", "on-failure", "unless-stopped"]
                        .contains(&policy.split(':').next().unwrap_or_default())
                    {
                        return Err(self.invalid(&here, format!("invalid restart policy {policy:?}: use no, always, on-failure or unless-stopped")));
                    }
                    service.restart = Some(policy);
                }
                "deploy" => service.deploy = Some(self.deploy(item, &here)?),
                "labels" => service.labels = self.key_values(item, &here, false)?,
                "working_dir" => service.working_dir = Some(self.string(item, &here)?),
                "user" => service.user = Some(self.string(item, &here)?),
                _ => {}
            }
        }
        for file in env_files {
            let full = self.dir.join(&file);
            let text = std::fs::read_to_string(&full).map_err(|source| ComposeError::Read {
                path: full.display().to_string(),
                source,
            })?;
            let vars = parse_dotenv(&text).map_err(|message| ComposeError::DotEnv {
                path: full.display().to_string(),
                message,
            })?;
            service.environment.extend(vars);
        }
        service.environment.extend(environment);
        Ok(service)
    }

    fn build(&mut self, value: &Value, path: &str) -> Result<Build, ComposeError> {
        let mut build = Build::default();
        let mut context = ".".to_string();
        if let Some(text) = scalar(value) {
            context = text;
        } else {
            for (key, item) in
                self.mapping(value, path, &["context", "dockerfile", "args", "target"])?
            {
                let here = join(path, &key);
                match key.as_str() {
                    "context" => context = self.string(item, &here)?,
                    "dockerfile" => build.dockerfile = Some(self.string(item, &here)?),
                    "args" => build.args = self.key_values(item, &here, true)?,
                    "target" => build.target = Some(self.string(item, &here)?),
                    _ => {}
                }
            }
        }
        if context.contains("://") || context.starts_with("git@") {
            return Err(self.invalid(&join(path, "context"), format!("remote build context {context:?} is not supported: clone it and use a local path")));
        }
        build.context = self.absolute(&context);
        Ok(build)
    }

    fn absolute(&self, path: &str) -> String {
        let joined = self.dir.join(path);
        // Lexical clean-up of `.` and `..`, since the path need not exist yet.
        let mut clean = PathBuf::new();
        for part in joined.components() {
            match part {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                other => clean.push(other),
            }
        }
        clean.display().to_string()
    }

    fn command(&self, value: &Value, path: &str) -> Result<Vec<String>, ComposeError> {
        match value {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.string(v, &index(path, i)))
                .collect(),
            other => {
                let text = self.string(other, path)?;
                split_shell(&text)
                    .ok_or_else(|| self.invalid(path, format!("unbalanced quotes in {text:?}")))
            }
        }
    }

    /// `environment`, `labels` and `build.args`: a list of `K=V` or a mapping. With `from_env`,
    /// a key without a value takes it from the variables (and is dropped when unset).
    fn key_values(
        &mut self,
        value: &Value,
        path: &str,
        from_env: bool,
    ) -> Result<BTreeMap<String, String>, ComposeError> {
        let mut map = BTreeMap::new();
        match value {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    let text = self.string(item, &index(path, i))?;
                    match text.split_once('=') {
                        Some((k, v)) if !k.is_empty() => {
                            map.insert(k.to_string(), v.to_string());
                        }
                        Some(_) => {
                            return Err(self.invalid(
                                &index(path, i),
                                format!("invalid entry {text:?}: expected KEY=VALUE"),
                            ))
                        }
                        None if from_env => {
                            if let Some(v) = self.vars.get(&text) {
                                map.insert(text, v.clone());
                            }
                        }
                        None => {
                            map.insert(text, String::new());
                        }
                    }
                }
            }
            _ => {
                for (key, item) in self.mapping(value, path, &[])? {
                    if item.is_null() {
                        if !from_env {
                            map.insert(key, String::new());
                        } else if let Some(v) = self.vars.get(&key) {
                            map.insert(key, v.clone());
                        }
                    } else {
                        let text = self.string(item, &join(path, &key))?;
                        map.insert(key, text);
                    }
                }
            }
        }
        Ok(map)
    }

    fn port(&mut self, value: &Value, path: &str) -> Result<Port, ComposeError> {
        if let Value::Mapping(_) = value {
            let mut port = Port {
                target: 0,
                published: None,
                protocol: "tcp".into(),
            };
            let mut has_target = false;
            for (key, item) in self.mapping(
                value,
                path,
                &["target", "published", "protocol", "mode", "host_ip", "name"],
            )? {
                let here = join(path, &key);
                let text = self.string(item, &here)?;
                match key.as_str() {
                    "target" => {
                        port.target = parse_port(&text)
                            .ok_or_else(|| self.invalid(&here, format!("invalid port {text:?}")))?;
                        has_target = true;
                    }
                    "published" => {
                        port.published =
                            Some(parse_port(&text).ok_or_else(|| {
                                self.invalid(&here, format!("invalid port {text:?}"))
                            })?)
                    }
                    "protocol" => port.protocol = self.protocol(&text, &here)?,
                    _ => {}
                }
            }
            if !has_target {
                return Err(self.invalid(path, "a port needs a target"));
            }
            return Ok(port);
        }
        let text = self.string(value, path)?;
        let (spec, protocol) = match text.split_once('/') {
            Some((spec, protocol)) => (spec, self.protocol(protocol, path)?),
            None => (text.as_str(), "tcp".to_string()),
        };
        if spec.contains('-') {
            return Err(self.invalid(
                path,
                format!("port ranges such as {text:?} are not supported: list each port"),
            ));
        }
        // `[host_ip:][published:]target`; an IPv6 host address comes in brackets.
        let parts: Vec<&str> = match spec.rsplit_once("]:") {
            Some((_, rest)) => std::iter::once("").chain(rest.split(':')).collect(),
            None => spec.split(':').collect(),
        };
        let bad = || self.invalid(path, format!("invalid port {text:?}"));
        let (published, target) = match parts.as_slice() {
            [target] => (None, *target),
            [published, target] => (Some(*published), *target),
            [_host, published, target] => (Some(*published), *target),
            _ => return Err(bad()),
        };
        let target = parse_port(target).ok_or_else(bad)?;
        let published = match published {
            None | Some("") => None,
            Some(p) => Some(parse_port(p).ok_or_else(bad)?),
        };
        Ok(Port {
            target,
            published,
            protocol,
        })
    }

    fn protocol(&self, text: &str, path: &str) -> Result<String, ComposeError> {
        match text {
            "tcp" | "udp" => Ok(text.to_string()),
            _ => Err(self.invalid(path, format!("invalid protocol {text:?}: use tcp or udp"))),
        }
    }

    fn mount(&mut self, value: &Value, path: &str) -> Result<Mount, ComposeError> {
        if let Value::Mapping(_) = value {
            let mut kind = None;
            let mut source = None;
            let mut target = None;
            let mut read_only = false;
            for (key, item) in
                self.mapping(value, path, &["type", "source", "target", "read_only"])?
            {
                let here = join(path, &key);
                match key.as_str() {
                    "type" => {
                        kind = Some(match self.string(item, &here)?.as_str() {
                            "volume" => MountKind::Volume,
                            "bind" => MountKind::Bind,
                            other => return Err(self.invalid(
                                &here,
                                format!(
                                    "volume type {other:?} is not supported: use volume or bind"
                                ),
                            )),
                        })
                    }
                    "source" => source = Some(self.string(item, &here)?),
                    "target" => target = Some(self.string(item, &here)?),
                    "read_only" => read_only = matches!(item, Value::Bool(true)),
                    _ => {}
                }
            }
            let kind = kind.ok_or_else(|| self.invalid(path, "a volume needs a type"))?;
            let target = target.ok_or_else(|| self.invalid(path, "a volume needs a target"))?;
            let source = match (kind, source) {
                (MountKind::Bind, None) => {
                    return Err(self.invalid(path, "a bind mount needs a source"))
                }
                (MountKind::Bind, Some(s)) => Some(self.absolute(&s)),
                (MountKind::Volume, s) => s,
            };
            return Ok(Mount {
                kind,
                source,
                target,
                read_only,
            });
        }
        let text = self.string(value, path)?;
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [target] => (None, *target, None),
            [source, target] => (Some(*source), *target, None),
            [source, target, mode] => (Some(*source), *target, Some(*mode)),
            _ => {
                return Err(self.invalid(
                    path,
                    format!("invalid volume {text:?}: expected [SOURCE:]TARGET[:MODE]"),
                ))
            }
        };
        if !target.starts_with('/') {
            return Err(self.invalid(
                path,
                format!("invalid volume {text:?}: the target must be an absolute path"),
            ));
        }
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => {
                return Err(
                    self.invalid(path, format!("invalid volume mode {other:?}: use ro or rw"))
                )
            }
        };
        let (kind, source) = match source {
            None => (MountKind::Volume, None),
            Some(s) if s.starts_with('.') || s.starts_with('/') || s.starts_with('~') => {
                let s = match s.strip_prefix("~/") {
                    Some(rest) => match self.vars.get("HOME") {
                        Some(home) => format!("{home}/{rest}"),
                        None => return Err(self.invalid(path, "cannot expand ~: HOME is not set")),
                    },
                    None => s.to_string(),
                };
                (MountKind::Bind, Some(self.absolute(&s)))
            }
            Some(s) => (MountKind::Volume, Some(s.to_string())),
        };
        Ok(Mount {
            kind,
            source,
            target: target.to_string(),
            read_only,
        })
    }

    fn depends_on(
        &mut self,
        value: &Value,
        path: &str,
    ) -> Result<BTreeMap<String, Dependency>, ComposeError> {
        let mut map = BTreeMap::new();
        if let Value::Sequence(items) = value {
            for (i, item) in items.iter().enumerate() {
                map.insert(
                    self.string(item, &index(path, i))?,
                    Dependency {
                        condition: Condition::ServiceStarted,
                    },
                );
            }
            return Ok(map);
        }
        for (name, spec) in self.mapping(value, path, &[])? {
            let here = join(path, &name);
            let mut condition = Condition::ServiceStarted;
            for (key, item) in self.mapping(spec, &here, &["condition", "restart", "required"])? {
                if key == "condition" {
                    let at = join(&here, "condition");
                    condition = match self.string(item, &at)?.as_str() {
                        "service_started" => Condition::ServiceStarted,
                        "service_healthy" => Condition::ServiceHealthy,
                        other => return Err(self.invalid(&at, format!("condition {other:?} is not supported: use service_started or service_healthy"))),
                    };
                }
            }
            map.insert(name, Dependency { condition });
        }
        Ok(map)
    }

    fn healthcheck(
        &mut self,
        value: &Value,
        path: &str,
    ) -> Result<Option<Healthcheck>, ComposeError> {
        let mut check = Healthcheck::default();
        let mut disabled = false;
        for (key, item) in self.mapping(
            value,
            path,
            &[
                "test",
                "interval",
                "timeout",
                "retries",
                "start_period",
                "disable",
            ],
        )? {
            let here = join(path, &key);
            match key.as_str() {
                "test" => {
                    check.test = match item {
                        Value::Sequence(items) => items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| self.string(v, &index(&here, i)))
                            .collect::<Result<_, _>>()?,
                        other => vec!["CMD-SHELL".to_string(), self.string(other, &here)?],
                    };
                    match check.test.first().map(String::as_str) {
                        Some("NONE") => disabled = true,
                        Some("CMD") if check.test.len() > 1 => {}
                        Some("CMD-SHELL") if check.test.len() == 2 => {}
                        _ => return Err(self.invalid(&here, "must start with CMD (then the command's words), CMD-SHELL (then one string) or NONE")),
                    }
                }
                "interval" | "timeout" | "start_period" => {
                    let text = self.string(item, &here)?;
                    if parse_duration(&text).is_none() {
                        return Err(self.invalid(
                            &here,
                            format!("invalid duration {text:?}: use e.g. 10s, 1m30s or 500ms"),
                        ));
                    }
                    match key.as_str() {
                        "interval" => check.interval = Some(text),
                        "timeout" => check.timeout = Some(text),
                        _ => check.start_period = Some(text),
                    }
                }
                "retries" => {
                    let text = self.string(item, &here)?;
                    check.retries =
                        Some(text.parse().map_err(|_| {
                            self.invalid(&here, format!("invalid number {text:?}"))
                        })?);
                }
                "disable" => disabled = matches!(item, Value::Bool(true)),
                _ => {}
            }
        }
        if disabled {
            return Ok(None);
        }
        if check.test.is_empty() {
            return Err(self.invalid(path, "a healthcheck needs a test"));
        }
        Ok(Some(check))
    }

    fn deploy(&mut self, value: &Value, path: &str) -> Result<Deploy, ComposeError> {
        let mut deploy = Deploy::default();
        for (key, item) in self.mapping(value, path, &["replicas", "resources"])? {
            let here = join(path, &key);
            match key.as_str() {
                "replicas" => {
                    let text = self.string(item, &here)?;
                    deploy.replicas = Some(text.parse().map_err(|_| {
                        self.invalid(&here, format!("invalid number of replicas {text:?}"))
                    })?);
                }
                "resources" => {
                    let mut resources = Resources::default();
                    for (key, item) in self.mapping(item, &here, &["limits", "reservations"])? {
                        let at = join(&here, &key);
                        let limits = self.limits(item, &at)?;
                        if key == "limits" {
                            resources.limits = Some(limits);
                        } else {
                            resources.reservations = Some(limits);
                        }
                    }
                    deploy.resources = Some(resources);
                }
                _ => {}
            }
        }
        Ok(deploy)
    }

    fn limits(&mut self, value: &Value, path: &str) -> Result<Limits, ComposeError> {
        let mut limits = Limits::default();
        for (key, item) in self.mapping(value, path, &["cpus", "memory"])? {
            let here = join(path, &key);
            let text = self.string(item, &here)?;
            if key == "cpus" {
                if text
                    .parse::<f64>()
                    .ok()
                    .is_none_or(|n| n.is_nan() || n <= 0.0 || n.is_infinite())
                {
                    return Err(self.invalid(
                        &here,
                        format!("invalid cpus {text:?}: use a positive number such as 0.5"),
                    ));
                }
                limits.cpus = Some(text);
            } else {
                if memory_quantity(&text).is_none() {
                    return Err(self.invalid(
                        &here,
                        format!("invalid memory {text:?}: use e.g. 512m or 1g"),
                    ));
                }
                limits.memory = Some(text);
            }
        }
        Ok(limits)
    }
}

/// A service name must be usable as a Kubernetes object name and DNS label.
fn is_service_name(name: &str) -> bool {
    name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Compose durations (`1m30s`, `500ms`, `2h`) in whole seconds, rounded up so a short timeout
/// never becomes zero.
pub fn parse_duration(text: &str) -> Option<u64> {
    let mut millis = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        millis = millis.checked_add(number.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(millis.div_ceil(1000))
}

/// Docker's memory units (b, k, m, g, binary multiples) as a Kubernetes quantity.
pub fn memory_quantity(text: &str) -> Option<String> {
    let lower = text.trim().to_lowercase();
    let lower = lower
        .strip_suffix('b')
        .filter(|s| !s.is_empty() && !s.ends_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(&lower);
    let digits = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let number: u64 = lower[..digits].parse().ok()?;
    let suffix = match &lower[digits..] {
        "" | "b" => "",
        "k" => "Ki",
        "m" => "Mi",
        "g" => "Gi",
        _ => return None,
    };
    Some(format!("{number}{suffix}"))
}

/// Splits a command string into words as a POSIX shell would for quotes and backslashes (no
/// expansion), which is what Compose does with a string `command`. `None` for unbalanced quotes.
pub fn split_shell(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            escaped @ ('"' | '\\' | '$' | '`') => word.push(escaped),
                            other => {
                                word.push('\\');
                                word.push(other);
                            }
                        },
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<(Project, Vec<String>), ComposeError> {
        let vars: Vars = [("TAG".to_string(), "1.2".to_string())]
            .into_iter()
            .collect();
        parse(
            text,
            "compose.yaml",
            Path::new("/srv/app"),
            &vars,
            None,
            "My_App.dir",
        )
    }

    fn error_of(text: &str) -> String {
        match parse_text(text) {
            Err(e) => e.to_string(),
            Ok(p) => panic!("expected an error, got {p:?}"),
        }
    }

    #[test]
    fn short_and_long_forms_normalise_alike() {
        let (project, warnings) = parse_text(
            "services:\n  web:\n    image: nginx:${TAG}\n    command: sh -c 'echo \"hi there\"'\n    ports: [\"8080:80\", 9000, \"127.0.0.1:53:53/udp\", {target: 81, published: 30081}]\n    environment: [A=1, B]\n    volumes: [\"data:/data:ro\", \"./site:/usr/share/nginx\", /tmp/anon]\n    depends_on: [db]\n    stop_grace_period: 5s\n  db:\n    build: ./db\n    environment: {X: 1}\n    depends_on: {}\nvolumes:\n  data:\n",
        )
        .expect("valid");
        assert_eq!(project.name, "my_appdir");
        let web = &project.services["web"];
        assert_eq!(web.image.as_deref(), Some("nginx:1.2"));
        assert_eq!(
            web.command.as_deref(),
            Some(&["sh".to_string(), "-c".into(), "echo \"hi there\"".into()][..])
        );
        assert_eq!(
            web.ports[0],
            Port {
                target: 80,
                published: Some(8080),
                protocol: "tcp".into()
            }
        );
        assert_eq!(
            web.ports[1],
            Port {
                target: 9000,
                published: None,
                protocol: "tcp".into()
            }
        );
        assert_eq!(
            web.ports[2],
            Port {
                target: 53,
                published: Some(53),
                protocol: "udp".into()
            }
        );
        assert_eq!(web.ports[3].published, Some(30081));
        assert_eq!(web.environment.get("A").map(String::as_str), Some("1"));
        assert!(!web.environment.contains_key("B"), "unset B is dropped");
        assert_eq!(web.volumes[1].source.as_deref(), Some("/srv/app/site"));
        assert_eq!(web.volumes[1].kind, MountKind::Bind);
        assert!(web.volumes[0].read_only);
        assert_eq!(
            project.services["db"]
                .build
                .as_ref()
                .map(|b| b.context.as_str()),
            Some("/srv/app/db")
        );
        assert_eq!(
            warnings,
            ["services.web.stop_grace_period: unsupported key, ignored"]
        );
    }

    #[test]
    fn errors_name_the_path() {
        assert_eq!(
            error_of("services:\n  web:\n    image: x\n    ports: [\"abc\"]\n"),
            "compose.yaml: services.web.ports[0]: invalid port \"abc\""
        );
        assert!(
            error_of("services:\n  web:\n    image: x\n    depends_on: [nope]\n")
                .contains("services.web.depends_on: depends on undefined service \"nope\"")
        );
        assert!(error_of("services:\n  web: {}\n")
            .contains("services.web: has neither an image nor a build"));
        assert!(
            error_of("services:\n  web:\n    image: ${NOPE:?set NOPE}\n").contains(
                "services.web.image: required variable NOPE is missing a value: set NOPE"
            )
        );
        assert!(
            error_of("services:\n  web:\n    image: x\n    volumes: [\"data:/d\"]\n")
                .contains("undefined volume \"data\"")
        );
        assert!(
            error_of("services:\n  web:\n    image: x\n    deploy: {replicas: many}\n")
                .contains("services.web.deploy.replicas: invalid number of replicas")
        );
        assert!(error_of("services: [1]\n").contains("services: must be a mapping, not a list"));
        assert!(error_of("services:\n  Web_1:\n    image: x\n")
            .contains("services.Web_1: a service name"));
        assert!(error_of(
            "services:\n  web:\n    image: x\n    healthcheck: {test: [\"BOGUS\"]}\n"
        )
        .contains("services.web.healthcheck.test"));
        assert!(error_of(": : :\n").starts_with("cannot parse compose.yaml"));
    }

    #[test]
    fn helpers() {
        assert_eq!(normalize_project_name("-My Project.2"), "myproject2");
        assert_eq!(parse_duration("1m30s"), Some(90));
        assert_eq!(parse_duration("500ms"), Some(1));
        assert_eq!(parse_duration("10x"), None);
        assert_eq!(memory_quantity("512M").as_deref(), Some("512Mi"));
        assert_eq!(memory_quantity("1gb").as_deref(), Some("1Gi"));
        assert_eq!(memory_quantity("lots"), None);
        assert_eq!(
            split_shell("a 'b c' \"d\\\"e\" f\\ g"),
            Some(vec!["a".into(), "b c".into(), "d\"e".into(), "f g".into()])
        );
        assert_eq!(split_shell("'open"), None);
    }
}
