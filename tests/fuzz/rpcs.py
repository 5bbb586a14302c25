"""Every RPC of protos/gan/v1, found from the descriptors (an RPC added later is fuzzed without a change
here), hypothesis strategies for its requests, and one call with any payload that reports the status."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import grpc
from google.protobuf import descriptor, message_factory
from hypothesis import strategies as st

from protos.gan.v1 import sampler_pb2, trainer_pb2

FieldDescriptor = descriptor.FieldDescriptor
SERVICES = [sampler_pb2.DESCRIPTOR.services_by_name["Sampler"], trainer_pb2.DESCRIPTOR.services_by_name["Trainer"]]
STREAM_MESSAGES_READ = 1  # a streaming answer is read this far, then cancelled (progress streams never end)

_INTEGER_BOUNDS = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


@dataclasses.dataclass(frozen=True)
class Rpc:
    method: descriptor.MethodDescriptor

    @property
    def name(self) -> str:
        return self.method.name

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        return self.method.containing_service.name

    @property
    def request_class(self) -> type:
        return message_factory.GetMessageClass(self.method.input_type)

    @property
    def response_class(self) -> type:
        return message_factory.GetMessageClass(self.method.output_type)

    def parses(self, payload: bytes) -> bool:
        try:
            self.request_class.FromString(payload)
        except Exception:  # DecodeError, or a RuntimeWarning-free failure of the C parser
            return False
        return True


ALL_RPCS = [Rpc(method) for service in SERVICES for method in service.methods]


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, low + 1, high - 1, -1, 0, 1, 2, 7, 8, 9, 255, 256, 2**31 - 1, 2**31, 2**32,
                         -2**31, -2**31 - 1, 2**63 - 1) if low <= v <= high]
    # small values first, so that enough requests are valid and reach the code behind the validation
    return st.one_of(st.integers(max(low, 0), min(high, 10)), st.sampled_from(edges), st.integers(low, high))


def field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy:
    if field.type in _INTEGER_BOUNDS:
        return integers(*_INTEGER_BOUNDS[field.type])
    if field.type == FieldDescriptor.TYPE_ENUM:  # proto3 enums are open: any int32 goes over the wire
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-2**31, 2**31 - 1))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if field.type == FieldDescriptor.TYPE_FLOAT else 64)
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "0", "-1", "sneaker", " Sneaker ",
                                                                 "\x00", "x" * 20_000, "é" * 5_000]))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=200)
    assert field.type == FieldDescriptor.TYPE_MESSAGE, field.full_name
    return messages(field.message_type, depth + 1)


def messages(message_type: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy:
    """Messages of this type with any subset of fields set to edge values (oneofs: the last set wins)."""
    cls = message_factory.GetMessageClass(message_type)
    if depth > 2 or not message_type.fields:
        return st.just(cls())
    chosen = {}
    for field in message_type.fields:
        values = field_values(field, depth)
        if field.is_repeated:
            values = st.lists(values, max_size=4)
        chosen[field.name] = st.none() | values

    def build(values: dict) -> object:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            field = message_type.fields_by_name[name]
            if field.is_repeated:
                getattr(message, name).extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(chosen).map(build)


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= 2**64 - 1
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def wire_fields(draw, message_type: descriptor.Descriptor) -> bytes:
    """Protobuf wire records with the message's field numbers (and unknown ones) under any wire type and
    any payload: wrong types, overlong varints, lengths that lie."""
    numbers = [f.number for f in message_type.fields] + [15, 1000, 2**29 - 1]
    out = bytearray()
    for _ in range(draw(st.integers(1, 4))):
        number, wire_type = draw(st.sampled_from(numbers)), draw(st.integers(0, 7))
        out += _varint(number << 3 | wire_type)
        if wire_type == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire_type == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire_type == 2:
            body = draw(st.binary(max_size=64))
            out += _varint(draw(st.sampled_from([len(body), len(body) + 1, 2**31]))) + body
        elif wire_type == 5:
            out += draw(st.binary(min_size=4, max_size=4))
    return bytes(out)


def payloads(rpc: Rpc) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=100), wire_fields(rpc.method.input_type),
                     messages(rpc.method.input_type).map(lambda m: m.SerializeToString()
                                                         + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"))


@dataclasses.dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: list  # deserialized responses (raw bytes for a raw call)


def call(channel: grpc.Channel, rpc: Rpc, request: object, timeout: float, raw: bool = False) -> Outcome:
    """One call of any of the four kinds; a streaming answer is read STREAM_MESSAGES_READ deep."""
    serialize = None if raw else (lambda message: message.SerializeToString())
    deserialize = None if raw else rpc.response_class.FromString
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}[
        (rpc.method.client_streaming, rpc.method.server_streaming)]
    stub = kind(rpc.path, request_serializer=serialize, response_deserializer=deserialize)
    argument = iter([request]) if rpc.method.client_streaming else request
    try:
        if not rpc.method.server_streaming:
            return Outcome(grpc.StatusCode.OK, "", [stub(argument, timeout=timeout)])
        stream = stub(argument, timeout=timeout)
        responses = _read(stream)
        stream.cancel()
        return Outcome(grpc.StatusCode.OK, "", responses)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", [])


def _read(stream: Iterator) -> list:
    responses = []
    for response in stream:
        responses.append(response)
        if len(responses) == STREAM_MESSAGES_READ:
            break
    return responses
