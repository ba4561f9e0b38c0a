r"""Writes the generated parts of docs/: flags.md, the flag reference, from
pix2pix_tf/config.py and each command's OPTIONS, and rest_api.md's endpoint
table from pix2pix_tf/serving/routes.py.

    python tools/update_docs.py

Run it after adding or changing an option (a Config field or an entry of a
command's OPTIONS) or an endpoint (routes.ENDPOINTS); a test fails while the
docs differ from what this writes. flags.md is generated whole: edit its
text here, not there.
"""

import importlib
import os

from pix2pix_tf import config as config_lib
from pix2pix_tf.serving import routes

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")
FLAG_DOC = os.path.join(DOCS, "flags.md")
REST_DOC = os.path.join(DOCS, "rest_api.md")

HEAD = """\
# Flag reference

Every flag of every command, generated from `pix2pix_tf/config.py` by `python tools/update_docs.py` (edit the options there, then run the tool); back to the [README](../README.md).

## Training

Every flag of `python -m pix2pix_tf.train` (and of `pix2pix_tf.summary`, which
reads the same flagfiles). Defaults are the paper's values. Flags given after
a `--flagfile` override it.

"""

OTHER_COMMANDS = """
## The other commands' flags

Generated, like the table above, from each command's `OPTIONS` (in
`pix2pix_tf/<command>.py`; an option that several commands take is defined
once, in `pix2pix_tf/config.py`).

"""

# The commands with options of their own, in the order flags.md lists them.
COMMANDS = ("export", "predict", "evaluate", "serve", "convert", "study",
            "datasets", "summary")


def command_options() -> dict:
  """Each command's OPTIONS, by command name."""
  return {command: importlib.import_module(f"pix2pix_tf.{command}").OPTIONS
          for command in COMMANDS}


def command_flag_reference() -> str:
  """docs/flags.md's section of the other commands' flags: a table each."""
  return "\n".join(f"`python -m pix2pix_tf.{command}`:\n\n"
                   + config_lib.command_flag_table(options)
                   for command, options in command_options().items())


def flag_doc() -> str:
  """The text of docs/flags.md: the training flags' table, then a table for
  each other command."""
  return (HEAD + config_lib.flag_table() + OTHER_COMMANDS +
          command_flag_reference())


def with_endpoint_table(text: str) -> str:
  """`text` (rest_api.md) with its endpoint table replaced by
  routes.endpoint_table()."""
  table = routes.endpoint_table()
  start = text.index(table.split("\n", 1)[0])
  end = text.index("\n\n", start) + 1
  return text[:start] + table + text[end:]


def main():
  with open(FLAG_DOC, "w") as f:
    f.write(flag_doc())
  with open(REST_DOC) as f:
    text = f.read()
  with open(REST_DOC, "w") as f:
    f.write(with_endpoint_table(text))


if __name__ == "__main__":
  main()
