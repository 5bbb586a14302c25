"""The batcher and the fixed-shape forward pass, in-process with real published generators."""

import contextlib
import time

import numpy as np
import pytest

from gan_common.images import latents_for_seed
from sampler_service.batching import Batcher, Expired, Overloaded, ShuttingDown, run_padded
from sampler_service.loading import load_version
from sampler_service.metrics import SamplerMetrics
from tests.conftest import publish_tiny_generator
from trainer_service.data import FASHION_MNIST_CLASSES

LONG_DELAY = 30.0  # a batch can then only fire because it is full: no timing in these tests
ARCHITECTURES = [("dcgan", ()), ("dense", ()), ("resize-dcgan", ()), ("dcgan", FASHION_MNIST_CLASSES)]


@contextlib.contextmanager
def running(batcher: Batcher):
    """A started batcher, stopped when the block ends."""
    batcher.start()
    try:
        yield batcher
    finally:
        batcher.stop()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    for version, (architecture, classes) in enumerate(ARCHITECTURES, start=1):
        publish_tiny_generator(store, version, architecture, seed=version, class_names=classes)
    return [load_version(store, version) for version in range(1, len(ARCHITECTURES) + 1)]


def labels_for(model, count, seed=0):
    return np.random.default_rng(seed).integers(0, 10, count).astype(np.int32) if model.metadata.num_classes else None


def metric(metrics: SamplerMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("index", range(len(ARCHITECTURES)), ids=[a + ("-conditional" if c else "")
                                                                  for a, c in ARCHITECTURES])
def test_an_image_does_not_depend_on_its_batch_mates_or_position(models, index):
    """The contract batching rests on: at a fixed shape, each row is bit-identical alone, in any
    position, beside any other rows (CPU kernels do not promise this across shapes)."""
    model, rows = models[index], 16
    latents, labels = latents_for_seed(7, 40, model.latent_dim), labels_for(model, 40)
    together = run_padded(model, latents, labels, rows)
    alone = np.concatenate([run_padded(model, latents[i:i + 1], None if labels is None else labels[i:i + 1], rows)
                            for i in range(0, 40, 3)])
    np.testing.assert_array_equal(alone, together[0:40:3])
    shuffled = np.random.default_rng(1).permutation(40)
    strangers = latents_for_seed(99, 40, model.latent_dim)  # other requests' latents around them
    mixed_latents = np.concatenate([strangers[:5], latents[shuffled], strangers[5:12]])
    mixed_labels = None if labels is None else np.concatenate([labels[:5], labels[shuffled], labels[5:12]])
    mixed = run_padded(model, mixed_latents, mixed_labels, rows)
    np.testing.assert_array_equal(mixed[5:45], together[shuffled])


def test_concurrent_requests_share_one_forward_pass_with_unchanged_images(models):
    model, metrics = models[0], SamplerMetrics()
    with running(Batcher(16, LONG_DELAY, 1024, metrics)) as batcher:
        seeds_counts = [(1, 4), (2, 4), (3, 3), (4, 5)]  # 16 images: the batch fires when full
        jobs = [batcher.submit(model, latents_for_seed(seed, count, 100), None) for seed, count in seeds_counts]
        for job, (seed, count) in zip(jobs, seeds_counts):
            np.testing.assert_array_equal(batcher.result(job, timeout=60),
                                          run_padded(model, latents_for_seed(seed, count, 100), None, 16))
        assert metric(metrics, "gan_sampler_batch_requests_count") == 1
        assert metric(metrics, "gan_sampler_batch_requests_sum") == 4
        assert metric(metrics, "gan_sampler_images_generated_total", version="1") == 16


def test_a_request_above_the_batch_size_is_split_and_its_tail_does_not_wait(models):
    model, metrics = models[3], SamplerMetrics()
    with running(Batcher(16, LONG_DELAY, 1024, metrics)) as batcher:
        latents, labels = latents_for_seed(5, 40, 100), labels_for(model, 40)
        pixels = batcher.result(batcher.submit(model, latents, labels), timeout=60)
        np.testing.assert_array_equal(pixels, run_padded(model, latents, labels, 16))
        assert metric(metrics, "gan_sampler_batch_size_images_count") == 3  # 16 + 16 + 8


def test_two_batch_threads_give_the_same_images(models):
    model, metrics = models[3], SamplerMetrics()
    with running(Batcher(16, 0.002, 1024, metrics, threads=2)) as batcher:
        requests = [(seed, count, labels_for(model, count, seed)) for seed, count in [(1, 40), (2, 3), (3, 21)]]
        jobs = [batcher.submit(model, latents_for_seed(seed, count, 100), labels) for seed, count, labels in requests]
        for job, (seed, count, labels) in zip(jobs, requests):
            np.testing.assert_array_equal(batcher.result(job, timeout=60),
                                          run_padded(model, latents_for_seed(seed, count, 100), labels, 16))


def test_without_merging_each_request_gets_its_own_pass(models):
    model, metrics = models[0], SamplerMetrics()
    with running(Batcher(16, LONG_DELAY, 1024, metrics, merge=False)) as batcher:
        jobs = [batcher.submit(model, latents_for_seed(seed, 4, 100), None) for seed in range(4)]
        for seed, job in enumerate(jobs):
            np.testing.assert_array_equal(batcher.result(job, timeout=60),
                                          run_padded(model, latents_for_seed(seed, 4, 100), None, 16))
        assert metric(metrics, "gan_sampler_batch_requests_count") == 4


def test_a_full_queue_refuses_at_once_and_expired_or_cancelled_jobs_are_not_computed(models):
    model, metrics = models[0], SamplerMetrics()
    with running(Batcher(16, LONG_DELAY, 16, metrics)) as batcher:
        waiting = batcher.submit(model, latents_for_seed(3, 10, 100), None)
        with pytest.raises(Overloaded) as error:
            batcher.submit(model, latents_for_seed(4, 7, 100), None)
        assert (error.value.queued, error.value.limit) == (10, 16)
        expired = batcher.submit(model, latents_for_seed(1, 2, 100), None, deadline=time.monotonic() - 1,
                                 admit_over_limit=True)
        cancelled = batcher.submit(model, latents_for_seed(2, 2, 100), None, is_cancelled=lambda: True,
                                   admit_over_limit=True)
        batcher.withdraw(expired, Expired("gone"))  # what a handler does when its caller's deadline passes
        filler = batcher.submit(model, latents_for_seed(5, 6, 100), None, admit_over_limit=True)  # 10 + 6: full
        assert batcher.result(waiting, timeout=60).shape == (10, 28, 28, 1)
        assert batcher.result(filler, timeout=60).shape == (6, 28, 28, 1)
        for job in (expired, cancelled):
            with pytest.raises(Expired):
                batcher.result(job, timeout=0)
        assert metric(metrics, "gan_sampler_images_generated_total", version="1") == 16
        assert metric(metrics, "gan_sampler_expired_requests_total") == 2
        assert batcher.queued_images == 0


def test_stop_fails_what_is_still_queued(models):
    batcher = Batcher(16, LONG_DELAY, 1024, SamplerMetrics())
    batcher.start()
    job = batcher.submit(models[0], latents_for_seed(1, 1, 100), None)
    batcher.stop()
    with pytest.raises(ShuttingDown):
        batcher.result(job, timeout=0)
    with pytest.raises(ShuttingDown):
        batcher.submit(models[0], latents_for_seed(1, 1, 100), None)
