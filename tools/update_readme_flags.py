r"""Rewrites the README's generated tables: the flag tables from
pix2pix_tf/config.py, and the server's endpoint table from
pix2pix_tf/serving/routes.py.

    python tools/update_readme_flags.py

Run it after adding or changing an option (a Config field or an entry of
COMMAND_OPTIONS) or an endpoint (routes.ENDPOINTS); a test fails while the
README differs from what this writes.
"""

import os

from pix2pix_tf import config as config_lib
from pix2pix_tf.serving import routes

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
COMMANDS_HEADING = "### The other commands' flags\n"


def replace_block(text: str, start_marker: str, block: str,
                  end_marker: str) -> str:
  """`text` with what lies from `start_marker` to `end_marker` replaced by
  `block`."""
  start = text.index(start_marker)
  end = text.index(end_marker, start)
  return text[:start] + block + text[end:]


def main():
  with open(README) as f:
    text = f.read()
  header = config_lib.flag_table().split("\n", 1)[0]
  text = replace_block(text, header, config_lib.flag_table(),
                       "\n" + COMMANDS_HEADING)
  first = "`python -m pix2pix_tf.export`:"
  text = replace_block(text, first, config_lib.command_flag_reference(),
                       "\n## ")
  text = replace_block(text, routes.endpoint_table().split("\n", 1)[0],
                       routes.endpoint_table(), "\nThe version `N`")
  with open(README, "w") as f:
    f.write(text)


if __name__ == "__main__":
  main()
