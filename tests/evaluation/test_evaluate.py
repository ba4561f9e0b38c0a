"""Evaluation: metrics on known cases, segmentation scores, FID/KID, the CLI."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import fid_fixtures
import pth_writer
from conftest import (ENV, run_command, scalar_tags, small_config,
                      visible_generator)
from pix2pix_tf.data import demo
from pix2pix_tf.evaluation import fid_inception
from pix2pix_tf.evaluation import metrics
from pix2pix_tf import data as data_lib
from pix2pix_tf.evaluation import segmentation
from pix2pix_tf import training


def test_pixel_accuracy_counts_pixels_within_tolerance():
  target = tf.zeros([1, 2, 2, 3])
  # Errors of 10, 20, 30 and 40 intensity levels in one channel.
  levels = tf.constant([10.0, 20.0, 30.0, 40.0]) / 127.5
  generated = tf.reshape(tf.stack([levels, tf.zeros(4), tf.zeros(4)], -1),
                         [1, 2, 2, 3])
  assert metrics.pixel_accuracy(generated, target, 25.0).numpy() == (
      pytest.approx([0.5]))
  assert metrics.pixel_accuracy(generated, target, 40.0).numpy() == (
      pytest.approx([1.0]))


def test_color_distribution_distance():
  rng = np.random.RandomState(0)
  images = tf.constant(rng.uniform(-0.5, 0.5, (4, 16, 16, 3)), tf.float32)
  same = metrics.color_distribution_distance(
      metrics.color_histograms(images), metrics.color_histograms(images))
  assert same["color_histogram_intersection"] == pytest.approx(1.0)
  assert same["color_emd"] == pytest.approx(0.0)
  # Brighter by 0.2 on [-1, 1] = 25.5 intensity levels.
  shifted = metrics.color_distribution_distance(
      metrics.color_histograms(images + 0.2), metrics.color_histograms(images))
  assert shifted["color_emd"] == pytest.approx(25.5, abs=4.0)
  assert shifted["color_histogram_intersection"] < 0.9


def palette_file(tmp_path):
  path = tmp_path / "palette.json"
  path.write_text(json.dumps({
      "name": "demo", "classes": [{"name": k, "color": list(v)}
                                  for k, v in demo.PALETTE.items()],
      "void": [[0, 0, 0]]}))
  return str(path)


def test_label_map_classes_and_known_iou(tmp_path):
  palette = data_lib.load_palette(palette_file(tmp_path))
  sky, wall = demo.PALETTE["sky"], demo.PALETTE["wall"]
  # JPEG-like noise on the colours still gives the nearest class; black is
  # void.
  image = np.array([[sky, wall], [(5, 80, 250), (0, 0, 0)]], np.uint8)
  classes = segmentation.colors_to_classes(image[None], palette).numpy()[0]
  assert classes.tolist() == [[0, 1], [1, segmentation.IGNORE]]
  # true [0, 0, 1, 1], predicted [0, 1, 1, 1]: accuracy 3/4; per class 1/2
  # and 1; IoU 1/2 and 2/3.
  confusion = segmentation.confusion_matrix([0, 0, 1, 1, -1], [0, 1, 1, 1, 0],
                                            3)
  result = segmentation.scores(confusion, ["a", "b", "c"])
  assert result["per_pixel_accuracy"] == pytest.approx(0.75)
  # Class c is in neither: 0 in the paper's means, left out of the others.
  assert result["per_class_accuracy"] == pytest.approx((1 / 2 + 1) / 3)
  assert result["class_iou"] == pytest.approx((1 / 2 + 2 / 3) / 3)
  assert result["per_class_accuracy_over_present"] == pytest.approx(0.75)
  assert result["class_iou_over_present"] == pytest.approx(
      (1 / 2 + 2 / 3) / 2)
  assert result["classes"]["c"] == {"accuracy": None, "iou": None}


def reference_get_scores(hist):
  """The paper's evaluation (get_scores in the reference's
  scripts/eval_cityscapes/util.py), restated: a square confusion matrix,
  rows true; every denominator + 1e-12; nanmean over all classes."""
  diag = np.diag(hist)
  return (diag.sum() / (hist.sum() + 1e-12),
          np.nanmean(diag / (hist.sum(1) + 1e-12)),
          np.nanmean(diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)))


def test_scores_equal_the_papers_code_with_a_class_missing():
  rng = np.random.default_rng(0)
  true = rng.integers(0, 19, 5000)
  true[true == 7] = 3  # Class 7 is absent from the ground truth...
  predicted = np.where(rng.random(5000) < 0.6, true,
                       rng.integers(0, 19, 5000))
  predicted[predicted == 12] = 0  # ... and 12 is never predicted.
  confusion = segmentation.confusion_matrix(true, predicted, 19)
  assert confusion[7].sum() == 0 and confusion[:, 12].sum() == 0
  ours = segmentation.scores(confusion)
  theirs = reference_get_scores(confusion[:, :19].astype(np.float64))
  assert (ours["per_pixel_accuracy"], ours["per_class_accuracy"],
          ours["class_iou"]) == pytest.approx(theirs, rel=1e-12)
  # The means over the classes present are higher: class 7 counted 0.
  assert ours["per_class_accuracy_over_present"] == pytest.approx(
      ours["per_class_accuracy"] * 19 / 18)


def test_predicted_void_is_an_error_not_left_out():
  # True void pixels are left out; predicted void ones count against their
  # true class.
  confusion = segmentation.confusion_matrix([0, 0, 1, 1, -1],
                                            [0, -1, 1, -1, -1], 2)
  assert confusion.tolist() == [[1, 0, 1], [0, 1, 1]]
  result = segmentation.scores(confusion, ["a", "b"])
  assert result["per_pixel_accuracy"] == pytest.approx(0.5)
  assert result["per_class_accuracy"] == pytest.approx(0.5)
  assert result["class_iou"] == pytest.approx(0.5)
  # A segmenter that answers "void" everywhere scores nothing.
  all_void = segmentation.scores(
      segmentation.confusion_matrix([0, 1, 1, 2], [-1] * 4, 3))
  assert set(all_void.values()) == {0.0}


# cityscapesScripts' labels.py: (name, id, trainId, color) of every label.
CITYSCAPES_LABELS = [
    ("unlabeled", 0, 255, (0, 0, 0)),
    ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)),
    ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)),
    ("dynamic", 5, 255, (111, 74, 0)),
    ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)),
    ("sidewalk", 8, 1, (244, 35, 232)),
    ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)),
    ("building", 11, 2, (70, 70, 70)),
    ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)),
    ("guard rail", 14, 255, (180, 165, 180)),
    ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)),
    ("pole", 17, 5, (153, 153, 153)),
    ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)),
    ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)),
    ("terrain", 22, 9, (152, 251, 152)),
    ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)),
    ("rider", 25, 12, (255, 0, 0)),
    ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)),
    ("bus", 28, 15, (0, 60, 100)),
    ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)),
    ("train", 31, 16, (0, 80, 100)),
    ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)),
    ("license plate", -1, -1, (0, 0, 142)),
]
# Ignored labels drawn in a training class's colour: a colour map cannot
# tell them from that class.
SHARED_COLOR = {"polegroup": "pole", "license plate": "car"}


@pytest.mark.parametrize("name, label_id, train_id, color", CITYSCAPES_LABELS,
                         ids=[label[0] for label in CITYSCAPES_LABELS])
def test_every_cityscapes_colour_gives_its_training_id_or_ignore(
    name, label_id, train_id, color):
  del label_id
  palette = data_lib.load_palette("cityscapes")
  # Exact, and as a JPEG leaves it (a few levels off).
  pixels = np.array([[color, np.clip(np.add(color, (3, -2, 2)), 0, 255)]],
                    np.uint8)
  classes = segmentation.colors_to_classes(pixels[None], palette).numpy()
  if name in SHARED_COLOR:
    expected = palette.class_names.index(SHARED_COLOR[name])
  elif train_id in range(19):
    expected = train_id
    assert palette.class_names[train_id] == name
  else:
    expected = segmentation.IGNORE
  assert classes.ravel().tolist() == [expected, expected]


def test_a_void_colour_that_is_a_class_colour_is_refused(tmp_path):
  path = tmp_path / "palette.json"
  path.write_text(json.dumps({
      "classes": [{"name": "pole", "color": [153, 153, 153]}],
      "void": [{"name": "polegroup", "color": [153, 153, 153]}]}))
  with pytest.raises(ValueError, match="also the colour of pole"):
    data_lib.load_palette(str(path))


def test_built_in_palettes():
  cityscapes = data_lib.load_palette("cityscapes")
  assert cityscapes.num_classes == 19
  assert cityscapes.class_names[0] == "road"
  assert cityscapes.colors[0].tolist() == [128, 64, 128]
  assert data_lib.load_palette("facades").num_classes == 12
  with pytest.raises(ValueError, match="neither a built-in palette"):
    data_lib.load_palette("nope")


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
  """InceptionV3 with random weights, loaded from a weights file."""
  path = str(tmp_path_factory.mktemp("inception") / "random.weights.h5")
  keras.utils.set_random_seed(0)
  metrics.inception_model().save_weights(path)
  return metrics.inception_model(path)


@pytest.mark.slow
def test_fid_and_kid_are_zero_for_a_set_and_grow_with_noise(inception):
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (12, 32, 32, 3)).astype(np.float32)
  images = tf.image.resize(images, [64, 64]).numpy()  # Smoother content.
  reference = metrics.inception_features(inception, images)
  fids, kids = [], []
  for noise in (0.0, 0.2, 0.8):
    noisy = np.clip(images + noise * rng.normal(size=images.shape), -1, 1)
    features = metrics.inception_features(inception, noisy)
    fids.append(metrics.frechet_distance(reference, features))
    kids.append(metrics.kernel_inception_distance(reference, features,
                                                  num_subsets=3))
  assert fids[0] == pytest.approx(0.0, abs=1e-6 * max(fids[1], 1))
  assert fids[0] < fids[1] < fids[2]
  assert abs(kids[0]) < 0.1 * kids[1]
  assert kids[1] < kids[2]


def test_frechet_distance_of_gaussians():
  rng = np.random.RandomState(0)
  a = rng.normal(size=(4000, 2))
  b = rng.normal(size=(4000, 2)) * 2 + 1
  # ||mu||^2 = 2; Tr(S_a + S_b - 2 sqrt(S_a S_b)) = 2 + 8 - 2 * 4 = 2.
  assert metrics.frechet_distance(a, b) == pytest.approx(4.0, rel=0.08)


@pytest.fixture(scope="module")
def photo_to_labels_run(tmp_path_factory):
  """A tiny run that translates photos (A) into demo label maps (B)."""
  root = tmp_path_factory.mktemp("p2l")
  data_dir = demo.write_dataset(str(root / "data"), 4, 3, 32)
  os.rename(os.path.join(data_dir, "val"), os.path.join(data_dir, "test"))
  config = small_config(data_dir, root / "run", max_steps=2)
  training.train_and_evaluate(config,
                             tf.distribute.OneDeviceStrategy("/cpu:0"))
  return config, root


@pytest.mark.slow
def test_evaluate_command_json_and_photo_to_labels(photo_to_labels_run,
                                                   tmp_path):
  config, _ = photo_to_labels_run
  output = tmp_path / "result.json"
  result = run_command("evaluate", f"--model_dir={config.outputs.model_dir}",
                       f"--data_dir={config.data.data_dir}", "--split=test",
                       f"--label_palette={palette_file(tmp_path)}",
                       f"--output={output}")
  assert result.returncode == 0, result.stderr
  data = json.loads(output.read_text())
  assert data["num_images"] == 3
  assert [row["file"] for row in data["per_image"]] == [
      "0001.png", "0002.png", "0003.png"]
  for name in ("l1", "mse", "psnr", "ssim", "pixel_accuracy"):
    assert data["metrics"][name] == pytest.approx(
        np.mean([row[name] for row in data["per_image"]]))
  assert 0 <= data["metrics"]["color_histogram_intersection"] <= 1
  assert data["labels_side"] == "target"
  scores = data["segmentation"]["photo_to_labels"]
  assert 0 <= scores["class_iou"] <= scores["per_pixel_accuracy"] <= 1
  assert set(scores["classes"]) == set(demo.PALETTE)
  assert "FID and KID skipped: give --inception_weights=pt_inception" in (
      data["notes"][0])
  # The console table.
  assert "l1" in result.stdout and "photo_to_labels: per-pixel acc" in (
      result.stdout)


@pytest.mark.slow
def test_evaluate_scores_the_images_predict_writes(tmp_path):
  """Batches of 8 in evaluate, one image per call in predict: in paper mode
  (batch norm, dropout off to compare) both give each image the same output,
  so evaluate's per-image L1 is that of predict's files."""
  from PIL import Image
  from pix2pix_tf import serving
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 5, 32)
  config = small_config(data_dir, tmp_path / "run", dropout=0.0,
                        norm="batch")
  saved_model = serving.save(visible_generator(config), config, 0,
                             str(tmp_path / "export"), "paper")
  output = tmp_path / "result.json"
  result = run_command("evaluate", f"--saved_model={saved_model}",
                       f"--data_dir={data_dir}", "--split=val",
                       "--metrics=l1", f"--output={output}")
  assert result.returncode == 0, result.stderr
  evaluated = {row["file"]: row["l1"]
               for row in json.loads(output.read_text())["per_image"]}
  assert len(evaluated) == 5
  predicted = tmp_path / "predicted"
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.predict",
       f"--saved_model={saved_model}", "--paired",
       f"--input={os.path.join(data_dir, 'val')}", f"--output={predicted}"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert result.returncode == 0, result.stderr

  def unit(name, folder=""):
    return np.asarray(Image.open(predicted / folder / name), np.float32
                      ) / 127.5 - 1.0

  for name, l1 in evaluated.items():
    scored = np.abs(unit(name) - unit(name, "targets")).mean()
    # predict's PNGs are rounded to 8 bits: at most 1/255 apart.
    assert abs(scored - l1) < 0.004, name


@pytest.mark.slow
def test_fcn_score_with_a_trained_segmenter(tmp_path):
  data_dir = demo.write_dataset(str(tmp_path / "data"), 8, 2, 32)
  palette = palette_file(tmp_path)
  segmenter = tmp_path / "segmenter"
  trained = subprocess.run(
      [sys.executable, "-m", "pix2pix_tf.segmenter",
       f"--data_dir={data_dir}", f"--label_palette={palette}",
       f"--output={segmenter}", "--image_size=32", "--depth=3",
       "--filters=8", "--epochs=2", "--batch_size=4"],
      capture_output=True, text=True, env=ENV, timeout=600)
  assert trained.returncode == 0, trained.stderr
  assert "labels: B half" in trained.stdout
  # labels -> photo: the demo data's B half is the label map. Training logs
  # the FCN-score of the val split with the other val metrics.
  config = small_config(data_dir, tmp_path / "run", max_steps=2,
                        direction="BtoA", label_palette=palette,
                        segmenter=str(segmenter))
  training.train_and_evaluate(config,
                             tf.distribute.OneDeviceStrategy("/cpu:0"))
  val = scalar_tags(str(tmp_path / "run" / "logs" / "val"))
  for row in ("fcn_generated", "fcn_ground_truth"):
    for name in ("per_pixel_accuracy", "per_class_accuracy", "class_iou"):
      steps = [s for s, _ in val[f"{row}/{name}"]]
      assert steps == [0, 2]
      assert all(0 <= v <= 1 for _, v in val[f"{row}/{name}"])
  output = tmp_path / "result.json"
  result = run_command("evaluate", f"--model_dir={config.outputs.model_dir}",
                       f"--data_dir={data_dir}", "--split=val",
                       f"--label_palette={palette}",
                       f"--segmenter={segmenter}", f"--output={output}")
  assert result.returncode == 0, result.stderr
  data = json.loads(output.read_text())
  assert data["labels_side"] == "input"
  for row in ("fcn_generated", "fcn_ground_truth"):
    scores = data["segmentation"][row]
    assert 0 < scores["per_pixel_accuracy"] <= 1


@pytest.mark.slow
def test_evaluate_names_a_missing_model(tmp_path):
  result = run_command("evaluate", f"--model_dir={tmp_path}",
                       f"--data_dir={tmp_path}")
  assert result.returncode != 0
  assert f"{tmp_path}/export is not a SavedModel" in result.stderr


@pytest.mark.slow
def test_training_rejects_a_missing_segmenter_before_writing(tmp_path):
  from pix2pix_tf import config as config_lib
  config = small_config(tmp_path, tmp_path / "run", label_palette="facades",
                        segmenter=str(tmp_path / "none"))
  with pytest.raises(config_lib.ConfigError, match="is not a SavedModel"):
    training.train_and_evaluate(config,
                               tf.distribute.OneDeviceStrategy("/cpu:0"))
  assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_evaluate_a_named_checkpoint(photo_to_labels_run, tmp_path):
  config, _ = photo_to_labels_run
  checkpoint = os.path.join(config.outputs.model_dir, "checkpoints", "ckpt-2")
  output = tmp_path / "result.json"
  result = run_command("evaluate", f"--model_dir={config.outputs.model_dir}",
                       f"--checkpoint={checkpoint}",
                       f"--data_dir={config.data.data_dir}", "--split=test",
                       "--metrics=l1,psnr", f"--output={output}")
  assert result.returncode == 0, result.stderr
  data = json.loads(output.read_text())
  assert data["checkpoint"] == checkpoint and data["step"] == 2
  assert set(data["metrics"]) == {"l1", "psnr"}


def random_inception_weights(folder, network):
  """A weights file of random values for `network`: Keras's InceptionV3
  (.h5) or the FID Inception network (a .pth as pytorch-fid's)."""
  if network == "keras":
    path = os.path.join(folder, "random.weights.h5")
    keras.utils.set_random_seed(0)
    metrics.inception_model().save_weights(path)
    return path
  return pth_writer.write_state_dict(
      os.path.join(folder, "random.pth"), fid_fixtures.random_state(
          fid_inception.state_dict_shapes(fid_inception.build())))


@pytest.mark.slow
@pytest.mark.parametrize("network,note", [
    ("keras", "comparable only between runs of pix2pix_tf"),
    ("fid", "weights other than pytorch-fid's")])
def test_fid_of_an_export_is_that_of_its_outputs_and_targets(tmp_path,
                                                             network, note):
  """evaluate's FID with a weights file (here random weights of either
  network) is the Frechet distance of the Inception features of the
  export's outputs and of the targets, computed here another way; KID is
  there beside it, and a note says what FID is comparable with."""
  from pix2pix_tf import evaluation
  from pix2pix_tf import serving
  data_dir = demo.write_dataset(str(tmp_path / "data"), 4, 6, 32)
  # Dropout off: the outputs are the same in every call.
  config = small_config(data_dir, tmp_path / "run", dropout=0.0,
                        norm="batch")
  export = serving.save(visible_generator(config), config, 0,
                        str(tmp_path / "export"), "paper")
  weights = random_inception_weights(str(tmp_path), network)
  result = evaluation.evaluate_saved_model(
      export, data_dir, "val", evaluation.Options(
          metrics=("l1", "fid", "kid"), inception_weights=weights,
          verbose=False))
  translate = serving.load_export(export).signatures["serving_default"]
  inputs, targets = next(iter(data_lib.make_dataset(
      data_lib.list_split(data_dir, "val"), config, 6, training=False)))
  model = metrics.inception_model(weights)
  assert (model.name == fid_inception.NAME) == (network == "fid")
  expected = metrics.frechet_distance(
      metrics.inception_features(
          model, translate(images=inputs)["generated_image"]),
      metrics.inception_features(model, targets))
  assert expected > 0
  assert result["metrics"]["fid"] == pytest.approx(expected, rel=1e-4)
  assert np.isfinite(result["metrics"]["kid"])
  assert [n for n in result["notes"] if note in n]
