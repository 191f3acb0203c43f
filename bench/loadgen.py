"""HTTP load generator for bench/ingest.py, run as its own process so that the client does not
share an event loop (or a GIL) with the server under test.

    python bench/loadgen.py SPEC.json RESULT.json

SPEC: {"url", "token" (or null), "concurrency", "deadline_s", "bodies": {payloads.build spec},
       "warmup": {payloads.build spec} (optional; sent first, not measured)}.
RESULT: per measured request its start time (time.time()), latency (s), HTTP status and the
response body's "id" when there is one; plus wall-clock start/end of the measured run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import payloads


async def _fire(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    concurrency: int,
    deadline: float,
) -> dict[str, Any]:
    n = len(bodies)
    starts = [0.0] * n
    latencies = [-1.0] * n
    statuses = [0] * n
    ids: list[int | None] = [None] * n
    raw: list[bytes] = [b""] * n
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < n and time.monotonic() < deadline:  # bounded by count and by time
            i = next_index
            next_index += 1
            t_wall = time.time()
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=bodies[i], headers=headers) as resp:
                    raw[i] = await resp.read()
                    statuses[i] = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[i] = -1
                raw[i] = repr(exc).encode()
            latencies[i] = time.perf_counter() - t0
            starts[i] = t_wall

    wall_start = time.time()
    mono_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - mono_start
    wall_end = time.time()
    errors: list[str] = []
    for i in range(n):
        if statuses[i] == 200:
            try:
                value = json.loads(raw[i]).get("id")
                ids[i] = int(value) if value is not None else None
            except (ValueError, AttributeError):
                pass
        elif statuses[i] != 0 and len(errors) < 5:
            errors.append(f"{statuses[i]}: {raw[i][:200]!r}")
    return {
        "sent": sum(1 for s in statuses if s != 0),
        "starts": starts,
        "latencies": latencies,
        "statuses": statuses,
        "ids": ids,
        "elapsed_s": elapsed,
        "wall_start": wall_start,
        "wall_end": wall_end,
        "errors": errors,
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if spec.get("token"):
        headers["Authorization"] = f"Bearer {spec['token']}"
    concurrency = int(spec["concurrency"])
    deadline = time.monotonic() + float(spec["deadline_s"])
    bodies = payloads.build(spec["bodies"])
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        warm: dict[str, Any] | None = None
        if spec.get("warmup"):
            warm = await _fire(
                session, spec["url"], headers, payloads.build(spec["warmup"]), concurrency, deadline
            )
        result = await _fire(session, spec["url"], headers, bodies, concurrency, deadline)
    result["body_bytes_mean"] = sum(len(b) for b in bodies) / max(1, len(bodies))
    result["warmup"] = (
        {"sent": warm["sent"], "statuses": warm["statuses"], "ids": warm["ids"]} if warm else None
    )
    return result


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(spec))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
