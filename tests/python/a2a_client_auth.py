"""The official A2A Python client (a2a-sdk) against a hub that requires API keys.

Usage: a2a_client_auth.py BASE_URL TOKEN
  BASE_URL  http://127.0.0.1:PORT of a running hub with auth=required (echo agent deployed)
  TOKEN     an invoker API key

Checks, and exits non-zero with a message on the first failure:
  - the card is public and declares a bearer security scheme that the hub requires
  - without a key, send_message fails (HTTP 401)
  - with `Authorization: Bearer TOKEN` on the client's httpx session, a blocking send
    completes and the task can be read back
"""

import asyncio
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


def message(text):
    return Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=[Part(text=text)])


async def main(base: str, token: str) -> None:
    async with httpx.AsyncClient(timeout=30) as hc:
        card = await A2ACardResolver(hc, base + "/a2a/echo").get_agent_card()
    cd = MessageToDict(card)
    schemes = cd.get("securitySchemes", {})
    bearer = [
        name
        for name, s in schemes.items()
        if s.get("httpAuthSecurityScheme", {}).get("scheme", "").lower() == "bearer"
    ]
    check(bearer, f"card security schemes {schemes}")
    reqs = cd.get("securityRequirements", [])
    check(any(bearer[0] in r.get("schemes", {}) for r in reqs), f"security requirements {reqs}")
    print("card ok")

    async with httpx.AsyncClient(timeout=30) as anon:
        client = await create_client(card, client_config=ClientConfig(streaming=False, httpx_client=anon))
        try:
            async for _ in client.send_message(SendMessageRequest(message=message("no key"))):
                pass
        except Exception as e:  # noqa: BLE001 - the SDK wraps transport errors in several types
            check("401" in str(e) or "nauthenticated" in str(e) or "nauthorized" in str(e),
                  f"unauthenticated send: unexpected error {type(e).__name__}: {e}")
        else:
            check(False, "unauthenticated send succeeded")
    print("anonymous refused")

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as hc:
        client = await create_client(card, client_config=ClientConfig(streaming=False, httpx_client=hc))
        evs = [ev async for ev in client.send_message(SendMessageRequest(message=message("with key")))]
        check(len(evs) == 1 and evs[0].WhichOneof("payload") == "task", f"events {evs}")
        task = evs[0].task
        check(task.status.state == TaskState.TASK_STATE_COMPLETED, f"state {task.status.state}")
        again = await client.get_task(GetTaskRequest(id=task.id))
        check(again.id == task.id, f"get_task {again.id}")
    print("ALL OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
