"""pix2pix_tf: pix2pix image-to-image translation in TensorFlow and Keras 3."""

import os

# Hide TensorFlow's C++ errors about missing CUDA drivers on CPU-only
# machines (set TF_CPP_MIN_LOG_LEVEL=0 to see every message).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
