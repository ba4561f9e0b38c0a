r"""Writes docs/flags.md, the flag reference, from pix2pix_tf/config.py.

    python tools/update_flag_docs.py

Run it after adding or changing an option (a Config field or an entry of
COMMAND_OPTIONS); a test fails while docs/flags.md differs from what this
writes. The whole file is generated: edit the text here, not there.
"""

import os

from pix2pix_tf import config as config_lib

FLAG_DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "flags.md")

HEAD = """\
# Flag reference

Every flag of every command, generated from `pix2pix_tf/config.py` by `python tools/update_flag_docs.py` (edit the options there, then run the tool); back to the [README](../README.md).

## Training

Every flag of `python -m pix2pix_tf.train` (and of `pix2pix_tf.summary`, which
reads the same flagfiles). Defaults are the paper's values. Flags given after
a `--flagfile` override it.

"""

COMMANDS = """
## The other commands' flags

Generated, like the table above, from `pix2pix_tf/config.py`
(`COMMAND_OPTIONS`), where an option that several commands take is defined
once.

"""


def flag_doc() -> str:
  """The text of docs/flags.md: the training flags' table, then a table for
  each other command."""
  return (HEAD + config_lib.flag_table() + COMMANDS +
          config_lib.command_flag_reference())


def main():
  with open(FLAG_DOC, "w") as f:
    f.write(flag_doc())


if __name__ == "__main__":
  main()
