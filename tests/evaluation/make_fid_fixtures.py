"""Writes tests/evaluation/data/fid_expected.npz, what pytorch-fid computes
for test_fid_inception.py (run where torch, torchvision and pytorch-fid are
installed; the file is committed, so the tests need none of them):

    pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0
    python tests/evaluation/make_fid_fixtures.py

pytorch-fid's own network (`pytorch_fid.inception.InceptionV3`, block 3,
its default resize and normalisation) with `fid_fixtures.random_state`'s
weights in place of the downloaded ones, and its own pipeline from PNG
files (`calculate_activation_statistics`, `calculate_frechet_distance`) on
the two image sets of `fid_fixtures.images`:

* features_a, features_b: each image's 2048 features;
* fid: the FID between the sets.
"""

import os
import tempfile

import numpy as np
from PIL import Image
from pytorch_fid import fid_score
from pytorch_fid import inception
import torch

import fid_fixtures  # Beside this script, which is run as one.

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def random_network():
  """pytorch-fid's InceptionV3, its download replaced by random weights
  for the tensors of the network it has just built."""
  built = []
  build = inception._inception_v3  # pylint: disable=protected-access

  def record(*args, **kwargs):
    built.append(build(*args, **kwargs))
    return built[-1]

  def download(*unused_args, **unused_kwargs):
    shapes = {k: tuple(v.shape) for k, v in built[-1].state_dict().items()
              if not k.endswith("num_batches_tracked")}
    return {k: torch.from_numpy(v)
            for k, v in fid_fixtures.random_state(shapes).items()}

  inception._inception_v3 = record  # pylint: disable=protected-access
  inception.load_state_dict_from_url = download
  return inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[
      2048]]).eval()


def main():
  model = random_network()
  features, statistics = {}, {}
  with tempfile.TemporaryDirectory() as folder:
    for name in fid_fixtures.SETS:
      files = []
      for i, image in enumerate(fid_fixtures.images(name)):
        files.append(os.path.join(folder, f"{name}{i}.png"))
        Image.fromarray(image).save(files[-1])
      features[name] = fid_score.get_activations(files, model, batch_size=4,
                                                 dims=2048, device="cpu",
                                                 num_workers=0)
      statistics[name] = fid_score.calculate_activation_statistics(
          files, model, batch_size=4, dims=2048, device="cpu",
          num_workers=0)
  fid = fid_score.calculate_frechet_distance(*statistics["a"],
                                             *statistics["b"])
  np.savez_compressed(os.path.join(HERE, "fid_expected.npz"),
                      features_a=features["a"].astype(np.float32),
                      features_b=features["b"].astype(np.float32),
                      fid=np.float64(fid))
  print(f"fid {fid:.6f}, feature range {features['a'].min():.3f}.."
        f"{features['a'].max():.3f}, mean {features['a'].mean():.3f}")


if __name__ == "__main__":
  main()
