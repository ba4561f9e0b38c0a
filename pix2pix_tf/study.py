r"""A real-vs-fake perceptual study page, as the pix2pix studies ran on AMT.

    python -m pix2pix_tf.study --real_dir=results/facades/targets \
        --generated_dir=results/facades --answers=facades_study.jsonl

Serves, on 127.0.0.1 by default, a page that shows the real and generated
images one at a time, in a fixed shuffled order, each for --seconds (the
paper's test used 1 second), then asks "real or fake?". Every answer is
appended to the --answers JSON-lines file as it is given, so a reload, a
closed tab or a crash loses nothing: the page resumes at the first
unanswered image. At the end it shows the table (share of real images judged
real, share of generated images judged real, counts) and every image with
its answer.
"""

import json
import os
import random
import sys
import tempfile
import threading
import time
from typing import Dict, List

from absl import app
from absl import flags
from absl import logging

from pix2pix_tf import web

def list_images(folder: str) -> List[str]:
  from pix2pix_tf import data as data_lib
  files = data_lib.list_images(folder)
  if not files:
    raise ValueError(f"{folder} holds no images "
                     f"({', '.join(data_lib.IMAGE_EXTENSIONS)}).")
  return files


def check_answers_file(path: str) -> None:
  """Raises ValueError unless answers can be appended to `path`, so that a
  participant's first answer is not the first to find out."""
  if os.path.isdir(path):
    raise ValueError(f"--answers={path} is a folder; give a file name, such "
                     f"as {os.path.join(path, 'answers.jsonl')}.")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise ValueError(f"--answers={path}: the folder {folder} does not exist. "
                     "Create it first.")
  try:  # A probe that changes nothing (os.access says yes to root).
    if os.path.exists(path):
      open(path, "ab").close()
    else:
      tempfile.TemporaryFile(dir=folder).close()
  except OSError as e:
    raise ValueError(f"--answers={path} cannot be written ({e.strerror}). "
                     "Choose a file in a folder you can write to.") from None


class Study:
  """The trials, their order, and the answers file."""

  def __init__(self, real_files: List[str], generated_files: List[str],
               answers_path: str, seconds: float = 1.0, seed: int = 0):
    trials = ([{"file": f, "truth": "real"} for f in real_files] +
              [{"file": f, "truth": "generated"} for f in generated_files])
    random.Random(seed).shuffle(trials)
    for i, trial in enumerate(trials):
      trial["id"] = i
    self.trials = trials
    self.seconds = seconds
    self.answers_path = answers_path
    self.lock = threading.Lock()
    self.answers: Dict[int, str] = {}
    check_answers_file(answers_path)
    if os.path.exists(answers_path):
      self._load()

  def _load(self):
    """Reads earlier answers, skipping a line cut short by a crash.

    Answers are matched to images by their real paths, so a restart that
    names the same folders differently (relative, absolute, through a
    link) continues the same session.
    """
    by_file = {os.path.realpath(t["file"]): t["id"] for t in self.trials}
    with open(self.answers_path, "rb") as f:
      for line in f:
        try:
          record = json.loads(line)
          trial_id = by_file.get(os.path.realpath(record["file"]))
        except (ValueError, TypeError, KeyError, AttributeError):
          continue  # A torn or foreign line.
        if trial_id is not None and record.get("answer") in ("real", "fake"):
          self.answers.setdefault(trial_id, record["answer"])

  def answer(self, trial_id: int, answer: str) -> None:
    """Records one answer (the first answer to a trial counts): one whole
    line, flushed to disk before the answer is acknowledged."""
    if answer not in ("real", "fake"):
      raise ValueError("answer must be 'real' or 'fake'.")
    if (not isinstance(trial_id, int) or isinstance(trial_id, bool) or
        not 0 <= trial_id < len(self.trials)):
      raise ValueError(f"no trial {trial_id!r}: ids are the integers 0 to "
                       f"{len(self.trials) - 1}.")
    with self.lock:
      if trial_id in self.answers:
        return
      trial = self.trials[trial_id]
      record = {"file": os.path.realpath(trial["file"]),
                "truth": trial["truth"], "answer": answer,
                "time": time.time()}
      line = (json.dumps(record) + "\n").encode()
      with open(self.answers_path, "ab+") as f:
        # A crash may have cut the last line short: end it first, so that
        # this answer is a line of its own (the torn one is skipped).
        if f.seek(0, os.SEEK_END) > 0:
          f.seek(-1, os.SEEK_END)
          if f.read(1) != b"\n":
            line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
      self.answers[trial_id] = answer

  def results(self) -> Dict[str, object]:
    """The table: for real and generated images, how many were judged real."""
    table = {}
    for truth in ("real", "generated"):
      answered = [t for t in self.trials
                  if t["truth"] == truth and t["id"] in self.answers]
      judged_real = sum(self.answers[t["id"]] == "real" for t in answered)
      table[truth] = {
          "answered": len(answered),
          "judged_real": judged_real,
          "share_judged_real": (judged_real / len(answered)
                                if answered else None)}
    return {
        "table": table,
        "total": len(self.trials),
        "answered": len(self.answers),
        "images": [{"id": t["id"], "name": os.path.basename(t["file"]),
                    "truth": t["truth"], "answer": self.answers.get(t["id"])}
                   for t in self.trials],
    }


def create_app(study: Study):
  """The Flask app: the page, the images, and a small JSON API."""
  import flask

  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # An answer is tiny.
  web.install(server, "An answer is a small JSON object; this body is "
                      "larger than 64 KB.")

  @server.get("/")
  def page():
    return web.page(flask, PAGE)

  @server.get("/healthz")
  def healthz():
    return flask.jsonify({"status": "ok"})

  @server.get("/api/session")
  def session():
    return flask.jsonify({
        "seconds": study.seconds,
        "trials": [{"id": t["id"], "url": f"/image/{t['id']}"}
                   for t in study.trials],
        "answered": sorted(study.answers)})

  @server.get("/image/<int:trial_id>")
  def image(trial_id):
    if not 0 <= trial_id < len(study.trials):
      flask.abort(404)
    return flask.send_file(os.path.abspath(study.trials[trial_id]["file"]))

  @server.post("/api/answer")
  def answer():
    body = web.json_object(flask.request)
    try:
      study.answer(body.get("id"), body.get("answer"))
    except ValueError as e:
      return flask.jsonify({"error": str(e)}), 400
    return flask.jsonify({"answered": len(study.answers),
                          "total": len(study.trials)})

  @server.get("/api/results")
  def results():
    return flask.jsonify(study.results())

  return server


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Real or fake?</title>
<style>
 body { font: 16px sans-serif; margin: 2em auto; max-width: 760px;
        text-align: center; color: #222; }
 #stage { height: 300px; display: flex; align-items: center;
          justify-content: center; }
 #stage img { max-height: 286px; max-width: 100%; }
 button { font-size: 18px; padding: 0.5em 1.6em; margin: 0.4em; }
 table { margin: 1em auto; border-collapse: collapse; }
 td, th { border: 1px solid #ccc; padding: 0.3em 0.8em; }
 #answers { display: flex; flex-wrap: wrap; justify-content: center; }
 #answers figure { margin: 4px; font-size: 12px; }
 #answers img { width: 96px; }
 .wrong { color: #b00; }
</style></head>
<body>
<h1>Real or fake?</h1>
<p id="instructions">Each image is shown for a moment. Then say whether it is
a real photograph or one generated by a model.</p>
<p id="progress"></p>
<div id="stage"><button id="start">Start</button></div>
<div id="question" hidden>
  <button id="real">Real</button><button id="fake">Fake</button>
</div>
<div id="results" hidden></div>
<script>
let session = null, current = null;
const $ = (id) => document.getElementById(id);

async function load() {
  session = await (await fetch("/api/session")).json();
  const left = remaining();
  if (left.length === 0) return showResults();
  $("progress").textContent =
      `${session.answered.length} of ${session.trials.length} answered`;
  $("start").textContent = session.answered.length ? "Continue" : "Start";
  $("start").onclick = next;
}

function remaining() {
  const done = new Set(session.answered);
  return session.trials.filter((t) => !done.has(t.id));
}

function next() {
  const left = remaining();
  if (left.length === 0) return showResults();
  current = left[0];
  $("question").hidden = true;
  const img = new Image();
  img.onload = () => {
    $("stage").replaceChildren(img);
    setTimeout(() => {
      $("stage").replaceChildren();
      $("question").hidden = false;
    }, session.seconds * 1000);
  };
  img.alt = "study image";
  img.src = current.url;
}

async function answer(value) {
  $("question").hidden = true;
  const reply = await fetch("/api/answer", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({id: current.id, answer: value})});
  if (!reply.ok) { $("progress").textContent = "Could not save the answer."; return; }
  session.answered.push(current.id);
  $("progress").textContent =
      `${session.answered.length} of ${session.trials.length} answered`;
  next();
}
$("real").onclick = () => answer("real");
$("fake").onclick = () => answer("fake");

function percent(share) {
  return share === null ? "-" : (100 * share).toFixed(1) + "%";
}

async function showResults() {
  const r = await (await fetch("/api/results")).json();
  $("stage").replaceChildren();
  $("question").hidden = true;
  $("instructions").hidden = true;
  $("progress").textContent = `Done: ${r.answered} of ${r.total} answered.`;
  // Built with elements and textContent, never with HTML strings: file
  // names come from the user's folders and may hold markup.
  const element = (tag, text, attributes = {}) => {
    const e = document.createElement(tag);
    if (text !== null) e.textContent = text;
    for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, v);
    return e;
  };
  const table = element("table", null, {id: "table"});
  const header = element("tr", null);
  for (const h of ["images", "answered", "judged real", "share judged real"])
    header.append(element("th", h));
  table.append(header);
  for (const truth of ["real", "generated"]) {
    const t = r.table[truth];
    const row = element("tr", null, {id: `row-${truth}`});
    for (const cell of [truth, t.answered, t.judged_real,
                        percent(t.share_judged_real)])
      row.append(element("td", String(cell)));
    table.append(row);
  }
  const figures = element("div", null, {id: "answers"});
  for (const i of r.images) {
    const judged = i.answer === "real" ? "judged real" : "judged fake";
    const wrong = (i.answer === "real") !== (i.truth === "real");
    const figure = element("figure", null);
    figure.append(element("img", null, {src: `/image/${i.id}`, alt: i.name}),
                  element("figcaption", `${i.truth}, ${judged}`,
                          {class: wrong ? "wrong" : ""}));
    figures.append(figure);
  }
  $("results").replaceChildren(table, figures);
  $("results").hidden = false;
}
load();
</script>
</body></html>
"""


def define_flags():
  """Defines this command's flags (at start-up, like export's)."""
  flags.DEFINE_string("real_dir", None, "Folder of real images.")
  flags.DEFINE_string("generated_dir", None, "Folder of generated images.")
  flags.DEFINE_string("answers", "study_answers.jsonl",
                      "JSON-lines file the answers are appended to; an "
                      "existing one resumes its session.")
  flags.DEFINE_float("seconds", 1.0, "How long each image is shown.")
  flags.DEFINE_integer("seed", 0, "Seed of the presentation order.")
  flags.DEFINE_string("host", "127.0.0.1", "Address to serve on.")
  flags.DEFINE_integer("port", 8000, "Port to serve on.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if not FLAGS.real_dir or not FLAGS.generated_dir:
    raise app.UsageError("--real_dir and --generated_dir are required.")
  logging.set_verbosity(logging.WARNING)
  try:
    study = Study(list_images(FLAGS.real_dir),
                  list_images(FLAGS.generated_dir), FLAGS.answers,
                  FLAGS.seconds, FLAGS.seed)
    server = web.make_server(FLAGS.host, FLAGS.port, create_app(study),
                             web.DEFAULT_REQUEST_TIMEOUT)
  except ValueError as e:
    sys.exit(f"pix2pix_tf.study: error: {e}")
  print(f"Study of {len(study.trials)} images ({len(study.answers)} answered "
        f"before), answers in {FLAGS.answers}: http://{FLAGS.host}:"
        f"{server.server_port}/", flush=True)
  server.serve_forever()


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
