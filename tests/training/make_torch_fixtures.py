"""Writes tests/training/data/torch_optimizer.json, the values PyTorch
computes for test_optimizers.py (run where torch is installed; the file is
committed, so the tests need no torch):

    python tests/training/make_torch_fixtures.py

* adam: a weight vector and three steps of fixed gradients (large, small
  and tiny ones, where epsilon decides the step) through
  `torch.optim.Adam(lr=2e-4, betas=(0.5, 0.999), eps=1e-8)`, the
  reference's, and the weights after each step.
* linear_schedule: the learning rate of each epoch of the reference's
  `--lr_policy linear` with --n_epochs 100 --n_epochs_decay 100
  (epoch_count 1): a `LambdaLR` with its rule, stepped after each epoch as
  the reference's train.py does.
"""

import json
import os

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def adam():
  rng = np.random.default_rng(0)
  weights = rng.normal(size=12).astype(np.float32)
  scales = np.array([1.0, 1e-2, 1e-4, 1e-6, 1e-7, 1e-8] * 2, np.float32)
  gradients = [(rng.normal(size=12) * scales).astype(np.float32)
               for _ in range(3)]
  parameter = torch.nn.Parameter(torch.tensor(weights))
  optimizer = torch.optim.Adam([parameter], lr=2e-4, betas=(0.5, 0.999),
                               eps=1e-8)
  after = []
  for gradient in gradients:
    parameter.grad = torch.tensor(gradient)
    optimizer.step()
    after.append(parameter.detach().numpy().tolist())
  return {"weights": weights.tolist(),
          "gradients": [g.tolist() for g in gradients], "after": after}


def linear_schedule(n_epochs=100, n_epochs_decay=100, epoch_count=1):
  parameter = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.Adam([parameter], lr=2e-4, betas=(0.5, 0.999))

  def lambda_rule(epoch):  # The reference's networks.get_scheduler.
    return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(
        n_epochs_decay + 1)

  scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda_rule)
  rates = []
  for _ in range(epoch_count, n_epochs + n_epochs_decay + 1):
    rates.append(optimizer.param_groups[0]["lr"])  # During the epoch.
    parameter.grad = torch.zeros(1)
    optimizer.step()
    scheduler.step()  # After the epoch.
  return {"n_epochs": n_epochs, "n_epochs_decay": n_epochs_decay,
          "rates": rates}


if __name__ == "__main__":
  os.makedirs(HERE, exist_ok=True)
  with open(os.path.join(HERE, "torch_optimizer.json"), "w") as f:
    json.dump({"torch": torch.__version__, "adam": adam(),
               "linear_schedule": linear_schedule()}, f, indent=1)
