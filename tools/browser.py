"""Headless Chromium from Debian's packages, driven by Selenium: for
`web_timing` and for the tests that drive the web pages.

Nothing downloads a browser: it is /usr/bin/chromium and
/usr/bin/chromedriver (`apt-get install chromium chromium-driver`; .ci/run
installs them), and selenium (pip install 'pix2pix_tf[tools]', or [test]).
"""

import json
import os
import shutil
import tempfile
from typing import List

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# A translate page's backend once its model has loaded (empty before).
BACKEND = "return document.getElementById('runtime').dataset.backend"


class BrowserMissing(RuntimeError):
  """Debian's chromium or chromium-driver is not installed."""


def missing() -> str:
  """What to install before `chromium_driver` can run, or ""."""
  if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
    return ""
  return ("Debian's chromium and chromium-driver are not installed "
          "(apt-get install chromium chromium-driver).")


def chromium_driver(network_log: bool = False, webgpu: bool = False):
  """A headless Chromium WebDriver; the caller quits it. With
  `network_log`, `requested_urls(driver)` lists every request the pages
  made; with `webgpu`, pages get a WebGPU adapter (SwiftShader's, on the
  CPU).

  Raises:
    BrowserMissing: saying what to install.
  """
  reason = missing()
  if reason:
    raise BrowserMissing(reason)
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service

  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  profile = tempfile.mkdtemp(prefix="chromium-profile-")
  for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                   "--disable-quic", "--no-first-run",
                   "--disable-background-networking",
                   "--disable-component-update", "--disable-sync",
                   "--disable-dev-shm-usage", "--window-size=1000,900",
                   f"--user-data-dir={profile}"):
    options.add_argument(argument)
  if webgpu:
    for argument in ("--enable-unsafe-webgpu", "--enable-unsafe-swiftshader",
                     "--use-webgpu-adapter=swiftshader",
                     "--enable-features=Vulkan", "--use-angle=swiftshader"):
      options.add_argument(argument)
  if network_log:
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  original_quit = driver.quit

  def quit_and_clean():
    original_quit()
    shutil.rmtree(profile, ignore_errors=True)

  driver.quit = quit_and_clean
  return driver


def open_page(driver, url: str, timeout: float = 60) -> str:
  """Opens a translate page at `url` and waits until its model has loaded;
  returns the backend it loaded on. The page reloads once under its
  service worker, so an element may go stale between two polls."""
  from selenium.common.exceptions import WebDriverException
  from selenium.webdriver.support.ui import WebDriverWait
  driver.get(url)
  WebDriverWait(driver, timeout, poll_frequency=0.05,
                ignored_exceptions=(WebDriverException,)
                ).until(lambda d: d.execute_script(BACKEND))
  return driver.execute_script(BACKEND)


# The schemes of the browser's own pages, whose requests are not a page's.
BROWSER_PAGES = ("chrome://", "chrome-untrusted://")


def requested_urls(driver) -> List[str]:
  """The URLs of the requests the pages made since the last call (a driver
  made with `network_log`), from the DevTools protocol's Network
  events."""
  urls = []
  for entry in driver.get_log("performance"):
    message = json.loads(entry["message"])["message"]
    # Not the browser's own pages: its start page loads chrome:// files and
    # a chrome-untrusted:// frame.
    if (message["method"] == "Network.requestWillBeSent" and not
        message["params"].get("documentURL", "").startswith(
            BROWSER_PAGES)):
      urls.append(message["params"]["request"]["url"])
  return urls
