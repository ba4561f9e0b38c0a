"""Package attributes imported on first use, for the subpackages' exports.

`data` and `serving` export names from modules that import TensorFlow (seconds
to import) beside modules that need only Pillow and Flask: the dataset tools,
the demo data and the study page. Resolving each exported name when it is
first used (PEP 562's module `__getattr__`) lets those start at once. Written
here because the standard library offers no such table; `importlib.util.
LazyLoader` defers a whole module, not the names a package re-exports.
"""

import importlib
from typing import Callable, Dict, Sequence, Tuple


def exports(package: str, sources: Dict[str, Sequence[str]]
            ) -> Tuple[list, Callable[[str], object], Callable[[], list]]:
  """(`__all__`, `__getattr__`, `__dir__`) for `package`, whose public names
  live in its modules as `sources` says ({module: names}); a module's own
  name gives the module."""
  home = {name: module for module, names in sources.items()
          for name in names}
  namespace = importlib.import_module(package).__dict__

  def getattr_(name: str) -> object:
    if name in home:
      value = getattr(importlib.import_module(f"{package}.{home[name]}"),
                      name)
    elif name in sources:
      value = importlib.import_module(f"{package}.{name}")
    else:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    namespace[name] = value  # Looked up once.
    return value

  def dir_() -> list:
    return sorted(set(namespace) | set(home))

  return sorted(home), getattr_, dir_
