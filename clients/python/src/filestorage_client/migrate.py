"""Moves what the old in-process component stored into the daemon, with the right kinds.

    python -m filestorage_client.migrate ./storage --address 127.0.0.1:50051
    python -m filestorage_client.migrate --gcs-bucket old-bucket [--gcs-project p] [--gcs-prefix tasks/]

Reads a folder (``local_storage_path``: data files, ``.metadata`` sidecars, gzip flags)
or a bucket of the old component (old_format explains the layout), tells each object's
kind (str -> TEXT, bytes -> BYTES, pickled plain data -> JSON/TEXT/BYTES), and stores it
with its metadata. Pickles are decoded only with ``--trust-pickle``, and then by a
restricted unpickler for plain data. Keys already in the daemon are left alone unless
``--overwrite``, so a run can be repeated. ``--dry-run`` decodes and reports, writes
nothing. Prints a line per object and per failure, then a summary; ``--json`` adds the
summary as one JSON line. Exit status: 0 when everything moved (or was there already),
1 when some object failed, 2 for bad arguments or an unreachable daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, TextIO

import grpc

from . import old_format
from .errors import FileStorageError
from .storage import FileStorage


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m filestorage_client.migrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?", help="the old component's local_storage_path")
    ap.add_argument("--gcs-bucket", help="read the old component's bucket instead (needs google-cloud-storage)")
    ap.add_argument("--gcs-project", help="GCS project of --gcs-bucket")
    ap.add_argument("--gcs-prefix", help="only blobs under this prefix")
    ap.add_argument("--address", help="the daemon (default $FILESTORAGE_ADDRESS or 127.0.0.1:50051)")
    ap.add_argument("--token", help="bearer token (needs the write right, and read for existence checks)")
    ap.add_argument("--tls-ca", help="PEM CA of the daemon's certificate (turns TLS on)")
    ap.add_argument("--tls-cert", help="PEM client certificate (mutual TLS; with --tls-key)")
    ap.add_argument("--tls-key", help="PEM client key (mutual TLS; with --tls-cert)")
    ap.add_argument("--key-prefix", default="", help="prepended to every key in the daemon")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="decode pickled values (plain data only: dict, list, tuple, set, str, bytes, numbers, bool, None)")
    ap.add_argument("--raw-as", choices=["auto", "bytes"], default="auto",
                    help="kind of values that are not pickled: auto = UTF-8 text as TEXT, the rest BYTES (default); bytes = all BYTES")
    ap.add_argument("--compression-threshold-bytes", type=int, default=1024,
                    help="the old component's compression_threshold_bytes (default 1024): tells its gzip from stored .gz values")
    ap.add_argument("--overwrite", action="store_true", help="replace keys that already exist in the daemon")
    ap.add_argument("--dry-run", action="store_true", help="decode and report; write nothing")
    ap.add_argument("--json", action="store_true", help="end with the summary as one JSON line")
    args = ap.parse_args(argv)
    if bool(args.folder) == bool(args.gcs_bucket):
        ap.error("give a folder or --gcs-bucket (one of them)")
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    return args


def client_config(args: argparse.Namespace) -> Dict[str, Any]:
    config: Dict[str, Any] = {"strict": True}
    if args.address:
        config["address"] = args.address
    if args.token:
        config["token"] = args.token
    if args.tls_ca or args.tls_cert:
        tls = {"ca": args.tls_ca} if args.tls_ca else {}
        if args.tls_cert:
            tls.update(cert=args.tls_cert, key=args.tls_key)
        config["tls"] = tls
    return config


async def migrate(args: argparse.Namespace, out: TextIO) -> Dict[str, Any]:
    """Runs the migration; returns the summary (also printed)."""
    moved: Counter = Counter()
    summary: Dict[str, Any] = {"moved": 0, "by_kind": {}, "already_present": 0, "failed": 0, "dry_run": args.dry_run}
    objects: Iterator[old_format.OldObject] = (
        old_format.scan_bucket(args.gcs_bucket, project=args.gcs_project, prefix=args.gcs_prefix)
        if args.gcs_bucket
        else old_format.scan_folder(args.folder)
    )
    async with FileStorage(client_config(args)) as fs:
        if not args.dry_run:
            await fs.initialize()  # strict: an unreachable daemon stops here
        for obj in objects:
            key = args.key_prefix + obj.key
            try:
                if not args.dry_run and not args.overwrite and await fs.exists(key):
                    raise FileStorageError(grpc.StatusCode.FAILED_PRECONDITION, "exists")
                decoded = old_format.decode(obj, trust_pickle=args.trust_pickle,
                                            compression_threshold=args.compression_threshold_bytes, raw_as=args.raw_as)
                if not args.dry_run:
                    await _store(fs, key, obj, decoded, overwrite=args.overwrite)
            except old_format.Unreadable as err:
                summary["failed"] += 1
                print(f"FAILED {key}: {err}", file=out)
                continue
            except FileStorageError as err:
                if err.code == grpc.StatusCode.FAILED_PRECONDITION and not args.overwrite:
                    summary["already_present"] += 1
                    print(f"exists {key}: already in the daemon, left alone (--overwrite replaces it)", file=out)
                    continue
                if err.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED):
                    raise
                summary["failed"] += 1
                print(f"FAILED {key}: the daemon answered {err}", file=out)
                continue
            moved[decoded.kind] += 1
            notes = f" ({'; '.join(decoded.notes)})" if decoded.notes else ""
            verb = "would move" if args.dry_run else "moved"
            print(f"{verb} {key}: {decoded.kind.upper()}, {decoded.size} bytes{notes}", file=out)
    summary["moved"] = sum(moved.values())
    summary["by_kind"] = dict(sorted(moved.items()))
    kinds = ", ".join(f"{k} {n}" for k, n in summary["by_kind"].items()) or "none"
    print(
        f"migrate: {'would move' if args.dry_run else 'moved'} {summary['moved']} ({kinds}), "
        f"{summary['already_present']} already present, {summary['failed']} failed"
        + (" (dry run: nothing written)" if args.dry_run else ""),
        file=out,
    )
    if args.json:
        print(json.dumps(summary), file=out)
    return summary


async def _store(fs: FileStorage, key: str, obj: old_format.OldObject, decoded: old_format.Decoded, *, overwrite: bool) -> None:
    if_generation_match = None if overwrite else 0
    if decoded.open_value is None:
        await fs.store(key, decoded.value, obj.metadata, kind=decoded.kind, if_generation_match=if_generation_match)
        return
    with decoded.open_value() as f:
        await fs.upload(key, f, kind=decoded.kind, metadata=obj.metadata, if_generation_match=if_generation_match,
                        size=decoded.size)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        summary = asyncio.run(migrate(args, sys.stdout))
    except old_format.Unreadable as err:
        print(f"migrate: {err}", file=sys.stderr)
        sys.exit(2)
    except FileStorageError as err:
        print(f"migrate: the daemon at {args.address or 'the default address'} cannot take writes: {err}", file=sys.stderr)
        sys.exit(2)
    except ValueError as err:
        print(f"migrate: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if summary["failed"] else 0)


if __name__ == "__main__":
    main()
