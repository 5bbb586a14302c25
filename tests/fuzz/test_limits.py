"""Message size limits and deadlines on the real servers."""

from __future__ import annotations

import grpc
import pytest

from protos.gan.v1 import sampler_pb2, trainer_pb2
from sampler_service.server import MAX_REQUEST_BYTES
from tests.faults.processes import wait_until
from tests.fuzz.rpcs import ALL_RPCS, call

pytestmark = pytest.mark.slow

GRPC_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024  # the trainer keeps gRPC's default
LIMITS = {"Sampler": MAX_REQUEST_BYTES, "Trainer": GRPC_DEFAULT_MAX_RECEIVE}


@pytest.mark.parametrize("rpc", ALL_RPCS, ids=lambda r: r.name)
def test_a_request_over_the_size_limit_is_resource_exhausted(rpc, healthy_after):
    limit = LIMITS[rpc.service]
    with grpc.insecure_channel(healthy_after.target(rpc.service).target) as channel:
        # A well-formed request: one unknown bytes field (number 1000) just over the limit.
        oversized = b"\xc2\x3e" + _varint(limit) + b"x" * limit
        outcome = call(channel, rpc, oversized, timeout=30, raw=True)
    assert outcome.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (outcome.code, outcome.details)
    assert str(limit) in outcome.details  # gRPC names the limit: "... larger than max (N vs. limit)"


def test_a_generate_request_under_the_limit_is_judged_on_its_fields(healthy_after):
    request = sampler_pb2.GenerateRequest(count=1, class_name="x" * (MAX_REQUEST_BYTES - 100))
    with grpc.insecure_channel(healthy_after.sampler.target) as channel:
        outcome = call(channel, next(r for r in ALL_RPCS if r.name == "Generate"), request, timeout=30)
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT and "unknown class" in outcome.details


def test_deadlines_are_honoured_and_leave_the_servers_healthy(healthy_after):
    with grpc.insecure_channel(healthy_after.sampler.target) as channel:
        generate = channel.unary_unary("/gan.v1.Sampler/Generate",
                                       request_serializer=sampler_pb2.GenerateRequest.SerializeToString,
                                       response_deserializer=sampler_pb2.GenerateResponse.FromString)
        for _ in range(20):  # already expired when it reaches the server, or during generation
            with pytest.raises(grpc.RpcError) as error:
                generate(sampler_pb2.GenerateRequest(count=8), timeout=0.001)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        # A stream of 100000 images with a 2 s deadline: the server stops computing when it expires, so
        # the request lets go of its model (in_flight_requests back to 0) long before 100000 are made.
        stream = channel.unary_stream("/gan.v1.Sampler/GenerateStream",
                                      request_serializer=sampler_pb2.GenerateStreamRequest.SerializeToString,
                                      response_deserializer=sampler_pb2.GenerateStreamResponse.FromString)
        with pytest.raises(grpc.RpcError) as error:
            for _ in stream(sampler_pb2.GenerateStreamRequest(count=100_000), timeout=2):
                pass
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        list_versions = channel.unary_unary("/gan.v1.Sampler/ListVersions",
                                            request_serializer=sampler_pb2.ListVersionsRequest.SerializeToString,
                                            response_deserializer=sampler_pb2.ListVersionsResponse.FromString)
        wait_until(lambda: not any(v.in_flight_requests for v in list_versions(
            sampler_pb2.ListVersionsRequest(), timeout=10).versions), 30, "the expired stream to let go")

    with grpc.insecure_channel(healthy_after.trainer().target) as channel:
        watch = channel.unary_stream("/gan.v1.Trainer/WatchProgress",
                                     request_serializer=trainer_pb2.WatchProgressRequest.SerializeToString,
                                     response_deserializer=trainer_pb2.TrainingProgress.FromString)
        stream = watch(trainer_pb2.WatchProgressRequest(), timeout=3)
        with pytest.raises(grpc.RpcError) as error:  # a stream that would run until training ends
            for _ in stream:
                pass
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
