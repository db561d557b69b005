// The test node's images: the pause container, an MCP server of the official Go SDK's examples
// (everything: HTTP with -http, else stdio) and a probe server that says which pod answered.
// build.sh builds them statically and packs each with mkimage.py.
module github.com/mcp-hangar/hangar/tests/cluster/images

go 1.26.0

tool github.com/modelcontextprotocol/go-sdk/examples/server/everything

require github.com/modelcontextprotocol/go-sdk v1.8.0

require (
	github.com/google/jsonschema-go v0.4.3 // indirect
	github.com/segmentio/asm v1.1.3 // indirect
	github.com/segmentio/encoding v0.5.4 // indirect
	github.com/yosida95/uritemplate/v3 v3.0.2 // indirect
	golang.org/x/oauth2 v0.35.0 // indirect
	golang.org/x/sync v0.20.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
	golang.org/x/time v0.15.0 // indirect
)
