//! Who is calling (bearer tokens from `tokens.csv`) and what they may do (a fixed set of roles).
//!
//! The token file is Kubernetes' static token file, reduced to `token,user,role` lines with role
//! `admin`, `viewer` or `node:NODENAME`. Authorization is a small hard-coded policy rather than
//! RBAC objects: admins may do everything, viewers read everything but Secrets (like Kubernetes'
//! `view` role), and a node agent reaches only its own Node, its Lease and the Pods bound to it
//! (like Kubernetes' node authorizer). Denials are worded the way Kubernetes words them, so
//! `kubectl` users see familiar messages.
//!
//! Tokens are secrets: nothing here logs one, and `Debug` on `TokenFile` hides them.

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
    /// a node agent, with the name of its Node
    Node(String),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Viewer => f.write_str("viewer"),
            Role::Node(name) => write!(f, "node:{name}"),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            _ => match s.strip_prefix("node:") {
                Some(name) if valid_name(name) => Ok(Role::Node(name.to_string())),
                Some(name) => Err(format!("node name {name:?} is not a valid name")),
                None => Err(format!(
                    "unknown role {s:?}: use admin, viewer or node:NODENAME"
                )),
            },
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write token file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("invalid token file entry: {reason}")]
    InvalidEntry { reason: String },
    /// Missing, malformed or unknown bearer token; the HTTP layer answers 401.
    #[error("missing or unknown bearer token: send `Authorization: Bearer TOKEN` with a token from tokens.csv")]
    Unauthorized,
}

/// The parsed contents of `tokens.csv`.
pub struct TokenFile {
    entries: Vec<Entry>,
}

struct Entry {
    token: Vec<u8>,
    identity: Identity,
}

impl std::fmt::Debug for TokenFile {
    // Hand-written so that `{:?}` shows who is known but never a token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.identity))
            .finish()
    }
}

impl TokenFile {
    /// Reads `token,user,role` lines; blank lines and lines starting with `#` are skipped.
    pub fn load(path: &Path) -> Result<TokenFile, AuthError> {
        let text = fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TokenFile::parse(path, &text)
    }

    /// Parses the text of a token file; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<TokenFile, AuthError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| AuthError::Parse {
                path: path.to_path_buf(),
                line: index + 1,
                reason,
            };
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [token, user, role] = fields[..] else {
                return Err(err(format!(
                    "expected 3 comma-separated fields `token,user,role`, found {}",
                    fields.len()
                )));
            };
            if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("the token is empty or contains spaces".into()));
            }
            if user.is_empty() {
                return Err(err("the user name is empty".into()));
            }
            let role: Role = role.parse().map_err(err)?;
            // A repeated token would make the identity depend on line order: refuse it.
            if entries.iter().any(|e| e.token == token.as_bytes()) {
                return Err(err(format!(
                    "the token for user {user:?} is already used on an earlier line"
                )));
            }
            entries.push(Entry {
                token: token.as_bytes().to_vec(),
                identity: Identity {
                    user: user.to_string(),
                    role,
                },
            });
        }
        Ok(TokenFile { entries })
    }

    /// Adds a line for `user` with a new random token (32 bytes, hex) and returns the token.
    /// Creates the file with mode 0600 if it does not exist.
    pub fn append(path: &Path, user: &str, role: &Role) -> Result<String, AuthError> {
        use std::os::unix::fs::OpenOptionsExt;
        if user.is_empty() || user.contains([',', '\n', '\r']) || user.starts_with('#') {
            return Err(AuthError::InvalidEntry {
                reason: format!(
                    "user name {user:?} must be non-empty and contain no comma or newline"
                ),
            });
        }
        if let Role::Node(name) = role {
            if !valid_name(name) {
                return Err(AuthError::InvalidEntry {
                    reason: format!("node name {name:?} is not a valid name"),
                });
            }
        }
        let token = new_token();
        let err = |source| AuthError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        // Someone may have edited the file by hand and left out the final newline.
        let len = file.metadata().map_err(err)?.len();
        let mut prefix = "";
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(err)?;
            file.read_exact(&mut last).map_err(err)?;
            if last[0] != b'\n' {
                prefix = "\n";
            }
        }
        file.write_all(format!("{prefix}{token},{user},{role}\n").as_bytes())
            .map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(token)
    }

    /// `Authorization: Bearer TOKEN` -> the identity; missing or unknown -> `Unauthorized`.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Result<Identity, AuthError> {
        let value = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(AuthError::Unauthorized)?;
        let value = value.to_str().map_err(|_| AuthError::Unauthorized)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Unauthorized);
        }
        let token = token.trim().as_bytes();
        if token.is_empty() {
            return Err(AuthError::Unauthorized);
        }
        // Compare with every entry, without stopping at a match, so that the time taken says
        // nothing about which bytes of which token were right.
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.token.as_slice().ct_eq(token)) {
                found = Some(&entry.identity);
            }
        }
        found.cloned().ok_or(AuthError::Unauthorized)
    }

    /// How many identities the file holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a request wants to do, as the HTTP layer understands it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attributes<'a> {
    /// get list watch create update patch delete deletecollection
    pub verb: &'a str,
    /// API group, "" for the core group
    pub group: &'a str,
    /// plural resource name
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// the object's name; for create, the name in the body; for list/watch, the name a
    /// `metadata.name=` fieldSelector pins, if any (node agents may list only their own Node)
    pub name: Option<&'a str>,
    /// for pods: the spec.nodeName of the object concerned (existing object, or the one being
    /// written), if known
    pub pod_node: Option<&'a str>,
    /// for list/watch: the `spec.nodeName` the request's fieldSelector pins, if any
    pub field_node: Option<&'a str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// the reason, worded as Kubernetes words it: `User "viewer" cannot create resource
    /// "deployments" in API group "apps" in the namespace "default"`
    Deny(String),
}

/// Decides whether `id` may do what `attrs` describes.
pub fn authorize(id: &Identity, attrs: &Attributes) -> Decision {
    let verdict = match &id.role {
        Role::Admin => Ok(()),
        Role::Viewer => viewer(attrs),
        Role::Node(node) => node_agent(node, attrs),
    };
    match verdict {
        Ok(()) => Decision::Allow,
        Err(reason) => Decision::Deny(deny_message(&id.user, attrs, reason)),
    }
}

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

/// Subresources that act on a running container rather than read an object; Kubernetes' view
/// role leaves them out.
const ACTION_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// `Err(Some(reason))` adds an explanation to the Kubernetes-style message; `Err(None)` does not.
type Verdict = Result<(), Option<&'static str>>;

fn viewer(a: &Attributes) -> Verdict {
    let reads = READ_VERBS.contains(&a.verb);
    let secret = a.group.is_empty() && a.resource == "secrets";
    let action = a
        .subresource
        .is_some_and(|s| ACTION_SUBRESOURCES.contains(&s));
    if reads && !secret && !action {
        Ok(())
    } else {
        Err(None)
    }
}

fn node_agent(node: &str, a: &Attributes) -> Verdict {
    let own = |name: Option<&str>| name == Some(node);
    match (a.group, a.resource) {
        ("", "nodes") => {
            let verbs = ["get", "list", "watch", "create", "update", "patch"];
            if !verbs.contains(&a.verb) || !matches!(a.subresource, None | Some("status")) {
                return Err(None);
            }
            if !own(a.name) {
                return Err(Some("a node may only access its own Node object"));
            }
            Ok(())
        }
        ("coordination.k8s.io", "leases") => {
            if !["get", "create", "update", "patch"].contains(&a.verb) || a.subresource.is_some() {
                return Err(None);
            }
            if a.namespace != Some("kube-node-lease") || !own(a.name) {
                return Err(Some(
                    "a node may only access its own Lease in namespace kube-node-lease",
                ));
            }
            Ok(())
        }
        ("", "pods") => {
            let allowed = match (a.verb, a.subresource) {
                ("get" | "delete", None) => own(a.pod_node),
                ("update" | "patch", Some("status")) => own(a.pod_node),
                ("list" | "watch", None) => {
                    if own(a.field_node) {
                        return Ok(());
                    }
                    return Err(Some(
                        "a node may only list pods with fieldSelector spec.nodeName=<its own name>",
                    ));
                }
                _ => return Err(None),
            };
            if allowed {
                Ok(())
            } else {
                Err(Some("no relationship found between the node and this pod"))
            }
        }
        _ => Err(None),
    }
}

fn deny_message(user: &str, a: &Attributes, reason: Option<&str>) -> String {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{}", a.resource, sub),
        None => a.resource.to_string(),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    let mut message = format!(
        "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        a.verb, a.group
    );
    if let Some(reason) = reason {
        message.push_str(": ");
        message.push_str(reason);
    }
    message
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG seeded from the operating system.
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A DNS-1123 subdomain, as Kubernetes requires for Node names.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Admin, Role::Viewer, Role::Node("n1.example".into())] {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("node:".parse::<Role>().is_err());
        assert!("node:Bad_Name".parse::<Role>().is_err());
    }

    #[test]
    fn parse_good_file() {
        let text =
            "# comment\n\nabc,alice,admin\n def , bob , viewer \nghi,system:node:n1,node:n1\n";
        let f = TokenFile::parse(Path::new("t.csv"), text).unwrap();
        assert_eq!(f.len(), 3);
        let id = f.authenticate(&headers("Bearer def")).unwrap();
        assert_eq!(
            id,
            Identity {
                user: "bob".into(),
                role: Role::Viewer
            }
        );
        let id = f.authenticate(&headers("bearer ghi")).unwrap();
        assert_eq!(id.role, Role::Node("n1".into()));
        assert!(!format!("{f:?}").contains("abc"));
    }

    #[test]
    fn parse_bad_lines_name_file_and_line() {
        let check = |text: &str, line: usize, needle: &str| {
            let err = TokenFile::parse(Path::new("/x/tokens.csv"), text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("/x/tokens.csv:{line}: ")), "{msg}");
            assert!(msg.contains(needle), "{msg} should mention {needle}");
        };
        check("a,b,admin\nonly,two\n", 2, "3 comma-separated fields");
        check("# c\na,b,admin,extra\n", 2, "found 4");
        check("a,b,root\n", 1, "unknown role");
        check(",b,admin\n", 1, "token is empty");
        check("a,,admin\n", 1, "user name is empty");
        check("a,b,node:\n", 1, "not a valid name");
        check("a,b,admin\na,c,viewer\n", 2, "already used");
    }

    #[test]
    fn authenticate_refuses_missing_and_unknown() {
        let f = TokenFile::parse(Path::new("t"), "abc,alice,admin\n").unwrap();
        for value in [
            "Bearer abd",
            "Bearer ab",
            "Bearer abcd",
            "Basic abc",
            "Bearer ",
            "abc",
        ] {
            assert!(
                matches!(
                    f.authenticate(&headers(value)),
                    Err(AuthError::Unauthorized)
                ),
                "{value}"
            );
        }
        assert!(matches!(
            f.authenticate(&http::HeaderMap::new()),
            Err(AuthError::Unauthorized)
        ));
    }

    #[test]
    fn append_adds_lines_that_load_back() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tokens.csv");
        let a = TokenFile::append(&path, "admin", &Role::Admin).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A hand edit without a final newline must not glue two lines together.
        let mut text = fs::read_to_string(&path).unwrap();
        text.push_str("# edited by hand");
        fs::write(&path, text).unwrap();
        let n = TokenFile::append(&path, "system:node:n1", &Role::Node("n1".into())).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, n);
        let f = TokenFile::load(&path).unwrap();
        assert_eq!(
            f.authenticate(&headers(&format!("Bearer {a}")))
                .unwrap()
                .role,
            Role::Admin
        );
        assert_eq!(
            f.authenticate(&headers(&format!("Bearer {n}")))
                .unwrap()
                .role,
            Role::Node("n1".into())
        );
        assert!(TokenFile::append(&path, "a,b", &Role::Viewer).is_err());
        assert!(TokenFile::append(&path, "x", &Role::Node("BAD".into())).is_err());
    }

    #[test]
    fn load_missing_file_names_it() {
        let err = TokenFile::load(Path::new("/nonexistent/tokens.csv")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokens.csv"));
    }
}
