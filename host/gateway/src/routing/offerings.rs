//! What servers offer besides tools, through the gateway: prompts (named like tools),
//! resources and resource templates (URIs intact), completions and the logging level. A
//! server's `spec.tools.callers` governs them too: a caller no entry matches sees none.

use serde_json::{Value, json};

use hangar_plugin_runtime::{Call, Decision};

use super::{catalog, rate_limited};
use crate::{
    gateway::{CallContext, CallError, Gateway, ServerEntry, entry::Target, unavailable},
    protocol::{RpcError, code},
};

/// Pages of one list a backend may return before the rest is left out.
const MAX_PAGES: usize = 50;

impl Gateway {
    /// One request to a server on a client's behalf, in the client's backend session.
    async fn forward(
        &self,
        server: &ServerEntry,
        method: &str,
        params: Value,
        ctx: &CallContext,
    ) -> Result<Value, RpcError> {
        if !server.serving() {
            return Err(unavailable(&format!("server {} is {}", server.name, server.state())));
        }
        let _in_flight = server.begin();
        let session = self.backend_session(ctx.session.as_deref(), server).await;
        server
            .backend
            .request_for(
                method,
                params,
                server.spec.startup_timeout.as_std(),
                server.spec.call_timeout.as_std(),
                crate::servers::OnBehalf { relay: None, ..ctx.on_behalf(session.as_deref()) },
            )
            .await
            .map_err(|e| CallError::Backend(e).to_rpc())
    }

    /// The server's governance of one prompt, resource or completion request: its rate limit
    /// (`spec.tools.rateLimit`, the bucket its tool calls share) counts it, and a custom policy
    /// plugin decides on it as on a tool named `prompt:<name>` or `resource:<uri>` (the
    /// manifest's allowList and denyList name tools only).
    async fn govern(&self, server: &ServerEntry, item: &str, ctx: &CallContext) -> Result<(), RpcError> {
        if let Some(why) = server.offerings_refusal(&ctx.caller) {
            return Err(RpcError::new(code::DENIED, why).with_data(json!({"server": server.name, "item": item})));
        }
        let mut limits = Vec::new();
        if let Some(rate) = server.spec.tools.as_ref().and_then(|t| t.rate_limit.as_ref()) {
            let rpm = rate.requests_per_minute.max(0) as u32;
            limits.push((server.name.clone(), rpm, rate.burst.map_or(rpm, |b| b.max(0) as u32)));
        }
        if server.floor.is_some() {
            let call = Call {
                server: server.name.clone(),
                tool: item.to_string(),
                caller: ctx.caller.clone(),
                argument_bytes: 0,
            };
            match server.policy.check_off_worker(call).await.0 {
                Decision::Deny(why) => {
                    return Err(
                        RpcError::new(code::DENIED, why).with_data(json!({"server": server.name, "item": item}))
                    );
                }
                Decision::Allow(more) => {
                    limits.extend(more.into_iter().map(|b| (b.key, b.requests_per_minute, b.burst)));
                }
            }
        }
        self.limiter.take(&limits).map_err(|exhausted| rate_limited(&server.name, &exhausted))
    }

    /// Every page of a list (`key` holds the items); a server that does not offer it has none.
    async fn list_all(&self, target: &Target, method: &str, key: &str, ctx: &CallContext) -> Vec<Value> {
        let Some(server) = target.serving() else { return Vec::new() };
        // A caller that `spec.tools.callers` leaves out sees none of it: not listed, so not
        // found by read, get, subscribe or complete either.
        if server.offerings_refusal(&ctx.caller).is_some() {
            return Vec::new();
        }
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map_or_else(|| json!({}), |c| json!({"cursor": c}));
            match self.forward(server, method, params, ctx).await {
                Ok(mut page) => {
                    if let Some(Value::Array(list)) = page.get_mut(key).map(Value::take) {
                        items.extend(list);
                    }
                    match page.get("nextCursor") {
                        Some(c) if !c.is_null() => cursor = Some(c.clone()),
                        _ => break,
                    }
                }
                Err(e) => {
                    if e.code != code::METHOD_NOT_FOUND {
                        tracing::debug!(server = %server.name, method, "not listed: {e}");
                    }
                    break;
                }
            }
        }
        items
    }

    /// Every target's list of `key` items, targets in order.
    async fn lists(&self, method: &str, key: &str, ctx: &CallContext) -> Vec<(Target, Vec<Value>)> {
        let targets = self.targets();
        let lists = futures_util::future::join_all(targets.iter().map(|t| self.list_all(t, method, key, ctx))).await;
        targets.into_iter().zip(lists).collect()
    }

    pub async fn list_prompts(&self, ctx: &CallContext) -> Value {
        json!({"prompts": self.expose("prompt", self.lists("prompts/list", "prompts", ctx).await)})
    }

    /// The target a prompt name means, and the prompt's name there.
    async fn prompt_target(&self, qualified: &str, ctx: &CallContext) -> Result<(Target, String), RpcError> {
        self.resolve("prompt", qualified, |t| async move { self.list_all(&t, "prompts/list", "prompts", ctx).await })
            .await
    }

    pub async fn get_prompt(&self, mut params: Value, ctx: &CallContext) -> Result<Value, RpcError> {
        let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
            RpcError::new(code::INVALID_PARAMS, "params.name: required (the prompt to get, as listed by prompts/list)")
        })?;
        let (target, prompt) = self.prompt_target(name, ctx).await?;
        let server = serving(&target)?;
        self.govern(server, &format!("prompt:{prompt}"), ctx).await?;
        params["name"] = Value::String(prompt);
        self.forward(server, "prompts/get", params, ctx).await
    }

    pub async fn list_resources(&self, ctx: &CallContext) -> Value {
        json!({"resources": distinct(self.lists("resources/list", "resources", ctx).await, "uri")})
    }

    pub async fn list_resource_templates(&self, ctx: &CallContext) -> Value {
        json!({"resourceTemplates": distinct(self.lists("resources/templates/list", "resourceTemplates", ctx).await, "uriTemplate")})
    }

    /// The target that offers a URI: the first that lists it, else the first with a template
    /// that matches it.
    async fn resource_target(&self, uri: &str, ctx: &CallContext) -> Result<Target, RpcError> {
        for (target, resources) in self.lists("resources/list", "resources", ctx).await {
            if resources.iter().any(|r| r["uri"] == uri) {
                return Ok(target);
            }
        }
        for (target, templates) in self.lists("resources/templates/list", "resourceTemplates", ctx).await {
            if templates.iter().filter_map(|t| t["uriTemplate"].as_str()).any(|t| catalog::template_matches(t, uri)) {
                return Ok(target);
            }
        }
        // SEP-2164: an unknown resource is invalid params (-32602), with the URI in data.
        Err(RpcError::new(
            code::INVALID_PARAMS,
            format!("resource {uri:?} is not offered by any server (see resources/list and resources/templates/list)"),
        )
        .with_data(json!({"uri": uri})))
    }

    /// `resources/read`, `resources/subscribe` and `resources/unsubscribe`: to the target that
    /// offers the URI.
    pub async fn resource_request(&self, method: &str, params: Value, ctx: &CallContext) -> Result<Value, RpcError> {
        let uri = params.get("uri").and_then(Value::as_str).ok_or_else(|| {
            RpcError::new(code::INVALID_PARAMS, "params.uri: required (a URI from resources/list or a template's)")
        })?;
        let uri = uri.to_string();
        let target = self.resource_target(&uri, ctx).await?;
        let server = serving(&target)?;
        self.govern(server, &format!("resource:{uri}"), ctx).await?;
        let answer = self.forward(server, method, params, ctx).await?;
        match method {
            "resources/subscribe" => self.subscribed(ctx.session.as_deref(), &uri, true),
            "resources/unsubscribe" => self.subscribed(ctx.session.as_deref(), &uri, false),
            _ => {}
        }
        Ok(answer)
    }

    /// `completion/complete` for a prompt's argument (by its listed name) or a resource
    /// template's (by its URI template).
    pub async fn complete(&self, mut params: Value, ctx: &CallContext) -> Result<Value, RpcError> {
        let reference = params.get("ref").cloned().unwrap_or_default();
        let target = match reference["type"].as_str() {
            Some("ref/prompt") => {
                let name = reference["name"].as_str().unwrap_or_default();
                let (target, prompt) = self.prompt_target(name, ctx).await?;
                params["ref"]["name"] = Value::String(prompt);
                target
            }
            Some("ref/resource") => {
                let uri = reference["uri"].as_str().unwrap_or_default();
                let mut found = None;
                for (target, templates) in self.lists("resources/templates/list", "resourceTemplates", ctx).await {
                    if templates.iter().any(|t| t["uriTemplate"] == uri) {
                        found = Some(target);
                        break;
                    }
                }
                match found {
                    Some(target) => target,
                    None => self.resource_target(uri, ctx).await?,
                }
            }
            _ => {
                return Err(RpcError::new(
                    code::INVALID_PARAMS,
                    "params.ref.type: ref/prompt (with name) or ref/resource (with uri) required",
                ));
            }
        };
        let server = serving(&target)?;
        let item = match reference["type"].as_str() {
            Some("ref/prompt") => format!("prompt:{}", params["ref"]["name"].as_str().unwrap_or_default()),
            _ => format!("resource:{}", reference["uri"].as_str().unwrap_or_default()),
        };
        self.govern(server, &item, ctx).await?;
        self.forward(server, "completion/complete", params, ctx).await
    }

    /// `logging/setLevel`: every serving server that offers logging gets the level.
    pub async fn set_log_level(&self, params: Value, ctx: &CallContext) -> Result<Value, RpcError> {
        if params.get("level").and_then(Value::as_str).is_none() {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                "params.level: required (debug, info, notice, warning, error, critical, alert or emergency)",
            ));
        }
        let targets = self.targets();
        let servers = targets.iter().flat_map(Target::servers).filter(|s| s.serving());
        futures_util::future::join_all(servers.map(|s| self.forward(s, "logging/setLevel", params.clone(), ctx))).await;
        Ok(json!({}))
    }
}

fn serving(target: &Target) -> Result<&std::sync::Arc<ServerEntry>, RpcError> {
    target.serving().ok_or_else(|| unavailable(&format!("no server of {:?} is serving", target.name())))
}

/// The items of every list, each `key` once (the first target's wins; a later one is logged).
fn distinct(lists: Vec<(Target, Vec<Value>)>, key: &str) -> Vec<Value> {
    let mut seen = std::collections::HashMap::new();
    let mut out = Vec::new();
    for (target, items) in lists {
        for item in items {
            let id = item.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            match seen.get(&id) {
                Some(first) if first != target.name() => {
                    tracing::warn!(key = id, first = %first, also = target.name(), "offered by two servers: the first one's is used");
                }
                Some(_) => {}
                None => {
                    seen.insert(id, target.name().to_string());
                    out.push(item);
                }
            }
        }
    }
    out
}
