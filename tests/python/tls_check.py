"""Real clients over TLS: the Python MCP SDK over https and a wss WebSocket subscription.

Usage: tls_check.py BASE_HTTPS_URL CA_FILE
The CA is trusted through SSL_CERT_FILE (httpx) and an explicit SSL context (websockets).
"""

import asyncio
import json
import os
import ssl
import sys

import websockets
from mcp import Client


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


async def main() -> None:
    base, ca = sys.argv[1], sys.argv[2]
    os.environ["SSL_CERT_FILE"] = ca
    async with Client(f"{base}/mcp", mode="auto", cache=None) as client:
        tools = await client.list_tools()
        check(any(t.name == "invoke_agent" for t in tools.tools), "tools over https")
        res = await client.call_tool(
            "invoke_agent",
            {"agentId": "echo", "input": {"messages": [{"role": "user", "content": "over tls"}], "chunks": 2}},
        )
        check(not res.is_error, f"invoke over https: {res.content}")
        stream_url = res.structured_content["streamUrl"]
        check(stream_url.startswith("wss://"), f"streamUrl must be wss: {stream_url}")
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect(stream_url, ssl=ctx) as ws:
        kinds = []
        async for raw in ws:
            ev = json.loads(raw)
            kinds.append(ev["type"])
            if ev["type"] in ("final", "error", "canceled"):
                break
    check(kinds == ["start", "chunk", "chunk", "final"], f"wss events {kinds}")
    print("OK")


asyncio.run(main())
