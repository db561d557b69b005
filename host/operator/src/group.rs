//! The MCPServerGroup reconciler: members are the MCPServers of the group's namespace whose
//! labels match its selector; the group is registered with core, and its status lists the
//! members with their states, the healthy count and the state `healthPolicy` gives.

use std::sync::Arc;

use hangar_api::{GroupMember, MCPServer, MCPServerGroup, MCPServerGroupStatus, State, labels};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use serde_json::json;

use crate::server::{Context, Error, FINALIZER, RESYNC, condition_of, measured};

/// The condition saying whether the group's strategy plugin serves its picks.
const PLUGIN_RESOLVED: &str = "PluginResolved";

pub async fn reconcile(group: Arc<MCPServerGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    measured(&ctx, "MCPServerGroup", &*group.clone(), async {
        let namespace = group.namespace().ok_or_else(|| Error::NoNamespace(group.name_any()))?;
        let api = Api::<MCPServerGroup>::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, group, |event| async {
            match event {
                Finalizer::Apply(group) => apply(&group, &ctx).await,
                Finalizer::Cleanup(group) => {
                    if let Some(core) = &ctx.core {
                        let removed = core.remove_group(&namespace, &group.name_any()).await;
                        removed.map_err(|e| Error::Core(e.to_string()))?;
                    }
                    Ok(Action::await_change())
                }
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    })
    .await
}

pub fn error_policy(group: Arc<MCPServerGroup>, error: &Error, _ctx: Arc<Context>) -> Action {
    if crate::server::namespace_terminating(error) {
        return Action::requeue(std::time::Duration::from_secs(5));
    }
    tracing::warn!(group = %group.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(std::time::Duration::from_secs(15))
}

async fn apply(group: &MCPServerGroup, ctx: &Context) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    let servers = Api::<MCPServer>::namespaced(ctx.client.clone(), &namespace).list(&ListParams::default()).await?;
    let mut members: Vec<&MCPServer> =
        servers.items.iter().filter(|s| labels::selector_matches(&group.spec.selector, s.labels())).collect();
    members.sort_by_key(|s| s.name_any());
    let previous = group.status.clone().unwrap_or_default();
    let mut conditions = Vec::new();
    let mut plugin_resolved = None;
    if let Some(core) = &ctx.core {
        let refs: Vec<_> = members
            .iter()
            .map(|s| {
                let number = |key: &str| s.labels().get(key).and_then(|v| v.parse::<i64>().ok());
                json!({"name": s.name_any(), "priority": number(labels::PRIORITY).unwrap_or(0), "weight": number(labels::WEIGHT).unwrap_or(1)})
            })
            .collect();
        let registered = core.register_group(&namespace, &name, &group.spec, &refs).await;
        let (ok, reason, message) = match &registered {
            Ok(_) => (true, "Registered", "registered with core".to_string()),
            Err(e) => (false, "CoreUnavailable", e.to_string()),
        };
        conditions.push(condition_of(
            &previous.conditions,
            "Registered",
            ok,
            reason,
            &message,
            group.metadata.generation,
        ));
        if let Ok(Some(plugin)) = registered {
            plugin_resolved = Some(plugin);
        }
    }
    // Whether the strategy plugin serves, as core found it (a group it cannot serve is still
    // served, by round robin): a condition, and an Event when it changes.
    if let Some(plugin) = &plugin_resolved {
        let condition = condition_of(
            &previous.conditions,
            PLUGIN_RESOLVED,
            plugin.resolved,
            &plugin.reason,
            &plugin.message,
            group.metadata.generation,
        );
        let before = previous.conditions.iter().find(|c| c.type_ == PLUGIN_RESOLVED);
        if before.is_none_or(|c| c.status != condition.status || c.reason != condition.reason) {
            ctx.event(&group.object_ref(&()), !plugin.resolved, &plugin.reason, plugin.message.clone()).await;
        }
        conditions.push(condition);
    }
    let member_states: Vec<GroupMember> = members
        .iter()
        .map(|s| GroupMember { name: s.name_any(), state: s.status.as_ref().and_then(|st| st.state) })
        .collect();
    let healthy = member_states.iter().filter(|m| m.state.is_some_and(State::serves)).count();
    let state = group.spec.health_policy.group_state(healthy, member_states.len());
    let message = format!(
        "{healthy} of {} members healthy (minHealthyPercentage {})",
        member_states.len(),
        group.spec.health_policy.min_healthy_percentage
    );
    let reason = match state {
        State::Ready => "EnoughMembersHealthy",
        State::Degraded => "TooFewMembersHealthy",
        _ => "NoMemberHealthy",
    };
    conditions.insert(
        0,
        condition_of(&previous.conditions, "Ready", state == State::Ready, reason, &message, group.metadata.generation),
    );
    let status = MCPServerGroupStatus {
        state: Some(state),
        healthy_members: healthy as i32,
        total_members: member_states.len() as i32,
        members: member_states,
        observed_generation: group.metadata.generation,
        conditions,
    };
    if group.status.as_ref() != Some(&status) {
        Api::<MCPServerGroup>::namespaced(ctx.client.clone(), &namespace)
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await?;
        let before = group.status.as_ref().and_then(|s| s.state);
        if before != Some(state) {
            let from = before.map_or("new".to_string(), |s| s.to_string());
            ctx.event(&group.object_ref(&()), state != State::Ready, reason, format!("{from} → {state}: {message}"))
                .await;
        }
    }
    Ok(Action::requeue(RESYNC))
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::{Value, json};

    use super::*;
    use crate::server::tests::{context, expect, expect_no_more};

    const GROUPS: &str = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-servers/mcpservergroups/database-tools-ha";
    const SERVERS: &str = "/apis/mcp-hangar.io/v1alpha1/namespaces/mcp-servers/mcpservers";

    fn group(status: Option<Value>) -> MCPServerGroup {
        let mut g = json!({
            "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerGroup",
            "metadata": {"name": "database-tools-ha", "namespace": "mcp-servers", "uid": "g-1", "generation": 1, "finalizers": [FINALIZER]},
            "spec": {"selector": {"matchLabels": {"mcp-hangar.io/category": "database"}}, "strategy": "LeastConnections", "healthPolicy": {"minHealthyPercentage": 50}},
        });
        if let Some(s) = status {
            g["status"] = s;
        }
        serde_json::from_value(g).unwrap()
    }

    fn servers() -> Value {
        let server = |name: &str, category: &str, state: &str| {
            json!({
                "apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServer",
                "metadata": {"name": name, "namespace": "mcp-servers", "labels": {"mcp-hangar.io/category": category}},
                "spec": {"mode": "container", "image": "x"}, "status": {"state": state},
            })
        };
        json!({"apiVersion": "mcp-hangar.io/v1alpha1", "kind": "MCPServerList", "metadata": {}, "items": [
            server("sqlite-primary", "database", "Ready"),
            server("sqlite-replica", "database", "Dead"),
            server("search", "web", "Ready"),
        ]})
    }

    #[tokio::test]
    async fn members_come_from_the_selector_and_health_policy_sets_the_state() {
        let (ctx, mut handle) = context();
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, SERVERS, |_| servers()).await;
            let patch = expect(&mut handle, Method::PATCH, &format!("{GROUPS}/status"), |_| {
                serde_json::to_value(group(None)).unwrap()
            })
            .await;
            patch["status"].clone()
        });
        reconcile(Arc::new(group(None)), ctx).await.unwrap();
        let status = verifier.await.unwrap();
        assert_eq!(
            status["members"],
            json!([{"name": "sqlite-primary", "state": "Ready"}, {"name": "sqlite-replica", "state": "Dead"}])
        );
        assert_eq!((status["healthyMembers"].clone(), status["totalMembers"].clone()), (json!(1), json!(2)));
        assert_eq!(status["state"], "Ready", "1 of 2 is 50%: enough");
        assert_eq!(status["conditions"][0]["reason"], "EnoughMembersHealthy");

        // Unchanged membership and states: no status write.
        let (ctx, mut handle) = context();
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, SERVERS, |_| servers()).await;
            expect_no_more(&mut handle, "no status write").await;
        });
        reconcile(Arc::new(group(Some(status))), ctx).await.unwrap();
        verifier.await.unwrap();
    }

    #[tokio::test]
    async fn a_group_whose_members_all_fail_is_dead() {
        let (ctx, mut handle) = context();
        let verifier = tokio::spawn(async move {
            expect(&mut handle, Method::GET, SERVERS, |_| {
                let mut list = servers();
                list["items"][0]["status"]["state"] = json!("Dead");
                list
            })
            .await;
            let patch = expect(&mut handle, Method::PATCH, &format!("{GROUPS}/status"), |_| {
                serde_json::to_value(group(None)).unwrap()
            })
            .await;
            assert_eq!(patch["status"]["state"], "Dead");
            assert_eq!(patch["status"]["conditions"][0]["reason"], "NoMemberHealthy");
        });
        reconcile(Arc::new(group(None)), ctx).await.unwrap();
        verifier.await.unwrap();
    }
}
