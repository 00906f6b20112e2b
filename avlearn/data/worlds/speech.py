"""Speech with its phoneme timeline, from the espeak-ng library (``libespeak-ng.so.1``) through ctypes, or
from the ``flite`` program (voice names ``flite:NAME``), which prints each phone with its end time.

espeak-ng reports, while it synthesizes, an event at the start of every phoneme and every word with its
position in the audio, so the phoneme timeline is the one the waveform was made from (no alignment step).

Determinism: espeak-ng keeps synthesis state (noise generator, filter memories) from one utterance to the
next, so the same sentence sounds slightly different depending on what was said before in the process.
:func:`synthesize` therefore runs each batch of utterances in a freshly forked child that initializes the
library itself: a clip's speech depends only on that clip's requests (about 15 ms of overhead per batch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
from dataclasses import dataclass

import numpy as np

_EVENT_WORD, _EVENT_PHONEME, _EVENT_LIST_TERMINATED = 1, 7, 0
_RATE, _PITCH, _RANGE = 1, 3, 4
_OUTPUT_SYNCHRONOUS, _INITIALIZE_PHONEME_EVENTS = 2, 0x0001


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds from the start of the synthesis
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """One synthesized sentence.

    Attributes:
        wave: ``(S,)`` float32 at ``sample_rate``.
        sample_rate: espeak-ng's native rate (22050 Hz).
        phonemes: ``(start_s, end_s, phoneme)`` in espeak-ng's ASCII phoneme names; ``_`` is a pause.
        words: ``(start_s, end_s, word)``.
    """

    wave: np.ndarray
    sample_rate: int
    phonemes: list[tuple[float, float, str]]
    words: list[tuple[float, float, str]]


class Espeak:
    """A per-process handle on libespeak-ng; use :func:`espeak` to get the shared one."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self._lib = ctypes.cdll.LoadLibrary(name)
        except OSError as err:
            raise FileNotFoundError(
                "libespeak-ng is not installed; run `apt-get install espeak-ng` (scripts/system-deps.sh)"
            ) from err
        self.sample_rate = int(self._lib.espeak_Initialize(_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS))
        if self.sample_rate <= 0:
            raise RuntimeError("espeak_Initialize failed (is espeak-ng-data installed?)")
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (_EVENT_PHONEME, _EVENT_WORD):
                label = e.id.string.decode("ascii", "replace") if e.type == _EVENT_PHONEME else ""
                self._events.append((e.type, e.audio_position, e.text_position, e.length, label))
            i += 1
        return 0

    def synth(self, text: str, voice: str, *, rate: int = 170, pitch: int = 50, pitch_range: int = 50) -> Utterance:
        """Synthesizes ``text`` with ``voice`` (e.g. ``"en-us+f3"``), words per minute ``rate``, pitch 0-100."""
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices` and its variants)")
        for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        self._lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        wave = (np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768
        end = len(wave) / self.sample_rate
        phon = [(t / 1000, p) for kind, t, _, _, p in self._events if kind == _EVENT_PHONEME]
        phonemes = [(t, phon[i + 1][0] if i + 1 < len(phon) else end, p) for i, (t, p) in enumerate(phon)]
        raw = text.encode("utf-8")
        word_events = [(t / 1000, pos, n) for kind, t, pos, n, _ in self._events if kind == _EVENT_WORD]
        words = []
        for i, (t, pos, n) in enumerate(word_events):
            word = raw[pos - 1 : pos - 1 + n].decode("utf-8", "replace")  # text_position counts from 1
            # A word ends where its last non-pause phoneme ends (before the next word's start).
            nxt = word_events[i + 1][0] if i + 1 < len(word_events) else end
            inside = [e for s, e, p in phonemes if t <= s < nxt and not p.startswith("_")]
            words.append((t, max(inside) if inside else nxt, word))
        return Utterance(wave=wave, sample_rate=self.sample_rate, phonemes=phonemes, words=words)


_INSTANCE: Espeak | None = None


def espeak() -> Espeak:
    """The process's espeak-ng handle (created on first use). Prefer :func:`synthesize`, which is deterministic."""
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = Espeak()
    return _INSTANCE


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    voice: str
    rate: int = 170
    pitch: int = 50
    pitch_range: int = 50


# flite's voices (Debian package flite) and their natural mean f0 in Hz, scaled by a request's pitch.
FLITE_VOICES = {"kal16": 105.0, "awb": 125.0, "rms": 100.0, "slt": 170.0}


def flite_synth(text: str, voice: str, *, rate: int = 170, pitch: int = 50) -> Utterance:
    """Synthesizes ``text`` with the flite voice ``voice`` (a key of ``FLITE_VOICES``) via the ``flite`` program.

    flite prints each phone (CMU ARPAbet, ``pau`` = pause) with its end time; ``rate`` (words per minute,
    170 = natural) stretches durations and ``pitch`` 0-100 scales the voice's mean f0 by 0.8-1.2.
    """
    import shutil
    import subprocess
    import tempfile

    import soundfile

    if voice not in FLITE_VOICES:
        raise ValueError(f"flite has no voice {voice!r}; choose one of {', '.join(FLITE_VOICES)}")
    if shutil.which("flite") is None:
        raise FileNotFoundError("flite is not installed; run `apt-get install flite` (scripts/system-deps.sh)")
    f0 = FLITE_VOICES[voice] * (0.8 + 0.4 * pitch / 100)
    with tempfile.TemporaryDirectory(prefix="avlearn-flite-") as tmp:
        wav_path = os.path.join(tmp, "speech.wav")
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={170 / rate:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={f0:.1f}", "-psdur", "-t", text, "-o", wav_path]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        wave, sample_rate = soundfile.read(wav_path, dtype="float32")
    phonemes, start = [], 0.0
    for item in out.split():
        name, _, end = item.rpartition(":")
        phonemes.append((start, float(end), "_" if name == "pau" else name))
        start = float(end)
    return Utterance(wave=wave, sample_rate=int(sample_rate), phonemes=phonemes, words=[])


def _synthesize_here(requests: list[SpeechRequest]) -> list[Utterance]:
    ctypes.CDLL(None).srand(1)  # espeak-ng draws its noise from libc rand()
    out = []
    for r in requests:
        if r.voice.startswith("flite:"):
            out.append(flite_synth(r.text, r.voice.split(":", 1)[1], rate=r.rate, pitch=r.pitch))
        else:
            out.append(espeak().synth(r.text, r.voice, rate=r.rate, pitch=r.pitch, pitch_range=r.pitch_range))
    return out


@dataclass(frozen=True)
class SpeechPlan:
    """One speaker's sentences in a clip: said one after another from ``start`` with ``pauses`` between them,
    until a sentence would start later than ``stop`` seconds (the rest are never synthesized)."""

    requests: tuple[SpeechRequest, ...]
    start: float
    pauses: tuple[float, ...]
    stop: float


def _synthesize_plans_here(plans: list[SpeechPlan]) -> list[list[Utterance]]:
    out = []
    for plan in plans:
        said, t = [], plan.start
        for request, pause in zip(plan.requests, plan.pauses):
            if t >= plan.stop:
                break
            (utt,) = _synthesize_here([request])
            said.append(utt)
            t += len(utt.wave) / utt.sample_rate + pause
        out.append(said)
    return out


def _in_child(fn, arg):
    """Runs ``fn(arg)`` in a freshly forked child process and returns its (pickled) result."""
    if not hasattr(os, "fork"):  # no fork (Windows): in-process, deterministic only for a fresh process
        return fn(arg)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(read_fd)
            try:
                payload = pickle.dumps(("ok", fn(arg)))
            except BaseException as err:  # report it to the parent
                payload, code = pickle.dumps(("error", err)), 1
            with os.fdopen(write_fd, "wb") as f:
                f.write(payload)
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        payload = f.read()
    os.waitpid(pid, 0)
    if not payload:
        raise RuntimeError("the speech synthesis child process died without an answer")
    status, value = pickle.loads(payload)
    if status == "error":
        raise value
    return value


def synthesize(requests: list[SpeechRequest]) -> list[Utterance]:
    """Synthesizes ``requests`` in order in a fresh child process, so the result depends only on them.

    Raises:
        FileNotFoundError: libespeak-ng or flite is missing.
        ValueError: an unknown voice.
    """
    return _in_child(_synthesize_here, list(requests))


def synthesize_plans(plans: list[SpeechPlan]) -> list[list[Utterance]]:
    """Synthesizes each plan's sentences until its ``stop`` time, in a fresh child process (deterministic)."""
    return _in_child(_synthesize_plans_here, list(plans))


# espeak-ng phoneme name -> (mouth opening 0-1, mouth width 0.5-1.2): a small viseme table.
_CLOSED = set("pbm")
_LABIODENTAL = set("fv")
_ROUNDED = {"u:", "U", "w", "oU", "O:", "O", "O@", "u@", "U@", "aU", "OI", "o@"}
_OPEN = {"a", "a:", "A:", "aI", "aI@", "aU", "A@", "0", "V", "a#", "aa", "e@", "A"}
_MID = {"e", "E", "eI", "@", "3:", "3", "@2", "@5", "@L", "I", "I2", "i", "i:", "i@", "I#", "e#", "E2", "E@"}
# flite's CMU ARPAbet phones (lower case)
_ROUNDED |= {"uw", "uh", "ow", "ao", "aw", "oy"}
_OPEN |= {"aa", "ae", "ah", "ay"}
_MID |= {"eh", "ey", "ih", "iy", "ax", "er", "axr"}


def viseme(phoneme: str) -> tuple[float, float]:
    """Mouth (opening, width) for an espeak-ng phoneme name; pauses and unknown names map to rest values."""
    p = phoneme.strip("'ˈ,%=")
    if not p or p.startswith("_") or p == ";":
        return 0.0, 0.85
    if p in _CLOSED:
        return 0.0, 0.8
    if p in _LABIODENTAL:
        return 0.12, 0.9
    if p in _OPEN:
        return 1.0, 1.0
    if p in _ROUNDED:
        return 0.5, 0.6
    if p in _MID:
        return 0.6, 1.1
    if p in ("w", "r"):
        return 0.3, 0.6
    if p[0] in "aAeEiIoOuUV03@":
        return 0.6, 1.0
    return 0.25, 0.95  # other consonants: teeth nearly together
