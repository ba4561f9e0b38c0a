"""The built-in demo dataset: procedurally drawn facades, label map and photo.

Each example is a facade-like label map (sky, wall, windows, door, ledges,
roof) and a matching rendered "photo": textured wall with brick courses,
glass with a sky reflection and frames, shadows under ledges and a lighting
gradient. Files are saved in the facades layout, photo (A) | labels (B), so
the demo trains labels -> photo with `--direction=BtoA` as the paper does.

Everything is drawn with numpy from a seed: the same arguments always give
the same files.
"""

import json
from typing import Tuple

import numpy as np
from PIL import Image

from pix2pix_tf import outputs

# Label colours (RGB), in the spirit of the CMP facades palette.
PALETTE = {
    "sky": (0, 0, 170),
    "wall": (0, 85, 255),
    "window": (255, 170, 0),
    "door": (170, 0, 0),
    "ledge": (0, 255, 255),
    "roof": (85, 255, 170),
}

_WALL_COLOURS = np.array([(196, 170, 140), (170, 90, 70), (150, 150, 150),
                          (220, 210, 180), (120, 100, 90)], np.float32)


def draw_example(rng: np.random.RandomState,
                 size: int) -> Tuple[np.ndarray, np.ndarray]:
  """One (photo, label_map) pair, each uint8 (size, size, 3)."""
  labels = np.empty((size, size), dtype=object)
  labels[:] = "wall"
  sky_rows = rng.randint(0, size // 6 + 1)
  roof_rows = rng.randint(1, max(2, size // 16) + 1)
  labels[:sky_rows] = "sky"
  labels[sky_rows:sky_rows + roof_rows] = "roof"

  top = sky_rows + roof_rows
  floors = rng.randint(3, 6)
  columns = rng.randint(2, 6)
  floor_height = (size - top) / floors
  column_width = size / columns
  window_w = rng.uniform(0.35, 0.65) * column_width
  window_h = rng.uniform(0.35, 0.6) * floor_height
  door_column = rng.randint(columns)
  for floor in range(floors):
    y0 = top + floor * floor_height
    ledge = int(round(y0 + floor_height)) - max(1, size // 64)
    if floor < floors - 1:
      labels[ledge:int(round(y0 + floor_height)), :] = "ledge"
    for column in range(columns):
      cx = (column + 0.5) * column_width
      if floor == floors - 1 and column == door_column:
        x0, x1 = int(cx - window_w * 0.6), int(cx + window_w * 0.6)
        labels[int(y0 + floor_height * 0.3):size, x0:x1] = "door"
        continue
      x0, x1 = int(cx - window_w / 2), int(cx + window_w / 2)
      wy0 = int(y0 + (floor_height - window_h) * 0.45)
      labels[wy0:int(wy0 + window_h), x0:x1] = "window"

  label_map = np.zeros((size, size, 3), np.uint8)
  for name, colour in PALETTE.items():
    label_map[labels == name] = colour
  return _render(rng, labels, size), label_map


def _render(rng, labels, size):
  """Paints a photo-like image of a label layout."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  noise = rng.normal(0, 1, (size, size, 1)).astype(np.float32)
  wall = _WALL_COLOURS[rng.randint(len(_WALL_COLOURS))]
  wall = wall + rng.uniform(-15, 15, 3)
  photo = np.zeros((size, size, 3), np.float32)

  # Wall: base colour, fine noise, darker mortar every few rows.
  course = max(2, size // 32)
  mortar = ((np.arange(size) % course) == 0).astype(np.float32)[:, None, None]
  photo[:] = wall - 25 * mortar + 8 * noise

  sky = np.stack([120 + 80 * yy, 160 + 60 * yy, 230 + 0 * yy], -1)
  photo[labels == "sky"] = sky[labels == "sky"]
  photo[labels == "roof"] = (np.array([70, 60, 60]) + 6 * noise)[
      labels == "roof"]
  photo[labels == "ledge"] = (np.array([225, 220, 210]) + 5 * noise)[
      labels == "ledge"]
  glass = np.stack([40 + 60 * (1 - yy), 60 + 70 * (1 - yy), 90 + 80 * (1 - yy)],
                   -1)
  photo[labels == "window"] = (glass + 4 * noise)[labels == "window"]
  photo[labels == "door"] = (np.array([90, 55, 30]) + 10 * noise)[
      labels == "door"]

  # Light frames around openings: pixels of a window or door that border
  # another class.
  for name, frame in (("window", 235.0), ("door", 60.0)):
    mask = labels == name
    border = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) &
                      np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    photo[border] = frame

  # Shadow under each ledge, then a global lighting gradient.
  ledge = labels == "ledge"
  shadow = np.roll(ledge, 1, 0) & ~ledge & (labels == "wall")
  photo[shadow] *= 0.6
  light = 0.8 + 0.35 * (1 - xx) * rng.uniform(0.5, 1.0)
  photo *= light[..., None]
  return np.clip(photo, 0, 255).astype(np.uint8)


def write_palette(folder: outputs.Folder, name: str = "palette.json") -> str:
  """The label colours as a palette file (`--label_palette`) in `folder`;
  returns its path."""
  return folder.write_text(name, json.dumps({"name": "demo", "classes": [
      {"name": class_name, "color": list(color)}
      for class_name, color in PALETTE.items()]}, indent=2))


def write_dataset(output_dir: str, num_train: int = 200, num_val: int = 20,
                  size: int = 64, seed: int = 0) -> str:
  """Writes `<output_dir>/{train,val}/NNNN.png` (photo | labels) and the
  label colours to `<output_dir>/palette.json`.

  Returns:
    output_dir.
  """
  folder = outputs.Folder(output_dir, "output", kind="demo dataset")
  plan = [(split, i, offset) for split, count, offset in (
      ("train", num_train, 0), ("val", num_val, 1_000_000))
          for i in range(count)]
  folder.check(["palette.json"] + [f"{split}/{i + 1:04d}.png"
                                   for split, i, _ in plan])
  write_palette(folder)
  for split, i, offset in plan:
    rng = np.random.RandomState(seed + offset + i)
    photo, label_map = draw_example(rng, size)
    pair = Image.fromarray(np.concatenate([photo, label_map], axis=1))
    folder.write(f"{split}/{i + 1:04d}.png",
                 lambda path, image=pair: image.save(path, format="PNG"))
  return output_dir
