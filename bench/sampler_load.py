"""Serving under load: a real sampler process driven by N concurrent clients, against the limit.

    python bench/sampler_load.py                          # 1, 8, 64 clients x 16 images, 20 s each (5 rounds)
    python bench/sampler_load.py --seconds 5 --count 1    # small requests, where batching matters most
    python bench/sampler_load.py --store demo-store       # a trained model instead of a fresh one

It starts two sampler processes on the same model: dynamic batching on (the server's defaults) and the
no-batching baseline (--no-batching: one request per forward pass). For each number of clients it
prints images/s, requests/s, p50/p95/p99 latency and errors of both. In this process it times the
generator's forward pass at several batch sizes (the limit: the most images/s at the median pass) and
the pass the server runs for one request of --count images alone ("one forward pass": its median; the
server pads it to the smallest of its verified pass sizes). From the batching server's Prometheus
metrics it splits a lone client's call into its wait in the queue, its forward passes, the rest of the
handler, and gRPC and the client. On Linux it also reads, from /proc, the CPU
that each server process and the clients use inside the windows, and splits a request's server CPU at the
most clients into its forward passes (the limit's in-process CPU per image) and the rest: gRPC, PNGs and
Python, which bound the share of the limit a server can reach when its passes are cheap. It splits
the gain over the baseline into three factors: the limit against one request's pass alone back to back
(what the passes themselves gain from batching, in-process), batching's share of the limit, and the
baseline's share of the pass alone (above 100 % when its two batch threads overlap passes). It puts the
limit and the lone request's pass against what the cores compute at best: the generator's floating-point
operations per image (TensorFlow's profiler, on its graph) times their images/s, beside a 2048x2048 matrix
product timed with the passes in each round, in the same precision. And from
/proc/stat it reads the CPU steal, in each window and over the in-process passes: the share of the
machine's CPU time that the hypervisor gave to other guests while this one had work. A run under steal
measures the neighbours as much as the server: on an Intel Xeon (bench/sampler_load_history.md,
2026-12-03), in a run at 43 % steal, one request's pass took 16.9 ms (median), against 6.1 ms in a run
at 0 % on the same VM 40 minutes later.

The measured time is split into --rounds rounds. A round runs one window per number of clients on each
server (their order alternating from round to round), then the in-process passes with both servers
idle. So batching, its baseline and the limit are measured in every state the machine goes through: a
shared VM's speed drifts within minutes (the same pass of 16 took 3.7 ms in one run and 8.9 ms in the
next, two minutes later), and a comparison of figures taken minutes apart would measure the drift. The
targets use all rounds pooled; each round's own ratios are printed beside them as their spread. A
window opens after every client has a call in flight and counts the calls that end inside it, so
throughput is a steady state's. Medians, not bests: now and then a pass runs far faster than usual (a
best 1.5x the median), a speed that a run cannot hold; the bests are printed beside. Clients and servers
share this machine's CPU, as the targets assume; without --store it publishes an untrained generator
of the default architecture (the cost of a forward pass does not depend on the weights).
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
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gan_common import store as store_layout  # noqa: E402
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc  # noqa: E402
from sampler_service import precision  # noqa: E402

FORMATS = {"png": sampler_pb2.IMAGE_FORMAT_PNG, "raw": sampler_pb2.IMAGE_FORMAT_RAW_UINT8}
LIMIT_BATCHES = (1, 4, 8, 16, 32, 64, 128, 256)
MATMUL_SIZE = 2048  # the square matrix product that measures what the cores compute at best
WINDOW_RAMP_S = 1.0  # load before a window opens: every client has a call in flight


@dataclasses.dataclass(frozen=True)
class CpuTicks:
    """Clock ticks of all the machine's CPUs: those stolen (the hypervisor ran something else while this
    VM had work for the CPU) and all of them."""

    stolen: int = 0
    total: int = 0

    def __add__(self, other: "CpuTicks") -> "CpuTicks":
        return CpuTicks(self.stolen + other.stolen, self.total + other.total)

    def __sub__(self, other: "CpuTicks") -> "CpuTicks":
        return CpuTicks(self.stolen - other.stolen, self.total - other.total)

    @property
    def steal(self) -> float | None:
        """The share of the CPU time the hypervisor took (None: no ticks counted)."""
        return self.stolen / self.total if self.total > 0 else None


def cpu_ticks() -> CpuTicks | None:
    """The machine's CPU ticks since boot (Linux /proc/stat); None where there is no /proc/stat."""
    try:
        ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (a guest's own time is inside user already)
    return CpuTicks(ticks[7], sum(ticks)) if len(ticks) == 8 else None


def ticks_between(before: CpuTicks | None, after: CpuTicks | None) -> CpuTicks:
    """The ticks between two cpu_ticks() readings (none counted where either is missing)."""
    return CpuTicks() if before is None or after is None else after - before


class PassTimer:
    """The generator's forward pass in this process, as the server runs it (run_padded on the same
    SavedModel): at several batch sizes for the limit, and for one request alone."""

    def __init__(self, store: Path, version: int, batches: list[int], repeats: int, count: int,
                 max_batch_size: int, one_pass_repeats: int) -> None:
        import tensorflow as tf

        from gan_common.images import latents_for_seed
        from sampler_service.loading import load_version

        self.model = load_version(store, version, max_batch_size)
        self.flops_per_image = generator_flops_per_image(store, version)
        self._matrix = tf.constant(np.ones((MATMUL_SIZE, MATMUL_SIZE), np.float32))
        self._product = tf.function(lambda x: tf.matmul(x, x))  # traced once, on the first round
        self.batches, self.repeats, self.count = batches, repeats, count
        self.one_pass_repeats = one_pass_repeats
        self.latents = latents_for_seed(0, max(*batches, count), self.model.latent_dim)
        self.labels = np.zeros(len(self.latents), np.int32) if self.model.metadata.num_classes else None

    @property
    def shapes(self) -> tuple[int, ...]:
        return self.model.pass_shapes

    def _times(self, rows: int, shapes: int | tuple[int, ...], repeats: int) -> tuple[list[float], float]:
        """Each pass's seconds, and this process's CPU seconds over all of them (its clients are idle)."""
        from sampler_service.batching import run_padded

        labels = None if self.labels is None else self.labels[:rows]
        run_padded(self.model, self.latents[:rows], labels, shapes)  # warm-up
        seconds = []
        cpu_started = time.process_time()
        for _ in range(repeats):
            started = time.perf_counter()
            run_padded(self.model, self.latents[:rows], labels, shapes)
            seconds.append(time.perf_counter() - started)
        return seconds, time.process_time() - cpu_started

    def _matmul_times(self) -> list[float]:
        """Seconds of each of --repeats MATMUL_SIZE x MATMUL_SIZE float32 matrix products in TensorFlow, in the
        precision the passes compute in (bfloat16 rewrites it too): what these cores compute at best."""
        self._product(self._matrix).numpy()  # warm-up
        seconds = []
        for _ in range(self.repeats):
            started = time.perf_counter()
            self._product(self._matrix).numpy()
            seconds.append(time.perf_counter() - started)
        return seconds

    def measure(self) -> "PassFigures":
        before = cpu_ticks()
        timed = {rows: self._times(rows, rows, self.repeats) for rows in self.batches}
        one_request = self._times(self.count, self.shapes, self.one_pass_repeats)[0]
        return PassFigures({rows: times for rows, (times, _) in timed.items()}, one_request,
                           {rows: (cpu, rows * self.repeats) for rows, (_, cpu) in timed.items()},
                           ticks_between(before, cpu_ticks()), self._matmul_times())


@dataclasses.dataclass
class PassFigures:
    """Seconds of each timed pass: per batch size, and for one request of --count images alone."""

    passes: dict[int, list[float]]
    one_request: list[float]
    cpu: dict[int, tuple[float, int]]  # per batch size: CPU seconds (all threads) of its timed passes, images
    ticks: CpuTicks = CpuTicks()  # the machine's, over all the passes
    matmul: list[float] = dataclasses.field(default_factory=list)  # seconds of each timed matrix product

    def __add__(self, other: "PassFigures") -> "PassFigures":
        return PassFigures({rows: times + other.passes[rows] for rows, times in self.passes.items()},
                           self.one_request + other.one_request,
                           {rows: (cpu + other.cpu[rows][0], images + other.cpu[rows][1])
                            for rows, (cpu, images) in self.cpu.items()},
                           self.ticks + other.ticks, self.matmul + other.matmul)

    def matmul_gflops(self) -> float:
        """The matrix product's rate at its median, GFLOP/s."""
        return 2 * MATMUL_SIZE**3 / float(np.median(self.matmul)) / 1e9

    def cpu_ms_per_image(self, rows: int) -> float:
        cpu, images = self.cpu[rows]
        return cpu / images * 1000

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
        steal = self.ticks.steal
        return (f"limit {median:.0f} images/s (batch {rows}, median pass; best {best:.0f}); one request alone "
                f"{one_median:.1f} ms (median of {len(self.one_request)}; best {one_best:.1f}, p99 {one_p99:.1f})"
                + ("" if steal is None else f"; CPU steal {steal:.0%}"))

    def print_table(self, shapes: tuple[int, ...]) -> None:
        for rows, times in self.passes.items():
            mark = "   <- a pass size the server uses" if rows in shapes else ""
            median = float(np.median(times))
            print(f"  batch {rows:4d}: {median * 1000:8.1f} ms  {rows / median:7.0f} images/s  (best "
                  f"{rows / min(times):5.0f}){mark}")
        print(f"  {self.summary()}")


def generator_flops_per_image(store: Path, version: int) -> float | None:
    """Floating-point operations the generator does per image: TensorFlow's profiler counts them in its graph
    traced for one latent, weights frozen (None where it counts none)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from sampler_service.loading import artifact_endpoint

    metadata = store_layout.read_metadata(store, version)
    artifact = store_layout.version_dir(store, version) / metadata.artifact_path
    endpoint, _keep_alive = artifact_endpoint(artifact, metadata.artifact_format)
    specs = [tf.TensorSpec([1, metadata.latent_dim], tf.float32)]
    if metadata.num_classes:
        specs.append(tf.TensorSpec([1], tf.int32))
    traced = tf.function(lambda *inputs: endpoint(inputs[0] if len(inputs) == 1 else list(inputs))
                         ).get_concrete_function(*specs)
    # Frozen: the profiler counts a layer's operations from its weights' shapes, which a variable read hides.
    graph = convert_variables_to_constants_v2(traced).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # the TF1 profiler warns of its own deprecated helpers
    try:
        return float(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops) or None
    finally:
        logger.setLevel(level)


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds a process has used, all its threads (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(store: Path, port: int, extra: list[str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "sampler_service", "--store", str(store), "--port", str(port), *extra]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_until_serving(stub: sampler_pb2_grpc.SamplerStub, process: subprocess.Popen, log: Path) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            # The log lives in the run's scratch folder, gone when the benchmark exits: show its end now.
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise SystemExit(f"the sampler exited with status {process.returncode}; the end of its log:\n{tail}")
        try:
            return stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=2).info.model_version
        except grpc.RpcError:
            time.sleep(0.2)
    raise SystemExit("the sampler did not serve a version within 180 s")


@dataclasses.dataclass
class Window:
    """Calls of one measured window (or of several pooled): those that ended inside it."""

    seconds: float = 0.0
    images: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    server_cpu: float | None = None  # CPU seconds the server process used inside the window (None: no /proc)
    client_cpu: float = 0.0  # and this process, whose only work then is its clients
    ticks: CpuTicks = CpuTicks()  # the machine's, inside the window

    def __add__(self, other: "Window") -> "Window":
        server_cpu = None if self.server_cpu is None or other.server_cpu is None else self.server_cpu + other.server_cpu
        return Window(self.seconds + other.seconds, self.images + other.images, self.latencies + other.latencies,
                      self.errors + other.errors, server_cpu, self.client_cpu + other.client_cpu,
                      self.ticks + other.ticks)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.array(self.latencies) * 1000, q)) if self.latencies else float("nan")


def drive(stub: sampler_pb2_grpc.SamplerStub, clients: int, seconds: float, request: sampler_pb2.GenerateRequest,
          timeout: float, server_pid: int | None = None) -> Window:
    """`clients` threads call Generate back to back; after WINDOW_RAMP_S (every client has a call in
    flight: steady state) a window of `seconds` counts the calls that end inside it, whenever they
    began, so the calls cut by its edges neither inflate nor deflate images/s. The CPU that the server
    (`server_pid`) and the clients use between the window's edges is counted too."""
    window = Window(seconds)
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)
    opens = closes = 0.0

    def client() -> None:
        start_line.wait()
        while time.perf_counter() < closes:
            started = time.perf_counter()
            try:
                count, code = len(stub.Generate(request, timeout=timeout).images), None
            except grpc.RpcError as error:
                count, code = 0, error.code().name  # type: ignore[attr-defined]
            ended = time.perf_counter()
            if opens <= ended <= closes:
                with lock:
                    if code is None:
                        window.latencies.append(ended - started)
                        window.images += count
                    else:
                        window.errors[code] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    opens = time.perf_counter() + WINDOW_RAMP_S
    closes = opens + seconds
    start_line.wait()
    time.sleep(max(0.0, opens - time.perf_counter()))
    server_opens, client_opens = process_cpu_seconds(server_pid) if server_pid else None, time.process_time()
    ticks_open = cpu_ticks()
    time.sleep(max(0.0, closes - time.perf_counter()))
    server_closes = process_cpu_seconds(server_pid) if server_pid else None
    window.client_cpu = time.process_time() - client_opens
    window.ticks = ticks_between(ticks_open, cpu_ticks())
    if server_opens is not None and server_closes is not None:
        window.server_cpu = server_closes - server_opens
    for thread in threads:
        thread.join(timeout=WINDOW_RAMP_S + seconds + timeout + 10)
    return window


# Sums the server's metrics keep of where its Generate calls' time went (see print_time_split).
TIME_SUMS = {"calls": ("gan_sampler_request_latency_seconds_count", {"method": "Generate"}),
             "in_handler": ("gan_sampler_request_latency_seconds_sum", {"method": "Generate"}),
             "queued": ("gan_sampler_queue_wait_seconds_sum", {}),
             "passes": ("gan_sampler_forward_seconds_sum", {})}


def scrape_time_sums(metrics_port: int) -> collections.Counter:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in text_string_to_metric_families(response.read().decode()) for sample in family.samples}
    return collections.Counter({key: samples.get((name, tuple(sorted(labels.items()))), 0.0)
                                for key, (name, labels) in TIME_SUMS.items()})


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    log: Path
    channel: grpc.Channel
    stub: sampler_pb2_grpc.SamplerStub
    metrics_port: int
    windows: dict[int, list[Window]] = dataclasses.field(default_factory=dict)  # clients -> one per round
    one_client_sums: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def pooled(self, clients: int) -> Window:
        return sum(self.windows[clients][1:], self.windows[clients][0])


def launch(store: Path, extra: list[str], log: Path) -> Server:
    port, metrics_port = free_loopback_port(), free_loopback_port()
    process = start_server(store, port, [*extra, "--metrics-port", str(metrics_port)], log)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 1 << 26)])
    return Server(process, log, channel, sampler_pb2_grpc.SamplerStub(channel), metrics_port)


def run_rounds(servers: list[Server], args: argparse.Namespace, timer: PassTimer) -> list[PassFigures]:
    """Rounds of one window per server and number of clients (the servers' order alternating), then the
    in-process passes with both servers idle: each round sees one state of the machine, whose speed
    drifts within minutes on a shared VM. Returns each round's in-process figures."""
    request = sampler_pb2.GenerateRequest(count=args.count, format=FORMATS[args.format])
    for server in servers:
        version = wait_until_serving(server.stub, server.process, server.log)
        drive(server.stub, 4, 1.0, request, args.timeout)  # warm-up: first passes of each shape
    print(f"\nversion {version}; {args.count} images per request, {args.format.upper()}; {args.rounds} rounds of "
          f"{args.seconds / args.rounds:.1f} s per number of clients and server")
    rounds = []
    for number in range(args.rounds):
        for clients in args.clients:
            for server in servers if number % 2 == 0 else servers[::-1]:
                before = scrape_time_sums(server.metrics_port) if clients == 1 else None
                window = drive(server.stub, clients, args.seconds / args.rounds, request, args.timeout,
                               server.process.pid)
                server.windows.setdefault(clients, []).append(window)
                if before is not None:
                    server.one_client_sums.update(scrape_time_sums(server.metrics_port) - before)
        rounds.append(timer.measure())
        line = "  ".join(f"{clients} clients " + " / ".join(f"{server.windows[clients][-1].images_per_s:.0f}"
                                                            for server in servers) for clients in args.clients)
        steal = sum((server.windows[clients][-1].ticks for server in servers for clients in args.clients),
                    CpuTicks()).steal
        print(f"  round {number + 1}: images/s (batching / none) {line}"
              + ("" if steal is None else f" (CPU steal {steal:.0%})") + f"; in-process: {rounds[-1].summary()}",
              flush=True)
    return rounds


def print_rows(batched: Server, alone: Server, clients_list: list[int]) -> None:
    print(f"\n  {'clients':>7} | {'batching: images/s':>18} {'req/s':>7} {'p50 / p95 / p99 ms':>22} {'errors':>6} | "
          f"{'no batching: images/s':>21} {'p50 / p95 / p99 ms':>22} {'errors':>6}")
    for clients in clients_list:
        cells = []
        for server in (batched, alone):
            w = server.pooled(clients)
            latency = f"{w.percentile(50):.1f} / {w.percentile(95):.1f} / {w.percentile(99):.1f}"
            errors = sum(w.errors.values())
            rate = f"{w.images_per_s:.0f}"
            cells.append((rate, f"{len(w.latencies) / w.seconds:.1f}", latency,
                          f"{errors}" + (f" {dict(w.errors)}" if errors else "")))
        (rate, rps, latency, errors), (rate0, _, latency0, errors0) = cells
        print(f"  {clients:7d} | {rate:>18} {rps:>7} {latency:>22} {errors:>6} | {rate0:>21} {latency0:>22} {errors0:>6}")


def print_cpu(batched: Server, alone: Server, clients_list: list[int]) -> None:
    """What the servers' CPU went to: cores busy and CPU ms per request, inside the windows."""
    if batched.pooled(clients_list[0]).server_cpu is None:
        return  # no /proc here
    print(f"\n  CPU in the windows (cores busy; ms of CPU per request; steal: the share of the machine's CPU time "
          f"the hypervisor gave to others):\n  {'clients':>7} | {'batching: cores':>15} {'ms/request':>10} "
          f"{'steal':>5} | {'no batching: cores':>18} {'ms/request':>10} {'steal':>5} | {'clients: cores':>14}")
    for clients in clients_list:
        cells = []
        for server in (batched, alone):
            w = server.pooled(clients)
            cells += [f"{w.server_cpu / w.seconds:.2f}", f"{w.server_cpu / max(len(w.latencies), 1) * 1000:.2f}",
                      "-" if w.ticks.steal is None else f"{w.ticks.steal:.0%}"]
        w = batched.pooled(clients)
        print(f"  {clients:7d} | {cells[0]:>15} {cells[1]:>10} {cells[2]:>5} | {cells[3]:>18} {cells[4]:>10} "
              f"{cells[5]:>5} | {w.client_cpu / w.seconds:>14.2f}")


def print_time_split(batched: Server, pass_alone_ms: list[float]) -> None:
    """Where a lone client's call spends its time, in means (the server's metrics, over the 1-client
    windows and their ramps): what the server adds to its forward pass, and what gRPC and the client do."""
    sums, window = batched.one_client_sums, batched.pooled(1)
    if not sums["calls"] or not window.latencies:
        return
    per_call = {key: sums[key] / sums["calls"] * 1000 for key in ("in_handler", "queued", "passes")}
    seen = float(np.mean(window.latencies)) * 1000
    rest = per_call["in_handler"] - per_call["queued"] - per_call["passes"]
    print(f"  1 client, where a call's time goes (means): the client sees {seen:.2f} ms = the server's handler "
          f"{per_call['in_handler']:.2f} ms (queued {per_call['queued']:.2f}, forward passes {per_call['passes']:.2f}, "
          f"the rest {rest:.2f}: parsing, latents, hand-offs, PNGs) + gRPC and the client "
          f"{seen - per_call['in_handler']:.2f} ms; the pass alone in-process, back to back: mean "
          f"{np.mean(pass_alone_ms):.2f} ms (median {np.median(pass_alone_ms):.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help="a store with a published model (default: a fresh one)")
    parser.add_argument("--clients", type=lambda t: [int(x) for x in t.split(",")], default=[1, 8, 64],
                        help="numbers of concurrent clients, comma-separated (1,8,64)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="measured time per number of clients and server, split over --rounds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the measured time is split over")
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
    parser.add_argument("--pass-repeats", type=int, default=200,
                        help="timed passes of one request alone (its p99 shows the machine's noise)")
    args = parser.parse_args()
    for flag in ("repeats", "pass_repeats", "rounds"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be positive, not {getattr(args, flag)}")

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
        timer = PassTimer(store, version, batches, args.repeats, args.count, args.max_batch_size, args.pass_repeats)
        figures = timer.measure()
        figures.print_table(timer.shapes)

        common = ["--max-batch-size", str(args.max_batch_size), "--max-count", str(max(256, args.count)),
                  "--precision", args.precision, *args.sampler_flags.split()]
        log = Path(scratch) / "sampler.log"
        servers: list[Server] = []  # batched, alone; each stopped below even if the next fails to start
        try:
            for flags in (common, [*common, "--no-batching"]):
                servers.append(launch(store, flags, log))
            rounds = run_rounds(servers, args, timer)
        finally:
            for server in servers:
                server.channel.close()
                server.process.terminate()
            for server in servers:
                server.process.wait(timeout=120)

    batched, alone = servers
    pooled = sum(rounds[1:], rounds[0])
    print(f"\nall rounds pooled; in-process: {pooled.summary()}")
    print_rows(batched, alone, args.clients)
    print_cpu(batched, alone, args.clients)
    print("\ntargets (all rounds pooled; in brackets the rounds' spread, each round against its own passes):")
    top = max(args.clients)
    row, base = batched.pooled(top), alone.pooled(top)
    limit_rows, limit, best_limit = pooled.limit()
    one_best, one_median, one_p99 = pooled.one_pass()
    shares = [w.images_per_s / r.limit()[1] for w, r in zip(batched.windows[top], rounds)]
    gains = [w.images_per_s / w0.images_per_s for w, w0 in zip(batched.windows[top], alone.windows[top])]
    print(f"  {top} clients: {row.images_per_s:.0f} images/s = {row.images_per_s / limit:.0%} of the in-process "
          f"limit (target >= 80%; rounds {min(shares):.0%}..{max(shares):.0%}; {row.images_per_s / best_limit:.0%} "
          f"of its best pass), {row.images_per_s / base.images_per_s:.2f}x no batching (target >= 1.5x; rounds "
          f"{min(gains):.2f}..{max(gains):.2f}), errors {sum(row.errors.values())} (target 0)")
    # What bounds the gain over the baseline: the passes themselves. The baseline's ceiling is one request's
    # pass alone back to back, batching's is the limit; each server reaches a share of its own ceiling.
    alone_rate = args.count / (one_median / 1000)
    print(f"  {top} clients, x no batching = {limit / alone_rate:.2f}x in-process (the limit against one request's "
          f"pass alone back to back, {alone_rate:.0f} images/s) x {row.images_per_s / limit:.0%} (batching's share of "
          f"the limit) / {base.images_per_s / alone_rate:.0%} (the baseline's share of the pass alone)")
    if timer.flops_per_image:
        # Where the in-process gain comes from: how close the limit and a lone request's pass come to what the
        # cores compute at best (a larger pass cannot run much faster than a matrix product).
        limit_gflops, alone_gflops = (rate * timer.flops_per_image / 1e9 for rate in (limit, alone_rate))
        matmul = pooled.matmul_gflops()
        print(f"  {top} clients, the cores' ceiling: the limit computes {limit_gflops:.0f} GFLOP/s "
              f"({timer.flops_per_image / 1e6:.1f} MFLOP an image), {limit_gflops / matmul:.0%} of a {MATMUL_SIZE}x"
              f"{MATMUL_SIZE} matrix product in TensorFlow here ({matmul:.0f} GFLOP/s, {args.precision}); one "
              f"request's pass alone {alone_gflops:.0f} GFLOP/s, {alone_gflops / matmul:.0%}")
    if row.server_cpu is not None and row.latencies:
        # The share of the limit falls as a request's CPU outside its pass (gRPC, PNGs, Python) grows beside it.
        per_request = row.server_cpu / len(row.latencies) * 1000
        per_image = pooled.cpu_ms_per_image(limit_rows)
        in_passes = per_image * args.count
        print(f"  {top} clients, CPU: the server used {per_request:.2f} ms per request, of which forward passes "
              f"about {in_passes:.2f} ms ({args.count} images at the limit's {per_image:.3f} ms "
              f"of CPU an image, in-process) and the rest {per_request - in_passes:.2f} ms (gRPC, PNGs, Python, and "
              f"any passes smaller than the limit's)")
    if 1 in args.clients:
        p99 = batched.pooled(1).percentile(99)
        ratios = [w.percentile(99) / r.one_pass()[1] for w, r in zip(batched.windows[1], rounds)]
        print(f"  1 client: p99 {p99:.1f} ms = {p99 / one_median:.2f}x one forward pass for {args.count} images "
              f"(target <= 2x; rounds {min(ratios):.2f}..{max(ratios):.2f}; {p99 / one_best:.2f}x its best; "
              f"the pass alone in-process: p99 {one_p99 / one_median:.2f}x its median, and the server's p99 is "
              f"{p99 / one_p99:.2f}x the pass alone's p99)")
        print_time_split(batched, [seconds * 1000 for seconds in pooled.one_request])
    return 0


if __name__ == "__main__":
    sys.exit(main())
