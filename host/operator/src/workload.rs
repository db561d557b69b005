//! The Deployment and Service of a container-mode MCPServer, and the NetworkPolicy of its
//! namespace.

use std::collections::BTreeMap;

use hangar_api::{MCPServer, Transport, labels};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Container, ContainerPort, EmptyDirVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            SeccompProfile, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
        },
        discovery::v1::EndpointSlice,
        networking::v1::{
            NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::{Resource, ResourceExt};

/// Where the operator's own image is, for the stdio bridge's init container, and how MCP server
/// pods are isolated.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `hangar` image (it carries the `hangar bridge` binary).
    pub hangar_image: String,
    pub isolation: Isolation,
}

/// The NetworkPolicy the operator keeps in every namespace that holds a container-mode
/// MCPServer (named `mcp-server-isolation`, selecting pods labelled `mcp-hangar.io/mcp_server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// None: the cluster's own policies apply.
    Off,
    /// Only namespaces labelled `mcp-hangar.io/core=true` (core's) may reach MCP server pods, so
    /// nothing in the cluster calls a server past core's allow-lists and rate limits. Egress stays
    /// open: servers call the APIs they wrap.
    #[default]
    Ingress,
    /// The guide's policy: ingress as above, and egress only to those namespaces too (no DNS, no
    /// internet), for servers that need neither.
    Full,
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Isolation::Off),
            "ingress" => Ok(Isolation::Ingress),
            "full" => Ok(Isolation::Full),
            other => Err(format!("{other:?}: expected off, ingress or full")),
        }
    }
}

/// Name of the NetworkPolicy the operator keeps per namespace (the guide's).
pub const ISOLATION_POLICY: &str = "mcp-server-isolation";

/// The namespace's NetworkPolicy for `isolation`; None when it is off.
pub fn network_policy(namespace: &str, isolation: Isolation) -> Option<NetworkPolicy> {
    let core = || {
        vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(labels::CORE_NAMESPACE.to_string(), "true".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        }]
    };
    let (types, egress) = match isolation {
        Isolation::Off => return None,
        Isolation::Ingress => (vec!["Ingress".to_string()], None),
        Isolation::Full => (
            vec!["Ingress".to_string(), "Egress".to_string()],
            Some(vec![NetworkPolicyEgressRule { to: Some(core()), ..Default::default() }]),
        ),
    };
    Some(NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(ISOLATION_POLICY.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "hangar".to_string())])),
            ..Default::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(labels::MCP_SERVER.to_string(), "true".to_string())])),
                ..Default::default()
            }),
            policy_types: Some(types),
            ingress: Some(vec![NetworkPolicyIngressRule { from: Some(core()), ..Default::default() }]),
            egress,
        }),
    })
}

/// Where the init container copies `hangar` for a stdio server's bridge.
const BRIDGE_DIR: &str = "/hangar-bin";

/// The label naming the server on every object made for it (Kubernetes' recommended label).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The labels every object of a server carries; the pod's also select it.
pub fn server_labels(server: &MCPServer) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), server.name_any()),
        ("app.kubernetes.io/managed-by".to_string(), "hangar".to_string()),
        (labels::MCP_SERVER.to_string(), "true".to_string()),
    ])
}

fn selector_labels(server: &MCPServer) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), server.name_any()), (labels::MCP_SERVER.to_string(), "true".to_string())])
}

fn metadata(server: &MCPServer) -> ObjectMeta {
    ObjectMeta {
        name: Some(server.name_any()),
        namespace: server.namespace(),
        labels: Some(server_labels(server)),
        owner_references: server.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The server's Deployment: its container with the secure defaults merged with the user's
/// override, env passed through as written (secretKeyRef values are never read), probes on the
/// MCP port; `transport: stdio` runs the command under `hangar bridge`.
pub fn deployment(server: &MCPServer, settings: &Settings) -> Deployment {
    let spec = &server.spec;
    let port = spec.port;
    let mut volumes = spec.volumes.clone();
    let mut mounts = spec.volume_mounts.clone();
    let mut init_containers = Vec::new();
    let (command, args) = match spec.transport {
        Transport::StreamableHttp => (spec.command.clone(), spec.args.clone()),
        Transport::Stdio => {
            volumes.push(Volume {
                name: "hangar-bin".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            let mount = VolumeMount { name: "hangar-bin".into(), mount_path: BRIDGE_DIR.into(), ..Default::default() };
            mounts.push(mount.clone());
            init_containers.push(Container {
                name: "hangar-bridge".into(),
                image: Some(settings.hangar_image.clone()),
                command: Some(vec!["/hangar".into(), "install-bridge".into(), format!("{BRIDGE_DIR}/hangar")]),
                security_context: Some(hangar_api::secure_security_context()),
                volume_mounts: Some(vec![mount]),
                ..Default::default()
            });
            let mut args = vec!["bridge".to_string(), "--listen".into(), format!("0.0.0.0:{port}")];
            // The pod enforces the server's tool lists too: a client inside the cluster that
            // reaches the pod directly gets no tool core would refuse.
            let tools = spec.tools.clone().unwrap_or_default();
            args.extend(tools.allow_list.iter().flat_map(|t| ["--allow".to_string(), t.clone()]));
            args.extend(tools.deny_list.iter().flat_map(|t| ["--deny".to_string(), t.clone()]));
            args.push("--".into());
            args.extend(spec.command.iter().cloned());
            args.extend(spec.args.iter().cloned());
            (vec![format!("{BRIDGE_DIR}/hangar")], args)
        }
    };
    // MCP has no GET health path: readiness is the port; health is core's MCP check.
    let probe = |initial: i32| Probe {
        tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), ..Default::default() }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        ..Default::default()
    };
    let container = Container {
        name: "mcp-server".into(),
        image: spec.image.clone(),
        command: (!command.is_empty()).then_some(command),
        args: (!args.is_empty()).then_some(args),
        env: (!spec.env.is_empty()).then(|| spec.env.clone()),
        ports: Some(vec![ContainerPort { name: Some("mcp".into()), container_port: port, ..Default::default() }]),
        resources: spec.resources.clone(),
        security_context: Some(spec.effective_security_context()),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        readiness_probe: Some(probe(1)),
        ..Default::default()
    };
    let pod_labels = server_labels(server);
    Deployment {
        metadata: metadata(server),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector { match_labels: Some(selector_labels(server)), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    service_account_name: spec.service_account_name.clone(),
                    node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
                    tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
                    automount_service_account_token: Some(spec.service_account_name.is_some()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: spec.effective_security_context().run_as_non_root,
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The server's Service: the MCP port, selecting the server's pods.
pub fn service(server: &MCPServer) -> Service {
    Service {
        metadata: metadata(server),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(server)),
            ports: Some(vec![ServicePort {
                name: Some("mcp".into()),
                port: server.spec.port,
                target_port: Some(IntOrString::String("mcp".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The URL core reaches the server at: its Service, or the remote endpoint.
pub fn endpoint(server: &MCPServer) -> Option<String> {
    match server.spec.mode {
        hangar_api::ServerMode::Remote => server.spec.endpoint.clone(),
        hangar_api::ServerMode::Container => Some(format!(
            "http://{}.{}.svc:{}{}",
            server.name_any(),
            server.namespace().unwrap_or_else(|| "default".into()),
            server.spec.port,
            server.spec.path
        )),
    }
}

/// The ready endpoints of one of a server's EndpointSlices as URLs core dials (the pod's IP, the
/// slice's `mcp` port, the server's path); terminating and unready pods are left out.
pub fn ready_addresses(slice: &EndpointSlice, spec: &hangar_api::MCPServerSpec) -> Vec<String> {
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        return Vec::new();
    }
    let port = slice.ports.iter().flatten().find(|p| p.name.as_deref() == Some("mcp")).and_then(|p| p.port);
    let Some(port) = port else { return Vec::new() };
    slice
        .endpoints
        .iter()
        .filter(|e| {
            let c = e.conditions.as_ref();
            c.and_then(|c| c.ready).unwrap_or(true) && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .flat_map(|e| e.addresses.iter())
        .map(|ip| match slice.address_type.as_str() {
            "IPv6" => format!("http://[{ip}]:{port}{}", spec.path),
            _ => format!("http://{ip}:{port}{}", spec.path),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn full_isolation_is_the_guides_policy_and_ingress_leaves_egress_open() {
        assert!(network_policy("mcp-servers", Isolation::Off).is_none());
        let guide: serde_json::Value =
            serde_yaml::from_str(include_str!("../../../examples/kubernetes/networkpolicy.yaml")).unwrap();
        let full = serde_json::to_value(network_policy("mcp-servers", Isolation::Full).unwrap()).unwrap();
        assert_eq!(full["spec"], guide["spec"]);
        assert_eq!(full["metadata"]["name"], guide["metadata"]["name"]);
        let ingress = serde_json::to_value(network_policy("mcp-servers", Isolation::Ingress).unwrap()).unwrap();
        assert_eq!(ingress["spec"]["policyTypes"], serde_json::json!(["Ingress"]));
        assert_eq!(ingress["spec"]["ingress"], guide["spec"]["ingress"]);
        assert!(ingress["spec"].get("egress").is_none());
        assert_eq!("full".parse::<Isolation>(), Ok(Isolation::Full));
        assert!("strict".parse::<Isolation>().unwrap_err().contains("expected off, ingress or full"));
    }

    use super::*;

    fn server(yaml: &str) -> MCPServer {
        let mut s: MCPServer = serde_yaml::from_str(yaml).unwrap();
        s.metadata.uid = Some("uid-1".into());
        s
    }

    fn settings() -> Settings {
        Settings { hangar_image: "ghcr.io/mcp-hangar/hangar:0.1.0".into(), isolation: Isolation::Ingress }
    }

    const GITHUB: &str = "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: github-tools, namespace: mcp-servers}\nspec:\n  mode: container\n  image: ghcr.io/modelcontextprotocol/mcp-github:latest\n  env:\n  - name: GITHUB_TOKEN\n    valueFrom: {secretKeyRef: {name: github-credentials, key: token}}\n";

    #[test]
    fn a_container_server_becomes_a_secure_deployment_owned_by_it() {
        let d = deployment(&server(GITHUB), &settings());
        let meta = &d.metadata;
        assert_eq!(meta.name.as_deref(), Some("github-tools"));
        assert_eq!(meta.namespace.as_deref(), Some("mcp-servers"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("MCPServer", "github-tools", Some(true))
        );
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["mcp-hangar.io/mcp_server"], "true", "the guide's NetworkPolicy selects this");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "hangar");
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(65534));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        // The secret is referenced, never read.
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.value, None);
        assert_eq!(env.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "token");
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
        assert!(c.readiness_probe.is_some());
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert!(pod.init_containers.is_none());
    }

    #[test]
    fn the_users_override_replaces_only_its_fields() {
        let s = server(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: my-mcp-server}\nspec:\n  mode: container\n  image: x\n  securityContext: {runAsUser: 1000, readOnlyRootFilesystem: false}\n",
        );
        let d = deployment(&s, &settings());
        let sc = d.spec.unwrap().template.spec.unwrap().containers[0].security_context.clone().unwrap();
        assert_eq!(
            (sc.run_as_user, sc.read_only_root_filesystem, sc.run_as_non_root),
            (Some(1000), Some(false), Some(true))
        );
    }

    #[test]
    fn a_stdio_server_runs_under_the_bridge() {
        let s = server(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: fs, namespace: t}\nspec:\n  mode: container\n  image: node:20\n  transport: stdio\n  port: 9000\n  command: [npx, server-filesystem]\n  args: [/data]\n  tools: {allowList: [read_*], denyList: [read_secret]}\n",
        );
        let pod = deployment(&s, &settings()).spec.unwrap().template.spec.unwrap();
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.image.as_deref(), Some("ghcr.io/mcp-hangar/hangar:0.1.0"));
        let c = &pod.containers[0];
        assert_eq!(c.command.as_deref(), Some(&["/hangar-bin/hangar".to_string()][..]));
        assert_eq!(
            c.args.as_deref().unwrap(),
            [
                "bridge",
                "--listen",
                "0.0.0.0:9000",
                "--allow",
                "read_*",
                "--deny",
                "read_secret",
                "--",
                "npx",
                "server-filesystem",
                "/data"
            ]
        );
        assert!(pod.volumes.unwrap().iter().any(|v| v.name == "hangar-bin" && v.empty_dir.is_some()));
    }

    #[test]
    fn cold_servers_have_zero_replicas_and_services_point_at_the_mcp_port() {
        let s = server(
            "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata: {name: expensive-tool, namespace: n}\nspec: {mode: container, image: x, replicas: 0}\n",
        );
        assert_eq!(deployment(&s, &settings()).spec.unwrap().replicas, Some(0));
        let svc = service(&s);
        let port = &svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
        assert_eq!((port.port, port.target_port.clone()), (8080, Some(IntOrString::String("mcp".into()))));
        assert_eq!(endpoint(&s).as_deref(), Some("http://expensive-tool.n.svc:8080/mcp"));
    }
}
