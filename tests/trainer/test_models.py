import numpy as np
import pytest

from trainer_service.models import ARCHITECTURES, build_dcgan_generator, build_pair


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


@pytest.mark.parametrize("num_classes", [0, 10])
def test_dcgan_k4_is_the_tutorial_dcgan_with_4x4_kernels_in_both_networks(num_classes):
    generator, discriminator = build_pair(ARCHITECTURES["dcgan-k4"], 100, (28, 28, 1), num_classes)
    kernels = [tuple(v.shape[:2]) for model in (generator, discriminator) for v in model.trainable_variables
               if len(v.shape) == 4]
    assert kernels == [(4, 4)] * 5  # 3 transposed convolutions in G, 2 convolutions in D
    tutorial, _ = build_pair(ARCHITECTURES["dcgan"], 100, (28, 28, 1), num_classes)
    assert [w.shape[2:] for w in generator.trainable_variables if len(w.shape) == 4] == [
        w.shape[2:] for w in tutorial.trainable_variables if len(w.shape) == 4]  # same channels


def test_dcgan_needs_a_size_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        build_dcgan_generator(100, (30, 30, 1))
