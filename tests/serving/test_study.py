"""The perceptual studies (2afc and single), in Python and clicked through in
headless Chromium."""

import io
import json
import math
import os
import statistics

import numpy as np
import pytest
from PIL import Image

from conftest import headless_chromium, serving_in_thread
from pix2pix_tf import data as data_lib
from pix2pix_tf import outputs
from pix2pix_tf.serving import study as study_lib


def make_images(folder, count, value, extension="png"):
  folder.mkdir()
  for i in range(count):
    Image.fromarray(np.full((32, 32, 3), value + i, np.uint8)).save(
        folder / f"{i}.{extension}")
  return str(folder)


@pytest.fixture
def folders(tmp_path):
  return (make_images(tmp_path / "real", 3, 10),
          make_images(tmp_path / "generated", 3, 200))


def new_study(protocol, folders, answers, seed=0, seconds=1.0):
  return study_lib.STUDIES[protocol](
      data_lib.list_images(folders[0], required=True),
      data_lib.list_images(folders[1], required=True),
      str(answers), seconds=seconds, seed=seed)


def read_lines(answers):
  return [json.loads(l) for l in answers.read_text().splitlines()]


# --- The numbers -----------------------------------------------------------


def score_test_bounds(successes, trials, z):
  """The Wilson interval's bounds found another way: the shares p whose
  score test |k/n - p| <= z sqrt(p (1 - p) / n) just holds, by bisection."""
  share = successes / trials
  outside = lambda p: abs(share - p) > z * math.sqrt(p * (1 - p) / trials)

  def bisect(inside, out):
    for _ in range(100):
      middle = (inside + out) / 2
      inside, out = (inside, middle) if outside(middle) else (middle, out)
    return inside

  low = 0.0 if successes == 0 else bisect(share, 0.0)
  high = 1.0 if successes == trials else bisect(share, 1.0)
  return low, high


def test_wilson_interval_agrees_with_the_score_test_and_tables():
  z = statistics.NormalDist().inv_cdf(0.975)
  for successes, trials in [(0, 1), (1, 1), (0, 10), (5, 10), (3, 10),
                            (10, 10), (10, 50), (47, 50), (1, 400)]:
    got = study_lib.wilson_interval(successes, trials)
    want = score_test_bounds(successes, trials, z)
    assert got == pytest.approx(want, abs=1e-9), (successes, trials)
    assert 0 <= got[0] <= successes / trials <= got[1] <= 1
  # Published values (Newcombe 1998, Table I; and the usual 5 of 10).
  assert study_lib.wilson_interval(5, 10) == pytest.approx(
      (0.2366, 0.7634), abs=1e-4)
  assert study_lib.wilson_interval(0, 10) == pytest.approx(
      (0.0, 0.2775), abs=1e-4)
  assert study_lib.wilson_interval(81, 263) == pytest.approx(
      (0.2553, 0.3662), abs=1e-4)
  # A wider confidence gives a wider interval.
  low90, high90 = study_lib.wilson_interval(5, 10, confidence=0.9)
  assert 0.2366 < low90 and high90 < 0.7634
  with pytest.raises(ValueError):
    study_lib.wilson_interval(3, 0)


def test_pair_by_name_pairs_stems_and_names_what_does_not_pair(tmp_path):
  real = make_images(tmp_path / "real", 3, 10, "jpg")
  generated = make_images(tmp_path / "generated", 3, 200)
  pairs = study_lib.pair_by_name(data_lib.list_images(real, required=True),
                                 data_lib.list_images(generated, required=True))
  assert [(p[0].rsplit("/", 1)[1], p[1].rsplit("/", 1)[1]) for p in pairs] == [
      ("0.jpg", "0.png"), ("1.jpg", "1.png"), ("2.jpg", "2.png")]
  (tmp_path / "generated" / "2.png").rename(tmp_path / "generated" / "7.png")
  with pytest.raises(ValueError, match=r"real/2\.jpg.*--protocol=single"):
    study_lib.pair_by_name(data_lib.list_images(real, required=True),
                           data_lib.list_images(generated, required=True))
  Image.new("RGB", (4, 4)).save(tmp_path / "generated" / "0.bmp")
  with pytest.raises(ValueError, match=r"two generated images are named 0"):
    study_lib.pair_by_name(data_lib.list_images(real, required=True),
                           data_lib.list_images(generated, required=True))
  with pytest.raises(ValueError, match="both a real and a generated"):
    study_lib.pair_by_name(data_lib.list_images(real, required=True),
                           data_lib.list_images(real, required=True))


# --- The single-image protocol ----------------------------------------------


def test_single_answers_are_stored_and_tabulated(folders, tmp_path):
  answers = tmp_path / "answers.jsonl"
  study = new_study("single", folders, answers)
  assert len(study.trials) == 6
  for trial in study.trials:  # Call every generated image real.
    study.answer(trial["id"], "real" if trial["truth"] == "generated" or
                 trial["id"] % 2 else "fake")
  table = study.results()["table"]
  assert table["generated"] == {"answered": 3, "judged_real": 3,
                                "share_judged_real": 1.0,
                                "interval": pytest.approx([0.4385, 1.0],
                                                          abs=1e-4)}
  assert table["real"]["answered"] == 3
  assert {l["protocol"] for l in read_lines(answers)} == {"single"}
  old = tmp_path / "old.jsonl"
  outputs.Folder(str(tmp_path), "answers", kind="study").write_text(
      "old.jsonl", "".join(json.dumps({k: v for k, v in l.items()
                                       if k != "protocol"}) + "\n"
                           for l in read_lines(answers)))
  assert new_study("single", folders, old).answers == study.answers
  # A new session over the same file starts where this one stopped, even
  # with a line cut short by a crash, and a file written before answers
  # named their protocol counts as single.
  with open(answers, "a") as f:
    f.write('{"file": "cut sh')
  again = new_study("single", folders, answers)
  assert again.answers == study.answers
  with pytest.raises(ValueError, match="'real', 'fake'"):
    again.answer(0, "maybe")


def test_unanswered_trials_keep_their_truth_hidden(folders, tmp_path):
  for protocol, field in (("single", "truth"),
                          ("2afc", "generated_side")):
    study = new_study(protocol, folders, tmp_path / f"{protocol}.jsonl")
    study.answer(1, study.choices[0])
    shown = study.results()["trials"]
    assert shown[1][field] is not None and shown[1]["answer"] is not None
    assert shown[1]["names"]
    assert all(t[field] is None and t["answer"] is None and t["names"] is None
               for t in shown if t["id"] != 1)


def test_images_are_served_without_what_would_tell_them_apart(tmp_path):
  # A JPEG real and a PNG generated image: the page gets two PNGs under
  # neutral names, with no dates or ETags, pixel for pixel the files.
  real = make_images(tmp_path / "real", 2, 10, "jpg")
  generated = make_images(tmp_path / "generated", 2, 200)
  study = new_study("2afc", (real, generated), tmp_path / "a.jsonl")
  client = study_lib.create_app(study).test_client()
  for trial in study.trials:
    for index, path in enumerate(trial["files"]):
      reply = client.get(f"/image/{trial['id']}/{index}")
      assert reply.status_code == 200
      assert reply.headers["Content-Type"] == "image/png"
      assert "ETag" not in reply.headers
      assert "Last-Modified" not in reply.headers
      assert reply.headers["Content-Disposition"] == (
          f"inline; filename={trial['id']}-{index}.png")
      served = np.asarray(Image.open(io.BytesIO(reply.data)))
      assert np.array_equal(served, np.asarray(Image.open(path)))


def test_a_page_from_before_a_restart_in_another_order_is_refused(
    folders, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  answers = tmp_path / "answers.jsonl"
  before = new_study("2afc", folders, answers, seed=1)
  after = new_study("2afc", folders, answers, seed=2)
  assert before.token != after.token
  client = study_lib.create_app(after).test_client()
  assert client.get("/api/session").json["session"] == after.token
  for session, status in ((before.token, 409), (None, 400), (7, 400),
                          (after.token, 200)):
    reply = client.post("/api/answer", json={"id": 0, "answer": "left",
                                             "session": session})
    assert reply.status_code == status, reply.json
    assert "reload the page" in reply.json.get("error", "reload the page")
  assert reply.json == {"answered": 1, "total": len(after.trials)}
  # A stale page is told so whatever it answers.
  assert client.post("/api/answer", json={
      "id": 99, "answer": "left", "session": before.token}).status_code == 409
  assert len(read_lines(answers)) == 1  # Only the current page's answer.
  # The token names the order, not the folders' spelling: a restart with
  # the same seed and the folders named another way keeps pages working.
  relative = [os.path.relpath(f) for f in folders]
  assert new_study("2afc", relative, answers, seed=2).token == after.token


def test_a_file_cannot_be_both_real_and_generated(tmp_path):
  real = make_images(tmp_path / "real", 2, 10)
  hard, soft = tmp_path / "hard", tmp_path / "soft"
  hard.mkdir()
  soft.mkdir()
  Image.new("RGB", (4, 4)).save(hard / "0.png")
  os.link(tmp_path / "real" / "1.png", hard / "1.png")
  Image.new("RGB", (4, 4)).save(soft / "0.png")
  os.symlink(tmp_path / "real" / "1.png", soft / "1.png")
  for protocol in ("2afc", "single"):
    for generated in (real, str(hard), str(soft)):
      with pytest.raises(ValueError, match=r"real/\d\.png is both a real"):
        new_study(protocol, (real, generated), tmp_path / "a.jsonl")


def test_images_of_every_kind_are_served_as_8_bit_png(tmp_path):
  from PIL import ImageCms
  from pix2pix_tf.serving import web
  gray16 = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16
  Image.fromarray(gray16).save(tmp_path / "gray16.png")
  palette = Image.new("P", (8, 8), 1)
  palette.putpalette([0, 0, 0, 200, 10, 20] + [0] * 762)
  palette.save(tmp_path / "palette.png", transparency=0)
  profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
  Image.new("RGB", (8, 8), (9, 99, 199)).save(
      tmp_path / "profile.jpg", icc_profile=profile, quality=100)
  Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
  turned = Image.new("RGB", (8, 4), (50, 60, 70))
  exif = turned.getexif()
  exif[0x0112] = 6  # Orientation: rotate 90 degrees to view.
  turned.save(tmp_path / "turned.jpg", exif=exif)
  served = {p.stem: Image.open(web.neutral_png(str(p)))
            for p in tmp_path.iterdir()}
  assert {n: (i.format, i.mode) for n, i in served.items()} == {
      "gray16": ("PNG", "RGB"), "palette": ("PNG", "RGBA"),
      "profile": ("PNG", "RGB"), "cmyk": ("PNG", "RGB"),
      "turned": ("PNG", "RGB")}
  assert all("icc_profile" not in i.info for i in served.values())
  # 16-bit levels scaled to 8 bits, not clipped to white.
  assert np.array_equal(np.asarray(served["gray16"])[..., 0],
                        (gray16 >> 8).astype(np.uint8))
  assert np.asarray(served["palette"])[0, 0].tolist() == [200, 10, 20, 255]
  assert served["turned"].size == (4, 8)


def damage(path, how):
  """Makes the image at `path` too large for --max_pixels=1000000 (a small
  file declaring 5000x5000), truncated, empty, or no image at all."""
  if how == "too large":
    Image.new("L", (5000, 5000)).save(path, optimize=True)
  elif how == "truncated":
    Image.fromarray(np.random.RandomState(0).randint(
        0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:6000])
  else:
    path.write_bytes(b"" if how == "empty" else b"just text")


@pytest.mark.parametrize("protocol", ["2afc", "single"])
@pytest.mark.parametrize("how, fragment", [
    ("too large", "is 5000x5000 = 25000000 pixels, more than "
                  "--max_pixels=1000000. Shrink it"),
    ("truncated", "cannot be decoded (image file is truncated"),
    ("empty", "cannot be decoded (the file is empty); replace or remove it"),
    ("not an image", "cannot be decoded (no image format Pillow reads)")])
def test_every_image_is_checked_at_start_up(tmp_path, protocol, how,
                                            fragment):
  """A bad image stops the study before it starts, naming the file: never
  an error in the middle of a study (or a bomb decoded on each GET)."""
  folders = (make_images(tmp_path / "real", 3, 10),
             make_images(tmp_path / "generated", 3, 200))
  bad = tmp_path / "generated" / "1.png"
  damage(bad, how)
  with pytest.raises(ValueError) as error:
    study_lib.STUDIES[protocol](
        data_lib.list_images(folders[0], required=True),
        data_lib.list_images(folders[1], required=True),
        str(tmp_path / "answers.jsonl"), max_pixels=1_000_000)
  assert str(error.value).startswith(f"{bad} "), error.value
  assert fragment in str(error.value), error.value
  assert not (tmp_path / "answers.jsonl").exists()


def test_images_within_max_pixels_are_served(tmp_path):
  folders = (make_images(tmp_path / "real", 2, 10),
             make_images(tmp_path / "generated", 2, 200))
  study = study_lib.STUDIES["single"](
      data_lib.list_images(folders[0], required=True),
      data_lib.list_images(folders[1], required=True),
      str(tmp_path / "answers.jsonl"), max_pixels=32 * 32)
  client = study_lib.create_app(study).test_client()
  assert client.get("/image/0/0").status_code == 200
  with pytest.raises(ValueError, match="more than --max_pixels=1023"):
    study_lib.STUDIES["single"](
        data_lib.list_images(folders[0], required=True),
        data_lib.list_images(folders[1], required=True),
        str(tmp_path / "answers.jsonl"), max_pixels=32 * 32 - 1)


def test_the_protocol_flag_offers_every_study():
  from pix2pix_tf import study
  option, = [o for o in study.OPTIONS if o.name == "protocol"]
  assert option.choices == tuple(study_lib.STUDIES)
  assert option.default == "2afc"


# --- The paper's two-alternative forced choice ------------------------------


def test_2afc_pairs_balances_and_keeps_which_image_was_judged(tmp_path):
  real = make_images(tmp_path / "real", 5, 10)
  generated = make_images(tmp_path / "generated", 5, 200)
  answers = tmp_path / "answers.jsonl"
  study = new_study("2afc", (real, generated), answers, seed=1)
  assert len(study.trials) == 5
  for trial in study.trials:  # The two images of a trial share their name.
    names = [f.rsplit("/", 2)[1:] for f in trial["files"]]
    assert names[0][1] == names[1][1]
    assert names[trial["generated_side"]][0] == "generated"
    assert names[1 - trial["generated_side"]][0] == "real"
  sides = [t["generated_side"] for t in study.trials]
  assert sorted(sides) == [0, 0, 0, 1, 1]
  # Another seed: another order and other sides, the same pairs.
  other = new_study("2afc", (real, generated), tmp_path / "x.jsonl", seed=2)
  assert ([t["files"] for t in other.trials] !=
          [t["files"] for t in study.trials])
  assert ({frozenset(t["files"]) for t in other.trials} ==
          {frozenset(t["files"]) for t in study.trials})

  for count, trial in enumerate(study.trials[:4], 1):  # Left is fake.
    assert study.answer(trial["id"], "left") == count  # Answered so far.
  assert study.answer(0, "right") == 4  # The first answer counts.
  with pytest.raises(ValueError, match="'left', 'right'"):
    study.answer(4, "fake")
  fooled = sum(t["generated_side"] == 1 for t in study.trials[:4])
  table = study.results()["table"]
  assert table["generated"]["judged_real"] == fooled
  assert table["real"]["judged_real"] == 4 - fooled
  assert table["generated"]["answered"] == table["real"]["answered"] == 4
  assert table["generated"]["interval"] == pytest.approx(
      list(study_lib.wilson_interval(fooled, 4)))
  lines = read_lines(answers)
  assert [l["judged_fake"] for l in lines] == [
      "generated" if t["generated_side"] == 0 else "real"
      for t in study.trials[:4]]
  assert all(l["protocol"] == "2afc" and l["picked"] == "left"
             for l in lines)
  assert [(l["generated"], l["real"]) for l in lines] == [
      tuple(os.path.realpath(t["files"][i]) for i in (
          t["generated_side"], 1 - t["generated_side"]))
      for t in study.trials[:4]]
  assert all(l["generated"].startswith(os.path.realpath(generated)) and
             l["real"].startswith(os.path.realpath(real)) for l in lines)

  # Resumed with another seed, the answers follow their pairs.
  resumed = new_study("2afc", (real, generated), answers, seed=2)
  by_pair = lambda s: {frozenset(s.trials[i]["files"]): a
                       for i, a in s.answers.items()}
  assert by_pair(resumed) == by_pair(study) and len(resumed.answers) == 4
  assert resumed.results()["table"] == table


def test_an_answers_file_of_the_other_protocol_is_refused(folders, tmp_path):
  answers = tmp_path / "answers.jsonl"
  new_study("2afc", folders, answers).answer(0, "right")
  with pytest.raises(ValueError, match="--protocol=2afc"):
    new_study("single", folders, answers)
  single = tmp_path / "single.jsonl"
  new_study("single", folders, single).answer(0, "real")
  with pytest.raises(ValueError, match="--protocol=single"):
    new_study("2afc", folders, single)
  # Neither file was touched by the refusals.
  assert len(read_lines(answers)) == len(read_lines(single)) == 1


# --- In the browser ----------------------------------------------------------


@pytest.fixture
def served(request, folders, tmp_path):
  from werkzeug.serving import make_server
  answers = tmp_path / "answers.jsonl"
  study = new_study(request.param, folders, answers, seed=3)
  with serving_in_thread(make_server("127.0.0.1", 0,
                                     study_lib.create_app(study),
                                     threaded=True)) as server:
    yield study, f"http://127.0.0.1:{server.server_port}/", answers


def click_through(driver, answers, values, total):
  """Answers `values` in turn on the open page, and checks that each is on
  disk before the next trial."""
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait
  wait = WebDriverWait(driver, 20, poll_frequency=0.05)
  for value in values:
    before = len(read_lines(answers)) if answers.exists() else 0
    wait.until(ec.visibility_of_element_located((By.ID, value))).click()
    wait.until(lambda d: f"{before + 1} of {total} answered" in
               d.find_element(By.ID, "progress").text or
               d.find_element(By.ID, "progress").text.startswith("Done"))
    assert len(read_lines(answers)) == before + 1


def check_table(driver, rows):
  from selenium.webdriver.common.by import By
  for truth, answered, judged in rows:
    low, high = study_lib.wilson_interval(judged, answered)
    cells = driver.find_element(By.ID, f"row-{truth}").find_elements(
        By.TAG_NAME, "td")
    assert [c.text for c in cells] == [
        truth, str(answered), str(judged),
        f"{100 * judged / answered:.1f}%",
        f"{100 * low:.1f}% to {100 * high:.1f}%"]


@pytest.fixture
def page(served):
  """The study's page open in headless Chromium: (study, driver, a waiter,
  the answers file)."""
  from selenium.webdriver.support.ui import WebDriverWait
  study, url, answers = served
  driver = headless_chromium()
  try:
    driver.get(url)
    yield study, driver, WebDriverWait(driver, 20, poll_frequency=0.05), answers
  finally:
    driver.quit()


@pytest.mark.parametrize("served", ["single"], indirect=True)
@pytest.mark.slow
def test_single_page_in_a_real_browser(page):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec

  study, driver, wait, answers = page
  wait.until(ec.element_to_be_clickable((By.ID, "start"))).click()
  # The image is shown first, then hidden when the question appears.
  wait.until(lambda d: d.execute_script(
      "return document.querySelectorAll('#stage img').length") == 1)
  wait.until(ec.visibility_of_element_located((By.ID, "real")))
  assert not driver.find_elements(By.CSS_SELECTOR, "#stage img")
  click_through(driver, answers, ["real", "fake"], 6)
  # Reload midway: the two answers are kept and the page resumes.
  driver.refresh()
  wait.until(lambda d: "2 of 6 answered" in d.find_element(
      By.ID, "progress").text)
  assert driver.find_element(By.ID, "start").text == "Continue"
  assert [l["answer"] for l in read_lines(answers)] == ["real", "fake"]
  driver.find_element(By.ID, "start").click()
  click_through(driver, answers, ["real", "real", "fake", "real"], 6)
  wait.until(ec.visibility_of_element_located((By.ID, "table")))
  lines = read_lines(answers)
  assert [l["answer"] for l in lines] == ["real", "fake", "real", "real",
                                          "fake", "real"]
  # The table on the page agrees with the stored answers.
  check_table(driver, [
      (truth, sum(l["truth"] == truth for l in lines),
       sum(l["truth"] == truth and l["answer"] == "real" for l in lines))
      for truth in ("real", "generated")])
  assert len(driver.find_elements(By.CSS_SELECTOR, "#answers figure")) == 6


@pytest.mark.parametrize("served", ["2afc"], indirect=True)
@pytest.mark.slow
def test_2afc_page_in_a_real_browser(page):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec

  study, driver, wait, answers = page
  assert wait.until(lambda d: d.find_element(By.ID, "title").text) == \
      "Which is fake?"
  wait.until(ec.element_to_be_clickable((By.ID, "start"))).click()
  # Both images of the pair are on screen together, side by side.
  shown = wait.until(lambda d: d.execute_script(
      "const i = document.querySelectorAll('#stage img');"
      "return i.length === 2 && i[0].complete && i[1].complete ? "
      "[...i].map((e) => [e.getBoundingClientRect().left, "
      "e.getBoundingClientRect().right, e.getBoundingClientRect().top, "
      "e.src]) : null;"))
  assert shown[0][1] <= shown[1][0] and shown[0][2] == shown[1][2]
  first = study.trials[0]
  assert [s[3].split("/", 3)[3] for s in shown] == [
      f"image/{first['id']}/0", f"image/{first['id']}/1"]
  # Then they are hidden and the question appears.
  wait.until(ec.visibility_of_element_located((By.ID, "left")))
  assert not driver.find_elements(By.CSS_SELECTOR, "#stage img")
  click_through(driver, answers, ["left"], 3)
  driver.refresh()
  wait.until(lambda d: "1 of 3 answered" in d.find_element(
      By.ID, "progress").text)
  driver.find_element(By.ID, "start").click()
  click_through(driver, answers, ["right", "left"], 3)
  wait.until(ec.visibility_of_element_located((By.ID, "table")))
  lines = read_lines(answers)
  assert [l["picked"] for l in lines] == ["left", "right", "left"]
  want = ["generated" if (t["generated_side"] == 0) == (p == "left")
          else "real" for t, p in zip(study.trials, ["left", "right",
                                                       "left"])]
  assert [l["judged_fake"] for l in lines] == want
  fooled = want.count("real")
  check_table(driver, [("real", 3, 3 - fooled), ("generated", 3, fooled)])
  assert "taken for the real one" in driver.find_element(
      By.CSS_SELECTOR, "#table caption").text
  figures = driver.find_elements(By.CSS_SELECTOR, "#answers figure")
  assert [len(f.find_elements(By.TAG_NAME, "img")) for f in figures] == \
      [2, 2, 2]
  assert not driver.find_element(By.ID, "stage").is_displayed()


def test_the_study_reads_images_past_pillows_limit_up_to_max_pixels(
    tmp_path, monkeypatch):
  """--max_pixels is the one limit: an image under it is read even past
  Pillow's own bomb limit, and one over it is refused naming --max_pixels,
  never with Pillow's message."""
  from pix2pix_tf.serving import web
  path = tmp_path / "a.png"
  Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
  assert web.neutral_image(str(path), 1600).size == (40, 40)
  with pytest.raises(ValueError, match="--max_pixels=1599") as error:
    web.neutral_image(str(path), 1599)
  assert "decompression bomb" not in str(error.value)
