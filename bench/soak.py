"""Soak: a real sampler process under steady load for minutes while new versions keep arriving.

    python bench/soak.py                                   # 64 clients x 16 images, 5 minutes, a publish every 30 s
    python bench/soak.py --seconds 20 --publish-seconds 5 --clients 16 --architecture dense   # CI's short mode
    python bench/soak.py --store demo-store                # a trained model instead of a fresh one

Publishes an untrained generator (or copies the newest version of --store) as version 1 of a scratch
store, and copies of it up to --initial-versions (by default as many as the sampler keeps loaded, so it
starts with its cache full, as on a store a trainer has been publishing to), starts the sampler on it,
and lets --clients threads, each with its own channel, call Generate back to back. After
--warmup-seconds the measured run begins: every --publish-seconds a new version number is published (a
copy of version 1, written aside and renamed in as the trainer publishes), as long as a whole interval
is left for it to be served. It prints requests served, images/s, errors by status code
(RESOURCE_EXHAUSTED is the sampler shedding load, allowed; anything else is a failure), p50/p99 latency,
the versions served, and the sampler's resident memory at the start and the end, then PASS or FAIL
against the targets: zero errors other than overload, each client's version only moving forward to the
newest published one, memory growth under --max-memory-growth percent. Exit status 1 on FAIL.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from bench.sampler_load import FORMATS, free_loopback_port, start_server, wait_until_serving  # noqa: E402
from gan_common import store as store_layout  # noqa: E402
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc  # noqa: E402
from trainer_service.models import ARCHITECTURES  # noqa: E402
from trainer_service.progress import resident_memory_bytes  # noqa: E402
from trainer_service.publish import publish_copy, publish_untrained_generator  # noqa: E402
from trainer_service.recipes import RECIPES  # noqa: E402

OVERLOAD = "RESOURCE_EXHAUSTED"
OVERLOAD_BACKOFF_SECONDS = 0.05  # a shed call comes back at once; a client waits a little before trying again
MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Call:
    started: float  # time.monotonic()
    seconds: float
    code: str  # grpc.StatusCode name, "OK" when served
    images: int
    version: int  # the model_version that answered; 0 when not served


def call_in_a_loop(target: str, request: sampler_pb2.GenerateRequest, timeout: float, stop: threading.Event,
                   calls: list[Call]) -> None:
    """One client: its own channel, one call after another until `stop`."""
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 1 << 26)]) as channel:
        stub = sampler_pb2_grpc.SamplerStub(channel)
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = stub.Generate(request, timeout=timeout)
                calls.append(Call(started, time.monotonic() - started, "OK", len(response.images),
                                  response.model_version))
            except grpc.RpcError as error:
                code = error.code().name  # type: ignore[attr-defined]
                calls.append(Call(started, time.monotonic() - started, code, 0, 0))
                if code == OVERLOAD:
                    time.sleep(OVERLOAD_BACKOFF_SECONDS)


def versions_only_move_forward(per_client: list[list[Call]]) -> bool:
    for calls in per_client:
        versions = [call.version for call in calls if call.code == "OK"]
        if versions != sorted(versions):
            return False
    return True


def served_so_far(per_client: list[list[Call]], since: float) -> tuple[int, collections.Counter[str], int]:
    """Requests served, failures by code and the newest version served, among calls started after `since`."""
    served, codes, newest = 0, collections.Counter(), 0
    for calls in per_client:
        for call in list(calls):  # a copy: the client thread keeps appending
            if call.started >= since:
                if call.code == "OK":
                    served += 1
                    newest = max(newest, call.version)
                else:
                    codes[call.code] += 1
    return served, codes, newest


def describe_codes(codes: collections.Counter[str]) -> str:
    if not codes:
        return "none"
    return ", ".join(f"{code} {n}" + (" (overload, allowed)" if code == OVERLOAD else "")
                     for code, n in codes.most_common())


def prepare_store(store: Path, source_store: Path | None, architecture: str, versions: int) -> None:
    """Versions 1..`versions` of the scratch store: a fresh untrained generator, or the newest version of
    `source_store`, and copies of it."""
    if source_store is None:
        publish_untrained_generator(store, 1, architecture)
    else:
        newest = store_layout.latest_version(source_store)
        if newest is None:
            raise SystemExit(f"error: no published version in {source_store}")
        publish_copy(store_layout.version_dir(source_store, newest), store, 1)
    for version in range(2, versions + 1):
        publish_copy(store_layout.version_dir(store, 1), store, version)


def soak(args: argparse.Namespace, store: Path, log: Path) -> bool:
    """Runs the load, prints progress and the figures; True when every target is met."""
    port = free_loopback_port()
    sampler = start_server(store, port, args.sampler_flags.split(), log)
    stop = threading.Event()
    per_client: list[list[Call]] = [[] for _ in range(args.clients)]
    threads = []
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_until_serving(sampler_pb2_grpc.SamplerStub(channel), sampler, log)
        request = sampler_pb2.GenerateRequest(count=args.count, format=FORMATS[args.format])
        threads = [threading.Thread(target=call_in_a_loop, args=(f"127.0.0.1:{port}", request, args.timeout, stop,
                                                                  calls), daemon=True) for calls in per_client]
        for thread in threads:
            thread.start()
        print(f"soak: {args.clients} clients x {args.count} images ({args.format.upper()}) for {args.seconds:.0f} s "
              f"after {args.warmup_seconds:.0f} s of warm-up, a new version every {args.publish_seconds:.0f} s; "
              f"sampler pid {sampler.pid}, CPU cores {os.cpu_count()}", flush=True)
        time.sleep(args.warmup_seconds)

        began = time.monotonic()
        rss = [resident_memory_bytes(sampler.pid)]
        published = args.initial_versions
        next_publish = began + args.publish_seconds
        ends = began + args.seconds
        while (now := time.monotonic()) < ends:
            time.sleep(min(1.0, ends - now))
            if sampler.poll() is not None:
                print(f"FAIL: the sampler exited with status {sampler.returncode}; its log ends:\n"
                      f"{log.read_text(errors='replace')[-3000:]}")
                return False
            rss.append(resident_memory_bytes(sampler.pid))
            if time.monotonic() >= next_publish and next_publish + args.publish_seconds <= ends:
                published += 1
                publish_copy(store_layout.version_dir(store, 1), store, published)
                next_publish += args.publish_seconds
                served, codes, newest = served_so_far(per_client, began)
                print(f"  t={time.monotonic() - began:5.0f} s  published version {published:<3d} requests served "
                      f"{served:<6d} serving version {newest:<3d} sampler RSS {rss[-1] / MiB:5.0f} MiB  "
                      f"errors: {describe_codes(codes)}", flush=True)
        stop.set()
        for thread in threads:
            thread.join(timeout=args.timeout + 10)
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        sampler.terminate()
        sampler.wait(timeout=120)

    measured = [[call for call in calls if call.started >= began] for calls in per_client]
    served_calls = [call for calls in measured for call in calls if call.code == "OK"]
    _, codes, _ = served_so_far(per_client, began)
    versions = sorted({call.version for call in served_calls})
    swaps = max(len(versions) - 1, 0)
    ms = np.array([call.seconds for call in served_calls]) * 1000 if served_calls else np.array([np.nan])
    start_rss, end_rss = rss[0], rss[-1]
    growth = (end_rss - start_rss) / start_rss * 100
    failures = sum(n for code, n in codes.items() if code != OVERLOAD)
    forward = versions_only_move_forward(measured)
    reached_newest = bool(versions) and versions[-1] == published

    print(f"\nresults ({elapsed:.1f} s measured after {args.warmup_seconds:.0f} s of warm-up):")
    print(f"  requests served      {len(served_calls)} ({len(served_calls) / elapsed:.1f}/s)")
    print(f"  images/s             {sum(call.images for call in served_calls) / elapsed:.1f}")
    print(f"  errors by code       {describe_codes(codes)}")
    print(f"  latency p50 / p99    {np.percentile(ms, 50):.0f} / {np.percentile(ms, 99):.0f} ms")
    print(f"  versions served      {versions[0] if versions else '-'}..{versions[-1] if versions else '-'} "
          f"({swaps} swap{'' if swaps == 1 else 's'}; newest published {published}); each client's versions "
          f"{'only moved forward' if forward else 'WENT BACKWARDS'}")
    print(f"  sampler RSS          start {start_rss / MiB:.0f} MiB, end {end_rss / MiB:.0f} MiB ({growth:+.1f}%), "
          f"peak {max(rss) / MiB:.0f} MiB")
    checks = [(f"errors other than overload: {failures} (target 0)", failures == 0),
              (f"versions moved forward to the newest published ({published})", forward and reached_newest),
              (f"sampler memory growth: {growth:+.1f}% (target < {args.max_memory_growth:g}%)",
               growth < args.max_memory_growth)]
    print("targets:")
    for text, met in checks:
        print(f"  {text}: {'met' if met else 'NOT MET'}")
    passed = all(met for _, met in checks)
    print("PASS" if passed else "FAIL")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="measured time (300)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients, each with its own channel (64)")
    parser.add_argument("--count", type=int, default=16, help="images per request (16)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png")
    parser.add_argument("--publish-seconds", type=float, default=30.0, help="time between new versions (30)")
    parser.add_argument("--warmup-seconds", type=float, default=10.0,
                        help="load before the measured run and the first memory reading (10)")
    parser.add_argument("--max-memory-growth", type=float, default=10.0,
                        help="target: the sampler's RSS grows less than this percent from start to end (10)")
    parser.add_argument("--timeout", type=float, default=60.0, help="each request's deadline, seconds (60)")
    parser.add_argument("--initial-versions", type=int, default=3,
                        help="versions in the store when the sampler starts (3: the sampler's default "
                             "--max-loaded-versions)")
    default_architecture = RECIPES["default"].architecture
    parser.add_argument("--architecture", default=default_architecture,
                        choices=sorted(ARCHITECTURES),
                        help=f"the fresh generator's architecture, without --store (the default recipe's: "
                             f"{default_architecture})")
    parser.add_argument("--store", type=Path, help="serve the newest version of this store (copied, never written)")
    parser.add_argument("--keep-store", action="store_true", help="keep the scratch store and the sampler's log")
    parser.add_argument("--sampler-flags", default="", help="more sampler flags, e.g. '--batch-threads 2'")
    args = parser.parse_args()
    if args.seconds < 2 * args.publish_seconds:
        parser.error("--seconds must be at least twice --publish-seconds: one publish, and time to serve it")
    if min(args.clients, args.count, args.initial_versions) < 1 or min(args.publish_seconds, args.timeout) <= 0:
        parser.error("--clients, --count, --initial-versions, --publish-seconds and --timeout must be positive")
    if args.warmup_seconds < 0:
        parser.error("--warmup-seconds must not be negative")

    scratch = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        store = scratch / "store"
        prepare_store(store, args.store, args.architecture, args.initial_versions)
        passed = soak(args, store, scratch / "sampler.log")
    finally:
        if args.keep_store:
            print(f"store and sampler log kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
