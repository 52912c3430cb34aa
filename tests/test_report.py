"""report.html: self-contained, escaped, numbers from metrics.json/history.csv, renders in
headless Chromium without console errors."""

import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from _explain_helpers import make_run
from cnnlab.errors import DataFormatError
from cnnlab.explain.report import SECTIONS, write_report

CHROMIUM = "/usr/bin/chromium"


class _Page(HTMLParser):
    """Collects ids, <img> sources, external references and visible text."""

    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.external, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a["src"])
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.text = " ".join(page.text)
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir, run, test = make_run(tmp_path_factory.mktemp("run"))
    path = write_report(run_dir, test_data=test, run=run, n_examples=2)
    return path, run_dir, run


def test_report_is_one_self_contained_page_with_every_section(report):
    path, _, _ = report
    page = _parse(path.read_text(encoding="utf-8"))
    assert [a for a, _ in SECTIONS] == [i for i in page.ids if i in dict(SECTIONS)]
    assert page.external == []  # no scripts, stylesheets or network addresses
    # curves, confusion, top losses, filters, 2 conv layers x 2 maps, 2 Grad-CAMs
    assert len(page.imgs) == 4 + 4 + 2
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.size[0] > 200


def test_report_numbers_come_from_metrics_and_history(report):
    path, run_dir, _ = report
    text = _parse(path.read_text(encoding="utf-8")).text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"{metrics['test_accuracy']:.2%}" in text
    assert f"{metrics['test_loss']:.4f}" in text
    for row in metrics["per_class"]:
        assert re.search(rf"{re.escape(row['class'])}\s+{row['precision']:.4f}\s+"
                         rf"{row['recall']:.4f}\s+{row['f1']:.4f}\s+{row['support']}", text)
    hist = (run_dir / "history.csv").read_text().splitlines()[1:]
    for line in hist:  # the history table repeats history.csv to 4 decimals
        epoch, train_loss = line.split(",")[:2]
        assert re.search(rf"{epoch}\s+{float(train_loss):.4f}", text)
    assert "71.00%" in text  # best validation accuracy of the fixture history (epoch 3)
    pair = metrics["most_confused"][0]
    assert re.search(rf"{pair['true']}\s+{pair['pred']}\s+{pair['count']}", text)


def test_report_escapes_text(report):
    html = report[0].read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "tiny &lt;cnn&gt;" in html


def test_report_without_model_or_metrics_still_writes_and_says_why(tmp_path, monkeypatch):
    run_dir, _, _ = make_run(tmp_path)
    (run_dir / "metrics.json").unlink()
    monkeypatch.setattr("cnnlab.explain.report._load_run", lambda d: None)
    page = _parse(write_report(run_dir).read_text(encoding="utf-8"))
    assert "run `cnnlab evaluate RUN`" in page.text
    assert "could not be loaded" in page.text
    assert len(page.imgs) == 1  # the curves, from history.csv alone


def test_report_of_a_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        write_report(tmp_path / "nope")


def _chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.iterdir()))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _console(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


# Appended to a copy of the page only: logs every <img> that failed to decode.
PROBE = ('<script>addEventListener("load",()=>{let bad=0;for(const i of document.images)'
         '{if(!i.complete||i.naturalWidth===0){bad++;console.error("broken image "+i.alt)}}'
         'console.log("probe images "+document.images.length+" broken "+bad)})</script>')


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, _, _ = report
    html = path.read_text(encoding="utf-8")
    n_img = html.count("<img ")
    dom = _chromium(path.as_uri(), tmp_path, "--dump-dom", "--virtual-time-budget=5000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []  # the page itself logs nothing
    rendered = _parse(dom.stdout)
    assert set(dict(SECTIONS)) <= set(rendered.ids) and len(rendered.imgs) == n_img
    # every image decodes in the browser; a control page proves a broken one would be caught
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    logs = _console(_chromium(probed.as_uri(), tmp_path, "--dump-dom").stderr)
    assert len(logs) == 1 and f"probe images {n_img} broken 0" in logs[0]
    control = tmp_path / "control.html"
    control.write_text(html.replace("</body>", '<img src="missing.png" alt="x">' + PROBE
                                    + "</body>"), encoding="utf-8")
    logs = _console(_chromium(control.as_uri(), tmp_path, "--dump-dom").stderr)
    assert any("broken 1" in ln for ln in logs)
    shot = tmp_path / "report.png"
    res = _chromium(path.as_uri(), tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert res.returncode == 0 and shot.exists()
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colours = im.convert("L").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20  # not a blank page
    keep = os.environ.get("CNNLAB_ARTIFACTS")
    if keep:  # CI can keep the screenshot to look at
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")


def test_metrics_json_that_is_not_an_object_is_a_clear_error(tmp_path):
    run_dir, _, _ = make_run(tmp_path)
    (run_dir / "metrics.json").write_text("[]")
    with pytest.raises(DataFormatError, match=r"metrics.json is not a JSON object"):
        write_report(run_dir)


def test_settings_show_as_config_json_holds_them(tmp_path):
    run_dir, _, _ = make_run(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "lr": 3e-05, "ema": 0.99995}))
    text = _parse(write_report(run_dir).read_text(encoding="utf-8")).text
    assert re.search(r"\blr\s+3e-05", text) and re.search(r"\bema\s+0\.99995", text)


def test_a_model_save_folders_report_says_where_its_test_figures_go(tmp_path):
    import cnnlab
    from cnnlab.layers import Dense, Flatten

    model = cnnlab.Sequential([Flatten(), Dense(3)], input_shape=(1, 4, 4))
    folder = model.save(tmp_path / "saved")  # model.json and weights only: no config.json, no metrics
    text = _parse(write_report(folder).read_text(encoding="utf-8")).text
    assert "`cnnlab evaluate RUN --data D` writes them to RUN/evaluate/D/" in text
    assert "run `cnnlab evaluate RUN`." not in text
