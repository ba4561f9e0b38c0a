"""Data: image pairs from files to batches.

Modules, in the order a pair travels:

* `images`: image files as Pillow reads them (listing, names, the declared
  size, `read_rgb`), for the dataset tools and predict.
* `sources`: a split of a folder or of sharded TFRecords (`open_split`), and
  the checks that name a bad file before training.
* `decoding`: the one decoding rule (Exif orientation, alpha on white,
  16-bit), in TensorFlow, and the declared size before decoding.
* `transforms`: `load_pair`, the joint jitter of both halves, `normalize`.
* `pipeline`: `make_dataset`, the tf.data pipeline for training and
  evaluation.
* `palettes`: label-map colours (cityscapes, facades, or a file).
* `demo`: the procedural demo facades; `building`: datasets from your own
  images (combine, colorize, edges, split); `download`: the standard
  datasets.
"""

from pix2pix_tf.data.decoding import (TENSORFLOW_FORMATS, check_encoded_pixels,
                                      decode_image, encoded_pixels,
                                      exif_orientation, is_16_bit_png)
from pix2pix_tf.data.images import (IMAGE_EXTENSIONS, PAIR_EXTENSIONS,
                                    TooLargeError, check_output_file,
                                    check_output_folder, check_pixels,
                                    check_size, declared_pixels,
                                    list_images, png_names, read_rgb)
from pix2pix_tf.data.palettes import Palette, load_palette
from pix2pix_tf.data.pipeline import cache_path, make_dataset
from pix2pix_tf.data.sources import (STANDARD_DATASETS, TFRECORD_INFO,
                                     DatasetError, Split, check_headers,
                                     encode_record, find_undecodable,
                                     has_split, is_tfrecord_dataset,
                                     list_split, named_contents, open_split,
                                     check_pair_sizes, parse_record,
                                     shard_name, split_exists)
from pix2pix_tf.data.transforms import (crop_to, fit_to_multiple,
                                        implied_resolution, load_pair,
                                        normalize, random_jitter, resize,
                                        scaled_size, split_pair,
                                        through_padding, to_uint8)

__all__ = [
    "DatasetError", "IMAGE_EXTENSIONS", "PAIR_EXTENSIONS", "Palette",
    "STANDARD_DATASETS", "Split", "TENSORFLOW_FORMATS", "TFRECORD_INFO",
    "TooLargeError", "cache_path", "check_encoded_pixels", "check_headers",
    "check_pair_sizes",
    "check_output_file", "check_output_folder", "check_pixels",
    "check_size", "crop_to", "declared_pixels",
    "decode_image", "encode_record", "encoded_pixels", "exif_orientation",
    "find_undecodable", "fit_to_multiple", "has_split", "implied_resolution",
    "is_16_bit_png", "is_tfrecord_dataset", "list_images",
    "list_split", "load_pair", "load_palette", "make_dataset",
    "named_contents", "normalize", "open_split", "parse_record",
    "png_names", "random_jitter", "read_rgb", "resize", "scaled_size",
    "shard_name",
    "split_exists", "split_pair", "through_padding", "to_uint8"]
