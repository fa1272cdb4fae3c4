"""Interop with the official Python MCP SDK (pinned in scripts/test-tools.sh).

Usage:
  mcp_interop.py http URL MODE          MODE: auto (probes server/discover) | legacy
  mcp_interop.py stdio BINARY MODE -- ARGS...   (launches `BINARY ARGS...` as an MCP stdio server)

Checks, and exits non-zero with a message on the first failure:
  - the era the client ended up in (auto -> 2026-07-28 via discover, legacy -> initialize)
  - tools/list has the hub's tools, in a stable order
  - invoke_agent on echo with wait=true and a progress callback: every chunk arrives as a
    progress notification (strictly increasing progress), the result is the input
  - get_status of that request, structured
  - cancel of a running request (echo held with delay_ms): it ends canceled and stays so
  - an unknown tool is a JSON-RPC error; bad arguments are a tool error (isError)
"""

import asyncio
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters

CORE_TOOLS = [
    "list_agents", "describe_agent", "open_session", "close_session", "invoke_agent",
    "handoff", "cancel", "get_status", "deploy_agent", "update_agent", "enable_agent",
    "disable_agent", "remove_agent", "get_stats", "grant_permission", "request_permission",
    "approve_permission", "revoke_permission", "get_permissions", "create_api_key",
    "list_api_keys", "revoke_api_key", "get_audit_log", "create_backup", "list_backups",
    "agent_control",
]


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


async def exercise(client: Client, mode: str) -> None:
    session = client.session
    if mode == "auto":
        check(session.discover_result is not None, "auto mode should have used server/discover (2026-07-28)")
        check(session.initialize_result is None, "auto mode should not have fallen back to initialize")
    else:
        check(session.initialize_result is not None, "legacy mode should have run initialize")
    version = client.protocol_version
    print(f"protocol version {version}")

    tools = await client.list_tools()
    names = [t.name for t in tools.tools]
    check(names == CORE_TOOLS, f"tools/list order/content: {names}")
    again = [t.name for t in (await client.list_tools()).tools]
    check(again == names, "tools/list order must be deterministic")
    invoke = next(t for t in tools.tools if t.name == "invoke_agent")
    check(invoke.output_schema is not None, "invoke_agent declares an outputSchema")

    progress = []

    async def on_progress(p, total, message):
        progress.append((p, message))

    text = "the quick brown fox jumps over the lazy dog"
    res = await client.call_tool(
        "invoke_agent",
        {"agentId": "echo", "input": {"messages": [{"role": "user", "content": text}], "chunks": 5}, "wait": True},
        progress_callback=on_progress,
    )
    check(not res.is_error, f"invoke_agent failed: {res.content}")
    sc = res.structured_content
    check(sc["status"] == "done", f"status {sc}")
    check(sc["result"]["messages"][0]["content"] == text, f"result {sc}")
    check(sc["streamUrl"] and sc["streamUrl"].startswith("ws://"), f"streamUrl {sc.get('streamUrl')}")
    check(len(progress) == 5, f"expected 5 progress notifications, got {progress}")
    check("".join(m for _, m in progress) == text, f"progress messages do not add up to the text: {progress}")
    values = [p for p, _ in progress]
    check(all(a < b for a, b in zip(values, values[1:])), f"progress must increase strictly: {values}")
    request_id = sc["requestId"]

    st = await client.call_tool("get_status", {"requestId": request_id, "includeEvents": True})
    check(not st.is_error, f"get_status failed: {st.content}")
    check(st.structured_content["status"] == "done", f"get_status {st.structured_content}")
    kinds = [e["type"] for e in st.structured_content["events"]]
    check(kinds == ["start"] + ["chunk"] * 5 + ["final"], f"events {kinds}")

    # Cancel a running job.
    held = await client.call_tool(
        "invoke_agent",
        {"agentId": "echo", "input": {"messages": [{"role": "user", "content": "hold"}], "chunks": 2, "delay_ms": 5000}},
    )
    check(not held.is_error, f"invoke (held) failed: {held.content}")
    held_id = held.structured_content["requestId"]
    for _ in range(100):
        s = (await client.call_tool("get_status", {"requestId": held_id})).structured_content
        if s["status"] == "running":
            break
        await asyncio.sleep(0.02)
    check(s["status"] == "running", f"held job should be running: {s}")
    c = await client.call_tool("cancel", {"requestId": held_id, "reason": "interop test"})
    check(not c.is_error, f"cancel failed: {c.content}")
    check(c.structured_content["status"] == "canceled", f"cancel result {c.structured_content}")
    await asyncio.sleep(0.3)
    s = (await client.call_tool("get_status", {"requestId": held_id})).structured_content
    check(s["status"] == "canceled", f"a canceled job must stay canceled: {s}")

    # Errors: unknown tool -> JSON-RPC error; bad arguments -> isError result.
    try:
        r = await client.call_tool("no_such_tool", {})
        check(False, f"unknown tool should be a protocol error, got {r}")
    except Exception as e:  # McpError
        check("no_such_tool" in str(e) or "unknown tool" in str(e).lower(), f"unknown tool error: {e}")
    bad = await client.call_tool("invoke_agent", {"agentId": "echo", "input": {"messages": "not a list"}})
    check(bad.is_error, "schema-violating input must give isError")
    check("schema" in bad.content[0].text, f"error text should say what was wrong: {bad.content[0].text}")
    missing = await client.call_tool("get_status", {"requestId": "no-such-request"})
    check(missing.is_error and "request_not_found" in missing.content[0].text, f"unknown id: {missing.content}")


async def main() -> None:
    kind = sys.argv[1]
    if kind == "http":
        url, mode = sys.argv[2], sys.argv[3]
        async with Client(url, mode=mode, cache=None) as client:
            await exercise(client, mode)
    elif kind == "stdio":
        binary, mode = sys.argv[2], sys.argv[3]
        args = sys.argv[sys.argv.index("--") + 1:]
        params = StdioServerParameters(command=binary, args=args)
        async with Client(params, mode=mode, cache=None) as client:
            await exercise(client, mode)
    else:
        check(False, f"unknown kind {kind}")
    print("OK")


if __name__ == "__main__":
    asyncio.run(main())
