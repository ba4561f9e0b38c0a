"""Dataset building from your own images, and 1-channel models."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import (NO_TENSORFLOW, gradient_image, run_command,
                      run_saying_imports, small_config)
from pix2pix_tf import data as data_lib
from pix2pix_tf.data import demo
from pix2pix_tf.models import summary
from pix2pix_tf import training


def make_photos(folder):
  """Mixed formats and modes, odd sizes, a rotated JPEG, a corrupt file and
  an already grayscale photo."""
  folder.mkdir()
  colour = Image.fromarray(gradient_image(30, 50))
  colour.save(folder / "plain.jpg")
  colour.save(folder / "bitmap.bmp")
  colour.save(folder / "modern.webp")
  colour.convert("P").save(folder / "palette.png")
  rgba = colour.convert("RGBA")
  rgba.putalpha(Image.fromarray(np.full((30, 50), 128, np.uint8)))
  rgba.save(folder / "transparent.png")
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view.
  Image.fromarray(gradient_image(20, 40)).save(folder / "rotated.jpg",
                                               exif=exif)
  colour.convert("L").save(folder / "gray.png")
  (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
  return str(folder)


def test_list_images_lists_sorted_images_and_refuses_when_asked(tmp_path):
  """The one listing of image files (datasets, predict, the study): sorted,
  images only; a folder of none is a refusal naming it when `required`."""
  for name in ("b.png", "a.JPG", "notes.txt"):
    (tmp_path / name).write_bytes(b"")
  (tmp_path / "folder.png").mkdir()
  assert data_lib.list_images(str(tmp_path), required=True) == [
      str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]
  empty = tmp_path / "empty"
  empty.mkdir()
  assert data_lib.list_images(str(empty)) == []
  with pytest.raises(ValueError, match=f"{empty} holds no images"):
    data_lib.list_images(str(empty), required=True)
  with pytest.raises(ValueError, match="is not a folder"):
    data_lib.list_images(str(tmp_path / "b.png"))


def test_read_rgb_applies_exif_and_flattens_transparency(tmp_path):
  photos = make_photos(tmp_path / "photos")
  rotated = data_lib.read_rgb(os.path.join(photos, "rotated.jpg"))
  assert rotated.size == (20, 40)  # Was 40 wide and 20 high, turned.
  transparent = np.asarray(data_lib.read_rgb(
      os.path.join(photos, "transparent.png")), np.int16)
  original = gradient_image(30, 50).astype(np.int16)
  # Half transparent on white: halfway between the colour and 255.
  assert np.abs(transparent - (original + 255) / 2).max() <= 1.5
  with pytest.raises(OSError):
    data_lib.read_rgb(os.path.join(photos, "corrupt.jpg"))


@pytest.mark.slow
def test_colorize_writes_gray_and_colour_pairs(tmp_path):
  photos = make_photos(tmp_path / "photos")
  result = run_saying_imports("datasets", "colorize", f"--photos={photos}",
                              f"--output={tmp_path / 'out'}", "--size=32")
  assert result.returncode == 0, result.stderr
  # Pillow's work: it starts without TensorFlow's import (seconds).
  assert NO_TENSORFLOW in result.stdout
  assert "8/8 files" in result.stdout
  out = tmp_path / "out" / "train"
  written = sorted(os.listdir(out))
  assert written == ["bitmap.png", "modern.png", "palette.png", "plain.png",
                     "rotated.png", "transparent.png"]
  assert "Written: 6" in result.stdout
  assert "Skipped, already grayscale: 1 (gray.png)" in result.stdout
  assert "Skipped, unreadable: 1" in result.stdout and "corrupt.jpg" in (
      result.stdout)
  pair = np.asarray(Image.open(out / "plain.png"), np.int16)
  assert pair.shape == (32, 64, 3)
  a, b = pair[:, :32], pair[:, 32:]
  assert np.all(a[..., 0] == a[..., 1]) and np.all(a[..., 1] == a[..., 2])
  assert np.abs(b[..., 0] - b[..., 1]).max() > 20  # B is in colour.
  # Running again continues: nothing is written twice.
  again = run_command("datasets", "colorize", f"--photos={photos}",
                      f"--output={tmp_path / 'out'}", "--size=32")
  assert "Written: 0" in again.stdout
  assert "Skipped, already written: 6" in again.stdout


@pytest.mark.slow
def test_edges_are_black_on_white(tmp_path):
  photos = tmp_path / "photos"
  photos.mkdir()
  square = np.full((64, 64, 3), 230, np.uint8)
  square[16:48, 16:48] = (200, 30, 30)
  Image.fromarray(square).save(photos / "square.png")
  result = run_command("datasets", "edges", f"--photos={photos}",
                       f"--output={tmp_path / 'out'}", "--size=0")
  assert result.returncode == 0, result.stderr
  pair = np.asarray(Image.open(tmp_path / "out" / "train" / "square.png"))
  a, b = pair[:, :64, 0], pair[:, 64:]
  np.testing.assert_array_equal(b, square)
  assert (a == 255).mean() > 0.8  # Mostly white ...
  assert a[15:17, 30].min() == 0 and a[30, 30] == 255  # Black on the edge.
  assert a[:, :14].min() == 255  # Nothing away from the square.


@pytest.mark.slow
def test_combine_pairs_by_name_and_lists_the_unmatched(tmp_path):
  a_dir, b_dir = tmp_path / "a", tmp_path / "b"
  a_dir.mkdir()
  b_dir.mkdir()
  for name in ("1", "2", "3"):
    Image.fromarray(gradient_image(20, 30)).save(a_dir / f"{name}.jpg")
  for name in ("1", "2", "4"):
    Image.fromarray(gradient_image(40, 60, offset=9)).save(
        b_dir / f"{name}.png")
  result = run_command("datasets", "combine", f"--a_dir={a_dir}",
                       f"--b_dir={b_dir}", 
                       f"--output={tmp_path / 'out'}")
  assert result.returncode == 0, result.stderr
  assert sorted(os.listdir(tmp_path / "out" / "train")) == ["1.png", "2.png"]
  assert "no B file of the same name: 1 (3.jpg)" in result.stdout
  assert "no A file of the same name: 1 (4.png)" in result.stdout
  # B was resized to A's size.
  assert Image.open(tmp_path / "out" / "train" / "1.png").size == (60, 20)
  # With a pattern: keys from the names' digits.
  (a_dir / "photo_7.jpg").write_bytes((a_dir / "1.jpg").read_bytes())
  (b_dir / "label_7.png").write_bytes((b_dir / "1.png").read_bytes())
  result = run_command("datasets", "combine", f"--a_dir={a_dir}",
                       f"--b_dir={b_dir}", 
                       f"--output={tmp_path / 'out2'}", r"--pattern=(\d+)$",
                       "--size=16")
  assert "7.png" in os.listdir(tmp_path / "out2" / "train")
  assert Image.open(tmp_path / "out2" / "train" / "7.png").size == (32, 16)


@pytest.mark.slow
def test_split_is_reproducible_and_guards_existing_splits(tmp_path):
  def make(folder):
    os.makedirs(folder / "train")
    for i in range(20):
      Image.fromarray(gradient_image(4, 8, offset=i)).save(
          folder / "train" / f"{i:02d}.png")

  first, second = tmp_path / "one", tmp_path / "two"
  make(first)
  make(second)
  for folder in (first, second):
    result = run_command("datasets", "split", f"--data_dir={folder}",
                         "--val=0.1", 
                         "--test=0.2", "--seed=4")
    assert result.returncode == 0, result.stderr
  for name, count in (("train", 14), ("val", 2), ("test", 4)):
    assert sorted(os.listdir(first / name)) == sorted(
        os.listdir(second / name))
    assert len(os.listdir(first / name)) == count
  result = run_saying_imports("datasets", "split", f"--data_dir={first}",
                              "--seed=5")
  assert result.returncode != 0 and "--force" in result.stderr
  assert NO_TENSORFLOW in result.stdout
  result = run_command("datasets", "split", f"--data_dir={first}", "--seed=5",
                       "--force")
  assert result.returncode == 0, result.stderr
  total = sum(len(os.listdir(first / n)) for n in ("train", "val", "test"))
  assert total == 20


@pytest.mark.slow
def test_one_channel_input_model(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 2, 32)
  config = small_config(data_dir, tmp_path / "run", input_channels=1,
                        max_steps=2)
  results = training.train_and_evaluate(
      config, tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert results["step"] == 2
  loaded = tf.saved_model.load(str(tmp_path / "run" / "export"))
  out = loaded.signatures["serving_default"](
      images=tf.zeros([1, 32, 32, 1]))["generated_image"]
  assert out.shape == (1, 32, 32, 3)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"\[batch, height, width, 1\]"):
    loaded.signatures["serving_default"](images=tf.zeros([1, 32, 32, 3]))


def test_summary_counts_follow_the_channels():
  three = summary.network_summary(small_config(".", "."))
  gray_in = summary.network_summary(small_config(".", ".", input_channels=1))
  gray_out = summary.network_summary(small_config(".", ".",
                                                  output_channels=1))
  ndf, ngf = 8, 8
  # D's first convolution sees input + output channels: 2 fewer of 6.
  assert three["discriminator"]["trainable_params"] - gray_in[
      "discriminator"]["trainable_params"] == 2 * 16 * ndf
  # G's first convolution has 2 input channels fewer.
  assert three["generator"]["trainable_params"] - gray_in["generator"][
      "trainable_params"] == 2 * 16 * ngf
  assert gray_out["generator"]["output_shape"] == [32, 32, 1]
