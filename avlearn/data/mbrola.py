"""Many more real voices for separation training: MBROLA's diphone voices, spoken through espeak-ng.

Each MBROLA voice is a set of diphones cut from one real speaker's recordings (75 voices in Debian's
contrib/non-free sections, 26 languages, men and women), so what espeak-ng makes with it has that person's
timbre and formants, with espeak's prosody. Speaker count is what limits a separator trained on the few
real people of ``../shared/real-av`` (docs/separation.md): this adds a voice per installed MBROLA database.

Text is English prose found on every Debian system (the licence texts in ``/usr/share/common-licenses``),
split into sentences; a voice of another language reads it by its own language's rules, which keeps its
phonetics. Each sentence is spoken at a random pitch and speed around the voice's own, so one voice does
not repeat one melody. Voices whose output is empty (a language that cannot read Latin script) are skipped.

    apt-get install mbrola 'mbrola-*'     # after adding contrib non-free to the apt sources
    python -m avlearn.data.mbrola --out data/voices/mbrola --seconds 90

writes ``OUT/mbrola_<voice>/NNNN.wav`` (16 kHz), one folder per voice, which
:func:`avlearn.data.voices.load_voices` reads as one speaker each (``train_folders: [data/voices/mbrola/*]``).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

TEXT_DIR = Path("/usr/share/common-licenses")
MBROLA_DIR = Path("/usr/share/mbrola")
PITCH = (25, 75)  # espeak-ng -p range (50 is the voice's own)
SPEED = (135, 195)  # words per minute (espeak-ng's default is 175)


def sentences(text_dir: Path = TEXT_DIR, min_words: int = 5, max_words: int = 30) -> list[str]:
    """Sentences of ``min_words`` to ``max_words`` words from the text files of ``text_dir``."""
    found = []
    for path in sorted(p for p in text_dir.iterdir() if p.is_file()):
        text = re.sub(r"\s+", " ", path.read_text(errors="ignore"))
        for s in re.split(r"(?<=[.;:!?])\s+", text):
            s = re.sub(r"\s+", " ", re.sub(r"[^A-Za-z ,.'-]", " ", s)).strip(" ,.'-")
            if min_words <= len(s.split()) <= max_words:
                found.append(s)
    return sorted(set(found))


def installed_voices(mbrola_dir: Path = MBROLA_DIR) -> list[str]:
    """The MBROLA databases installed (``us1``, ``de4``, ...)."""
    return sorted(p.name for p in mbrola_dir.iterdir() if p.is_dir()) if mbrola_dir.is_dir() else []


def speak(voice: str, text: str, pitch: int, speed: int, path: Path) -> float:
    """``text`` by ``mb-<voice>`` into ``path`` (wav); returns its RMS (0: the voice said nothing or failed,
    as espeak-ng does for a voice without a text reader for Latin script)."""
    cmd = ["espeak-ng", "-v", f"mb-{voice}", "-p", str(pitch), "-s", str(speed), "-w", str(path), text]
    if subprocess.run(cmd, capture_output=True, timeout=60).returncode != 0 or not path.exists():
        path.unlink(missing_ok=True)
        return 0.0
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return float(np.sqrt(np.mean((pcm / 32768.0) ** 2))) if len(pcm) else 0.0


def make_voice(voice: str, text: list[str], out: Path, seconds: float, seed: int) -> float:
    """About ``seconds`` of ``voice`` reading random sentences, as numbered wavs in ``out/mbrola_<voice>``.

    The folder is written beside its final place and moved there whole, so a killed run leaves no half voice.
    Returns the seconds written (0 and no folder when the voice says nothing).
    """
    final = out / f"mbrola_{voice}"
    if final.is_dir():
        return sum(_seconds(p) for p in final.glob("*.wav"))
    rng = random.Random(f"{seed}-{voice}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{voice}-", dir=out))
    total, index, silent = 0.0, 0, 0
    try:
        while total < seconds:
            path = tmp / f"{index:04d}.wav"
            if speak(voice, rng.choice(text), rng.randint(*PITCH), rng.randint(*SPEED), path) < 1e-3:
                path.unlink(missing_ok=True)
                silent += 1
                if silent > index + 2:  # mostly silent: this voice cannot read the text
                    return 0.0
                continue
            total += _seconds(path)
            index += 1
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return total


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for mbrola_<voice>/ folders of wavs")
    parser.add_argument("--seconds", type=float, default=90.0, help="speech per voice")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    voices = installed_voices()
    if not voices or shutil.which("espeak-ng") is None:
        raise SystemExit("no MBROLA voices or no espeak-ng: apt-get install espeak-ng mbrola 'mbrola-*' (contrib)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = sentences()
    for voice in voices:
        seconds = make_voice(voice, text, out, args.seconds, args.seed)
        print(f"{voice}: {seconds:.0f} s" if seconds else f"{voice}: silent, skipped", flush=True)


if __name__ == "__main__":
    main()
