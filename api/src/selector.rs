//! Label selectors (equality- and set-based, in kube's string syntax and as a
//! `metav1.LabelSelector`) and field selectors, with the matching rules the apiserver applies
//! to `?labelSelector=` and `?fieldSelector=`.
//!
//! Hand-written because no maintained crate parses Kubernetes' selector syntax with its
//! validation rules; the grammar is small (a lexer of a handful of tokens and a recursive
//! descent over requirements).

use std::collections::BTreeMap;
use std::fmt;

use crate::resource::ResourceInfo;
use crate::scheme::{validate_label_value, validate_qualified_name};

type MetaLabelSelector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Why a selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// the string does not follow the selector grammar
    #[error("unable to parse requirement: {message}")]
    Syntax { selector: String, message: String },
    /// a key, value or operator breaks Kubernetes' rules
    #[error("{message}")]
    Invalid { message: String },
    /// the kind cannot be filtered on that field
    #[error("field label not supported: {field}")]
    UnsupportedField { field: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// one value for Equals/NotEquals, a sorted non-empty set for In/NotIn, none otherwise
    pub values: Vec<String>,
}

/// A conjunction of requirements on labels; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl Requirement {
    /// Checks the key and values the way Kubernetes' `NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        validate_qualified_name(key).map_err(|m| SelectorError::Invalid {
            message: format!("key: Invalid value: {}: {m}", quote(key)),
        })?;
        let mut values = values;
        match operator {
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return Err(invalid(
                    "values: Invalid value: exact-match compatibility requires one single value",
                ))
            }
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(invalid(
                    "values: Invalid value: for 'in', 'notin' operators, values set can't be empty",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(invalid(
                    "values: Invalid value: values set must be empty for exists and does not exist",
                ))
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            validate_label_value(v).map_err(|m| SelectorError::Invalid {
                message: format!("values[{i}][{key}]: Invalid value: {}: {m}", quote(v)),
            })?;
        }
        if matches!(operator, Operator::In | Operator::NotIn) {
            values.sort();
            values.dedup();
        }
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals => value.is_some_and(|v| self.values.contains(v)),
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // as in Kubernetes, an absent label satisfies "!=" and "notin"
            Operator::NotEquals | Operator::NotIn => {
                !value.is_some_and(|v| self.values.contains(v))
            }
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first),
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

impl LabelSelector {
    /// kube's string syntax: "a=b,a==b,a!=b,env in (prod,qa),tier notin (fe),partition,!partition";
    /// keys and values are validated.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s).map_err(|message| SelectorError::Syntax {
            selector: s.to_string(),
            message,
        })?;
        Parser {
            selector: s,
            tokens,
            pos: 0,
        }
        .parse()
    }

    /// matchLabels + matchExpressions (In, NotIn, Exists, DoesNotExist), as in
    /// Deployment.spec.selector.
    pub fn from_meta(sel: &MetaLabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Invalid {
                        message: format!("{} is not a valid label selector operator", quote(other)),
                    })
                }
            };
            requirements.push(Requirement::new(
                &expr.key,
                operator,
                expr.values.clone().unwrap_or_default(),
            )?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Matches against `metadata.labels` of a JSON object (absent labels read as none).
    pub fn matches_object(&self, object: &serde_json::Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = object
            .pointer("/metadata/labels")
            .and_then(|l| l.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }

    /// An empty selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// `field = value | field == value | field != value`, comma separated; a conjunction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldTerm {
    field: String,
    negated: bool,
    value: String,
}

/// Fields every kind can be selected on.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

impl FieldSelector {
    /// Parses "spec.nodeName=node-1,status.phase!=Running"; `\` escapes `,`, `=`, `!` and `\`
    /// inside values, as Kubernetes' `fields.EscapeValue` writes them.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for term in split_unescaped(s, ',') {
            let (field, negated, value) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], true, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], false, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], false, &term[i + 1..])
            } else {
                return Err(SelectorError::Invalid {
                    message: format!("invalid selector: '{s}'; can't understand '{term}'"),
                });
            };
            let field = field.trim();
            if field.is_empty() {
                return Err(SelectorError::Invalid {
                    message: format!(
                        "invalid selector: '{s}'; a field name is required in '{term}'"
                    ),
                });
            }
            let value = unescape(value).map_err(|message| SelectorError::Invalid {
                message: format!("invalid selector: '{s}'; {message}"),
            })?;
            terms.push(FieldTerm {
                field: field.to_string(),
                negated,
                value,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Fields supported per kind: all kinds metadata.name and metadata.namespace; pods also
    /// spec.nodeName, spec.restartPolicy, spec.schedulerName, spec.serviceAccountName,
    /// status.phase, status.podIP, status.nominatedNodeName; events involvedObject.*, reason,
    /// type, source, reportingComponent; nodes spec.unschedulable; secrets type.
    pub fn check_supported(&self, info: &ResourceInfo) -> Result<(), SelectorError> {
        let extra: &[&str] = match (info.group, info.kind) {
            ("", "Pod") => &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ("", "Event") => &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ("", "Node") => &["spec.unschedulable"],
            ("", "Secret") => &["type"],
            _ => &[],
        };
        for term in &self.terms {
            let f = term.field.as_str();
            if !COMMON_FIELDS.contains(&f) && !extra.contains(&f) {
                return Err(SelectorError::UnsupportedField {
                    field: term.field.clone(),
                });
            }
        }
        Ok(())
    }

    /// A missing field reads as "" (so `spec.nodeName=` selects unbound pods).
    pub fn matches(&self, object: &serde_json::Value) -> bool {
        self.terms
            .iter()
            .all(|t| (field_value(object, &t.field) == t.value) != t.negated)
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value this selector pins a field to with `=`, e.g. Some("node-1") for
    /// "spec.nodeName=node-1".
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if t.negated { "!=" } else { "=" };
            write!(f, "{}{}{}", t.field, op, escape(&t.value))?;
        }
        Ok(())
    }
}

fn invalid(message: &str) -> SelectorError {
    SelectorError::Invalid {
        message: message.to_string(),
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The value of a dotted field path as a field selector compares it.
fn field_value(object: &serde_json::Value, field: &str) -> String {
    // Kubernetes exposes an event's `source.component` under the field label "source".
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut cur = object;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=' | '!') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn unescape(v: &str) -> Result<String, String> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence '\\{e}'")),
                None => return Err("unterminated escape sequence".to_string()),
            }
        } else if matches!(c, ',' | '=') {
            return Err(format!("unescaped '{c}' in value '{v}'"));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// The byte offset of the first `pat` not preceded by an escaping backslash.
fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Not,       // !
    Equals,    // = or ==
    NotEquals, // !=
    In,        // in
    NotIn,     // notin
    Open,      // (
    Close,     // )
    Comma,     // ,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(s) => write!(f, "{s}"),
            Token::Not => f.write_str("!"),
            Token::Equals => f.write_str("="),
            Token::NotEquals => f.write_str("!="),
            Token::In => f.write_str("in"),
            Token::NotIn => f.write_str("notin"),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
            Token::Comma => f.write_str(","),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::NotEquals);
                } else {
                    tokens.push(Token::Not);
                }
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                }
                tokens.push(Token::Equals);
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            _ => {
                let mut ident = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '!' | '=' | '(' | ')' | ',') {
                        break;
                    }
                    ident.push(c);
                    chars.next();
                }
                tokens.push(match ident.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(ident),
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    selector: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn syntax(&self, found: Option<&Token>, expected: &str) -> SelectorError {
        let found = found
            .map(|t| t.to_string())
            .unwrap_or_else(|| "end of string".to_string());
        SelectorError::Syntax {
            selector: self.selector.to_string(),
            message: format!("found '{found}', expected: {expected}"),
        }
    }

    fn parse(mut self) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        if self.tokens.is_empty() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(t) => return Err(self.syntax(Some(&t), "',' or 'end of string'")),
            }
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            t => return Err(self.syntax(t.as_ref(), "identifier")),
        };
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, vec![]);
        }
        let operator = match self.peek() {
            None | Some(Token::Comma) => return Requirement::new(&key, Operator::Exists, vec![]),
            Some(Token::Equals) => Operator::Equals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::In) => Operator::In,
            Some(Token::NotIn) => Operator::NotIn,
            t => {
                let t = t.cloned();
                return Err(self.syntax(t.as_ref(), "'=', '!=', '==', 'in', notin'"));
            }
        };
        self.pos += 1;
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_set()?,
            _ => match self.peek() {
                // "a=" selects the empty value
                None | Some(Token::Comma) => vec![String::new()],
                Some(Token::Ident(v)) => {
                    let v = v.clone();
                    self.pos += 1;
                    vec![v]
                }
                t => {
                    let t = t.cloned();
                    return Err(self.syntax(t.as_ref(), "identifier"));
                }
            },
        };
        Requirement::new(&key, operator, values)
    }

    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Some(Token::Open) => {}
            t => return Err(self.syntax(t.as_ref(), "'('")),
        }
        let mut values = Vec::new();
        if self.peek() == Some(&Token::Close) {
            self.pos += 1;
            return Ok(values);
        }
        loop {
            // an empty element ("(a,)") is the empty value, as in Kubernetes
            match self.peek() {
                Some(Token::Ident(v)) => {
                    values.push(v.clone());
                    self.pos += 1;
                }
                Some(Token::Comma) | Some(Token::Close) => values.push(String::new()),
                t => {
                    let t = t.cloned();
                    return Err(self.syntax(t.as_ref(), "',', ')' or identifier"));
                }
            }
            match self.next() {
                Some(Token::Comma) => {}
                Some(Token::Close) => return Ok(values),
                t => return Err(self.syntax(t.as_ref(), "',' or ')'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_parse_and_print() {
        // input, what it prints back as (None: must fail)
        fn check(input: &str, expected: Option<&str>) {
            let got = LabelSelector::parse(input);
            match (got, expected) {
                (Ok(sel), Some(printed)) => {
                    assert_eq!(sel.to_string(), printed, "{input}");
                    assert_eq!(
                        LabelSelector::parse(printed).as_ref(),
                        Ok(&sel),
                        "round trip of {input}"
                    );
                }
                (Err(e), None) => assert!(!e.to_string().is_empty()),
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
        check("", Some(""));
        check("a=b", Some("a=b"));
        check("a==b", Some("a=b"));
        check("a!=b", Some("a!=b"));
        check(" a = b , c != d ", Some("a=b,c!=d"));
        check("a=", Some("a="));
        check("env in (prod,qa)", Some("env in (prod,qa)"));
        check("env in (qa, prod, qa)", Some("env in (prod,qa)"));
        check("tier notin (fe)", Some("tier notin (fe)"));
        check("partition", Some("partition"));
        check("!partition", Some("!partition"));
        check(
            "app.kubernetes.io/name=web,!canary",
            Some("app.kubernetes.io/name=web,!canary"),
        );
        check("x in (a,)", Some("x in (,a)"));
        check("env in ()", None);
        check("env in prod", None);
        check("env in (prod", None);
        check("a=b=c", None);
        check("a b", None);
        check("=b", None);
        check("a=b,", None);
        check(",a=b", None);
        check("a=(b)", None);
        check("!a=b", None);
        check("bad key=b", None);
        check("-a=b", None);
        check("a=b c", None);
        check("a=-b", None);
        check(&format!("a={}", "x".repeat(64)), None);
        check("a/b/c=d", None);
        check("Example.com/a=b", None);
    }

    #[test]
    fn label_selector_matching() {
        fn check(selector: &str, on: &[(&str, &str)], expected: bool) {
            let sel = LabelSelector::parse(selector).unwrap();
            assert_eq!(sel.matches(&labels(on)), expected, "{selector} on {on:?}");
        }
        check("", &[], true);
        check("a=b", &[("a", "b")], true);
        check("a=b", &[("a", "c")], false);
        check("a=b", &[], false);
        check("a!=b", &[("a", "c")], true);
        check("a!=b", &[], true);
        check("a!=b", &[("a", "b")], false);
        check("a in (x,y)", &[("a", "y")], true);
        check("a in (x,y)", &[("a", "z")], false);
        check("a in (x,y)", &[], false);
        check("a notin (x,y)", &[], true);
        check("a notin (x,y)", &[("a", "x")], false);
        check("a", &[("a", "")], true);
        check("a", &[], false);
        check("!a", &[], true);
        check("!a", &[("a", "1")], false);
        check("a=b,c=d", &[("a", "b"), ("c", "d")], true);
        check("a=b,c=d", &[("a", "b")], false);
        check("a=", &[("a", "")], true);

        let sel = LabelSelector::parse("app=web").unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {"name": "x"}})));
        assert!(LabelSelector::default().matches_object(&json!({})));
    }

    #[test]
    fn label_selector_from_meta() {
        fn check(sel: serde_json::Value, expected: Result<&str, &str>) {
            let meta: MetaLabelSelector = serde_json::from_value(sel.clone()).unwrap();
            let got = LabelSelector::from_meta(&meta)
                .map(|s| s.to_string())
                .map_err(|e| e.to_string());
            match (&got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g, e, "{sel}"),
                (Err(g), Err(e)) => assert!(g.contains(e), "{sel}: {g} lacks {e}"),
                _ => panic!("{sel}: got {got:?}, expected {expected:?}"),
            }
        }
        check(json!({}), Ok(""));
        check(
            json!({"matchLabels": {"app": "web", "tier": "fe"}}),
            Ok("app=web,tier=fe"),
        );
        check(
            json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["qa", "prod"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
                {"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
            Ok("app=web,env in (prod,qa),!canary,zone,tier notin (db)"),
        );
        check(
            json!({"matchExpressions": [{"key": "env", "operator": "In", "values": []}]}),
            Err("values set can't be empty"),
        );
        check(
            json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["a"]}]}),
            Err("values set must be empty"),
        );
        check(
            json!({"matchExpressions": [{"key": "env", "operator": "Gt", "values": ["1"]}]}),
            Err("\"Gt\" is not a valid label selector operator"),
        );
        check(
            json!({"matchLabels": {"app": "bad value"}}),
            Err("values[0][app]: Invalid value: \"bad value\""),
        );
    }

    #[test]
    fn field_selector_parse_match_print() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
            "status": {"phase": "Running"}
        });
        let unbound = json!({"metadata": {"name": "web-2", "namespace": "default"}, "spec": {}});
        fn check(selector: &str, object: &serde_json::Value, expected: bool) {
            let sel = FieldSelector::parse(selector).unwrap();
            assert_eq!(sel.matches(object), expected, "{selector}");
            assert_eq!(
                FieldSelector::parse(&sel.to_string()).unwrap(),
                sel,
                "round trip of {selector}"
            );
        }
        check("", &pod, true);
        check("spec.nodeName=node-1", &pod, true);
        check("spec.nodeName==node-1", &pod, true);
        check("spec.nodeName!=node-1", &pod, false);
        check("spec.nodeName=node-1", &unbound, false);
        check("spec.nodeName=", &unbound, true);
        check("spec.nodeName=", &pod, false);
        check("metadata.name=web-1,status.phase=Running", &pod, true);
        check("metadata.name=web-1,status.phase!=Running", &pod, false);
        check("status.phase=Pending", &unbound, false);
        check(
            "metadata.name=a\\,b",
            &json!({"metadata": {"name": "a,b"}}),
            true,
        );
        check(
            "spec.unschedulable=true",
            &json!({"spec": {"unschedulable": true}}),
            true,
        );
        check(
            "source=kubelet",
            &json!({"source": {"component": "kubelet"}}),
            true,
        );

        for bad in ["a", "=x", "a=b\\", "a=b\\q", "a=b=c"] {
            assert!(FieldSelector::parse(bad).is_err(), "{bad} should not parse");
        }
        let sel = FieldSelector::parse("spec.nodeName=node-1,status.phase!=Failed").unwrap();
        assert_eq!(sel.exact("spec.nodeName"), Some("node-1"));
        assert_eq!(sel.exact("status.phase"), None);
        assert_eq!(sel.exact("metadata.name"), None);
        assert_eq!(sel.to_string(), "spec.nodeName=node-1,status.phase!=Failed");
        assert!(!sel.is_empty());
        assert!(FieldSelector::parse(" ").unwrap().is_empty());
    }

    #[test]
    fn field_selector_support_per_kind() {
        use crate::resource::lookup;
        fn check(kind: &str, selector: &str, expected: Result<(), &str>) {
            let info = lookup(kind).unwrap();
            let got = FieldSelector::parse(selector)
                .unwrap()
                .check_supported(info)
                .map_err(|e| e.to_string());
            assert_eq!(got, expected.map_err(String::from), "{kind} {selector}");
        }
        check(
            "pods",
            "spec.nodeName=a,status.phase=Running,metadata.name=x",
            Ok(()),
        );
        check("deployments", "metadata.namespace=default", Ok(()));
        check(
            "deployments",
            "spec.nodeName=a",
            Err("field label not supported: spec.nodeName"),
        );
        check(
            "events",
            "involvedObject.name=web,involvedObject.kind=Pod,reason=Failed,type=Warning,source=x",
            Ok(()),
        );
        check("nodes", "spec.unschedulable=false", Ok(()));
        check("secrets", "type=Opaque", Ok(()));
        check(
            "configmaps",
            "type=Opaque",
            Err("field label not supported: type"),
        );
        check(
            "pods",
            "status.hostIP=1.2.3.4",
            Err("field label not supported: status.hostIP"),
        );
    }
}
