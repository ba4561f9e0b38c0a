"""The package's layout is its architecture: checked by reading its source.

Commands on top (flags and one call each), then training, evaluation,
serving and kernels, then models, data and options, then config; the
library never imports a
command or reaches upwards, imports at module level (but for optional
dependencies), and keeps modules and functions short.
"""

import ast
import glob
import os
import re

import pytest

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "pix2pix_tf")
COMMANDS = ("train", "export", "predict", "evaluate", "serve", "study",
            "datasets", "summary", "convert", "segmenter")
# Each library part may import only parts of a lower rank (and itself).
RANKS = {"errors": 0, "lazy": 0, "temporaries": 0, "architectures": 0,
         "flagfiles": 0, "outputs": 1, "config": 1, "options": 2,
         "pretrained": 2, "models": 2, "data": 2, "kernels": 3, "serving": 3, "evaluation": 4,
         "training": 5}
SUBPACKAGES = ("models", "data", "kernels", "training", "evaluation",
               "serving")
# Imported where they are used: large, and needed by one feature each.
OPTIONAL = {"cv2", "onnx", "onnxruntime", "ai_edge_litert"}
MAX_MODULE_LINES = 400
# config.py is the training options' table, each option with its help text,
# from which the flags and docs/flags.md's tables are generated.
LONGER_MODULES = {"config.py": 700}
MAX_FUNCTION_LINES = 60


def modules():
  """(part, path) of every module: part is the command's name, "config",
  "__init__" or the subpackage."""
  found = []
  for folder, _, names in os.walk(PACKAGE):
    for name in sorted(names):
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      relative = os.path.relpath(path, PACKAGE).split(os.sep)
      found.append((relative[0][:-3] if len(relative) == 1 else relative[0],
                    path))
  return found


def imported_parts(tree):
  """The pix2pix_tf parts a module imports: (part, line, at module level)."""
  top_level = {id(node) for node in tree.body}
  parts = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module == "pix2pix_tf" or node.module.startswith("pix2pix_tf.")):
      names = (node.module.split(".")[1:2] or
               [alias.name for alias in node.names])
      parts += [(name, node.lineno, id(node) in top_level) for name in names]
    elif isinstance(node, ast.Import):
      parts += [(alias.name.split(".")[1], node.lineno, id(node) in top_level)
                for alias in node.names
                if alias.name.startswith("pix2pix_tf.")]
  return parts


LIBRARY = [(part, path) for part, path in modules()
           if part in RANKS and not path.endswith("__init__.py") or
           part in SUBPACKAGES]


@pytest.mark.parametrize("part, path", LIBRARY,
                         ids=[os.path.relpath(p, PACKAGE) for _, p in LIBRARY])
def test_the_library_imports_downwards_only(part, path):
  tree = ast.parse(open(path).read())
  for imported, line, _ in imported_parts(tree):
    where = f"{os.path.relpath(path, PACKAGE)}:{line} imports {imported}"
    assert imported not in COMMANDS, where + ", a command"
    if imported != part:
      assert imported in RANKS, where
      assert RANKS[imported] < RANKS[part], where + ", which is not below it"


@pytest.mark.parametrize("part, path", LIBRARY,
                         ids=[os.path.relpath(p, PACKAGE) for _, p in LIBRARY])
def test_the_library_imports_at_module_level(part, path):
  """No import inside a function (to dodge a flag definition or a cycle),
  but for the optional dependencies."""
  del part
  tree = ast.parse(open(path).read())
  for function in ast.walk(tree):
    if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
      continue
    for node in ast.walk(function):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module]
      else:
        continue
      assert set(names) <= OPTIONAL, (
          f"{os.path.relpath(path, PACKAGE)}:{node.lineno} imports "
          f"{', '.join(names)} inside {function.name}")


@pytest.mark.parametrize("part, path", modules(),
                         ids=[os.path.relpath(p, PACKAGE)
                              for _, p in modules()])
def test_modules_and_functions_are_short(part, path):
  source = open(path).read()
  name = os.path.relpath(path, PACKAGE)
  assert len(source.splitlines()) <= LONGER_MODULES.get(
      name, MAX_MODULE_LINES), name
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      length = node.end_lineno - node.lineno + 1
      assert length <= MAX_FUNCTION_LINES, (
          f"{name}: {node.name} is {length} lines")


# Methods whose contract is Keras's (documented there), not this package's.
KERAS_OVERRIDES = {"call", "compute_output_shape", "get_config", "build"}


def public_functions(tree):
  """Module-level public functions, and the public methods (with __init__)
  of public classes."""
  for node in tree.body:
    if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
      yield node.name, node
    elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
      for method in node.body:
        if isinstance(method, ast.FunctionDef) and (
            method.name == "__init__" or not method.name.startswith("_")
            ) and method.name not in KERAS_OVERRIDES:
          yield f"{node.name}.{method.name}", method


@pytest.mark.parametrize("part, path", LIBRARY,
                         ids=[os.path.relpath(p, PACKAGE) for _, p in LIBRARY])
def test_public_functions_have_type_hints_and_docstrings(part, path):
  name = os.path.relpath(path, PACKAGE)
  for qualified, function in public_functions(ast.parse(open(path).read())):
    arguments = [a for a in function.args.posonlyargs + function.args.args +
                 function.args.kwonlyargs if a.arg not in ("self", "cls")]
    unannotated = [a.arg for a in arguments if a.annotation is None]
    assert not unannotated, f"{name}: {qualified}({', '.join(unannotated)})"
    if function.name != "__init__":
      assert function.returns is not None, f"{name}: {qualified} -> ?"
      assert ast.get_docstring(function), f"{name}: {qualified} has no doc"


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_hold_flags_and_one_call(command):
  """A command defines no classes and only its flags, `main` and `run`
  (and small helpers that check flags)."""
  tree = ast.parse(open(os.path.join(PACKAGE, f"{command}.py")).read())
  classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
  assert not classes, f"{command}.py defines {classes}"
  functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
  assert {"main", "run"} <= {f.name for f in functions}
  for function in functions:
    assert function.end_lineno - function.lineno < 60, function.name


@pytest.mark.parametrize("subpackage", SUBPACKAGES)
def test_each_subpackage_says_its_role_and_exports_its_api(subpackage):
  import importlib
  module = importlib.import_module(f"pix2pix_tf.{subpackage}")
  assert module.__doc__ and len(module.__doc__.split()) > 10
  assert module.__all__
  for name in module.__all__:
    assert hasattr(module, name), f"{subpackage}.{name}"


def test_subpackage_names_resolve_on_first_use():
  """data's and serving's names come from their modules when first used:
  the same objects, listed by dir(), and a clear AttributeError for a name
  neither has."""
  import subprocess
  import sys
  code = ("import sys; from pix2pix_tf import data, serving; "
          "print('tensorflow' in sys.modules); "
          "from pix2pix_tf.data import pipeline; "
          "print(data.make_dataset is pipeline.make_dataset, "
          "'make_dataset' in dir(data), 'tensorflow' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=300)
  assert result.stdout.split() == ["False", "True", "True", "True"], (
      result.stderr)
  from pix2pix_tf import data
  with pytest.raises(AttributeError, match="'pix2pix_tf.data' has no "
                     "attribute 'make_datasets'"):
    data.make_datasets  # pylint: disable=pointless-statement


def test_importing_the_package_changes_nothing(monkeypatch):
  """`import pix2pix_tf` sets no environment variable (the commands quiet
  TensorFlow's log themselves)."""
  import importlib
  import sys
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  saved = sys.modules.pop("pix2pix_tf")
  try:
    importlib.import_module("pix2pix_tf")
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
  finally:
    sys.modules["pix2pix_tf"] = saved


def module_aliases(tree):
  """{local name: module name} of the pix2pix_tf modules a file imports."""
  import importlib
  aliases = {}
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and node.module and (
        node.module.startswith("pix2pix_tf")):
      for alias in node.names:
        name = f"{node.module}.{alias.name}"
        try:
          importlib.import_module(name)
        except ImportError:
          continue  # A class or function, not a module.
        aliases[alias.asname or alias.name] = name
  return aliases


SOURCES = [(part, path) for part, path in modules()] + [
    ("", os.path.join(folder, name))
    for top in ("tools", "tests")
    for folder, _, names in os.walk(os.path.join(ROOT, top))
    for name in sorted(names) if name.endswith(".py")]


# The library, the tools and the scripts among the tests (not the tests and
# conftest, which puts tools/ on the path for them).
SCRIPTS = [(part, path) for part, path in SOURCES
           if not os.path.relpath(path, ROOT).startswith("tests") or
           not os.path.basename(path).startswith(("test_", "conftest"))]


@pytest.mark.parametrize("part, path", SCRIPTS,
                         ids=[os.path.relpath(p, ROOT) for _, p in SCRIPTS])
def test_the_library_and_the_scripts_never_edit_sys_path(part, path):
  """They import the package as installed, and a script the modules beside
  it (its own folder is first on the path when it runs)."""
  del part
  edits = [node.lineno for node in ast.walk(ast.parse(open(path).read()))
           if isinstance(node, ast.Attribute) and node.attr == "path"
           and isinstance(node.value, ast.Name) and node.value.id == "sys"]
  assert not edits, f"{os.path.relpath(path, ROOT)}:{edits}: sys.path"


@pytest.mark.parametrize("part, path", SOURCES,
                         ids=[os.path.relpath(p, ROOT) for _, p in SOURCES])
def test_every_name_used_from_a_module_exists(part, path):
  """`module.name` in the package, tools and tests (for modules imported at
  the top of the file) names something the module has: a name
  that moved (a function now in another module) fails here, not at the
  first run that reaches it."""
  import importlib
  del part
  tree = ast.parse(open(path).read())
  aliases = module_aliases(tree)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases):
      module = importlib.import_module(aliases[node.value.id])
      assert hasattr(module, node.attr), (
          f"{os.path.relpath(path, ROOT)}:{node.lineno}: "
          f"{aliases[node.value.id]} has no {node.attr}")


# Names that two library modules define for different things, each read
# with its module's name (never imported bare): each server module's Flask
# app factory (Flask's convention), and the FID network module's verbs
# (fid_inception.build, .load, .preprocess: the Inception network, its
# weights, its input) beside a run's state and step (training.build), an
# export as a translator (translator.load, the package's pix2pix_tf.load)
# and --preprocess (transforms.preprocess).
SAME_NAME_DIFFERENT_THINGS = {
    "create_app": {"serving/server.py", "serving/study.py"},
    "build": {"evaluation/fid_inception.py", "training/run.py"},
    "load": {"evaluation/fid_inception.py", "serving/translator.py"},
    "preprocess": {"evaluation/fid_inception.py", "data/transforms.py"},
}


def top_level_names(tree):
  """The public names a module defines at its top level: functions,
  classes and assigned constants (an alias of another module's name
  counts: it is a second name for one thing)."""
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
      names = [node.name]
    elif isinstance(node, ast.Assign):
      names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target,
                                                         ast.Name):
      names = [node.target.id]
    else:
      continue
    yield from (name for name in names if not name.startswith("_"))


def test_one_name_per_thing_in_the_library():
  """No two library modules define the same public name (two
  `list_images`, two `Progress`, a table copied under a second name), but
  for the few above that name different things."""
  defined = {}
  for _, path in LIBRARY:
    for name in top_level_names(ast.parse(open(path).read())):
      defined.setdefault(name, set()).add(
          os.path.relpath(path, PACKAGE).replace(os.sep, "/"))
  twice = {name: paths for name, paths in defined.items() if len(paths) > 1}
  assert twice == SAME_NAME_DIFFERENT_THINGS, (
      "one name, several definitions: " + "; ".join(
          f"{name} in {', '.join(sorted(paths))}"
          for name, paths in sorted(twice.items())
          if SAME_NAME_DIFFERENT_THINGS.get(name) != paths))


def second_names(tree):
  """A module's public aliases: a constant that is another's name
  (`X = config_lib.X`), and a function that only passes its arguments on
  to another function (`def f(config): return g(config)`)."""
  for node in tree.body:
    if isinstance(node, ast.Assign) and isinstance(
        node.value, (ast.Name, ast.Attribute)):
      yield from (f"{t.id} = {ast.unparse(node.value)}" for t in node.targets
                  if isinstance(t, ast.Name) and not t.id.startswith("_"))
    elif isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
      body = node.body[1:] if ast.get_docstring(node) else node.body
      call = body[0].value if len(body) == 1 and isinstance(
          body[0], ast.Return) else None
      passed = [a.arg for a in node.args.args]
      if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
          and call.func.id[0].islower() and not call.keywords
          and [ast.unparse(a) for a in call.args] == passed):
        yield f"{node.name} = {call.func.id}"


@pytest.mark.parametrize("part, path", LIBRARY,
                         ids=[os.path.relpath(p, PACKAGE) for _, p in LIBRARY])
def test_no_second_name_for_one_thing(part, path):
  """A table or function is used by its one name, not re-exported under
  another (a `build_discriminators` beside `build_discriminator`)."""
  del part
  aliases = list(second_names(ast.parse(open(path).read())))
  assert not aliases, f"{os.path.relpath(path, PACKAGE)}: {aliases}"


TOOLS = sorted(glob.glob(os.path.join(ROOT, "tools", "*.py")))


def code_strings(path):
  """The string literals of a module but its docstrings, split in words
  (a name inside a flag string or an f-string counts)."""
  tree = ast.parse(open(path).read())
  docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                     ast.AsyncFunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)}
  return [word for node in ast.walk(tree)
          if isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings
          for word in re.findall(r"\w+", node.value)]


def loss_words(path):
  """The words of a module's code strings that look like a loss's name
  (`gen_*`, `disc_*`; a bare prefix too)."""
  return sorted({word for word in code_strings(path)
                 if re.fullmatch(r"(gen|disc)_\w*", word)})


def test_a_new_generator_is_one_row_of_the_table():
  """The --generator values are written only in architectures.py (the
  GENERATORS table, and PAPER_GENERATOR, the default and the reference's
  published network), which the flag's choices, help and default, config's
  depth, convert --pretrained and the models' builders read; not even
  inside a flag string. A family ("unet", "resnet": the key of its
  builder) is not a value's name."""
  from pix2pix_tf import architectures
  names = set(architectures.GENERATORS) - {
      generator.family for generator in architectures.GENERATORS.values()}
  for path in [path for _, path in modules()] + TOOLS:
    relative = os.path.relpath(path, ROOT)
    if relative == os.path.join("pix2pix_tf", "architectures.py"):
      continue
    written = [word for word in code_strings(path) if word in names]
    assert not written, (f"{relative} names generators {written}: read "
                         "them from architectures")


def mentions(tree, name):
  """The function (innermost def, async or not; "<module>" outside any)
  around each mention of `name` in `tree`: a call, a reference that makes
  an alias, an attribute or an import."""
  found = []

  def visit(node, function):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      function = node.name
    if (getattr(node, "attr", None) == name or getattr(node, "id", None) ==
        name or (isinstance(node, ast.alias) and
                 node.name.rsplit(".", 1)[-1] == name)):
      found.append(function)
    for child in ast.iter_child_nodes(node):
      visit(child, function)

  visit(tree, "<module>")
  return found


def test_mentions_sees_aliases_imports_and_async_functions():
  tree = ast.parse("from pix2pix_tf.training.losses import build_objective\n"
                   "async def later(config):\n"
                   "  build = losses.build_objective\n"
                   "  return build(config) or build_objective(config)\n")
  assert mentions(tree, "build_objective") == ["<module>", "later", "later"]


def test_a_new_loss_is_one_function_and_one_line_of_the_objective():
  """A loss term's weight (a `lambda_*` option) is read, and a term named
  (`gen_*`, `disc_*`), only in training/losses.py, where build_objective
  lists the terms: the step, the logging, the state and the checks use
  the objective it builds, so adding a term touches no other module. It is
  built once for a run's state (create_state); check_run lists its terms'
  files before the state is built. The tools read a loss by its name in
  the objective or a constant of losses.py, never by writing the name."""
  from pix2pix_tf import config as config_lib
  weights = {field.name for _, field in config_lib.option_fields()
             if field.name.startswith("lambda_")}
  builders = set()
  for _, path in LIBRARY:
    relative = os.path.relpath(path, PACKAGE)
    tree = ast.parse(open(path).read())
    builders.update((relative, function)
                    for function in mentions(tree, "build_objective"))
    if relative in (os.path.join("training", "losses.py"), "config.py"):
      continue
    read = sorted({node.attr for node in ast.walk(tree)
                   if isinstance(node, ast.Attribute)
                   and node.attr in weights})
    named = loss_words(path)
    assert not read and not named, (
        f"{relative} reads {read} and names {named}: go through "
        "losses.build_objective")
  assert builders == {(os.path.join("training", "state.py"), "create_state"),
                      (os.path.join("training", "run.py"), "check_run")
                      }, builders
  for path in TOOLS:
    written = loss_words(path)
    assert not written, (
        f"tools/{os.path.basename(path)} writes {written}: read the names "
        "from the objective or a constant of training/losses.py")
