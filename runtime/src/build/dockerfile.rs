//! The Dockerfile parser: text in, typed stages out, with Docker's (BuildKit's) semantics for
//! parser directives, line continuations, comments, heredocs, exec versus shell form, and the
//! variable substitution Docker performs at parse time.
//!
//! Expansion happens in order, stage by stage: a stage sees the ARGs it declared (valued from the
//! build args, then the ARG's default, then the global ARG of the same name) and the ENVs set
//! before the instruction, ENV winning over ARG. Global ARGs (before the first FROM) and the
//! built-in platform ARGs are only visible in FROM lines unless a stage re-declares them.
//! RUN, CMD and ENTRYPOINT are not expanded here: their shell does that at run time. The ENV of a
//! base *image* is unknown at parse time, so only ENVs from this file take part in expansion.
//!
//! The shell-word lexer is hand-written: Docker's quoting and `${VAR:-word}` rules are small and
//! specific (escape character from the `escape` directive, quote removal) and no crate follows
//! them exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The platform built-in ARGs describe; the builder only builds for the machine it runs on.
pub const DEFAULT_PLATFORM: &str = "linux/amd64";

/// A parsed Dockerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub stages: Vec<Stage>,
    /// The ARGs declared before the first FROM, valued from the build args and their defaults.
    pub global_args: Vec<Arg>,
}

/// The parser directives at the top of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=docker/dockerfile:1`; recorded, not acted upon.
    pub syntax: Option<String>,
    /// `\` unless `# escape=`` ` ``.
    pub escape: char,
    /// `# check=...`; recorded, not acted upon.
    pub check: Option<String>,
}

/// One ARG declaration with its resolved value (`None`: declared but unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    /// The default written in the file, after expansion.
    pub default: Option<String>,
    /// The value in effect: the build arg if given, else the default, else the global value.
    pub value: Option<String>,
}

/// One build stage: a FROM line and the instructions up to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// The `AS` name, lower-cased as Docker compares stage names case-insensitively.
    pub name: Option<String>,
    /// The base image (or earlier stage name, or `scratch`) after expanding global ARGs.
    pub base: String,
    pub platform: Option<String>,
    pub instructions: Vec<Spanned<Instruction>>,
    /// The line of the FROM instruction (1-based).
    pub line: usize,
}

/// A parsed value with the line it started on and its original text (continuation lines and
/// heredoc bodies included, joined with `\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    pub node: T,
    pub line: usize,
    pub original: String,
}

/// A command of RUN, CMD, ENTRYPOINT or HEALTHCHECK CMD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// JSON form: run argv directly.
    Exec(Vec<String>),
    /// Shell form: run through the stage's SHELL (default `/bin/sh -c`), unexpanded.
    Shell(String),
}

/// A here-document of RUN, COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// The body, one `\n` after each line; leading tabs already stripped for `<<-`. For COPY and
    /// ADD an expanding heredoc is already expanded; for RUN the shell expands it at run time.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`), which disables expansion.
    pub expand: bool,
    /// True for `<<-`.
    pub strip_tabs: bool,
}

/// A source of COPY or ADD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A path or glob pattern in the context (or the `--from` stage or image, or a URL for
    /// ADD), kept as written after expansion: the build step matches globs.
    Path(String),
    Heredoc(Heredoc),
}

/// The arguments of COPY and ADD.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CopyArgs {
    pub sources: Vec<Source>,
    pub dest: String,
    /// A stage name (compared case-insensitively), stage index, or image reference, as written.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--parents` (COPY).
    pub parents: bool,
    /// `--exclude=` patterns.
    pub exclude: Vec<String>,
    /// `--checksum=` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
}

/// One exposed port or port range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub start: u16,
    pub end: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// HEALTHCHECK's options and command. `None` fields take the image's or Docker's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Healthcheck {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub start_interval: Option<Duration>,
    pub retries: Option<u32>,
    pub command: Command,
}

/// One instruction of a stage, typed, with the expansions Docker does at parse time applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    Run {
        command: Command,
        heredocs: Vec<Heredoc>,
        /// `--mount=` values as written.
        mounts: Vec<String>,
        network: Option<String>,
        security: Option<String>,
    },
    Cmd(Command),
    Entrypoint(Command),
    /// The argv prefix for later shell forms.
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    /// Deprecated; the build step records it as the `maintainer` label (and image author).
    Maintainer(String),
    Expose(Vec<Port>),
    Copy(CopyArgs),
    Add(CopyArgs),
    Workdir(String),
    User(String),
    Volume(Vec<String>),
    /// `None` for `HEALTHCHECK NONE` (disable the base image's check).
    Healthcheck(Option<Healthcheck>),
    StopSignal(String),
    /// A trigger for images built FROM this one; parsed without expansion, which happens in the
    /// child build.
    Onbuild(Box<Instruction>),
    Arg(Vec<Arg>),
}

/// Why a Dockerfile was rejected; every message names the file and, where there is one, the line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    #[error("{file}:{line}: {instruction}: {message}")]
    Instruction {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: no FROM instruction: a Dockerfile must start its first stage with FROM")]
    NoFrom { file: String },
    #[error("target stage {target:?} could not be found: name one of the stages' AS names")]
    UnknownTarget { target: String },
}

impl Dockerfile {
    /// The index of the stage named `name_or_index` (an `AS` name, case-insensitively, or a
    /// decimal index into the stages).
    pub fn stage_index(&self, name_or_index: &str) -> Option<usize> {
        let lower = name_or_index.to_ascii_lowercase();
        if let Some(i) = self
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            return Some(i);
        }
        match name_or_index.parse::<usize>() {
            Ok(i) if i < self.stages.len() => Some(i),
            _ => None,
        }
    }

    /// The stages needed to build `target` (the last stage when `None`): the target and every
    /// stage it reaches through FROM, `COPY --from`/`ADD --from` and `RUN --mount=from=`, in
    /// build order (ascending index).
    pub fn target_stages(&self, target: Option<&str>) -> Result<Vec<usize>, DockerfileError> {
        let start =
            match target {
                None => self.stages.len().checked_sub(1).ok_or_else(|| {
                    DockerfileError::UnknownTarget {
                        target: "(the last stage)".to_owned(),
                    }
                })?,
                Some(t) => self
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                    .ok_or_else(|| DockerfileError::UnknownTarget {
                        target: t.to_owned(),
                    })?,
            };
        let mut needed = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(i) = todo.pop() {
            if !needed.insert(i) {
                continue;
            }
            for dep in self.stage_dependencies(i) {
                todo.push(dep);
            }
        }
        Ok(needed.into_iter().collect())
    }

    /// The earlier stages stage `i` reads from.
    fn stage_dependencies(&self, i: usize) -> Vec<usize> {
        let earlier =
            |reference: &str| -> Option<usize> { self.stage_index(reference).filter(|&d| d < i) };
        let stage = &self.stages[i];
        let mut deps: Vec<usize> = earlier_by_name(&self.stages[..i], &stage.base)
            .into_iter()
            .collect();
        for instruction in &stage.instructions {
            match &instruction.node {
                Instruction::Copy(args) | Instruction::Add(args) => {
                    if let Some(from) = &args.from {
                        deps.extend(earlier(from));
                    }
                }
                Instruction::Run { mounts, .. } => {
                    for mount in mounts {
                        for field in mount.split(',') {
                            if let Some(from) = field.trim().strip_prefix("from=") {
                                deps.extend(earlier(from));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        deps
    }
}

/// Parses `text` (named `file` in errors) with the given `--build-arg` values.
pub fn parse(
    text: &str,
    file: &str,
    build_args: &BTreeMap<String, String>,
) -> Result<Dockerfile, DockerfileError> {
    let (directives, first_line) = parse_directives(text, file)?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let raw = logical_lines(&lines, first_line, directives.escape, file)?;
    let mut parser = Parser {
        file: file.to_owned(),
        escape: directives.escape,
        build_args,
        global: Scope::default(),
        global_args: Vec::new(),
        stages: Vec::new(),
        stage_env: Vec::new(),
        scope: Scope::default(),
    };
    for (name, value) in builtin_args() {
        let value = build_args.get(&name).cloned().unwrap_or(value);
        parser.global.args.insert(name, Some(value));
    }
    for line in raw {
        parser.instruction(line)?;
    }
    if parser.stages.is_empty() {
        return Err(DockerfileError::NoFrom {
            file: file.to_owned(),
        });
    }
    Ok(Dockerfile {
        directives,
        stages: parser.stages,
        global_args: parser.global_args,
    })
}

fn earlier_by_name(stages: &[Stage], base: &str) -> Option<usize> {
    let lower = base.to_ascii_lowercase();
    stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// BuildKit's automatic platform ARGs for an amd64 Linux build on an amd64 Linux machine.
fn builtin_args() -> Vec<(String, String)> {
    let (os, arch) = DEFAULT_PLATFORM
        .split_once('/')
        .unwrap_or(("linux", "amd64"));
    [
        ("TARGETPLATFORM", DEFAULT_PLATFORM),
        ("TARGETOS", os),
        ("TARGETARCH", arch),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", DEFAULT_PLATFORM),
        ("BUILDOS", os),
        ("BUILDARCH", arch),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// Directives, logical lines and heredocs

const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Reads the `# key=value` directives at the very top; returns them and the index of the first
/// line after them. Docker stops looking at the first line that is not a known directive.
fn parse_directives(text: &str, file: &str) -> Result<(Directives, usize), DockerfileError> {
    let mut directives = Directives {
        syntax: None,
        escape: '\\',
        check: None,
    };
    let mut seen = BTreeSet::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let Some(body) = line.trim().strip_prefix('#') else {
            return Ok((directives, i));
        };
        let Some((key, value)) = body.split_once('=') else {
            return Ok((directives, i));
        };
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty()
            || key.contains(char::is_whitespace)
            || !KNOWN_DIRECTIVES.contains(&key.as_str())
        {
            return Ok((directives, i));
        }
        let value = value.trim().to_owned();
        let syntax_error = |message: String| DockerfileError::Syntax {
            file: file.to_owned(),
            line: i + 1,
            message,
        };
        if !seen.insert(key.clone()) {
            return Err(syntax_error(format!(
                "only one {key} parser directive can be used"
            )));
        }
        match key.as_str() {
            "escape" => {
                directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(syntax_error(format!(
                            "invalid escape token {value:?}: use \\ or `"
                        )))
                    }
                }
            }
            "syntax" => directives.syntax = Some(value),
            _ => directives.check = Some(value),
        }
    }
    Ok((directives, text.split('\n').count()))
}

/// One instruction as it stands in the file: continuations joined, comments dropped.
struct RawInstruction {
    line: usize,
    keyword: String,
    /// The text after the keyword, trimmed.
    rest: String,
    original: String,
    heredocs: Vec<Heredoc>,
}

fn logical_lines(
    lines: &[&str],
    start: usize,
    escape: char,
    file: &str,
) -> Result<Vec<RawInstruction>, DockerfileError> {
    let mut out = Vec::new();
    let mut i = start;
    while i < lines.len() {
        let first = lines[i];
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let line_no = i + 1;
        let mut original = vec![first];
        let mut joined = String::new();
        let mut current = first;
        i += 1;
        loop {
            match strip_continuation(current, escape) {
                Some(head) => {
                    joined.push_str(head);
                    // Comment and empty lines inside a continued instruction are dropped, as
                    // BuildKit does; the instruction goes on with the next real line.
                    let mut next = None;
                    while i < lines.len() {
                        let candidate = lines[i];
                        original.push(candidate);
                        i += 1;
                        let t = candidate.trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            continue;
                        }
                        next = Some(candidate);
                        break;
                    }
                    match next {
                        Some(n) => current = n,
                        None => break,
                    }
                }
                None => {
                    joined.push_str(current);
                    break;
                }
            }
        }
        let joined = joined.trim();
        let (keyword, rest) = match joined.find(char::is_whitespace) {
            Some(at) => (&joined[..at], joined[at..].trim()),
            None => (joined, ""),
        };
        let keyword = keyword.to_ascii_uppercase();
        let mut heredocs = Vec::new();
        if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, expand, strip_tabs) in heredoc_markers(rest, escape) {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let body = lines[i];
                    original.push(body);
                    i += 1;
                    let body = if strip_tabs {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if body == name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !terminated {
                    return Err(DockerfileError::Instruction {
                        file: file.to_owned(),
                        line: line_no,
                        instruction: keyword,
                        message: format!(
                            "unterminated heredoc <<{name}: end it with a line holding only {name}"
                        ),
                    });
                }
                heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                    strip_tabs,
                });
            }
        }
        out.push(RawInstruction {
            line: line_no,
            keyword,
            rest: rest.to_owned(),
            original: original.join("\n"),
            heredocs,
        });
    }
    Ok(out)
}

/// The line without its trailing escape character (and the blanks after it) if it continues.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t']);
    t.strip_suffix(escape)
}

/// The heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`) on an instruction line, in order:
/// (delimiter, expands, strips tabs).
fn heredoc_markers(rest: &str, escape: char) -> Vec<(String, bool, bool)> {
    let mut found = Vec::new();
    // The exec form has no heredocs: `<<` there is an argument.
    if matches!(maybe_json(rest), Command::Exec(_)) {
        return found;
    }
    let Ok(words) = split_words(rest, escape) else {
        return found;
    };
    for word in words {
        let word = word.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(marker) = word.strip_prefix("<<") else {
            continue;
        };
        let (strip_tabs, marker) = match marker.strip_prefix('-') {
            Some(m) => (true, m),
            None => (false, marker),
        };
        if marker.is_empty() || marker.contains('<') {
            continue;
        }
        // Quote removal tells whether any part of the delimiter was quoted.
        let name = match process_word(marker, escape, &|_: &str| None) {
            Ok(name) => name,
            Err(_) => continue,
        };
        if name.is_empty() {
            continue;
        }
        let expand = name == marker;
        found.push((name, expand, strip_tabs));
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Instructions

#[derive(Clone, Default)]
struct Scope {
    /// Declared ARGs; `None` is declared but unset.
    args: BTreeMap<String, Option<String>>,
    env: BTreeMap<String, String>,
}

impl Scope {
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.env.get(name) {
            return Some(v.clone());
        }
        self.args.get(name).cloned().flatten()
    }
}

struct Parser<'a> {
    file: String,
    escape: char,
    build_args: &'a BTreeMap<String, String>,
    global: Scope,
    global_args: Vec<Arg>,
    stages: Vec<Stage>,
    /// The ENV each finished stage ends with, for stages built FROM an earlier stage.
    stage_env: Vec<BTreeMap<String, String>>,
    scope: Scope,
}

/// An error message for the instruction being parsed; the caller adds file and line.
type Msg = String;

impl Parser<'_> {
    fn instruction(&mut self, raw: RawInstruction) -> Result<(), DockerfileError> {
        let file = self.file.clone();
        let instruction_error = |message: Msg| DockerfileError::Instruction {
            file: file.clone(),
            line: raw.line,
            instruction: raw.keyword.clone(),
            message,
        };
        match raw.keyword.as_str() {
            "FROM" => return self.from(&raw),
            "ARG" if self.stages.is_empty() => {
                let args = self.args(&raw.rest, true).map_err(instruction_error)?;
                self.global_args.extend(args);
                return Ok(());
            }
            _ => {}
        }
        if !KEYWORDS.contains(&raw.keyword.as_str()) {
            return Err(DockerfileError::Syntax {
                file: self.file.clone(),
                line: raw.line,
                message: format!(
                    "unknown instruction: {}",
                    raw.original.split_whitespace().next().unwrap_or("")
                ),
            });
        }
        if self.stages.is_empty() {
            return Err(instruction_error(
                "no build stage in current context: only ARG may come before the first FROM"
                    .to_owned(),
            ));
        }
        let node = self
            .parse_instruction(&raw.keyword, &raw.rest, raw.heredocs.clone(), true)
            .map_err(instruction_error)?;
        let stage = self.stages.last_mut().ok_or(DockerfileError::NoFrom {
            file: self.file.clone(),
        })?;
        stage.instructions.push(Spanned {
            node,
            line: raw.line,
            original: raw.original,
        });
        Ok(())
    }

    fn from(&mut self, raw: &RawInstruction) -> Result<(), DockerfileError> {
        let syntax = |message: String| DockerfileError::Syntax {
            file: self.file.clone(),
            line: raw.line,
            message,
        };
        let instruction = |message: String| DockerfileError::Instruction {
            file: self.file.clone(),
            line: raw.line,
            instruction: "FROM".to_owned(),
            message,
        };
        let (flags, rest) = take_flags(&raw.rest);
        let mut platform = None;
        for (name, value) in flags {
            match name.as_str() {
                "platform" => {
                    let value = value
                        .ok_or_else(|| instruction("--platform requires a value".to_owned()))?;
                    platform = Some(self.expand_global(&value).map_err(instruction)?);
                }
                _ => return Err(instruction(format!("unknown flag: --{name}"))),
            }
        }
        let words = split_words(rest, self.escape).map_err(instruction)?;
        let name = match words.len() {
            1 => None,
            3 if words[1].eq_ignore_ascii_case("as") => {
                let name = words[2].to_ascii_lowercase();
                if !valid_stage_name(&name) {
                    return Err(instruction(format!(
                        "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                        words[2]
                    )));
                }
                if self
                    .stages
                    .iter()
                    .any(|s| s.name.as_deref() == Some(name.as_str()))
                {
                    return Err(instruction(format!(
                        "duplicate stage name {name:?}: give each stage its own name"
                    )));
                }
                Some(name)
            }
            _ => {
                return Err(syntax(
                    "FROM requires either one or three arguments".to_owned(),
                ))
            }
        };
        let base = self.expand_global(&words[0]).map_err(instruction)?;
        if base.is_empty() {
            return Err(instruction(format!(
                "base name ({}) should not be blank",
                words[0]
            )));
        }
        // A stage built on an earlier stage inherits that stage's ENV (it is in its image
        // config); ARGs never carry over.
        if !self.stages.is_empty() {
            self.stage_env.push(std::mem::take(&mut self.scope.env));
        }
        let inherited = earlier_by_name(&self.stages, &base)
            .and_then(|i| self.stage_env.get(i).cloned())
            .unwrap_or_default();
        self.scope = Scope {
            args: BTreeMap::new(),
            env: inherited,
        };
        self.stages.push(Stage {
            name,
            base,
            platform,
            instructions: Vec::new(),
            line: raw.line,
        });
        Ok(())
    }

    fn expand_global(&self, word: &str) -> Result<String, Msg> {
        process_word(word, self.escape, &|name: &str| self.global.lookup(name))
    }

    fn expand(&self, word: &str, expand: bool) -> Result<String, Msg> {
        if expand {
            process_word(word, self.escape, &|name: &str| self.scope.lookup(name))
        } else {
            Ok(word.to_owned())
        }
    }

    /// ARG declarations, which also enter the scope (the global one before the first FROM).
    fn args(&mut self, rest: &str, expand: bool) -> Result<Vec<Arg>, Msg> {
        let words = split_words(rest, self.escape)?;
        if words.is_empty() {
            return Err("ARG requires at least one argument".to_owned());
        }
        let global = self.stages.is_empty();
        let mut out = Vec::new();
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_owned(), Some(d)),
                None => (word.clone(), None),
            };
            if name.is_empty() {
                return Err(format!("invalid ARG {word:?}: the name must not be empty"));
            }
            let default = match default {
                Some(d) if global && expand => Some(self.expand_global(d)?),
                Some(d) => Some(self.expand(d, expand)?),
                None => None,
            };
            let value = match self.build_args.get(&name) {
                Some(v) => Some(v.clone()),
                None if default.is_some() => default.clone(),
                // Re-declaring a global ARG (or a built-in one) brings its value in.
                None => self.global.args.get(&name).cloned().flatten(),
            };
            if expand {
                if global {
                    self.global.args.insert(name.clone(), value.clone());
                } else {
                    self.scope.args.insert(name.clone(), value.clone());
                }
            }
            out.push(Arg {
                name,
                default,
                value,
            });
        }
        Ok(out)
    }

    fn parse_instruction(
        &mut self,
        keyword: &str,
        rest: &str,
        heredocs: Vec<Heredoc>,
        expand: bool,
    ) -> Result<Instruction, Msg> {
        let (flags, body) = take_flags(rest);
        let allowed: &[&str] = match keyword {
            "RUN" => &["mount", "network", "security"],
            "COPY" => &["from", "chown", "chmod", "link", "parents", "exclude"],
            "ADD" => &[
                "chown",
                "chmod",
                "link",
                "checksum",
                "keep-git-dir",
                "exclude",
            ],
            "HEALTHCHECK" => &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            _ => &[],
        };
        // Only instructions that take flags read leading `--words` as flags; elsewhere they are
        // arguments (e.g. `CMD --help`).
        let (flags, body) = if allowed.is_empty() {
            (Vec::new(), rest)
        } else {
            (flags, body)
        };
        for (name, _) in &flags {
            if !allowed.contains(&name.as_str()) {
                return Err(format!("unknown flag: --{name}"));
            }
        }
        let flag = |name: &str| -> Result<Option<String>, Msg> {
            match flags.iter().rev().find(|(n, _)| n == name) {
                None => Ok(None),
                Some((_, None)) => Err(format!("--{name} requires a value")),
                Some((_, Some(v))) if v.is_empty() => Err(format!("--{name} requires a value")),
                Some((_, Some(v))) => self.expand(v, expand).map(Some),
            }
        };
        let bool_flag = |name: &str| -> Result<bool, Msg> {
            match flags.iter().rev().find(|(n, _)| n == name) {
                None => Ok(false),
                Some((_, None)) => Ok(true),
                Some((_, Some(v))) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => Ok(true),
                    "false" | "0" => Ok(false),
                    _ => Err(format!("--{name} takes true or false, not {v:?}")),
                },
            }
        };
        let require = |what: &str| -> Result<(), Msg> {
            if body.trim().is_empty() {
                Err(format!("{keyword} requires {what}"))
            } else {
                Ok(())
            }
        };
        Ok(match keyword {
            "RUN" => {
                require("at least one argument")?;
                let mounts = flags
                    .iter()
                    .filter(|(n, _)| n == "mount")
                    .map(|(_, v)| {
                        v.clone()
                            .ok_or_else(|| "--mount requires a value".to_owned())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Instruction::Run {
                    command: maybe_json(body),
                    heredocs,
                    mounts,
                    network: flag("network")?,
                    security: flag("security")?,
                }
            }
            "CMD" => {
                require("at least one argument")?;
                Instruction::Cmd(maybe_json(body))
            }
            "ENTRYPOINT" => {
                require("at least one argument")?;
                Instruction::Entrypoint(maybe_json(body))
            }
            "SHELL" => match maybe_json(body) {
                Command::Exec(argv) if !argv.is_empty() => Instruction::Shell(argv),
                _ => return Err(
                    "SHELL requires the arguments to be in JSON form, e.g. [\"/bin/bash\", \"-c\"]"
                        .to_owned(),
                ),
            },
            "ENV" => {
                let pairs = self.key_values("ENV", body, expand)?;
                if expand {
                    for (k, v) in &pairs {
                        self.scope.env.insert(k.clone(), v.clone());
                    }
                }
                Instruction::Env(pairs)
            }
            "LABEL" => Instruction::Label(self.key_values("LABEL", body, expand)?),
            "MAINTAINER" => {
                require("exactly one argument")?;
                // Docker does not expand MAINTAINER.
                Instruction::Maintainer(body.trim().to_owned())
            }
            "EXPOSE" => {
                require("at least one argument")?;
                let mut ports = Vec::new();
                // Docker splits EXPOSE words after expansion (`EXPOSE $PORTS` with PORTS="80 443").
                for word in split_words(body, self.escape)? {
                    for port in self.expand(&word, expand)?.split_whitespace() {
                        ports.push(parse_port(port)?);
                    }
                }
                Instruction::Expose(ports)
            }
            "COPY" | "ADD" => {
                let mut args = CopyArgs {
                    from: flag("from")
                        .or_else(|e| if keyword == "ADD" { Ok(None) } else { Err(e) })?,
                    chown: flag("chown")?,
                    chmod: flag("chmod")?,
                    link: bool_flag("link")?,
                    parents: bool_flag("parents")?,
                    checksum: flag("checksum")?,
                    keep_git_dir: bool_flag("keep-git-dir")?,
                    ..CopyArgs::default()
                };
                // A numeric --from names an earlier stage; Docker rejects the current or a later one.
                if let Some(index) = args.from.as_deref().and_then(|f| f.parse::<usize>().ok()) {
                    if expand && index + 1 >= self.stages.len() {
                        return Err(format!(
                            "invalid from flag value {index}: refers to current or future build stage, use an earlier stage's index or name"
                        ));
                    }
                }
                for (name, value) in &flags {
                    if name == "exclude" {
                        let value = value
                            .clone()
                            .filter(|v| !v.is_empty())
                            .ok_or("--exclude requires a value")?;
                        args.exclude.push(self.expand(&value, expand)?);
                    }
                }
                let words = match maybe_json(body) {
                    Command::Exec(words) => words,
                    Command::Shell(text) => split_words(&text, self.escape)?,
                };
                if words.len() < 2 {
                    return Err(format!(
                        "{keyword} requires at least two arguments, but only {} provided: name the destination last",
                        words.len()
                    ));
                }
                let mut heredocs = heredocs.into_iter();
                for (n, word) in words.iter().enumerate() {
                    let is_dest = n + 1 == words.len();
                    let marker = word.trim_start_matches(|c: char| c.is_ascii_digit());
                    if !is_dest && marker.starts_with("<<") && marker.len() > 2 {
                        if let Some(mut doc) = heredocs.next() {
                            if doc.expand && expand {
                                doc.content = self.expand_text(&doc.content)?;
                            }
                            args.sources.push(Source::Heredoc(doc));
                            continue;
                        }
                    }
                    let value = self.expand(word, expand)?;
                    if is_dest {
                        args.dest = value;
                    } else {
                        args.sources.push(Source::Path(value));
                    }
                }
                if keyword == "COPY" {
                    Instruction::Copy(args)
                } else {
                    Instruction::Add(args)
                }
            }
            "WORKDIR" => {
                require("exactly one argument")?;
                Instruction::Workdir(self.expand(body.trim(), expand)?)
            }
            "USER" => {
                require("exactly one argument")?;
                Instruction::User(self.expand(body.trim(), expand)?)
            }
            "VOLUME" => {
                let words = match maybe_json(body) {
                    Command::Exec(words) => words,
                    Command::Shell(text) => split_words(&text, self.escape)?,
                };
                let mut volumes = Vec::new();
                for word in words {
                    let v = self.expand(&word, expand)?;
                    if v.trim().is_empty() {
                        return Err("VOLUME specified can not be an empty string".to_owned());
                    }
                    volumes.push(v);
                }
                if volumes.is_empty() {
                    return Err("VOLUME requires at least one argument".to_owned());
                }
                Instruction::Volume(volumes)
            }
            "STOPSIGNAL" => {
                require("exactly one argument")?;
                Instruction::StopSignal(self.expand(body.trim(), expand)?)
            }
            "HEALTHCHECK" => {
                let words: Vec<&str> = body.split_whitespace().collect();
                match words.first().map(|w| w.to_ascii_uppercase()) {
                    Some(w) if w == "NONE" => {
                        if words.len() > 1 || !flags.is_empty() {
                            return Err("HEALTHCHECK NONE takes no other arguments".to_owned());
                        }
                        Instruction::Healthcheck(None)
                    }
                    Some(w) if w == "CMD" => {
                        let command = body.trim_start()[3..].trim();
                        if command.is_empty() {
                            return Err("HEALTHCHECK CMD requires a command".to_owned());
                        }
                        let duration = |name: &str| -> Result<Option<Duration>, Msg> {
                            match flag(name)? {
                                None => Ok(None),
                                Some(v) => {
                                    let d = parse_go_duration(&v).ok_or_else(|| {
                                        format!(
                                            "--{name}: invalid duration {v:?}, e.g. 30s or 1m30s"
                                        )
                                    })?;
                                    if !d.is_zero() && d < Duration::from_millis(1) {
                                        return Err(format!("--{name} cannot be less than 1ms"));
                                    }
                                    Ok(Some(d))
                                }
                            }
                        };
                        let retries = match flag("retries")? {
                            None => None,
                            Some(v) => Some(v.parse::<u32>().map_err(|_| format!("--retries must be a whole number that is not negative, not {v:?}"))?),
                        };
                        Instruction::Healthcheck(Some(Healthcheck {
                            interval: duration("interval")?,
                            timeout: duration("timeout")?,
                            start_period: duration("start-period")?,
                            start_interval: duration("start-interval")?,
                            retries,
                            command: maybe_json(command),
                        }))
                    }
                    _ => {
                        return Err(
                            "HEALTHCHECK requires NONE or CMD followed by a command".to_owned()
                        )
                    }
                }
            }
            "ONBUILD" => {
                let trimmed = body.trim();
                let (inner, inner_rest) = match trimmed.find(char::is_whitespace) {
                    Some(at) => (&trimmed[..at], trimmed[at..].trim()),
                    None => (trimmed, ""),
                };
                let inner = inner.to_ascii_uppercase();
                match inner.as_str() {
                    "" => return Err("ONBUILD requires an instruction".to_owned()),
                    "ONBUILD" => {
                        return Err(
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned()
                        )
                    }
                    "FROM" | "MAINTAINER" => {
                        return Err(format!("{inner} isn't allowed as an ONBUILD trigger"))
                    }
                    k if !KEYWORDS.contains(&k) => {
                        return Err(format!("unknown instruction: {inner}"))
                    }
                    _ => {}
                }
                let node = self.parse_instruction(&inner, inner_rest, Vec::new(), false)?;
                Instruction::Onbuild(Box::new(node))
            }
            "ARG" => Instruction::Arg(self.args(body, expand)?),
            other => return Err(format!("unknown instruction: {other}")),
        })
    }

    /// ENV and LABEL pairs: `K=V K2="a b"` or the old `K value with spaces`.
    fn key_values(
        &self,
        keyword: &str,
        body: &str,
        expand: bool,
    ) -> Result<Vec<(String, String)>, Msg> {
        let words = split_words(body, self.escape)?;
        let Some(first) = words.first() else {
            return Err(format!("{keyword} requires at least one argument"));
        };
        if !first.contains('=') {
            // The old form: the first word is the key and the rest of the line its value.
            let value = body.trim_start()[first.len()..].trim();
            if value.is_empty() {
                return Err(format!(
                    "{keyword} names {first:?} without a value: write {first}=value"
                ));
            }
            return Ok(vec![(
                self.expand(first, expand)?,
                self.expand(value, expand)?,
            )]);
        }
        let mut pairs = Vec::new();
        for word in &words {
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!(
                    "{keyword} names {word:?} without a value: write {word}=value"
                ));
            };
            let key = self.expand(key, expand)?;
            if key.is_empty() {
                return Err(format!("{keyword} names must not be empty"));
            }
            pairs.push((key, self.expand(value, expand)?));
        }
        Ok(pairs)
    }

    /// Expands variables in a COPY heredoc body: `$` substitution and escapes only, quotes kept.
    fn expand_text(&self, text: &str) -> Result<String, Msg> {
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut lexer = Lexer {
            chars: &chars,
            pos: 0,
            escape: self.escape,
            lookup: &|n: &str| self.scope.lookup(n),
            depth: 0,
        };
        while let Some(c) = lexer.peek() {
            if c == self.escape && lexer.chars.get(lexer.pos + 1) == Some(&'$') {
                lexer.pos += 2;
                out.push('$');
            } else if c == '$' {
                lexer.pos += 1;
                out.push_str(&lexer.variable()?);
            } else {
                lexer.pos += 1;
                out.push(c);
            }
        }
        Ok(out)
    }
}

const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Leading `--name[=value]` words and the text after them.
fn take_flags(rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while let Some(flag) = rest.strip_prefix("--") {
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let word = &flag[..end];
        if word.is_empty() {
            break;
        }
        match word.split_once('=') {
            Some((n, v)) => flags.push((n.to_ascii_lowercase(), Some(v.to_owned()))),
            None => flags.push((word.to_ascii_lowercase(), None)),
        }
        rest = flag[end..].trim_start();
    }
    (flags, rest)
}

/// Exec form when the text is a JSON array of strings; anything else (including invalid JSON)
/// is shell form, as Docker falls back.
fn maybe_json(text: &str) -> Command {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        if let Ok(argv) = serde_json::from_str::<Vec<String>>(trimmed) {
            return Command::Exec(argv);
        }
    }
    Command::Shell(trimmed.to_owned())
}

fn parse_port(word: &str) -> Result<Port, Msg> {
    let (range, protocol) = match word.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (word, "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid proto {protocol:?} in {word:?}: use tcp, udp or sctp"
        ));
    }
    let port = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {word}: ports are 0 to 65535"))
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(range)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for containerPort: {word}"));
    }
    Ok(Port {
        start,
        end,
        protocol,
    })
}

/// Go's `time.ParseDuration` for the units HEALTHCHECK uses (ns, us, µs, ms, s, m, h).
fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let number: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).ok()
}

// ---------------------------------------------------------------------------------------------
// The shell-word lexer

/// Splits text into words at unquoted blanks, keeping quotes and escapes for `process_word`.
fn split_words(text: &str, escape: char) -> Result<Vec<String>, Msg> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            None => {
                in_word = true;
                word.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                } else if c == '\'' || c == '"' {
                    quote = Some(c);
                }
            }
        }
    }
    if let Some(q) = quote {
        let kind = if q == '"' { "double" } else { "single" };
        return Err(format!(
            "unexpected end of statement while looking for matching {kind}-quote"
        ));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Expands variables in one word and removes its quotes and escapes, as Docker's ProcessWord.
fn process_word(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Msg> {
    let chars: Vec<char> = word.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        escape,
        lookup,
        depth: 0,
    };
    lexer.until(None)
}

struct Lexer<'a> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Nesting of `${...:-${...}}`, bounded so hostile input cannot exhaust the stack.
    depth: usize,
}

/// How deeply `${VAR:-${...}}` substitutions may nest.
const MAX_NESTING: usize = 32;

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }

    /// Processes up to `stop` (unquoted) or the end; consumes `stop`.
    fn until(&mut self, stop: Option<char>) -> Result<String, Msg> {
        let mut out = String::new();
        while let Some(c) = self.next() {
            if Some(c) == stop {
                return Ok(out);
            }
            match c {
                '\'' => {
                    loop {
                        match self.next() {
                        Some('\'') => break,
                        Some(c) => out.push(c),
                        None => return Err("unexpected end of statement while looking for matching single-quote".to_owned()),
                    }
                    }
                }
                '"' => {
                    loop {
                        match self.next() {
                        Some('"') => break,
                        Some('$') => out.push_str(&self.variable()?),
                        Some(c) if c == self.escape => match self.peek() {
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            _ => out.push(c),
                        },
                        Some(c) => out.push(c),
                        None => return Err("unexpected end of statement while looking for matching double-quote".to_owned()),
                    }
                    }
                }
                '$' => out.push_str(&self.variable()?),
                c if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                c => out.push(c),
            }
        }
        match stop {
            Some(s) => Err(format!("missing '{s}' in substitution")),
            None => Ok(out),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    /// After a `$`: `NAME`, `{NAME}` or `{NAME<modifier>word}`; a lone `$` stays literal.
    fn variable(&mut self) -> Result<String, Msg> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok((self.lookup)(&name).unwrap_or_default());
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return Err("bad substitution: a name must follow ${".to_owned());
        }
        let value = (self.lookup)(&name);
        let colon = self.peek() == Some(':');
        if colon {
            self.pos += 1;
        }
        let modifier = self.next();
        match modifier {
            Some('}') if !colon => Ok(value.unwrap_or_default()),
            Some(m @ ('-' | '+' | '?')) => {
                if self.depth >= MAX_NESTING {
                    return Err(format!("substitutions nest deeper than {MAX_NESTING} levels: simplify ${{{name}...}}"));
                }
                self.depth += 1;
                let word = self.until(Some('}'));
                self.depth -= 1;
                let word = word?;
                // With a colon an empty value counts as unset.
                let set = match &value {
                    Some(v) => !(colon && v.is_empty()),
                    None => false,
                };
                match m {
                    '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                    '+' => Ok(if set { word } else { String::new() }),
                    _ if set => Ok(value.unwrap_or_default()),
                    _ => Err(if word.is_empty() {
                        format!("{name}: is not allowed to be unset")
                    } else {
                        format!("{name}: {word}")
                    }),
                }
            }
            Some(m) => Err(format!(
                "unsupported modifier ({}{m}) in substitution",
                if colon { ":" } else { "" }
            )),
            None => Err("missing '}' in substitution".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |n: &str| map.get(n).cloned()
    }

    #[test]
    fn process_word_table() {
        let lookup = env(&[("A", "a"), ("E", ""), ("SP", "x y")]);
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("$A", Ok("a")),
            ("${A}b", Ok("ab")),
            ("$Ab", Ok("")),
            ("${U:-dflt}", Ok("dflt")),
            ("${E:-dflt}", Ok("dflt")),
            ("${E-dflt}", Ok("")),
            ("${U-dflt}", Ok("dflt")),
            ("${A:+alt}", Ok("alt")),
            ("${E:+alt}", Ok("")),
            ("${E+alt}", Ok("alt")),
            ("${U+alt}", Ok("")),
            ("${U:-$A}", Ok("a")),
            ("\\$A", Ok("$A")),
            ("'$A'", Ok("$A")),
            ("\"$A\"", Ok("a")),
            ("\"a\\b\"", Ok("a\\b")),
            ("a\\ b", Ok("a b")),
            ("$", Ok("$")),
            ("${A", Err("missing '}' in substitution")),
            ("${U:?must be set}", Err("U: must be set")),
            ("${A%x}", Err("unsupported modifier (%) in substitution")),
            (
                "'open",
                Err("unexpected end of statement while looking for matching single-quote"),
            ),
        ];
        for (input, expected) in cases {
            let got = process_word(input, '\\', &lookup);
            assert_eq!(
                got.as_deref().map_err(|e| e.as_str()),
                *expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn backtick_escape_in_words() {
        let lookup = env(&[("A", "a")]);
        assert_eq!(process_word("`$A", '`', &lookup).as_deref(), Ok("$A"));
        assert_eq!(
            process_word("c:\\dir", '`', &lookup).as_deref(),
            Ok("c:\\dir")
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let word = format!("{}x{}", "${A:-".repeat(10_000), "}".repeat(10_000));
        let err = process_word(&word, '\\', &|_: &str| None).unwrap_err();
        assert!(
            err.starts_with("substitutions nest deeper than 32 levels"),
            "{err}"
        );
        let ok = format!("{}x{}", "${A:-".repeat(5), "}".repeat(5));
        assert_eq!(process_word(&ok, '\\', &|_: &str| None).as_deref(), Ok("x"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("s"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[test]
    fn split_words_keeps_quotes() {
        assert_eq!(
            split_words(r#"a "b c" 'd e'"#, '\\').unwrap(),
            vec!["a", "\"b c\"", "'d e'"]
        );
        assert!(split_words("\"open", '\\').is_err());
    }
}
