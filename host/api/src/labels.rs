//! Label and annotation keys under `mcp-hangar.io/` that users and Hangar itself set.

/// The API group of every Hangar resource.
pub const GROUP: &str = "mcp-hangar.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as it appears in manifests.
pub const API_VERSION: &str = "mcp-hangar.io/v1alpha1";

/// Set on every pod of an MCP server; the guide's NetworkPolicy selects it.
pub const MCP_SERVER: &str = "mcp-hangar.io/mcp_server";
/// Failover order inside a group: lower first, then by name.
pub const PRIORITY: &str = "mcp-hangar.io/priority";
/// Weight for weighted strategies (default 1).
pub const WEIGHT: &str = "mcp-hangar.io/weight";
/// Set on MCPServers a discovery source created, naming that source.
pub const DISCOVERED_BY: &str = "mcp-hangar.io/discovered-by";
/// Marks ConfigMaps that Namespace discovery reads like a ConfigMap source.
pub const PROVIDERS: &str = "mcp-hangar.io/providers";
/// Annotation on a Service that Namespace discovery turns into a remote server.
pub const ANNOTATION_MCP_SERVER: &str = "mcp-hangar.io/mcp-server";
/// Annotation: the Service port to use (default: the first port).
pub const ANNOTATION_PORT: &str = "mcp-hangar.io/port";
/// Annotation: the MCP path on that Service (default `/mcp`).
pub const ANNOTATION_PATH: &str = "mcp-hangar.io/path";
/// Namespace label the guide's NetworkPolicy admits traffic from.
pub const CORE_NAMESPACE: &str = "mcp-hangar.io/core";
