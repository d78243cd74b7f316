"""A real MCP client (the `mcp` Python SDK from PyPI) talking to weft as an MCP server.

Usage:
  weft_client.py stdio WEFT_BINARY WORKDIR      # starts `weft mcp` in WORKDIR
  weft_client.py http URL API_KEY               # talks to `/mcp` on a running `weft serve`

Lists the tools, starts a run through a template's tool, waits for its output with
`run_output`, reads `run_status`, asks with a sentence (dry run, a run, and one that needs a
question), and prints one JSON document of what it saw on stdout for the Rust test to check.
"""

import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def structured(result):
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


async def exercise(session):
    seen = {}
    await session.initialize()
    tools = (await session.list_tools()).tools
    seen["tools"] = {t.name: {"description": t.description, "schema": t.input_schema} for t in tools}

    started = await session.call_tool("greet", {"who": "MCP"})
    seen["greet"] = {"is_error": bool(started.is_error), "body": structured(started)}
    run_id = seen["greet"]["body"]["run_id"]

    output = await session.call_tool("run_output", {"run_id": run_id, "wait_seconds": 60})
    seen["run_output"] = structured(output)
    status = await session.call_tool("run_status", {"run_id": run_id})
    seen["run_status"] = structured(status)

    bad = await session.call_tool("greet", {"who": 42, "nope": 1})
    seen["greet_bad"] = {"is_error": bool(bad.is_error), "body": structured(bad)}
    missing = await session.call_tool("run_status", {"run_id": "run_doesnotexist"})
    seen["status_missing"] = {"is_error": bool(missing.is_error), "body": structured(missing)}

    dry = await session.call_tool("ask", {"text": "please greet Ada", "dry_run": True})
    seen["ask_dry"] = structured(dry)
    asked = await session.call_tool("ask", {"text": "please greet Grace"})
    seen["ask_run"] = structured(asked)
    asked_out = await session.call_tool(
        "run_output", {"run_id": seen["ask_run"]["run_id"], "wait_seconds": 60}
    )
    seen["ask_run_output"] = structured(asked_out)
    unsure = await session.call_tool("ask", {"text": "compute the orbital period of Jupiter"})
    seen["ask_unsure"] = structured(unsure)
    return seen


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp"], cwd=sys.argv[3])
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                seen = await exercise(session)
    else:
        url, key = sys.argv[2], sys.argv[3]
        # Without a key the endpoint refuses before any MCP exchange.
        try:
            async with streamable_http_client(url) as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(session.initialize(), 20)
            unauthenticated = "accepted"
        except BaseException as e:  # the SDK raises an exception group from its task group
            unauthenticated = "refused: " + type(e).__name__
        client = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
        async with client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                async with ClientSession(read, write) as session:
                    seen = await exercise(session)
        seen["unauthenticated"] = unauthenticated
    print(json.dumps(seen))


asyncio.run(main())
