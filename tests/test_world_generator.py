"""The shapes world's generator: determinism, dtypes, fixed attributes, every shape and style draws."""

import numpy as np
import pytest

from jaxprompt.world import generator


def test_same_seed_and_index_give_same_pixels():
  first, attributes = generator.render(3, 17)
  again, attributes_again = generator.render(3, 17)
  assert first.dtype == np.uint8 and first.shape == (32, 32, 3)
  np.testing.assert_array_equal(first, again)
  assert attributes == attributes_again


def test_different_index_or_seed_give_different_pixels():
  base, _ = generator.render(0, 0)
  assert not np.array_equal(base, generator.render(0, 1)[0])
  assert not np.array_equal(base, generator.render(1, 0)[0])


def test_fixed_attributes_are_honoured_and_others_drawn():
  for index in range(20):
    _, attributes = generator.render(5, index, shape="heart", style="sketch", colour="blue")
    assert (attributes.shape, attributes.style, attributes.colour) == ("heart", "sketch", "blue")
  drawn = {generator.render(5, i)[1].shape for i in range(200)}
  assert drawn == set(generator.SHAPES)


@pytest.mark.parametrize("style", generator.STYLES)
def test_every_shape_draws_in_every_style_and_shapes_differ(style):
  images = []
  for shape in generator.SHAPES:
    attributes = generator.Attributes(shape, "red", style, "big", "middle")
    image = generator.draw(attributes, generator.rng_for(0, 0))  # same nuisance draws for every shape
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert image.std() > 5  # not a blank canvas
    images.append(image.astype(np.int32))
  for i in range(len(images)):
    for j in range(i + 1, len(images)):
      assert np.abs(images[i] - images[j]).mean() > 1.0, (generator.SHAPES[i], generator.SHAPES[j])


def test_colour_is_visible_in_the_image():
  # The shape's pixels carry its colour: red images are redder than blue ones on average (cartoon, big, middle).
  red = [generator.render(9, i, colour="red", style="cartoon", size_word="big", position="middle")[0]
         for i in range(8)]
  blue = [generator.render(9, i, colour="blue", style="cartoon", size_word="big", position="middle")[0]
          for i in range(8)]
  centre = lambda ims: np.stack(ims)[:, 12:20, 12:20].astype(np.float32).mean((0, 1, 2))
  assert centre(red)[0] > centre(blue)[0] + 50 and centre(blue)[2] > centre(red)[2] + 50


def test_render_batch_and_other_sizes():
  images, attributes = generator.render_batch(2, range(6), size=48)
  assert images.shape == (6, 48, 48, 3) and len(attributes) == 6
  np.testing.assert_array_equal(images[4], generator.render(2, 4, size=48)[0])


def test_unknown_shape_raises():
  with pytest.raises(ValueError, match="unknown shape"):
    generator._unit_outline("hexagon")
