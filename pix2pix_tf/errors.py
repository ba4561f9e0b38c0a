"""The commands' error boundary: expected failures become one line.

Bad input, a refused output, a damaged file, a full disk or a file-size
limit, and memory that does not fit are what a user can act on: each
command's entry (`options.run_command`) turns them into one sentence on
stderr that names the file or flag and says what to do, and exits 1. Any
other exception is a bug in pix2pix_tf and keeps its traceback.
"""

import errno
import functools
import sys
from typing import Callable, Sequence


class CommandError(ValueError):
  """An expected failure whose message is the sentence a user reads: the
  base of the library's errors (flags, data, exports, outputs)."""


_OUT_OF_SPACE = {errno.ENOSPC: "the disk is full",
                 errno.EDQUOT: "the disk quota is used up",
                 errno.EFBIG: "the file-size limit is reached"}
# TensorFlow's file writers report the same conditions in their text.
_OUT_OF_SPACE_TEXT = {"No space left": errno.ENOSPC,
                      "Disk quota exceeded": errno.EDQUOT,
                      "File too large": errno.EFBIG}


def out_of_space(error: BaseException) -> int:
  """The errno (ENOSPC, EDQUOT or EFBIG) when `error` says a write ran out
  of space, from an OSError or TensorFlow's error text; else 0."""
  for cause in (error, error.__cause__, error.__context__):
    if isinstance(cause, OSError) and cause.errno in _OUT_OF_SPACE:
      return cause.errno
    if cause is not None and type(cause).__module__.startswith(
        "tensorflow"):
      for text, number in _OUT_OF_SPACE_TEXT.items():
        if text in str(cause):
          return number
  return 0


def message(error: BaseException) -> str:
  """The sentence for an expected failure; '' for a bug."""
  if isinstance(error, CommandError):
    return str(error)
  number = out_of_space(error)
  if number:
    where = getattr(error, "filename", None)
    return (f"writing {where or 'an output'} failed: {_OUT_OF_SPACE[number]}"
            ". Free space (or raise the limit) and run the command again; "
            "what was on disk before is unchanged.")
  if isinstance(error, MemoryError) or (
      type(error).__name__ == "ResourceExhaustedError"
      and type(error).__module__.startswith("tensorflow")):
    return ("out of memory. Lower --batch_size, --max_pixels or the image "
            "size, or run on a machine with more memory.")
  return ""


def guarded(prog: str, main: Callable[[Sequence[str]], None]
            ) -> Callable[[Sequence[str]], None]:
  """`main` with expected failures turned into `<prog>: error: <sentence>`
  and exit status 1; Ctrl-C into a line and status 130. `prog` is what the
  user ran: `pix2pix_tf.train`, or a tool's name."""

  @functools.wraps(main)
  def run(argv: Sequence[str]) -> None:
    try:
      main(argv)
    except KeyboardInterrupt:
      print(f"{prog}: interrupted.", file=sys.stderr)
      sys.exit(130)
    except Exception as e:  # pylint: disable=broad-except
      text = message(e)
      if not text:
        raise
      print(f"{prog}: error: {text}", file=sys.stderr)
      sys.exit(1)

  return run
