r"""Rewrites the README's flag reference table from the training flags.

    python tools/update_readme_flags.py

Run it after adding or changing a flag in pix2pix_tf/train.py; a test checks
that every flag is in the table.
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from absl import flags  # noqa: E402

from pix2pix_tf import config as config_lib  # noqa: E402
from pix2pix_tf import train  # noqa: E402,F401  (defines the flags)

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
HEADER = "| flag | default | meaning |\n|---|---|---|\n"


def table_rows():
  rows = []
  for field in dataclasses.fields(config_lib.Config):
    flag = flags.FLAGS[field.name]
    default = flag.default
    if isinstance(default, bool):
      default = str(default).lower()
    elif default == "":
      default = '""'
    meaning = flag.help.replace("|", "\\|")
    rows.append(f"| `--{field.name}` | `{default}` | {meaning} |")
  return rows


def main():
  with open(README) as f:
    text = f.read()
  start = text.index(HEADER) + len(HEADER)
  end = text.index("\n\n", start)
  with open(README, "w") as f:
    f.write(text[:start] + "\n".join(table_rows()) + text[end:])


if __name__ == "__main__":
  main()
