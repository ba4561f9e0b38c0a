r"""Rewrites the README's flag reference table from Config's fields.

    python tools/update_readme_flags.py

Run it after adding or changing an option in pix2pix_tf/config.py; a test
fails while the README's table differs from the one generated here.
"""

import os

from pix2pix_tf import config as config_lib

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def main():
  with open(README) as f:
    text = f.read()
  header = config_lib.flag_table().split("\n", 1)[0]
  start = text.index(header)
  end = text.index("\n\n", start) + 1
  with open(README, "w") as f:
    f.write(text[:start] + config_lib.flag_table() + text[end:])


if __name__ == "__main__":
  main()
