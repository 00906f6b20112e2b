"""Sampled instrument notes from a General MIDI soundfont, rendered once by fluidsynth and cached.

A bank maps ``name -> {midi_note: waveform}``. Rendering all notes of a bank is one ``fluidsynth`` call
(a MIDI file with one note every ``slot`` seconds); the result is cached as an ``.npz`` under
:func:`avlearn.data.worlds.common.cache_dir` keyed by the soundfont, the note list and the rate, so later
runs (and every worker of a pool) only load it. Each note's waveform starts at its onset: the first sample
whose level reaches 2% of the note's peak, so ``onset time = placement time`` exactly.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from avlearn.data.worlds.common import cache_dir, stable_hash

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/TimGM6mb.sf2")
DRUMS = -1  # "program" of the General MIDI percussion channel (10, index 9)
_VERSION = 1
_TICKS_PER_SECOND = 960  # 480 ticks per quarter note at 120 bpm
_LOADED: dict[Path, dict[str, dict[int, np.ndarray]]] = {}  # banks already read by this process


def find_soundfont() -> Path:
    """``$AVLEARN_SOUNDFONT`` or the first Debian GM soundfont installed.

    Raises:
        FileNotFoundError: none is installed (``apt-get install fluid-soundfont-gm``).
    """
    candidates = [os.environ.get("AVLEARN_SOUNDFONT", "")] + list(SOUNDFONTS)
    for path in candidates:
        if path and os.path.isfile(path):
            return Path(path)
    raise FileNotFoundError(
        "no General MIDI soundfont found; install one with `apt-get install fluid-soundfont-gm` "
        "(scripts/system-deps.sh) or point $AVLEARN_SOUNDFONT at an .sf2 file"
    )


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def midi_file(events: list[tuple[float, bytes]]) -> bytes:
    """A type-0 Standard MIDI File from ``(seconds, message bytes)`` events at 120 bpm."""
    track, last = b"", 0
    track += _vlq(0) + b"\xff\x51\x03" + (500_000).to_bytes(3, "big")  # 500,000 us per quarter note
    for seconds, message in sorted(events, key=lambda e: e[0]):
        tick = round(seconds * _TICKS_PER_SECOND)
        track += _vlq(tick - last) + message
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track


def _render(midi: bytes, soundfont: Path, sample_rate: int) -> np.ndarray:
    if shutil.which("fluidsynth") is None:
        raise FileNotFoundError(
            "fluidsynth is not installed; run `apt-get install fluidsynth` (scripts/system-deps.sh)"
        )
    with tempfile.TemporaryDirectory(prefix="avlearn-notebank-") as tmp:
        mid, wav = Path(tmp, "bank.mid"), Path(tmp, "bank.wav")
        mid.write_bytes(midi)
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(sample_rate)]
        subprocess.run([*cmd, "-F", str(wav), str(soundfont), str(mid)], check=True, capture_output=True)
        audio, _ = soundfile.read(wav, dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def load_bank(
    spec: dict[str, tuple[int, list[int]]],
    sample_rate: int,
    *,
    hold: float = 0.5,
    length: float = 1.2,
    velocity: int = 100,
) -> dict[str, dict[int, np.ndarray]]:
    """Loads (rendering and caching on first use) a bank of sampled notes.

    Args:
        spec: name -> (GM program 0-127, or ``DRUMS`` for the percussion kit; MIDI note numbers).
        sample_rate: output rate.
        hold: seconds between note-on and note-off.
        length: seconds kept of each note (faded out over its last 50 ms).
        velocity: MIDI velocity.

    Returns:
        name -> {note: ``(length * sample_rate,)`` float32, peak-normalized to 1, starting at its onset}.
    """
    soundfont = find_soundfont()
    key = stable_hash(_VERSION, str(soundfont), soundfont.stat().st_size, spec, sample_rate, hold, length, velocity)
    path = cache_dir() / "notebank" / f"{key:016x}.npz"
    if path in _LOADED:
        return _LOADED[path]
    if path.exists():
        with np.load(path) as data:
            _LOADED[path] = _unflatten(dict(data))
        return _LOADED[path]
    slot = length + 0.8
    events, order = [], []
    for name, (program, notes) in spec.items():
        for note in notes:
            t = 0.5 + len(order) * slot
            channel = 9 if program == DRUMS else 0
            if program != DRUMS:
                events.append((t - 0.25, bytes([0xC0 | channel, program])))
            events.append((t, bytes([0x90 | channel, note, velocity])))
            events.append((t + hold, bytes([0x80 | channel, note, 0])))
            order.append((name, note, t))
    audio = _render(midi_file(events), soundfont, sample_rate)
    n = int(round(length * sample_rate))
    fade = np.linspace(1.0, 0.0, int(0.05 * sample_rate), dtype=np.float32)
    flat = {}
    for name, note, t in order:
        s0 = int(round(t * sample_rate))
        seg = audio[s0 : s0 + int(slot * sample_rate)]
        peak = float(np.abs(seg).max()) if len(seg) else 0.0
        if peak < 1e-5:
            raise RuntimeError(f"fluidsynth rendered silence for {name} note {note} with {soundfont}")
        onset = int(np.argmax(np.abs(seg) >= 0.02 * peak))
        wave = np.zeros(n, np.float32)
        piece = seg[onset : onset + n]
        wave[: len(piece)] = piece / peak
        wave[-len(fade) :] *= fade
        flat[f"{name}/{note}"] = wave
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **flat)
    os.replace(tmp, path)
    _LOADED[path] = _unflatten(flat)
    return _LOADED[path]


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, dict[int, np.ndarray]]:
    bank: dict[str, dict[int, np.ndarray]] = {}
    for key, wave in flat.items():
        name, note = key.rsplit("/", 1)
        bank.setdefault(name, {})[int(note)] = wave.astype(np.float32)
    return bank
