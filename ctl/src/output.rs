//! The `-o/--output` formats shared by commands, and printing a value as JSON or YAML the way
//! kubectl does (JSON indented by four spaces, YAML in block style).

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

/// What `-o` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Wide,
}

/// Writes `value` as JSON (kubectl indents by four spaces) followed by a newline.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut serializer)?;
    buf.push(b'\n');
    out.write_all(&buf)?;
    Ok(())
}

/// Writes `value` as YAML.
pub fn write_yaml<T: Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    let text = serde_yaml::to_string(value)?;
    out.write_all(text.as_bytes())?;
    Ok(())
}
