"""graphzoo label: the labelling page's server through real HTTP on 127.0.0.1 (pages, PNGs, label writes, path
traversal, concurrent writers, a killed server), its bad inputs, and the page itself in a headless Chromium."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from conftest import REPO, copy_run  # noqa: E402

from graphzoo.cli import main as cli  # noqa: E402
from graphzoo.labelling import LABEL_COLUMNS, LabelFile, LabelsFileError, make_server, read_labels  # noqa: E402
from graphzoo.rundir import RunDir  # noqa: E402

N_SUGGESTED = 12


@pytest.fixture(scope="module")
def run(tiny_one_pass, tmp_path_factory) -> RunDir:
    """This module's copy of the shared tiny One Pass run, with 12 suggestions (graphzoo suggest --no-sheet)."""
    rd = copy_run(tiny_one_pass.rundir, tmp_path_factory.mktemp("label") / "op")
    assert cli(["suggest", "--run", str(rd), "-n", str(N_SUGGESTED), "--no-sheet"]) == 0
    return rd


@pytest.fixture
def suggested(run) -> list[dict]:
    with open(run.suggestions, newline="") as fh:
        return list(csv.DictReader(fh))


class Server:
    """``make_server`` on an ephemeral port of 127.0.0.1, served from a thread; raw HTTP helpers."""

    def __init__(self, run) -> None:
        self.httpd = make_server(run, host="127.0.0.1", port=0)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def request(self, method, path, body=None, headers=None):
        """(status, headers, body bytes); the path is sent as is (http.client does not normalise ``..``)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def post(self, index, label, **headers):
        status, _, body = self.request("POST", "/api/label", json.dumps({"index": index, "label": label}),
                                       {"Content-Type": "application/json", **headers})
        return status, json.loads(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(run):
    for p in (run.labels, run.labels.with_name("labels.csv.lock")):
        p.unlink(missing_ok=True)
    s = Server(run)
    yield s
    s.stop()


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_page_state_and_each_suggested_image_as_png(server, run, suggested):
    from PIL import Image

    from graphzoo.config import load_config
    from graphzoo.data import prepare_data

    status, headers, page = server.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    nonce = headers["Content-Security-Policy"].split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in page.decode() and "__NONCE__" not in page.decode()
    status, _, body = server.request("GET", "/api/state")
    state = json.loads(body)
    assert status == 200 and state["classes"] == ["left", "right"] and state["run"] == run.name
    assert [it["index"] for it in state["items"]] == [int(r["index"]) for r in suggested]
    assert [it["path"] for it in state["items"]] == [r["filename"] for r in suggested]
    assert all(it["label"] is None for it in state["items"])
    images = prepare_data(**load_config(run.config).data_options()).images
    for r in suggested[:3]:
        status, headers, png = server.request("GET", f"/image/{r['index']}.png")
        assert status == 200 and headers["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(png)) as im:
            assert np.array_equal(np.asarray(im), np.asarray(images[int(r["index"])][0]))  # the run's own pixels


def test_answers_write_labels_csv_a_change_replaces_the_row_and_skip_removes_it(server, run, suggested):
    a, b = int(suggested[0]["index"]), int(suggested[1]["index"])
    assert server.post(a, "left") == (200, {"labels": {f"c{a}.png": "left"}})
    assert server.post(b, "right")[0] == 200
    rows = _rows(run.labels)
    assert list(rows[0]) == LABEL_COLUMNS
    assert [(r["path"], r["label"], r["index"]) for r in rows] == [(f"c{a}.png", "left", str(a)),
                                                                   (f"c{b}.png", "right", str(b))]
    assert all(r["labelled_at"].endswith("Z") for r in rows)
    assert server.post(a, "right")[1]["labels"] == {f"c{a}.png": "right", f"c{b}.png": "right"}
    assert [(r["path"], r["label"]) for r in _rows(run.labels)] == [(f"c{a}.png", "right"), (f"c{b}.png", "right")]
    assert server.post(a, None)[1]["labels"] == {f"c{b}.png": "right"}  # skip / unsure withdraws the answer
    before = run.labels.read_bytes()
    c = int(suggested[2]["index"])
    assert server.post(c, None) == (200, {"labels": {f"c{b}.png": "right"}})  # skip of an unlabelled image
    assert run.labels.read_bytes() == before
    state = json.loads(server.request("GET", "/api/state")[2])
    assert [it["label"] for it in state["items"][:3]] == [None, "right", None]
    assert not list(run.path.glob(".labels.csv.*.tmp"))


@pytest.mark.parametrize("path", [
    "/image/../../etc/passwd", "/image/%2e%2e/%2e%2e/etc/passwd", "/image/..%2f..%2fetc%2fpasswd", "/static/../x",
    "/../config.yaml", "//etc/passwd", "/labels.csv", "/config.yaml", "/image/1.png/../../../etc/passwd",
    "/image/99999.png", "/image/-1.png", "/image/1e3.png", "/image/%31.png", "/image/%201.png", "/favicon.ico",
])
def test_no_url_reaches_a_file_or_an_image_that_was_not_suggested(server, path):
    status, _, body = server.request("GET", path)
    assert status == 404 and b"root:" not in body


def test_images_outside_the_suggestions_are_404(server, run, suggested):
    others = sorted(set(range(120)) - {int(r["index"]) for r in suggested})
    assert server.request("GET", f"/image/{others[0]}.png")[0] == 404
    assert server.post(others[0], "left") == (404, {"error": f"image {others[0]} is not one of the suggestions"})
    assert not run.labels.exists()


def test_other_sites_and_bad_requests_are_refused(server, run, suggested):
    i = int(suggested[0]["index"])
    assert server.request("GET", "/api/state", headers={"Host": "evil.example:80"})[0] == 403  # DNS rebinding
    assert server.post(i, "left", Origin="http://evil.example")[0] == 403
    form = server.request("POST", "/api/label", "index=1&label=left",
                          {"Content-Type": "application/x-www-form-urlencoded"})
    assert form[0] == 415
    assert server.post(i, "lefty")[0] == 400 and "not a class of this run" in server.post(i, "lefty")[1]["error"]
    assert server.request("POST", "/api/label", "{", {"Content-Type": "application/json"})[0] == 400
    assert server.post(True, "left")[0] == 400
    assert not run.labels.exists()
    assert server.post(i, "left", Origin=f"http://127.0.0.1:{server.port}")[0] == 200


def test_concurrent_answers_from_two_servers_on_one_run_lose_nothing(server, run, suggested):
    second = Server(run)  # a second `graphzoo label` on the same run
    indices = [int(r["index"]) for r in suggested]
    errors = []

    def worker(k: int, index: int) -> None:
        for rnd in range(4):
            s = (server, second)[(k + rnd) % 2]
            status, reply = s.post(index, ("left", "right")[(k + rnd) % 2])
            if status != 200:
                errors.append(reply)

    try:
        threads = [threading.Thread(target=worker, args=(k, i)) for k, i in enumerate(indices)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        second.stop()
    assert not errors
    final = {f"c{i}.png": ("left", "right")[(k + 3) % 2] for k, i in enumerate(indices)}
    assert {r["path"]: r["label"] for r in _rows(run.labels)} == final
    assert len(_rows(run.labels)) == len(indices) and not list(run.path.glob(".labels.csv.*.tmp"))


def test_stopping_the_server_mid_session_keeps_every_answer(server, run, suggested):
    indices = [int(r["index"]) for r in suggested[:5]]
    for i in indices:
        assert server.post(i, "right")[0] == 200
    server.stop()  # mid-session: no goodbye, no flush
    assert {r["path"] for r in _rows(run.labels)} == {f"c{i}.png" for i in indices}
    again = Server(run)
    try:
        state = json.loads(again.request("GET", "/api/state")[2])
        assert sum(it["label"] == "right" for it in state["items"]) == 5
    finally:
        again.stop()


def test_a_killed_graphzoo_label_process_keeps_every_answer(run, suggested):
    run.labels.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "graphzoo", "label", "--run", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        while not (lines and lines[-1].startswith("open http://")):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert "listening on 127.0.0.1 only" in "".join(lines)
        port = int(lines[-1].split(":")[2].split("/")[0])
        s = Server.__new__(Server)
        s.port = port
        for r in suggested[:3]:
            assert s.post(int(r["index"]), "left")[0] == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert [r["path"] for r in _rows(run.labels)] == [r["filename"] for r in suggested[:3]]


def test_bad_inputs_are_named_and_nothing_is_overwritten(run, tmp_path, capsys):
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns("checkpoints", "suggestions*", "labels*"))
    assert cli(["label", "--run", str(copy)]) == 2
    assert "run graphzoo suggest --run" in capsys.readouterr().err
    shutil.copy(run.suggestions, copy.suggestions)
    bad = "path,label\nc1.png,left\nc3.png,lefty\nc5.png,right\nc1.png,left\n"
    copy.labels.write_text(bad)
    assert cli(["label", "--run", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "unknown class names on line 3 ('lefty')" in err and "left, right" in err
    copy.labels.write_text("path,label\nc1.png,left\nc5.png,right\nc1.png,right\n")
    assert cli(["label", "--run", str(copy)]) == 2
    assert "conflicting labels for 'c1.png': line 2 says 'left', line 4 says 'right'" in capsys.readouterr().err
    assert copy.labels.read_text() == "path,label\nc1.png,left\nc5.png,right\nc1.png,right\n"
    copy.labels.write_text("file,class\nc1.png,left\n")
    assert cli(["label", "--run", str(copy)]) == 2
    assert "has no 'path' and 'label' columns" in capsys.readouterr().err


def test_a_labels_csv_broken_while_serving_is_refused_and_left_alone(server, run, suggested):
    i = int(suggested[0]["index"])
    run.labels.write_text("path,label\nc1.png,cat\n")
    status, reply = server.post(i, "left")
    assert status == 409 and "'cat'" in reply["error"]
    status, _, body = server.request("GET", "/api/state")
    assert status == 409 and "unknown class names on line 2 ('cat')" in json.loads(body)["error"]
    assert run.labels.read_text() == "path,label\nc1.png,cat\n"


def test_rows_of_other_images_and_extra_columns_are_kept(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("path,label,note\nold/a.png,left,by hand\nold/b.png,,\n")
    f = LabelFile(path, ["left", "right"])
    assert f.answer("c7.png", 7, "right") == {"old/a.png": "left", "old/b.png": "", "c7.png": "right"}
    header, rows = read_labels(path, ["left", "right"])
    assert header == LABEL_COLUMNS + ["note"]
    assert rows[0] == {"path": "old/a.png", "label": "left", "index": "", "labelled_at": "", "note": "by hand"}
    with pytest.raises(ValueError, match="not a class") as caught:
        f.answer("c8.png", 8, "cat")  # an unknown class never reaches the file
    assert not isinstance(caught.value, LabelsFileError)
    assert len(read_labels(path, ["left", "right"])[1]) == 3


# ------------------------------------------------------------------------------------------
# The page in a real browser
# ------------------------------------------------------------------------------------------


def _chrome(tmp_path):
    """A headless Chromium through Debian's chromedriver; skips the test when any part is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ["/usr/bin/chromedriver"] if Path(p).exists()), None)
    if not chromium or not driver:
        pytest.skip("chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chrome-profile'}", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,720"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(executable_path=driver))


def _wait(condition, what: str, timeout: float = 8.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_labelling_in_a_headless_browser_by_keyboard_and_by_click(server, run, suggested, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser = _chrome(tmp_path)
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#strip img")) == N_SUGGESTED, "the strip")
        _wait(lambda: browser.find_element(By.ID, "where").text.startswith("rank 1 of"), "the first image")
        assert "graph predicts" in browser.find_element(By.ID, "predicted").text
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("1")  # rank 1 -> left, moves on
        body.send_keys("2")  # rank 2 -> right
        body.send_keys("s")  # rank 3 skipped
        body.send_keys(Keys.ARROW_LEFT)  # back to rank 3
        _wait(lambda: browser.find_element(By.ID, "where").text.startswith("rank 3 of"), "rank 3 again")
        buttons = browser.find_elements(By.CSS_SELECTOR, "#choices button")
        assert [b.text.split()[-1] for b in buttons[:2]] == ["left", "right"] and "skip" in buttons[2].text
        buttons[1].click()  # rank 3 -> right, by mouse
        _wait(lambda: "3 / 12 labelled" in browser.find_element(By.ID, "progress").text, "three answers")
        _wait(lambda: run.labels.exists() and len(_rows(run.labels)) == 3, "three rows in labels.csv")
        assert "NOT saved" not in browser.find_element(By.ID, "status").text
        shot = tmp_path / "labelling_page.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("GRAPHZOO_SCREENSHOT"):  # docs/labelling_page.png is made this way
            shutil.copy(shot, os.environ["GRAPHZOO_SCREENSHOT"])
        assert shot.stat().st_size > 1000
    finally:
        browser.quit()
    labels = {r["path"]: r["label"] for r in _rows(run.labels)}
    assert labels == {suggested[0]["filename"]: "left", suggested[1]["filename"]: "right",
                      suggested[2]["filename"]: "right"}
