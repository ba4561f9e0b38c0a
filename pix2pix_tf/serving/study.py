"""A real-vs-fake perceptual study page, as the pix2pix studies ran on AMT.

Serves a page (pages/study.html) that shows the real and generated images
one at a time, in a fixed shuffled order, each for --seconds (the
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
import threading
import time
from typing import Dict, List

import flask

from pix2pix_tf import data as data_lib
from pix2pix_tf.serving import web


def list_images(folder: str) -> List[str]:
  """The images of a study folder; ValueError when there are none."""
  files = data_lib.list_images(folder)
  if not files:
    raise ValueError(f"{folder} holds no images "
                     f"({', '.join(data_lib.IMAGE_EXTENSIONS)}).")
  return files


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
    data_lib.check_output_file(answers_path, "answers", "answers.jsonl")
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


def create_app(study: Study) -> flask.Flask:
  """The Flask app: the page, the images, and a small JSON API."""

  server = flask.Flask(__name__)
  server.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # An answer is tiny.
  web.install(server, "An answer is a small JSON object; this body is "
                      "larger than 64 KB.")

  @server.get("/")
  def page():
    return web.page(web.read_page("study.html"))

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
