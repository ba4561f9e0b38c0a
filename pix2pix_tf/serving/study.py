"""Real-vs-fake perceptual studies, as the pix2pix paper ran them on AMT.

Two protocols share one page (pages/study.html) and one answers file format:
"2afc", the paper's, shows a real image and the image generated from the same
input (paired by file name, as `predict --paired` writes them) side by side
in random order for --seconds, then asks "which is fake?"; "single" shows one
image at a time, then asks "real or fake?". Every answer is appended to the
--answers JSON-lines file as it is given (synced before it is acknowledged):
a reload or a crash loses nothing. An answer is stored as what was judged,
keyed by the images' real paths, so a session resumed with another --seed,
or with the folders spelled differently, still counts it. The table reports
the share of generated images taken for real, with its 95% interval.
"""

import hashlib
import json
import math
import os
import random
import statistics
import threading
import time
from typing import Dict, List, Optional, Tuple

import flask

from pix2pix_tf import config as config_lib
from pix2pix_tf import errors
from pix2pix_tf import outputs
from pix2pix_tf.serving import web


class StaleSessionError(ValueError):
  """An answer from a page opened before the study was restarted in
  another order: its trial ids name other images now."""


def wilson_interval(successes: int, trials: int,
                    confidence: float = 0.95) -> Tuple[float, float]:
  """The Wilson score interval of a binomial share successes / trials.

  Not the normal ("Wald") interval: a study's shares are often near 0 or 1
  and its counts small, where Wald's collapses or leaves [0, 1]. Written
  out: no dependency of the project provides it.
  """
  if trials <= 0 or not 0 <= successes <= trials:
    raise ValueError(f"need 0 <= successes <= trials and trials > 0, got "
                     f"{successes} of {trials}.")
  z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
  share, z2 = successes / trials, z * z / trials
  center = (share + z2 / 2) / (1 + z2)
  half = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials))
  half /= 1 + z2
  # At 0 and at `trials` the bound is exactly 0 or 1 (rounding aside).
  low = 0.0 if successes == 0 else max(0.0, center - half)
  high = 1.0 if successes == trials else min(1.0, center + half)
  return low, high


def share_row(answered: int, judged_real: int) -> Dict[str, object]:
  """One row of a study's table: counts, share judged real, 95% interval."""
  return {"answered": answered, "judged_real": judged_real,
          "share_judged_real": judged_real / answered if answered else None,
          "interval": (list(wilson_interval(judged_real, answered))
                       if answered else None)}


def pair_by_name(real_files: List[str],
                 generated_files: List[str]) -> List[Tuple[str, str]]:
  """(real, generated) pairs of the files with the same stem (name without
  extension), in sorted order; ValueError naming the files that do not pair.
  """
  def by_stem(files, kind):
    stems = {}
    for f in files:
      stem = os.path.splitext(os.path.basename(f))[0]
      if stem in stems:
        raise errors.CommandError(
            f"two {kind} images are named {stem}: {stems[stem]} and {f}; "
            "keep one of them.")
      stems[stem] = f
    return stems

  real, generated = (by_stem(real_files, "real"),
                     by_stem(generated_files, "generated"))
  for kind, mine, other in (("real", real, generated),
                            ("generated", generated, real)):
    lonely = sorted(mine[s] for s in set(mine) - set(other))
    if lonely:
      raise errors.CommandError(
          f"{len(lonely)} {kind} image(s) have no namesake in the other "
          f"folder, e.g. {', '.join(lonely[:3])}. The 2afc protocol pairs a "
          "real and a generated image by file name, as `predict --paired` "
          "writes them (results/ and results/targets/); remove the unpaired "
          "files, or use --protocol=single.")
  pairs = [(real[s], generated[s]) for s in sorted(real)]
  check_distinct([r for r, _ in pairs], [g for _, g in pairs])
  return pairs


def check_distinct(real_files: List[str], generated_files: List[str]) -> None:
  """ValueError when a file is both a real and a generated image (the same
  folder named twice, a link, a hard link)."""
  def identity(path):
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino

  real = {identity(f): f for f in real_files}
  for f in generated_files:
    if identity(f) in real:
      raise errors.CommandError(
          f"{real[identity(f)]} is both a real and a generated image: "
          "--real_dir and --generated_dir must name different files.")


class Study:
  """The single-image protocol: its trials, their order, the answers file.

  A trial shows `files` (one image; two in TwoChoiceStudy), the page answers
  one of `choices`, and `answers` keeps what was judged (trial id -> value).
  ValueError names an image that is over `max_pixels` or does not decode.
  """

  protocol = "single"
  choices = ("real", "fake")

  def __init__(self, real_files: List[str], generated_files: List[str],
               answers_path: str, seconds: float = 1.0, seed: int = 0,
               max_pixels: int = config_lib.DEFAULT_MAX_PIXELS):
    # The answers never land in (or on) the images' folders.
    folders = sorted({os.path.dirname(os.path.abspath(f))
                      for f in real_files + generated_files})
    self.output, self.answers_name = outputs.file_output(
        answers_path, "answers", [outputs.Input(f, "real_dir")
                                  for f in folders], kind="study")
    self.trials = self._make_trials(real_files, generated_files,
                                    random.Random(seed))
    self.max_pixels = max_pixels
    web.check_images([f for t in self.trials for f in t["files"]], max_pixels)
    for i, trial in enumerate(self.trials):
      trial["id"] = i
    # Names this order of trials: a page opened before a restart with
    # another --seed sends the old one, and its answers are refused.
    self.token = hashlib.sha256(json.dumps(
        [[self.key(t), t.get("generated_side")] for t in self.trials]
    ).encode()).hexdigest()[:16]
    self.seconds = seconds
    self.answers_path = answers_path
    self.lock = threading.Lock()
    self.answers: Dict[int, str] = {}
    if os.path.exists(answers_path):
      self._load()

  def _make_trials(self, real_files, generated_files, rng):
    check_distinct(real_files, generated_files)
    trials = ([{"files": [f], "truth": "real"} for f in real_files] +
              [{"files": [f], "truth": "generated"} for f in generated_files])
    rng.shuffle(trials)
    return trials

  def key(self, trial: Dict[str, object]) -> Tuple[str, ...]:
    """What an answer is stored under: the real paths of the trial's images
    (the same whatever the order, the seed or the folders' spelling)."""
    return (os.path.realpath(trial["files"][0]),)

  def _record_key(self, record):
    return (os.path.realpath(record["file"]),)

  def _judge(self, trial, answer):  # pylint: disable=unused-argument
    return answer  # The answer is the judgement itself.

  def _record(self, trial, judged, answer):  # pylint: disable=unused-argument
    return {"file": self.key(trial)[0], "truth": trial["truth"],
            "answer": judged}

  def _judged_of(self, record):
    return next((c for c in self.choices if record.get("answer") == c), None)

  def _load(self):
    """Reads earlier answers, skipping lines cut short by a crash or foreign
    to the study; refuses a file of the other protocol, whose answers
    would otherwise be silently ignored."""
    by_key = {self.key(t): t["id"] for t in self.trials}
    with open(self.answers_path, "rb") as f:
      for number, line in enumerate(f, 1):
        try:
          record = json.loads(line)
          # Files written before the 2afc protocol hold single answers.
          protocol = record.get("protocol", "single")
          key = self._record_key(record) if protocol == self.protocol \
              else None
        except (ValueError, TypeError, KeyError, AttributeError):
          continue  # A torn or foreign line.
        if protocol != self.protocol and protocol in tuple(STUDIES):
          raise ValueError(
              f"{self.answers_path} holds answers of the {protocol} protocol "
              f"(line {number}): resume it with --protocol={protocol}, or "
              "name a new --answers file for this study.")
        judged = self._judged_of(record)
        if key in by_key and judged is not None:
          self.answers.setdefault(by_key[key], judged)

  def answer(self, trial_id: int, answer: str,
             session: Optional[str] = None) -> int:
    """Records one answer (the first to a trial counts) as a whole line,
    synced before it is acknowledged; returns how many trials are answered.
    ValueError for an unknown answer or id; StaleSessionError for a
    `session` token that is not this study's."""
    if session is not None and session != self.token:
      raise StaleSessionError(
          "The study was restarted in another order since this page was "
          "opened; reload the page (answers given so far are kept).")
    if not isinstance(answer, str) or answer not in self.choices:
      raise ValueError(f"answer must be one of "
                       f"{', '.join(repr(c) for c in self.choices)}.")
    if (not isinstance(trial_id, int) or isinstance(trial_id, bool) or
        not 0 <= trial_id < len(self.trials)):
      raise ValueError(f"no trial {trial_id!r}: ids are the integers 0 to "
                       f"{len(self.trials) - 1}.")
    with self.lock:
      if trial_id in self.answers:
        return len(self.answers)
      trial = self.trials[trial_id]
      judged = self._judge(trial, answer)
      record = {"protocol": self.protocol,
                **self._record(trial, judged, answer), "time": time.time()}
      self.output.append_line(self.answers_name, json.dumps(record))
      self.answers[trial_id] = judged
      return len(self.answers)

  def snapshot(self) -> Dict[int, str]:
    """A copy of the answers, taken under the lock (requests run in
    threads)."""
    with self.lock:
      return dict(self.answers)

  def _table(self, answers):
    table = {}
    for truth in ("real", "generated"):
      answered = [t["id"] for t in self.trials
                  if t["truth"] == truth and t["id"] in answers]
      table[truth] = share_row(len(answered),
                               sum(answers[i] == "real" for i in answered))
    return table

  def _shown(self, trial, judged):
    # An unanswered trial's truth, and its file names (which may tell it),
    # stay hidden: the results can be fetched before the study ends.
    return {"truth": trial.get("truth") if judged else None,
            "names": [os.path.basename(f) for f in trial["files"]]
                     if judged else None}

  def results(self) -> Dict[str, object]:
    """The table (for real and generated images: answered, judged real,
    the share judged real and its 95% interval) and every trial."""
    answers = self.snapshot()
    return {
        "protocol": self.protocol,
        "table": self._table(answers),
        "total": len(self.trials),
        "answered": len(answers),
        "trials": [{"id": t["id"], "answer": answers.get(t["id"]),
                    **self._shown(t, answers.get(t["id"]))}
                   for t in self.trials],
    }


class TwoChoiceStudy(Study):
  """The paper's two-alternative forced choice: a real and a generated
  image of the same input side by side, then "which is fake?".

  The page answers "left" or "right" (the image picked as fake); what is
  kept is which image that was ("generated" or "real"). The generated image
  is on the left in half of the trials (one more when their count is
  odd), which half drawn by the seed.
  """

  protocol = "2afc"
  choices = ("left", "right")

  def _make_trials(self, real_files, generated_files, rng):
    pairs = pair_by_name(real_files, generated_files)
    sides = [i % 2 for i in range(len(pairs))]
    rng.shuffle(pairs)
    rng.shuffle(sides)
    return [{"files": [generated, real] if side == 0 else [real, generated],
             "generated_side": side}
            for (real, generated), side in zip(pairs, sides)]

  def key(self, trial: Dict[str, object]) -> Tuple[str, ...]:
    """The real paths of the trial's real and generated image."""
    side = trial["generated_side"]
    return (os.path.realpath(trial["files"][1 - side]),
            os.path.realpath(trial["files"][side]))

  def _record_key(self, record):
    return (os.path.realpath(record["real"]),
            os.path.realpath(record["generated"]))

  def _judge(self, trial, answer):
    picked = self.choices.index(answer)
    return "generated" if picked == trial["generated_side"] else "real"

  def _record(self, trial, judged, answer):
    real, generated = self.key(trial)
    return {"real": real, "generated": generated, "judged_fake": judged,
            "picked": answer}

  def _judged_of(self, record):
    return next((j for j in ("generated", "real")
                 if record.get("judged_fake") == j), None)

  def _table(self, answers):
    # Each trial judges both images: the generated one is taken for real
    # exactly when the real one is picked as the fake.
    fooled = sum(judged == "real" for judged in answers.values())
    return {"real": share_row(len(answers), len(answers) - fooled),
            "generated": share_row(len(answers), fooled)}

  def _shown(self, trial, judged):
    return {**super()._shown(trial, judged),
            "generated_side": trial["generated_side"] if judged else None}


STUDIES = {"2afc": TwoChoiceStudy, "single": Study}


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
        "protocol": study.protocol, "session": study.token,
        "seconds": study.seconds,
        "trials": [{"id": t["id"],
                    "images": [f"/image/{t['id']}/{i}"
                               for i in range(len(t["files"]))]}
                   for t in study.trials],
        "answered": sorted(study.snapshot())})

  @server.get("/image/<int:trial_id>/<int:index>")
  def image(trial_id, index):
    if not (0 <= trial_id < len(study.trials) and
            0 <= index < len(study.trials[trial_id]["files"])):
      flask.abort(404)
    # Under a neutral name, with no dates: a file's name, format, age or
    # colour profile would tell real from generated.
    return flask.send_file(web.neutral_png(
        study.trials[trial_id]["files"][index], study.max_pixels),
        mimetype="image/png", download_name=f"{trial_id}-{index}.png",
        etag=False, last_modified=None, max_age=0)

  @server.post("/api/answer")
  def answer():
    body = web.json_object(flask.request)
    if not isinstance(body.get("session"), str):
      return flask.jsonify({"error": "An answer carries the page's session "
                                     "token (\"session\"); reload the "
                                     "page."}), 400
    try:
      answered = study.answer(body.get("id"), body.get("answer"),
                              body["session"])
    except StaleSessionError as e:
      return flask.jsonify({"error": str(e)}), 409
    except ValueError as e:
      return flask.jsonify({"error": str(e)}), 400
    return flask.jsonify({"answered": answered, "total": len(study.trials)})

  @server.get("/api/results")
  def results():
    return flask.jsonify(study.results())

  return server
