//! The operator's side of "Operator ↔ core": registering servers with core's admin API and
//! reading what core reports about them. The API key comes from the chart's Secret through the
//! environment, so the operator needs no permission to read Secrets.

use std::time::Duration;

use hangar_api::{MCPServerSpec, State};
use serde_json::{Value, json};

use crate::status::CoreReport;

#[derive(Clone)]
pub struct CoreClient {
    base: String,
    key: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("core at {url} is unreachable: {error}")]
    Unreachable { url: String, error: String },
    #[error("core refused the API key (HTTP 401): check the Secret named by hangar.existingSecret / hangar.secretKey")]
    Unauthorized,
    #[error("core refused the registration (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
}

impl CoreClient {
    /// `url` as in the chart's `hangar.url`, e.g. `http://mcp-hangar-core.mcp-system:8080`.
    pub fn new(url: &str, key: &str) -> Self {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a TLS backend is compiled in");
        Self { base: url.trim_end_matches('/').to_string(), key: key.to_string(), http }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CoreError> {
        let response = request
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| CoreError::Unreachable { url: self.base.clone(), error: e.to_string() })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match status.as_u16() {
            200..=299 => Ok(body),
            401 => Err(CoreError::Unauthorized),
            code => Err(CoreError::Refused {
                status: code,
                message: body.get("error").and_then(Value::as_str).unwrap_or("no reason given").to_string(),
            }),
        }
    }

    /// Registers a server: where it is (its Service, and its ready pods), and `secrets`, the values
    /// its `spec.headers` name (never logged).
    pub async fn register_server(
        &self,
        namespace: &str,
        name: &str,
        spec: &MCPServerSpec,
        endpoint: &str,
        pods: &[String],
        secrets: &[SecretValue],
    ) -> Result<(), CoreError> {
        let url = format!("{}/api/v1/servers/{namespace}/{name}", self.base);
        let body = json!({"spec": spec, "endpoint": endpoint, "pods": pods, "secrets": secrets});
        self.send(self.http.put(url).json(&body)).await.map(|_| ())
    }

    pub async fn remove_server(&self, namespace: &str, name: &str) -> Result<(), CoreError> {
        let url = format!("{}/api/v1/servers/{namespace}/{name}", self.base);
        match self.send(self.http.delete(url)).await {
            Err(CoreError::Refused { status: 404, .. }) => Ok(()), // already gone
            other => other.map(|_| ()),
        }
    }

    /// Registers a group with its resolved members (name, priority, weight from their labels);
    /// returns whether its strategy plugin serves, as core sees it (None from a core too old to say).
    pub async fn register_group(
        &self,
        namespace: &str,
        name: &str,
        spec: &hangar_api::MCPServerGroupSpec,
        members: &[Value],
    ) -> Result<Option<PluginStatus>, CoreError> {
        let url = format!("{}/api/v1/groups/{namespace}/{name}", self.base);
        let answer = self.send(self.http.put(url).json(&json!({"spec": spec, "members": members}))).await?;
        Ok(answer.get("plugin").cloned().and_then(|p| serde_json::from_value(p).ok()))
    }

    pub async fn remove_group(&self, namespace: &str, name: &str) -> Result<(), CoreError> {
        let url = format!("{}/api/v1/groups/{namespace}/{name}", self.base);
        match self.send(self.http.delete(url)).await {
            Err(CoreError::Refused { status: 404, .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Follows core's event stream, calling `on_wake(namespace, server)` for every wake-up,
    /// until the stream ends or fails.
    pub async fn follow_wake_ups<F, Fut>(&self, mut on_wake: F) -> Result<(), CoreError>
    where
        F: FnMut(String, String) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use tokio_stream::StreamExt;
        let response = self
            .http
            .get(format!("{}/api/v1/events", self.base))
            .bearer_auth(&self.key)
            .timeout(Duration::from_secs(24 * 3600))
            .send()
            .await
            .map_err(|e| CoreError::Unreachable { url: self.base.clone(), error: e.to_string() })?;
        if response.status() == 401 {
            return Err(CoreError::Unauthorized);
        }
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CoreError::Unreachable { url: self.base.clone(), error: e.to_string() })?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find('\n') {
                let line: String = buffer.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data:") else { continue };
                if let Ok(event) = serde_json::from_str::<Value>(data.trim())
                    && event["type"] == "wake"
                    && let Some(server) = event["server"].as_str()
                {
                    let namespace = event["namespace"].as_str().unwrap_or_default();
                    on_wake(namespace.to_string(), server.to_string()).await;
                }
            }
        }
        Ok(())
    }

    /// What core reports about one server, if it knows it (as registered from `namespace`).
    pub async fn report(&self, namespace: &str, name: &str) -> Result<Option<CoreReport>, CoreError> {
        let body = self.send(self.http.get(format!("{}/api/v1/servers", self.base))).await?;
        let entry =
            body["servers"].as_array().into_iter().flatten().find(|s| s["name"] == name && s["namespace"] == namespace);
        Ok(entry.map(|s| CoreReport {
            state: serde_json::from_value::<State>(s["state"].clone()).ok(),
            consecutive_failures: s["consecutiveFailures"].as_i64().unwrap_or(0) as i32,
            tools: s["tools"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            idle_seconds: s["idleSeconds"].as_u64(),
            since_health_check: s["secondsSinceHealthCheck"].as_u64(),
        }))
    }
}

/// A Secret's key and value, as core's registration takes them for `spec.headers`.
#[derive(serde::Serialize)]
pub struct SecretValue {
    pub name: String,
    pub key: String,
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: <redacted>", self.name, self.key)
    }
}

/// Whether a group's strategy plugin serves its picks, as core reports it.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub resolved: bool,
    pub reason: String,
    pub message: String,
}
