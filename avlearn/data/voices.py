"""Real voices for audio-only separation: the recorded speech of many people, mixed a few at a time on the fly.

The speakers world's voices are synthesized; a separator that must give real people's voices back has to
hear real ones. A :class:`VoicePool` holds each speaker's speech as one waveform (long pauses cut out, so a
random window almost always holds speech) from two kinds of source:

- a manifest of real clips (``python -m avlearn.data.real``): every clip with one person whose ``kind`` is
  speech gives that person's voice (their soundtrack is their own voice); the people of a split stay in it,
  so the held-out people are never heard in training;
- a folder of one speaker's recordings (the asterisk prompts, ``/usr/share/asterisk/sounds/en_US_f_Allison``:
  ``.g722`` at 16 kHz or ``.wav``), the speaker named by the folder's last ``_`` part (``Allison``: her
  English and Spanish prompts are one voice).

:class:`VoiceMixtures` draws mixtures of different speakers (random windows, random gains around equal
loudness) for permutation-invariant training: ``{"mixture", "sources", "valid"}`` as
:class:`avlearn.data.separation.MixTracks` gives, without crops.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from avlearn.data.clips import Draw, draw_key
from avlearn.data.manifest import read_manifest
from avlearn.io import read_audio, read_clip
from avlearn.io.write import atomic_path

LEVEL = 0.05  # RMS of a source at 0 dB gain
FRAME_S = 0.02  # pause detection frames
PAUSE_DB = 35.0  # frames this far below the speaker's loud frames (95th percentile) are pauses
ROOM_RT60_S = (0.15, 0.7)  # reverberation times of the random rooms: small office to living room
ROOM_DRR_DB = (0.0, 12.0)  # their direct-to-reverberant ratios: a talker 0.5-2 m from the microphone
KEEP_PAUSE_S = 0.1  # pauses are shortened to this, not removed, so words keep their edges


@dataclass
class VoicePool:
    """Speakers ``names[i]`` with their speech ``audio[i]`` ``(S_i,)`` float32 at ``sample_rate``."""

    names: list[str]
    audio: list[torch.Tensor]
    sample_rate: int

    def seconds(self) -> dict[str, float]:
        return {n: round(len(a) / self.sample_rate, 1) for n, a in zip(self.names, self.audio)}


def squeeze_pauses(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """``wav`` with every pause (frames ``PAUSE_DB`` below the loud ones) shortened to ``KEEP_PAUSE_S``."""
    n = round(FRAME_S * sample_rate)
    frames = len(wav) // n
    if frames == 0:
        return wav
    rms = np.sqrt((wav[: frames * n].reshape(frames, n) ** 2).mean(1) + 1e-12)
    loud = rms > np.percentile(rms, 95) * 10 ** (-PAUSE_DB / 20)
    keep = loud.copy()
    run = 0
    for i in range(frames):  # keep the first KEEP_PAUSE_S of each pause
        run = 0 if loud[i] else run + 1
        keep[i] |= 0 < run <= round(KEEP_PAUSE_S / FRAME_S)
    return wav[: frames * n].reshape(frames, n)[keep].reshape(-1)


def _folder_speech(folder: Path, sample_rate: int) -> np.ndarray:
    """One speaker's recordings in a folder: the ``.g722`` files (raw G.722 streams, decoded as one) or the
    ``.wav`` files, in name order."""
    import av

    parts = []
    g722 = sorted(folder.rglob("*.g722"))
    if g722:
        raw = io.BytesIO(b"".join(p.read_bytes() for p in g722))
        with av.open(raw, format="g722") as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(audio=0):
                parts += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    else:
        parts = [read_audio(p, sample_rate)[0][0].numpy() for p in sorted(folder.rglob("*.wav"))]
    if not parts:
        raise FileNotFoundError(f"{folder}: no .g722 or .wav recordings")
    return np.concatenate(parts).astype(np.float32)


def _manifest_speech(manifest: str, sample_rate: int) -> dict[str, list[np.ndarray]]:
    """Each person's soundtracks in a real-clip manifest (rows with one person speaking)."""
    voices: dict[str, list[np.ndarray]] = {}
    for row in read_manifest(manifest):
        meta = row.get("meta", {})
        if len(meta.get("people", [])) != 1 or not str(meta.get("kind", "")).startswith("speech"):
            continue
        clip = read_clip(row["path"], row["start"], row["end"] - row["start"], sample_rate=sample_rate, video=False)
        voices.setdefault(meta["people"][0], []).append(clip.audio[0].numpy())
    return voices


def load_voices(sources: list[str], sample_rate: int = 16000, cache_dir: str | Path | None = None) -> VoicePool:
    """The voices of ``sources`` (manifests and speaker folders, see the module docstring), pauses squeezed.

    A source with a ``*`` is a pattern of folders (``data/voices/mbrola/*``: one speaker per folder). With
    ``cache_dir`` the decoded pool is kept there as one safetensors file named by the sources and rate
    (decoding the asterisk folders takes a minute; training runs read the file).
    """
    sources = [p for s in sources for p in (sorted(glob.glob(s)) if "*" in s else [s])]
    key = hashlib.sha1(json.dumps([sorted(sources), sample_rate]).encode()).hexdigest()[:12]
    cached = Path(cache_dir) / f"voices-{key}.safetensors" if cache_dir else None
    if cached is not None and cached.exists():
        tensors = load_file(cached)
        names = sorted(tensors)
        return VoicePool(names, [tensors[n] for n in names], sample_rate)
    voices: dict[str, list[np.ndarray]] = {}
    for src in sources:
        if Path(src).is_dir():
            voices.setdefault(Path(src).name.split("_")[-1], []).append(_folder_speech(Path(src), sample_rate))
        else:
            for person, parts in _manifest_speech(src, sample_rate).items():
                voices.setdefault(person, []).extend(parts)
    names = sorted(voices)
    audio = [torch.from_numpy(squeeze_pauses(np.concatenate(voices[n]), sample_rate)) for n in names]
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            save_file({n: a.contiguous() for n, a in zip(names, audio)}, str(tmp))
    return VoicePool(names, audio, sample_rate)


def room_response(g: torch.Generator, sample_rate: int) -> torch.Tensor:
    """A random room's impulse response: the direct sound, then exponentially decaying noise (reverberation
    time RT60 of ``ROOM_RT60_S``, direct-to-reverberant ratio of ``ROOM_DRR_DB``), the statistical model of
    a diffuse late reverberation (Polack)."""
    lo, hi = ROOM_RT60_S
    rt60 = lo + (hi - lo) * float(torch.rand((), generator=g))
    t = torch.arange(round(rt60 * sample_rate)) / sample_rate
    tail = torch.randn(len(t), generator=g) * torch.exp(-6.91 * t / rt60)  # -60 dB at rt60
    lo, hi = ROOM_DRR_DB
    drr = lo + (hi - lo) * float(torch.rand((), generator=g))
    tail = tail / tail.norm() * 10 ** (-drr / 20)
    tail[0] = 1.0
    return tail


class VoiceMixtures(torch.utils.data.Dataset):
    """Mixtures of ``num_mix`` different speakers of a pool: each a random ``window`` of their speech at RMS
    ``LEVEL`` times a random gain of up to ``gain_db`` dB, summed.

    Item ``i`` (of ``length``) starts from speaker ``i mod speakers``, so every speaker is drawn equally
    often; the rest is random, seeded by (seed, epoch, i), or by (seed, i) alone when ``deterministic`` (the
    fixed validation mixtures). With ``reverb`` that share of the sources is heard in a random room
    (:func:`room_response`), and that reverberant voice is its target: a real clip's voice, which the separator
    must give back, carries its room, while most training voices (MBROLA, prompts) are dry.
    """

    def __init__(
        self,
        pool: VoicePool,
        window: float,
        num_mix: int = 2,
        gain_db: float = 5.0,
        length: int = 4000,
        deterministic: bool = False,
        seed: int = 0,
        reverb: float = 0.0,
    ):
        if len(pool.names) < num_mix:
            raise ValueError(f"{num_mix}-speaker mixtures need {num_mix} speakers, the pool has {len(pool.names)}")
        self.pool, self.num_mix, self.gain_db = pool, num_mix, gain_db
        self.num_samples = round(window * pool.sample_rate)
        self.length, self.deterministic, self.seed, self.reverb = length, deterministic, seed, reverb

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | Draw) -> dict[str, torch.Tensor]:
        index, epoch, _ = draw_key(key)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + (0 if self.deterministic else epoch) * 7919 + index)
        num = len(self.pool.names)
        first = index % num
        others = [s for s in torch.randperm(num, generator=g).tolist() if s != first]
        sources = torch.zeros(self.num_mix, self.num_samples)
        for i, s in enumerate([first] + others[: self.num_mix - 1]):
            wav = self.pool.audio[s]
            if len(wav) < self.num_samples:  # a short voice is looped
                wav = wav.repeat(-(-self.num_samples // len(wav)))
            s0 = int(torch.randint(len(wav) - self.num_samples + 1, (1,), generator=g))
            piece = wav[s0 : s0 + self.num_samples].float()  # a cache may hold float16
            if self.reverb and torch.rand((), generator=g) < self.reverb:  # no draw without reverb: old runs replay
                rir = room_response(g, self.pool.sample_rate)
                spectrum = torch.fft.rfft(piece, 2 * self.num_samples) * torch.fft.rfft(rir, 2 * self.num_samples)
                piece = torch.fft.irfft(spectrum, 2 * self.num_samples)[: self.num_samples]
            gain = 10 ** ((torch.rand((), generator=g) * 2 - 1) * self.gain_db / 20)
            sources[i] = piece / (piece.pow(2).mean().sqrt() + 1e-5) * LEVEL * gain
        valid = torch.ones(self.num_mix, dtype=torch.bool)
        return {"mixture": sources.sum(0), "sources": sources, "valid": valid}
