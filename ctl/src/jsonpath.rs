//! kubectl's JSONPath templates, for `-o jsonpath=...` and `-o custom-columns=...`:
//! text with `{...}` actions holding paths (`.items[*].metadata.name`, `..image`, `[0]`,
//! `[-1]`, `[1:3]`, `['key.with.dots']`, `[?(@.type=="Ready")]`), string literals (`{"\n"}`)
//! and `{range ...}...{end}` blocks.
//!
//! Hand-written because the maintained Rust JSONPath crates implement RFC 9535 expressions,
//! not kubectl's template language (text around actions, literals, range/end, and its way of
//! printing several results separated by spaces).

use serde_json::Value;

/// A template that could not be parsed or run.
#[derive(Debug, thiserror::Error)]
pub enum JsonPathError {
    #[error("error parsing jsonpath {template}, {message}")]
    Parse { template: String, message: String },
    #[error("error executing jsonpath {template}: {message}")]
    Execute { template: String, message: String },
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    source: String,
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, JsonPathError> {
        let error = |message: String| JsonPathError::Parse {
            template: source.to_string(),
            message,
        };
        let flat = tokenize(source).map_err(error)?;
        let mut iter = flat.into_iter();
        let nodes = nest(&mut iter, false).map_err(error)?;
        Ok(Template {
            source: source.to_string(),
            nodes,
        })
    }

    /// Runs the template on `data`: each action's results separated by spaces, strings as
    /// they are, numbers and booleans as JSON, objects and arrays as compact JSON.
    pub fn render(&self, data: &Value) -> Result<String, JsonPathError> {
        let mut groups = Vec::new();
        self.run(&self.nodes, data, &mut groups)?;
        let mut out = String::new();
        for group in groups {
            let texts: Vec<String> = group.iter().map(to_text).collect();
            out.push_str(&texts.join(" "));
        }
        Ok(out)
    }

    /// Every value the template's actions select, in order (literals and text included).
    pub fn values(&self, data: &Value) -> Result<Vec<Value>, JsonPathError> {
        let mut groups = Vec::new();
        self.run(&self.nodes, data, &mut groups)?;
        Ok(groups.into_iter().flatten().collect())
    }

    fn run(
        &self,
        nodes: &[Node],
        current: &Value,
        out: &mut Vec<Vec<Value>>,
    ) -> Result<(), JsonPathError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push(vec![Value::String(text.clone())]),
                Node::Path(path) => out.push(self.select(path, current)?),
                Node::Range(path, body) => {
                    for item in self.select(path, current)? {
                        self.run(body, &item, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn select(&self, path: &[Segment], current: &Value) -> Result<Vec<Value>, JsonPathError> {
        select(path, current).map_err(|message| JsonPathError::Execute {
            template: self.source.clone(),
            message,
        })
    }
}

/// kubectl's relaxed form for custom columns: `.metadata.name`, `metadata.name` and
/// `{.metadata.name}` all mean the same.
pub fn relaxed(expression: &str) -> String {
    let trimmed = expression.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        return trimmed.to_string();
    }
    if trimmed.starts_with('.') || trimmed.starts_with('$') || trimmed.starts_with('@') {
        format!("{{{trimmed}}}")
    } else {
        format!("{{.{trimmed}}}")
    }
}

/// A value as a jsonpath action prints it.
pub fn to_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Segment>),
    Range(Vec<Segment>, Vec<Node>),
}

/// A node before `range ... end` blocks are nested.
enum Flat {
    Text(String),
    Path(Vec<Segment>),
    Range(Vec<Segment>),
    End,
}

#[derive(Clone, Debug, PartialEq)]
enum Segment {
    Field(String),
    /// `['a','b']`
    Union(Vec<String>),
    Wildcard,
    /// `..name`, or `..*` with `None`
    Recursive(Option<String>),
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    left: Operand,
    /// `None`: existence test, `[?(@.x)]`
    comparison: Option<(Comparison, Operand)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Operand {
    Path(Vec<Segment>),
    Literal(Value),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Splits the template into text and actions.
fn tokenize(source: &str) -> Result<Vec<Flat>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let chars: Vec<char> = source.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '{' {
            text.push(chars[i]);
            i += 1;
            continue;
        }
        if !text.is_empty() {
            out.push(Flat::Text(std::mem::take(&mut text)));
        }
        // Find the matching '}', skipping quoted strings (a literal may hold braces).
        let start = i + 1;
        let mut j = start;
        let mut quote: Option<char> = None;
        while j < chars.len() {
            let c = chars[j];
            match quote {
                Some(_) if c == '\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '}' => break,
                None => {}
            }
            j += 1;
        }
        if j >= chars.len() {
            return Err("unclosed action".to_string());
        }
        let action: String = chars[start..j].iter().collect();
        out.push(action_node(action.trim())?);
        i = j + 1;
    }
    if !text.is_empty() {
        out.push(Flat::Text(text));
    }
    Ok(out)
}

fn action_node(action: &str) -> Result<Flat, String> {
    if action == "end" {
        return Ok(Flat::End);
    }
    if let Some(rest) = action.strip_prefix("range ") {
        return Ok(Flat::Range(parse_path(rest.trim())?));
    }
    if action.starts_with('"') {
        return Ok(Flat::Text(unquote(action)?));
    }
    if action.is_empty() {
        return Err("empty action".to_string());
    }
    Ok(Flat::Path(parse_path(action)?))
}

fn nest(iter: &mut impl Iterator<Item = Flat>, in_range: bool) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(flat) = iter.next() {
        match flat {
            Flat::Text(t) => nodes.push(Node::Text(t)),
            Flat::Path(p) => nodes.push(Node::Path(p)),
            Flat::Range(p) => {
                let body = nest(iter, true)?;
                nodes.push(Node::Range(p, body));
            }
            Flat::End if in_range => return Ok(nodes),
            Flat::End => return Err("not in range, nothing to end".to_string()),
        }
    }
    if in_range {
        return Err("range without end".to_string());
    }
    Ok(nodes)
}

/// A Go-style double-quoted string.
fn unquote(quoted: &str) -> Result<String, String> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| format!("unterminated string {quoted}"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            other => {
                return Err(format!(
                    "invalid escape \\{} in {quoted}",
                    other.unwrap_or(' ')
                ))
            }
        }
    }
    Ok(out)
}

fn parse_path(text: &str) -> Result<Vec<Segment>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    if chars.first().is_some_and(|&c| c == '$' || c == '@') {
        i = 1;
    }
    let mut segments = Vec::new();
    while i < chars.len() {
        match chars[i] {
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                if chars.get(i) == Some(&'*') {
                    segments.push(Segment::Recursive(None));
                    i += 1;
                } else {
                    let (name, next) = identifier(&chars, i);
                    if name.is_empty() {
                        return Err(format!("a field name must follow .. in {text}"));
                    }
                    segments.push(Segment::Recursive(Some(name)));
                    i = next;
                }
            }
            '.' => {
                i += 1;
                if chars.get(i) == Some(&'*') {
                    segments.push(Segment::Wildcard);
                    i += 1;
                } else {
                    let (name, next) = identifier(&chars, i);
                    // a lone "." selects the current object
                    if !name.is_empty() {
                        segments.push(Segment::Field(name));
                    }
                    i = next;
                }
            }
            '[' => {
                let close = matching_bracket(&chars, i)
                    .ok_or_else(|| format!("unterminated array in {text}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                segments.push(bracket(inner.trim(), text)?);
                i = close + 1;
            }
            c if c.is_whitespace() => i += 1,
            c => return Err(format!("unrecognized character in action: {c:?} in {text}")),
        }
    }
    Ok(segments)
}

/// A field name: up to the next unescaped `.` or `[`; `\.` stands for a dot.
fn identifier(chars: &[char], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 < chars.len() => {
                name.push(chars[i + 1]);
                i += 2;
            }
            '.' | '[' => break,
            c if c.is_whitespace() => break,
            c => {
                name.push(c);
                i += 1;
            }
        }
    }
    (name, i)
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut i = open;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(_) if c == '\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '[' => depth += 1,
            None if c == ']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            None => {}
        }
        i += 1;
    }
    None
}

fn bracket(inner: &str, text: &str) -> Result<Segment, String> {
    if inner == "*" {
        return Ok(Segment::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return Ok(Segment::Filter(parse_filter(filter.trim())?));
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        let names = inner
            .split(',')
            .map(|n| {
                let n = n.trim();
                let unq = n
                    .strip_prefix('\'')
                    .and_then(|n| n.strip_suffix('\''))
                    .or_else(|| n.strip_prefix('"').and_then(|n| n.strip_suffix('"')));
                unq.map(|s| s.replace("\\'", "'"))
                    .ok_or_else(|| format!("invalid field name {n} in {text}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(match <[String; 1]>::try_from(names) {
            Ok([one]) => Segment::Field(one),
            Err(many) => Segment::Union(many),
        });
    }
    let number = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<i64>()
            .map(Some)
            .map_err(|_| format!("invalid array index {s} in {text}"))
    };
    if inner.contains(':') {
        let parts: Vec<&str> = inner.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("invalid array slice {inner} in {text}"));
        }
        return Ok(Segment::Slice(
            number(parts[0])?,
            number(parts.get(1).copied().unwrap_or(""))?,
            number(parts.get(2).copied().unwrap_or(""))?,
        ));
    }
    match number(inner)? {
        Some(index) => Ok(Segment::Index(index)),
        None => Err(format!("empty array index in {text}")),
    }
}

fn parse_filter(filter: &str) -> Result<Filter, String> {
    const OPERATORS: &[(&str, Comparison)] = &[
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        ("<=", Comparison::Le),
        (">=", Comparison::Ge),
        ("<", Comparison::Lt),
        (">", Comparison::Gt),
    ];
    for (symbol, comparison) in OPERATORS {
        if let Some(at) = find_outside_quotes(filter, symbol) {
            let left = operand(filter[..at].trim())?;
            let right = operand(filter[at + symbol.len()..].trim())?;
            return Ok(Filter {
                left,
                comparison: Some((*comparison, right)),
            });
        }
    }
    Ok(Filter {
        left: operand(filter)?,
        comparison: None,
    })
}

fn find_outside_quotes(text: &str, needle: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if text[i..].starts_with(needle) => return Some(i),
            None => {}
        }
    }
    None
}

fn operand(text: &str) -> Result<Operand, String> {
    if text.starts_with('@') || text.starts_with('$') || text.starts_with('.') {
        return Ok(Operand::Path(parse_path(text)?));
    }
    if let Some(s) = text
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))
    {
        return Ok(Operand::Literal(Value::String(s.to_string())));
    }
    serde_json::from_str::<Value>(text)
        .map(Operand::Literal)
        .map_err(|_| format!("unrecognized filter operand {text}"))
}

fn select(path: &[Segment], root: &Value) -> Result<Vec<Value>, String> {
    let mut current = vec![root.clone()];
    for segment in path {
        let mut next = Vec::new();
        for value in &current {
            step(segment, value, &mut next)?;
        }
        current = next;
    }
    Ok(current)
}

fn step(segment: &Segment, value: &Value, out: &mut Vec<Value>) -> Result<(), String> {
    match segment {
        // A missing key selects nothing, as with kubectl's allowMissingKeys.
        Segment::Field(name) => {
            if let Some(v) = value.get(name.as_str()).filter(|_| value.is_object()) {
                out.push(v.clone());
            }
        }
        Segment::Union(names) => {
            for name in names {
                if let Some(v) = value.as_object().and_then(|m| m.get(name)) {
                    out.push(v.clone());
                }
            }
        }
        Segment::Wildcard => match value {
            Value::Array(items) => out.extend(items.iter().cloned()),
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.extend(keys.into_iter().filter_map(|k| map.get(k)).cloned());
            }
            _ => {}
        },
        Segment::Recursive(name) => recurse(name.as_deref(), value, out),
        Segment::Index(index) => {
            let Some(items) = value.as_array() else {
                return Ok(());
            };
            let len = items.len() as i64;
            let at = if *index < 0 { len + index } else { *index };
            if at < 0 || at >= len {
                return Err(format!(
                    "array index out of bounds: index {index}, length {len}"
                ));
            }
            out.push(items[at as usize].clone());
        }
        Segment::Slice(start, end, step) => {
            let Some(items) = value.as_array() else {
                return Ok(());
            };
            let len = items.len() as i64;
            let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
            let from = clamp(start.unwrap_or(0));
            let to = clamp(end.unwrap_or(len));
            let step = step.unwrap_or(1);
            if step <= 0 {
                return Err(format!("invalid slice step {step}"));
            }
            let mut i = from;
            while i < to {
                out.push(items[i as usize].clone());
                i += step;
            }
        }
        Segment::Filter(filter) => {
            let items: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for item in items {
                if filter_matches(filter, item)? {
                    out.push(item.clone());
                }
            }
        }
    }
    Ok(())
}

fn recurse(name: Option<&str>, value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = name {
                if let Some(v) = map.get(name) {
                    out.push(v.clone());
                }
            } else {
                out.extend(map.values().cloned());
            }
            for v in map.values() {
                recurse(name, v, out);
            }
        }
        Value::Array(items) => {
            if name.is_none() {
                out.extend(items.iter().cloned());
            }
            for v in items {
                recurse(name, v, out);
            }
        }
        _ => {}
    }
}

fn filter_matches(filter: &Filter, item: &Value) -> Result<bool, String> {
    let resolve = |operand: &Operand| -> Result<Vec<Value>, String> {
        match operand {
            Operand::Path(path) => select(path, item),
            Operand::Literal(v) => Ok(vec![v.clone()]),
        }
    };
    let left = resolve(&filter.left)?;
    let Some((comparison, right)) = &filter.comparison else {
        return Ok(!left.is_empty());
    };
    let right = resolve(right)?;
    let (Some(l), Some(r)) = (left.first(), right.first()) else {
        return Ok(false);
    };
    let ordering = match (l.as_f64(), r.as_f64()) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => match (l.as_str(), r.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        },
    };
    Ok(match comparison {
        Comparison::Eq => l == r || ordering == Some(std::cmp::Ordering::Equal),
        Comparison::Ne => !(l == r || ordering == Some(std::cmp::Ordering::Equal)),
        Comparison::Lt => ordering == Some(std::cmp::Ordering::Less),
        Comparison::Le => matches!(
            ordering,
            Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
        ),
        Comparison::Gt => ordering == Some(std::cmp::Ordering::Greater),
        Comparison::Ge => matches!(
            ordering,
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "kind": "List",
            "items": [
                {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web"}},
                 "spec": {"replicas": 2, "containers": [{"image": "nginx"}, {"image": "busybox"}]},
                 "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}},
                {"metadata": {"name": "b"},
                 "spec": {"replicas": 5, "containers": [{"image": "redis"}]},
                 "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            ]
        })
    }

    fn check(template: &str, expected: &str) {
        let parsed = match Template::parse(template) {
            Ok(t) => t,
            Err(e) => panic!("{template}: {e}"),
        };
        match parsed.render(&data()) {
            Ok(out) => assert_eq!(out, expected, "{template}"),
            Err(e) => panic!("{template}: {e}"),
        }
    }

    #[test]
    fn templates_like_kubectl() {
        check("{.items[*].metadata.name}", "a b");
        check("{.kind}", "List");
        check(
            r#"{range .items[*]}{.metadata.name}{"\t"}{.spec.replicas}{"\n"}{end}"#,
            "a\t2\nb\t5\n",
        );
        check(
            "names: {.items[0].metadata.name}, last {.items[-1].metadata.name}",
            "names: a, last b",
        );
        check("{.items[0:1].metadata.name}", "a");
        check("{..image}", "nginx busybox redis");
        check(
            "{.items[*].spec.containers[*].image}",
            "nginx busybox redis",
        );
        check(r#"{.items[?(@.spec.replicas>3)].metadata.name}"#, "b");
        check(
            r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}"#,
            "a=True b=False ",
        );
        check(
            r#"{.items[0].metadata.labels['app\.kubernetes\.io/name']}"#,
            "",
        );
        check(
            r#"{.items[0].metadata.labels['app.kubernetes.io/name']}"#,
            "web",
        );
        check(
            r#"{.items[0].metadata.labels.app\.kubernetes\.io/name}"#,
            "web",
        );
        check("{.items[1].metadata}", r#"{"name":"b"}"#);
        check("{.missing.field}", "");
        check("{.items[*].spec.replicas}", "2 5");
        check(r#"{"}"}"#, "}");
        check("plain text", "plain text");
    }

    #[test]
    fn errors_name_the_problem() {
        for bad in [
            "{.items[0]",
            "{range .items[*]}x",
            "{end}",
            "{.items[x]}",
            "{.a b}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        let t = match Template::parse("{.items[5].metadata.name}") {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert!(t
            .render(&data())
            .is_err_and(|e| e.to_string().contains("out of bounds")));
    }

    #[test]
    fn relaxed_paths_for_custom_columns() {
        assert_eq!(relaxed(".metadata.name"), "{.metadata.name}");
        assert_eq!(relaxed("metadata.name"), "{.metadata.name}");
        assert_eq!(relaxed("{.metadata.name}"), "{.metadata.name}");
    }
}
