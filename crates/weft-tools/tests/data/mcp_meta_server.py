"""An MCP server on the official Python SDK (the `mcp` package mcp-server-fetch installs)
whose one tool answers with the `dev.weft/*` keys of its request's `_meta`, so a test can see
what weft sends beside the arguments."""
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("meta")


@app.tool()
def whoami(ctx: Context) -> dict:
    meta = ctx.request_context.meta
    if meta is None:
        return {"meta": {}}
    data = meta if isinstance(meta, dict) else meta.model_dump(by_alias=True)
    return {"meta": {k: v for k, v in data.items() if k.startswith("dev.weft/")}}


app.run()
