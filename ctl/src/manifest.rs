//! Reading the objects named by `-f FILE|DIR|-` (with `-R` for directories), as kubectl does:
//! multi-document YAML, JSON (one or several concatenated objects), and `kind: List` flattened
//! into its items. Every object keeps the name of the file it came from, so later errors can say
//! `error when creating "web.yaml": ...`.
//!
//! Hand-written rather than taken from a crate because kubectl's exact rules (which extensions a
//! directory walk picks, `List` flattening, its error wording) are small and specific.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// What kubectl calls standard input in messages.
pub const STDIN: &str = "STDIN";

/// One object read from a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The file it came from, as the user spelled it (joined with the directory walk), or
    /// [`STDIN`].
    pub source: String,
    pub object: Value,
}

/// Why the manifests could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the path \"{path}\" does not exist")]
    Missing { path: String },

    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },

    #[error("error parsing {path}: line {line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },

    #[error("error validating \"{path}\": error validating data: {problems}")]
    Invalid { path: String, problems: String },

    #[error("must specify one of -f and -k")]
    NoFiles,

    #[error("no objects passed to {verb}")]
    NoObjects { verb: &'static str },
}

/// Reads every object of `paths` in order (`-` is standard input). Directories contribute their
/// `.json`, `.yaml` and `.yml` files in name order, and those of sub-directories with `recursive`.
pub fn read(paths: &[String], recursive: bool) -> Result<Vec<Manifest>, ManifestError> {
    if paths.is_empty() {
        return Err(ManifestError::NoFiles);
    }
    let mut manifests = Vec::new();
    for path in paths {
        if path == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| ManifestError::Read {
                    path: STDIN.to_string(),
                    error,
                })?;
            manifests.extend(parse(&text, STDIN)?);
            continue;
        }
        let p = Path::new(path);
        if !p.exists() {
            return Err(ManifestError::Missing { path: path.clone() });
        }
        let files = if p.is_dir() {
            let mut files = Vec::new();
            walk(p, recursive, &mut files)?;
            files
        } else {
            vec![p.to_path_buf()]
        };
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|error| ManifestError::Read {
                path: name.clone(),
                error,
            })?;
            manifests.extend(parse(&text, &name)?);
        }
    }
    Ok(manifests)
}

/// Parses one file's text. JSON is recognised by its first character, as kubectl does; anything
/// else is YAML with `---` between documents. Empty documents are skipped.
pub fn parse(text: &str, source: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut objects = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        for item in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            let value = item.map_err(|e| ManifestError::Parse {
                path: source.to_string(),
                line: e.line(),
                message: strip_location(&e.to_string()),
            })?;
            push_value(value, source, &mut objects)?;
        }
    } else {
        for document in serde_yaml::Deserializer::from_str(text) {
            let value = Value::deserialize(document).map_err(|e| ManifestError::Parse {
                path: source.to_string(),
                line: e.location().map_or(0, |l| l.line()),
                message: strip_location(&e.to_string()),
            })?;
            push_value(value, source, &mut objects)?;
        }
    }
    Ok(objects)
}

/// Adds a parsed document: nothing for an empty one, the items of a `List` (or a JSON array),
/// else the object itself once it has `apiVersion` and `kind`.
fn push_value(value: Value, source: &str, out: &mut Vec<Manifest>) -> Result<(), ManifestError> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                push_value(item, source, out)?;
            }
            Ok(())
        }
        Value::Object(ref map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = value.get("items").cloned() {
                for item in items {
                    push_value(item, source, out)?;
                }
            }
            Ok(())
        }
        Value::Object(ref map) => {
            let mut problems = Vec::new();
            let set = |key: &str| {
                map.get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if !set("apiVersion") {
                problems.push("apiVersion not set");
            }
            if !set("kind") {
                problems.push("kind not set");
            }
            if !problems.is_empty() {
                return Err(ManifestError::Invalid {
                    path: source.to_string(),
                    problems: format!("[{}]", problems.join(", ")),
                });
            }
            out.push(Manifest {
                source: source.to_string(),
                object: value,
            });
            Ok(())
        }
        other => Err(ManifestError::Invalid {
            path: source.to_string(),
            problems: format!("expected an object, found {}", type_name(&other)),
        }),
    }
}

fn walk(dir: &Path, recursive: bool, files: &mut Vec<PathBuf>) -> Result<(), ManifestError> {
    let read_error = |error| ManifestError::Read {
        path: dir.display().to_string(),
        error,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                walk(&entry, recursive, files)?;
            }
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"))
        {
            files.push(entry);
        }
    }
    Ok(())
}

/// serde's messages end in " at line L column C"; the line is reported separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<String> {
        match parse(text, "x.yaml") {
            Ok(ms) => ms
                .iter()
                .map(|m| m.object["kind"].as_str().unwrap_or("").to_string())
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn multi_document_yaml_json_and_lists() {
        assert_eq!(
            kinds("---\napiVersion: v1\nkind: Namespace\n---\n\n---\napiVersion: v1\nkind: Pod\n"),
            ["Namespace", "Pod"]
        );
        assert_eq!(
            kinds(r#"{"apiVersion":"v1","kind":"Pod"} {"apiVersion":"v1","kind":"Service"}"#),
            ["Pod", "Service"]
        );
        assert_eq!(
            kinds("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n- apiVersion: v1\n  kind: Secret\n"),
            ["Pod", "Secret"]
        );
        assert!(kinds("# only a comment\n").is_empty());
    }

    #[test]
    fn errors_name_file_and_line() {
        let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: [\n";
        match parse(bad, "bad.yaml") {
            Err(ManifestError::Parse { path, line, .. }) => {
                assert_eq!(path, "bad.yaml");
                assert_eq!(line, 5);
            }
            other => panic!("{other:?}"),
        }
        // a later document's line counts from the top of the file
        let second = "apiVersion: v1\nkind: Pod\n---\napiVersion: v1\nkind: [\n";
        match parse(second, "two.yaml") {
            Err(ManifestError::Parse { line, .. }) => assert!(line >= 5, "{line}"),
            other => panic!("{other:?}"),
        }
        match parse("{\"kind\": \"Pod\",\n \"x\": }", "bad.json") {
            Err(ManifestError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        let message = match parse("kind: Pod\n", "nokind.yaml") {
            Err(e) => e.to_string(),
            Ok(v) => panic!("{v:?}"),
        };
        assert_eq!(
            message,
            "error validating \"nokind.yaml\": error validating data: [apiVersion not set]"
        );
    }

    #[test]
    fn directories_and_missing_paths() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
            }
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
        };
        write("a.yaml", "apiVersion: v1\nkind: Pod\n");
        write("notes.txt", "not a manifest");
        write("sub/b.json", r#"{"apiVersion":"v1","kind":"Service"}"#);
        let root = dir.path().display().to_string();
        let flat = read(std::slice::from_ref(&root), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flat.len(), 1);
        let deep = read(std::slice::from_ref(&root), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(deep.len(), 2);
        assert!(deep[1].source.ends_with("sub/b.json"), "{}", deep[1].source);
        let missing = read(&["nope.yaml".to_string()], false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            missing,
            Err("the path \"nope.yaml\" does not exist".to_string())
        );
    }
}
