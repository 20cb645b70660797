//! Image references (`busybox`, `localhost:5000/team/app:v1`, `alpine@sha256:...`), parsed and
//! normalised the way docker does, so a name a user types means what it means to `docker`.
//!
//! The grammar is docker's distribution/reference one, written by hand because it is small and a
//! regex crate for a handful of character classes is not worth it:
//! `[domain/]path-component[/path-component...][:tag][@algorithm:hex]`.
//! A name without a domain lives on `docker.io`; a one-component name there is under `library/`;
//! a name with neither tag nor digest means `:latest`.

use std::fmt;
use std::str::FromStr;

/// The registry of names that carry no domain, as docker spells it in full names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag a reference gets when it names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed and normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `ghcr.io`, ...
    pub registry: String,
    /// The path inside the registry, e.g. `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>` (a manifest digest).
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: the reference is empty")]
    Empty,
    #[error("invalid reference format: repository name {0:?} must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: {0:?} is not a valid image reference")]
    Invalid(String),
    #[error(
        "invalid repository name ({0}), cannot specify 64-byte hexadecimal strings: use the image id instead"
    )]
    HexName(String),
    #[error(
        "invalid reference format: tag {tag:?} of {reference:?} must be 1 to 128 of [A-Za-z0-9_.-], not starting with . or -"
    )]
    Tag { reference: String, tag: String },
    #[error(
        "invalid reference format: digest {digest:?} of {reference:?} must be sha256: and 64 lower-case hex digits"
    )]
    Digest { reference: String, digest: String },
    #[error("invalid reference format: repository name of {0:?} is longer than 255 characters")]
    TooLong(String),
}

impl Reference {
    /// Parses and normalises a reference as `docker pull` does.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let invalid = || ReferenceError::Invalid(s.to_owned());
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                if !is_valid_digest(digest) {
                    return Err(ReferenceError::Digest {
                        reference: s.to_owned(),
                        digest: digest.to_owned(),
                    });
                }
                (rest, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that has no '/' after it (a ':' before a '/' is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: s.to_owned(),
                    tag: tag.to_owned(),
                });
            }
        }
        if name.is_empty() {
            return Err(invalid());
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName(name.to_owned()));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, path)
            }
            _ => (DEFAULT_REGISTRY, name),
        };
        if registry != DEFAULT_REGISTRY && !is_valid_domain(registry) {
            return Err(invalid());
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(name.to_owned()));
        }
        if !path.split('/').all(is_valid_path_component) {
            return Err(invalid());
        }
        let registry = if registry == "index.docker.io" {
            DEFAULT_REGISTRY
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(ReferenceError::TooLong(s.to_owned()));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// The full normalised name, e.g. `docker.io/library/busybox:latest`.
    pub fn full_name(&self) -> String {
        let mut out = format!("{}/{}", self.registry, self.repository);
        self.push_suffix(&mut out);
        out
    }

    /// The name as docker prints it, e.g. `busybox:latest` or `localhost:5000/a/b:v1`.
    pub fn familiar(&self) -> String {
        let mut out = self.familiar_repository();
        self.push_suffix(&mut out);
        out
    }

    /// `registry/repository` without tag or digest, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The repository as docker prints it in `docker images`, e.g. `busybox`.
    pub fn familiar_repository(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(short) if !short.contains('/') => short.to_owned(),
                _ => self.repository.clone(),
            }
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())
    }
}

/// `sha256:` followed by 64 lower-case hex digits.
pub fn is_valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: one '.', one or two '_', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let run = &component[start..i];
        let ok = run == "." || run == "_" || run == "__" || run.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A host name (labels of `[A-Za-z0-9-]`, not starting or ending with '-'), or an IPv6 literal
/// in brackets, with an optional `:port`.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, tail)) => {
                if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                    return false;
                }
                match tail.strip_prefix(':') {
                    Some(port) => ("", Some(port)),
                    None if tail.is_empty() => ("", None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match domain.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let with_digest = format!("alpine@{D}");
        let with_both = format!("localhost:5000/a/b:v1@{D}");
        let cases: Vec<(&str, String, String)> = vec![
            (
                "busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36".into(),
                "busybox:1.36".into(),
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest".into(),
                "busybox:latest".into(),
            ),
            (
                "index.docker.io/library/busybox:x",
                "docker.io/library/busybox:x".into(),
                "busybox:x".into(),
            ),
            (
                "user/app",
                "docker.io/user/app:latest".into(),
                "user/app:latest".into(),
            ),
            (
                "localhost/app",
                "localhost/app:latest".into(),
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/a/b",
                "localhost:5000/a/b:latest".into(),
                "localhost:5000/a/b:latest".into(),
            ),
            (
                "ghcr.io/o/r-x__y.z:V_1.0-rc",
                "ghcr.io/o/r-x__y.z:V_1.0-rc".into(),
                "ghcr.io/o/r-x__y.z:V_1.0-rc".into(),
            ),
            (
                "[::1]:5000/app:1",
                "[::1]:5000/app:1".into(),
                "[::1]:5000/app:1".into(),
            ),
            (
                &with_digest,
                format!("docker.io/library/alpine@{D}"),
                format!("alpine@{D}"),
            ),
            (
                &with_both,
                format!("localhost:5000/a/b:v1@{D}"),
                format!("localhost:5000/a/b:v1@{D}"),
            ),
        ];
        for (input, full, familiar) in cases {
            let reference = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(reference.full_name(), full, "{input}");
            assert_eq!(reference.to_string(), full, "{input}");
            assert_eq!(reference.familiar(), familiar, "{input}");
            // The full name is a fixed point.
            assert_eq!(Reference::parse(&full).unwrap(), reference, "{input}");
        }
        let r = Reference::parse("localhost:5000/a/b:v1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.familiar_repository(), "localhost:5000/a/b");
    }

    #[test]
    fn refuses_bad_references() {
        let long = format!("a/{}", "b".repeat(260));
        let hex = "a".repeat(64);
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("user/App", "lowercase"),
            ("busybox:", "tag"),
            ("busybox:-x", "tag"),
            ("busybox:a/b", "not a valid"),
            ("busybox@sha256:abc", "digest"),
            ("busybox@md5:0123", "digest"),
            ("-busybox", "not a valid"),
            ("bus..box", "not a valid"),
            ("bus___box", "not a valid"),
            ("a//b", "not a valid"),
            ("a/b/", "not a valid"),
            ("exa mple", "not a valid"),
            ("-bad.io/x", "not a valid"),
            ("host:port/x", "not a valid"),
            (":tag", "not a valid"),
            (&long, "longer than 255"),
            (&hex, "64-byte hexadecimal"),
        ];
        for (input, expected) in cases {
            match Reference::parse(input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => assert!(e.to_string().contains(expected), "{input:?}: {e}"),
            }
        }
    }
}
