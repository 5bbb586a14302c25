"""Property-based requests to every RPC of the real sampler and trainer: each gets a status code that says
what was wrong (never UNKNOWN, the mark of an unhandled exception), no call hangs, and both servers
are alive and healthy afterwards."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protos.gan.v1 import sampler_pb2, trainer_pb2
from tests.fuzz.conftest import CLASS_NAMES, MAX_COUNT, PUBLISHED
from tests.fuzz.rpcs import ALL_RPCS, Rpc, call, messages, payloads

pytestmark = pytest.mark.slow

CALL_TIMEOUT = 20  # far above any honest answer here: running into it means a hang
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED}
# Stop ends the trainer (tested once, last); CheckpointNow writes a checkpoint and a version each time.
EXAMPLES = {"Stop": 0, "CheckpointNow": 3}
DEFAULT_EXAMPLES = 100  # each call takes milliseconds
GENERATE = next(rpc for rpc in ALL_RPCS if rpc.name == "Generate")


def examples(count: int) -> settings:
    return settings(max_examples=count, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                    print_blob=True)


def check_answer(rpc: Rpc, request, outcome) -> None:
    """The contract every RPC keeps, then what the proto promises for the fields we know."""
    assert outcome.code in ANSWERS, f"{rpc.name}({request!r}) -> {outcome.code.name}: {outcome.details}"
    if outcome.code != grpc.StatusCode.OK:
        assert outcome.details.strip(), f"{rpc.name} -> {outcome.code.name} without a message"
        # an error message that echoes a huge field outgrows gRPC's metadata limit and hides the real code
        assert "exceeds hard limit" not in outcome.details, f"{rpc.name}: {outcome.details}"
        return
    if rpc.name == "Generate":
        assert 1 <= request.count <= MAX_COUNT, f"Generate accepted count={request.count}"
        response = outcome.responses[0]
        assert len(response.images) == request.count and response.model_version in PUBLISHED
    if rpc.name == "GetModelInfo":
        assert request.model_version >= 0 and outcome.responses[0].info.model_version in PUBLISHED
    if rpc.name == "SetPublishInterval":
        assert request.publish_every > 0


@pytest.mark.parametrize("rpc", [r for r in ALL_RPCS if EXAMPLES.get(r.name) != 0], ids=lambda r: r.name)
def test_any_request_gets_a_clear_status(rpc, healthy_after):
    channel = grpc.insecure_channel(healthy_after.target(rpc.service).target)

    @examples(EXAMPLES.get(rpc.name, DEFAULT_EXAMPLES))
    @given(request=messages(rpc.method.input_type))
    def request_gets_a_clear_status(request) -> None:
        check_answer(rpc, request, call(channel, rpc, request, CALL_TIMEOUT))

    request_gets_a_clear_status()
    channel.close()


@pytest.mark.parametrize("rpc", ALL_RPCS, ids=lambda r: r.name)
def test_malformed_bytes_get_a_clear_status(rpc, healthy_after):
    """Raw bytes through a generic call: garbage, wrong wire types, lying lengths, truncated varints."""
    channel = grpc.insecure_channel(healthy_after.target(rpc.service).target)

    @examples(30)
    @given(payload=payloads(rpc))
    def bytes_get_a_clear_status(payload: bytes) -> None:
        parses = rpc.parses(payload)
        assume(parses is False or rpc.name not in EXAMPLES)  # no stray Stop or CheckpointNow
        outcome = call(channel, rpc, payload, CALL_TIMEOUT, raw=True)
        if parses:
            assert outcome.code in ANSWERS, f"{rpc.name}({payload!r}) -> {outcome.code.name}: {outcome.details}"
        elif rpc.service == "Sampler":  # the sampler parses requests itself and says what is wrong
            assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, f"{rpc.name}({payload!r}) -> {outcome.code.name}"
            assert outcome.details.startswith(f"the request is not a valid {rpc.method.input_type.full_name}: ")
        else:  # gRPC answers a request it cannot parse itself, before our code runs
            assert (outcome.code, outcome.details) == (grpc.StatusCode.INTERNAL, "Exception deserializing request!")

    bytes_get_a_clear_status()
    channel.close()


def test_stop_ends_the_trainer_cleanly_after_the_fuzzing(healthy_after):
    stop = next(r for r in ALL_RPCS if r.name == "Stop")
    trainer = healthy_after.trainer()
    with grpc.insecure_channel(trainer.target) as channel:
        outcome = call(channel, stop, trainer_pb2.StopRequest(), CALL_TIMEOUT)
    assert outcome.code == grpc.StatusCode.OK, outcome.details
    assert trainer.process.wait(timeout=120) == 0, trainer.log_text()[-3000:]


CLASS_LABELS = st.one_of(st.none(), st.integers(-2, 11).map(lambda i: ("class_index", i)),
                         st.sampled_from([*CLASS_NAMES, " Sneaker ", "BAG", "", "sneakers", "7"]).map(
                             lambda name: ("class_name", name)))


@examples(80)
@given(count=st.integers(-1, MAX_COUNT + 1), seed=st.none() | st.sampled_from([0, 1, 2**63, 2**64 - 1]),
       version=st.none() | st.integers(-1, 3), image_format=st.integers(0, 3), label=CLASS_LABELS)
def test_generate_near_the_limits_answers_exactly_as_documented(healthy_after, count, seed, version, image_format,
                                                                label):
    """Values on both sides of every limit of GenerateRequest, against what README and the proto promise."""
    request = sampler_pb2.GenerateRequest(count=count, format=image_format)
    if seed is not None:
        request.seed = seed
    if version is not None:
        request.model_version = version
    if label is not None:
        setattr(request, *label)
    model = 2 if version in (None, 0) else version
    refusal = None
    if not 1 <= count <= MAX_COUNT or image_format not in (0, 1, 2) or model < 0:
        refusal = grpc.StatusCode.INVALID_ARGUMENT
    elif model not in PUBLISHED:
        refusal = grpc.StatusCode.NOT_FOUND
    elif label is not None and (model == 1 or (label[0] == "class_index" and not 0 <= label[1] < len(CLASS_NAMES))
                                or (label[0] == "class_name" and label[1].strip().lower() not in CLASS_NAMES)):
        refusal = grpc.StatusCode.INVALID_ARGUMENT
    with grpc.insecure_channel(healthy_after.sampler.target) as channel:
        outcome = call(channel, GENERATE, request, CALL_TIMEOUT)
    if refusal is not None:
        assert outcome.code == refusal and outcome.details.strip(), (request, outcome)
        return
    assert outcome.code == grpc.StatusCode.OK, (request, outcome)
    response = outcome.responses[0]
    assert (len(response.images), response.model_version) == (count, model)
    if seed is not None:
        assert response.seed == seed
    if label is not None:
        index = label[1] if label[0] == "class_index" else CLASS_NAMES.index(label[1].strip().lower())
        assert list(response.class_indices) == [index] * count
