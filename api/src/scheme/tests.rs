//! Table tests of `admit` and `validate_update`: each rule with a good and a bad input, and the
//! exact message Kubernetes would give for the bad one.

use serde_json::{json, Value};

use super::*;
use crate::resource::lookup;

/// JSON-pointer edits to a valid body, and the error they cause (None: still valid).
type Case<'a> = (Vec<(&'a str, Value)>, Option<String>);

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "sidecar", "image": "busybox"}
                ]}
            }
        }
    })
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    })
}

/// `base` with the value at each JSON pointer replaced (Null removes the field).
fn with(mut base: Value, edits: &[(&str, Value)]) -> Value {
    for (pointer, value) in edits {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = base
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent}"));
        match (target, value) {
            (Value::Object(m), Value::Null) => {
                m.remove(key);
            }
            (Value::Object(m), v) => {
                m.insert(key.to_string(), v.clone());
            }
            (Value::Array(a), v) => a[key.parse::<usize>().unwrap()] = v.clone(),
            _ => panic!("cannot edit {pointer}"),
        }
    }
    base
}

/// Admits `body` as the kind kubectl calls `kind` and compares the outcome with `expected`:
/// Ok(()) to admit, Err(message) for the error's Display.
fn check(kind: &str, body: Value, expected: Result<(), &str>) {
    let info = lookup(kind).unwrap();
    let got = admit(info, body.clone(), FieldValidation::Strict)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(got, expected.map_err(String::from), "body: {body}");
}

#[test]
fn valid_deployment_comes_back_defaulted() {
    let admitted = admit(
        lookup("deploy").unwrap(),
        deployment(),
        FieldValidation::Strict,
    )
    .unwrap();
    assert!(admitted.warnings.is_empty());
    let o = &admitted.object;
    let expect = |pointer: &str, value: Value| {
        assert_eq!(o.pointer(pointer), Some(&value), "{pointer} in {o}")
    };
    expect("/apiVersion", json!("apps/v1"));
    expect("/kind", json!("Deployment"));
    expect("/spec/replicas", json!(1));
    expect(
        "/spec/strategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
    );
    expect("/spec/revisionHistoryLimit", json!(10));
    expect("/spec/progressDeadlineSeconds", json!(600));
    let spec = "/spec/template/spec";
    expect(&format!("{spec}/restartPolicy"), json!("Always"));
    expect(&format!("{spec}/terminationGracePeriodSeconds"), json!(30));
    expect(&format!("{spec}/dnsPolicy"), json!("ClusterFirst"));
    expect(&format!("{spec}/schedulerName"), json!("default-scheduler"));
    expect(&format!("{spec}/securityContext"), json!({}));
    expect(&format!("{spec}/enableServiceLinks"), json!(true));
    expect(
        &format!("{spec}/containers/0/terminationMessagePath"),
        json!("/dev/termination-log"),
    );
    expect(
        &format!("{spec}/containers/0/terminationMessagePolicy"),
        json!("File"),
    );
    expect(
        &format!("{spec}/containers/0/imagePullPolicy"),
        json!("IfNotPresent"),
    );
    expect(
        &format!("{spec}/containers/0/ports/0/protocol"),
        json!("TCP"),
    );
    expect(
        &format!("{spec}/containers/1/imagePullPolicy"),
        json!("Always"),
    );
    // admitting what was admitted changes nothing
    let again = admit(
        lookup("deploy").unwrap(),
        o.clone(),
        FieldValidation::Strict,
    )
    .unwrap();
    assert_eq!(&again.object, o);
}

#[test]
fn apiversion_and_kind_filled_or_checked() {
    let info = lookup("deploy").unwrap();
    let bare = with(
        deployment(),
        &[("/apiVersion", Value::Null), ("/kind", Value::Null)],
    );
    let admitted = admit(info, bare, FieldValidation::Strict).unwrap();
    assert_eq!(admitted.object["apiVersion"], "apps/v1");
    assert_eq!(admitted.object["kind"], "Deployment");

    check("deploy", with(deployment(), &[("/apiVersion", json!("apps/v2"))]), Err("Deployment cannot be handled as a Deployment: the API version in the data (apps/v2) does not match the expected API version (apps/v1)"));
    check("deploy", with(deployment(), &[("/kind", json!("Pod"))]), Err("Deployment cannot be handled as a Deployment: the kind in the data (Pod) does not match the expected kind (Deployment)"));
    check(
        "deploy",
        json!([1, 2]),
        Err("Deployment cannot be handled as a Deployment: the body must be a JSON object"),
    );
    check("deploy", with(deployment(), &[("/spec/replicas", json!("three"))]), Err("Deployment cannot be handled as a Deployment: spec.replicas: invalid type: string \"three\", expected i32"));
    check("deploy", with(deployment(), &[("/spec/template/spec/containers/1/ports", json!([{"containerPort": "80"}]))]), Err("Deployment cannot be handled as a Deployment: spec.template.spec.containers[1].ports[0].containerPort: invalid type: string \"80\", expected i32"));
    // a field k8s-openapi requires reads as Kubernetes' "Required value"
    check(
        "deploy",
        with(deployment(), &[("/spec/selector", Value::Null)]),
        Err("Deployment.apps \"web\" is invalid: spec.selector: Required value"),
    );
    check("deploy", with(deployment(), &[("/spec/template/spec/containers/1", json!({"image": "busybox"}))]), Err("Deployment.apps \"web\" is invalid: spec.template.spec.containers[1].name: Required value"));
    let err = admit(
        info,
        with(deployment(), &[("/kind", json!("Pod"))]),
        FieldValidation::Warn,
    )
    .unwrap_err();
    assert_eq!((err.status_code(), err.reason()), (400, "BadRequest"));
}

#[test]
fn unknown_fields_per_mode() {
    let info = lookup("deploy").unwrap();
    let body = with(
        deployment(),
        &[
            ("/spec/replcas", json!(3)),
            ("/spec/template/spec/containers/1/imagee", json!("x")),
            ("/metadata/labelz", json!({})),
        ],
    );
    let strict = admit(info, body.clone(), FieldValidation::Strict).unwrap_err();
    assert_eq!(
        strict.to_string(),
        // in the order of the body: `with` appends new keys at the end of their object
        "strict decoding error: unknown field \"metadata.labelz\", unknown field \"spec.template.spec.containers[1].imagee\", unknown field \"spec.replcas\""
    );
    assert_eq!(strict.status_code(), 400);
    let warn = admit(info, body.clone(), FieldValidation::Warn).unwrap();
    assert_eq!(
        warn.warnings,
        vec![
            "unknown field \"metadata.labelz\"",
            "unknown field \"spec.template.spec.containers[1].imagee\"",
            "unknown field \"spec.replcas\"",
        ]
    );
    assert!(
        warn.object.pointer("/spec/replcas").is_none(),
        "unknown fields are dropped"
    );
    let ignore = admit(info, body, FieldValidation::Ignore).unwrap();
    assert!(ignore.warnings.is_empty());
    assert_eq!(ignore.object, warn.object);

    fn mode(s: &str) -> Result<FieldValidation, String> {
        s.parse()
    }
    assert_eq!(mode("Strict"), Ok(FieldValidation::Strict));
    assert_eq!(mode("Warn"), Ok(FieldValidation::Warn));
    assert_eq!(mode("Ignore"), Ok(FieldValidation::Ignore));
    assert_eq!(mode("strict"), Err("fieldValidation: Unsupported value: \"strict\": supported values: \"Ignore\", \"Strict\", \"Warn\"".to_string()));
    assert_eq!(FieldValidation::default(), FieldValidation::Warn);
}

#[test]
fn deployment_rules() {
    let invalid = |e: &str| format!("Deployment.apps \"web\" is invalid: {e}");
    let cases: Vec<Case> = vec![
        (vec![], None),
        (vec![("/spec/replicas", json!(0))], None),
        (vec![("/spec/replicas", json!(-1))], Some(invalid("spec.replicas: Invalid value: -1: must be greater than or equal to 0"))),
        (vec![("/metadata/name", json!("Web_1"))], Some("Deployment.apps \"Web_1\" is invalid: metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())),
        (vec![("/metadata/name", Value::Null)], Some("Deployment.apps \"\" is invalid: metadata.name: Required value: name or generateName is required".into())),
        (vec![("/metadata/namespace", Value::Null)], Some(invalid("metadata.namespace: Required value"))),
        (vec![("/metadata/namespace", json!("Prod"))], Some(invalid("metadata.namespace: Invalid value: \"Prod\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))),
        (vec![("/metadata/labels", json!({"app": "bad value"}))], Some(invalid("metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))),
        (vec![("/metadata/labels", json!({"example.com/app": "x"}))], None),
        (vec![("/metadata/labels", json!({"-app": "x"}))], Some(invalid("metadata.labels: Invalid value: \"-app\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))),
        (vec![("/metadata/annotations", json!({"note": "x".repeat(256 * 1024)}))], Some(invalid("metadata.annotations: Too long: may not be more than 262144 bytes"))),
        (vec![("/metadata/annotations", json!({"note": "x".repeat(1000)}))], None),
        (vec![("/spec/selector", json!({}))], Some(invalid("spec.selector: Invalid value: {}: empty selector is invalid for deployment"))),
        (vec![("/spec/selector", json!({"matchLabels": {"app": "db"}}))], Some(invalid("spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"))),
        (vec![("/spec/selector", json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}))], None),
        (vec![("/spec/selector", json!({"matchExpressions": [{"key": "app", "operator": "In"}]}))], Some(invalid("spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"))),
        (vec![("/spec/template/spec/containers/0/image", Value::Null)], Some(invalid("spec.template.spec.containers[0].image: Required value"))),
        (vec![("/spec/template/spec/containers", json!([]))], Some(invalid("spec.template.spec.containers: Required value"))),
        (vec![("/spec/template/spec/containers/1/name", json!("web"))], Some(invalid("spec.template.spec.containers[1].name: Duplicate value: \"web\""))),
        (vec![("/spec/template/spec/restartPolicy", json!("Sometimes"))], Some(invalid("[spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\", spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\"]"))),
        (vec![("/spec/template/spec/restartPolicy", json!("Never"))], Some(invalid("spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""))),
        (vec![("/spec/strategy", json!({"type": "BlueGreen"}))], Some(invalid("spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""))),
        (vec![("/spec/strategy", json!({"type": "Recreate"}))], None),
        (vec![("/spec/strategy", json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}))], Some(invalid("spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"))),
        (vec![("/spec/strategy", json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}))], Some(invalid("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"))),
        (vec![("/spec/strategy", json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}))], None),
        (vec![("/spec/strategy", json!({"rollingUpdate": {"maxUnavailable": "150%"}}))], Some(invalid("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"))),
        (vec![("/spec/strategy", json!({"rollingUpdate": {"maxSurge": "lots"}}))], Some(invalid("spec.strategy.rollingUpdate.maxSurge: Invalid value: \"lots\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))),
        (vec![("/spec/strategy", json!({"rollingUpdate": {"maxSurge": -1}}))], Some(invalid("spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"))),
        (vec![("/spec/revisionHistoryLimit", json!(-2))], Some(invalid("spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0"))),
        (vec![("/spec/minReadySeconds", json!(700))], Some(invalid("spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"))),
        (vec![("/spec/replicas", json!(-1)), ("/spec/template/spec/containers/0/image", Value::Null)], Some(invalid("[spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.containers[0].image: Required value]"))),
    ];
    for (edits, expected) in cases {
        check(
            "deploy",
            with(deployment(), &edits),
            expected.as_deref().map_or(Ok(()), Err),
        );
    }
    let err = admit(
        lookup("deploy").unwrap(),
        with(deployment(), &[("/spec/replicas", json!(-1))]),
        FieldValidation::Warn,
    )
    .unwrap_err();
    assert_eq!((err.status_code(), err.reason()), (422, "Invalid"));
    let AdmitError::Invalid { errors, .. } = err else {
        panic!("not Invalid")
    };
    assert_eq!(errors[0].kind.reason(), "FieldValueInvalid");
}

#[test]
fn pod_rules() {
    let invalid = |e: &str| format!("Pod \"web-1\" is invalid: {e}");
    let cases: Vec<Case> = vec![
        (vec![], None),
        (vec![("/spec/containers/0", json!({"name": "Web", "image": "x"}))], Some(invalid("spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))),
        (vec![("/spec/restartPolicy", json!("Never"))], None),
        (vec![("/spec/restartPolicy", json!("Sometimes"))], Some(invalid("spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""))),
        (vec![("/spec/terminationGracePeriodSeconds", json!(-1))], Some(invalid("spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"))),
        (vec![("/spec/securityContext", json!({"runAsUser": -5}))], Some(invalid("spec.securityContext.runAsUser: Invalid value: -5: must be between 0 and 2147483647, inclusive"))),
        (vec![("/spec/securityContext", json!({"runAsUser": 1000}))], None),
        (vec![("/spec/containers/0/securityContext", json!({"runAsUser": -1}))], Some(invalid("spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"))),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 80, "name": "http", "protocol": "UDP"}, {"containerPort": 443, "name": "https", "protocol": "SCTP"}]))], None),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 0}]))], Some(invalid("spec.containers[0].ports[0].containerPort: Required value"))),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 70000}]))], Some(invalid("spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"))),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 80, "protocol": "HTTP"}]))], Some(invalid("spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""))),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]))], Some(invalid("spec.containers[0].ports[1].name: Duplicate value: \"http\""))),
        (vec![("/spec/containers/0/ports", json!([{"containerPort": 80, "name": "8080"}]))], Some(invalid("spec.containers[0].ports[0].name: Invalid value: \"8080\": must contain at least one letter (a-z)"))),
        (vec![("/spec/containers/0/env", json!([{"name": "MY_VAR", "value": "1"}, {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]))], None),
        (vec![("/spec/containers/0/env", json!([{"name": "1BAD"}]))], Some(invalid("spec.containers[0].env[0].name: Invalid value: \"1BAD\": a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')"))),
        (vec![("/spec/containers/0/env", json!([{"name": "A", "valueFrom": {}}]))], Some(invalid("spec.containers[0].env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))),
        (vec![("/spec/containers/0/env", json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}, "secretKeyRef": {"name": "s", "key": "k"}}}]))], Some(invalid("spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"))),
        (vec![("/spec/containers/0/env", json!([{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]))], Some(invalid("spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"))),
        (vec![("/spec/containers/0/env", json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": ""}}}]))], Some(invalid("spec.containers[0].env[0].valueFrom.secretKeyRef.key: Required value"))),
        (vec![("/spec/containers/0/env", json!([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "", "key": "k"}}}]))], Some(invalid("spec.containers[0].env[0].valueFrom.configMapKeyRef.name: Required value"))),
        (vec![("/spec/containers/0/env", json!([{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]))], None),
        (vec![("/spec/containers/0/resources", json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": 1, "memory": "128Mi"}}))], None),
        (vec![("/spec/containers/0/resources", json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))], Some(invalid("spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1"))),
        (vec![("/spec/containers/0/resources", json!({"limits": {"memory": "lots"}}))], Some(invalid("spec.containers[0].resources.limits[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))),
        (vec![("/spec/containers/0/resources", json!({"limits": {"cpu": "-1"}}))], Some(invalid("spec.containers[0].resources.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"))),
        (vec![("/spec/volumes", json!([{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}])), ("/spec/containers/0/volumeMounts", json!([{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/etc/cfg"}]))], None),
        (vec![("/spec/volumes", json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]))], Some(invalid("spec.volumes[1].name: Duplicate value: \"data\""))),
        (vec![("/spec/volumes", json!([{"name": "data", "emptyDir": {}, "hostPath": {"path": "/srv"}}]))], Some(invalid("spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"))),
        (vec![("/spec/containers/0/volumeMounts", json!([{"name": "nope", "mountPath": "/data"}]))], Some(invalid("spec.containers[0].volumeMounts[0].name: Not found: \"nope\""))),
        (vec![("/spec/volumes", json!([{"name": "data"}])), ("/spec/containers/0/volumeMounts", json!([{"name": "data", "mountPath": "data"}]))], Some(invalid("spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"data\": must be an absolute path"))),
        (vec![("/spec/containers/0/livenessProbe", json!({"httpGet": {"port": 8080}}))], None),
        (vec![("/spec/containers/0/livenessProbe", json!({"periodSeconds": 5}))], Some(invalid("spec.containers[0].livenessProbe: Required value: must specify a handler type"))),
        (vec![("/spec/containers/0/readinessProbe", json!({"httpGet": {"port": 80}, "tcpSocket": {"port": 80}}))], Some(invalid("spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type"))),
        (vec![("/spec/containers/0/readinessProbe", json!({"tcpSocket": {"port": 80}, "failureThreshold": -1}))], Some(invalid("spec.containers[0].readinessProbe.failureThreshold: Invalid value: -1: must be greater than or equal to 0"))),
        (vec![("/spec/containers/0/livenessProbe", json!({"exec": {"command": ["true"]}, "successThreshold": 2}))], Some(invalid("spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"))),
        (vec![("/spec/initContainers", json!([{"name": "proxy", "image": "x", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 80}}}, {"name": "setup", "image": "x"}]))], None),
        (vec![("/spec/initContainers", json!([{"name": "proxy", "image": "x", "restartPolicy": "Never"}]))], Some(invalid("spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""))),
        (vec![("/spec/initContainers", json!([{"name": "setup", "image": "x", "livenessProbe": {"exec": {"command": ["true"]}}}]))], Some(invalid("spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"))),
        (vec![("/spec/containers/0/restartPolicy", json!("Always"))], Some(invalid("spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"))),
        (vec![("/spec/tolerations", json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, {"operator": "Exists"}]))], None),
        (vec![("/spec/tolerations", json!([{"key": "k", "operator": "Above"}]))], Some(invalid("spec.tolerations[0].operator: Unsupported value: \"Above\": supported values: \"Equal\", \"Exists\""))),
        (vec![("/spec/tolerations", json!([{"key": "k", "effect": "Never"}]))], Some(invalid("spec.tolerations[0].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""))),
        (vec![("/spec/tolerations", json!([{"key": "k", "operator": "Exists", "value": "v"}]))], Some(invalid("spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'"))),
    ];
    for (edits, expected) in cases {
        check(
            "pod",
            with(pod(), &edits),
            expected.as_deref().map_or(Ok(()), Err),
        );
    }
}

#[test]
fn a_field_errors_body_leaves_the_path_to_the_causes_field() {
    let e = FieldError {
        path: "spec.initContainers[0].restartPolicy".into(),
        kind: FieldErrorKind::NotSupported("\"Never\"".into(), vec!["Always".into()]),
        detail: String::new(),
    };
    assert_eq!(e.to_string(), "spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"");
    assert_eq!(e.body(), "Unsupported value: \"Never\": supported values: \"Always\"");
    let forbidden = FieldError { path: "spec.x".into(), kind: FieldErrorKind::Forbidden, detail: "not here".into() };
    assert_eq!(forbidden.body(), "Forbidden: not here");
}

#[test]
fn pod_defaults() {
    let body = with(
        pod(),
        &[
            (
                "/spec/containers/0/livenessProbe",
                json!({"httpGet": {"port": 8080}}),
            ),
            ("/spec/containers/0/image", json!("nginx")),
            (
                "/spec/volumes",
                json!([{"name": "cfg", "configMap": {"name": "cfg"}}, {"name": "tmp"}]),
            ),
        ],
    );
    let o = admit(lookup("po").unwrap(), body, FieldValidation::Strict)
        .unwrap()
        .object;
    assert_eq!(
        o.pointer("/spec/containers/0/imagePullPolicy"),
        Some(&json!("Always"))
    );
    let probe = &o["spec"]["containers"][0]["livenessProbe"];
    assert_eq!(
        (
            probe["timeoutSeconds"].as_i64(),
            probe["periodSeconds"].as_i64()
        ),
        (Some(1), Some(10))
    );
    assert_eq!(
        (
            probe["successThreshold"].as_i64(),
            probe["failureThreshold"].as_i64()
        ),
        (Some(1), Some(3))
    );
    assert_eq!(
        probe["httpGet"],
        json!({"path": "/", "port": 8080, "scheme": "HTTP"})
    );
    assert_eq!(
        o.pointer("/spec/volumes/0/configMap/defaultMode"),
        Some(&json!(420))
    );
    assert_eq!(o.pointer("/spec/volumes/1/emptyDir"), Some(&json!({})));
    assert_eq!(o.pointer("/spec/restartPolicy"), Some(&json!("Always")));
}

#[test]
fn service_rules_and_defaults() {
    let o = admit(lookup("svc").unwrap(), service(), FieldValidation::Strict)
        .unwrap()
        .object;
    assert_eq!(o.pointer("/spec/type"), Some(&json!("ClusterIP")));
    assert_eq!(o.pointer("/spec/sessionAffinity"), Some(&json!("None")));
    assert_eq!(
        o.pointer("/spec/ports/0"),
        Some(&json!({"port": 80, "protocol": "TCP", "targetPort": 80}))
    );

    let invalid = |e: &str| format!("Service \"web\" is invalid: {e}");
    let cases: Vec<Case> = vec![
        (vec![("/metadata/name", json!("1web"))], Some("Service \"1web\" is invalid: metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into())),
        (vec![("/spec/ports", json!([]))], Some(invalid("spec.ports: Required value"))),
        (vec![("/spec/ports", json!([])), ("/spec/clusterIP", json!("None"))], None),
        (vec![("/spec/ports", json!([{"port": 0}]))], Some(invalid("[spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive, spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive]"))),
        (vec![("/spec/ports", json!([{"port": 80}, {"port": 443}]))], Some(invalid("[spec.ports[0].name: Required value, spec.ports[1].name: Required value]"))),
        (vec![("/spec/ports", json!([{"port": 80, "name": "web"}, {"port": 443, "name": "web"}]))], Some(invalid("spec.ports[1].name: Duplicate value: \"web\""))),
        (vec![("/spec/ports", json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https", "targetPort": "https"}]))], None),
        (vec![("/spec/ports", json!([{"port": 80, "targetPort": 0x10000}]))], Some(invalid("spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive"))),
        (vec![("/spec/type", json!("Magic"))], Some(invalid("spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""))),
        (vec![("/spec/ports", json!([{"port": 80, "nodePort": 30080}]))], Some(invalid("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"))),
        (vec![("/spec/type", json!("NodePort")), ("/spec/ports", json!([{"port": 80, "nodePort": 30080}]))], None),
        (vec![("/spec/type", json!("NodePort")), ("/spec/ports", json!([{"port": 80, "nodePort": 80}]))], Some(invalid("spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"))),
        (vec![("/spec/type", json!("ExternalName")), ("/spec/ports", json!([]))], Some(invalid("spec.externalName: Required value"))),
        (vec![("/spec/type", json!("ExternalName")), ("/spec/externalName", json!("db.example.com"))], None),
        (vec![("/spec/sessionAffinity", json!("Sticky"))], Some(invalid("spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""))),
    ];
    for (edits, expected) in cases {
        check(
            "svc",
            with(service(), &edits),
            expected.as_deref().map_or(Ok(()), Err),
        );
    }
}

#[test]
fn replica_set_rules() {
    let rs = json!({
        "metadata": {"name": "web-abc", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    });
    let o = admit(lookup("rs").unwrap(), rs.clone(), FieldValidation::Strict)
        .unwrap()
        .object;
    assert_eq!(o.pointer("/spec/replicas"), Some(&json!(1)));
    assert_eq!(
        o.pointer("/spec/template/spec/dnsPolicy"),
        Some(&json!("ClusterFirst"))
    );
    check("rs", with(rs.clone(), &[("/spec/replicas", json!(-3))]), Err("ReplicaSet.apps \"web-abc\" is invalid: spec.replicas: Invalid value: -3: must be greater than or equal to 0"));
    check("rs", with(rs, &[("/spec/template/metadata/labels", json!({"app": "api"}))]), Err("ReplicaSet.apps \"web-abc\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"));
}

#[test]
fn config_and_secret_rules() {
    let cm = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.properties": "a=b", "KEY_1": "v"}});
    check("cm", cm.clone(), Ok(()));
    check("cm", with(cm.clone(), &[("/data", json!({"a/b": "x"}))]), Err("ConfigMap \"cfg\" is invalid: data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
    check("cm", with(cm.clone(), &[("/binaryData", json!({"app.properties": "AAEC"}))]), Err("ConfigMap \"cfg\" is invalid: data[app.properties]: Invalid value: \"app.properties\": duplicate of key present in binaryData"));
    check(
        "cm",
        with(
            cm,
            &[("/data", json!({"big": "x".repeat(1024 * 1024 + 1)}))],
        ),
        Err("ConfigMap \"cfg\" is invalid: data: Too long: may not be more than 1048576 bytes"),
    );

    let secret = json!({"metadata": {"name": "creds", "namespace": "default"}, "data": {"user": "YWRtaW4="}, "stringData": {"password": "s3cret"}});
    let o = admit(
        lookup("secret").unwrap(),
        secret.clone(),
        FieldValidation::Strict,
    )
    .unwrap()
    .object;
    assert_eq!(o["type"], "Opaque");
    assert_eq!(
        o["data"],
        json!({"password": "czNjcmV0", "user": "YWRtaW4="})
    );
    assert!(o.get("stringData").is_none());
    check(
        "secret",
        with(secret.clone(), &[("/data", json!({"user": "not base64!"}))]),
        Err("Secret cannot be handled as a Secret: data.user: Invalid symbol 32, offset 3."),
    );
    check("secret", with(secret.clone(), &[("/type", json!("kubernetes.io/tls"))]), Err("Secret \"creds\" is invalid: [data[tls.crt]: Required value, data[tls.key]: Required value]"));
    check("secret", with(secret, &[("/data", json!({"..x": ""}))]), Err("Secret \"creds\" is invalid: data[..x]: Invalid value: \"..x\": must not start with '..'"));
}

#[test]
fn cluster_scoped_and_small_kinds() {
    let ns = admit(
        lookup("ns").unwrap(),
        json!({"metadata": {"name": "prod"}}),
        FieldValidation::Strict,
    )
    .unwrap()
    .object;
    assert_eq!(ns["status"]["phase"], "Active");
    check("ns", json!({"metadata": {"name": "prod.eu"}}), Err("Namespace \"prod.eu\" is invalid: metadata.name: Invalid value: \"prod.eu\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"));
    check("ns", json!({"metadata": {"name": "prod", "namespace": "default"}}), Err("Namespace \"prod\" is invalid: metadata.namespace: Forbidden: not allowed on this type"));
    check(
        "node",
        json!({"metadata": {"name": "node-1.example.com"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        Ok(()),
    );
    check("node", json!({"metadata": {"name": "node-1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}), Err("Node \"node-1\" is invalid: spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""));
    let lease = json!({"metadata": {"name": "controllers", "namespace": "kube-system"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    check("lease", lease.clone(), Ok(()));
    check("lease", with(lease, &[("/spec/leaseDurationSeconds", json!(0))]), Err("Lease.coordination.k8s.io \"controllers\" is invalid: spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"));
    let event = json!({"metadata": {"name": "web-1.abc", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"}, "reason": "Pulled", "type": "Normal"});
    check("ev", event.clone(), Ok(()));
    check("ev", with(event.clone(), &[("/involvedObject/namespace", json!("other"))]), Err("Event \"web-1.abc\" is invalid: involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"));
    check(
        "ev",
        with(
            event,
            &[("/involvedObject", json!({"kind": "Node", "name": "n1"}))],
        ),
        Ok(()),
    );
    let ep = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "10.0.0.5"}], "ports": [{"port": 80}]}]});
    check("ep", ep.clone(), Ok(()));
    check("ep", with(ep, &[("/subsets/0/addresses", json!([{"ip": "10.0.0"}]))]), Err("Endpoints \"web\" is invalid: subsets[0].addresses[0].ip: Invalid value: \"10.0.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
}

#[test]
fn updates() {
    fn check_update(kind: &str, old: Value, new: Value, expected: Result<(), &str>) {
        let info = lookup(kind).unwrap();
        let old = admit(info, old, FieldValidation::Strict).unwrap().object;
        let new = admit(info, new, FieldValidation::Strict).unwrap().object;
        let got = validate_update(info, &old, &new).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(String::from), "{kind}");
    }
    let d = deployment();
    check_update(
        "deploy",
        d.clone(),
        with(
            d.clone(),
            &[
                ("/spec/replicas", json!(5)),
                (
                    "/spec/template/spec/containers/0/image",
                    json!("nginx:1.28"),
                ),
            ],
        ),
        Ok(()),
    );
    check_update(
        "deploy",
        d.clone(),
        with(d.clone(), &[("/spec/selector", json!({"matchLabels": {"app": "web", "tier": "fe"}})), ("/spec/template/metadata/labels", json!({"app": "web", "tier": "fe"}))]),
        Err("Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\",\"tier\":\"fe\"}}: field is immutable"),
    );
    check_update("deploy", d.clone(), with(d.clone(), &[("/metadata/name", json!("web2"))]), Err("Deployment.apps \"web2\" is invalid: metadata.name: Invalid value: \"web2\": field is immutable"));
    check_update("deploy", with(d.clone(), &[("/metadata/uid", json!("u1"))]), with(d, &[("/metadata/uid", json!("u2"))]), Err("Deployment.apps \"web\" is invalid: metadata.uid: Invalid value: \"u2\": field is immutable"));

    let p = pod();
    check_update(
        "pod",
        p.clone(),
        with(
            p.clone(),
            &[
                ("/spec/containers/0/image", json!("nginx:1.28")),
                ("/spec/activeDeadlineSeconds", json!(60)),
            ],
        ),
        Ok(()),
    );
    check_update(
        "pod",
        p.clone(),
        with(
            p.clone(),
            &[("/spec/tolerations", json!([{"operator": "Exists"}]))],
        ),
        Ok(()),
    );
    check_update(
        "pod",
        p.clone(),
        with(p.clone(), &[("/spec/nodeName", json!("node-1"))]),
        Ok(()),
    );
    check_update(
        "pod",
        with(p.clone(), &[("/spec/nodeName", json!("node-1"))]),
        with(p.clone(), &[("/spec/nodeName", json!("node-2"))]),
        Err("Pod \"web-1\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative) (changed: spec.nodeName)"),
    );
    check_update(
        "pod",
        with(p.clone(), &[("/spec/tolerations", json!([{"operator": "Exists"}]))]),
        p.clone(),
        Err("Pod \"web-1\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative) (changed: spec.tolerations)"),
    );

    let s = service();
    let with_ip = with(s.clone(), &[("/spec/clusterIP", json!("10.96.0.10"))]);
    check_update(
        "svc",
        with_ip.clone(),
        with(
            with_ip.clone(),
            &[("/spec/selector", json!({"app": "api"}))],
        ),
        Ok(()),
    );
    check_update("svc", s.clone(), with_ip.clone(), Ok(()));
    check_update("svc", with_ip.clone(), with(s, &[("/spec/clusterIP", json!("10.96.0.11"))]), Err("Service \"web\" is invalid: spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"));

    let cm = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}});
    check_update(
        "cm",
        cm.clone(),
        with(cm.clone(), &[("/data", json!({"a": "2"}))]),
        Ok(()),
    );
    let frozen = with(cm.clone(), &[("/immutable", json!(true))]);
    check_update("cm", frozen.clone(), with(frozen.clone(), &[("/data", json!({"a": "2"}))]), Err("ConfigMap \"cfg\" is invalid: data: Forbidden: field is immutable when `immutable` is set"));
    check_update("cm", frozen.clone(), cm, Err("ConfigMap \"cfg\" is invalid: immutable: Forbidden: field is immutable when `immutable` is set"));
    check_update("cm", frozen.clone(), frozen.clone(), Ok(()));

    let secret =
        json!({"metadata": {"name": "creds", "namespace": "default"}, "data": {"a": "MQ=="}});
    check_update("secret", secret.clone(), with(secret.clone(), &[("/type", json!("example.com/custom"))]), Err("Secret \"creds\" is invalid: type: Invalid value: \"example.com/custom\": field is immutable"));
    let frozen = with(secret, &[("/immutable", json!(true))]);
    check_update("secret", frozen.clone(), with(frozen, &[("/data", json!({"a": "Mg=="}))]), Err("Secret \"creds\" is invalid: data: Forbidden: field is immutable when `immutable` is set"));
}

#[test]
fn allocated_values_survive_a_replace() {
    let info = lookup("svc").unwrap();
    let old = with(
        service(),
        &[
            ("/spec/type", json!("NodePort")),
            ("/spec/clusterIP", json!("10.96.0.10")),
            ("/spec/clusterIPs", json!(["10.96.0.10"])),
            ("/spec/ports", json!([{"port": 80, "nodePort": 30080}])),
        ],
    );
    let old = admit(info, old, FieldValidation::Strict).unwrap().object;
    let mut new = with(
        service(),
        &[
            ("/spec/type", json!("NodePort")),
            (
                "/spec/ports",
                json!([{"port": 80}, {"port": 81, "name": "b"}]),
            ),
        ],
    );
    new["spec"]["ports"][0]["name"] = json!("a");
    carry_over_allocated(info, &old, &mut new);
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
    assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert!(new["spec"]["ports"][1].get("nodePort").is_none());
    let new = admit(info, new, FieldValidation::Strict).unwrap().object;
    assert_eq!(validate_update(info, &old, &new), Ok(()));

    // an explicit, different clusterIP is kept, and refused
    let mut changed = with(old.clone(), &[("/spec/clusterIP", json!("10.96.0.11"))]);
    carry_over_allocated(info, &old, &mut changed);
    assert_eq!(changed["spec"]["clusterIP"], "10.96.0.11");
    assert!(validate_update(info, &old, &changed).is_err());
}
