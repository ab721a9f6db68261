"""`make dashboard`: optuna-dashboard on the sweep storage, bound to 127.0.0.1. Every test runs the make
target itself (with this interpreter's environment as VENV, and `-o` so that it never reinstalls) on a
three-trial study in a temporary SQLite file. The fast ones check the command line, the missing-storage
message and the served JSON API; the slow one opens the dashboard in headless Chromium, as
tests/test_ui_browser.py does for the MLflow UI, and must show the study and its trials."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from ganlab.sweeping.study import make_storage

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent  # what `make` calls $(VENV): the one running these tests
MAKE = shutil.which("make")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--window-size=1400,900"]
# the make variables the tests set, and make's own: none may leak in from the caller's environment
ENV = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "STORAGE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
STUDY = "dash-demo"
TRIALS = {0.001: 0.75, 0.002: 0.5, 0.005: 1.25}  # each trial's optim.d_lr -> its objective value

pytestmark = pytest.mark.skipif(not MAKE, reason="needs make")


def _make(*args: str) -> list[str]:
    return [MAKE, "-o", f"{VENV}/.installed", f"VENV={VENV}", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on `port`, as Linux's /proc/net/tcp{,6} spell them
    (127.0.0.1 is 0100007F, 0.0.0.0 is 00000000)."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop make and the dashboard under it (their own process group), SIGKILL if they linger."""
    if _group_alive(proc.pid):
        os.killpg(proc.pid, sig)
    deadline = time.monotonic() + 20
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        proc.poll()  # reaps make once it exits, so that the group can vanish
        time.sleep(0.1)
    if _group_alive(proc.pid):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def storage(tmp_path) -> str:
    """A finished three-trial study in a SQLite file, stored as sweeps store it (WAL mode)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=make_storage(url), study_name=STUDY, direction="minimize")
    for d_lr in TRIALS:
        study.enqueue_trial({"optim.d_lr": d_lr})
    study.optimize(lambda trial: TRIALS[trial.suggest_float("optim.d_lr", 1e-4, 1e-2, log=True)],
                   n_trials=len(TRIALS))
    return url


@pytest.fixture
def dashboard(storage, tmp_path) -> Iterator[tuple[str, int, subprocess.Popen, Path]]:
    """`make dashboard STORAGE=<the study> PORT=<free port>` running, once it answers: (base URL,
    port, the make process, its log). Its whole process group is stopped at teardown."""
    port, log = _free_port(), tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_make("dashboard", f"STORAGE={storage}", f"PORT={port}"), cwd=ROOT, env=ENV,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get_json(f"{base}/api/studies")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"make dashboard did not come up on {base}:\n{log.read_text()}") from None
                time.sleep(0.25)
        yield base, port, proc, log
    finally:
        _stop(proc)


def test_make_dashboard_serves_the_storage_on_127_0_0_1_port_8080_unless_told():
    default = subprocess.run(_make("-n", "dashboard"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             check=True).stdout
    assert 'echo "Optuna dashboard on http://127.0.0.1:8080  (Ctrl-C to stop)"' in default
    assert '"sqlite:///mlruns/optuna.db" --host 127.0.0.1 --port 8080 --server wsgiref' in default
    assert 'test -f "mlruns/optuna.db"' in default

    other = subprocess.run(_make("-n", "dashboard", "PORT=9000", "STORAGE=postgresql://u@db/sweeps"), cwd=ROOT,
                           env=ENV, capture_output=True, text=True, check=True).stdout
    assert '"postgresql://u@db/sweeps" --host 127.0.0.1 --port 9000 --server wsgiref' in other
    assert "test -f" not in other  # only a SQLite file can be checked for


@pytest.mark.parametrize("target", ["ui", "server", "dashboard"])
def test_every_make_server_binds_127_0_0_1_unless_told_on_the_command_line(target):
    exported = {**ENV, "HOST": "0.0.0.0"}  # an exported HOST (some shells set one) is not a request
    commands = subprocess.run(_make("-n", target), cwd=ROOT, env=exported, capture_output=True, text=True,
                              check=True).stdout
    assert "--host 127.0.0.1 " in commands and "0.0.0.0" not in commands and "WARNING" not in commands
    told = subprocess.run(_make("-n", target, "HOST=0.0.0.0"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                          check=True).stdout
    assert "--host 0.0.0.0 " in told and "WARNING: listening on 0.0.0.0" in told and "basic-auth" in told


def test_make_dashboard_without_the_storage_says_to_sweep_first(tmp_path):
    missing = tmp_path / "optuna.db"
    result = subprocess.run(_make("dashboard", f"STORAGE=sqlite:///{missing}", f"PORT={_free_port()}"), cwd=ROOT,
                            env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert f"No Optuna storage at {missing} yet: run `make sweep` first" in result.stderr.splitlines()[0]
    assert not missing.exists()  # the dashboard would have created an empty one


def test_dashboard_serves_the_study_and_its_trials_on_127_0_0_1(dashboard):
    base, port, proc, log = dashboard
    assert log.read_text().splitlines()[0] == f"Optuna dashboard on http://127.0.0.1:{port}  (Ctrl-C to stop)"
    if sys.platform.startswith("linux"):
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, not 0.0.0.0

    studies = _get_json(f"{base}/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [STUDY]
    detail = _get_json(f"{base}/api/studies/{studies[0]['study_id']}")
    trials = {float(t["params"][0]["param_external_value"]): t["values"][0] for t in detail["trials"]
              if t["state"] == "Complete" and t["params"][0]["name"] == "optim.d_lr"}
    assert trials == TRIALS
    with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as page:  # the single-page app itself
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]

    _stop(proc, signal.SIGINT)  # Ctrl-C: it stops, without a traceback
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver (see .ci/run)")
def test_dashboard_in_a_browser_shows_the_study_and_its_trials(dashboard, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = dashboard[0]
    study_id = _get_json(f"{base}/api/studies")["study_summaries"][0]["study_id"]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)

    def body() -> str:
        return driver.find_element(By.TAG_NAME, "body").text

    try:
        wait = WebDriverWait(driver, 30, poll_frequency=0.25)
        driver.get(f"{base}/dashboard")  # the study list
        wait.until(lambda d: STUDY in body())
        driver.get(f"{base}/dashboard/studies/{study_id}/trials")  # the trial list, and the first trial
        wait.until(lambda d: f"{len(TRIALS)} Trials" in body() and "optim.d_lr 0.001" in body())
        text = body()
        assert all(f"Trial {n}" in text for n in range(len(TRIALS))) and "0.75" in text
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Trial 2']").click()  # the last trial
        wait.until(lambda d: "optim.d_lr 0.005" in body() and "1.25" in body())
        shot = tmp_path / "optuna_dashboard.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
