"""Serving: the exported SavedModel and what uses it.

* `signatures`: the SavedModel's signatures (`ServingModule`) and metadata.
* `saved_model`: export a run (atomically, only over its own export), load
  with one-line errors.
* `translation`: translate image files with an export (`predict`), at the
  training or native resolution.
* `formats`: the generator as a .keras, LiteRT or ONNX file, checked
  with its runtime.
* `web_export`: a static folder (the drawing page, the ONNX model and ONNX
  Runtime Web) that translates in the browser.
* `translator`: an export or a run as a Python function on images
  (`pix2pix_tf.load`).
* `tiling`: tiled translation of images too large to translate whole.
* `server`: the drawing page and TensorFlow Serving's REST API.
* `study`: the real-vs-fake perceptual study page.
* `web`: what both servers share (JSON errors, headers, the pages in
  pages/, a server that times out silent connections).
"""

from pix2pix_tf import lazy

# Names resolve on first use, so that the study page, which needs only
# Pillow and Flask, starts without TensorFlow's import (see `lazy`).
__all__, __getattr__, __dir__ = lazy.exports(__name__, {
    "saved_model": ["SAVED_MODEL_ENTRIES", "ExportError", "check_export_dir",
                    "export", "export_folder", "export_generator",
                    "is_own_export",
                    "is_saved_model", "latest_checkpoint", "load_export",
                    "load_run_config", "read_metadata", "resolution_of",
                    "save", "translate_signature"],
    "formats": ["export_format", "write_format"],
    "signatures": ["FORMAT", "ServingModule", "build_module",
                   "export_metadata"],
    "tiling": ["translate_tiled"],
    "translation": ["list_inputs", "make_translate", "translate_files"],
    "translator": ["ExportTranslator", "load", "to_pil"],
    "rest": [], "server": [], "study": [], "web": [], "web_export": [],
})
