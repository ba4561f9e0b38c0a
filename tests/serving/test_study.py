"""The real-vs-fake study page, clicked through in headless Chromium."""

import json
import threading

import numpy as np
import pytest
from PIL import Image

from browser import chromium_driver
from pix2pix_tf.serving import study as study_lib


def make_images(folder, count, value):
  folder.mkdir()
  for i in range(count):
    Image.fromarray(np.full((32, 32, 3), value + i, np.uint8)).save(
        folder / f"{i}.png")
  return str(folder)


@pytest.fixture
def folders(tmp_path):
  return (make_images(tmp_path / "real", 3, 10),
          make_images(tmp_path / "generated", 3, 200))


@pytest.fixture
def served(folders, tmp_path):
  from werkzeug.serving import make_server
  answers = tmp_path / "answers.jsonl"
  study = study_lib.Study(study_lib.list_images(folders[0]),
                          study_lib.list_images(folders[1]), str(answers),
                          seconds=1.0, seed=3)
  server = make_server("127.0.0.1", 0, study_lib.create_app(study),
                       threaded=True)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield study, f"http://127.0.0.1:{server.server_port}/", answers
  server.shutdown()


def test_study_answers_are_stored_and_tabulated(folders, tmp_path):
  answers = tmp_path / "answers.jsonl"
  study = study_lib.Study(study_lib.list_images(folders[0]),
                          study_lib.list_images(folders[1]), str(answers))
  assert len(study.trials) == 6
  for trial in study.trials:  # Call every generated image real.
    study.answer(trial["id"], "real" if trial["truth"] == "generated" or
                 trial["id"] % 2 else "fake")
  table = study.results()["table"]
  assert table["generated"] == {"answered": 3, "judged_real": 3,
                                "share_judged_real": 1.0}
  assert table["real"]["answered"] == 3
  # A new session over the same file starts where this one stopped, even
  # with a line cut short by a crash.
  with open(answers, "a") as f:
    f.write('{"file": "cut sh')
  again = study_lib.Study(study_lib.list_images(folders[0]),
                          study_lib.list_images(folders[1]), str(answers))
  assert again.answers == study.answers
  with pytest.raises(ValueError):
    again.answer(0, "maybe")


def test_study_page_in_a_real_browser(served):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support import expected_conditions as ec
  from selenium.webdriver.support.ui import WebDriverWait

  study, url, answers = served
  driver = chromium_driver()
  try:
    wait = WebDriverWait(driver, 20, poll_frequency=0.05)
    driver.get(url)

    def answer(button):
      wait.until(ec.visibility_of_element_located((By.ID, button))).click()

    wait.until(ec.element_to_be_clickable((By.ID, "start"))).click()
    # The image is shown first, then hidden when the question appears.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR,
                                               "#stage img")))
    answer("real")
    wait.until(lambda d: "1 of 6 answered" in d.find_element(
        By.ID, "progress").text)
    answer("fake")
    wait.until(lambda d: "2 of 6 answered" in d.find_element(
        By.ID, "progress").text)
    # Reload midway: the two answers are kept and the page resumes.
    driver.refresh()
    wait.until(lambda d: "2 of 6 answered" in d.find_element(
        By.ID, "progress").text)
    assert driver.find_element(By.ID, "start").text == "Continue"
    lines = [json.loads(l) for l in answers.read_text().splitlines()]
    assert [l["answer"] for l in lines] == ["real", "fake"]
    driver.find_element(By.ID, "start").click()
    for value in ("real", "real", "fake", "real"):
      answer(value)
    wait.until(ec.visibility_of_element_located((By.ID, "table")))
    lines = [json.loads(l) for l in answers.read_text().splitlines()]
    assert [l["answer"] for l in lines] == ["real", "fake", "real", "real",
                                            "fake", "real"]
    # The table on the page agrees with the stored answers.
    for truth in ("real", "generated"):
      mine = [l for l in lines if l["truth"] == truth]
      judged = sum(l["answer"] == "real" for l in mine)
      cells = driver.find_element(By.ID, f"row-{truth}").find_elements(
          By.TAG_NAME, "td")
      assert [c.text for c in cells] == [
          truth, str(len(mine)), str(judged),
          f"{100 * judged / len(mine):.1f}%"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#answers figure")) == 6
  finally:
    driver.quit()
