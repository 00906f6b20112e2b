"""``report.html``: one page to look at and listen to what a command found.

``avlearn separate|localize|sync-offset|recognize ... --report`` writes it into the output folder beside the
results, built only from the files the command wrote there (``result.json`` or ``peaks.json``, the wavs,
mp4s and pngs), so the page shows exactly what was saved. Every medium is embedded as a base64 data URI:
the one file works anywhere (mailed, attached to an issue, opened from a USB stick) with no folder beside it.

The media go in as the commands write them: H.264/AAC mp4 and 16-bit PCM wav play in every current browser,
Debian's Chromium included (``tests/test_report.py`` renders each report there and checks that every
medium decodes). Plots are inline SVG drawn here; the page holds no script. Its size grows with the clip:
per minute, base64 included, about 4 MB for each separated voice (its wav and its face video), 2.5 MB for
the mixture and 2 MB for a heat-map video at 224 px.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from avlearn import __version__

REPORT = "report.html"
COMMANDS = ("separate", "localize", "sync-offset", "recognize")

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; max-width: 62em; margin: 1.5em auto; padding: 0 1em }
h1 { font-size: 1.35em; margin-bottom: .2em } h2 { font-size: 1.1em; margin: 1.4em 0 .4em }
.cards { display: flex; flex-wrap: wrap; gap: 1em } .card { border: 1px solid #ccc; border-radius: 6px; padding: .7em }
.card p { margin: .3em 0 } audio, .card svg { display: block; width: 300px; margin: .3em 0 }
video, img, svg { max-width: 100% }
table { border-collapse: collapse } th, td { text-align: left; padding: .1em .8em .1em 0; vertical-align: top }
th { font-weight: 600; color: #555 } .note { color: #8a5a00 } footer { color: #777; font-size: .85em; margin-top: 2em }
.big { font-size: 1.3em; font-weight: 600 }
"""


def write_report(command: str, folder: str | Path) -> Path:
    """Writes ``folder/report.html`` for the results ``command`` wrote into ``folder``; returns its path.

    Raises:
        ValueError: a command without a report.
        FileNotFoundError: the folder lacks the command's results.
    """
    if command not in COMMANDS:
        raise ValueError(f"no report for {command!r}; there is one for {', '.join(COMMANDS)}")
    from avlearn.io.write import atomic_path

    folder = Path(folder)
    name = "peaks.json" if command == "localize" else "result.json"
    doc = json.loads((folder / name).read_text())
    build = {"separate": _separate, "localize": _localize, "sync-offset": _sync_offset, "recognize": _recognize}
    clip, facts, body = build[command](folder, doc)
    page = _page(command, clip, facts, doc.get("notes", []), body, name)
    with atomic_path(folder / REPORT, [clip] if clip else []) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return folder / REPORT


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _file_uri(path: Path) -> str:
    mime = {".mp4": "video/mp4", ".wav": "audio/wav", ".png": "image/png"}[path.suffix]
    return _data_uri(path.read_bytes(), mime)


def _page(command: str, clip: str, facts: list[tuple[str, str]], notes: list[str], body: str, source: str) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    note_list = "".join(f'<p class="note">note: {_e(n)}</p>' for n in notes)
    made = time.strftime("%Y-%m-%d %H:%M")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>avlearn {_e(command)}: {_e(Path(clip).name)}</title><style>{_STYLE}</style></head>
<body>
<h1>avlearn {_e(command)}</h1>
<table>{rows}</table>
{note_list}
{body}
<footer>avlearn {_e(__version__)}, {_e(made)}; built from {_e(source)} and the files beside it.</footer>
</body></html>
"""


# -- separate ------------------------------------------------------------------------------------------------


def _separate(folder: Path, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
    import soundfile

    clip, rate = doc["clip"], int(doc["sample_rate"])
    facts = [
        ("clip", clip),
        ("duration", f"{doc['duration_s']:.2f} s, {rate} Hz"),
        ("speakers", str(len(doc["speakers"]))),
        ("model", f"{doc.get('model', '?')} ({doc.get('checkpoint', '?')})"),
    ]
    mixture = _mixture(clip, rate, float(doc["duration_s"]))
    if mixture is None:
        player = f"<p>{_e(clip)} cannot be read from here: the mixture is not included.</p>"
    else:
        player = _waveform(mixture) + f'<audio controls preload="auto" src="{_wav_uri(mixture, rate)}"></audio>'
    mix = f'<div class="card"><p><b>Mixture</b> (the clip\'s soundtrack)</p>{player}</div>'
    cards = []
    for sp in doc["speakers"]:
        face = f'<video controls preload="auto" width="192" height="192" src="{_file_uri(folder / sp["mp4"])}"></video>'
        voice = _waveform(soundfile.read(folder / sp["wav"], dtype="float32")[0])
        voice += f'<audio controls preload="auto" src="{_file_uri(folder / sp["wav"])}"></audio>'
        cards.append(
            f'<div class="card"><p><b>Speaker {_e(sp["index"])}</b> ({_e(sp["level_dbfs"])} dBFS)</p>{face}{voice}'
            f"<p>{_e(sp['wav'])}, {_e(sp['mp4'])}</p></div>"
        )
    body = (
        f'<h2>The mixture</h2><div class="cards">{mix}</div>'
        "<h2>Each separated voice, with the face it belongs to</h2>"
        f'<div class="cards">{"".join(cards)}</div>'
    )
    return clip, facts, body


def _mixture(clip: str, sample_rate: int, duration: float) -> np.ndarray | None:
    """The clip's soundtrack at the voices' rate, mono, as separated; None when the clip cannot be read."""
    from avlearn.io import MediaError, read_clip

    try:
        return read_clip(clip, 0.0, duration, sample_rate=sample_rate, video=False).audio[0].numpy()
    except MediaError:
        return None


def _wav_uri(samples: np.ndarray, sample_rate: int) -> str:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.clip(samples, -1, 1), sample_rate, format="WAV", subtype="PCM_16")
    return _data_uri(buf.getvalue(), "audio/wav")


def _waveform(samples: np.ndarray, width: int = 300, height: int = 44) -> str:
    """SVG: the envelope of ``samples`` (the peak of each pixel column), on one scale for every voice (full
    scale fills the height), so a voice that is silent where the others speak shows as flat there."""
    columns = np.array_split(np.abs(samples), min(width, max(1, len(samples))))
    peaks = np.array([c.max() for c in columns]).clip(0, 1) * height / 2
    xs = np.linspace(0, width, len(peaks))
    top = " ".join(f"{x:.1f},{height / 2 - p:.1f}" for x, p in zip(xs, peaks))
    bottom = " ".join(f"{x:.1f},{height / 2 + p:.1f}" for x, p in zip(xs[::-1], peaks[::-1]))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="waveform"><polygon points="{top} {bottom}" fill="#1f77b4"/></svg>'
    )


# -- localize ------------------------------------------------------------------------------------------------


def _localize(folder: Path, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
    frames = doc["frames"]
    silent = sum(f["silent"] for f in frames)
    facts = [
        ("clip", doc["clip"]),
        ("frames", f"{len(frames)} at {doc['fps']:g} fps, {silent} silent (no map)"),
        ("method", f"{doc['method']}, each frame's map from the {doc['window_s']:g} s window around it"),
        ("checkpoint", doc.get("checkpoint", "?")),
    ]
    w, h = int(doc["width"]), int(doc["height"])
    body = (
        "<h2>Where the sound comes from: heatmap.mp4</h2>"
        f'<video controls preload="auto" width="{w}" height="{h}" src="{_file_uri(folder / "heatmap.mp4")}"></video>'
        "<h2>Frames across the clip, above the same frames with their maps: grid.png</h2>"
        f'<img alt="frames and their maps" src="{_file_uri(folder / "grid.png")}">'
    )
    return doc["clip"], facts, body


# -- sync-offset ---------------------------------------------------------------------------------------------


def _sync_offset(folder: Path, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
    windows, frame_ms = doc["windows"], float(doc["frame_ms"])
    agree = round(doc.get("agreement", 1.0) * len(windows))
    offset = float(doc["offset_ms"])
    sense = "in sync" if abs(offset) < frame_ms / 2 else ("audio late" if offset > 0 else "audio early")
    facts = [
        ("clip", doc["path"]),
        ("windows", f"{len(windows)}; {agree} agree with the estimate within a frame ({frame_ms:.0f} ms)"),
        ("checkpoint", doc.get("checkpoint", "?")),
    ]
    body = (
        f'<p class="big">{offset:+.0f} ms ({sense}), confidence {float(doc["confidence"]):.2f}</p>'
        "<p>Positive: the audio is heard after the picture (late); negative: before it.</p>"
        "<h2>The offset of each window</h2>" + _offset_plot(windows, offset, frame_ms)
    )
    return doc["path"], facts, body


def _ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values covering ``lo..hi`` (steps of 1, 2 or 5 times a power of ten)."""
    raw = (hi - lo) / max(1, count - 1) or 1.0
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def _offset_plot(windows: list[dict[str, float]], offset: float, frame_ms: float) -> str:
    """SVG: each window's offset (ms) over its start (s), darker when more confident; the clip's estimate
    as a line in a band of one frame either side."""
    width, height, left, right, top, bottom = 720, 300, 60, 15, 15, 40
    xs = [float(w["start"]) for w in windows]
    ys = [float(w["offset_ms"]) for w in windows]
    x0, x1 = 0.0, max(xs) + 0.5
    span = max([abs(y) for y in ys] + [abs(offset) + frame_ms, 2 * frame_ms]) * 1.1
    y0, y1 = -span, span

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="offset per window" font-size="12" font-family="sans-serif">',
        f'<rect x="{left}" y="{py(offset + frame_ms):.1f}" width="{width - left - right}" '
        f'height="{py(offset - frame_ms) - py(offset + frame_ms):.1f}" fill="#1f77b4" opacity="0.12"/>',
    ]
    for y in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:+g}</text>')
    for x in _ticks(x0, x1):
        parts.append(f'<text x="{px(x):.1f}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
    parts += [
        f'<line x1="{left}" x2="{width - right}" y1="{py(offset):.1f}" y2="{py(offset):.1f}" stroke="#1f77b4" '
        'stroke-width="2" stroke-dasharray="6 4"/>',
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="#444"/>',
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="#444"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">window start (s)</text>',
        f'<text transform="translate(14 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
        "offset (ms)</text>",
    ]
    for w, x, y in zip(windows, xs, ys):
        conf = float(w["confidence"])
        parts.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="#d62728" fill-opacity="{0.2 + 0.8 * conf:.2f}">'
            f"<title>{x:.2f} s: {y:+.0f} ms, confidence {conf:.2f}</title></circle>"
        )
    return "".join(parts) + "</svg>"


# -- recognize -----------------------------------------------------------------------------------------------


def _recognize(folder: Path, doc: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str]:
    looked = f"{doc['looked_at']} of {doc['windows']} windows of {doc['window']:g} s"
    facts = [
        ("clip", doc["input"]),
        ("duration", f"{doc['duration']:.2f} s"),
        ("method", f"{doc['method']}: looked at {looked}" + (f", {doc['gmacs']:.2f} GMACs" if doc["gmacs"] else "")),
        ("checkpoint", doc.get("checkpoint", "?")),
    ]
    rows = "".join(
        f"<tr><td>{_e(t['label'])}</td><td>{t['probability']:.3f}</td>"
        f"<td>{_e(', '.join(f'{a:g}-{b:g} s' for a, b in t['segments']) or '-')}</td></tr>"
        for t in doc["top"]
    )
    body = (
        "<h2>The actions found, and when</h2>"
        f"<table><tr><th>action</th><th>probability</th><th>segments</th></tr>{rows}</table>"
        + _timeline(float(doc["duration"]), doc["top"], doc["moments"])
    )
    return doc["input"], facts, body


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _timeline(duration: float, top: list[dict[str, Any]], moments: list[dict[str, Any]]) -> str:
    """SVG: a row per top action with the segments that support it, and a row with every window looked at
    (its most likely class as a tooltip), over the clip's time axis."""
    width, left, right, row = 720, 130, 15, 28
    names = [t["label"] for t in top] + ["looked at"]
    height = 20 + row * len(names) + 30

    def px(t: float) -> float:
        return left + t / max(duration, 1e-6) * (width - left - right)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="timeline" font-size="12" font-family="sans-serif">'
    ]
    for i, name in enumerate(names):
        y = 20 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end">{_e(name)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{width - left - right}" height="{row - 8}" fill="#f3f3f3"/>')
    for i, t in enumerate(top):
        y, colour = 20 + i * row, _COLOURS[i % len(_COLOURS)]
        for a, b in t["segments"]:
            parts.append(
                f'<rect x="{px(a):.1f}" y="{y + 4}" width="{max(1.0, px(b) - px(a)):.1f}" height="{row - 8}" '
                f'fill="{colour}"><title>{_e(t["label"])}: {a:g}-{b:g} s</title></rect>'
            )
    y = 20 + len(top) * row
    colour_of = {t["label"]: _COLOURS[i % len(_COLOURS)] for i, t in enumerate(top)}
    for m in moments:
        parts.append(
            f'<rect x="{px(m["start"]):.1f}" y="{y + 4}" width="{max(1.0, px(m["end"]) - px(m["start"])):.1f}" '
            f'height="{row - 8}" fill="{colour_of.get(m["label"], "#999")}" stroke="#fff">'
            f"<title>{m['start']:g}-{m['end']:g} s: {_e(m['label'])} ({m['probability']:.2f})</title></rect>"
        )
    axis = 20 + len(names) * row
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{axis}" y2="{axis}" stroke="#444"/>')
    for t in _ticks(0.0, duration):
        parts.append(f'<text x="{px(t):.1f}" y="{axis + 16}" text-anchor="middle">{t:g} s</text>')
    return "".join(parts) + "</svg>"
