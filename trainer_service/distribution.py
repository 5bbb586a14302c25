"""Device set-up and the tf.distribute strategy the trainer runs under.

`default` is one device (TensorFlow's default strategy, no distribution). `mirrored` keeps one copy of
the models on each local GPU (or each logical CPU device) and all-reduces the gradients. `multi-worker`
does the same across machines, which TF_CONFIG describes. The same training code runs under all three.
"""

from __future__ import annotations

import json
import os
from typing import Callable

import tensorflow as tf

from gan_common.config_cli import ConfigError
from gan_common.cpu import cpu_flags

STRATEGIES = ("default", "mirrored", "multi-worker")


def configure_devices(cpu_logical_devices: int) -> None:
    """Splits the CPU into logical devices (to run a mirrored strategy without GPUs). Must run before
    TensorFlow initialises its devices, that is before the first op."""
    if cpu_logical_devices > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_logical_devices)
        except RuntimeError as error:  # devices initialised already: a programming error, not a user one
            raise AssertionError(f"configure_devices ran after TensorFlow initialised devices: {error}") from None


def has_gpu() -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def cpu_has_avx512() -> bool:
    """Whether this machine's CPU has AVX-512 (Linux: /proc/cpuinfo; elsewhere assumed not)."""
    return "avx512f" in cpu_flags()


def xla_pays_off() -> bool:
    """Whether a recipe's XLA should be used on this machine. Measured with bench/train_throughput.py
    on the default recipe (batch 16): on an AVX2 CPU XLA trained 1.46x as many images/s as TensorFlow's
    own kernels (it fuses the many small ops of a small step); on AVX-512 CPUs 0.87-0.98x (an AMD EPYC, an
    Intel Xeon), and at the seeds' batch 256 0.57-0.65x: TensorFlow's oneDNN convolutions pick AVX-512 kernels at run time, and
    XLA's CPU convolutions do not keep up with them. GPUs: on (XLA's home ground; not measured here)."""
    return has_gpu() or not cpu_has_avx512()


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if has_gpu():
            return tf.distribute.MirroredStrategy()  # every local GPU, NCCL all-reduce
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        # NCCL is GPU-only; on CPU devices the gradients are summed on one device and broadcast back.
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi-worker":
        cluster = _tf_config_cluster()
        if not cluster:
            raise ConfigError("--strategy multi-worker needs TF_CONFIG describing the cluster and this worker, e.g. "
                              'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                              '"task": {"type": "worker", "index": 0}}\'')
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise AssertionError(f"unknown strategy {name!r}")


def _tf_config_cluster() -> dict:
    try:
        return json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {}
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {error}") from None


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The one worker that writes the store: the `chief` task, or worker 0 when the cluster has no chief."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def worker_name(strategy: tf.distribute.Strategy) -> str:
    if not is_multi_worker(strategy):
        return "local"
    return f"{strategy.cluster_resolver.task_type}-{strategy.cluster_resolver.task_id}"


def worker_sum(strategy: tf.distribute.Strategy) -> Callable[[list[float]], list[float]]:
    """A function that returns the element-wise sum over all workers of each worker's values (one
    small all-reduce, compiled once)."""
    local_replicas = len(strategy.extended.worker_devices)

    @tf.function
    def summed(values: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(lambda v: v / local_replicas, args=(values,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    return lambda values: summed(tf.constant(values, tf.float64)).numpy().tolist()
