// An MCP server (official Go SDK) for the node tests: `whoami` names the pod that answered (so a
// test sees calls spread over replicas), `env` and `read` show what the pod was given (a Secret's
// value, a mounted volume). START_DELAY holds it before it listens (a slow start), CALL_DELAY
// holds each whoami (a slow replica); it serves Streamable HTTP on LISTEN (default :8080) at /mcp.
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type nameArgs struct {
	Name string `json:"name" jsonschema:"an environment variable or a file path"`
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func main() {
	if d, err := time.ParseDuration(os.Getenv("START_DELAY")); err == nil {
		time.Sleep(d)
	}
	host, _ := os.Hostname()
	callDelay, _ := time.ParseDuration(os.Getenv("CALL_DELAY"))
	server := mcp.NewServer(&mcp.Implementation{Name: "probe", Version: "v1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "the pod that answers"},
		func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			time.Sleep(callDelay)
			return text(host), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "env", Description: "an environment variable's value"},
		func(ctx context.Context, req *mcp.CallToolRequest, a nameArgs) (*mcp.CallToolResult, any, error) {
			return text(os.Getenv(a.Name)), nil, nil
		})
	mcp.AddTool(server, &mcp.Tool{Name: "read", Description: "a file's contents"},
		func(ctx context.Context, req *mcp.CallToolRequest, a nameArgs) (*mcp.CallToolResult, any, error) {
			b, err := os.ReadFile(a.Name)
			if err != nil {
				return nil, nil, err
			}
			return text(string(b)), nil, nil
		})
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	listen := os.Getenv("LISTEN")
	if listen == "" {
		listen = ":8080"
	}
	log.Printf("probe %s listening on %s", host, listen)
	log.Fatal(http.ListenAndServe(listen, mux))
}
