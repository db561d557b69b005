//! The method families: what each MCP method asks of the gateway, with no protocol revision
//! and no HTTP in sight.

pub mod search;

use serde_json::{Value, json};

use crate::{
    gateway::{CallContext, Gateway},
    protocol::{RpcError, code},
};

/// A client's request, by method, to the gateway; its result as the client's revision will
/// shape it (the client edge adds what the revision needs).
pub async fn dispatch(
    gateway: &Gateway,
    method: &str,
    mut params: Value,
    ctx: &CallContext,
) -> Result<Value, RpcError> {
    match method {
        "tools/list" => Ok(json!({"tools": search::list_tools(gateway, ctx).await})),
        "tools/call" => {
            let arguments = params.get_mut("arguments").map(Value::take).unwrap_or_else(|| json!({}));
            let name = params.get("name").and_then(Value::as_str).ok_or_else(|| {
                RpcError::new(code::INVALID_PARAMS, "params.name: required (the tool to call, as listed by tools/list)")
            })?;
            search::call_tool(gateway, name, arguments, ctx).await
        }
        "prompts/list" => Ok(gateway.list_prompts(ctx).await),
        "prompts/get" => gateway.get_prompt(params, ctx).await,
        "resources/list" => Ok(gateway.list_resources(ctx).await),
        "resources/templates/list" => Ok(gateway.list_resource_templates(ctx).await),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            gateway.resource_request(method, params, ctx).await
        }
        "completion/complete" => gateway.complete(params, ctx).await,
        "logging/setLevel" => gateway.set_log_level(params, ctx).await,
        other => {
            Err(RpcError::new(code::METHOD_NOT_FOUND, format!("method {other:?} is not offered by the Hangar gateway")))
        }
    }
}
