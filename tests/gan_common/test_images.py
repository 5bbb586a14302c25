import numpy as np

from gan_common import images


def test_latents_depend_only_on_seed_and_index():
    a = images.latents_for_seed(7, 16, 100)
    assert a.dtype == np.float32 and a.shape == (16, 100)
    np.testing.assert_array_equal(a, images.latents_for_seed(7, 16, 100))
    np.testing.assert_array_equal(a[:4], images.latents_for_seed(7, 4, 100))
    assert not np.array_equal(a, images.latents_for_seed(8, 16, 100))


def test_to_uint8_maps_tanh_and_sigmoid_ranges():
    np.testing.assert_array_equal(images.to_uint8(np.array([-1.0, 0.0, 1.0, 2.0])), [0, 128, 255, 255])
    np.testing.assert_array_equal(images.to_uint8(np.array([0.0, 1.0]), (0.0, 1.0)), [0, 255])


def test_png_round_trip_grayscale_and_rgb():
    rng = np.random.default_rng(0)
    for shape in ((28, 28, 1), (8, 5, 3)):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        data = images.encode_png(pixels)
        assert data.startswith(b"\x89PNG")
        np.testing.assert_array_equal(images.decode_png(data), pixels)


def test_tile_grid_places_every_image():
    tiles = np.stack([np.full((2, 2, 1), i, np.uint8) for i in range(1, 6)])
    grid = images.tile_grid(tiles, columns=3, padding=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 1)
    assert grid[1, 1, 0] == 1 and grid[1, 7, 0] == 3 and grid[4, 4, 0] == 5 and grid[0, 0, 0] == 0
