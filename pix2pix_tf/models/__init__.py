"""The pix2pix networks: U-Net and ResNet generators, PatchGAN and PixelGAN
discriminators (Keras 3 functional models).

Built to match the paper's appendix and the reference implementation layer for
layer, so parameter counts equal the reference's exactly:

* Convolutions are 4x4 with stride 2 and "padding 1" (Keras "same" gives the
  same output size for even inputs); the PatchGAN's two stride-1 convolutions
  pad explicitly by 1 and so shrink the map by 1 each, as in the reference.
* Bias rule: a convolution followed by batch norm has no bias; with instance
  norm or no norm it has one. The generator's first convolution follows the
  same rule (the reference builds it with `bias=use_bias` although no norm
  follows), while its final transposed convolution and the discriminator's
  first and last convolutions always have one.
* Weights N(0, 0.02); batch-norm gamma N(1, 0.02), beta 0.
* Batch norm is Keras's BatchNormalization with momentum 0.9 and epsilon
  1e-5 (PyTorch's defaults).

Every layer is Keras's own or one defined in `layers`; the networks are
what the paper describes and nothing else. The faster kernels that train
them on some machines are applied to a built network by
`pix2pix_tf.kernels`, when a run is built.

Modules: `layers` (initialisation, norms, custom layers), `generators`
(and paper-mode inference), `discriminators`, `perceptual` (frozen VGG19
for the perceptual loss), `checkpoints` (restore with every variable
matched).
"""

from pix2pix_tf.models.checkpoints import restore
from pix2pix_tf.models.discriminators import (Discriminators,
                                              build_discriminators,
                                              patchgan_discriminator,
                                              pixel_discriminator,
                                              receptive_field,
                                              receptive_fields)
from pix2pix_tf.models.generators import (build_generator,
                                          make_generate, paper_mode,
                                          resnet_generator, unet_generator)
from pix2pix_tf.models.perceptual import (VGG_LAYER_WEIGHTS, build_vgg,
                                          vgg_features)
from pix2pix_tf.models.layers import (AlwaysDropout,
                                      BatchStatisticsNormalization,
                                      ReflectionPadding2D, flat_layers,
                                      norm_layer, uses_bias)

__all__ = [
    "AlwaysDropout", "BatchStatisticsNormalization", "ReflectionPadding2D",
    "flat_layers",
    "Discriminators", "build_discriminators", "build_generator",
    "make_generate", "restore",
    "norm_layer", "paper_mode", "patchgan_discriminator",
    "pixel_discriminator", "receptive_field", "receptive_fields",
    "resnet_generator", "unet_generator", "uses_bias", "VGG_LAYER_WEIGHTS",
    "build_vgg", "vgg_features"]
