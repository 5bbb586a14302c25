import numpy as np
import pytest

from trainer_service.models import ARCHITECTURES, build_dcgan_generator


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3)])
def test_generator_and_discriminator_shapes(name, shape):
    arch = ARCHITECTURES[name]
    generator = arch.build_generator(100, shape)
    discriminator = arch.build_discriminator(shape)
    images = np.asarray(generator(np.random.default_rng(0).standard_normal((3, 100)).astype("float32")))
    assert images.shape == (3, *shape)
    assert images.min() >= -1 and images.max() <= 1  # tanh, as the seeds
    scores = np.asarray(discriminator(images))
    assert scores.shape == (3, 1)
    if not arch.discriminator_outputs_logits:
        assert ((scores >= 0) & (scores <= 1)).all()


def test_dcgan_matches_the_tutorial_layer_for_layer():
    generator = build_dcgan_generator()
    assert [layer.output.shape[1:] for layer in generator.layers if "conv2d_transpose" in layer.name] == [
        (7, 7, 128), (14, 14, 64), (28, 28, 1)]
    assert generator.count_params() == 2_330_944  # the TensorFlow DCGAN tutorial's generator
    assert ARCHITECTURES["dcgan"].build_discriminator((28, 28, 1)).count_params() == 212_865


def test_dcgan_needs_a_size_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_dcgan_generator(100, (30, 30, 1))
