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
* state_legacy.pth, evil_legacy.pth: the same in the format torch.save
  wrote before PyTorch 1.6 (pytorch-fid's Inception weights are in it).
* unet_batch.pth, unet_instance.pth: 5-level U-Nets (ngf 4) in the
  reference's module layout (UnetSkipConnectionBlock nesting, restated
  here), random weights and batch-norm statistics; unet_expected.npz: an
  input and each model's output in eval mode and in train mode (batch
  statistics of the one image; these models have no dropout).
"""

import collections
import os

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class Evil:
  def __reduce__(self):
    return (os.system, ("touch pix2pix_tf_evil_ran",))


class Level(torch.nn.Module):
  """One U-Net level in the reference's layout: the outermost
  [downconv, submodule, uprelu, upconv, tanh], a middle one [downrelu,
  downconv, downnorm, submodule, uprelu, upconv, upnorm], the innermost
  [downrelu, downconv, uprelu, upconv, upnorm]; all but the outermost
  return their input concatenated with their output. The activations are
  in place, as the reference's: a level's LeakyReLU thus also changes the
  input it returns as the skip, but every skip reaches the decoder through
  the next ReLU, and ReLU(LeakyReLU(x)) = ReLU(x), so the outputs are
  those of a U-Net with plain skips (written with out-of-place
  activations, the fixtures come out byte for byte the same)."""

  def __init__(self, outer, inner, submodule=None, input_channels=None,
               outermost=False, norm="batch"):
    super().__init__()
    self.outermost = outermost
    bias = norm == "instance"
    make_norm = (torch.nn.BatchNorm2d if norm == "batch"
                 else torch.nn.InstanceNorm2d)
    down = torch.nn.Conv2d(input_channels or outer, inner, 4, 2, 1,
                           bias=bias)
    if outermost:
      layers = [down, submodule, torch.nn.ReLU(True),
                torch.nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1),
                torch.nn.Tanh()]
    elif submodule is None:
      layers = [torch.nn.LeakyReLU(0.2, True), down, torch.nn.ReLU(True),
                torch.nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias),
                make_norm(outer)]
    else:
      layers = [torch.nn.LeakyReLU(0.2, True), down, make_norm(inner), submodule,
                torch.nn.ReLU(True),
                torch.nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1,
                                         bias=bias),
                make_norm(outer)]
    self.model = torch.nn.Sequential(*layers)

  def forward(self, x):
    if self.outermost:
      return self.model(x)
    return torch.cat([x, self.model(x)], 1)


class UNet(torch.nn.Module):
  def __init__(self, depth, ngf, norm, channels=3):
    super().__init__()
    filters = [ngf * min(2 ** i, 8) for i in range(depth)]
    block = Level(filters[-2], filters[-1], norm=norm)
    for level in range(depth - 2, 0, -1):
      block = Level(filters[level - 1], filters[level], block, norm=norm)
    self.model = Level(channels, filters[0], block, channels,
                       outermost=True, norm=norm)

  def forward(self, x):
    return self.model(x)


def resnet(n_blocks, ngf, norm, dropout, channels=3):
  """The reference's ResnetGenerator layout: one nn.Sequential, blocks as
  modules with a `conv_block` Sequential (restated here)."""
  bias = norm == "instance"
  make_norm = (torch.nn.BatchNorm2d if norm == "batch"
               else torch.nn.InstanceNorm2d)

  class Block(torch.nn.Module):
    def __init__(self, dim):
      super().__init__()
      layers = [torch.nn.ReflectionPad2d(1),
                torch.nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim),
                torch.nn.ReLU(True)]
      if dropout:
        layers.append(torch.nn.Dropout(0.5))
      layers += [torch.nn.ReflectionPad2d(1),
                 torch.nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
      self.conv_block = torch.nn.Sequential(*layers)

    def forward(self, x):
      return x + self.conv_block(x)

  layers = [torch.nn.ReflectionPad2d(3),
            torch.nn.Conv2d(channels, ngf, 7, bias=bias), make_norm(ngf),
            torch.nn.ReLU(True)]
  for i in range(2):
    layers += [torch.nn.Conv2d(ngf * 2 ** i, ngf * 2 ** (i + 1), 3, 2, 1,
                               bias=bias),
               make_norm(ngf * 2 ** (i + 1)), torch.nn.ReLU(True)]
  layers += [Block(ngf * 4) for _ in range(n_blocks)]
  for i in range(2):
    layers += [torch.nn.ConvTranspose2d(ngf * 2 ** (2 - i),
                                        ngf * 2 ** (1 - i), 3, 2, 1, 1,
                                        bias=bias),
               make_norm(ngf * 2 ** (1 - i)), torch.nn.ReLU(True)]
  layers += [torch.nn.ReflectionPad2d(3),
             torch.nn.Conv2d(ngf, channels, 7), torch.nn.Tanh()]
  net = torch.nn.Module()
  net.model = torch.nn.Sequential(*layers)
  net.forward = net.model.forward
  return net


def randomize_batch_norm(net):
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)


def write_resnets():
  """resnet_{norm}_{dropout}.pth (6 blocks, ngf 4) and their outputs in
  resnet_expected.npz; with dropout, "train" outputs are not written (they
  are random): eval only."""
  image = torch.rand(1, 3, 32, 32) * 2 - 1
  outputs = {"input": image.numpy()}
  for norm in ("batch", "instance"):
    for dropout in (False, True):
      net = resnet(6, 4, norm, dropout)
      randomize_batch_norm(net)
      name = f"{norm}_{'dropout' if dropout else 'plain'}"
      torch.save(net.state_dict(), os.path.join(HERE, f"resnet_{name}.pth"))
      with torch.no_grad():
        net.eval()
        outputs[f"{name}_eval"] = net(image).numpy()
        if not dropout:
          net.train()
          outputs[f"{name}_train"] = net(image).numpy()
  np.savez(os.path.join(HERE, "resnet_expected.npz"), **outputs)


def write_resnet9():
  """resnet9_batch_dropout.pth: resnet_9blocks (ngf 4) with dropout, as the
  reference's pix2pix trains it; its eval output in resnet9_expected.npz."""
  image = torch.rand(1, 3, 32, 32) * 2 - 1
  net = resnet(9, 4, "batch", True)
  randomize_batch_norm(net)
  torch.save(net.state_dict(), os.path.join(HERE, "resnet9_batch_dropout.pth"))
  with torch.no_grad():
    net.eval()
    np.savez(os.path.join(HERE, "resnet9_expected.npz"),
             input=image.numpy(), eval=net(image).numpy())


def patchgan(n_layers, ndf, norm, channels=6):
  """The reference's NLayerDiscriminator layout (restated here)."""
  bias = norm == "instance"
  make_norm = (torch.nn.BatchNorm2d if norm == "batch"
               else torch.nn.InstanceNorm2d)
  layers = [torch.nn.Conv2d(channels, ndf, 4, 2, 1),
            torch.nn.LeakyReLU(0.2, True)]
  for i in range(1, n_layers + 1):
    stride = 2 if i < n_layers else 1
    layers += [torch.nn.Conv2d(ndf * min(2 ** (i - 1), 8),
                               ndf * min(2 ** i, 8), 4, stride, 1,
                               bias=bias),
               make_norm(ndf * min(2 ** i, 8)), torch.nn.LeakyReLU(0.2, True)]
  layers.append(torch.nn.Conv2d(ndf * min(2 ** n_layers, 8), 1, 4, 1, 1))
  net = torch.nn.Module()
  net.model = torch.nn.Sequential(*layers)
  net.forward = net.model.forward
  return net


def write_patchgans():
  """patchgan_{norm}.pth (3 layers, ndf 4) and their logits for an
  (input, target) pair in patchgan_expected.npz, in eval and train mode."""
  pair = torch.rand(1, 6, 64, 64) * 2 - 1
  outputs = {"input": pair.numpy()}
  for norm in ("batch", "instance"):
    net = patchgan(3, 4, norm)
    randomize_batch_norm(net)
    torch.save(net.state_dict(), os.path.join(HERE, f"patchgan_{norm}.pth"))
    with torch.no_grad():
      net.eval()
      outputs[f"{norm}_eval"] = net(pair).numpy()
      net.train()
      outputs[f"{norm}_train"] = net(pair).numpy()
  np.savez(os.path.join(HERE, "patchgan_expected.npz"), **outputs)


def pattern(size):
  """A deterministic input in [-1, 1] (tests/models/test_pytorch_weights.py
  computes the same): nothing to store for a 256x256 image."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  return np.stack([np.sin(0.37 * x + 0.11 * y + c) for c in range(3)])[None]


def write_deep_unets():
  """unet_depth{7,8}.pth: the depths of unet_128 and unet_256 (ngf 2, batch
  norm, no dropout); unet_deep_expected.npz: the central 64x64 of their
  outputs for `pattern(128)` and `pattern(256)`, eval and train mode."""
  outputs = {}
  for depth in (7, 8):
    size = 2 ** depth
    image = torch.from_numpy(pattern(size))
    net = UNet(depth, 2, "batch")
    randomize_batch_norm(net)
    torch.save(net.state_dict(), os.path.join(HERE, f"unet_depth{depth}.pth"))
    centre = slice(size // 2 - 32, size // 2 + 32)
    with torch.no_grad():
      net.eval()
      outputs[f"eval{depth}"] = net(image).numpy()[..., centre, centre]
      net.train()
      outputs[f"train{depth}"] = net(image).numpy()[..., centre, centre]
  np.savez(os.path.join(HERE, "unet_deep_expected.npz"), **outputs)


def write_unets():
  image = torch.rand(1, 3, 32, 32) * 2 - 1
  outputs = {"input": image.numpy()}
  for norm in ("batch", "instance"):
    net = UNet(5, 4, norm)
    randomize_batch_norm(net)
    with torch.no_grad():
      torch.save(net.state_dict(), os.path.join(HERE, f"unet_{norm}.pth"))
      net.eval()
      outputs[f"{norm}_eval"] = net(image).numpy()
      net.train()
      outputs[f"{norm}_train"] = net(image).numpy()
  np.savez(os.path.join(HERE, "unet_expected.npz"), **outputs)


def write_legacy(state):
  """state_legacy.pth and evil_legacy.pth: state.pth's tensors and
  evil.pth's pickle in torch.save's format before PyTorch 1.6."""
  torch.save(state, os.path.join(HERE, "state_legacy.pth"),
             _use_new_zipfile_serialization=False)
  torch.save({"weights": Evil()}, os.path.join(HERE, "evil_legacy.pth"),
             _use_new_zipfile_serialization=False)


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
  write_legacy(state)
  expected = {k[len("module."):]: (v.float() if v.dtype == torch.bfloat16
                                   else v).detach().numpy()
              for k, v in state.items() if "num_batches" not in k}
  np.savez(os.path.join(HERE, "state_expected.npz"), **expected)
  torch.save({"weights": Evil()}, os.path.join(HERE, "evil.pth"))
  write_unets()
  write_resnets()
  write_patchgans()
  write_deep_unets()
  write_resnet9()


if __name__ == "__main__":
  main()
