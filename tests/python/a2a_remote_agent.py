"""A small remote A2A agent built with the official a2a-sdk server (pinned in
scripts/test-tools.sh), used by tests/it/a2a.rs to exercise the hub's `a2a` executor.

Usage: a2a_remote_agent.py PORT [--no-streaming] [--v03-only] [--tls CERT KEY]
  PORT 0 picks a free port. Once listening, prints `READY <port> <base url>` on stdout.
  --no-streaming  the card says capabilities.streaming = false (the hub must use
                  SendMessage + GetTask polling)
  --v03-only      the card lists only a 0.3 JSON-RPC interface (the hub must speak 0.3)
  --tls CERT KEY  serve https with this certificate and key (PEM); the base URL is then
                  https://localhost:<port>

Behaviour, chosen by the text of the user message:
  "fail <why>"   task -> WORKING -> FAILED with the status message "remote failure: <why>"
  "slow"         task -> WORKING -> one artifact chunk every 100 ms until canceled (max 60 s)
  anything else  task -> WORKING -> one artifact chunk per word -> COMPLETED
A data part is echoed back as a data artifact chunk `{"echo": <data>}` before completing.

Test hooks (plain JSON, not A2A):
  GET /test/received  every message the agent received:
                      {text, data, metadata, taskId, contextId, authorization, version}
  GET /test/cancels   ids of the tasks whose cancel reached the agent
  GET /moved-card.json  301 to the card (redirects are followed when reading cards)
"""

import asyncio
import socket
import sys

import uvicorn
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)

RECEIVED: list = []
CANCELS: list = []


def agent_message(text: str) -> Message:
    import uuid

    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_AGENT, parts=[Part(text=text)])


class TestAgent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        msg = context.message
        text = context.get_user_input()
        data = [MessageToDict(p)["data"] for p in msg.parts if p.HasField("data")] if msg else []
        RECEIVED.append(
            {
                "text": text,
                "data": data,
                "metadata": MessageToDict(msg).get("metadata") if msg else None,
                "taskId": context.task_id,
                "contextId": context.context_id,
                "authorization": context.call_context.state.get("headers", {}).get("authorization"),
                "version": context.call_context.state.get("headers", {}).get("a2a-version"),
                "traceparent": context.call_context.state.get("headers", {}).get("traceparent"),
            }
        )
        task_id, context_id = context.task_id, context.context_id
        if context.current_task is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[msg] if msg else [],
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work(agent_message("working"))
        if text.startswith("fail"):
            await updater.failed(agent_message("remote failure: " + text[4:].strip()))
            return
        if text.startswith("slow"):
            for i in range(600):
                await updater.add_artifact(
                    [Part(text=f"tick {i} ")], artifact_id="ticks", append=i > 0, last_chunk=False
                )
                await asyncio.sleep(0.1)
            await updater.complete()
            return
        words = text.split()
        for i, w in enumerate(words):
            await updater.add_artifact(
                [Part(text=w + (" " if i + 1 < len(words) else ""))],
                artifact_id="words",
                name="echo",
                append=i > 0,
                last_chunk=(i + 1 == len(words)) and not data,
            )
        for d in data:
            from google.protobuf import struct_pb2

            v = struct_pb2.Value()
            v.struct_value.update({"echo": d})
            await updater.add_artifact([Part(data=v)], artifact_id="data", name="data", last_chunk=True)
        await updater.complete(agent_message("done"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        CANCELS.append(context.task_id)
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel(agent_message("canceled by request"))


async def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    streaming = "--no-streaming" not in sys.argv
    v03_only = "--v03-only" in sys.argv
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    port = sock.getsockname()[1]
    tls = None
    if "--tls" in sys.argv:
        i = sys.argv.index("--tls")
        tls = (sys.argv[i + 1], sys.argv[i + 2])
    base = f"https://localhost:{port}" if tls else f"http://127.0.0.1:{port}"
    interfaces = [AgentInterface(url=base + "/rpc", protocol_binding="JSONRPC", protocol_version="0.3")]
    if not v03_only:
        interfaces.insert(
            0, AgentInterface(url=base + "/rpc", protocol_binding="JSONRPC", protocol_version="1.0")
        )
    card = AgentCard(
        name="Remote test agent",
        description="Echoes words as artifact chunks; can fail, be slow, be canceled.",
        version="2.1.0",
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=streaming, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[
            AgentSkill(id="echo", name="Echo", description="Echoes the words it gets", tags=["test"]),
            AgentSkill(id="shout", name="Shout", description="Same as echo, louder", tags=["test"]),
        ],
    )
    handler = DefaultRequestHandler(
        agent_executor=TestAgent(), task_store=InMemoryTaskStore(), agent_card=card
    )

    async def received(_request):
        return JSONResponse(RECEIVED)

    async def cancels(_request):
        return JSONResponse(CANCELS)

    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/rpc", enable_v0_3_compat=True),
        Route("/test/received", received),
        Route("/test/cancels", cancels),
        Route("/moved-card.json", lambda _r: RedirectResponse("/.well-known/agent-card.json", 301)),
    ]
    app = Starlette(routes=routes)
    config = uvicorn.Config(
        app,
        log_level="warning",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    print(f"READY {port} {base}", flush=True)
    await server.serve(sockets=[sock])


if __name__ == "__main__":
    asyncio.run(main())
