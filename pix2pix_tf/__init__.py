"""pix2pix_tf: pix2pix image-to-image translation in TensorFlow and Keras 3.

The commands (`python -m pix2pix_tf.<command>`): train, export, predict,
evaluate, serve, study, datasets, summary; each holds its flags and one call
into the library below.

The library: `config` (every training option once), `models`, `data`,
`training`, `evaluation`, `serving`. Imports run one way: commands ->
training -> evaluation, serving -> models, data -> config; `lazy` lets
`data` and `serving` import a module only when one of its names is used.
"""

__version__ = "0.1.0"
