"""docs/python_api.ipynb runs from top to bottom, as a notebook user runs
it: built, trained 20 steps with fit, translated and exported."""

import os

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from conftest import ROOT

NOTEBOOK = os.path.join(ROOT, "docs", "python_api.ipynb")


@pytest.mark.slow
def test_the_notebook_runs(tmp_path):
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()
  printed = [output.get("text", "") for cell in notebook.cells
             if cell.cell_type == "code" for output in cell.outputs]
  # The demo's options, by group; and one replaced by name.
  assert any("unet 64 4 100.0\n32" in text for text in printed), printed
  assert any("'gen_l1_loss'" in text for text in printed), printed
  with Image.open(tmp_path / "runs" / "notebook" / "translated.png") as image:
    assert image.size == (64, 64)
  assert os.path.exists(tmp_path / "runs" / "notebook" / "export" /
                        "saved_model.pb")
  assert os.listdir(tmp_path / "runs" / "notebook" / "logs" / "train")
