//! An MCPServer's state and conditions from what Kubernetes shows (its Deployment and pods) and
//! what core reports (MCP health). Pure, so every branch is tested without a cluster.

use hangar_api::{MCPServerSpec, ServerMode, State};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};

/// What core reported about a server (GET /api/v1/servers), when core is configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CoreReport {
    pub state: Option<State>,
    pub consecutive_failures: i32,
    pub tools: Vec<String>,
    /// Seconds since the last call through core.
    pub idle_seconds: Option<u64>,
    /// Seconds since core's last MCP health check of the server (None: none ran yet).
    pub since_health_check: Option<u64>,
}

/// A state with the reason and a message a human can act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub state: State,
    pub reason: &'static str,
    pub message: String,
}

/// Pod waiting reasons that mean the server cannot start without a fix.
const FATAL_WAITING: [&str; 5] =
    ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError"];

/// The replicas a Deployment should have. Always-on servers: `spec.replicas`. On-demand servers
/// (`replicas: 0`): created at 0; woken to 1 by core's wake-up (outside this function); back to 0
/// once core reports `idleTTL` without calls; otherwise left as they are, so that reconciling
/// never undoes a wake-up.
pub fn desired_replicas(spec: &MCPServerSpec, current: Option<i32>, core: Option<&CoreReport>) -> i32 {
    if !spec.on_demand() {
        return spec.replicas;
    }
    let Some(current) = current else { return 0 };
    let idle = core.and_then(|c| c.idle_seconds).is_some_and(|s| s >= spec.idle_ttl.as_std().as_secs());
    if current >= 1 && idle { 0 } else { current }
}

pub fn assess(
    spec: &MCPServerSpec,
    deployment: Option<&Deployment>,
    pods: &[Pod],
    core: Option<&CoreReport>,
) -> Assessment {
    // A container that cannot start is the cause whatever core then reports.
    for pod in pods {
        for status in pod.status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
            let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(reason) = waiting.and_then(|w| w.reason.as_deref())
                && FATAL_WAITING.contains(&reason)
            {
                let detail = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
                return Assessment {
                    state: State::Dead,
                    reason: "ContainerFailing",
                    message: format!(
                        "container {} (image {}) is in {reason}: {detail}; check spec.image and `kubectl logs`",
                        status.name, status.image
                    ),
                };
            }
        }
    }
    let desired = deployment.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(spec.replicas);
    let status = deployment.and_then(|d| d.status.as_ref());
    let running = status.and_then(|s| s.replicas).unwrap_or(0);
    let ready = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    // Scaled to zero is Cold whatever core last saw (a start that timed out, say): the next
    // call wakes it again.
    if spec.mode == ServerMode::Container && desired == 0 && running == 0 {
        return Assessment {
            state: State::Cold,
            reason: "ScaledToZero",
            message: "replicas: 0; starts on the first request".into(),
        };
    }
    let threshold = spec.health_check.failure_threshold.max(1);
    if let Some(report) = core
        && report.consecutive_failures >= threshold
    {
        return Assessment {
            state: State::Dead,
            reason: "HealthCheckFailed",
            message: format!(
                "{} MCP health checks failed in a row (failureThreshold {threshold})",
                report.consecutive_failures
            ),
        };
    }
    if let Some(State::Dead) = core.and_then(|c| c.state) {
        return Assessment {
            state: State::Dead,
            reason: "CoreReportsDead",
            message: "core could not start or reach the server within spec.startupTimeout, or its checks keep failing"
                .into(),
        };
    }
    if spec.mode == ServerMode::Remote {
        return match core.and_then(|c| c.state) {
            Some(state) => Assessment { state, reason: "CoreReport", message: format!("core reports {state}") },
            None => Assessment {
                state: State::Initializing,
                reason: "AwaitingHealthCheck",
                message: "no MCP health check has passed yet".into(),
            },
        };
    }
    if ready == 0 {
        return Assessment {
            state: State::Initializing,
            reason: "PodsStarting",
            message: format!("0 of {desired} replicas ready"),
        };
    }
    match core.and_then(|c| c.state) {
        Some(State::Ready) | None if ready >= desired => Assessment {
            state: State::Ready,
            reason: "AllReplicasReady",
            message: format!("{ready} of {desired} replicas ready"),
        },
        Some(State::Initializing) => Assessment {
            state: State::Initializing,
            reason: "AwaitingHealthCheck",
            message: format!("{ready} of {desired} replicas ready; no MCP health check has passed yet"),
        },
        Some(State::Degraded) => Assessment {
            state: State::Degraded,
            reason: "HealthCheckFailing",
            message: "core's MCP health checks are failing; see the server's logs".into(),
        },
        _ => Assessment {
            state: State::Degraded,
            reason: "ReplicasUnavailable",
            message: format!("{ready} of {desired} replicas ready"),
        },
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::{DeploymentSpec, DeploymentStatus},
        core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, PodStatus},
    };

    use super::*;

    fn spec(yaml: &str) -> MCPServerSpec {
        serde_json::from_value(serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap()).unwrap())
            .unwrap()
    }

    fn deployment(desired: i32, running: i32, ready: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec { replicas: Some(desired), ..Default::default() }),
            status: Some(DeploymentStatus {
                replicas: Some(running),
                ready_replicas: Some(ready),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(reason: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "mcp-server".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some("boom".into()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const CONTAINER: &str = "{mode: container, image: x}";

    #[test]
    fn each_state_from_what_kubernetes_and_core_show() {
        let s = spec(CONTAINER);
        let cold = spec("{mode: container, image: x, replicas: 0}");
        assert_eq!(assess(&cold, Some(&deployment(0, 0, 0)), &[], None).state, State::Cold);
        assert_eq!(assess(&s, Some(&deployment(1, 1, 0)), &[], None).state, State::Initializing);
        assert_eq!(assess(&s, Some(&deployment(1, 1, 1)), &[], None).state, State::Ready);
        let two = spec("{mode: container, image: x, replicas: 2}");
        assert_eq!(assess(&two, Some(&deployment(2, 2, 1)), &[], None).reason, "ReplicasUnavailable");
        let checking = CoreReport { state: Some(State::Initializing), ..Default::default() };
        assert_eq!(assess(&s, Some(&deployment(1, 1, 1)), &[], Some(&checking)).state, State::Initializing);
        let failing = CoreReport { state: Some(State::Degraded), consecutive_failures: 1, ..Default::default() };
        assert_eq!(assess(&s, Some(&deployment(1, 1, 1)), &[], Some(&failing)).state, State::Degraded);
        let dead = CoreReport { state: Some(State::Dead), consecutive_failures: 3, ..Default::default() };
        let a = assess(&s, Some(&deployment(1, 1, 1)), &[], Some(&dead));
        assert_eq!((a.state, a.reason), (State::Dead, "HealthCheckFailed"));
    }

    #[test]
    fn a_server_core_could_not_start_is_dead() {
        let s = spec(CONTAINER);
        let dead = CoreReport { state: Some(State::Dead), ..Default::default() };
        let a = assess(&s, Some(&deployment(1, 1, 1)), &[], Some(&dead));
        assert_eq!((a.state, a.reason), (State::Dead, "CoreReportsDead"));
    }

    #[test]
    fn crash_loops_and_bad_images_are_dead_with_the_reason() {
        let s = spec(CONTAINER);
        for reason in ["CrashLoopBackOff", "ImagePullBackOff"] {
            let a = assess(&s, Some(&deployment(1, 1, 0)), &[waiting(reason)], None);
            assert_eq!(a.state, State::Dead);
            assert!(a.message.contains(reason) && a.message.contains("boom"), "{}", a.message);
        }
        assert_eq!(
            assess(&s, Some(&deployment(1, 1, 0)), &[waiting("ContainerCreating")], None).state,
            State::Initializing
        );
    }

    #[test]
    fn on_demand_replicas_start_at_zero_keep_wake_ups_and_stop_when_idle() {
        let always = spec("{mode: container, image: x, replicas: 3}");
        assert_eq!(desired_replicas(&always, Some(1), None), 3);
        let cold = spec("{mode: container, image: x, replicas: 0, idleTTL: 5m}");
        assert_eq!(desired_replicas(&cold, None, None), 0, "created cold");
        let busy = CoreReport { idle_seconds: Some(10), ..Default::default() };
        assert_eq!(desired_replicas(&cold, Some(1), Some(&busy)), 1, "a woken server stays up while used");
        assert_eq!(desired_replicas(&cold, Some(1), None), 1, "no report: leave it");
        let idle = CoreReport { idle_seconds: Some(300), ..Default::default() };
        assert_eq!(desired_replicas(&cold, Some(1), Some(&idle)), 0, "idle for idleTTL: back to zero");
        assert_eq!(desired_replicas(&cold, Some(0), Some(&idle)), 0);
    }

    #[test]
    fn remote_servers_take_cores_word() {
        let r = spec("{mode: remote, endpoint: 'https://x/mcp'}");
        assert_eq!(assess(&r, None, &[], None).state, State::Initializing);
        let ready = CoreReport { state: Some(State::Ready), ..Default::default() };
        assert_eq!(assess(&r, None, &[], Some(&ready)).state, State::Ready);
    }
}
