import grpc
import numpy as np
import pytest

from protos.gan.v1 import sampler_pb2
from sampler_service import sampling
from sampler_service.sampling import RequestError, validate_generate


def request(**fields) -> sampler_pb2.GenerateRequest:
    return sampler_pb2.GenerateRequest(**fields)


def test_valid_request_defaults_to_png_newest_and_a_drawn_seed():
    params = validate_generate(request(count=3), max_count=10)
    assert (params.count, params.version, params.image_format) == (3, None, sampler_pb2.IMAGE_FORMAT_PNG)
    assert 0 <= params.seed < 2**63
    pinned = validate_generate(request(count=1, seed=0, model_version=4), max_count=10)
    assert (pinned.seed, pinned.version) == (0, 4)  # seed 0 is a seed, not "unset"
    assert validate_generate(request(count=1, model_version=0), max_count=10).version is None


@pytest.mark.parametrize("fields, message", [
    ({"count": 0}, "at least 1"),
    ({"count": -5}, "at least 1"),
    ({"count": 11}, "maximum of 10"),
    ({"count": 1, "format": 7}, "unknown image format 7"),
    ({"count": 1, "model_version": -2}, "positive"),
])
def test_bad_requests_are_invalid_argument_with_a_sentence(fields, message):
    with pytest.raises(RequestError, match=message) as error:
        validate_generate(request(**fields), max_count=10)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_raw_encoding_is_row_major_pixels():
    pixels = np.arange(2 * 3 * 2 * 1, dtype=np.uint8).reshape(2, 3, 2, 1)
    encoded = sampling.encode_images(pixels, sampler_pb2.IMAGE_FORMAT_RAW_UINT8)
    assert encoded == [pixels[0].tobytes(), pixels[1].tobytes()]
