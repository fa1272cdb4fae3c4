"""A small load generator for the A2A front door (not run by the test suite).

Usage: a2a_bench.py BASE_URL N CONCURRENCY MODE
  MODE: send    SendMessage (blocking) to /a2a/echo
        stream  SendStreamingMessage to /a2a/echo, read to the end
        rest    REST POST /api/v1/agents/echo/invoke with wait=true (baseline)

Prints throughput and p50/p99 latency after 20 warm-up calls. One Python process drives all
the concurrency, so at high concurrency the client may be the bottleneck.

Example (server from `cargo run --release -- serve`):
  .tools/venv/bin/python tests/python/a2a_bench.py http://127.0.0.1:8787 500 1 send
"""

import asyncio
import sys
import time
import uuid

import httpx

TEXT = "the quick brown fox"


def rpc_body(method):
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": method,
        "params": {"message": {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": TEXT}]}},
    }


async def one(c, base, mode, lat):
    t = time.perf_counter()
    if mode == "send":
        r = await c.post(base + "/a2a/echo", json=rpc_body("SendMessage"), headers={"a2a-version": "1.0"})
        assert r.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", r.text
    elif mode == "stream":
        events = 0
        headers = {"a2a-version": "1.0", "accept": "text/event-stream"}
        async with c.stream("POST", base + "/a2a/echo", json=rpc_body("SendStreamingMessage"), headers=headers) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    events += 1
        assert events == 7, events  # task, working, 3 chunks, result, completed
    else:
        r = await c.post(
            base + "/api/v1/agents/echo/invoke",
            json={"input": {"messages": [{"role": "user", "content": TEXT}]}, "wait": True},
        )
        assert r.json()["status"] == "done", r.text
    lat.append(time.perf_counter() - t)


async def main(base, n, conc, mode):
    lat = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=conc)) as c:
        for _ in range(20):
            await one(c, base, mode, [])
        sem = asyncio.Semaphore(conc)

        async def worker():
            async with sem:
                await one(c, base, mode, lat)

        t = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(n)])
        elapsed = time.perf_counter() - t
    lat.sort()
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)]
    print(f"{mode} n={n} c={conc}: {n / elapsed:.0f}/s, p50 {lat[len(lat) // 2] * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1].rstrip("/"), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
