"""``--report``: one self-contained report.html per command, rendered in a real browser.

Each command runs once on its shipped demo clip; headless Chromium (Debian's ``chromium``; ``make test``
installs it through ``make system-deps``, elsewhere these tests skip) opens each page and a small script
added to a copy of it records, for every <audio>, <video> and <img>, whether it decoded; the screenshot
taken in the same run must not be blank.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import avlearn
from avlearn.cli import main
from avlearn.report import REPORT, write_report

CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make system-deps installs it)")

RUNS = {  # command -> its arguments on a demo clip
    "separate": ["separate", "speakers"],
    "localize": ["localize", "instruments"],
    "sync-offset": ["sync-offset", "speakers", "--shift-audio-ms", "120"],
    "recognize": ["recognize", "actions"],
}
MEDIA = {  # the media each page embeds: the mixture and, per speaker, a face video and a voice
    "separate": ["audio", "video", "audio", "video", "audio"],
    "localize": ["video", "img"],
    "sync-offset": [],
    "recognize": [],
}

# Records the state of every medium into <body data-media>, again on each of their load events.
PROBE = """<script>
function check() {
  const out = [...document.querySelectorAll('audio,video,img')].map(m => m.tagName === 'IMG'
    ? {tag: 'img', ready: m.complete ? 4 : 0, width: m.naturalWidth, duration: null, error: null}
    : {tag: m.tagName.toLowerCase(), ready: m.readyState, width: m.videoWidth || 0, duration: m.duration,
       error: m.error && m.error.code});
  document.body.dataset.media = JSON.stringify(out);
}
for (const m of document.querySelectorAll('audio,video,img'))
  for (const e of ['loadedmetadata', 'loadeddata', 'canplaythrough', 'load', 'error']) m.addEventListener(e, check);
check();
</script>"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The output folder of each command, run once with --report on its demo clip."""
    root = tmp_path_factory.mktemp("reports")
    folders = {}
    for name, (command, world, *extra) in RUNS.items():
        folders[name] = root / name
        argv = [command, str(avlearn.demo_clip(world)), *extra, "--out", str(folders[name]), "--report", "--quiet"]
        assert main(argv) == 0
    return folders


def render(page: Path, tmp: Path) -> tuple[list[dict], np.ndarray]:
    """``(state of each medium, screenshot as a (H, W, 3) array)`` of ``page`` in headless Chromium."""
    probe = tmp / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    shot = tmp / "shot.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
        f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", "--window-size=1000,1000",
        f"--screenshot={shot}", "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=240, check=True).stdout
    found = re.search(r'data-media="([^"]*)"', dom)
    assert found, f"the probe script did not run: {dom[:300]}"
    return json.loads(html.unescape(found.group(1))), np.asarray(Image.open(shot).convert("RGB"))


@needs_chromium
@pytest.mark.parametrize("name", list(RUNS))
def test_report_media_load_in_chromium(reports, name, tmp_path):
    media, shot = render(reports[name] / REPORT, tmp_path)
    assert [m["tag"] for m in media] == MEDIA[name]
    for m in media:
        assert m["error"] is None and m["ready"] >= 2, f"{name}: a {m['tag']} did not decode: {m}"
        if m["tag"] != "audio":
            assert m["width"] > 0, m
        if m["tag"] != "img":
            assert m["duration"] > 1.0, m  # the demo clips last 4 and 20 s
    grey = shot.mean(axis=2)
    assert grey.std() > 20, f"{name}: the page looks blank"
    assert (grey < 200).mean() > 0.01, f"{name}: almost nothing is drawn"


def test_report_is_self_contained(reports):
    for name, folder in reports.items():
        page = (folder / REPORT).read_text()
        sources = re.findall(r'\ssrc="([^"]*)"', page)
        assert len(sources) == len(MEDIA[name]) and all(s.startswith("data:") for s in sources), name
        assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
        assert REPORT in json.loads((folder / ".avlearn.json").read_text())["files"]  # the next run replaces it
    sync = json.loads((reports["sync-offset"] / "result.json").read_text())
    plot = (reports["sync-offset"] / REPORT).read_text()
    assert plot.count("<circle") == len(sync["windows"]) and "+120 ms" in plot
    timeline = (reports["recognize"] / REPORT).read_text()
    top = json.loads((reports["recognize"] / "result.json").read_text())["top"][0]
    assert timeline.count(f"<title>{top['label']}: ") == len(top["segments"]) > 0


def test_run_without_report_removes_the_old_one(reports, tmp_path):
    folder = shutil.copytree(reports["sync-offset"], tmp_path / "out")
    assert main(["sync-offset", str(avlearn.demo_clip("speakers")), "--out", str(folder), "--quiet"]) == 0
    assert (folder / "result.json").exists() and not (folder / REPORT).exists()


def test_report_needs_a_folder_and_escapes_text(tmp_path, capsys):
    with pytest.raises(SystemExit, match="--report needs --out"):
        main(["sync-offset", str(avlearn.demo_clip("speakers")), "--report"])
    label, clip = '<img src=x onerror="alert(1)">', 'a<b>&"c".mp4'
    doc = {
        "input": clip, "duration": 4.0, "method": "dense", "window": 1.0, "windows": 4, "looked_at": 4, "gmacs": None,
        "top": [{"label": label, "probability": 0.9, "segments": [[1.0, 3.0]]}],
        "moments": [{"start": 1.0, "end": 2.0, "label": label, "probability": 0.9}], "notes": ["x < y & z"],
    }  # fmt: skip
    (tmp_path / "result.json").write_text(json.dumps(doc))
    page = write_report("recognize", tmp_path).read_text()
    assert label not in page and clip not in page and "x < y" not in page
    assert html.escape(label) in page and html.escape(clip) in page and "x &lt; y &amp; z" in page
    with pytest.raises(ValueError, match="no report for"):
        write_report("probe", tmp_path)
