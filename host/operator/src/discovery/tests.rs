//! Discovery against a mocked API server, with the real built-in `configmap` parser plugin.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use super::*;
use crate::server::tests::{context_with_plugins, expect};

fn source(mode: &str) -> MCPDiscoverySource {
    serde_json::from_value(json!({
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
        "metadata": {"name": "defs", "namespace": "mcp-system", "generation": 1},
        "spec": {"type": "ConfigMap", "mode": mode, "configMapRef": {"name": "mcp-server-definitions", "namespace": "mcp-config"},
                 "providerTemplate": {"labels": {"team": "platform"}, "spec": {"idleTTL": "5m", "replicas": 0}}},
    }))
    .unwrap()
}

fn config_map(providers: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mcp-server-definitions", "namespace": "mcp-config"},
           "data": {"providers.yaml": providers}})
}

const CM: &str = "/api/v1/namespaces/mcp-config/configmaps/mcp-server-definitions";
const SERVERS: &str = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-system/mcpservers";
const STATUS: &str = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-system/mcpdiscoverysources/defs/status";
const PROVIDERS: &str = "math:\n  mode: remote\n  endpoint: http://math/mcp\nfetch:\n  mode: container\n  image: ghcr.io/x/fetch:1\n  replicas: 2\n";

#[tokio::test]
async fn additive_sources_apply_what_they_find_over_the_template() {
    let (ctx, mut handle) = context_with_plugins();
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::GET, CM, |_| config_map(PROVIDERS)).await;
        let fetch = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/defs-fetch"), |b| b).await;
        assert_eq!(fetch["spec"]["replicas"], 2, "the entry wins over the template");
        assert_eq!(fetch["spec"]["idleTTL"], "5m", "the template fills the rest");
        assert_eq!(fetch["metadata"]["labels"]["mcp-hangar.io/discovered-by"], "defs");
        assert_eq!(fetch["metadata"]["labels"]["mcp-hangar.io/discovered-by-namespace"], "mcp-system");
        assert_eq!(
            fetch["metadata"]["annotations"]["mcp-hangar.io/discovered-from"],
            "configmap/mcp-config/mcp-server-definitions"
        );
        assert_eq!(fetch["metadata"]["labels"]["team"], "platform");
        let math = expect(&mut handle, Method::PATCH, &format!("{SERVERS}/defs-math"), |b| b).await;
        assert_eq!(math["spec"]["endpoint"], "http://math/mcp");
        let status =
            expect(&mut handle, Method::PATCH, STATUS, |_| serde_json::to_value(source("Additive")).unwrap()).await;
        assert_eq!(status["status"]["discoveredCount"], 2);
        assert_eq!(status["status"]["discovered"], json!(["mcp-system/defs-fetch", "mcp-system/defs-math"]));
        assert_eq!(status["status"]["conditions"][0]["status"], "True");
    });
    reconcile(Arc::new(source("Additive")), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn authoritative_sources_prune_only_their_own_servers_that_are_gone() {
    let (ctx, mut handle) = context_with_plugins();
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::GET, CM, |_| config_map("math:\n  mode: remote\n  endpoint: http://math/mcp\n"))
            .await;
        expect(&mut handle, Method::PATCH, &format!("{SERVERS}/defs-math"), |b| b).await;
        let (list, send) = handle.next_request().await.unwrap();
        assert_eq!(list.uri().path(), "/apis/mcp-hangar.io/v1alpha1/mcpservers");
        assert!(
            list.uri().query().unwrap().contains(
                "labelSelector=mcp-hangar.io%2Fdiscovered-by%3Ddefs%2Cmcp-hangar.io%2Fdiscovered-by-namespace%3Dmcp-system"
            ),
            "pruning keys on the source's namespace and name: {}",
            list.uri()
        );
        let owned = |name: &str| {
            json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
            "metadata": {"name": name, "namespace": "mcp-system", "labels": {"mcp-hangar.io/discovered-by": "defs"}},
            "spec": {"mode": "remote", "endpoint": "http://x/mcp"}})
        };
        let items = json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerList", "metadata": {}, "items": [owned("defs-math"), owned("defs-old")]});
        send.send_response(
            http::Response::builder().body(kube::client::Body::from(serde_json::to_vec(&items).unwrap())).unwrap(),
        );
        expect(
            &mut handle,
            Method::DELETE,
            &format!("{SERVERS}/defs-old"),
            |_| json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        )
        .await;
        let status =
            expect(&mut handle, Method::PATCH, STATUS, |_| serde_json::to_value(source("Authoritative")).unwrap())
                .await;
        assert_eq!(status["status"]["discovered"], json!(["mcp-system/defs-math"]));
    });
    reconcile(Arc::new(source("Authoritative")), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_parse_error_keeps_the_last_good_set_and_shows_the_error() {
    let (ctx, mut handle) = context_with_plugins();
    let mut s = source("Authoritative");
    s.status =
        Some(serde_json::from_value(json!({"discoveredCount": 1, "discovered": ["mcp-system/defs-math"]})).unwrap());
    let verifier = tokio::spawn(async move {
        expect(&mut handle, Method::GET, CM, |_| config_map("math: [")).await;
        // No apply and no prune: straight to the status.
        let status =
            expect(&mut handle, Method::PATCH, STATUS, |_| serde_json::to_value(source("Authoritative")).unwrap())
                .await;
        assert_eq!(status["status"]["discoveredCount"], 1, "the last good set stays");
        let synced = &status["status"]["conditions"][0];
        assert_eq!((synced["status"].clone(), synced["reason"].clone()), (json!("False"), json!("SourceUnreadable")));
        assert!(synced["message"].as_str().unwrap().contains("invalid YAML"), "{synced}");
    });
    reconcile(Arc::new(s), ctx).await.unwrap();
    verifier.await.unwrap();
}

/// A Namespace source over tenant namespaces, as the guide's example.
fn namespace_source() -> MCPDiscoverySource {
    serde_json::from_value(json!({
        "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPDiscoverySource",
        "metadata": {"name": "teams", "namespace": "mcp-system", "generation": 1},
        "spec": {"type": "Namespace", "mode": "Additive", "namespaceSelector": {"matchLabels": {"mcp-hangar.io/enabled": "true"}}},
    }))
    .unwrap()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items})
}

fn labelled_config_map(namespace: &str, name: &str, providers: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace, "labels": {"mcp-hangar.io/providers": "true"}},
           "data": {"providers.yaml": providers}})
}

/// The reads of a Namespace source selecting team-a, answered with these ConfigMaps and no Services.
async fn expect_team_a_reads(handle: &mut crate::server::tests::Handle, config_maps: Vec<Value>) {
    expect(handle, Method::GET, "/api/v1/namespaces", |_| {
        list("NamespaceList", vec![json!({"metadata": {"name": "team-a"}})])
    })
    .await;
    expect(handle, Method::GET, "/api/v1/namespaces/team-a/configmaps", |_| list("ConfigMapList", config_maps)).await;
    expect(handle, Method::GET, "/api/v1/namespaces/team-a/services", |_| list("ServiceList", vec![])).await;
}

/// A server discovery applies in `namespace`, as the API server saw it.
async fn expect_applied(handle: &mut crate::server::tests::Handle, namespace: &str, name: &str) -> Value {
    let path = format!("/apis/mcp-hangar.io/v1alpha1/namespaces/{namespace}/mcpservers/{name}");
    expect(handle, Method::PATCH, &path, |b| b).await
}

/// The status patch of the `teams` source.
async fn expect_teams_status(handle: &mut crate::server::tests::Handle) -> Value {
    let path = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-system/mcpdiscoverysources/teams/status";
    expect(handle, Method::PATCH, path, |_| serde_json::to_value(namespace_source()).unwrap()).await
}

/// What a tenant who may write one labelled ConfigMap tries; each must be refused.
const HOSTILE: &str = "
ok: {mode: remote, endpoint: 'http://search.team-a/mcp'}
escape: {mode: remote, endpoint: 'http://x/mcp', namespace: kube-system}
root: {mode: container, image: x, securityContext: {privileged: true}}
escalate: {mode: container, image: x, securityContext: {allowPrivilegeEscalation: true}}
uid0: {mode: container, image: x, securityContext: {runAsUser: 0}}
caps: {mode: container, image: x, securityContext: {capabilities: {add: [NET_ADMIN], drop: [ALL]}}}
nodrop: {mode: container, image: x, securityContext: {capabilities: {drop: [NET_RAW]}}}
hostpath: {mode: container, image: x, volumes: [{name: root, hostPath: {path: /}}]}
sa: {mode: container, image: x, serviceAccountName: operator}
hostnet: {mode: container, image: x, hostNetwork: true}
owner: {mode: remote, endpoint: 'http://y/mcp', labels: {mcp-hangar.io/discovered-by: other}}
secret-header: {mode: remote, endpoint: 'http://evil.example/mcp', headers: [{name: Authorization, valueFrom: {secretKeyRef: {name: db-creds, key: password}}}]}
secret-env: {mode: container, image: x, env: [{name: T, valueFrom: {secretKeyRef: {name: db-creds, key: password}}}]}
secret-volume: {mode: container, image: x, volumes: [{name: s, secret: {secretName: db-creds}}]}
token: {mode: container, image: x, volumes: [{name: t, projected: {sources: [{serviceAccountToken: {path: token}}]}}]}
pvc: {mode: container, image: x, volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]}
nfs: {mode: container, image: x, volumes: [{name: n, nfs: {server: 127.0.0.1, path: /}}]}
tolerate: {mode: container, image: x, tolerations: [{operator: Exists}]}
pinned: {mode: container, image: x, nodeSelector: {kubernetes.io/hostname: control-plane}}
";

#[tokio::test]
async fn a_tenants_configmap_cannot_escape_its_namespace_or_ask_for_privileges() {
    let (ctx, mut handle) = context_with_plugins();
    let verifier = tokio::spawn(async move {
        let config_maps = vec![
            labelled_config_map("team-a", "tools", HOSTILE),
            // One broken document fails alone.
            labelled_config_map("team-a", "broken", "x: ["),
        ];
        expect_team_a_reads(&mut handle, config_maps).await;
        // Only two are applied, both in the tenant's own namespace, never in kube-system or mcp-system.
        let ok = expect_applied(&mut handle, "team-a", "teams-ok").await;
        assert_eq!(ok["spec"]["endpoint"], "http://search.team-a/mcp");
        let owner = expect_applied(&mut handle, "team-a", "teams-owner").await;
        assert_eq!(
            owner["metadata"]["labels"]["mcp-hangar.io/discovered-by"], "teams",
            "entries cannot claim another owner"
        );
        let status = expect_teams_status(&mut handle).await;
        let status = &status["status"];
        assert_eq!(status["discovered"], json!(["team-a/teams-ok", "team-a/teams-owner"]));
        assert_eq!(status["refusedCount"], 18, "{status:#}");
        let reason_of = |entry: &str| -> String {
            status["refused"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["entry"] == entry)
                .map(|r| r["reason"].as_str().unwrap().to_string())
                .unwrap_or_else(|| panic!("{entry} not refused: {status:#}"))
        };
        assert!(reason_of("escape").contains("spec.entryPermissions.namespaces"));
        assert!(reason_of("root").contains("entryPermissions.privileged"));
        assert!(reason_of("escalate").contains("entryPermissions.privileged"));
        assert!(reason_of("uid0").contains("entryPermissions.runAsRoot"));
        assert!(reason_of("caps").contains("entryPermissions.addCapabilities"));
        assert!(reason_of("nodrop").contains("entryPermissions.addCapabilities"));
        assert!(reason_of("hostpath").contains("entryPermissions.hostPath"));
        assert!(reason_of("sa").contains("entryPermissions.serviceAccount"));
        for entry in ["secret-header", "secret-env", "secret-volume"] {
            assert!(reason_of(entry).contains("\"db-creds\" is not in the source's spec.entryPermissions.secrets"));
        }
        assert!(reason_of("token").contains("entryPermissions.serviceAccountTokens"));
        assert!(reason_of("pvc").contains("entryPermissions.persistentVolumeClaims"));
        assert!(reason_of("nfs").contains("volumes[].nfs") && reason_of("nfs").contains("nodeVolumes"));
        assert!(reason_of("tolerate").contains("entryPermissions.scheduling"));
        assert!(reason_of("pinned").contains("nodeSelector") && reason_of("pinned").contains("scheduling"));
        assert!(reason_of("hostnet").contains("hostNetwork: not an MCPServer spec field"));
        let broken =
            status["refused"].as_array().unwrap().iter().find(|r| r["origin"] == "configmap/team-a/broken").unwrap();
        assert!(broken["reason"].as_str().unwrap().contains("invalid YAML"), "{broken}");
        assert_eq!(status["conditions"][0]["status"], "True", "the readable part still synced");
    });
    reconcile(Arc::new(namespace_source()), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn a_source_may_opt_in_to_namespaces_and_privileges_and_pin_template_fields() {
    let (ctx, mut handle) = context_with_plugins();
    let mut source = namespace_source();
    source.spec.entry_permissions =
        serde_json::from_value(json!({"namespaces": ["shared"], "runAsRoot": true})).unwrap();
    source.spec.provider_template = Some(
        serde_json::from_value(json!({"spec": {"image": "registry.example/approved:1"}, "pinnedFields": ["image"]}))
            .unwrap(),
    );
    let providers = "
moved: {mode: remote, endpoint: 'http://m/mcp', namespace: shared}
root: {mode: container, securityContext: {runAsUser: 0}}
swap: {mode: container, image: 'evil/image:latest'}
";
    let verifier = tokio::spawn(async move {
        expect_team_a_reads(&mut handle, vec![labelled_config_map("team-a", "tools", providers)]).await;
        expect_applied(&mut handle, "shared", "teams-moved").await;
        let root = expect_applied(&mut handle, "team-a", "teams-root").await;
        assert_eq!(root["spec"]["image"], "registry.example/approved:1", "the template's pinned image");
        assert_eq!(root["spec"]["securityContext"]["runAsUser"], 0);
        let status = expect_teams_status(&mut handle).await;
        assert_eq!(status["status"]["refusedCount"], 1);
        assert_eq!(status["status"]["refused"][0]["entry"], "swap");
        assert!(status["status"]["refused"][0]["reason"].as_str().unwrap().starts_with("image: pinned"));
    });
    reconcile(Arc::new(source), ctx).await.unwrap();
    verifier.await.unwrap();
}

#[tokio::test]
async fn ten_thousand_entries_in_one_configmap_are_parsed_and_admitted() {
    let (ctx, _handle) = context_with_plugins();
    let plugins = ctx.plugins.clone().unwrap();
    let mut providers = String::new();
    for i in 0..10_000 {
        providers.push_str(&format!(
            "s{i}:\n  mode: remote\n  endpoint: http://s{i}.tools.svc:8080/mcp\n  labels: {{team: t{}}}\n",
            i % 7
        ));
    }
    let document = Document {
        origin: "configmap/mcp-config/big".into(),
        namespace: "mcp-config".into(),
        name: "big".into(),
        key: "providers.yaml".into(),
        content: providers,
    };
    let spec = source("Additive").spec;
    let found = discover(&plugins, &spec, "mcp-system", "defs", SourceKind::ConfigMap, &[document]).unwrap();
    assert_eq!((found.servers.len(), found.refused.len()), (10_000, 0), "{:?}", found.refused.first());
    assert!(found.servers.iter().all(|s| s.metadata.namespace.as_deref() == Some("mcp-system")));
}
