"""Serving under load: a real sampler process driven by N concurrent clients, against the limit.

    python bench/sampler_load.py                          # 1, 8, 64 clients x 16 images, 20 s each
    python bench/sampler_load.py --seconds 5 --count 1    # small requests, where batching matters most
    python bench/sampler_load.py --store demo-store       # a trained model instead of a fresh one

For each number of clients it prints images/s, requests/s, p50/p95/p99 latency and errors, first with
dynamic batching on (the server's defaults), then the no-batching baseline (the same server with
--no-batching: one request per forward pass). Before that, in this process, it times the generator's
forward pass at several batch sizes (the limit: the best images/s) and the pass the server runs for one
request of --count images alone ("one forward pass"; the server pads it to the smallest of its verified
pass sizes). Clients and server share this machine's CPU, as the targets
assume; without --store it publishes an untrained generator of the default architecture (the cost of a
forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
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

from gan_common import store as store_layout  # noqa: E402
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc  # noqa: E402

FORMATS = {"png": sampler_pb2.IMAGE_FORMAT_PNG, "raw": sampler_pb2.IMAGE_FORMAT_RAW_UINT8}
LIMIT_BATCHES = (1, 4, 8, 16, 32, 64, 128, 256)
ONE_PASS_REPEATS = 200  # enough passes for the spread of one request's pass: its own p99 shows the machine's noise


def forward_pass_figures(store: Path, version: int, batches: list[int], repeats: int, count: int,
                         max_batch_size: int) -> tuple[dict[int, float], list[float], tuple[int, ...]]:
    """Seconds per forward pass at each batch size (best of `repeats`, after a warm-up), the seconds of
    each of ONE_PASS_REPEATS passes for one request of `count` images as the server runs it, and the
    server's verified pass sizes."""
    from gan_common.images import latents_for_seed
    from sampler_service.batching import run_padded
    from sampler_service.loading import load_version

    model = load_version(store, version, max_batch_size)
    latents = latents_for_seed(0, max(*batches, count), model.latent_dim)
    labels = np.zeros(len(latents), np.int32) if model.metadata.num_classes else None

    def times(rows: int, shapes: int | tuple[int, ...], repeats: int) -> list[float]:
        run_padded(model, latents[:rows], None if labels is None else labels[:rows], shapes)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_padded(model, latents[:rows], None if labels is None else labels[:rows], shapes)
            seconds.append(time.perf_counter() - started)
        return seconds

    passes = {rows: min(times(rows, rows, repeats)) for rows in batches}
    return passes, times(count, model.pass_shapes, max(repeats, ONE_PASS_REPEATS)), model.pass_shapes


def start_server(store: Path, port: int, extra: list[str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sampler_service", "--store", str(store), "--port", str(port), *extra]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_until_serving(stub: sampler_pb2_grpc.SamplerStub, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sampler exited with status {process.returncode}; see its log")
        try:
            return stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=2).info.model_version
        except grpc.RpcError:
            time.sleep(0.2)
    raise SystemExit("the sampler did not serve a version within 180 s")


def drive(stub: sampler_pb2_grpc.SamplerStub, clients: int, seconds: float, request: sampler_pb2.GenerateRequest,
          timeout: float) -> dict:
    """`clients` threads call Generate back to back for `seconds`; latencies of calls that ended inside."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    images = [0]
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client() -> None:
        start_line.wait()
        while True:
            started = time.perf_counter()
            if started >= stop_at[0]:
                return
            try:
                response = stub.Generate(request, timeout=timeout)
                ok, count = True, len(response.images)
            except grpc.RpcError as error:
                ok, count = False, 0
                code = error.code().name  # type: ignore[attr-defined]
            ended = time.perf_counter()
            with lock:
                if ended <= stop_at[0]:
                    if ok:
                        latencies.append(ended - started)
                        images[0] += count
                    else:
                        errors[code] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join(timeout=seconds + timeout + 10)
    elapsed = seconds
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"clients": clients, "images_per_s": images[0] / elapsed, "requests_per_s": len(latencies) / elapsed,
            "p50": np.percentile(ms, 50), "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99),
            "errors": dict(errors)}


def run_server(title: str, store: Path, extra: list[str], args: argparse.Namespace, log: Path) -> dict[int, dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = start_server(store, port, extra, log)
    results = {}
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 1 << 26)])
        stub = sampler_pb2_grpc.SamplerStub(channel)
        version = wait_until_serving(stub, process)
        request = sampler_pb2.GenerateRequest(count=args.count, format=FORMATS[args.format])
        drive(stub, 4, min(2.0, args.seconds), request, args.timeout)  # warm-up
        print(f"\n{title} (version {version}; {args.count} images per request, {args.format.upper()}):")
        print(f"  {'clients':>7} {'images/s':>9} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  errors")
        for clients in args.clients:
            row = drive(stub, clients, args.seconds, request, args.timeout)
            results[clients] = row
            print(f"  {clients:7d} {row['images_per_s']:9.0f} {row['requests_per_s']:7.1f} {row['p50']:8.1f} "
                  f"{row['p95']:8.1f} {row['p99']:8.1f}  {row['errors'] or 0}", flush=True)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=120)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a store with a published model (default: a fresh one)")
    parser.add_argument("--clients", type=lambda t: [int(x) for x in t.split(",")], default=[1, 8, 64],
                        help="numbers of concurrent clients, comma-separated (1,8,64)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per number of clients")
    parser.add_argument("--count", type=int, default=16, help="images per request")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png")
    parser.add_argument("--max-batch-size", type=int, default=256, help="the server's largest forward pass")
    parser.add_argument("--sampler-flags", default="", help="more sampler flags for both servers, e.g. "
                                                            "'--batch-threads 2'")
    parser.add_argument("--timeout", type=float, default=60.0, help="each request's deadline, seconds")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes per batch size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sampler-load-") as scratch:
        store = args.store or Path(scratch) / "store"
        if args.store is None:
            from trainer_service.publish import publish_untrained_generator

            publish_untrained_generator(store, 1)
        version = store_layout.latest_version(store)
        if version is None:
            raise SystemExit(f"error: no published version in {store}")
        print(f"CPU cores: {os.cpu_count()}; store {store}, version {version}")
        print("in-process forward pass (run_padded, best of --repeats):")
        batches = sorted({*LIMIT_BATCHES, args.max_batch_size})
        passes, one_pass_times, shapes = forward_pass_figures(store, version, batches,
                                                              args.repeats, args.count, args.max_batch_size)
        for rows, seconds in passes.items():
            mark = "   <- a pass size the server uses" if rows in shapes else ""
            print(f"  batch {rows:4d}: {seconds * 1000:8.1f} ms  {rows / seconds:7.0f} images/s{mark}")
        limit_rows = max(passes, key=lambda r: r / passes[r])
        limit = limit_rows / passes[limit_rows]
        one_pass = min(one_pass_times)
        spread = np.percentile(np.array(one_pass_times) * 1000, [50, 99])
        print(f"  limit: {limit:.0f} images/s (batch {limit_rows}); one request of {args.count} alone, as the "
              f"server runs it: {one_pass * 1000:.1f} ms (best of {len(one_pass_times)}; median {spread[0]:.1f} ms, "
              f"p99 {spread[1]:.1f} ms)")

        common = ["--max-batch-size", str(args.max_batch_size), "--max-count", str(max(256, args.count)),
                  *args.sampler_flags.split()]
        log = Path(scratch) / "sampler.log"
        batched = run_server("dynamic batching", store, common, args, log)
        alone = run_server("no batching (--no-batching)", store, [*common, "--no-batching"], args, log)

    print("\ntargets:")
    top = max(args.clients)
    if top in batched:
        row, base = batched[top], alone[top]["images_per_s"]
        print(f"  {top} clients: {row['images_per_s']:.0f} images/s = {row['images_per_s'] / limit:.0%} of the "
              f"in-process limit (target >= 80%), {row['images_per_s'] / base:.2f}x no batching "
              f"(target >= 1.5x), errors {sum(row['errors'].values())} (target 0)")
    if 1 in batched:
        print(f"  1 client: p99 {batched[1]['p99']:.1f} ms = {batched[1]['p99'] / (one_pass * 1000):.2f}x one "
              f"forward pass for {args.count} images (target <= 2x; the pass alone in-process: p99 "
              f"{spread[1] / (one_pass * 1000):.2f}x its best)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
