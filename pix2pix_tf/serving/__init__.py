"""Serving: the exported SavedModel and what uses it.

* `signatures`: the SavedModel's signatures (`ServingModule`) and metadata.
* `saved_model`: export a run (atomically, only over its own export), load
  with one-line errors.
* `translation`: translate image files with an export (`predict`), at the
  training or native resolution.
* `formats`: the generator as a .keras, LiteRT or ONNX file, checked
  with its runtime.
* `tiling`: tiled translation of images too large to translate whole.
* `server`: the drawing page and TensorFlow Serving's REST API.
* `study`: the real-vs-fake perceptual study page.
* `web`: what both servers share (JSON errors, headers, the pages in
  pages/, a server that times out silent connections).
"""

from pix2pix_tf.serving.saved_model import (SAVED_MODEL_ENTRIES, ExportError,
                                            check_export_dir,
                                            check_replaceable, export,
                                            export_generator, is_saved_model,
                                            latest_checkpoint, load,
                                            load_run_config, read_metadata,
                                            resolution_of, save)
from pix2pix_tf.serving.formats import export_format, write_format
from pix2pix_tf.serving.signatures import (FORMAT, ServingModule,
                                           build_module, export_metadata)
from pix2pix_tf.serving.tiling import translate_tiled
from pix2pix_tf.serving.translation import (list_inputs, translate_files,
                                            translator)

__all__ = [
    "ExportError", "FORMAT", "SAVED_MODEL_ENTRIES", "ServingModule",
    "build_module", "check_export_dir", "check_replaceable", "export",
    "export_format", "export_generator", "export_metadata", "is_saved_model",
    "latest_checkpoint", "list_inputs", "load", "load_run_config",
    "read_metadata", "resolution_of", "save", "translate_files",
    "translate_tiled", "translator", "write_format"]
