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

/// Docker's `units.HumanDuration`.
pub fn human_duration(now: jiff::Timestamp, then: jiff::Timestamp) -> String {
    let secs = now.duration_since(then).as_secs_f64().max(0.0);
    let seconds = secs as i64;
    let minutes = (secs / 60.0) as i64;
    let hours = (secs / 3600.0 + 0.5) as i64;
    if seconds < 1 {
        "Less than a second".into()
    } else if seconds == 1 {
        "1 second".into()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".into()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".into()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
    }
}

/// `value` with the keys of every object in sorted order, as Go writes maps: kubectl prints
/// objects this way, and writes its last-applied annotation this way.
pub fn sorted_keys(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k.clone(), sorted_keys(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_keys).collect()),
        other => other.clone(),
    }
}
