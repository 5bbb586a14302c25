"""Serving under load against real servers: batching, streaming, interpolation, versions, limits,
deadlines and metrics."""

import re
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gan_common import store as store_layout
from gan_common.images import decode_png, latents_for_seed
from protos.gan.v1 import sampler_pb2, sampler_pb2_grpc
from sampler_service.batching import run_padded
from sampler_service.loading import load_version
from tests.conftest import publish_tiny_generator, wait_for_version
from trainer_service.data import FASHION_MNIST_CLASSES

RAW, PNG = sampler_pb2.IMAGE_FORMAT_RAW_UINT8, sampler_pb2.IMAGE_FORMAT_PNG
FULL_BATCH_ONLY = 60_000.0  # ms: a batch then fires only when full, so what merges is deterministic


def pixels_of(response) -> np.ndarray:
    shape = (response.height, response.width, response.channels)
    if response.format == RAW:
        return np.stack([np.frombuffer(data, np.uint8).reshape(shape) for data in response.images])
    return np.stack([decode_png(data) for data in response.images])


def metric(server, name: str, **labels) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


def in_parallel(*calls):
    """Runs the calls on threads at once; returns their results (or raised exceptions) in order."""
    results = [None] * len(calls)

    def run(index, call):
        try:
            results[index] = call()
        except Exception as error:  # noqa: BLE001 (handed back to the test)
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def wait_until(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def store(tmp_path):
    publish_tiny_generator(tmp_path, 1)
    publish_tiny_generator(tmp_path, 2, class_names=FASHION_MNIST_CLASSES, seed=2)
    return tmp_path


def test_batched_results_equal_unbatched_for_png_raw_labels_and_splits(start_sampler, store):
    # A long delay, so the four requests for version 1 (16 images) surely meet in one pass, yet short
    # enough that a tail which arrives alone does not hold the test up.
    batched, stub = start_sampler(store, max_queue_delay_ms=2000)
    alone, alone_stub = start_sampler(store, batching=False)
    wait_for_version(stub, 2)
    wait_for_version(alone_stub, 2)
    requests = [  # 4 + 4 + 3 + 5 = 16 images of version 1: one forward pass, four requests
        sampler_pb2.GenerateRequest(count=4, seed=1, model_version=1, format=PNG),
        sampler_pb2.GenerateRequest(count=4, seed=2, model_version=1, format=RAW),
        sampler_pb2.GenerateRequest(count=3, seed=1, model_version=1, format=RAW),
        sampler_pb2.GenerateRequest(count=5, seed=3, model_version=1, format=PNG),
        # conditional version 2: a named class, drawn classes and a request split over 3 passes
        sampler_pb2.GenerateRequest(count=6, seed=4, format=PNG, class_name="sneaker"),
        sampler_pb2.GenerateRequest(count=10, seed=5, format=RAW),
        sampler_pb2.GenerateRequest(count=40, seed=6, format=RAW, class_index=3),
    ]
    together = in_parallel(*[lambda r=r: stub.Generate(r, timeout=120) for r in requests])
    for request, response in zip(requests, together):
        assert not isinstance(response, Exception), response
        reference = alone_stub.Generate(request, timeout=120)
        assert list(response.images) == list(reference.images), request  # byte-identical
        assert list(response.class_indices) == list(reference.class_indices)
    assert metric(batched, "gan_sampler_batch_requests_bucket", le="1.0") < metric(
        batched, "gan_sampler_batch_requests_count")  # some passes did hold several requests
    assert metric(alone, "gan_sampler_batch_requests_sum") == metric(alone, "gan_sampler_batch_requests_count")
    # ... and both equal the generator run in this process at the same fixed shape.
    model = load_version(store, 1)
    np.testing.assert_array_equal(pixels_of(together[3]), run_padded(model, latents_for_seed(3, 5, 100), None, 16))
    # A prefix of a larger request is the same images: the fixed shape makes an image independent of count.
    sixteen = stub.Generate(sampler_pb2.GenerateRequest(count=16, seed=1, model_version=1, format=RAW), timeout=120)
    assert list(sixteen.images[:3]) == list(together[2].images)
    np.testing.assert_array_equal(pixels_of(together[0])[:3], pixels_of(together[2]))


def test_stream_yields_pieces_equal_to_one_generate_and_stops_when_the_caller_leaves(start_sampler, store):
    server, stub = start_sampler(store, max_count=64, max_stream_count=5000)
    wait_for_version(stub, 2)
    pieces = list(stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=50, seed=9, model_version=1,
                                                                        format=RAW), timeout=120))
    assert [p.first_index for p in pieces] == [0, 16, 32, 48]
    assert [len(p.images) for p in pieces] == [16, 16, 16, 2]
    whole = stub.Generate(sampler_pb2.GenerateRequest(count=50, seed=9, model_version=1, format=RAW), timeout=120)
    assert [image for p in pieces for image in p.images] == list(whole.images)
    labelled = list(stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=20, seed=1, class_name="bag"),
                                        timeout=120))
    assert [i for p in labelled for i in p.class_indices] == [8] * 20 and labelled[0].model_version == 2

    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(sampler_pb2.GenerateRequest(count=65), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "GenerateStream" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        next(stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=5001), timeout=30))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "5000" in error.value.details()

    before = metric(server, "gan_sampler_images_generated_total", version="1")
    stream = stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=5000, model_version=1), timeout=120)
    assert len(next(stream).images) == 16
    stream.cancel()  # the server stops making images: it only ever works two pieces ahead
    wait_until(lambda: metric(server, "gan_sampler_requests_total", method="GenerateStream", code="CANCELLED"),
               "the cancelled stream to end")
    assert metric(server, "gan_sampler_images_generated_total", version="1") - before < 200
    wait_until(lambda: server.batcher.queued_images == 0, "the queue to empty")


def test_a_reader_that_pauses_holds_the_stream_back(start_sampler, store):
    """Flow control: the server sends a piece only when the client has room, and makes at most two
    pieces ahead, so a paused reader stops the work. (The client's window is kept at HTTP/2's 64 KiB
    here; gRPC's default bandwidth probing lets it grow to a few MiB, buffered by the client.)"""
    server, _ = start_sampler(store, max_stream_count=2000)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("grpc.http2.bdp_probe", 0)])
    stub = sampler_pb2_grpc.SamplerStub(channel)
    wait_for_version(stub, 2)
    stream = stub.GenerateStream(sampler_pb2.GenerateStreamRequest(count=2000, seed=1, model_version=1,
                                                                   format=RAW), timeout=300)
    first = next(stream)
    made = lambda: metric(server, "gan_sampler_images_generated_total", version="1")  # noqa: E731
    samples = [made()]
    while len(samples) < 3 or samples[-1] != samples[-3]:  # until nothing was made for a second
        time.sleep(0.5)
        samples.append(made())
        assert len(samples) < 120, samples
    assert samples[-1] < 500  # of 2000: held back by the reader, not by the work
    rest = list(stream)  # reading again resumes the work, to the end
    assert [first.first_index] + [p.first_index for p in rest] == list(range(0, 2000, 16))
    assert made() == 2000


def test_interpolation_walks_from_one_seed_to_another(start_sampler, store):
    _, stub = start_sampler(store)
    wait_for_version(stub, 2)
    walk = stub.Interpolate(sampler_pb2.InterpolateRequest(seed_from=3, seed_to=4, steps=6, model_version=1,
                                                           format=RAW), timeout=60)
    assert len(walk.images) == 6 and walk.model_version == 1
    start = stub.Generate(sampler_pb2.GenerateRequest(count=1, seed=3, model_version=1, format=RAW), timeout=60)
    end = stub.Generate(sampler_pb2.GenerateRequest(count=1, seed=4, model_version=1, format=RAW), timeout=60)
    assert (walk.images[0], walk.images[-1]) == (start.images[0], end.images[0])
    assert len(set(walk.images)) == 6
    linear = stub.Interpolate(sampler_pb2.InterpolateRequest(
        seed_from=3, seed_to=4, steps=6, model_version=1, format=RAW,
        method=sampler_pb2.INTERPOLATION_METHOD_LINEAR), timeout=60)
    assert linear.images[0] == walk.images[0] and linear.images[2] != walk.images[2]
    conditional = stub.Interpolate(sampler_pb2.InterpolateRequest(seed_from=3, seed_to=4, steps=4,
                                                                  class_name="coat"), timeout=60)
    assert list(conditional.class_indices) == [4] * 4
    with pytest.raises(grpc.RpcError) as error:
        stub.Interpolate(sampler_pb2.InterpolateRequest(seed_from=1, seed_to=2, steps=1), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "steps" in error.value.details()


def states(stub) -> dict[int, tuple[str, bool]]:
    versions = stub.ListVersions(sampler_pb2.ListVersionsRequest(), timeout=30).versions
    return {v.model_version: (sampler_pb2.VersionState.Name(v.state).removeprefix("VERSION_STATE_"), v.serving)
            for v in versions}


def test_newest_versions_are_kept_loaded_pins_load_older_ones_and_scores_show_up(start_sampler, store):
    publish_tiny_generator(store, 3, seed=3)
    server, stub = start_sampler(store, max_loaded_versions=2)
    wait_for_version(stub, 3)
    wait_until(lambda: states(stub)[2] == ("LOADED", False), "version 2 to be preloaded")
    assert states(stub) == {1: ("ON_DISK", False), 2: ("LOADED", False), 3: ("LOADED", True)}
    pinned = stub.Generate(sampler_pb2.GenerateRequest(count=2, seed=1, model_version=1), timeout=60)
    assert pinned.model_version == 1
    assert states(stub) == {1: ("LOADED", False), 2: ("ON_DISK", False), 3: ("LOADED", True)}
    assert metric(server, "gan_sampler_loaded_versions") == 2

    listed = {v.model_version: v for v in stub.ListVersions(sampler_pb2.ListVersionsRequest(), timeout=30).versions}
    assert listed[2].training_step == 2 and listed[2].conditional and listed[2].published_at.seconds > 0
    assert dict(listed[3].scores) == {}
    store_layout.write_scores(store, 3, {"fid": 41.5, "precision": 0.62})  # as the trainer's judge does, later
    info = stub.GetModelInfo(sampler_pb2.GetModelInfoRequest(), timeout=30).info
    assert dict(info.scores) == {"fid": 41.5, "precision": 0.62}
    listed = stub.ListVersions(sampler_pb2.ListVersionsRequest(), timeout=30).versions
    assert dict(listed[-1].scores) == {"fid": 41.5, "precision": 0.62}


def test_loading_a_pinned_version_holds_up_no_other_call(start_sampler, store):
    """Handlers share one event loop: a pin that loads its version from disk (seconds) loads it on a
    thread, and calls for the served version are answered meanwhile."""
    server, stub = start_sampler(store, max_loaded_versions=1)
    wait_for_version(stub, 2)
    pinned = stub.Generate.future(sampler_pb2.GenerateRequest(count=1, seed=1, model_version=1), timeout=120)
    answered = 0
    while not pinned.done():
        assert stub.Generate(sampler_pb2.GenerateRequest(count=1, seed=2), timeout=30).model_version == 2
        answered += 1
    assert pinned.result().model_version == 1
    assert answered >= 5, f"only {answered} calls were answered while version 1 loaded"


def test_overload_is_refused_at_once_with_resource_exhausted(start_sampler, store):
    server, stub = start_sampler(store, max_count=16, max_queued_images=16, max_batch_size=16,
                                 max_queue_delay_ms=FULL_BATCH_ONLY)
    wait_for_version(stub, 2)
    first = stub.Generate.future(sampler_pb2.GenerateRequest(count=10, seed=1, model_version=1), timeout=120)
    wait_until(lambda: server.batcher.queued_images == 10, "the first request to queue")
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(sampler_pb2.GenerateRequest(count=7, model_version=1), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "overloaded" in error.value.details() and "limit 16" in error.value.details()
    filler = stub.Generate(sampler_pb2.GenerateRequest(count=6, model_version=1), timeout=120)  # fills the batch
    assert len(filler.images) == 6 and len(first.result().images) == 10


def test_calls_beyond_workers_in_progress_are_refused(start_sampler, store):
    server, stub = start_sampler(store, workers=2, max_queue_delay_ms=FULL_BATCH_ONLY)
    wait_for_version(stub, 2)
    waiting = [stub.Generate.future(sampler_pb2.GenerateRequest(count=1, model_version=1), timeout=120)
               for _ in range(2)]
    wait_until(lambda: server.batcher.queued_images == 2, "two requests to wait in the queue")
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(sampler_pb2.GenerateRequest(count=1), timeout=30)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for future in waiting:
        future.cancel()


def test_a_request_whose_deadline_passes_in_the_queue_is_not_computed(start_sampler, store):
    server, stub = start_sampler(store, max_queue_delay_ms=FULL_BATCH_ONLY)
    wait_for_version(stub, 2)
    # loaded ahead (else the deadline could pass while version 1 loads, before the request is queued)
    wait_until(lambda: states(stub)[1] == ("LOADED", False), "version 1 to be preloaded")
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(sampler_pb2.GenerateRequest(count=3, model_version=1), timeout=0.5)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: server.batcher.queued_images == 0, "the expired request to leave the queue")
    full = stub.Generate(sampler_pb2.GenerateRequest(count=16, model_version=1), timeout=120)
    assert len(full.images) == 16
    assert metric(server, "gan_sampler_images_generated_total", version="1") == 16  # not 19
    assert metric(server, "gan_sampler_expired_requests_total") == 1
    assert metric(server, "gan_sampler_queue_wait_seconds_count") == 1  # the expired request never left the queue
    wait_until(lambda: metric(server, "gan_sampler_requests_total", method="Generate", code="DEADLINE_EXCEEDED"),
               "the handler to record its deadline")


def scrape(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_prometheus_metrics_ready_live_and_debug_log_lines(start_sampler, tmp_path, caplog):
    server, stub = start_sampler(tmp_path, metrics_port=0)
    assert scrape(server.metrics_port, "/live")[0] == 200
    assert scrape(server.metrics_port, "/ready")[0] == 503  # nothing published yet
    publish_tiny_generator(tmp_path, 1)
    wait_for_version(stub, 1)
    assert scrape(server.metrics_port, "/ready")[0] == 200
    with caplog.at_level("DEBUG", logger="sampler_service.servicer"):
        stub.Generate(sampler_pb2.GenerateRequest(count=20, seed=5), timeout=60)
        with pytest.raises(grpc.RpcError):
            stub.Generate(sampler_pb2.GenerateRequest(count=0), timeout=60)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, pytest.raises(grpc.RpcError) as garbage:
            channel.unary_unary("/gan.v1.Sampler/Generate")(b"\x00", timeout=60)  # not a GenerateRequest
    assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert garbage.value.details().startswith("the request is not a valid gan.v1.GenerateRequest: ")
    ok_line = next(line for line in caplog.messages if "rpc method=Generate code=OK" in line)
    assert "count=20 seed=5" in ok_line and "served_version=1" in ok_line
    # where the call's time went: its wait in the queue, then its forward passes (both inside the call's ms)
    fields = dict(re.findall(r"(\w+)=([\d.]+)", ok_line))
    assert 0 <= float(fields["queue_ms"]) and 0 < float(fields["generator_ms"])
    assert float(fields["queue_ms"]) + float(fields["generator_ms"]) <= float(fields["ms"]) + 0.2
    assert any("code=INVALID_ARGUMENT" in line and "unparsed_bytes=1" in line for line in caplog.messages)
    status, text = scrape(server.metrics_port, "/metrics")
    assert status == 200
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("gan_sampler_requests_total", (("code", "OK"), ("method", "Generate")))] == 1
    assert samples[("gan_sampler_requests_total", (("code", "INVALID_ARGUMENT"), ("method", "Generate")))] == 2
    assert samples[("gan_sampler_images_generated_total", (("version", "1"),))] == 20
    assert samples[("gan_sampler_batch_size_images_count", ())] == 1  # one batch of 20 (passes of 16 + 16)
    assert samples[("gan_sampler_queue_wait_seconds_count", ())] == 1  # the one request that was computed
    assert samples[("gan_sampler_loaded_versions", ())] == 1 and samples[("gan_sampler_serving_version", ())] == 1
    assert ("gan_sampler_request_latency_seconds_count", (("method", "Generate"),)) in samples
    assert samples[("gan_sampler_queue_depth_images", ())] == 0
