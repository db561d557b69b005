"""Builds the tool-search evaluation catalogue from real MCP servers.

Installs MCP servers as their packages publish them (npm and PyPI) into ~/.cache/hangar/search-servers,
starts each over stdio with the official Python SDK's client, reads its `tools/list` and writes
`catalog.json` beside this file ({server: [tool definitions]}). The queries in `queries.json` were
written against that file. Run it again to refresh the catalogue:

    ~/.cache/hangar/venv/bin/python tests/search/collect.py
"""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).parent
CACHE = Path(os.environ.get("HANGAR_SEARCH_SERVERS", Path.home() / ".cache/hangar/search-servers"))

NPM = {
    "everything": ("@modelcontextprotocol/server-everything", ["stdio"]),
    "filesystem": ("@modelcontextprotocol/server-filesystem", ["/tmp"]),
    "memory": ("@modelcontextprotocol/server-memory", []),
    "sequential-thinking": ("@modelcontextprotocol/server-sequential-thinking", []),
    "github": ("@modelcontextprotocol/server-github", []),
    "gitlab": ("@modelcontextprotocol/server-gitlab", []),
    "slack": ("@modelcontextprotocol/server-slack", []),
    "brave-search": ("@modelcontextprotocol/server-brave-search", []),
    "google-maps": ("@modelcontextprotocol/server-google-maps", []),
    "puppeteer": ("@modelcontextprotocol/server-puppeteer", []),
    "redis": ("@modelcontextprotocol/server-redis", ["redis://127.0.0.1:1"]),
    "postgres": ("@modelcontextprotocol/server-postgres", ["postgresql://127.0.0.1:1/none"]),
    "playwright": ("@playwright/mcp", ["--headless"]),
    "kubernetes": ("mcp-server-kubernetes", []),
    "everart": ("@modelcontextprotocol/server-everart", []),
    "aws-kb-retrieval": ("@modelcontextprotocol/server-aws-kb-retrieval", []),
    "notion": ("@notionhq/notion-mcp-server", []),
    "context7": ("@upstash/context7-mcp", []),
    "firecrawl": ("firecrawl-mcp", []),
    "tavily": ("tavily-mcp", []),
    "exa": ("exa-mcp-server", []),
    "stripe": ("@stripe/mcp", ["--tools=all", "--api-key=sk_test_unused"]),
    "sentry": ("@sentry/mcp-server", ["--access-token=unused"]),
}
PYPI = {
    "fetch": ("mcp-server-fetch", []),
    "git": ("mcp-server-git", []),
    "time": ("mcp-server-time", []),
    "sqlite": ("mcp-server-sqlite", ["--db-path", "/tmp/hangar-search-collect.db"]),
    "docker": ("mcp-server-docker", []),
}
FAKE_ENV = {
    "GITHUB_PERSONAL_ACCESS_TOKEN": "unused",
    "GITLAB_PERSONAL_ACCESS_TOKEN": "unused",
    "SLACK_BOT_TOKEN": "unused",
    "SLACK_TEAM_ID": "unused",
    "BRAVE_API_KEY": "unused",
    "GOOGLE_MAPS_API_KEY": "unused",
    "EVERART_API_KEY": "unused",
    "AWS_ACCESS_KEY_ID": "unused",
    "AWS_SECRET_ACCESS_KEY": "unused",
    "AWS_REGION": "us-east-1",
    "PUPPETEER_SKIP_DOWNLOAD": "1",
    "FIRECRAWL_API_KEY": "fc-unused",
    "TAVILY_API_KEY": "tvly-unused",
    "EXA_API_KEY": "unused",
    "NOTION_TOKEN": "unused",
}


def install():
    npm = CACHE / "npm"
    npm.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"}
    for pkg, _ in NPM.values():
        if not (npm / "node_modules" / pkg / "package.json").exists():
            subprocess.run(["npm", "install", "--prefix", str(npm), "--no-audit", "--no-fund", "--silent", pkg],
                           env=env, check=False)
    venv = CACHE / "venv"
    if not (venv / "bin/python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "--quiet", "mcp<2", *[p for p, _ in PYPI.values()]], check=False)


def command(name):
    if name in NPM:
        pkg, args = NPM[name]
        manifest = json.loads((CACHE / "npm/node_modules" / pkg / "package.json").read_text())
        binary = manifest.get("bin")
        script = binary if isinstance(binary, str) else next(iter(binary.values()))
        return "node", [str(CACHE / "npm/node_modules" / pkg / script), *args]
    pkg, args = PYPI[name]
    return str(CACHE / "venv/bin" / pkg), args


async def tools_of(name):
    cmd, args = command(name)
    params = StdioServerParameters(command=cmd, args=args, env={**os.environ, **FAKE_ENV})
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            listed = await session.list_tools()
            return [t.model_dump(exclude_none=True, by_alias=True) for t in listed.tools]


async def main():
    install()
    catalog = {}
    for name in [*NPM, *PYPI]:
        try:
            tools = await asyncio.wait_for(tools_of(name), 90)
        except Exception as e:  # a server that cannot start here is left out, and said so
            print(f"{name}: skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        keep = ("name", "title", "description", "inputSchema")
        catalog[name] = [{k: t[k] for k in keep if k in t} for t in tools]
        print(f"{name}: {len(tools)} tools", file=sys.stderr)
    (HERE / "catalog.json").write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n")
    print(f"{sum(map(len, catalog.values()))} tools from {len(catalog)} servers", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
