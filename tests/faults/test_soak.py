"""The soak benchmark in its short mode: a real sampler under 16 clients while versions are published."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

# 20 s of load with a publish every 5 s and the dense generator: the whole run takes about 40 s on two
# shared cores. RSS over 20 s is dominated by the versions filling the sampler's cache and the allocator's
# swings, so the 10% target belongs to the 5-minute benchmark; here memory must only have been measured.
SHORT_MODE = ["--seconds", "20", "--publish-seconds", "5", "--warmup-seconds", "5", "--clients", "16",
              "--architecture", "dense", "--max-memory-growth", "100"]


def test_short_soak_has_no_errors_but_overload_and_versions_move_forward():
    run = subprocess.run([sys.executable, "bench/soak.py", *SHORT_MODE], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-5000:]

    served = int(re.search(r"requests served +(\d+) \(", output).group(1))
    assert served > 0
    errors = re.search(r"errors by code +(.*)", output).group(1)
    assert errors == "none" or re.fullmatch(r"RESOURCE_EXHAUSTED \d+ \(overload, allowed\)", errors), errors
    assert "errors other than overload: 0 (target 0): met" in output

    first, last, swaps, published = map(int, re.search(
        r"versions served +(\d+)\.\.(\d+) \((\d+) swaps; newest published (\d+)\); each client's versions only "
        r"moved forward", output).groups())
    assert (first, last, swaps, published) == (3, 6, 3, 6)  # 3 in the store at the start, then 3 publishes

    assert re.search(r"latency p50 / p99 +\d+ / \d+ ms", output)
    start, end = map(int, re.search(r"sampler RSS +start (\d+) MiB, end (\d+) MiB", output).groups())
    assert start > 0 and end > 0
    assert re.search(r"^PASS$", run.stdout, re.MULTILINE)
