"""Tiled translation of images too large to translate whole (predict
--tile=N --overlap=M).

The image is cut into N x N tiles that overlap their neighbours by at least
M pixels, spread evenly so that the last tile ends at the image's edge. Each
tile is translated on its own, and the overlaps are blended: a tile's weight
rises linearly from 0 at an edge it shares with a neighbour to 1, M pixels
in (edges on the image's border keep weight 1), and every pixel is the
weighted mean of the tiles covering it. A tile's outermost pixels, which
the generator saw with the least context, thus count for nothing, and one
tile fades into the next instead of meeting it at a seam.

Memory: the tiles are translated one row of tiles at a time into an
accumulator of N rows of the image's width; rows no later tile covers are
written out as soon as the row of tiles is done. Beyond the input and the
output images themselves, memory is bounded by the tile size (the
generator's activations for one tile, and the N-row accumulator), not by
the image's.
"""

import math
from typing import Callable, List

import numpy as np

from pix2pix_tf import errors


def tile_starts(length: int, tile: int, overlap: int) -> List[int]:
  """Where the tiles along a side of `length` pixels start: as few tiles
  of `tile` pixels as cover it with neighbours sharing at least `overlap`
  pixels, spread evenly, the first at 0 and the last ending at `length`."""
  if length <= tile:
    return [0]
  count = math.ceil((length - overlap) / (tile - overlap))
  return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def ramp(start: int, size: int, length: int, overlap: int) -> np.ndarray:
  """The blending weight along one side of a tile of `size` pixels at
  `start` on a side of `length`: linear from 0 at an edge shared with a
  neighbour to 1 after `overlap` pixels, 1 on the image's border."""
  weights = np.ones(size, np.float32)
  rising = np.linspace(0.0, 1.0, overlap, dtype=np.float32)
  if start > 0:
    weights[:overlap] = rising
  if start + size < length:
    weights[size - overlap:] = np.minimum(weights[size - overlap:],
                                          rising[::-1])
  return weights


def check_tiling(tile: int, overlap: int, multiple: int,
                 tile_name: str = "--tile") -> None:
  """ValueError, naming the flag, for a tiling the generator cannot run;
  `tile_name` names the tile in the overlap's sentence."""
  if tile % multiple:
    suggestion = max(multiple, tile // multiple * multiple)
    raise errors.CommandError(
        f"--tile={tile} is not a multiple of {multiple}, as the generator "
        f"needs; choose e.g. --tile={suggestion}.")
  if not 2 <= overlap <= tile // 2:
    raise errors.CommandError(
        f"--overlap={overlap} must be from 2 to half of {tile_name} "
        f"({tile // 2}): tiles blend over the overlap.")


def translate_tiled(translate: Callable[[np.ndarray], np.ndarray],
                    image: np.ndarray, tile: int, overlap: int
                    ) -> np.ndarray:
  """`image` (H x W x C, uint8 or uint16) translated tile by tile and
  blended.

  Args:
    translate: a tile (h x w x C, h and w at most `tile`) -> its
      translation (h x w x C_out, in the range of the image's dtype).
    image: the image.
    tile: the tiles' side.
    overlap: the pixels neighbouring tiles share at least (2 or more).

  Returns:
    The H x W x C_out translation, of the image's dtype.
  """
  height, width = image.shape[:2]
  tile_height, tile_width = min(tile, height), min(tile, width)
  rows = tile_starts(height, tile, overlap)
  columns = tile_starts(width, tile, overlap)
  column_weights = [ramp(x, tile_width, width, overlap) for x in columns]
  output = total = weight = None
  for i, y in enumerate(rows):
    row_weight = ramp(y, tile_height, height, overlap)[:, None]
    for x, column_weight in zip(columns, column_weights):
      translated = np.asarray(
          translate(image[y:y + tile_height, x:x + tile_width]), np.float32)
      if output is None:
        # Row r of the accumulator is row y + r of the image.
        channels = translated.shape[-1]
        output = np.empty((height, width, channels), image.dtype)
        total = np.zeros((tile_height, width, channels), np.float32)
        weight = np.zeros((tile_height, width, 1), np.float32)
      tile_weight = (row_weight * column_weight)[..., None]
      total[:, x:x + tile_width] += translated * tile_weight
      weight[:, x:x + tile_width] += tile_weight
    # Rows above the next row of tiles are complete: write them out and
    # move the rest up.
    done = (rows[i + 1] if i + 1 < len(rows) else height) - y
    output[y:y + done] = np.clip(np.round(total[:done] / weight[:done]),
                                 0, np.iinfo(image.dtype).max)
    for array in (total, weight):
      array[:tile_height - done] = array[done:]
      array[tile_height - done:] = 0
  return output
