"""The client conformance scenario (clients/SCENARIO.md), from Python:

    FILESTORAGE_ADDRESS=127.0.0.1:50051 SCENARIO_PREFIX=py/1234/ python -m filestorage_client.scenario

Runs every step against the daemon at $FILESTORAGE_ADDRESS (plaintext, no auth) under
the key prefix $SCENARIO_PREFIX; prints one line per step and exits 0 only if every step
held. On failure it prints the step's name and what differed, and exits 1.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import sys
import tempfile
from typing import Any, Awaitable, Callable, List, Tuple

import grpc

from .crc32c import crc32c
from .errors import FileStorageError
from .storage import FileStorage

MiB = 1024 * 1024
STREAM_SIZE = 3 * MiB + 17
STREAM_CHUNK = 64 * 1024
PNG_SIGNATURE = bytes([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
TEXT = "héllo wörld"
TEXT_METADATA = {"tags": ["a", "b"], "n": 3, "nested": {"x": True}}
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
JSON_VALUE = {"score": 0.93, "items": [1, "two", None], "ok": False}
JSON_LOOKING = '{"not": "json"}'


class StepFailed(Exception):
    pass


def expect(what: str, got: Any, want: Any) -> None:
    """Fails the step unless got == want, and of the same type (True is not 1, b"" not None)."""
    if got != want or type(got) is not type(want):
        raise StepFailed(f"{what}: got {got!r} ({type(got).__name__}), want {want!r} ({type(want).__name__})")


def stream_bytes() -> bytes:
    """Byte i = (i * 31 + 7) mod 251."""
    pattern = bytes((i * 31 + 7) % 251 for i in range(251))
    whole, rest = divmod(STREAM_SIZE, 251)
    return pattern * whole + pattern[:rest]


async def expect_code(what: str, code: grpc.StatusCode, call: Awaitable[Any]) -> None:
    try:
        result = await call
    except FileStorageError as err:
        if err.code != code:
            raise StepFailed(f"{what}: got {err.code.name} ({err.details}), want {code.name}") from None
        return
    raise StepFailed(f"{what}: succeeded with {result!r}, want {code.name}")


class Scenario:
    def __init__(self, fs: FileStorage, prefix: str) -> None:
        self.fs = fs
        self.p = prefix

    async def step1_text(self) -> None:
        fs, p = self.fs, self.p
        await fs.store(p + "text", TEXT, TEXT_METADATA, content_type=TEXT_CONTENT_TYPE)
        expect("retrieve text", await fs.retrieve(p + "text"), TEXT)
        info = await fs.stat(p + "text")
        expect("stat kind", info.kind, "text")
        expect("stat size (UTF-8 bytes)", info.size, 13)
        expect("stat metadata", info.metadata, TEXT_METADATA)
        expect("stat metadata tags is a list", type(info.metadata["tags"]), list)
        expect("stat metadata n is a number", isinstance(info.metadata["n"], (int, float)), True)
        expect("stat content type", info.content_type, TEXT_CONTENT_TYPE)
        expect("stat generation > 0", info.generation > 0, True)
        expect("stat crc32c", info.crc32c, crc32c(TEXT.encode("utf-8")))

    async def step2_bytes(self) -> None:
        fs, p = self.fs, self.p
        await fs.store(p + "bytes", PNG_SIGNATURE)
        expect("retrieve bytes", await fs.retrieve(p + "bytes"), PNG_SIGNATURE)
        expect("stat kind", (await fs.stat(p + "bytes")).kind, "bytes")
        await fs.store(p + "empty", b"")
        expect("retrieve empty", await fs.retrieve(p + "empty"), b"")

    async def step3_json(self) -> None:
        fs, p = self.fs, self.p
        await fs.store(p + "json", JSON_VALUE)
        expect("retrieve json", await fs.retrieve(p + "json"), JSON_VALUE)
        expect("stat kind", (await fs.stat(p + "json")).kind, "json")
        await fs.store(p + "json-looking", JSON_LOOKING)
        expect("retrieve json-looking text", await fs.retrieve(p + "json-looking"), JSON_LOOKING)

    async def step4_exists(self) -> None:
        fs, p = self.fs, self.p
        expect("exists text", await fs.exists(p + "text"), True)
        expect("exists missing", await fs.exists(p + "missing"), False)
        expect("retrieve missing", await fs.retrieve(p + "missing"), None)

    async def step5_list(self) -> None:
        fs, p = self.fs, self.p
        want = [p + "bytes", p + "empty", p + "json", p + "json-looking", p + "text"]
        expect("list_keys", await fs.list_keys(p), want)
        page = await fs.list_page(p, 2)
        expect("first page of 2", page.keys, want[:2])
        expect("first page has a next page token", bool(page.next_page_token), True)
        expect("iter_keys with pages of 2", [k async for k in fs.iter_keys(p, page_size=2)], want)

    async def step6_stream(self) -> None:
        fs, p = self.fs, self.p
        data = stream_bytes()
        info = await fs.upload(p + "stream", io.BytesIO(data), chunk_size=STREAM_CHUNK)
        expect("uploaded size", info.size, STREAM_SIZE)
        expect("uploaded crc32c", info.crc32c, crc32c(data))
        got = await fs.read_range(p + "stream", 1048576, 4096)
        expect("ranged download offset 1048576 limit 4096", got, data[1048576 : 1048576 + 4096])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "stream.bin")
            await fs.download(p + "stream", path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        expect("sha256 of the whole download", digest, hashlib.sha256(data).hexdigest())

    async def step7_precondition(self) -> None:
        fs, p = self.fs, self.p
        generation = (await fs.stat(p + "text")).generation
        await expect_code(
            "store with if_generation_match = generation + 12345",
            grpc.StatusCode.FAILED_PRECONDITION,
            fs.store(p + "text", TEXT, TEXT_METADATA, if_generation_match=generation + 12345),
        )
        expect("store with if_generation_match = generation",
               await fs.store(p + "text", TEXT, TEXT_METADATA, if_generation_match=generation), True)
        expect("generation rose", (await fs.stat(p + "text")).generation > generation, True)

    async def step8_errors(self) -> None:
        fs, p = self.fs, self.p
        await expect_code('key "../x"', grpc.StatusCode.INVALID_ARGUMENT, fs.store("../x", "x"))
        await expect_code("key with a newline", grpc.StatusCode.INVALID_ARGUMENT, fs.store(p + "a\nb", "x"))
        await expect_code("stat of a missing key", grpc.StatusCode.NOT_FOUND, fs.stat(p + "missing"))
        generation = (await fs.stat(p + "text")).generation
        await expect_code("stale if_generation_match", grpc.StatusCode.FAILED_PRECONDITION,
                          fs.store(p + "text", TEXT, if_generation_match=generation + 12345))
        await expect_code("ranged download past the end", grpc.StatusCode.OUT_OF_RANGE,
                          fs.read_range(p + "bytes", len(PNG_SIGNATURE) + 1, 1))
        await expect_code("TEXT that is not UTF-8", grpc.StatusCode.INVALID_ARGUMENT,
                          fs.store(p + "not-utf8", b"\xff\xfe", kind="text"))

    async def step9_delete(self) -> None:
        fs, p = self.fs, self.p
        expect("delete bytes", await fs.delete(p + "bytes"), True)
        expect("delete bytes again", await fs.delete(p + "bytes"), False)
        rest = await fs.list_keys(p)
        expect("keys left", rest, [p + "empty", p + "json", p + "json-looking", p + "stream", p + "text"])
        expect("delete_many(prefix) count", await fs.delete_many(prefix=p), len(rest))
        expect("list_keys after delete_many", await fs.list_keys(p), [])

    async def step10_stats(self) -> None:
        stats = await asyncio.to_thread(self.fs.get_stats)
        expect("get_stats initialized", stats["initialized"], True)
        expect("get_stats total_operations > 0", stats["total_operations"] > 0, True)


STEPS: List[Tuple[str, Callable[[Scenario], Awaitable[None]]]] = [
    ("1 text with metadata", Scenario.step1_text),
    ("2 bytes and empty bytes", Scenario.step2_bytes),
    ("3 json and a JSON-looking string", Scenario.step3_json),
    ("4 exists and a missing key", Scenario.step4_exists),
    ("5 list_keys and pages", Scenario.step5_list),
    ("6 streamed upload and ranged download", Scenario.step6_stream),
    ("7 precondition", Scenario.step7_precondition),
    ("8 one error per status", Scenario.step8_errors),
    ("9 delete and delete_many", Scenario.step9_delete),
    ("10 get_stats", Scenario.step10_stats),
]


async def run(address: str, prefix: str) -> int:
    async with FileStorage({"address": address, "strict": True, "retries": 0, "timeout_seconds": 30}) as fs:
        scenario = Scenario(fs, prefix)
        for name, step in STEPS:
            try:
                await step(scenario)
            except StepFailed as err:
                print(f"FAIL step {name}: {err}")
                return 1
            except FileStorageError as err:
                print(f"FAIL step {name}: unexpected {err}")
                return 1
            print(f"ok   step {name}")
    print(f"scenario: all {len(STEPS)} steps held against {address} under {prefix!r}")
    return 0


def main() -> None:
    address = os.environ.get("FILESTORAGE_ADDRESS")
    prefix = os.environ.get("SCENARIO_PREFIX")
    if not address or not prefix:
        print("scenario: set FILESTORAGE_ADDRESS (host:port) and SCENARIO_PREFIX (e.g. py/1234/)", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(run(address, prefix)))


if __name__ == "__main__":
    main()
