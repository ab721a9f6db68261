"""The MLflow UI as a person sees it: headless Chromium opens a run logged by ganlab and must show
the run, one of its metrics and one of its plots. With GANLAB_UPDATE_SCREENSHOT=1 its screenshot
replaces docs/mlflow_ui_run.png, which the README shows (otherwise the checkout is left alone).
Needs Debian's chromium and chromium-driver (.ci/run installs them when missing)."""

import os
import shutil
from pathlib import Path

import pytest
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.training.runner import run_training

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1400,900"]

pytestmark = [pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver (see .ci/run)"),
              pytest.mark.slow]


@pytest.fixture
def ui(tmp_path, mlflow_service, monkeypatch):
    """A tiny trained run in a fresh store, and `mlflow ui` on it as `make ui` starts it (one worker process)."""
    uri = mlflow_store(tmp_path / "mlflow.db")
    with monkeypatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        # long enough that the screenshot shows a run that learns (about 10 s)
        result = run_training(compose_config(["train.iterations=1500", "train.eval_every=100", "train.plot_every=500",
                                              "train.eval_samples=2000"]), verbose=False)
    run = MlflowClient(uri).get_run(result.run_id)
    return mlflow_service("ui", "--backend-store-uri", uri, "--workers", "1"), run


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _model_training_view(driver) -> None:
    """For the screenshot: close the GenAI assistant panel and switch the UI to its "Model training"
    view, as a GAN user would. Cosmetic, so a UI version without these controls is fine."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    for locator in ("//button[@aria-label='Close']", "//*[normalize-space(text())='Model training']"):
        try:
            driver.find_element(By.XPATH, locator).click()
        except WebDriverException:
            pass


def test_ui_shows_the_run_its_metric_and_its_plot(ui, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, run = ui
    page = f"{base}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    driver = _browser(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 120, poll_frequency=0.5)
        driver.get(page)
        # the overview lists the run's metrics with their values
        wait.until(lambda d: run.info.run_name in d.find_element(By.TAG_NAME, "body").text
                   and "w1_over_std" in d.find_element(By.TAG_NAME, "body").text)
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "ks" in body.split() and run.info.run_id in driver.page_source

        _model_training_view(driver)
        driver.get(f"{page}/artifacts/plots/metrics.png")
        # the plot itself is drawn: an <img> holding the PNG, rendered with a real size
        wait.until(lambda d: any((img.get_attribute("src") or "").startswith(("data:image/png", "blob:"))
                                 and img.size["width"] > 300 for img in d.find_elements(By.TAG_NAME, "img")))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "plots/metrics.png" in body and "histogram.gif" in body
        shot = tmp_path / "mlflow_ui_run.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("GANLAB_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(shot, ROOT / "docs" / "mlflow_ui_run.png")
    finally:
        driver.quit()
