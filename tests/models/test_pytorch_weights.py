"""Reading PyTorch state dicts without PyTorch, and without running them
(fixtures: tests/models/make_pth_fixtures.py, written by torch.save)."""

import os

import numpy as np
import pytest

from pix2pix_tf.models import pytorch_weights

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_a_state_dict_reads_as_torch_wrote_it():
  state = pytorch_weights.read_state_dict(os.path.join(DATA, "state.pth"))
  expected = np.load(os.path.join(DATA, "state_expected.npz"))
  # `module.` removed, num_batches_tracked left out.
  assert sorted(state) == sorted(expected.files)
  for name in expected.files:
    assert state[name].dtype == expected[name].dtype, name
    np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
  # The view kept its offset and strides into the shared storage.
  np.testing.assert_array_equal(state["view"], state["base"][1:, 2:5])


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path,
                                                        monkeypatch):
  monkeypatch.chdir(tmp_path)
  with pytest.raises(pytorch_weights.UnsafeCheckpointError,
                     match=r"evil\.pth names .*system.*not reading it"):
    pytorch_weights.read_state_dict(os.path.join(DATA, "evil.pth"))
  assert not os.path.exists(tmp_path / "pix2pix_tf_evil_ran")


def test_files_that_are_not_zip_checkpoints_are_named(tmp_path):
  path = tmp_path / "old.pth"
  path.write_bytes(b"\x80\x02not a zip")
  with pytest.raises(ValueError, match="old.pth is not a PyTorch zip"):
    pytorch_weights.read_state_dict(str(path))
