"""The serving benchmark in a short run: two real sampler processes (batching on and off) under load,
in interleaved rounds, with the in-process limit and the targets' lines printed."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

# Two rounds of a 1-s window per server and number of clients: about 35 s on two AVX-512 cores, 50 on
# AVX2 ones, most of it the two servers' start-up. The figures are the benchmark's business; here they
# must exist.
SHORT_RUN = ["--seconds", "2", "--rounds", "2", "--clients", "1,4", "--repeats", "2", "--pass-repeats", "20",
             "--max-batch-size", "64"]


def test_short_load_run_prints_every_row_and_the_targets():
    run = subprocess.run([sys.executable, "bench/sampler_load.py", *SHORT_RUN], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]

    assert len(re.findall(r"^  round \d: images/s \(batching / none\) 1 clients \d+ / \d+  4 clients \d+ / \d+"
                          r"( \(CPU steal \d+%\))?;",
                          output, re.M)) == 2
    for clients in (1, 4):
        row = re.search(rf"^ +{clients} \| +(\d+) +[\d.]+ +[\d.]+ / [\d.]+ / [\d.]+ +(\d+) \| +(\d+) +[\d.]+ / "
                        rf"[\d.]+ / [\d.]+ +(\d+)$", output, re.M)
        assert row, output[-3000:]
        batched, batched_errors, alone, alone_errors = map(int, row.groups())
        assert batched > 0 and alone > 0
        assert batched_errors == alone_errors == 0
    assert re.search(r"4 clients: \d+ images/s = \d+% of the in-process limit .* [\d.]+x no batching .* errors 0",
                     output)
    gain = re.search(r"4 clients, x no batching = ([\d.]+)x in-process \(.*, \d+ images/s\) x (\d+)% \(batching's "
                     r"share of the limit\) / (\d+)% \(the baseline's share of the pass alone\)", output)
    assert gain, output[-3000:]
    in_process, batched_share, alone_share = map(float, gain.groups())
    assert in_process > 0 and batched_share > 0 and alone_share > 0
    # What the cores compute at best: the default generator's 67.3 MFLOP an image (TensorFlow's count) and a
    # matrix product's rate, against which the limit and a lone request's pass are put
    ceiling = re.search(r"4 clients, the cores' ceiling: the limit computes (\d+) GFLOP/s \(67\.3 MFLOP an image\), "
                        r"\d+% of a 2048x2048 matrix product in TensorFlow here \((\d+) GFLOP/s, float32\); one "
                        r"request's pass alone (\d+) GFLOP/s, \d+%", output)
    assert ceiling, output[-3000:]
    assert all(int(rate) > 0 for rate in ceiling.groups())
    assert re.search(r"1 client: p99 [\d.]+ ms = [\d.]+x one forward pass for 16 images", output)
    split = re.search(r"1 client, where a call's time goes \(means\): the client sees ([\d.]+) ms = the server's "
                      r"handler ([\d.]+) ms \(queued ([\d.]+), forward passes ([\d.]+), the rest -?[\d.]+: .*\) "
                      r"\+ gRPC and the client -?[\d.]+ ms; the pass alone in-process, back to back: mean [\d.]+ ms", output)
    assert split, output[-3000:]
    seen, handler, queued, passes = map(float, split.groups())
    assert 0 < passes <= handler and queued <= handler
    if sys.platform.startswith("linux"):  # CPU figures come from /proc
        for clients in (1, 4):
            cpu_row = rf"^ +{clients} \| +[\d.]+ +[\d.]+ +\d+% \| +[\d.]+ +[\d.]+ +\d+% \| +[\d.]+$"
            assert re.search(cpu_row, output, re.M), output[-3000:]
        # The hypervisor's share (steal), in every round's windows and in-process passes
        assert len(re.findall(r"^  round \d: .* \(CPU steal \d+%\); in-process: .*; CPU steal \d+%$",
                              output, re.M)) == 2, output[-3000:]
        assert re.search(r"4 clients, CPU: the server used [\d.]+ ms per request, of which forward passes about "
                         r"[\d.]+ ms .* and the rest -?[\d.]+ ms", output)
