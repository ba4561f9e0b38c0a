"""pix2pix_tf: pix2pix image-to-image translation in TensorFlow and Keras 3."""

import os

# TensorFlow logs CUDA probing messages at import on machines without a GPU.
# Quiet by default; export TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
