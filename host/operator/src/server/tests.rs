//! The reconciler against a mocked API server (kube-rs tower-test pattern): each test states the
//! requests it expects, in order, and what the API server answers.

use std::sync::Arc;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::workload::Isolation;

pub(crate) type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub(crate) fn context() -> (Arc<Context>, Handle) {
    context_with(|_| {})
}

/// A context on a mocked API server, as `customize` changes it (core, recorder, autoscalers).
pub(crate) fn context_with(customize: impl FnOnce(&mut Context)) -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut ctx = Context {
        client: Client::new(service, "default"),
        settings: Settings { hangar_image: "hangar:test".into(), isolation: Isolation::Off },
        metrics: Metrics::new(&prometheus::Registry::new()).unwrap(),
        core: None,
        plugins: None,
        recorder: None,
        autoscalers: None,
        endpoint_slices: None,
        servers: None,
    };
    customize(&mut ctx);
    (Arc::new(ctx), handle)
}

fn server(spec: Value, finalized: bool, status: Option<Value>) -> MCPServer {
    let mut object = json!({
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "github-tools", "namespace": "mcp-servers", "uid": "uid-1", "generation": 2},
        "spec": spec,
    });
    if finalized {
        object["metadata"]["finalizers"] = json!([FINALIZER]);
    }
    if let Some(s) = status {
        object["status"] = s;
    }
    serde_json::from_value(object).unwrap()
}

/// A context with the built-in plugins loaded (compiled once into a shared cache).
pub(crate) fn context_with_plugins() -> (Arc<Context>, Handle) {
    let cache = std::env::temp_dir().join("hangar-operator-test-plugins");
    let config = hangar_plugin_runtime::RuntimeConfig { cache_dir: Some(cache), ..Default::default() };
    let plugins = hangar_plugin_runtime::PluginRuntime::new(config, &prometheus::Registry::new()).unwrap();
    context_with(|c| c.plugins = Some(plugins))
}

/// Answers a request with a Kubernetes Status error (`code`, `reason`), as the API server does.
pub(crate) fn fail(send: tower_test::mock::SendResponse<Response<Body>>, code: u16, reason: &str) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason});
    send.send_response(
        Response::builder().status(code).body(Body::from(serde_json::to_vec(&status).unwrap())).unwrap(),
    );
}

/// No further request comes: the client is dropped when the reconcile returns (None), or nothing
/// arrives within half a second.
pub(crate) async fn expect_no_more(handle: &mut Handle, why: &str) {
    let next = tokio::time::timeout(std::time::Duration::from_millis(500), handle.next_request()).await;
    assert!(!matches!(next, Ok(Some(_))), "{why}");
}

/// One expected request: method and path; the answer is `respond(request body)`.
pub(crate) async fn expect(
    handle: &mut Handle,
    method: Method,
    path: &str,
    respond: impl FnOnce(Value) -> Value,
) -> Value {
    let (request, send) = handle.next_request().await.expect("the reconciler called the API server");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert_eq!(request.uri().path(), path);
    let query = request.uri().query().unwrap_or("");
    assert!(
        crate::rbac::allows(method.as_str(), path, query),
        "{method} {path} is not in rbac::OPERATOR_RULES: the chart's ClusterRole would refuse it"
    );
    let body = request.into_body().collect_bytes().await.unwrap();
    let body: Value = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() };
    let answer = respond(body.clone());
    send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&answer).unwrap())).unwrap());
    body
}

const SERVERS: &str = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-servers/mcpservers/github-tools";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/mcp-servers/deployments/github-tools";
const SERVICE: &str = "/api/v1/namespaces/mcp-servers/services/github-tools";
const PODS: &str = "/api/v1/namespaces/mcp-servers/pods";

/// What follows a Deployment's apply: the Service's apply and the (empty) pod list; returns the
/// Service applied.
async fn expect_service_and_pods(handle: &mut Handle) -> Value {
    let service = expect(handle, Method::PATCH, SERVICE, |b| b).await;
    expect(handle, Method::GET, PODS, |_| json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}))
        .await;
    service
}

/// The status write, answered with the server; returns what was written.
async fn expect_status(handle: &mut Handle) -> Value {
    expect(handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
        serde_json::to_value(server(container(), true, None)).unwrap()
    })
    .await
}

fn container() -> Value {
    json!({"mode": "container", "image": "ghcr.io/modelcontextprotocol/mcp-github:latest"})
}

fn ready_deployment(body: Value) -> Value {
    let mut d = body;
    d["status"] = json!({"replicas": 1, "readyReplicas": 1});
    d
}

#[tokio::test]
async fn a_server_without_finalizer_gets_one_first() {
    let (ctx, mut handle) = context();
    let s = server(container(), false, None);
    let verifier = tokio::spawn(async move {
        let patch = expect(&mut handle, Method::PATCH, SERVERS, |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        assert_eq!(patch[1]["path"], "/metadata/finalizers");
        assert_eq!(patch[1]["value"], json!([FINALIZER]));
    });
    let action = reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_container_server_gets_its_workload_applied_and_a_ready_status() {
    let (ctx, mut handle) = context();
    let s = server(container(), true, None);
    let verifier = tokio::spawn(async move {
        let deployment = expect(&mut handle, Method::PATCH, DEPLOYMENT, ready_deployment).await;
        assert_eq!(deployment["kind"], "Deployment", "server-side apply sends typed objects");
        assert_eq!(deployment["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let sc = &deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"];
        assert_eq!(sc["runAsUser"], 65534);
        expect_service_and_pods(&mut handle).await;
        let status = expect_status(&mut handle).await;
        assert_eq!(status["status"]["state"], "Ready");
        assert_eq!(status["status"]["readyReplicas"], 1);
        assert_eq!(status["status"]["observedGeneration"], 2);
        assert_eq!(status["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(status["status"]["conditions"][0]["status"], "True");
        status["status"].clone()
    });
    let action = reconcile(Arc::new(s), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(RESYNC));
    let written = verifier.await.unwrap();

    // Reconciling again with that status applies the workload but writes no status: no loop.
    let s = server(container(), true, Some(written));
    let (ctx2, mut handle) = context();
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::PATCH, DEPLOYMENT, ready_deployment).await;
        expect_service_and_pods(&mut handle).await;
        expect_no_more(&mut handle, "no further request (no status write)").await;
    });
    reconcile(Arc::new(s), ctx2).await.unwrap();
    verifier.await.unwrap();
    let _ = ctx;
}

#[tokio::test]
async fn a_crash_looping_server_is_dead_with_the_reason() {
    let (ctx, mut handle) = context();
    let s = server(container(), true, None);
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::PATCH, DEPLOYMENT, |mut d| {
            d["status"] = json!({"replicas": 1, "readyReplicas": 0});
            d
        })
        .await;
        expect(&mut handle, Method::PATCH, SERVICE, |b| b).await;
        expect(&mut handle, Method::GET, PODS, |_| json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
            "metadata": {"name": "github-tools-1"},
            "status": {"containerStatuses": [{"name": "mcp-server", "image": "x", "imageID": "", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m"}}}]}
        }]})).await;
        let status = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        assert_eq!(status["status"]["state"], "Dead");
        assert_eq!(status["status"]["conditions"][1]["type"], "Degraded");
        assert_eq!(status["status"]["conditions"][1]["reason"], "ContainerFailing");
        assert!(status["status"]["conditions"][1]["message"].as_str().unwrap().contains("CrashLoopBackOff"));
    });
    reconcile(Arc::new(s), ctx.clone()).await.unwrap();
    verifier.await.unwrap();
    let gauge =
        |state: &str| ctx.metrics.provider_state.with_label_values(&["mcp-servers", "github-tools", state]).get();
    assert_eq!((gauge("Dead"), gauge("Ready")), (1, 0), "the guide's MCPServerDead alert fires on this");
}

#[tokio::test]
async fn a_remote_server_gets_no_workload() {
    let (ctx, mut handle) = context();
    let s = server(json!({"mode": "remote", "endpoint": "https://api.example.com/mcp"}), true, None);
    let verifier = tokio::spawn(async move {
        let status = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        assert_eq!(status["status"]["state"], "Initializing");
    });
    reconcile(Arc::new(s), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_deleted_server_is_cleaned_up_and_its_finalizer_removed() {
    let (ctx, mut handle) = context();
    let mut s = server(container(), true, None);
    s.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let verifier = tokio::spawn(async move {
        let patch = expect(&mut handle, Method::PATCH, SERVERS, |_| {
            serde_json::to_value(server(container(), false, None)).unwrap()
        })
        .await;
        assert_eq!(patch[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    });
    assert_eq!(reconcile(Arc::new(s), ctx).await.unwrap(), Action::await_change());
    verifier.await.unwrap();
}

#[tokio::test]
async fn api_errors_are_counted_by_kind() {
    let (ctx, mut handle) = context();
    let s = server(container(), true, None);
    let verifier = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        fail(send, 403, "Forbidden");
    });
    let error = reconcile(Arc::new(s), ctx.clone()).await.unwrap_err();
    verifier.await.unwrap();
    assert_eq!(error.metric_label(), "finalizer_error");
    assert_eq!(ctx.metrics.reconciles.with_label_values(&["MCPServer", "finalizer_error"]).get(), 1);
}

#[tokio::test]
async fn an_unreachable_core_shows_in_the_registered_condition() {
    let (ctx, mut handle) = context_with(|c| c.core = Some(crate::core::CoreClient::new("http://127.0.0.1:9", "key")));
    let s = server(json!({"mode": "remote", "endpoint": "https://api.example.com/mcp"}), true, None);
    let verifier = tokio::spawn(async move {
        let status = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        let registered = status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Registered")
            .unwrap()
            .clone();
        assert_eq!(registered["status"], "False");
        assert_eq!(registered["reason"], "CoreUnavailable");
        assert!(
            registered["message"].as_str().unwrap().contains("core at http://127.0.0.1:9 is unreachable"),
            "{registered}"
        );
    });
    reconcile(Arc::new(s), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_missing_policy_plugin_shows_in_plugin_resolved() {
    let (ctx, mut handle) = context_with_plugins();
    let s = server(
        json!({"mode": "remote", "endpoint": "https://api.example.com/mcp", "tools": {"policy": "strict"}}),
        true,
        None,
    );
    let verifier = tokio::spawn(async move {
        let status = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        let find = |t: &str| {
            status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).cloned().unwrap()
        };
        let resolved = find("PluginResolved");
        assert_eq!((resolved["status"].clone(), resolved["reason"].clone()), (json!("False"), json!("PluginNotFound")));
        assert!(resolved["message"].as_str().unwrap().contains("spec.tools.policy"));
        assert_eq!(find("Available")["status"], "False");
    });
    reconcile(Arc::new(s), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_state_change_is_recorded_as_an_event() {
    let reporter = kube::runtime::events::Reporter { controller: "hangar-operator".into(), instance: None };
    let (ctx, mut handle) =
        context_with(|c| c.recorder = Some(kube::runtime::events::Recorder::new(c.client.clone(), reporter)));
    let s = server(json!({"mode": "remote", "endpoint": "https://api.example.com/mcp"}), true, None);
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::PATCH, &format!("{SERVERS}/status"), |_| {
            serde_json::to_value(server(container(), true, None)).unwrap()
        })
        .await;
        let event =
            expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/mcp-servers/events", |b| b).await;
        assert_eq!(event["reason"], "AwaitingHealthCheck");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["regarding"]["name"], "github-tools");
        assert!(event["note"].as_str().unwrap().starts_with("new → Initializing"), "{event}");
    });
    reconcile(Arc::new(s), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_wake_up_scales_the_cold_servers_deployment_to_one() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        let cold = serde_json::to_value(server(json!({"mode": "container", "image": "x", "replicas": 0}), true, None))
            .unwrap();
        let namespace = cold["metadata"]["namespace"].as_str().unwrap().to_string();
        let path = format!("/apis/mcp-hangar.io/v1alpha1/namespaces/{namespace}/mcpservers/github-tools");
        expect(&mut handle, Method::GET, &path, |_| cold).await;
        let scale = expect(&mut handle, Method::PATCH, &format!("{DEPLOYMENT}/scale"), |_| {
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "github-tools"}, "spec": {"replicas": 1}})
        })
        .await;
        assert_eq!(scale, json!({"spec": {"replicas": 1}}));
    });
    wake(&ctx.client, "mcp-servers", "github-tools").await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn an_on_demand_server_is_created_cold_and_keeps_a_wake_up() {
    for (current, expected) in [(None, 0), (Some(1), 1)] {
        let (ctx, mut handle) = context();
        let s = server(json!({"mode": "container", "image": "x", "replicas": 0}), true, None);
        let verifier = tokio::spawn(async move {
            let (get, send) = handle.next_request().await.unwrap();
            assert_eq!((get.method().clone(), get.uri().path()), (Method::GET, DEPLOYMENT));
            match current {
                None => fail(send, 404, "NotFound"),
                Some(n) => send.send_response(
                    Response::builder()
                        .body(Body::from(serde_json::to_vec(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "github-tools"}, "spec": {"replicas": n, "selector": {}, "template": {}}})).unwrap()))
                        .unwrap(),
                ),
            }
            let applied = expect(&mut handle, Method::PATCH, DEPLOYMENT, |b| b).await;
            assert_eq!(applied["spec"]["replicas"], expected, "current {current:?}");
            expect_service_and_pods(&mut handle).await;
            expect_status(&mut handle).await;
        });
        reconcile(Arc::new(s), ctx).await.unwrap();
        verifier.await.unwrap();
    }
}

#[tokio::test]
async fn a_deployment_an_hpa_scales_gets_no_replicas_from_the_operator() {
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use kube::runtime::{reflector, watcher};
    for (hpa_namespace, owned_by_us) in [("mcp-servers", false), ("elsewhere", true)] {
        let (store, mut writer) = reflector::store::<HorizontalPodAutoscaler>();
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
            "metadata": {"name": "scale-github", "namespace": hpa_namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "github-tools"}, "maxReplicas": 5},
        }))
        .unwrap();
        writer.apply_watcher_event(&watcher::Event::Apply(hpa));
        let (ctx, mut handle) = context_with(|c| c.autoscalers = Some(store));
        let s = server(json!({"mode": "container", "image": "x", "replicas": 2}), true, None);
        let verifier = tokio::spawn(async move {
            let applied = expect(&mut handle, Method::PATCH, DEPLOYMENT, ready_deployment).await;
            let replicas = applied["spec"].get("replicas").cloned();
            assert_eq!(replicas, owned_by_us.then(|| json!(2)), "HPA in {hpa_namespace}");
            expect_service_and_pods(&mut handle).await;
            expect_status(&mut handle).await;
        });
        reconcile(Arc::new(s), ctx).await.unwrap();
        verifier.await.unwrap();
    }
}

#[test]
fn status_shows_the_newest_pod_start_and_a_health_check_fresh_to_five_minutes() {
    let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    let at = |seconds: i64| now.checked_add(SignedDuration::from_secs(seconds)).unwrap();
    let pod = |started: &str| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"startTime": started}})).unwrap()
    };
    let pods = [pod("2026-11-25T10:00:00Z"), pod("2026-11-25T11:00:00Z")];
    let ready = Assessment { state: State::Ready, reason: "AllReplicasReady", message: String::new() };
    let report = CoreReport {
        state: Some(State::Ready),
        since_health_check: Some(30),
        tools: vec!["a".into()],
        ..Default::default()
    };
    let first = next_status(&server(container(), true, None), &ready, None, &pods, Some(&report), now);
    assert_eq!(first.last_started_at.clone().unwrap().0.to_string(), "2026-11-25T11:00:00Z");
    assert_eq!(first.last_health_check.clone().unwrap().0.to_string(), "2026-11-25T11:59:30Z");
    assert_eq!((first.tools_count, first.tools.clone()), (1, vec!["a".to_string()]));

    // A minute later nothing else changed: the old check time stays (no write for it alone) ...
    let s = server(container(), true, Some(serde_json::to_value(&first).unwrap()));
    let later = next_status(&s, &ready, None, &[], Some(&report), at(60));
    assert_eq!(later.last_health_check, first.last_health_check);
    assert_eq!(later.last_started_at, first.last_started_at, "no pod now: when it last ran");
    // ... ten minutes later it is renewed, and so is it at once when the state changes.
    let renewed = next_status(&s, &ready, None, &[], Some(&report), at(600));
    assert_eq!(renewed.last_health_check.unwrap().0.to_string(), "2026-11-25T12:09:30Z");
    let degraded = Assessment { state: State::Degraded, reason: "HealthCheckFailing", message: String::new() };
    let changed = next_status(&s, &degraded, None, &[], Some(&report), at(60));
    assert_eq!(changed.last_health_check.unwrap().0.to_string(), "2026-11-25T12:00:30Z");
}

#[test]
fn health_check_failures_are_counted_once_from_cores_in_a_row_count() {
    assert_eq!(failures_since(0, 3), 3);
    assert_eq!(failures_since(3, 3), 0, "the same failures seen again");
    assert_eq!(failures_since(3, 5), 2);
    assert_eq!(failures_since(5, 1), 1, "a success reset the count, then one failed");
}

#[tokio::test]
async fn cores_namespace_is_labelled_for_the_network_policy() {
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        let applied = expect(&mut handle, Method::PATCH, "/api/v1/namespaces/mcp-system", |b| b).await;
        assert_eq!(applied["metadata"]["labels"]["mcp-hangar.io/core"], "true");
        assert_eq!(applied["kind"], "Namespace");
    });
    label_core_namespace(&ctx.client, "mcp-system").await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn an_operator_stopped_mid_reconcile_leaves_nothing_unowned_and_the_next_one_finishes() {
    // The first operator applies the Deployment and dies before the Service (its future dropped).
    let (ctx, mut handle) = context();
    let first = tokio::spawn(reconcile(Arc::new(server(container(), true, None)), ctx));
    let deployment = expect(&mut handle, Method::PATCH, DEPLOYMENT, |b| b).await;
    let (service_request, _never_answered) = handle.next_request().await.unwrap();
    assert_eq!(service_request.uri().path(), SERVICE);
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // What it left is owned by the MCPServer: deleting the server deletes it (no orphan).
    let owner = &deployment["metadata"]["ownerReferences"][0];
    assert_eq!((owner["uid"].clone(), owner["controller"].clone()), (json!("uid-1"), json!(true)));

    // A new operator reconciles from scratch: the same objects, both owned, status written.
    let (ctx, mut handle) = context();
    let verifier = tokio::spawn(async move {
        let again = expect(&mut handle, Method::PATCH, DEPLOYMENT, ready_deployment).await;
        assert_eq!(again, deployment, "server-side apply of the same object: idempotent");
        let service = expect_service_and_pods(&mut handle).await;
        assert_eq!(service["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        expect_status(&mut handle).await;
    });
    reconcile(Arc::new(server(container(), true, None)), ctx).await.unwrap();
    verifier.await.unwrap();
}
