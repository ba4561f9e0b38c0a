"""pix2pix_tf: pix2pix image-to-image translation in TensorFlow and Keras 3.

The Python API (docs/python_api.md):

* `Config`: every training option, the paper's values by default.
* `Pix2Pix`: the model as a keras.Model; `fit` runs the train command's own
  update.
* `load(export_or_run)`: an export as a function on images (PIL images,
  arrays, paths).

The commands (`python -m pix2pix_tf.<command>`): train, export, predict,
evaluate, serve, study, datasets, summary, convert, segmenter; each holds
its flags and one call into the library below.

The library: `config` (every training option once), `options` (the other
commands' shared options and entry point), `models` (the paper's networks
in Keras's layers), `data`, `kernels` (opt-in faster training kernels,
applied when a run is built), `training`, `evaluation`, `serving`. Imports
run one way: commands -> training -> evaluation, serving, kernels ->
models, data, options -> config; `lazy` lets the
package and its subpackages import a module only when one of its names is
used (`import pix2pix_tf` does not import TensorFlow).
"""

from pix2pix_tf import lazy

__version__ = "0.1.0"

__all__, __getattr__, __dir__ = lazy.exports(__name__, {
    "config": ["Config"],
    "training": ["Pix2Pix"],
    "serving": ["load"],
})
