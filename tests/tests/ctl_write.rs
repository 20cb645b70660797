//! `ctl`'s write verbs against real apiserver processes: apply (create, configure, unchanged,
//! removal of fields, turns with kubectl), create, replace, delete, scale, set image, rollout,
//! cordon/uncordon/drain, label/annotate and config; each error path next to its good path.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tests::Cluster;

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    tier: front
spec:
  replicas: 2
  minReadySeconds: 5
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        args: [\"sleep\", \"3600\"]
";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs ctl and checks it succeeded; returns its standard output.
fn ok(c: &Cluster, args: &[&str]) -> String {
    let o = c
        .ctl(args)
        .unwrap_or_else(|e| panic!("running ctl {args:?}: {e}"));
    assert!(
        o.status.success(),
        "ctl {args:?} failed:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs ctl and checks it failed with exit status 1; returns its standard error.
fn fails(c: &Cluster, args: &[&str]) -> String {
    let o = c
        .ctl(args)
        .unwrap_or_else(|e| panic!("running ctl {args:?}: {e}"));
    assert_eq!(
        o.status.code(),
        Some(1),
        "ctl {args:?} should fail:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    stderr(&o)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.display().to_string()
}

/// The object as JSON, through ctl's own client path (a raw GET with the admin token).
async fn get(c: &Cluster, path: &str) -> Option<Value> {
    let resp = c.http().ok()?.get(c.url(1, path)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

async fn wait_for_default_namespace(c: &Cluster) {
    for _ in 0..100 {
        if get(c, "/api/v1/namespaces/default").await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("namespace default never appeared");
}

const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/default/deployments/web";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_create_replace_and_their_errors() {
    let c = Cluster::up(1).expect("cluster up");
    wait_for_default_namespace(&c).await;
    let dir = c.dir().join("manifests");
    let web = write(&dir, "web.yaml", DEPLOYMENT);

    // missing file, bad YAML with its line, unknown kind, unknown field
    let err = fails(&c, &["apply", "-f", "x.yaml"]);
    assert_eq!(err.trim(), "error: the path \"x.yaml\" does not exist");
    let bad = write(
        &dir,
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   data: [\n",
    );
    let err = fails(&c, &["apply", "-f", &bad]);
    assert!(
        err.starts_with(&format!("error: error parsing {bad}: line 5: ")),
        "{err}"
    );
    let widget = write(
        &dir,
        "widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    let err = fails(&c, &["apply", "-f", &widget]);
    assert!(
        err.starts_with(&format!("error: resource mapping not found for name: \"w\" namespace: \"\" from \"{widget}\": no matches for kind \"Widget\" in version \"example.com/v1\"")),
        "{err}"
    );
    let typo = write(
        &dir,
        "typo.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replcas: 2"),
    );
    let err = fails(&c, &["apply", "-f", &typo]);
    assert!(
        err.contains("Error from server (BadRequest): error when creating")
            && err.contains("spec.replcas"),
        "{err}"
    );
    assert!(
        get(&c, DEPLOY_PATH).await.is_none(),
        "a refused apply left an object behind"
    );

    // unreachable server: a clear message naming the address
    let err = fails(
        &c,
        &["--server", "https://127.0.0.1:1", "apply", "-f", &web],
    );
    assert!(
        err.starts_with("error: unable to connect to the server: https://127.0.0.1:1"),
        "{err}"
    );

    // dry runs change nothing
    let out = ok(&c, &["apply", "-f", &web, "--dry-run=server"]);
    assert_eq!(out, "deployment.apps/web created (server dry run)\n");
    let out = ok(&c, &["apply", "-f", &web, "--dry-run=client", "-o", "name"]);
    assert_eq!(out, "deployment.apps/web\n");
    assert!(
        get(&c, DEPLOY_PATH).await.is_none(),
        "a dry run created the object"
    );

    // created -> unchanged -> configured (with a field removed) -> unchanged
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web created\n"
    );
    let live = get(&c, DEPLOY_PATH).await.expect("created");
    let saved = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied");
    let saved: Value = serde_json::from_str(saved).expect("last-applied is JSON");
    assert_eq!(saved["spec"]["minReadySeconds"], 5);
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web unchanged\n"
    );
    let edited = DEPLOYMENT
        .replace("  minReadySeconds: 5\n", "")
        .replace("    tier: front\n", "")
        .replace("replicas: 2", "replicas: 3")
        .replace("        args: [\"sleep\", \"3600\"]\n", "");
    write(&dir, "web.yaml", &edited);
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web configured\n"
    );
    let live = get(&c, DEPLOY_PATH).await.expect("still there");
    assert_eq!(live["spec"]["replicas"], 3);
    assert!(
        live["spec"].get("minReadySeconds").is_none_or(|v| v == 0),
        "{}",
        live["spec"]
    );
    assert!(
        live["metadata"]["labels"].get("tier").is_none(),
        "{}",
        live["metadata"]
    );
    assert!(
        live["spec"]["template"]["spec"]["containers"][0]
            .get("args")
            .is_none(),
        "{}",
        live["spec"]
    );
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web unchanged\n"
    );
    let yaml = ok(&c, &["apply", "-f", &web, "-o", "yaml"]);
    let y: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("-o yaml is YAML");
    assert_eq!(y["spec"]["replicas"], serde_yaml::Value::from(3));

    // standard input, JSON
    let mut child = Command::new(tests::binary("ctl").expect("ctl built"))
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ctl");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-stdin"}, "data": {"k": "v"}});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cm.to_string().as_bytes())
        .expect("write stdin");
    let o = child.wait_with_output().expect("ctl ran");
    assert_eq!(
        stdout(&o),
        "configmap/from-stdin created\n",
        "{}",
        stderr(&o)
    );

    // create refuses an existing object; replace needs one and refuses a stale resourceVersion
    let err = fails(&c, &["create", "-f", &web]);
    assert!(
        err.starts_with(&format!(
            "Error from server (AlreadyExists): error when creating \"{web}\": "
        )),
        "{err}"
    );
    let other = write(
        &dir,
        "other.yaml",
        &edited.replace("name: web\n", "name: other\n"),
    );
    let err = fails(&c, &["replace", "-f", &other]);
    assert!(
        err.starts_with(&format!(
            "Error from server (NotFound): error when replacing \"{other}\": "
        )),
        "{err}"
    );
    assert_eq!(
        ok(&c, &["create", "-f", &other]),
        "deployment.apps/other created\n"
    );
    let live = get(&c, "/apis/apps/v1/namespaces/default/deployments/other")
        .await
        .expect("other");
    let mut stale = live.clone();
    stale["spec"]["replicas"] = json!(4);
    let stale_path = write(&dir, "stale.json", &stale.to_string());
    assert_eq!(
        ok(&c, &["replace", "-f", &stale_path]),
        "deployment.apps/other replaced\n"
    );
    let err = fails(&c, &["replace", "-f", &stale_path]);
    assert!(
        err.starts_with("Error from server (Conflict): error when replacing"),
        "{err}"
    );
    assert!(err.contains("the object has been modified"), "{err}");

    // delete: not found, --ignore-not-found, by file, by label
    let err = fails(&c, &["delete", "deploy", "nope"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): deployments.apps \"nope\" not found"
    );
    assert_eq!(
        ok(&c, &["delete", "deploy", "nope", "--ignore-not-found"]),
        ""
    );
    assert_eq!(
        ok(&c, &["delete", "-f", &other]),
        "deployment.apps \"other\" deleted\n"
    );
    let err = fails(&c, &["delete", "-f", &other]);
    assert!(
        err.starts_with(&format!(
            "Error from server (NotFound): error when deleting \"{other}\""
        )),
        "{err}"
    );
    for name in ["a", "b", "keep"] {
        let label = if name == "keep" { "other" } else { "batch" };
        let cm = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    group: {label}\n");
        let path = write(&dir, &format!("cm-{name}.yaml"), &cm);
        ok(&c, &["create", "-f", &path]);
    }
    let out = ok(&c, &["delete", "cm", "-l", "group=batch"]);
    assert_eq!(out, "configmap \"a\" deleted\nconfigmap \"b\" deleted\n");
    assert!(get(&c, "/api/v1/namespaces/default/configmaps/a")
        .await
        .is_none());
    assert!(get(&c, "/api/v1/namespaces/default/configmaps/keep")
        .await
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_set_image_rollout_label_and_nodes() {
    let c = Cluster::up(1).expect("cluster up");
    wait_for_default_namespace(&c).await;
    let dir = c.dir().join("manifests");
    let web = write(&dir, "web.yaml", DEPLOYMENT);
    ok(&c, &["apply", "-f", &web]);

    // scale, with and without a precondition
    assert_eq!(
        ok(&c, &["scale", "deploy/web", "--replicas=4"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        get(&c, DEPLOY_PATH).await.expect("web")["spec"]["replicas"],
        4
    );
    let err = fails(
        &c,
        &[
            "scale",
            "deploy/web",
            "--replicas=1",
            "--current-replicas=2",
        ],
    );
    assert_eq!(err.trim(), "error: Expected replicas to be 2, was 4");
    assert_eq!(
        ok(
            &c,
            &[
                "scale",
                "deployment",
                "web",
                "--replicas=1",
                "--current-replicas=4"
            ]
        ),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        get(&c, DEPLOY_PATH).await.expect("web")["spec"]["replicas"],
        1
    );
    let err = fails(&c, &["scale", "deploy/nope", "--replicas=1"]);
    assert!(err.contains("(NotFound)"), "{err}");

    // set image: the container keeps its other fields
    assert_eq!(
        ok(&c, &["set", "image", "deploy/web", "web=busybox:1.37"]),
        "deployment.apps/web image updated\n"
    );
    let live = get(&c, DEPLOY_PATH).await.expect("web");
    let container = &live["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1.37");
    assert_eq!(container["args"], json!(["sleep", "3600"]));
    let err = fails(&c, &["set", "image", "deploy/web", "nope=busybox:1"]);
    assert_eq!(err.trim(), "error: unable to find container named \"nope\"");

    // rollout restart / pause / resume / status
    assert_eq!(
        ok(&c, &["rollout", "restart", "deploy/web"]),
        "deployment.apps/web restarted\n"
    );
    let live = get(&c, DEPLOY_PATH).await.expect("web");
    assert!(live["spec"]["template"]["metadata"]["annotations"]
        ["kubectl.kubernetes.io/restartedAt"]
        .is_string());
    assert_eq!(
        ok(&c, &["rollout", "pause", "deploy/web"]),
        "deployment.apps/web paused\n"
    );
    let err = fails(&c, &["rollout", "pause", "deploy/web"]);
    assert_eq!(
        err.trim(),
        "error: deployments.apps \"web\" is already paused"
    );
    assert_eq!(
        ok(&c, &["rollout", "resume", "deploy/web"]),
        "deployment.apps/web resumed\n"
    );
    let o = c
        .ctl(&["rollout", "status", "deploy/web", "--timeout=1s"])
        .expect("ctl ran");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: timed out waiting for the condition"
    );
    assert!(
        stdout(&o).starts_with("Waiting for deployment"),
        "{}",
        stdout(&o)
    );
    // No Deployment controller runs in this test: write the status it would write.
    let generation = get(&c, DEPLOY_PATH).await.expect("web")["metadata"]["generation"].clone();
    let status = json!({"status": {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}});
    let resp = c
        .http()
        .expect("http")
        .patch(c.url(1, &format!("{DEPLOY_PATH}/status")))
        .header("content-type", "application/merge-patch+json")
        .body(status.to_string())
        .send()
        .await
        .expect("patch status");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().await.unwrap_or_default()
    );
    assert_eq!(
        ok(&c, &["rollout", "status", "deploy/web", "--timeout=10s"]),
        "deployment \"web\" successfully rolled out\n"
    );

    // label and annotate, with the --overwrite refusal
    assert_eq!(
        ok(&c, &["label", "deploy", "web", "env=prod"]),
        "deployment.apps/web labeled\n"
    );
    let err = fails(&c, &["label", "deploy/web", "env=dev"]);
    assert_eq!(
        err.trim(),
        "error: 'env' already has a value (prod), and --overwrite is false"
    );
    assert_eq!(
        ok(&c, &["label", "deploy/web", "env=dev", "--overwrite"]),
        "deployment.apps/web labeled\n"
    );
    assert_eq!(
        ok(&c, &["label", "deploy/web", "env-"]),
        "deployment.apps/web unlabeled\n"
    );
    assert!(
        get(&c, DEPLOY_PATH).await.expect("web")["metadata"]["labels"]
            .get("env")
            .is_none()
    );
    assert_eq!(
        ok(&c, &["annotate", "deploy/web", "owner=team-a"]),
        "deployment.apps/web annotated\n"
    );
    let err = fails(&c, &["annotate", "deploy/web", "owner=team-b"]);
    assert!(
        err.contains("'owner' already has a value (team-a), and --overwrite is false"),
        "{err}"
    );
    let err = fails(&c, &["label", "widgets", "x", "a=b"]);
    assert_eq!(
        err.trim(),
        "error: the server doesn't have a resource type \"widgets\""
    );

    // cordon, uncordon and drain a node with pods bound to it
    let node = write(
        &dir,
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    assert_eq!(ok(&c, &["create", "-f", &node]), "node/n1 created\n");
    assert_eq!(ok(&c, &["cordon", "n1"]), "node/n1 cordoned\n");
    assert_eq!(
        get(&c, "/api/v1/nodes/n1").await.expect("n1")["spec"]["unschedulable"],
        true
    );
    assert_eq!(ok(&c, &["cordon", "n1"]), "node/n1 already cordoned\n");
    assert_eq!(ok(&c, &["uncordon", "n1"]), "node/n1 uncordoned\n");
    assert!(get(&c, "/api/v1/nodes/n1").await.expect("n1")["spec"]
        .get("unschedulable")
        .is_none_or(|v| v == false));
    let err = fails(&c, &["cordon", "n9"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): nodes \"n9\" not found"
    );
    let pods = "\
apiVersion: v1
kind: Pod
metadata:
  name: bare
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox:1.36
---
apiVersion: v1
kind: Pod
metadata:
  name: managed
  ownerReferences:
  - apiVersion: apps/v1
    kind: ReplicaSet
    name: web-1
    uid: 00000000-0000-0000-0000-000000000001
    controller: true
spec:
  nodeName: n1
  containers:
  - name: c
    image: busybox:1.36
";
    let pods = write(&dir, "pods.yaml", pods);
    ok(&c, &["create", "-f", &pods]);
    let o = c
        .ctl(&["drain", "n1", "--grace-period=0", "--timeout=20s"])
        .expect("ctl ran");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stderr(&o).trim(),
        "error: unable to drain node \"n1\" due to error: cannot delete Pods that declare no controller (use --force to override): default/bare"
    );
    assert!(
        get(&c, "/api/v1/namespaces/default/pods/managed")
            .await
            .is_some(),
        "a refused drain deleted a pod"
    );
    let out = ok(
        &c,
        &[
            "drain",
            "n1",
            "--grace-period=0",
            "--timeout=20s",
            "--force",
        ],
    );
    assert!(out.starts_with("node/n1 already cordoned\n"), "{out}");
    assert!(
        out.contains("pod/bare deleted\n") && out.contains("pod/managed deleted\n"),
        "{out}"
    );
    assert!(out.ends_with("node/n1 drained\n"), "{out}");
    assert!(get(&c, "/api/v1/namespaces/default/pods/bare")
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_first_and_turns_with_kubectl_on_three_replicas() {
    let c = Cluster::up(3).expect("cluster up");
    c.leader(1, Duration::from_secs(20))
        .await
        .expect("a leader");
    wait_for_default_namespace(&c).await;
    let dir = c.dir().join("tree");
    // "a-..." sorts before "z-namespace.yaml": ctl must still create the namespace first.
    write(&dir, "a-config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\ndata:\n  k: v\n");
    write(
        &dir,
        "sub/web.yaml",
        &DEPLOYMENT.replace("  name: web\n", "  name: web\n  namespace: team\n"),
    );
    write(
        &dir,
        "z-namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    let root = dir.display().to_string();
    let out = ok(&c, &["apply", "-f", &root]);
    assert_eq!(
        out, "namespace/team created\nconfigmap/settings created\n",
        "without -R the sub-directory is skipped"
    );
    let out = ok(&c, &["apply", "-f", &root, "-R"]);
    assert_eq!(
        out,
        "namespace/team unchanged\nconfigmap/settings unchanged\ndeployment.apps/web created\n"
    );
    assert_eq!(
        ok(
            &c,
            &["-n", "team", "delete", "deploy", "web", "--timeout=20s"]
        ),
        "deployment.apps \"web\" deleted\n"
    );

    // apply by ctl, then kubectl, then ctl again, on the same last-applied annotation
    let web = write(&c.dir().join("flat"), "web.yaml", DEPLOYMENT);
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web created\n"
    );
    let Some(o) = c
        .kubectl(&["apply", "-f", &web], None)
        .expect("kubectl ran")
    else {
        eprintln!("notice: kubectl is not installed; skipping the part of the test where ctl and kubectl take turns");
        return;
    };
    assert!(
        o.status.success(),
        "kubectl apply: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(
        stdout(&o),
        "deployment.apps/web unchanged\n",
        "kubectl saw a change after ctl: {}",
        stderr(&o)
    );
    write(
        &c.dir().join("flat"),
        "web.yaml",
        &DEPLOYMENT
            .replace("    tier: front\n", "")
            .replace("replicas: 2", "replicas: 5"),
    );
    let o = c
        .kubectl(&["apply", "-f", &web], None)
        .expect("kubectl ran")
        .expect("kubectl present");
    assert_eq!(
        stdout(&o),
        "deployment.apps/web configured\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web unchanged\n"
    );
    // ctl removes a field that kubectl's last apply recorded
    write(
        &c.dir().join("flat"),
        "web.yaml",
        &DEPLOYMENT
            .replace("    tier: front\n", "")
            .replace("replicas: 2", "replicas: 5")
            .replace("  minReadySeconds: 5\n", ""),
    );
    assert_eq!(
        ok(&c, &["apply", "-f", &web]),
        "deployment.apps/web configured\n"
    );
    let live = get(&c, DEPLOY_PATH).await.expect("web");
    assert_eq!(live["spec"]["replicas"], 5);
    assert!(
        live["spec"].get("minReadySeconds").is_none_or(|v| v == 0),
        "{}",
        live["spec"]
    );
    let o = c
        .kubectl(&["apply", "-f", &web], None)
        .expect("kubectl ran")
        .expect("kubectl present");
    assert_eq!(
        stdout(&o),
        "deployment.apps/web unchanged\n",
        "kubectl saw a change after ctl: {}",
        stderr(&o)
    );
}

#[test]
fn config_commands_without_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("kubeconfig");
    let mut config = api::client::Kubeconfig::new_admin(
        "one",
        &["https://127.0.0.1:6443".to_string()],
        b"PEM DATA",
        "s3cret-token",
    );
    let other = api::client::Kubeconfig::new_admin(
        "two",
        &["https://10.0.0.2:6443".to_string()],
        b"PEM DATA",
        "other-token",
    );
    config.clusters.extend(other.clusters);
    config.users.extend(other.users);
    config.contexts.extend(other.contexts);
    config.write(&path).expect("write kubeconfig");
    let ctl = |args: &[&str]| -> Output {
        Command::new(tests::binary("ctl").expect("ctl built"))
            .arg("--kubeconfig")
            .arg(&path)
            .args(args)
            .output()
            .expect("ctl ran")
    };

    let o = ctl(&["config", "current-context"]);
    assert_eq!(stdout(&o), "one\n");
    let o = ctl(&["config", "view"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stdout(&o).contains("s3cret-token") && stdout(&o).contains("token: REDACTED"),
        "{}",
        stdout(&o)
    );
    let o = ctl(&["config", "view", "--raw", "--minify"]);
    assert!(
        stdout(&o).contains("s3cret-token") && !stdout(&o).contains("other-token"),
        "{}",
        stdout(&o)
    );

    let o = ctl(&["config", "use-context", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "error: no context exists with the name: \"nope\""
    );
    let o = ctl(&["config", "use-context", "two"]);
    assert_eq!(
        stdout(&o),
        "Switched to context \"two\".\n",
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&ctl(&["config", "current-context"])), "two\n");
    let table = stdout(&ctl(&["config", "get-contexts"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("CURRENT") && lines[0].contains("AUTHINFO"),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('*') && l.contains("two")),
        "{table}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(' ') && l.contains("one")),
        "{table}"
    );
    // kubectl reads what ctl wrote
    if tests::kubectl().is_some() {
        let o = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&path)
            .args(["config", "current-context"])
            .output()
            .expect("kubectl ran");
        assert_eq!(stdout(&o), "two\n", "{}", stderr(&o));
    }

    // help with an example on the write verbs
    for verb in [
        &["apply"][..],
        &["create"],
        &["replace"],
        &["delete"],
        &["scale"],
        &["set", "image"],
        &["rollout", "status"],
        &["cordon"],
        &["uncordon"],
        &["drain"],
        &["label"],
        &["annotate"],
        &["config", "view"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let o = ctl(&args);
        assert!(
            o.status.success() && stdout(&o).contains("Examples:"),
            "{verb:?}: {}",
            stdout(&o)
        );
    }
}
