"""Data: image pairs from files to batches.

Modules, in the order a pair travels:

* `images`: image files as Pillow reads them (listing, names, the declared
  size, `read_rgb`), for the dataset tools and predict.
* `sources`: a split of a folder or of sharded TFRecords (`open_split`), and
  the checks that name a bad file before training.
* `headers`: what an encoded image's header declares (its pixels, against
  --max_pixels), read in TensorFlow before decoding.
* `decoding`: the one decoding rule (Exif orientation, alpha on white,
  16-bit), in TensorFlow.
* `transforms`: `load_pair`, the joint jitter of both halves, `normalize`.
* `pipeline`: `make_dataset`, the tf.data pipeline for training and
  evaluation.
* `palettes`: label-map colours (cityscapes, facades, or a file).
* `demo`: the procedural demo facades; `building`: datasets from your own
  images (combine, colorize, edges, split); `download`: the standard
  datasets.
"""

from pix2pix_tf import lazy

# Names resolve on first use, so that the dataset tools and the demo data,
# which need only Pillow, start without TensorFlow's import (see `lazy`).
__all__, __getattr__, __dir__ = lazy.exports(__name__, {
    "decoding": ["TENSORFLOW_FORMATS", "decode_image", "exif_orientation"],
    "headers": ["check_encoded_pixels", "encoded_pixels", "is_16_bit_png",
                "is_animated_webp", "is_encoded_image"],
    "images": ["Declared", "IMAGE_EXTENSIONS", "PAIR_EXTENSIONS",
               "TooLargeError", "UnsupportedImageError", "check_pixels",
               "check_size", "is_unread_bmp", "list_images", "open_image",
               "png_names", "read_rgb"],
    "palettes": ["Palette", "load_palette"],
    "pipeline": ["cache_path", "make_dataset"],
    "sources": ["STANDARD_DATASETS", "TFRECORD_INFO", "DatasetError",
                "Split", "check_headers", "check_pair_sizes",
                "encode_record", "find_undecodable", "has_split",
                "is_tfrecord_dataset", "list_split", "named_contents",
                "open_split", "parse_record", "shard_name", "split_exists"],
    "transforms": ["crop_to", "fit_to_multiple", "implied_resolution",
                   "load_pair", "normalize", "random_jitter", "resize",
                   "scaled_size", "split_pair", "through_padding",
                   "to_uint8"],
    "building": [], "demo": [], "download": [],
})
