"""The batcher and the fixed-shape forward pass, in-process with real published generators."""

import contextlib
import time

import numpy as np
import pytest

from gan_common.images import latents_for_seed
from sampler_service.batching import Batcher, Expired, Overloaded, ShuttingDown, pass_sizes, run_padded
from sampler_service.loading import candidate_pass_shapes, load_version, verified_pass_shapes
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
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    for version, (architecture, classes) in enumerate(ARCHITECTURES, start=1):
        publish_tiny_generator(store, version, architecture, seed=version, class_names=classes)
    return store


@pytest.fixture(scope="module")
def models(store):
    """Loaded for passes of 16 only (the default), as the tests above expect."""
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


def test_pass_sizes_fill_the_largest_shape_then_hold_the_rest_with_the_least_padding():
    assert candidate_pass_shapes(256) == (16, 32, 64, 128, 256)
    assert candidate_pass_shapes(100) == (16, 32, 64, 100)
    assert candidate_pass_shapes(8) == (8,)
    assert pass_sizes(600, (16, 64, 256)) == [256, 256, 64, 16, 16]  # 88 rows: 96 computed, not 256
    assert pass_sizes(20, (16, 64, 256)) == [16, 16]
    assert pass_sizes(60, (16, 64, 256)) == [64]
    assert pass_sizes(16, (16, 64, 256)) == [16]
    assert pass_sizes(40, (16,)) == [16, 16, 16]


def test_a_pass_size_that_would_change_a_row_is_not_used():
    """A forward pass whose rows depend on the batch size (here by construction) keeps only the
    smallest shape; one that does not keeps them all."""
    def batch_dependent(latents, labels):
        return np.tanh(latents[:, :4].reshape(-1, 2, 2, 1) + 1e-6 * len(latents))

    def batch_independent(latents, labels):
        return np.tanh(latents[:, :4].reshape(-1, 2, 2, 1))

    assert verified_pass_shapes(batch_dependent, 8, 0, (16, 32, 64)) == (16,)
    assert verified_pass_shapes(batch_independent, 8, 0, (16, 32, 64)) == (16, 32, 64)


@pytest.mark.parametrize("index", range(len(ARCHITECTURES)), ids=[a + ("-conditional" if c else "")
                                                                  for a, c in ARCHITECTURES])
def test_an_image_is_the_same_in_a_pass_of_any_verified_size(store, index):
    """Loaded for passes of up to 256, a version uses the sizes that give 16's images on this machine;
    a request's images are then the same alone (a pass of 16) as inside any bigger pass."""
    model = load_version(store, index + 1, 256)
    assert model.pass_shapes[0] == 16 and set(model.pass_shapes) <= {16, 32, 64, 128, 256}
    latents, labels = latents_for_seed(11, 300, model.latent_dim), labels_for(model, 300)
    together = run_padded(model, latents, labels, model.pass_shapes)
    alone = run_padded(model, latents[:16], None if labels is None else labels[:16], 16)
    np.testing.assert_array_equal(together[:16], alone)
    for shape in model.pass_shapes:  # every row position of every size used
        rows_labels = None if labels is None else labels[:shape]
        np.testing.assert_array_equal(run_padded(model, latents[:shape], rows_labels, shape),
                                      run_padded(model, latents[:shape], rows_labels, 16))


def test_concurrent_requests_in_big_passes_get_the_images_they_get_alone(store):
    model = load_version(store, 1, 256)
    metrics = SamplerMetrics()
    with running(Batcher(256, 0.05, 4096, metrics)) as batcher:
        requests = [(seed, 16) for seed in range(24)] + [(100, 5), (101, 40)]
        jobs = [batcher.submit(model, latents_for_seed(seed, count, 100), None) for seed, count in requests]
        for job, (seed, count) in zip(jobs, requests):
            np.testing.assert_array_equal(batcher.result(job, timeout=120),
                                          run_padded(model, latents_for_seed(seed, count, 100), None, 16))
    # 429 images in passes of at most 256 rows: fewer passes than requests
    assert metric(metrics, "gan_sampler_batch_size_images_count") < len(requests)


def test_rows_that_exactly_fill_a_pass_size_do_not_wait_for_the_queue_delay(store):
    """Triton's preferred batch sizes: 16 waiting rows make a pass of 16 with no padding, so the pass
    starts at once; 5 rows wait for more (up to the delay)."""
    model = load_version(store, 1, 256)
    with running(Batcher(256, LONG_DELAY, 1024, SamplerMetrics())) as batcher:
        exact = batcher.submit(model, latents_for_seed(1, 16, 100), None)
        assert batcher.result(exact, timeout=20).shape == (16, 28, 28, 1)  # long before LONG_DELAY
        partial = batcher.submit(model, latents_for_seed(2, 5, 100), None)
        time.sleep(0.5)
        assert not partial.done.is_set()
        batcher.submit(model, latents_for_seed(3, 11, 100), None)  # 5 + 11 = 16: now it fires
        assert batcher.result(partial, timeout=20).shape == (5, 28, 28, 1)
