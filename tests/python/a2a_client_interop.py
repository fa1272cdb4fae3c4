"""Interop with the official A2A Python client (a2a-sdk, pinned in scripts/test-tools.sh)
against the hub's A2A front door.

Usage: a2a_client_interop.py BASE_URL PROCESS_AGENT_ID
  BASE_URL          http://127.0.0.1:PORT of a running hub (echo agent from the catalog)
  PROCESS_AGENT_ID  a deployed `process` agent running tests/agents/stream.sh

Checks, and exits non-zero with a message on the first failure:
  - the hub card and the echo agent's card resolve (1.0 interface first, skills)
  - blocking send -> COMPLETED task with the streamed text as artifact `output`
  - streaming send -> task, WORKING, artifact updates, result (lastChunk), COMPLETED
  - get (historyLength), list (context filter, status filter, paging, totalSize)
  - cancel of a running task -> CANCELED; again -> TaskNotCancelable; subscribe -> Unsupported
  - drop a stream in the middle, resubscribe: the task as it stands, then only later events;
    together they rebuild the output exactly
  - unknown task -> TaskNotFoundError
  - push config create / get / list / delete
  - the hub endpoint reaches a local `process` agent named in message metadata
"""

import asyncio
import sys
import uuid

import httpx
from google.protobuf.json_format import MessageToDict

from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import (
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
)

TEXT = "the quick brown fox jumps over the lazy dog"


def check(cond, msg):
    if not cond:
        print(f"FAIL: {msg}", file=sys.stderr)
        sys.exit(1)


def message(parts, context_id=None, metadata=None):
    m = Message(message_id=str(uuid.uuid4()), role=Role.ROLE_USER, parts=parts)
    if context_id:
        m.context_id = context_id
    if metadata:
        m.metadata.update(metadata)
    return m


def data_part(d):
    p = Part()
    p.data.struct_value.update(d)
    return p


def kind(ev):
    return ev.WhichOneof("payload")


def output_text(task_dict):
    for a in task_dict.get("artifacts", []):
        if a["artifactId"] == "output":
            return "".join(p.get("text", "") for p in a["parts"])
    return None


async def collect(stream):
    return [ev async for ev in stream]


async def expect_error(coro, exc, what):
    try:
        await coro
    except exc:
        return
    except Exception as e:  # noqa: BLE001
        check(False, f"{what}: expected {exc.__name__}, got {type(e).__name__}: {e}")
    check(False, f"{what}: expected {exc.__name__}, got success")


async def main(base: str, process_agent: str) -> None:
    async with httpx.AsyncClient(timeout=30) as hc:
        hub_card = await A2ACardResolver(hc, base).get_agent_card()
        card = await A2ACardResolver(hc, base + "/a2a/echo").get_agent_card()
    check(hub_card.name == "a2a-mcp hub", f"hub card name {hub_card.name!r}")
    skills = [s.id for s in hub_card.skills]
    check("echo" in skills and process_agent in skills, f"hub card skills {skills}")
    check(card.name == "Echo", f"echo card name {card.name!r}")
    iface = card.supported_interfaces[0]
    check(
        (iface.protocol_binding, iface.protocol_version) == ("JSONRPC", "1.0")
        and iface.url.endswith("/a2a/echo"),
        f"first interface {MessageToDict(iface)}",
    )
    check([s.id for s in card.skills] == ["chat"], f"echo skills {[s.id for s in card.skills]}")
    check(card.capabilities.streaming and card.capabilities.push_notifications, "capabilities")
    print("cards ok")

    blocking = await create_client(card, client_config=ClientConfig(streaming=False))
    streaming = await create_client(card, client_config=ClientConfig(streaming=True))

    # Blocking send.
    evs = await collect(blocking.send_message(SendMessageRequest(message=message([Part(text=TEXT)]))))
    check(len(evs) == 1 and kind(evs[0]) == "task", f"blocking send events {[kind(e) for e in evs]}")
    task = evs[0].task
    check(task.status.state == TaskState.TASK_STATE_COMPLETED, f"blocking state {task.status.state}")
    td = MessageToDict(task)
    check(output_text(td) == TEXT, f"blocking output {output_text(td)!r}")
    check(td["history"][0]["parts"][0]["text"] == TEXT, f"history {td.get('history')}")
    ctx = task.context_id
    print("blocking send ok", task.id)

    # Streaming send, in the same context.
    evs = await collect(
        streaming.send_message(SendMessageRequest(message=message([Part(text=TEXT)], context_id=ctx)))
    )
    kinds = [kind(e) for e in evs]
    check(kinds[0] == "task" and kinds[1] == "status_update", f"stream starts {kinds}")
    check(evs[1].status_update.status.state == TaskState.TASK_STATE_WORKING, "WORKING second")
    check(kinds[-1] == "status_update", f"stream ends {kinds}")
    check(evs[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED, "COMPLETED last")
    arts = [e.artifact_update for e in evs if kind(e) == "artifact_update"]
    out = "".join(p.text for a in arts if a.artifact.artifact_id == "output" for p in a.artifact.parts)
    check(out == TEXT, f"streamed output {out!r}")
    check(not arts[0].append and all(a.append for a in arts[1:-1]), "append flags")
    check(arts[-1].artifact.artifact_id == "result" and arts[-1].last_chunk, "result artifact last")
    tid2 = evs[0].task.id
    check(evs[0].task.context_id == ctx, "the stream's task joined the given context")
    check(all(
        (e.status_update.task_id if kind(e) == "status_update" else e.artifact_update.task_id) == tid2
        for e in evs[1:]
    ), "every event names the task")
    print("streaming send ok", tid2, kinds)

    # Get with historyLength.
    got = await blocking.get_task(GetTaskRequest(id=tid2))
    check(got.status.state == TaskState.TASK_STATE_COMPLETED and len(got.history) == 1, "get")
    got = await blocking.get_task(GetTaskRequest(id=tid2, history_length=0))
    check(len(got.history) == 0, f"historyLength=0 still has {len(got.history)} messages")

    # List: by context, paged, by status.
    listed = await blocking.list_tasks(ListTasksRequest(context_id=ctx))
    ids = [t.id for t in listed.tasks]
    check(ids == [task.id, tid2] and listed.total_size == 2, f"list by context {ids} {listed.total_size}")
    page1 = await blocking.list_tasks(ListTasksRequest(context_id=ctx, page_size=1))
    check(len(page1.tasks) == 1 and page1.next_page_token, "page 1")
    page2 = await blocking.list_tasks(
        ListTasksRequest(context_id=ctx, page_size=1, page_token=page1.next_page_token)
    )
    check([t.id for t in page2.tasks] == [tid2] and not page2.next_page_token, "page 2")
    none = await blocking.list_tasks(ListTasksRequest(context_id=ctx, status=TaskState.TASK_STATE_FAILED))
    check(len(none.tasks) == 0 and none.total_size == 0, "status filter")
    print("get/list ok")

    # Cancel a running task.
    slow = message([Part(text=TEXT), data_part({"chunks": 50, "delay_ms": 200})])
    evs = await collect(
        blocking.send_message(
            SendMessageRequest(message=slow, configuration=SendMessageConfiguration(return_immediately=True))
        )
    )
    running = evs[0].task
    check(running.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING),
          f"returnImmediately state {running.status.state}")
    canceled = await blocking.cancel_task(CancelTaskRequest(id=running.id))
    check(canceled.status.state == TaskState.TASK_STATE_CANCELED, f"cancel state {canceled.status.state}")
    again = await blocking.get_task(GetTaskRequest(id=running.id))
    check(again.status.state == TaskState.TASK_STATE_CANCELED, "stays canceled")
    await expect_error(blocking.cancel_task(CancelTaskRequest(id=running.id)), TaskNotCancelableError,
                       "cancel of a canceled task")
    await expect_error(collect(streaming.subscribe(SubscribeToTaskRequest(id=running.id))),
                       UnsupportedOperationError, "subscribe to a terminal task")
    print("cancel ok")

    # Drop a stream in the middle, then resubscribe.
    n = 20
    long = message([Part(text=TEXT), data_part({"chunks": n, "delay_ms": 50})])
    first = []
    async for ev in streaming.send_message(SendMessageRequest(message=long)):
        first.append(ev)
        if len(first) == 5:
            break  # closes the connection
    tid3 = first[0].task.id
    mid = await blocking.get_task(GetTaskRequest(id=tid3))
    check(mid.status.state == TaskState.TASK_STATE_WORKING, f"still running after the drop: {mid.status.state}")
    second = await collect(streaming.subscribe(SubscribeToTaskRequest(id=tid3)))

    def seqs(events):
        out = []
        for e in events:
            k = kind(e)
            if k == "task":
                continue
            body = e.status_update if k == "status_update" else e.artifact_update
            out.append((int(body.metadata["seq"]), k, MessageToDict(body).get("artifact", {}).get("artifactId")))
        return out

    # The resubscription starts with the task as it stands (A2A 1.0 3.1.6): its state and the
    # artifacts so far, up to metadata.seq; then only the events after that.
    check(kind(second[0]) == "task", f"first event of a resubscription: {kind(second[0])}")
    snap = second[0].task
    snap_seq = int(snap.metadata["seq"])
    check(snap.status.state == TaskState.TASK_STATE_WORKING, f"current state {snap.status.state}")
    s1, s2 = seqs(first), seqs(second)
    check(snap_seq >= max(s for s, _, _ in s1), f"the task covers what the first stream saw: {snap_seq} {s1}")
    nums = [s for s, _, _ in s2]
    check(nums == sorted(nums) and all(s > snap_seq for s in nums), f"only later events: {snap_seq} {nums}")
    check(sorted(set(nums)) == list(range(snap_seq + 1, max(nums) + 1)), f"seqs not contiguous: {nums}")
    check(kind(second[-1]) == "status_update"
          and second[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED, "resubscribe ends COMPLETED")
    before = output_text(MessageToDict(snap)) or ""
    seen = "".join(p.text for e in first[1:] if kind(e) == "artifact_update" for p in e.artifact_update.artifact.parts)
    check(before.startswith(seen), f"the task holds what the first stream saw: {before!r} vs {seen!r}")
    chunks = [e.artifact_update for e in second if kind(e) == "artifact_update" and e.artifact_update.artifact.artifact_id == "output"]
    check(all(c.append for c in chunks), "later chunks append to the task's artifact")
    check(before + "".join(p.text for c in chunks for p in c.artifact.parts) == TEXT, "rebuilt text")
    print("resubscribe ok", len(first), len(second))

    # Unknown task.
    await expect_error(blocking.get_task(GetTaskRequest(id="no-such-task")), TaskNotFoundError, "unknown task")
    await expect_error(blocking.cancel_task(CancelTaskRequest(id="no-such-task")), TaskNotFoundError,
                       "cancel unknown task")

    # Push configs.
    cfg = await blocking.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=tid2, id="hook-1", url="http://127.0.0.1:9/hook", token="tok")
    )
    check(cfg.id == "hook-1" and cfg.token == "***", f"created (token write-only) {MessageToDict(cfg)}")
    got = await blocking.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=tid2, id="hook-1")
    )
    check(got.url == "http://127.0.0.1:9/hook", "get push config")
    lst = await blocking.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=tid2))
    check([c.id for c in lst.configs] == ["hook-1"], "list push configs")
    await blocking.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=tid2, id="hook-1")
    )
    lst = await blocking.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=tid2))
    check(len(lst.configs) == 0, "deleted")
    await expect_error(
        blocking.get_task_push_notification_config(GetTaskPushNotificationConfigRequest(task_id=tid2, id="hook-1")),
        TaskNotFoundError, "deleted config",
    )
    print("push configs ok")

    # The hub endpoint, a local process agent named in the metadata.
    async with httpx.AsyncClient(timeout=30) as hc:
        hub = await create_client(hub_card, client_config=ClientConfig(streaming=False, httpx_client=hc))
        evs = await collect(hub.send_message(SendMessageRequest(
            message=message([Part(text="from a2a")], metadata={"agentId": process_agent}))))
        t = MessageToDict(evs[0].task)
        check(t["status"]["state"] == "TASK_STATE_COMPLETED", f"process agent state {t['status']}")
        check(t["metadata"]["agentId"] == process_agent, "routed to the process agent")
        out = next(a for a in t["artifacts"] if a["artifactId"] == "output")["parts"]
        check(out[0] == {"text": "hello "} and {"data": {"n": 2}} in out, f"process chunks {out}")
        res = next(a for a in t["artifacts"] if a["artifactId"] == "result")["parts"][0]["data"]
        check(res["ok"] is True and res["request"]["input"]["text"] == "from a2a", f"process result {res}")
    print("process agent ok")
    for c in (blocking, streaming):
        await c.close()
    print("ALL OK")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
