//! `ctl compose` end to end on three machines: a two-service project where web reaches api by
//! its service name, api is built from a Dockerfile and pushed to the cluster's registry, web
//! starts only once api is healthy (depends_on service_healthy), api runs deploy.replicas pods,
//! a second `up` changes nothing, an edit to api's source rolls api alone, and `down` removes
//! it all.
//!
//! Needs root and busybox-static; elsewhere it prints a notice and passes. The cluster is removed
//! by `Cluster`'s Drop, also when an assertion fails.

use std::time::Duration;

use serde_json::Value;
use tests::e2e::{ctl_ok, get, is_ready, three_machines as cluster, wait_for};

fn ready_pods(list: &Value) -> Vec<Value> {
    list["items"]
        .as_array()
        .map(|items| items.iter().filter(|p| is_ready(p)).cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_services_up_and_down() {
    let Some((c, image)) = cluster("two_services_up_and_down", "") else {
        return;
    };
    let dir = c.dir().join("shop");
    std::fs::create_dir_all(&dir).expect("project directory");
    std::fs::write(dir.join(".env"), format!("IMAGE={image}\n")).expect("write .env");
    // api is built from a Dockerfile on top of the registry's busybox, so `up` must build it,
    // push it to the cluster's registry and point its Deployment there.
    std::fs::create_dir_all(dir.join("api")).expect("api directory");
    std::fs::write(
        dir.join("api/Dockerfile"),
        format!("FROM {image}\nCOPY index.html /www/index.html\n"),
    )
    .expect("write Dockerfile");
    std::fs::write(dir.join("api/index.html"), "pong\n").expect("write index.html");
    let registry = c.registry().expect("the cluster's registry");
    let store = c.dir().join("compose-store");
    // api answers only after a delay, so an `up` that did not wait for its health would create
    // web while no api pod is ready yet. web uses timeout(1) rather than `wget -T`, which
    // crashes busybox 1.35's wget.
    let compose = r#"
services:
  web:
    image: ${IMAGE}
    command: ["sh", "-c", "while true; do timeout 3 wget -q -O /tmp/got http://api:8080/ && cp /tmp/got /tmp/ok; sleep 1; done"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
    depends_on:
      api:
        condition: service_healthy
  api:
    build: ./api
    command: ["sh", "-c", "sleep 3 && exec httpd -f -p 8080 -h /www"]
    expose: ["8080"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "-", "http://localhost:8080/"]
      interval: 1s
    deploy:
      replicas: 2
"#;
    let file = dir.join("compose.yaml");
    std::fs::write(&file, compose).expect("write compose.yaml");
    let file = file.to_str().unwrap_or_default().to_string();

    let store = store.to_str().unwrap_or_default().to_string();
    let up = [
        "--root",
        store.as_str(),
        "compose",
        "-f",
        file.as_str(),
        "--registry",
        registry.as_str(),
        "up",
        "-d",
    ];
    let first = ctl_ok(&c, &up);
    assert!(first.contains("namespace/shop created"), "{first}");
    assert!(
        first.contains("deployment.apps/api created")
            && first.contains("deployment.apps/web created"),
        "{first}"
    );

    // api reached its replicas, and web became ready, which it does only after fetching api's
    // page by the name "api".
    let pods = "/api/v1/namespaces/shop/pods";
    wait_for("2 ready api pods", Duration::from_secs(120), || async {
        let list = get(
            &c,
            &format!("{pods}?labelSelector=app.kubernetes.io%2Fname%3Dapi"),
        )
        .await?;
        (ready_pods(&list).len() == 2).then_some(())
    })
    .await;
    wait_for(
        "a ready web pod (it reached api by name)",
        Duration::from_secs(120),
        || async {
            let list = get(
                &c,
                &format!("{pods}?labelSelector=app.kubernetes.io%2Fname%3Dweb"),
            )
            .await?;
            (!ready_pods(&list).is_empty()).then_some(())
        },
    )
    .await;

    let api = get(&c, "/apis/apps/v1/namespaces/shop/deployments/api")
        .await
        .expect("api deployment");
    assert_eq!(
        api["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{registry}/shop-api:latest")
    );

    // web's Deployment was written only after an api pod was ready.
    let web = get(&c, "/apis/apps/v1/namespaces/shop/deployments/web")
        .await
        .expect("web deployment");
    let created = web["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let api_pods = get(
        &c,
        &format!("{pods}?labelSelector=app.kubernetes.io%2Fname%3Dapi"),
    )
    .await
    .expect("api pods");
    let first_ready = api_pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            p["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .and_then(|c| c["lastTransitionTime"].as_str())
                .map(str::to_string)
        })
        .min()
        .unwrap_or_default();
    assert!(
        !first_ready.is_empty() && created >= first_ready,
        "web created at {created}, api first ready at {first_ready}"
    );

    // A second up writes nothing.
    let second = ctl_ok(&c, &up);
    assert!(
        !second.contains("created") && !second.contains("configured"),
        "{second}"
    );
    assert!(second.contains("deployment.apps/web unchanged"), "{second}");

    let ps = ctl_ok(&c, &["compose", "-f", &file, "ps"]);
    assert_eq!(
        ps.lines().filter(|l| l.contains(" api ")).count(),
        2,
        "{ps}"
    );

    // An edit to api's source rolls api only.
    std::fs::write(dir.join("api/index.html"), "pong 2\n").expect("edit index.html");
    let third = ctl_ok(&c, &up);
    assert!(
        third.contains("deployment.apps/api configured")
            && third.contains("deployment.apps/web unchanged"),
        "{third}"
    );

    let down = ctl_ok(&c, &["compose", "-f", &file, "down"]);
    assert!(down.contains("namespace/shop deleted"), "{down}");
    // Polled by hand, so a failure shows what was left.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let deployments = get(&c, "/apis/apps/v1/namespaces/shop/deployments").await;
        let left = get(&c, pods).await;
        let names = |v: &Option<Value>| -> Vec<String> {
            v.as_ref()
                .and_then(|l| l["items"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|o| {
                    format!(
                        "{} (deleting since {})",
                        o["metadata"]["name"], o["metadata"]["deletionTimestamp"]
                    )
                })
                .collect()
        };
        let (deployments, left) = (names(&deployments), names(&left));
        if deployments.is_empty() && left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after down, deployments {deployments:?} and pods {left:?} are left"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
