//! Who is calling (bearer tokens from `tokens.csv`) and what they may do (a fixed set of roles).
//!
//! The token file is Kubernetes' static token file, reduced to `token,user,role` lines with role
//! `admin`, `viewer`, `bootstrap` or `node:NODENAME`. Node agents that joined with a bootstrap
//! token hold a token that is not in the file but in the store (a Secret holding its SHA-256, see
//! [`NodeTokens`]), so that every replica knows it. Authorization is a small hard-coded policy
//! rather than RBAC objects: admins may do everything, viewers read everything but Secrets (like
//! Kubernetes' `view` role), bootstrap tokens may only join, and a node agent reaches its own
//! Node, its Lease, the Pods bound to it and what those Pods reference (like Kubernetes' node
//! authorizer). Denials are worded the way Kubernetes words them, so `kubectl` users see familiar
//! messages.
//!
//! Tokens are secrets: nothing here logs one, and `Debug` on `TokenFile` hides them.

use std::fs::{self, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use rand::RngCore as _;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Viewer,
    /// may only join a node (POST /flotilla/v1/join), which hands out a node credential
    Bootstrap,
    /// a node agent, with the name of its Node
    Node(String),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Viewer => f.write_str("viewer"),
            Role::Bootstrap => f.write_str("bootstrap"),
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
            "bootstrap" => Ok(Role::Bootstrap),
            _ => match s.strip_prefix("node:") {
                Some(name) if valid_name(name) => Ok(Role::Node(name.to_string())),
                Some(name) => Err(format!("node name {name:?} is not a valid name")),
                None => Err(format!(
                    "unknown role {s:?}: use admin, viewer, bootstrap or node:NODENAME"
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
        let token = bearer_token(headers)?;
        self.authenticate_token(token)
    }

    /// The identity of a bare token (the bytes after `Bearer `).
    pub fn authenticate_token(&self, token: &[u8]) -> Result<Identity, AuthError> {
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

/// The token of an `Authorization: Bearer TOKEN` header; missing or malformed -> `Unauthorized`.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&[u8], AuthError> {
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
    Ok(token)
}

/// The namespace and `type` of the Secrets that hold joined nodes' token hashes.
pub const NODE_TOKEN_NAMESPACE: &str = "kube-system";
pub const NODE_TOKEN_SECRET_TYPE: &str = "flotilla.io/node-token";
/// Node `N`'s Secret is `node-token-N`.
pub const NODE_TOKEN_SECRET_PREFIX: &str = "node-token-";

/// The node tokens handed out by joins, by the SHA-256 of the token. Only hashes are kept, here
/// and in the store, so a leaked Secret or snapshot does not leak a usable credential. The HTTP
/// layer keeps it in step with the store's Secrets (see `http::watch_node_tokens`).
#[derive(Default)]
pub struct NodeTokens {
    by_hash: std::sync::RwLock<HashMap<[u8; 32], String>>,
}

impl std::fmt::Debug for NodeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTokens").field("count", &self.len()).finish()
    }
}

impl NodeTokens {
    /// Replaces the whole set with the node tokens found among `secrets` (Secret objects as
    /// JSON); Secrets of another type, or whose name and node do not agree, are skipped.
    pub fn replace_from<'a>(&self, secrets: impl IntoIterator<Item = &'a serde_json::Value>) {
        let map: HashMap<[u8; 32], String> =
            secrets.into_iter().filter_map(node_token_of_secret).collect();
        match self.by_hash.write() {
            Ok(mut g) => *g = map,
            Err(poisoned) => *poisoned.into_inner() = map,
        }
    }

    /// The identity of a node token, or `Unauthorized`.
    pub fn authenticate_token(&self, token: &[u8]) -> Result<Identity, AuthError> {
        let hash: [u8; 32] = sha2::Sha256::digest(token).into();
        let guard = match self.by_hash.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard
            .get(&hash)
            .map(|node| node_identity(node))
            .ok_or(AuthError::Unauthorized)
    }

    pub fn len(&self) -> usize {
        match self.by_hash.read() {
            Ok(g) => g.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `token` has the shape of the tokens joins hand out (64 lower-case hex digits), so
/// that only such tokens make a replica catch up with the store before refusing them.
pub fn looks_like_node_token(token: &[u8]) -> bool {
    token.len() == 64 && token.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// The identity a node agent has: user `system:node:N`, role `node:N`.
pub fn node_identity(node: &str) -> Identity {
    Identity {
        user: format!("system:node:{node}"),
        role: Role::Node(node.to_string()),
    }
}

/// A new node token and the Secret that records it for `node` (its SHA-256 and the node name,
/// base64 in `data` as Secrets keep them).
pub fn new_node_token(node: &str) -> (String, serde_json::Value) {
    use base64::Engine as _;
    let token = new_token();
    let hash = hex(&sha2::Sha256::digest(token.as_bytes()));
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{NODE_TOKEN_SECRET_PREFIX}{node}"),
            "namespace": NODE_TOKEN_NAMESPACE,
            "labels": { "flotilla.io/node": node },
        },
        "type": NODE_TOKEN_SECRET_TYPE,
        "data": { "tokenSha256": b64(&hash), "nodeName": b64(node) },
    });
    (token, secret)
}

/// (hash, node) of a node-token Secret, or None when it is not a well-formed one.
fn node_token_of_secret(secret: &serde_json::Value) -> Option<([u8; 32], String)> {
    use base64::Engine as _;
    if secret.get("type").and_then(serde_json::Value::as_str) != Some(NODE_TOKEN_SECRET_TYPE) {
        return None;
    }
    let meta = secret.get("metadata")?;
    if meta.get("namespace").and_then(serde_json::Value::as_str) != Some(NODE_TOKEN_NAMESPACE) {
        return None;
    }
    let data = |key: &str| {
        let v = secret.pointer(&format!("/data/{key}"))?.as_str()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
        String::from_utf8(bytes).ok()
    };
    let node = data("nodeName")?;
    let name = meta.get("name").and_then(serde_json::Value::as_str)?;
    // The Secret's name says which node it is for; one whose data names another node was not
    // written by a join and is ignored rather than trusted.
    if name.strip_prefix(NODE_TOKEN_SECRET_PREFIX) != Some(node.as_str()) || !valid_name(&node) {
        return None;
    }
    let hash_hex = data("tokenSha256")?;
    let mut hash = [0u8; 32];
    if hash_hex.len() != 64 {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hash_hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((hash, node))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// for a node's get of a ConfigMap or Secret: whether a pod bound to that node references it
    /// (computed from the store by the HTTP layer, see [`pod_references`])
    pub node_references: bool,
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
        // bootstrap tokens reach only the join route, which checks the role itself
        Role::Bootstrap => Err(Some("a bootstrap token may only join a node")),
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
            // every node reads all Nodes (routes to other nodes' pod CIDRs), writes only its own
            if READ_VERBS.contains(&a.verb) && a.subresource.is_none() {
                return Ok(());
            }
            if !own(a.name) {
                return Err(Some("a node may only modify its own Node object"));
            }
            Ok(())
        }
        ("", "services" | "endpoints") => {
            if READ_VERBS.contains(&a.verb) && a.subresource.is_none() {
                Ok(())
            } else {
                Err(None)
            }
        }
        ("", "events") => {
            if ["create", "update", "patch"].contains(&a.verb) && a.subresource.is_none() {
                Ok(())
            } else {
                Err(None)
            }
        }
        ("", "configmaps" | "secrets") => {
            if a.verb != "get" || a.subresource.is_some() {
                return Err(None);
            }
            if a.node_references {
                Ok(())
            } else {
                Err(Some("no relationship found between node and this object"))
            }
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

/// Whether `pod` references the ConfigMap (`kind` "configmaps") or Secret ("secrets") `name` of
/// its own namespace: in volumes (also projected), env `valueFrom`, `envFrom` of any container,
/// init or ephemeral container, or (Secrets) `imagePullSecrets`. These are the edges of
/// Kubernetes' node authorizer graph from a pod to what its node may read.
pub fn pod_references(pod: &serde_json::Value, kind: &str, name: &str) -> bool {
    use serde_json::Value;
    let is = |v: Option<&Value>| v.and_then(Value::as_str) == Some(name);
    let arr = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let Some(spec) = pod.get("spec") else { return false };
    let (vol_key, vol_name, env_key, from_key) = match kind {
        "configmaps" => ("configMap", "name", "configMapKeyRef", "configMapRef"),
        "secrets" => ("secret", "secretName", "secretKeyRef", "secretRef"),
        _ => return false,
    };
    if kind == "secrets" && arr(spec, "imagePullSecrets").iter().any(|s| is(s.get("name"))) {
        return true;
    }
    for vol in arr(spec, "volumes") {
        if is(vol.get(vol_key).and_then(|v| v.get(vol_name))) {
            return true;
        }
        let projected = vol.pointer("/projected/sources").and_then(Value::as_array).cloned().unwrap_or_default();
        // projected sources name both kinds by `name`
        if projected.iter().any(|src| is(src.get(vol_key).and_then(|v| v.get("name")))) {
            return true;
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in arr(spec, list) {
            if arr(&c, "env").iter().any(|e| is(e.pointer(&format!("/valueFrom/{env_key}/name")))) {
                return true;
            }
            if arr(&c, "envFrom").iter().any(|e| is(e.get(from_key).and_then(|v| v.get("name")))) {
                return true;
            }
        }
    }
    false
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
pub fn valid_name(name: &str) -> bool {
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
        for role in [Role::Admin, Role::Viewer, Role::Bootstrap, Role::Node("n1.example".into())] {
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

    fn node(verb: &'static str, resource: &'static str, name: Option<&'static str>) -> Attributes<'static> {
        Attributes { verb, resource, name, ..Default::default() }
    }

    #[test]
    fn node_authorizer_allow_deny_pairs() {
        let n1 = node_identity("n1");
        let allowed = |a: &Attributes| authorize(&n1, a) == Decision::Allow;
        // Nodes: read all, write only its own
        assert!(allowed(&node("get", "nodes", Some("n2"))));
        assert!(allowed(&node("list", "nodes", None)));
        assert!(allowed(&node("watch", "nodes", None)));
        assert!(allowed(&node("update", "nodes", Some("n1"))));
        assert!(!allowed(&node("update", "nodes", Some("n2"))));
        assert!(!allowed(&node("delete", "nodes", Some("n1"))));
        let status = Attributes { subresource: Some("status"), ..node("patch", "nodes", Some("n2")) };
        assert!(!allowed(&status));
        assert!(allowed(&Attributes { name: Some("n1"), ..status }));
        // Services and Endpoints: read only
        for r in ["services", "endpoints"] {
            assert!(allowed(&node("list", r, None)), "{r}");
            assert!(allowed(&node("get", r, Some("x"))), "{r}");
            assert!(!allowed(&node("create", r, Some("x"))), "{r}");
            assert!(!allowed(&node("delete", r, Some("x"))), "{r}");
        }
        // Events: write in any namespace, no reading or deleting
        for v in ["create", "patch", "update"] {
            assert!(allowed(&Attributes { namespace: Some("other"), ..node(v, "events", Some("e")) }), "{v}");
        }
        assert!(!allowed(&node("list", "events", None)));
        assert!(!allowed(&node("delete", "events", Some("e"))));
        // ConfigMaps and Secrets: get only, and only when a pod of the node references them
        for r in ["configmaps", "secrets"] {
            let get = node("get", r, Some("c"));
            assert!(!allowed(&get), "{r}");
            assert!(allowed(&Attributes { node_references: true, ..get }), "{r}");
            assert!(!allowed(&Attributes { node_references: true, ..node("list", r, None) }), "{r}");
            assert!(!allowed(&Attributes { node_references: true, ..node("update", r, Some("c")) }), "{r}");
        }
        // pods/exec and pods/log are the apiserver's business, not a node's
        let exec = Attributes { subresource: Some("exec"), pod_node: Some("n1"), ..node("create", "pods", Some("p")) };
        assert!(!allowed(&exec));
        // everything else stays denied
        assert!(!allowed(&Attributes { group: "apps", ..node("list", "deployments", None) }));
    }

    #[test]
    fn bootstrap_tokens_may_do_nothing_through_resources() {
        let b = Identity { user: "bootstrap".into(), role: Role::Bootstrap };
        for a in [node("get", "nodes", Some("n1")), node("list", "pods", None), node("create", "secrets", Some("s"))] {
            assert!(matches!(authorize(&b, &a), Decision::Deny(m) if m.contains("bootstrap")));
        }
    }

    #[test]
    fn pod_references_follow_every_edge() {
        let pod = serde_json::json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-vol"}},
                {"name": "b", "secret": {"secretName": "sec-vol"}},
                {"name": "c", "projected": {"sources": [{"configMap": {"name": "cm-proj"}}, {"secret": {"name": "sec-proj"}}]}},
            ],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "sec-from"}}]}],
            "containers": [{"name": "c", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "sec-env", "key": "k"}}},
            ], "envFrom": [{"configMapRef": {"name": "cm-from"}}]}],
        }});
        for name in ["cm-vol", "cm-proj", "cm-env", "cm-from"] {
            assert!(pod_references(&pod, "configmaps", name), "{name}");
            assert!(!pod_references(&pod, "secrets", name), "{name}");
        }
        for name in ["pull", "sec-vol", "sec-proj", "sec-env", "sec-from"] {
            assert!(pod_references(&pod, "secrets", name), "{name}");
            assert!(!pod_references(&pod, "configmaps", name), "{name}");
        }
        assert!(!pod_references(&pod, "secrets", "other"));
        assert!(!pod_references(&pod, "pods", "pull"));
        assert!(!pod_references(&serde_json::json!({}), "secrets", "pull"));
    }

    #[test]
    fn node_tokens_from_secrets() {
        let (token, secret) = new_node_token("n1");
        let tokens = NodeTokens::default();
        tokens.replace_from([&secret]);
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.authenticate_token(token.as_bytes()).unwrap(), node_identity("n1"));
        assert!(tokens.authenticate_token(b"wrong").is_err());
        // a Secret whose name and node disagree, or of another type, is not trusted
        let mut renamed = secret.clone();
        renamed["metadata"]["name"] = serde_json::json!("node-token-n2");
        let mut retyped = secret.clone();
        retyped["type"] = serde_json::json!("Opaque");
        let mut elsewhere = secret.clone();
        elsewhere["metadata"]["namespace"] = serde_json::json!("default");
        tokens.replace_from([&renamed, &retyped, &elsewhere]);
        assert!(tokens.is_empty());
        assert!(tokens.authenticate_token(token.as_bytes()).is_err());
        // the Secret holds no usable credential
        assert!(!secret.to_string().contains(&token));
    }
}
