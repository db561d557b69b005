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
            list.uri().query().unwrap().contains("labelSelector=mcp-hangar.io%2Fdiscovered-by%3Ddefs"),
            "{}",
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
