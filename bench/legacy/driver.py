"""The old component's own workload, from Python, against the daemon (over gRPC, through
``filestorage_client``) and against the old component itself (PyPI ``aiecs`` 2.2.0,
``aiecs.infrastructure.persistence.file_storage.FileStorage`` on its local backend, loaded
in-process by clients/python/tests/old_component.py) in the same process, one call at a
time, in interleaved rounds (issue 9, "the old component's own workload").

Each round, for each of the two (the order alternates): store all (COUNT 1 KiB JSON task
results, then COUNT 100 KiB texts, then COUNT 1 MiB random byte strings, with the same small
metadata for both), then retrieve all in the same order, checking each value against what
was stored. The old component reads back through a fresh instance: its cache is a dict
inside the instance that stored, so another worker process, or the same one after a
restart, reads from disk (a read from the storing instance is a dict look-up). Both run
with their defaults: the old one caches, gzips values over 1 KiB (level 9) and writes
without fsync; the daemon (local tier) fsyncs every store.

Prints one JSON document on stdout (per row: ops/s per round for each, and how many values
each got back right); progress on stderr. Run by bench/legacy.bench.ts, which starts the
daemon and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "clients" / "python" / "tests"))  # old_component: how the tests load it

from filestorage_client import FileStorage  # noqa: E402
from old_component import load_old_file_storage  # noqa: E402

KINDS = ("json", "text", "bytes")
KIND_LABELS = {"json": "1 KiB JSON task result", "text": "100 KiB text", "bytes": "1 MiB bytes"}
WORDS = ("the model run finished with loss accuracy epoch batch token gradient layer tensor "
         "checkpoint shard dataset split train eval score result worker queue retry latency").split()


def task_result(rng: random.Random, i: int) -> Dict[str, Any]:
    """A task result as the old component's callers store them: about 1 KiB of JSON."""
    doc: Dict[str, Any] = {
        "task_id": f"task-{i:06d}-{rng.getrandbits(32):08x}",
        "status": "completed",
        "worker": f"worker-{rng.randrange(64)}",
        "attempt": rng.randrange(1, 4),
        "timings": {"queued_ms": rng.randrange(10_000), "run_ms": rng.randrange(100_000)},
        "result": {"labels": [], "scores": []},
    }
    while len(json.dumps(doc)) < 1024 - 40:
        doc["result"]["labels"].append(rng.choice(WORDS))
        doc["result"]["scores"].append(round(rng.random(), 6))
    return doc


def text_value(rng: random.Random, size: int = 100 * 1024) -> str:
    """``size`` characters of ASCII text in lines of words (compressible, as reports are)."""
    parts: List[str] = []
    length = 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 16))) + f" {rng.random():.6f}\n"
        parts.append(line)
        length += len(line)
    return "".join(parts)[:size]


def make_values(count: int, seed: int) -> Dict[str, List[Any]]:
    rng = random.Random(seed)
    return {
        "json": [task_result(rng, i) for i in range(count)],
        "text": [text_value(rng) for _ in range(count)],
        "bytes": [rng.randbytes(1 << 20) for _ in range(count)],
    }


def metadata_of(kind: str, i: int) -> Dict[str, Any]:
    return {"kind": kind, "index": i, "source": "bench/legacy"}


async def timed(calls: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Runs one(0..calls-1) one after another; calls per second."""
    start = time.perf_counter()
    for i in range(calls):
        await one(i)
    return calls / (time.perf_counter() - start)


class Result:
    """One system's numbers: calls per second per round, by operation and kind, and how
    many of the values it returned were equal to those stored."""

    def __init__(self) -> None:
        self.rate: Dict[str, Dict[str, List[float]]] = {op: {k: [] for k in KINDS} for op in ("store", "retrieve")}
        self.right: Dict[str, List[int]] = {k: [] for k in KINDS}

    def as_json(self) -> Dict[str, Any]:
        return {"rate": self.rate, "right": self.right}


async def run_daemon(client: FileStorage, prefix: str, values: Dict[str, List[Any]], result: Result) -> None:
    for kind in KINDS:
        async def store(i: int, kind: str = kind) -> None:
            await client.store(f"{prefix}{kind}/{i}", values[kind][i], metadata=metadata_of(kind, i))

        result.rate["store"][kind].append(await timed(len(values[kind]), store))
    for kind in KINDS:
        got: List[Any] = []

        async def retrieve(i: int, kind: str = kind) -> None:
            got.append(await client.retrieve(f"{prefix}{kind}/{i}"))

        result.rate["retrieve"][kind].append(await timed(len(values[kind]), retrieve))
        right = sum(1 for a, b in zip(got, values[kind]) if a == b)
        result.right[kind].append(right)
        if right != len(values[kind]):
            raise SystemExit(f"the daemon returned {len(values[kind]) - right} of {len(values[kind])} {KIND_LABELS[kind]} values wrong")
    await client.delete_many(prefix=prefix)


async def run_old(module: Any, folder: Path, values: Dict[str, List[Any]], result: Result) -> None:
    config = {"local_storage_path": str(folder)}
    writer = module.FileStorage(config)
    await writer.initialize()
    for kind in KINDS:
        async def store(i: int, kind: str = kind) -> None:
            if not await writer.store(f"{kind}/{i}", values[kind][i], metadata=metadata_of(kind, i)):
                raise SystemExit(f"the old component refused to store {KIND_LABELS[kind]} {i}")

        result.rate["store"][kind].append(await timed(len(values[kind]), store))
    reader = module.FileStorage(config)  # empty cache: reads from disk
    await reader.initialize()
    for kind in KINDS:
        got: List[Any] = []

        async def retrieve(i: int, kind: str = kind) -> None:
            got.append(await reader.retrieve(f"{kind}/{i}"))

        result.rate["retrieve"][kind].append(await timed(len(values[kind]), retrieve))
        result.right[kind].append(sum(1 for a, b in zip(got, values[kind]) if a == b))
    shutil.rmtree(folder)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="the daemon's host:port")
    parser.add_argument("--old-dir", required=True, help="a folder for the old component's local storage")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=100, help="values of each kind per round")
    args = parser.parse_args()
    # The old component logs an error per value it cannot read back; the bench counts them instead.
    logging.basicConfig(level=logging.CRITICAL)

    module = load_old_file_storage()
    values = make_values(args.count, seed=9)
    warm = {k: v[: max(1, args.count // 10)] for k, v in values.items()}
    client = FileStorage({"address": args.address, "strict": True})
    old_root = Path(args.old_dir)
    daemon, old = Result(), Result()
    orders: List[str] = []
    try:
        print("warm-up (a tenth of the values, not counted)", file=sys.stderr)
        await run_daemon(client, "legacy/warm/", warm, Result())
        await run_old(module, old_root / "warm", warm, Result())
        # CLOCK_MONOTONIC, the clock of V8's CPU profiles: the bench cuts the daemon's profile to the rounds.
        measured_from = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        for r in range(1, args.rounds + 1):
            order = ("daemon", "old") if r % 2 == 1 else ("old", "daemon")
            orders.append(",".join(order))
            for who in order:
                started = time.perf_counter()
                if who == "daemon":
                    await run_daemon(client, f"legacy/r{r}/", values, daemon)
                else:
                    await run_old(module, old_root / f"r{r}", values, old)
                print(f"round {r}/{args.rounds}: {who} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
        measured_to = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    finally:
        await client.close()
    json.dump({
        "rounds": args.rounds, "count": args.count, "orders": orders, "python": sys.version.split()[0],
        "measuredFromMicros": measured_from, "measuredToMicros": measured_to,
        "daemon": daemon.as_json(), "old": old.as_json(),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    asyncio.run(main())
