"""Serving under load: a real sampler process driven by N concurrent clients, against the limit.

    python bench/sampler_load.py                          # 1, 8, 64 clients x 16 images, 20 s each
    python bench/sampler_load.py --seconds 5 --count 1    # small requests, where batching matters most
    python bench/sampler_load.py --store demo-store       # a trained model instead of a fresh one

For each number of clients it prints images/s, requests/s, p50/p95/p99 latency and errors, first with
dynamic batching on (the server's defaults), then the no-batching baseline (the same server with
--no-batching: one request per forward pass). In this process, before the first row and again after
every row, it times the generator's forward pass at several batch sizes (the limit: the most images/s
at the median pass) and the pass the server runs for one request of --count images alone ("one forward
pass": its median; the server pads it to the smallest of its verified pass sizes). Each row is judged
against the passes timed just before and just after it, because a shared machine's speed drifts
within minutes. Medians, not bests: on a shared VM a pass now and then runs far faster than usual (a
best 1.5x the median), a speed that a 20-s run cannot hold; the bests are printed beside. Clients and
server share this machine's CPU, as the targets assume; without --store it publishes an untrained
generator of the default architecture (the cost of a forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
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
from sampler_service import precision  # noqa: E402

FORMATS = {"png": sampler_pb2.IMAGE_FORMAT_PNG, "raw": sampler_pb2.IMAGE_FORMAT_RAW_UINT8}
LIMIT_BATCHES = (1, 4, 8, 16, 32, 64, 128, 256)
ONE_PASS_REPEATS = 200  # enough passes for the spread of one request's pass: its own p99 shows the machine's noise


class PassTimer:
    """The generator's forward pass in this process, as the server runs it (run_padded on the same
    SavedModel): at several batch sizes for the limit, and for one request alone."""

    def __init__(self, store: Path, version: int, batches: list[int], repeats: int, count: int,
                 max_batch_size: int) -> None:
        from gan_common.images import latents_for_seed
        from sampler_service.loading import load_version

        self.model = load_version(store, version, max_batch_size)
        self.batches, self.repeats, self.count = batches, repeats, count
        self.latents = latents_for_seed(0, max(*batches, count), self.model.latent_dim)
        self.labels = np.zeros(len(self.latents), np.int32) if self.model.metadata.num_classes else None

    @property
    def shapes(self) -> tuple[int, ...]:
        return self.model.pass_shapes

    def _times(self, rows: int, shapes: int | tuple[int, ...], repeats: int) -> list[float]:
        from sampler_service.batching import run_padded

        labels = None if self.labels is None else self.labels[:rows]
        run_padded(self.model, self.latents[:rows], labels, shapes)  # warm-up
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            run_padded(self.model, self.latents[:rows], labels, shapes)
            seconds.append(time.perf_counter() - started)
        return seconds

    def measure(self) -> "PassFigures":
        return PassFigures({rows: self._times(rows, rows, self.repeats) for rows in self.batches},
                           self._times(self.count, self.shapes, max(self.repeats, ONE_PASS_REPEATS)))


@dataclasses.dataclass
class PassFigures:
    """Seconds of each timed pass: per batch size, and for one request of --count images alone."""

    passes: dict[int, list[float]]
    one_request: list[float]

    def __add__(self, other: "PassFigures") -> "PassFigures":
        return PassFigures({rows: times + other.passes[rows] for rows, times in self.passes.items()},
                           self.one_request + other.one_request)

    def limit(self) -> tuple[int, float, float]:
        """The batch size with the most images/s in its median pass, those images/s, and its best pass's."""
        rows = max(self.passes, key=lambda r: r / float(np.median(self.passes[r])))
        return rows, rows / float(np.median(self.passes[rows])), rows / min(self.passes[rows])

    def one_pass(self) -> tuple[float, float, float]:
        """One request's pass: best, median and p99, in ms."""
        ms = np.array(self.one_request) * 1000
        return float(ms.min()), float(np.median(ms)), float(np.percentile(ms, 99))

    def summary(self) -> str:
        rows, median, best = self.limit()
        one_best, one_median, one_p99 = self.one_pass()
        return (f"limit {median:.0f} images/s (batch {rows}, median pass; best {best:.0f}); one request alone "
                f"{one_median:.1f} ms (median of {len(self.one_request)}; best {one_best:.1f}, p99 {one_p99:.1f})")

    def print_table(self, shapes: tuple[int, ...]) -> None:
        for rows, times in self.passes.items():
            mark = "   <- a pass size the server uses" if rows in shapes else ""
            median = float(np.median(times))
            print(f"  batch {rows:4d}: {median * 1000:8.1f} ms  {rows / median:7.0f} images/s  (best "
                  f"{rows / min(times):5.0f}){mark}")
        print(f"  {self.summary()}")


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


def run_server(title: str, store: Path, extra: list[str], args: argparse.Namespace, log: Path,
               timer: PassTimer, before: PassFigures) -> tuple[dict[int, dict], PassFigures]:
    """Drives the server with each number of clients; the in-process pass is timed again after each
    row, so every row has its own limit from just before and just after it (a shared machine's speed
    drifts within minutes). Returns the rows and the last figures, the next row's "before"."""
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
            after = timer.measure()  # the server is idle now: no client is calling
            row["around"], before = before + after, after
            results[clients] = row
            print(f"  {clients:7d} {row['images_per_s']:9.0f} {row['requests_per_s']:7.1f} {row['p50']:8.1f} "
                  f"{row['p95']:8.1f} {row['p99']:8.1f}  {row['errors'] or 0}", flush=True)
            print(f"          in-process, before and after: {row['around'].summary()}", flush=True)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=120)
    return results, before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a store with a published model (default: a fresh one)")
    parser.add_argument("--clients", type=lambda t: [int(x) for x in t.split(",")], default=[1, 8, 64],
                        help="numbers of concurrent clients, comma-separated (1,8,64)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per number of clients")
    parser.add_argument("--count", type=int, default=16, help="images per request")
    parser.add_argument("--format", choices=sorted(FORMATS), default="png")
    parser.add_argument("--max-batch-size", type=int, default=256, help="the server's largest forward pass")
    parser.add_argument("--precision", choices=precision.PRECISIONS, default="float32",
                        help="the servers' --precision, and the in-process passes' (bfloat16: CPUs with AMX or "
                             "AVX512-BF16)")
    parser.add_argument("--sampler-flags", default="", help="more sampler flags for both servers, e.g. "
                                                            "'--batch-threads 2'")
    parser.add_argument("--timeout", type=float, default=60.0, help="each request's deadline, seconds")
    parser.add_argument("--repeats", type=int, default=10, help="timed forward passes per batch size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sampler-load-") as scratch:
        store = args.store or Path(scratch) / "store"
        if args.store is None:
            from trainer_service.publish import publish_untrained_generator
            from trainer_service.recipes import RECIPES

            publish_untrained_generator(store, 1, RECIPES["default"].architecture)
        version = store_layout.latest_version(store)
        if version is None:
            raise SystemExit(f"error: no published version in {store}")
        try:
            precision.check_supported(args.precision)
        except precision.PrecisionError as error:
            raise SystemExit(f"error: {error}") from None
        precision.apply(args.precision)  # before the timer loads the model, as the server does
        print(f"CPU cores: {os.cpu_count()}; store {store}, version {version}; precision {args.precision}")
        batches = sorted({*LIMIT_BATCHES, args.max_batch_size})
        print("in-process forward pass (run_padded, median of --repeats):")
        timer = PassTimer(store, version, batches, args.repeats, args.count, args.max_batch_size)
        figures = timer.measure()
        figures.print_table(timer.shapes)

        common = ["--max-batch-size", str(args.max_batch_size), "--max-count", str(max(256, args.count)),
                  "--precision", args.precision, *args.sampler_flags.split()]
        log = Path(scratch) / "sampler.log"
        batched, figures = run_server("dynamic batching", store, common, args, log, timer, figures)
        alone, _ = run_server("no batching (--no-batching)", store, [*common, "--no-batching"], args, log,
                              timer, figures)

    print("\ntargets (each row against the in-process passes timed just before and just after it):")
    top = max(args.clients)
    if top in batched:
        row, base = batched[top], alone[top]["images_per_s"]
        _, limit, best_limit = row["around"].limit()
        print(f"  {top} clients: {row['images_per_s']:.0f} images/s = {row['images_per_s'] / limit:.0%} of the "
              f"in-process limit (target >= 80%; {row['images_per_s'] / best_limit:.0%} of its best "
              f"pass), {row['images_per_s'] / base:.2f}x no batching (target >= 1.5x), errors "
              f"{sum(row['errors'].values())} (target 0)")
    if 1 in batched:
        one_best, one_median, one_p99 = batched[1]["around"].one_pass()
        p99 = batched[1]["p99"]
        print(f"  1 client: p99 {p99:.1f} ms = {p99 / one_median:.2f}x one forward pass for {args.count} images "
              f"(target <= 2x; {p99 / one_best:.2f}x its best; the pass alone in-process: p99 "
              f"{one_p99 / one_median:.2f}x its median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
