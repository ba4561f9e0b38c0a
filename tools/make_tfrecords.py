r"""Packs a folder dataset into sharded TFRecords, for large datasets.

    python tools/make_tfrecords.py --data_dir=datasets/edges2handbags \
        --output=datasets/edges2handbags-tfrecords --shards=64
    python -m pix2pix_tf.train --flagfile=configs/edges2handbags.flags \
        --data_dir=datasets/edges2handbags-tfrecords

Each record holds one A|B file's bytes exactly as they are on disk (no
re-encoding, so no quality is lost) and its file name. Every split folder
(train, val, test) becomes `<split>-NNNNN-of-MMMMM.tfrecord` shards, and
`dataset.json` records the number of pairs per split. Training detects such a
folder by its `dataset.json`; across workers it shards by file.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app
from absl import flags

from pix2pix_tf import errors

flags.DEFINE_string("data_dir", None, "Folder dataset (train/, val/, test/).")
flags.DEFINE_string("output", None, "Folder to write the shards into.")
flags.DEFINE_integer("shards", 16, "Shards per split (fewer for small "
                     "splits: at most one per file).")
FLAGS = flags.FLAGS


def write_split(files, split, output, shards):
  import tensorflow as tf
  from pix2pix_tf import data as data_lib

  shards = max(1, min(shards, len(files)))
  for shard in range(shards):
    path = os.path.join(output, data_lib.shard_name(split, shard,
                                                          shards))
    with tf.io.TFRecordWriter(path) as writer:
      for name in files[shard::shards]:
        with open(name, "rb") as f:
          writer.write(data_lib.encode_record(
              f.read(), os.path.basename(name)))
  return shards


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.data_dir or not FLAGS.output:
    raise app.UsageError("--data_dir and --output are required.")
  from pix2pix_tf import data as data_lib

  splits = {split: data_lib.list_split(FLAGS.data_dir, split)
            for split in ("train", "val", "test")
            if data_lib.has_split(FLAGS.data_dir, split)}
  if "train" not in splits:
    data_lib.list_split(FLAGS.data_dir, "train")  # Names the error.
  for files in splits.values():
    data_lib.check_headers(files)
  from pix2pix_tf import outputs
  folder, name = outputs.folder_output(
      FLAGS.output, "output", [outputs.Input(FLAGS.data_dir, "data_dir")],
      kind="tfrecords")

  def build(staging):
    info = {"format": "pix2pix_tf tfrecords 1", "splits": {}}
    for split, files in splits.items():
      shards = write_split(files, split, staging, FLAGS.shards)
      info["splits"][split] = {"pairs": len(files), "shards": shards}
      print(f"{split}: {len(files)} pairs in {shards} shards")
    with open(os.path.join(staging, data_lib.TFRECORD_INFO), "w") as f:
      json.dump(info, f, indent=2)

  # Built in a temporary folder and swapped in when complete.
  output = folder.replace_folder(name, build)
  print(f"Wrote {output}")


if __name__ == "__main__":
  app.run(errors.guarded("make_tfrecords", main))
