//! The MCPServer reconciler: a container server gets its Deployment and Service by server-side
//! apply (owned, so deleting the server deletes them); every server gets a status assessed from
//! what Kubernetes shows, written only when it changed. A finalizer gives cleanup its turn.

use std::{sync::Arc, time::Duration};

use hangar_api::{MCPServer, MCPServerStatus, ServerMode, State};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Namespace, ObjectReference, Pod, Service},
        discovery::v1::EndpointSlice,
        networking::v1::NetworkPolicy,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event as KubeEvent, EventType, Recorder},
        finalizer::{Event as Finalizer, finalizer},
        reflector::{ObjectRef, Store},
    },
};
use serde_json::json;

use crate::{
    core::CoreClient,
    metrics::Metrics,
    status::{self, Assessment, CoreReport},
    workload::{self, Settings},
};

/// Kept on every MCPServer until its cleanup ran.
pub const FINALIZER: &str = "mcp-hangar.io/cleanup";
/// The field manager of everything the operator applies.
pub const MANAGER: &str = "hangar-operator";
/// How often a steady object is looked at again (changes of what it owns also trigger one).
pub const RESYNC: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    /// Core's admin API; None when `hangar.url` is empty (status then shows what Kubernetes alone tells).
    pub core: Option<CoreClient>,
    /// Runs the discovery parsers (and any custom plugin from the plugins ConfigMap).
    pub plugins: Option<hangar_plugin_runtime::PluginRuntime>,
    /// Publishes Kubernetes Events (state changes, failures); None in tests that do not look.
    pub recorder: Option<Recorder>,
    /// The HorizontalPodAutoscalers of the cluster: a Deployment one of them scales gets no
    /// `replicas` from the operator. None: no autoscalers.
    pub autoscalers: Option<Store<HorizontalPodAutoscaler>>,
    /// Every MCPServer as the controller's cache has it: discovery applies over no object a
    /// source did not create.
    pub servers: Option<Store<MCPServer>>,
    /// The EndpointSlices of servers' Services: core is given each ready pod's address, so that
    /// a session stays on the pod that opened it. None: core dials the Service.
    pub endpoint_slices: Option<Store<EndpointSlice>>,
}

impl Context {
    /// Records an event on `object`; a failure to record is logged, never fatal.
    pub async fn event(&self, object: &ObjectReference, warning: bool, reason: &str, note: String) {
        let Some(recorder) = &self.recorder else { return };
        let event = KubeEvent {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, object).await {
            match namespace_terminating(&e) {
                true => tracing::debug!("event {reason} not recorded: its namespace is being deleted"),
                false => tracing::warn!("recording event {reason}: {e}"),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("MCPServer {0} has no namespace; MCPServers are namespaced")]
    NoNamespace(String),
    #[error("{0}")]
    Core(String),
}

/// Whether an error (or one it wraps) is the API server refusing new objects in a namespace
/// being deleted: expected while a namespace with servers goes, not a failure to report.
pub fn namespace_terminating(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(kube::Error::Api(status)) = e.downcast_ref::<kube::Error>()
            && status.details.iter().flat_map(|d| d.causes.iter()).any(|c| c.reason == "NamespaceTerminating")
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl Error {
    /// The `result` label of `mcp_operator_reconcile_total` for this error.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Finalizer(_) => "finalizer_error",
            Error::NoNamespace(_) => "invalid",
            Error::Core(_) => "core_error",
        }
    }
}

pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "MCPServer", &*server.clone(), async {
        let namespace = server.namespace().ok_or_else(|| Error::NoNamespace(server.name_any()))?;
        let api = Api::<MCPServer>::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, server, |event| async {
            match event {
                Finalizer::Apply(server) => apply(&server, &ctx).await,
                Finalizer::Cleanup(server) => cleanup(&server, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    })
    .await
}

/// Runs one reconcile of `kind` for `object` (`namespace/name`), timed into
/// `mcp_operator_reconcile_duration_seconds`, counted by result into
/// `mcp_operator_reconcile_total` and traced as a span (every reconciler goes through here).
pub async fn measured(
    ctx: &Context,
    kind: &str,
    object: &impl ResourceExt,
    reconcile: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let span = tracing::info_span!(
        target: hangar_telemetry::SPANS,
        "reconcile",
        otel.name = %format_args!("reconcile {kind}"),
        k8s.namespace.name = object.namespace().unwrap_or_default(),
        hangar.object = %object.name_any(),
        error.type = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let timer = ctx.metrics.reconcile_duration.with_label_values(&[kind]).start_timer();
    let result = tracing::Instrument::instrument(reconcile, span.clone()).await;
    let label = result.as_ref().map_or_else(Error::metric_label, |_| "ok");
    if label != "ok" {
        hangar_telemetry::failed(&span, label);
    }
    ctx.metrics.reconciles.with_label_values(&[kind, label]).inc();
    timer.observe_duration();
    result
}

/// Retry soon after a failure; the error is already counted.
pub fn error_policy(server: Arc<MCPServer>, error: &Error, _ctx: Arc<Context>) -> Action {
    if namespace_terminating(error) {
        // Its namespace is being deleted: the MCPServer goes too, and its finalizer runs then.
        tracing::debug!(server = %server.name_any(), "namespace terminating; nothing to apply");
        return Action::requeue(Duration::from_secs(5));
    }
    tracing::warn!(server = %server.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(15))
}

async fn apply(server: &MCPServer, ctx: &Context) -> Result<Action, Error> {
    let namespace = server.namespace().unwrap_or_default();
    let name = server.name_any();
    let client = &ctx.client;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
    // An on-demand server's Deployment is read before core's report, and applied only if it did
    // not change since (resourceVersion precondition): a wake-up before the read shows in the
    // report (core counts the held call as activity before it asks), one after it fails the
    // apply. Otherwise a report from before a wake-up would scale the woken server back to zero.
    let woken = if server.spec.mode == ServerMode::Container && server.spec.on_demand() {
        Some(deployments.get_opt(&name).await?)
    } else {
        None
    };
    // Registration is idempotent and repeated on every reconcile, so a restarted core is
    // refilled at once.
    let (registered, report) = match (&ctx.core, workload::endpoint(server)) {
        (Some(core), Some(endpoint)) => match header_secrets(client, &namespace, &server.spec).await {
            Err(why) => (Some(Err(why)), None),
            Ok(secrets) => match core
                .register_server(&namespace, &name, &server.spec, &endpoint, &pod_urls(server, ctx), &secrets)
                .await
            {
                Ok(()) => (Some(Ok(())), core.report(&namespace, &name).await.ok().flatten()),
                Err(e) => (Some(Err(e.to_string())), None),
            },
        },
        _ => (None, None),
    };
    let (deployment, pods) = match server.spec.mode {
        ServerMode::Container => {
            let mut desired = workload::deployment(server, &ctx.settings);
            if autoscaled(ctx.autoscalers.as_ref(), &namespace, &name) && !server.spec.on_demand() {
                // Leaving the field out of the apply gives up its ownership: the HPA decides.
                if let Some(spec) = desired.spec.as_mut() {
                    spec.replicas = None;
                }
            } else if let Some(existing) = &woken {
                // Wake-ups scale the Deployment; reconciling keeps what they set (see desired_replicas).
                let current = existing.as_ref().and_then(|d| d.spec.as_ref().and_then(|s| s.replicas));
                if let Some(spec) = desired.spec.as_mut() {
                    spec.replicas = Some(status::desired_replicas(&server.spec, current, report.as_ref()));
                }
                desired.metadata.resource_version = existing.as_ref().and_then(|d| d.resource_version());
            }
            let params = PatchParams::apply(MANAGER).force();
            if let Some(policy) = workload::network_policy(&namespace, ctx.settings.isolation) {
                Api::<NetworkPolicy>::namespaced(client.clone(), &namespace)
                    .patch(workload::ISOLATION_POLICY, &params, &Patch::Apply(policy))
                    .await?;
            }
            let deployment = match deployments.patch(&name, &params, &Patch::Apply(desired)).await {
                // Changed since it was read (a wake-up, most likely): decide again on fresh reads.
                Err(kube::Error::Api(e)) if e.code == 409 && woken.is_some() => {
                    tracing::debug!(server = %name, "deployment changed while reconciling; again shortly");
                    return Ok(Action::requeue(Duration::from_millis(500)));
                }
                applied => applied?,
            };
            Api::<Service>::namespaced(client.clone(), &namespace)
                .patch(&name, &params, &Patch::Apply(workload::service(server)))
                .await?;
            let selector = format!("{}={name},{}=true", workload::NAME_LABEL, hangar_api::labels::MCP_SERVER);
            let pods = Api::<Pod>::namespaced(client.clone(), &namespace)
                .list(&ListParams::default().labels(&selector))
                .await?;
            (Some(deployment), pods.items)
        }
        ServerMode::Remote => (None, Vec::new()),
    };
    let assessment = status::assess(&server.spec, deployment.as_ref(), &pods, report.as_ref());
    ctx.metrics.set_state(&namespace, &name, assessment.state);
    let mut status = next_status(server, &assessment, deployment.as_ref(), &pods, report.as_ref(), Timestamp::now());
    if let Some(report) = &report {
        ctx.metrics.tools_count.with_label_values(&[&namespace, &name]).set(report.tools.len() as i64);
        let before = server.status.as_ref().map_or(0, |s| s.consecutive_failures);
        let new = failures_since(before, report.consecutive_failures);
        ctx.metrics.health_check_failures.with_label_values(&[&namespace, &name]).inc_by(new as u64);
    }
    let available = match deployment.as_ref().and_then(|d| d.status.as_ref()) {
        Some(ds) => ds.available_replicas.unwrap_or(0) >= 1,
        None => assessment.state.serves(),
    };
    let (reason, message) = if available {
        ("MinimumReplicasAvailable", "at least one replica serves")
    } else {
        ("NoReplicasAvailable", "no replica serves yet")
    };
    let previous = server.status.clone().unwrap_or_default();
    let generation = server.metadata.generation;
    let mut add = |type_: &str, ok: bool, reason: &str, message: &str| {
        status.conditions.push(condition_of(&previous.conditions, type_, ok, reason, message, generation));
    };
    add("Available", available, reason, message);
    if let Some(plugins) = &ctx.plugins {
        let (ok, reason, message) = plugin_resolution(server, plugins);
        add("PluginResolved", ok, reason, &message);
    }
    if let Some(outcome) = registered {
        let (ok, reason, message) = match outcome {
            Ok(()) => (true, "Registered", "registered with core".to_string()),
            Err(e) => (false, "CoreUnavailable", e),
        };
        add("Registered", ok, reason, &message);
    }
    if server.status.as_ref() != Some(&status) {
        tracing::debug!(server = %name, state = %assessment.state, "status changed");
        Api::<MCPServer>::namespaced(client.clone(), &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await?;
        let before = server.status.as_ref().and_then(|s| s.state);
        if before != Some(assessment.state) {
            let warning = matches!(assessment.state, State::Degraded | State::Dead);
            let from = before.map_or("new".to_string(), |s| s.to_string());
            let note = format!("{from} → {}: {}", assessment.state, assessment.message);
            ctx.event(&server.object_ref(&()), warning, assessment.reason, note).await;
        }
    }
    // An on-demand server with pods is looked at again once it may have become idle, so its
    // pods go about idleTTL after the last call (not up to a resync later).
    let next = match server.spec.on_demand() && status.replicas > 0 {
        true => server.spec.idle_ttl.as_std().clamp(Duration::from_secs(2), RESYNC),
        false => RESYNC,
    };
    Ok(Action::requeue(next))
}

/// Health checks failed since the last look, from two readings of core's in-a-row count: a
/// smaller reading means a success reset the count in between.
fn failures_since(before: i32, now: i32) -> i32 {
    if now >= before { now - before } else { now }
}

/// The server a pod runs (its name label, set by `workload::server_labels`).
pub fn pod_server(pod: &Pod) -> Option<ObjectRef<MCPServer>> {
    let name = pod.labels().get(workload::NAME_LABEL)?;
    Some(ObjectRef::new(name).within(pod.metadata.namespace.as_deref().unwrap_or_default()))
}

/// The server an EndpointSlice belongs to (its Service has the server's name).
pub fn sliced_server(slice: &EndpointSlice) -> Option<ObjectRef<MCPServer>> {
    let service = slice.labels().get("kubernetes.io/service-name")?;
    Some(ObjectRef::new(service).within(slice.metadata.namespace.as_deref().unwrap_or_default()))
}

/// A container server's ready pods as core reaches them (`http://IP:PORT/PATH`), from the
/// cached EndpointSlices of its Service; sorted, so an unchanged set registers unchanged.
fn pod_urls(server: &MCPServer, ctx: &Context) -> Vec<String> {
    let Some(slices) = &ctx.endpoint_slices else { return Vec::new() };
    if server.spec.mode != ServerMode::Container {
        return Vec::new();
    }
    let wanted = ObjectRef::<MCPServer>::new(&server.name_any()).within(&server.namespace().unwrap_or_default());
    let mut urls: Vec<String> = slices
        .state()
        .iter()
        .filter(|slice| sliced_server(slice).as_ref() == Some(&wanted))
        .flat_map(|slice| workload::ready_addresses(slice, &server.spec))
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// The Deployment a HorizontalPodAutoscaler scales, as the MCPServer of the same name and
/// namespace (which owns it, if it is one of ours).
pub fn scaled_server(hpa: &HorizontalPodAutoscaler) -> Option<ObjectRef<MCPServer>> {
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    (target.kind == "Deployment")
        .then(|| ObjectRef::new(&target.name).within(hpa.metadata.namespace.as_deref().unwrap_or_default()))
}

/// Whether a HorizontalPodAutoscaler scales the Deployment `namespace/name`.
pub fn autoscaled(autoscalers: Option<&Store<HorizontalPodAutoscaler>>, namespace: &str, name: &str) -> bool {
    let wanted = ObjectRef::<MCPServer>::new(name).within(namespace);
    autoscalers.is_some_and(|store| store.state().iter().any(|hpa| scaled_server(hpa).as_ref() == Some(&wanted)))
}

/// Whether the tool policy plugin the server names is loaded, of the right world, and as pinned.
fn plugin_resolution(
    server: &MCPServer,
    plugins: &hangar_plugin_runtime::PluginRuntime,
) -> (bool, &'static str, String) {
    let tools = server.spec.tools.clone().unwrap_or_default();
    let name = tools.policy.unwrap_or_else(|| "policy".into());
    match plugins.current(&name) {
        None => (
            false,
            "PluginNotFound",
            format!("no plugin named {name:?}: add {name}.wasm to the plugins ConfigMap or fix spec.tools.policy"),
        ),
        Some(v) if v.world != hangar_plugin_runtime::WorldKind::Policy => (
            false,
            "WrongWorld",
            format!("plugin {name:?} is a {} plugin; spec.tools.policy needs a policy plugin", v.world.as_str()),
        ),
        Some(v) if tools.policy_sha256.as_ref().is_some_and(|pin| *pin != v.digest) => (
            false,
            "DigestMismatch",
            format!("plugin {name:?} has sha256 {}, but spec.tools.policySha256 pins another", v.digest),
        ),
        Some(v) => (true, "PluginLoaded", format!("policy plugin {name:?} (sha256 {})", &v.digest[..12])),
    }
}

/// Core held a call for a Cold server: scale its Deployment to one replica. Core names servers
/// without namespace; every on-demand MCPServer of that name is woken.
pub async fn wake(client: &Client, namespace: &str, server: &str) -> Result<(), Error> {
    let Some(s) = Api::<MCPServer>::namespaced(client.clone(), namespace).get_opt(server).await? else {
        return Ok(());
    };
    if !(s.spec.on_demand() && s.spec.mode == ServerMode::Container) {
        return Ok(());
    }
    tracing::info!(server, namespace, "waking: scaling to 1 replica");
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    let scale = Patch::Merge(json!({"spec": {"replicas": 1}}));
    // Core asks for a wake-up as soon as a new server is registered, which the reconcile does
    // before it applies the Deployment: wait for the Deployment rather than lose the wake-up.
    for attempt in 1.. {
        match deployments.patch_scale(server, &PatchParams::default(), &scale).await {
            Err(kube::Error::Api(e)) if e.code == 404 && attempt < WAKE_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other.map(|_| ()).map_err(Error::from),
        }
    }
    Ok(())
}

/// How often a wake-up looks for a Deployment that is not there yet (every 0.5 s).
const WAKE_ATTEMPTS: u32 = 60;

/// Labels core's namespace `mcp-hangar.io/core=true` (server-side apply of that one label), so
/// the guide's NetworkPolicy, which admits only namespaces so labelled, lets core reach servers.
pub async fn label_core_namespace(client: &Client, namespace: &str) -> Result<(), Error> {
    let labelled = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {hangar_api::labels::CORE_NAMESPACE: "true"}},
    });
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::apply(MANAGER), &Patch::Apply(labelled))
        .await?;
    Ok(())
}

async fn cleanup(server: &MCPServer, ctx: &Context) -> Result<Action, Error> {
    // The Deployment and Service go with their owner; core's registration and the metrics are
    // the operator's to clear.
    let namespace = server.namespace().unwrap_or_default();
    if let Some(core) = &ctx.core {
        core.remove_server(&namespace, &server.name_any()).await.map_err(|e| Error::Core(e.to_string()))?;
    }
    for state in State::ALL {
        let _ = ctx.metrics.provider_state.remove_label_values(&[&namespace, &server.name_any(), state.as_str()]);
    }
    Ok(Action::await_change())
}

/// How stale `status.lastHealthCheck` may get before it is rewritten: fresher would mean a status
/// write for every server on every resync.
const HEALTH_CHECK_STALENESS: SignedDuration = SignedDuration::from_secs(300);

/// The status to show: unchanged parts keep their values (and conditions their transition
/// times), so an unchanged server compares equal and causes no write.
fn next_status(
    server: &MCPServer,
    assessment: &Assessment,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    report: Option<&CoreReport>,
    now: Timestamp,
) -> MCPServerStatus {
    let previous = server.status.clone().unwrap_or_default();
    let deployment_status = deployment.and_then(|d| d.status.as_ref());
    let generation = server.metadata.generation;
    let ready = assessment.state == State::Ready;
    let conditions = vec![
        condition_of(&previous.conditions, "Ready", ready, assessment.reason, &assessment.message, generation),
        condition_of(
            &previous.conditions,
            "Degraded",
            matches!(assessment.state, State::Degraded | State::Dead),
            assessment.reason,
            &assessment.message,
            generation,
        ),
    ];
    // When the server last started, as the kubelet reports it: its running container's start
    // (a restart after a crash counts), else its pod's; with no pod running, when it last ran.
    let last_started_at = pods
        .iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            let running = status.container_statuses.iter().flatten().filter_map(|c| c.state.as_ref()?.running.as_ref());
            running.filter_map(|r| r.started_at.clone()).max_by_key(|t| t.0).or(status.start_time.clone())
        })
        .max_by_key(|t| t.0)
        .or(previous.last_started_at.clone());
    let checked = report
        .and_then(|r| r.since_health_check)
        .and_then(|s| now.checked_sub(SignedDuration::from_secs(s as i64)).ok());
    let last_health_check = match (checked, &previous.last_health_check) {
        (Some(at), Some(before))
            if previous.state == Some(assessment.state) && at.duration_since(before.0) < HEALTH_CHECK_STALENESS =>
        {
            Some(before.clone())
        }
        (Some(at), _) => Some(Time(at)),
        (None, before) => before.clone(),
    };
    let (tools, tools_count, consecutive_failures) = match report {
        Some(r) => (r.tools.clone(), r.tools.len() as i32, r.consecutive_failures),
        None => (previous.tools.clone(), previous.tools_count, previous.consecutive_failures),
    };
    MCPServerStatus {
        state: Some(assessment.state),
        replicas: deployment_status.and_then(|s| s.replicas).unwrap_or(0),
        ready_replicas: deployment_status.and_then(|s| s.ready_replicas).unwrap_or(0),
        tools,
        tools_count,
        consecutive_failures,
        last_started_at,
        last_health_check,
        observed_generation: generation,
        conditions,
    }
}

/// A standard Condition; its transition time stays as it was while its status does not change,
/// so an unchanged object compares equal.
pub fn condition_of(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let before = previous.iter().find(|c| c.type_ == type_);
    let last_transition_time = match before {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Time(Timestamp::now()),
    };
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// The values of the Secret keys a remote server's `spec.headers` name, read here so that core
/// needs no Secret rights; a missing Secret or key is named (its value never is).
async fn header_secrets(
    client: &kube::Client,
    namespace: &str,
    spec: &hangar_api::MCPServerSpec,
) -> Result<Vec<crate::core::SecretValue>, String> {
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace);
    let mut values = Vec::new();
    for (i, header) in spec.headers.iter().enumerate() {
        let Some(from) = &header.value_from else { continue };
        let wanted = &from.secret_key_ref;
        let field = format!("spec.headers[{i}].valueFrom.secretKeyRef");
        let secret = secrets
            .get_opt(&wanted.name)
            .await
            .map_err(|e| format!("{field}: reading Secret {namespace}/{}: {e}", wanted.name))?
            .ok_or_else(|| format!("{field}: Secret {namespace}/{} does not exist", wanted.name))?;
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&wanted.key))
            .ok_or_else(|| format!("{field}: Secret {namespace}/{} has no key {:?}", wanted.name, wanted.key))?;
        let value = String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("{field}: Secret {namespace}/{} key {:?} is not text", wanted.name, wanted.key))?;
        values.push(crate::core::SecretValue { name: wanted.name.clone(), key: wanted.key.clone(), value });
    }
    Ok(values)
}
