"""Writes the PyTorch checkpoint fixtures of test_pytorch_weights.py (run
where torch is installed; the files are committed, so the tests need no
torch):

    python tests/models/make_pth_fixtures.py

* state.pth: a DataParallel-style state dict (`module.` names) of float32,
  float16, bfloat16 and int64 tensors, a parameter, and a view that shares
  its storage at an offset with other strides; state_expected.npz: the
  same tensors as numpy arrays, without `module.` and num_batches_tracked.
* evil.pth: a pickle whose loading would run a shell command (it writes a
  file): what the reader must refuse without running it.
"""

import collections
import os

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class Evil:
  def __reduce__(self):
    return (os.system, ("touch pix2pix_tf_evil_ran",))


def main():
  torch.manual_seed(0)
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  state = collections.OrderedDict([
      ("module.conv.weight", torch.randn(2, 3, 4, 4)),
      ("module.conv.bias", torch.nn.Parameter(torch.randn(2))),
      ("module.norm.running_mean", torch.randn(2)),
      ("module.norm.num_batches_tracked", torch.tensor(7)),
      ("module.half", torch.randn(3, 2).half()),
      ("module.brain", torch.randn(5).bfloat16()),
      ("module.base", base),
      ("module.view", base[1:, 2:5]),  # Offset 8, strides (6, 1).
      ("module.steps", torch.arange(3, dtype=torch.int64)),
  ])
  torch.save(state, os.path.join(HERE, "state.pth"))
  expected = {k[len("module."):]: (v.float() if v.dtype == torch.bfloat16
                                   else v).detach().numpy()
              for k, v in state.items() if "num_batches" not in k}
  np.savez(os.path.join(HERE, "state_expected.npz"), **expected)
  torch.save({"weights": Evil()}, os.path.join(HERE, "evil.pth"))


if __name__ == "__main__":
  main()
