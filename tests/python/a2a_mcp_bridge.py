"""The MCP -> A2A bridge, seen from the official Python MCP client (pinned in
scripts/test-tools.sh): deploy a remote A2A agent by its card URL with `deploy_agent`, invoke
it with `invoke_agent` (wait + progress) and get the remote agent's stream as progress
notifications.

Usage: a2a_mcp_bridge.py MCP_URL CARD_URL
"""

import asyncio
import sys

from mcp import Client


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


async def main(url: str, card_url: str) -> None:
    async with Client(url, cache=None) as client:
        dep = await client.call_tool("deploy_agent", {"cardUrl": card_url, "id": "remote-echo"})
        check(not dep.is_error, f"deploy_agent with cardUrl failed: {dep.content}")
        sc = dep.structured_content
        check(sc["id"] == "remote-echo" and sc["executor"] == "a2a", f"deployed {sc}")
        caps = [c["name"] for c in sc["capabilities"]]
        check(caps == ["echo", "shout"], f"capabilities from the card's skills: {caps}")

        progress = []

        async def on_progress(p, total, message):
            progress.append((p, message))

        res = await client.call_tool(
            "invoke_agent",
            {"agentId": "remote-echo", "capability": "echo", "input": {"text": "one two three"}, "wait": True},
            progress_callback=on_progress,
        )
        check(not res.is_error, f"invoke_agent failed: {res.content}")
        sc = res.structured_content
        check(sc["status"] == "done", f"status {sc}")
        check(sc["result"]["text"] == "one two three", f"result {sc['result']}")
        check(sc["result"].get("remoteTaskId"), "the result names the remote task")
        msgs = [m for _, m in progress]
        check(msgs == ["one ", "two ", "three"], f"progress notifications {progress}")

        bad = await client.call_tool("deploy_agent", {"cardUrl": "http://127.0.0.1:9/nothing"})
        check(bad.is_error and "Agent Card" in bad.content[0].text, f"unreachable card: {bad.content}")
    print("OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
