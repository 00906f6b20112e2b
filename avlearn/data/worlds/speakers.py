"""The ``speakers`` world: 1-3 talking faces, each with its own synthetic voice and random sentences.

Speech comes from espeak-ng (8 English accents x 60 voice variants) and, for about 30% of the faces, from
flite's more natural voices (kal16, rms, slt, awb), with pitch and speed drawn per clip, together with the
phoneme timeline each synthesizer reports; each face's mouth follows its own phonemes through a
viseme table (opening and width per phoneme, smoothed like a real mouth), with head motion and blinks.
Some faces do not speak in a clip (listeners: their mouths make small idle movements).

Why both modalities are needed: which face is talking, and which voice belongs to which face, is only
known by matching mouth motion to the speech; the audio-visual offset is identifiable because the mouth's
opening follows the irregular syllable rhythm of the speech.

Held-out identities: espeak-ng voice variants and words are split by a fixed hash into train / val / test
(about 70 / 15 / 15%), flite voices by hand (awb is test-only); a test clip uses only test voices and
sentences built only from test words.

The faces are drawn to be found by OpenCV's frontal Haar cascade (see ``benchmarks/face_detect.py``):
dim eye whites, dark brows and a skin-coloured face without hard inner edges.

Ground truth per frame: face box, mouth box, mouth opening, blink and speaking flags of each face;
per-speaker stems, transcripts, word and phoneme timings.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter, resample_poly

from avlearn.data.worlds import common
from avlearn.data.worlds.common import RenderedClip, WorldConfig
from avlearn.data.worlds.speech import SpeechPlan, SpeechRequest, synthesize, synthesize_plans, viseme

NAME = "speakers"
DEFAULT_DURATION = 2.0

ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc")
VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 Alex Alicia Andrea Andy Annie Denis Diogo "
    "Gene Gene2 Henrique Hugo Jacky Lee Marco Mario Michael Mike Storm adam anika announcer antonio aunty belinda "
    "benjamin boris caleb david ed edward edward2 gustave iven iven2 john linda max michel norbert paul quincy rob "
    "robert steph steph2 travis victor"
).split()

_NOUNS = (
    "apple bottle garden window river doctor teacher kitten puppy market basket candle pencil blanket castle "
    "engine forest harbor island jacket kettle ladder mirror needle orange pillow rocket saddle table tunnel "
    "violin wagon yellow zebra baker button camera dragon farmer guitar hammer lemon meadow number painter "
    "rabbit sailor tiger summer winter village wallet barrel carpet parrot pocket shadow planet silver spider "
    "feather lantern marble pepper ribbon"
).split()
_ADJECTIVES = (
    "big small happy quiet bright heavy gentle rapid golden silent early narrow frozen hollow little modern "
    "purple rusty simple tiny windy ancient clever dusty empty famous fuzzy gloomy hungry lucky noisy polite "
    "proud shiny sleepy sticky tender wooden yellow brave calm"
).split()
_VERBS = (
    "carry:carried open:opened paint:painted follow:followed clean:cleaned fix:fixed move:moved push:pushed "
    "pull:pulled watch:watched visit:visited borrow:borrowed count:counted lift:lifted order:ordered "
    "answer:answered help:helped jump:jumped kick:kicked love:loved call:called climb:climbed fill:filled "
    "wash:washed drop:dropped hide:hid find:found sell:sold build:built catch:caught bring:brought keep:kept "
    "hold:held throw:threw draw:drew"
).split()
_NAMES = (
    "Anna Ben Clara David Emma Frank Grace Henry Iris Jack Kate Leo Maria Nick Olga Paul Rosa Sam Tina Victor".split()
)


def _split_list(items: list[str], split: str, tag: str) -> list[str]:
    return [w for w in items if common.split_of((tag, w)) == split]


def vocabulary(split: str) -> dict[str, list]:
    """Words of a split: nouns, adjectives, verbs (base, past), names; disjoint across splits."""
    verbs = [tuple(v.split(":")) for v in _VERBS]
    return {
        "noun": _split_list(_NOUNS, split, "noun"),
        "adj": _split_list(_ADJECTIVES, split, "adj"),
        "verb": [v for v in verbs if common.split_of(("verb", v[0])) == split],
        "name": _split_list(_NAMES, split, "name"),
    }


# flite's natural-sounding voices, held out by hand: slt is the only female one, so it stays in train; awb is
# test-only; val has none.
FLITE_SPLITS = {"kal16": "train", "rms": "train", "slt": "train", "awb": "test"}
FLITE_RATE = 0.3  # share of faces that speak with a flite voice, where the split has one


def voices(split: str) -> list[str]:
    """espeak-ng voice variants of a split (held out by variant: a test variant is never heard in training)."""
    return [v for v in VARIANTS if common.split_of(("voice", v)) == split]


def flite_voices(split: str) -> list[str]:
    """flite voices of a split, as ``flite:NAME``."""
    return [f"flite:{v}" for v, s in FLITE_SPLITS.items() if s == split]


def sentence(rng: np.random.Generator, vocab: dict[str, list]) -> str:
    """A short random sentence (3-7 words) from the split's vocabulary."""
    noun = lambda: str(rng.choice(vocab["noun"]))
    adj = lambda: str(rng.choice(vocab["adj"]))
    verb = lambda: vocab["verb"][int(rng.integers(len(vocab["verb"])))]
    name = lambda: str(rng.choice(vocab["name"])) if vocab["name"] else "Sam"
    templates = [
        lambda: f"the {adj()} {noun()} {verb()[1]} the {noun()}",
        lambda: f"{name()} {verb()[1]} a {adj()} {noun()}",
        lambda: f"please {verb()[0]} the {noun()}",
        lambda: f"my {noun()} is {adj()}",
        lambda: f"{name()} will {verb()[0]} the {adj()} {noun()}",
        lambda: f"why did the {noun()} {verb()[0]} it",
    ]
    return templates[int(rng.integers(len(templates)))]()


def prepare(config: WorldConfig) -> None:
    """Checks that espeak-ng and flite work and know the voices (in a child process, as rendering does)."""
    requests = [SpeechRequest("ok", f"en-us+{voices(s)[0]}") for s in common.SPLITS]
    synthesize(requests + [SpeechRequest("ok", v) for v in flite_voices("train") + flite_voices("test")])


# -------------------------------------------------------------------------------------------------- faces

_SKIN = np.array(
    [[255, 224, 196], [241, 194, 167], [224, 172, 138], [198, 134, 99], [170, 115, 80], [141, 85, 54], [110, 66, 40]],
    np.float64,
)
_HAIR = np.array(
    [[20, 15, 10], [60, 40, 25], [100, 70, 40], [190, 150, 90], [150, 60, 30], [130, 130, 130]], np.float64
)


def draw_face(img: np.ndarray, face: dict, cx: float, cy: float, h: float, roll: float, mouth: tuple, blink: float):
    """Draws one head and shoulders; returns (face box, mouth box) as ``[x0, y0, x1, y1]`` float arrays.

    ``h`` is the face height (forehead to chin), ``roll`` in degrees, ``mouth`` = (opening 0-1, width factor),
    ``blink`` in [0, 1] (1 = eyes closed).
    """
    w = 0.78 * h
    c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))

    def at(dx, dy):
        return (cx + dx * c - dy * s, cy + dx * s + dy * c)

    skin, hair = face["skin"], face["hair"]
    common.fill_ellipse(img, at(0, 1.0 * h), (0.95 * w, 0.4 * h), roll, face["shirt"])  # shoulders
    common.fill_ellipse(img, at(0, 0.55 * h), (0.22 * w, 0.25 * h), roll, skin * 0.75)  # neck
    common.fill_ellipse(img, at(0, -0.12 * h), (0.57 * w, 0.58 * h * face["hair_len"]), roll, hair)
    common.fill_ellipse(img, at(0, 0.03 * h), (0.5 * w, 0.5 * h), roll, skin)
    lit = np.minimum(skin * 1.08 + 8, 255)  # key light on forehead and cheeks: the contrast a detector keys on
    common.fill_ellipse(img, at(0, -0.3 * h), (0.3 * w, 0.1 * h), roll, lit)
    for side in (-1, 1):
        common.fill_ellipse(img, at(side * 0.22 * w, 0.08 * h), (0.15 * w, 0.08 * h), roll, lit)
    for side in (-1, 1):
        ex, ey = side * 0.22 * w, -0.1 * h
        common.fill_ellipse(img, at(ex, ey), (0.17 * w, 0.08 * h), roll, skin * 0.5)  # eye socket
        brow = 0.045 * h
        brow_color = np.minimum(hair * 0.8, skin * 0.4)  # brows always darker than the skin
        common.draw_line(img, at(side * 0.36 * w, -0.2 * h), at(side * 0.08 * w, -0.22 * h), brow_color, brow)
        open_h = 0.045 * h * (1.0 - blink)
        if open_h > 0.01 * h:
            common.fill_ellipse(img, at(ex, ey), (0.1 * w, open_h), roll, skin * 0.7)  # dim eye white
            common.fill_ellipse(img, at(ex, ey), (0.055 * w, min(open_h, 0.055 * w)), roll, face["iris"])
        else:
            common.draw_line(img, at(ex - 0.1 * w, ey), at(ex + 0.1 * w, ey), (50, 35, 35), 0.02 * h)
    common.fill_ellipse(img, at(0, 0.02 * h), (0.06 * w, 0.13 * h), roll, np.minimum(skin * 1.1, 255))  # nose ridge
    common.fill_ellipse(img, at(0, 0.13 * h), (0.09 * w, 0.035 * h), roll, skin * 0.7)  # nostrils
    opening, width = mouth
    mo = 0.012 * h + opening * 0.06 * h
    mw = 0.17 * w * width
    my = 0.28 * h
    common.fill_ellipse(img, at(0, my), (mw + 0.03 * w, mo + 0.022 * h), roll, face["lips"])
    common.fill_ellipse(img, at(0, my), (mw, mo), roll, (45, 18, 22))
    mcx, mcy = at(0, my)
    face_box = np.array([cx - 0.5 * w, cy - 0.47 * h, cx + 0.5 * w, cy + 0.53 * h], np.float32)
    ext_x, ext_y = mw + 0.03 * w, mo + 0.022 * h
    mouth_box = np.array([mcx - ext_x, mcy - ext_y, mcx + ext_x, mcy + ext_y], np.float32)
    return face_box, mouth_box


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ [0.299, 0.587, 0.114])


def _random_face(rng: np.random.Generator) -> dict:
    skin = np.clip(_SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.92, 1.04) + rng.uniform(-6, 6, 3), 0, 255)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.85, 1.1)
    if abs(_luma(hair) - _luma(skin)) < 50:  # hair the colour of the skin hides the face's outline
        hair = hair * 0.3 if _luma(skin) > 100 else np.minimum(hair * 1.8 + 40, 255)
    return {
        "skin": skin,
        "hair": hair,
        "hair_len": rng.uniform(0.95, 1.2),
        "iris": rng.choice([[35, 30, 40], [50, 70, 110], [60, 90, 50], [80, 50, 30]]),
        "lips": np.array([rng.uniform(140, 190), rng.uniform(60, 90), rng.uniform(65, 95)]),
        "shirt": rng.uniform(30, 220, 3),
    }


def _smooth_track(values: np.ndarray, rate: float, tau: float) -> np.ndarray:
    """Zero-phase smoothing: a one-pole low-pass with time constant ``tau`` s run forward then backward."""
    a = np.exp(-1.0 / (rate * tau))
    forward = lfilter([1 - a], [1, -a], values.astype(np.float64), zi=[a * values[0]])[0]
    return lfilter([1 - a], [1, -a], forward[::-1], zi=[a * forward[-1]])[0][::-1]


def _mouth_tracks(phonemes: list[tuple[float, float, str]], duration: float, rate: float = 200.0):
    """Opening and width of the mouth sampled at ``rate`` Hz over ``duration`` s, smoothed (~25 ms)."""
    n = int(np.ceil(duration * rate)) + 1
    opening, width = np.zeros(n), np.full(n, 0.85)
    for start, end, p in phonemes:
        o, w = viseme(p)
        i0, i1 = int(start * rate), max(int(start * rate) + 1, int(end * rate))
        opening[i0:i1], width[i0:i1] = o, w
    return _smooth_track(opening, rate, 0.025), _smooth_track(width, rate, 0.025)


def render(index: int, seed: int, split: str, config: WorldConfig) -> RenderedClip:
    """Renders clip ``index`` of the given split; a pure function of its arguments."""
    common.check_split(split)
    rng = common.clip_rng(NAME, seed, split, index)
    duration = float(config.duration or DEFAULT_DURATION)
    size, fps, sr = config.size, config.fps, config.sample_rate
    num_frames, num_samples = int(round(duration * fps)), int(round(duration * sr))
    vocab, voice_pool = vocabulary(split), voices(split)

    num_faces = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    # Listeners: in multi-face clips, a face may stay silent; at least one face speaks.
    speaking = [True] + [bool(rng.uniform() < 0.8) for _ in range(num_faces - 1)]
    rng.shuffle(speaking)
    face_h = size * {1: 0.5, 2: 0.4, 3: 0.3}[num_faces]
    # Three faces stand like a group photo (middle one behind and higher): side by side at one height they
    # crowd each other and the detector misses more of them.
    slot_y = {1: [0.42], 2: [0.42, 0.42], 3: [0.5, 0.33, 0.5]}[num_faces]
    slot_x = (np.arange(num_faces) + 0.5) / num_faces * size
    frame_times = np.arange(num_frames) / fps
    variant_draw = rng.choice(len(voice_pool), size=num_faces, replace=False)
    flite_pool = flite_voices(split)
    flite_draw = rng.choice(len(flite_pool), size=num_faces) if flite_pool else [0] * num_faces
    use_flite = (rng.uniform(0, 1, num_faces) < FLITE_RATE) & bool(flite_pool)
    for k in range(num_faces):  # never the same flite voice twice in a clip
        if use_flite[k] and any(use_flite[j] and flite_draw[j] == flite_draw[k] for j in range(k)):
            use_flite[k] = False

    # Draw every face's plan first, then synthesize all its speech in one deterministic batch.
    max_sentences = int(duration / 0.7) + 2
    plans = []
    for k in range(num_faces):
        plan = {
            "face": _random_face(rng),
            "voice": flite_pool[flite_draw[k]]
            if use_flite[k]
            else f"{rng.choice(ACCENTS)}+{voice_pool[variant_draw[k]]}",
            "wpm": int(rng.integers(140, 200)),
            "pitch": int(rng.integers(25, 75)),
            "prange": int(rng.integers(30, 80)),
            "t0": float(rng.uniform(0.0, 0.35)),
            "texts": [sentence(rng, vocab) for _ in range(max_sentences)] if speaking[k] else [],
            "gains": rng.uniform(0.5, 0.9, max_sentences),
            "pauses": rng.uniform(0.25, 0.8, max_sentences),
        }
        plans.append(plan)
    speech = synthesize_plans(
        [
            SpeechPlan(
                requests=tuple(SpeechRequest(t, p["voice"], p["wpm"], p["pitch"], p["prange"]) for t in p["texts"]),
                start=p["t0"],
                pauses=tuple(float(x) for x in p["pauses"]),
                stop=duration - 0.3,
            )
            for p in plans
        ]
    )

    faces, stems, sources = [], {}, []
    rate = 200.0  # Hz of the mouth tracks
    for k, plan in enumerate(plans):
        face, voice = plan["face"], plan["voice"]
        wpm, pitch, prange = plan["wpm"], plan["pitch"], plan["prange"]
        stem = np.zeros(num_samples, np.float32)
        phonemes, words, texts = [], [], []
        t = plan["t0"]
        for j, utt in enumerate(speech[k]):
            text = plan["texts"][j]
            wave = resample_poly(utt.wave, sr, utt.sample_rate).astype(np.float32)
            wave /= max(float(np.abs(wave).max()), 1e-6)
            common.place(stem, wave * float(plan["gains"][j]), int(round(t * sr)))
            phonemes += [(round(t + s, 4), round(t + e, 4), p) for s, e, p in utt.phonemes if t + s < duration]
            words += [(round(t + s, 4), round(t + e, 4), w) for s, e, w in utt.words if t + s < duration]
            texts.append(text)
            t += len(wave) / sr + float(plan["pauses"][j])
        fade = int(0.02 * sr)
        stem[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)  # no click where the clip cuts a sentence
        if speaking[k]:
            opening, width = _mouth_tracks(phonemes, duration, rate)
        else:  # a listener's mouth: small slow idle movements
            n = int(np.ceil(duration * rate)) + 1
            opening = np.clip(
                _smooth_track(rng.uniform(0, 1, n) * (rng.uniform(0, 1, n) < 0.02), rate, 0.15) * 2, 0, 0.25
            )
            width = np.full(n, 0.9)
        idx = np.minimum((frame_times * rate).round().astype(int), len(opening) - 1)
        blink = np.zeros(num_frames)
        for b in common.irregular_onsets(rng, duration, rate=0.35, min_gap=1.5, margin=0.0):
            blink += np.clip(1 - np.abs(frame_times - b) / 0.08, 0, 1)  # eyes close and reopen over 160 ms
        faces.append(
            dict(
                face=face,
                opening=opening[idx],
                width=width[idx],
                blink=np.clip(blink, 0, 1),
                x=slot_x[k] + rng.uniform(-0.03, 0.03) * size,
                y=size * (slot_y[k] + rng.uniform(-0.03, 0.03)),
                motion=rng.uniform(-1, 1, (3, 3)),
                freq=rng.uniform(0.3, 1.2, 3),
                phase=rng.uniform(0, 2 * np.pi, 3),
            )
        )
        if speaking[k]:
            stems[f"s{k}"] = stem
        voiced = np.zeros(num_frames, bool)
        for s, e, p in phonemes:
            if not p.startswith("_"):
                voiced[(frame_times >= s - 0.5 / fps) & (frame_times < e)] = True
        faces[-1]["speaking"] = voiced
        sources.append(
            {
                "index": k,
                "label": voice if speaking[k] else "listener",
                "sounding": speaking[k],
                "stem": f"s{k}" if speaking[k] else None,
                "voice": {"name": voice, "rate_wpm": wpm, "pitch": pitch, "pitch_range": prange},
                "transcript": ". ".join(texts),
                "words": [{"word": w, "start": s, "end": e} for s, e, w in words],
                "phonemes": [{"phoneme": p, "start": s, "end": e} for s, e, p in phonemes],
            }
        )
    stems["noise"] = common.pink_noise(rng, num_samples) * float(rng.uniform(0.002, 0.008))
    mix, stems = common.normalize_mix(stems)

    bg_params = rng.uniform(0, 1, 16)
    video = np.empty((num_frames, size, size, 3), np.uint8)
    boxes = np.zeros((num_frames, num_faces, 4), np.float32)
    mouth_boxes = np.zeros((num_frames, num_faces, 4), np.float32)
    for f, t in enumerate(frame_times):
        img = common.gradient_background(size, t, bg_params)
        for k in sorted(range(num_faces), key=lambda j: faces[j]["y"]):  # faces higher up stand behind
            fc = faces[k]
            wobble = fc["motion"] @ np.sin(fc["freq"] * t + fc["phase"])  # (dx, dy, roll) slow head motion
            cx = fc["x"] + 0.025 * size * wobble[0] / num_faces
            cy = fc["y"] + 0.02 * size * wobble[1]
            cx = float(np.clip(cx, 0.42 * face_h + 1, size - 0.42 * face_h - 1))  # whole face in the frame
            box, mouth_box = draw_face(
                img, fc["face"], cx, cy, face_h, 2.5 * wobble[2], (fc["opening"][f], fc["width"][f]), fc["blink"][f]
            )
            boxes[f, k], mouth_boxes[f, k] = box, mouth_box
        video[f] = img
    np.clip(boxes, 0, size, out=boxes)
    np.clip(mouth_boxes, 0, size, out=mouth_boxes)
    arrays = {
        "boxes": boxes,
        "mouth_boxes": mouth_boxes,
        "mouth_open": np.stack([fc["opening"] for fc in faces], 1).astype(np.float32),
        "blink": np.stack([fc["blink"] for fc in faces], 1).astype(np.float32),
        "speaking": np.stack([fc["speaking"] for fc in faces], 1),
    }
    row = {
        "labels": sorted({s["label"] for s in sources if s["sounding"]}),
        "transcript": " | ".join(s["transcript"] for s in sources if s["sounding"]),
        "sources": sources,
        "meta": {"num_faces": num_faces, "num_speaking": int(sum(speaking))},
    }
    return RenderedClip(video=video, mix=mix, stems=stems, row=row, arrays=arrays)
