//! Compose's variable substitution in string values: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a
//! literal `$`. Hand-written because the rules are the Compose specification's own and small.

use std::collections::BTreeMap;

/// The variables a file is interpolated with: the process environment over `.env`.
pub type Vars = BTreeMap<String, String>;

/// Substitutes the variables of `text`. A variable that is unset and has no default becomes the
/// empty string and its name is pushed to `missing`, so the caller can warn as docker compose
/// does. The error is the message of a `:?`/`?` variable or a malformed `${...}`.
pub fn interpolate(text: &str, vars: &Vars, missing: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = closing_brace(inner) else {
                return Err(format!(
                    "invalid interpolation format for {text:?}: unclosed \"${{\""
                ));
            };
            out.push_str(&expand(&inner[..end], vars, missing, text)?);
            rest = &inner[end + 1..];
        } else {
            let len = after
                .char_indices()
                .find(|(i, c)| {
                    !(c.is_ascii_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit())
                })
                .map_or(after.len(), |(i, _)| i);
            if len == 0 {
                // A lone `$` stays as it is, as docker compose leaves it.
                out.push('$');
                rest = after;
            } else {
                out.push_str(&lookup(&after[..len], vars, missing));
                rest = &after[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a `.env` file: `KEY=VALUE` lines, `#` comments, optional `export `, values in single
/// quotes taken literally and in double quotes with `\n`, `\"` and `\\` escapes.
pub fn parse_dotenv(text: &str) -> Result<Vars, String> {
    let mut vars = Vars::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE, got {line:?}",
                number + 1
            ));
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!(
                "line {}: invalid variable name {key:?}",
                number + 1
            ));
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else {
            // An unquoted value ends at ` #`, which starts a comment.
            value
                .split(" #")
                .next()
                .unwrap_or_default()
                .trim_end()
                .to_string()
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// The index of the `}` that closes a `${`, counting nested `${...}` in defaults.
fn closing_brace(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn expand(
    body: &str,
    vars: &Vars,
    missing: &mut Vec<String>,
    text: &str,
) -> Result<String, String> {
    let name_len = body
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(body.len(), |(i, _)| i);
    let (name, op) = body.split_at(name_len);
    if name.is_empty() {
        return Err(format!(
            "invalid interpolation format for {text:?}: \"${{{body}}}\""
        ));
    }
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    let present = if colon { non_empty } else { set };
    let nested = |arg: &str, missing: &mut Vec<String>| interpolate(arg, vars, missing);
    match op.chars().next() {
        None if !colon => Ok(lookup(name, vars, missing)),
        Some('-') if present => Ok(value.cloned().unwrap_or_default()),
        Some('-') => nested(&op[1..], missing),
        Some('?') if present => Ok(value.cloned().unwrap_or_default()),
        Some('?') => {
            let message = nested(&op[1..], missing)?;
            Err(format!(
                "required variable {name} is missing a value: {message}"
            ))
        }
        Some('+') if present => nested(&op[1..], missing),
        Some('+') => Ok(String::new()),
        _ => Err(format!(
            "invalid interpolation format for {text:?}: \"${{{body}}}\""
        )),
    }
}

fn lookup(name: &str, vars: &Vars, missing: &mut Vec<String>) -> String {
    match vars.get(name) {
        Some(value) => value.clone(),
        None => {
            missing.push(name.to_string());
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        let vars: Vars = [("A", "1"), ("EMPTY", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut missing = Vec::new();
        let got = interpolate(text, &vars, &mut missing);
        match expected {
            Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{text}"),
            Err(part) => match got {
                Err(message) => assert!(message.contains(part), "{text}: {message}"),
                Ok(value) => panic!("{text}: expected an error, got {value:?}"),
            },
        }
    }

    #[test]
    fn forms() {
        check("x$A-${A}", Ok("x1-1"));
        check("$$A costs $$5", Ok("$A costs $5"));
        check("${B:-def}", Ok("def"));
        check("${EMPTY:-def}", Ok("def"));
        check("${EMPTY-def}", Ok(""));
        check("${B-def}", Ok("def"));
        check("${B:-${A}x}", Ok("1x"));
        check("${A:+yes}${B:+no}", Ok("yes"));
        check("${A:?need A}", Ok("1"));
        check(
            "${B:?set B please}",
            Err("required variable B is missing a value: set B please"),
        );
        check("${EMPTY?unset}", Ok(""));
        check("${A", Err("unclosed"));
        check("${}", Err("invalid interpolation format"));
        check("cost: 5$", Ok("cost: 5$"));
    }

    #[test]
    fn missing_variables_are_reported() {
        let mut missing = Vec::new();
        assert_eq!(
            interpolate("a${NOPE}b$NADA", &Vars::new(), &mut missing).as_deref(),
            Ok("ab")
        );
        assert_eq!(missing, ["NOPE", "NADA"]);
    }

    #[test]
    fn dotenv() {
        let vars = parse_dotenv("# c\nA=1\nexport B = two words # note\nC='x #y'\nD=\"l1\\nl2\"\n")
            .expect("valid");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x #y");
        assert_eq!(vars["D"], "l1\nl2");
        assert!(parse_dotenv("JUSTAKEY").is_err());
    }
}
