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


def test_latent_batches_concatenate_to_the_latents_of_one_request():
    from gan_common.images import latent_batches, latents_for_seed

    for batch in (1, 7, 16, 1000):
        pieces = list(latent_batches(5, 100, 10, batch))
        assert all(len(p) == min(batch, 100) for p in pieces[:-1])
        np.testing.assert_array_equal(np.concatenate(pieces), latents_for_seed(5, 100, 10))


def test_interpolation_hits_both_ends_exactly_and_slerp_keeps_the_norm():
    rng = np.random.default_rng(0)
    start, end = rng.standard_normal(100).astype(np.float32), rng.standard_normal(100).astype(np.float32)
    spherical = sampling.interpolate_latents(start, end, 9, spherical=True)
    linear = sampling.interpolate_latents(start, end, 9, spherical=False)
    for path in (spherical, linear):
        assert path.shape == (9, 100) and path.dtype == np.float32
        np.testing.assert_array_equal(path[0], start)
        np.testing.assert_array_equal(path[-1], end)
    norms = np.linalg.norm(spherical, axis=1)
    assert norms.min() > 0.9 * min(norms[0], norms[-1])  # a straight line sags towards the origin
    assert np.linalg.norm(linear[4]) < 0.8 * np.linalg.norm(spherical[4])
    same = sampling.interpolate_latents(start, start, 3, spherical=True)  # no great circle: no NaN
    np.testing.assert_array_equal(same, np.stack([start] * 3))


@pytest.mark.parametrize("fields, message", [
    ({"steps": 1}, "steps must be 2..10"),
    ({"steps": 11}, "steps must be 2..10"),
    ({"steps": 3, "method": 9}, "unknown interpolation method"),
    ({"steps": 3, "format": 9}, "unknown image format"),
])
def test_bad_interpolations_are_invalid_argument(fields, message):
    with pytest.raises(RequestError, match=message) as error:
        sampling.validate_interpolate(sampler_pb2.InterpolateRequest(**fields), max_count=10)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_responses_that_could_exceed_the_message_limit_are_refused_with_what_fits():
    sampling.check_response_size(16, (28, 28, 1), 64 * 1024, streaming_hint=True)
    with pytest.raises(RequestError, match="ask for at most 61 per request or use GenerateStream"):
        sampling.check_response_size(100, (28, 28, 1), 64 * 1024, streaming_hint=True)
