"""The ``instruments`` world: 1-3 objects on a changing background, some playing sampled instruments.

Each of the 14 categories has its own look (shape, colour, texture) and its own sound family (a General
MIDI instrument rendered by fluidsynth, see :mod:`notebank`). A sounding object's note onsets fall at
irregular times and each coincides with a visible event of that object: it lands a hop, pulses, or swings,
depending on the category. Silent distractors make the same kind of events at their own irregular times.

Why both modalities are needed: the picture alone cannot tell which object sounds (distractors move the
same way), and the audio alone cannot tell where the sound is or which of two similar objects makes it;
the timing of audio onsets against visual events settles both and makes the audio-visual offset
identifiable (events are irregular, so no shift of the audio by more than ~80 ms matches them as well).

Held-out identities: each category has 4 appearance variants (texture and hue); one variant is test-only,
one val-only, two are train-only, so the test split pairs each sound with looks never seen with it.
Every fourth note of a category's range is likewise test-only.

Ground truth per frame: box and mask of every object (masks after occlusion, bit-packed in the npz),
which objects sound; per-object stems; note onsets per object.
"""

from __future__ import annotations

import numpy as np

from avlearn.data.worlds import common
from avlearn.data.worlds.common import RenderedClip, WorldConfig
from avlearn.data.worlds.notebank import load_bank

NAME = "instruments"
DEFAULT_DURATION = 2.0

# name, GM program, lowest MIDI note, shape, RGB colour, visible event style
CATEGORIES: list[tuple[str, int, int, str, tuple[int, int, int], str]] = [
    ("piano", 0, 55, "square", (235, 235, 228), "pulse"),
    ("marimba", 12, 55, "bar", (150, 80, 40), "hop"),
    ("xylophone", 13, 67, "trapezoid", (235, 185, 40), "hop"),
    ("glockenspiel", 9, 72, "diamond", (170, 190, 235), "pulse"),
    ("tubular_bells", 14, 60, "tall_bar", (210, 165, 50), "swing"),
    ("steel_drum", 114, 60, "circle", (120, 128, 140), "hop"),
    ("timpani", 47, 41, "bowl", (175, 70, 30), "pulse"),
    ("guitar", 24, 48, "ellipse", (225, 120, 45), "swing"),
    ("pizzicato", 45, 55, "triangle", (120, 30, 45), "swing"),
    ("harp", 46, 55, "pentagon", (225, 200, 120), "pulse"),
    ("kalimba", 108, 60, "hexagon", (70, 160, 80), "hop"),
    ("taiko", 116, 40, "octagon", (170, 25, 25), "hop"),
    ("woodblock", 115, 60, "cross", (190, 145, 90), "pulse"),
    ("banjo", 105, 55, "star", (240, 230, 150), "swing"),
]
CATEGORY_NAMES = [c[0] for c in CATEGORIES]
TEXTURES = ("solid", "stripes", "dots", "checker")
SCALE_STEPS = (0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19)  # two octaves of a major scale
NUM_VARIANTS = 4


def appearance_split(category: int, variant: int) -> str:
    """Variant ``category % 4`` is test-only, the next one val-only, the other two train-only."""
    offset = (variant - category) % NUM_VARIANTS
    return "test" if offset == 0 else "val" if offset == 1 else "train"


def note_split(step_index: int) -> str:
    return "test" if step_index % 4 == 3 else "train"  # val shares the train notes; test holds a quarter out


def bank_spec() -> dict[str, tuple[int, list[int]]]:
    return {name: (program, [low + s for s in SCALE_STEPS]) for name, program, low, *_ in CATEGORIES}


def prepare(config: WorldConfig) -> None:
    """Renders the note bank into the cache (call once before starting worker processes)."""
    load_bank(bank_spec(), config.sample_rate)


def _unit_shape(shape: str) -> np.ndarray:
    """``(N, 2)`` outline of a shape with radius about 1, centred on the origin."""

    def regular(n, phase=0.0, r=1.0):
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) + phase
        return np.stack([r * np.cos(t), r * np.sin(t)], -1)

    if shape == "circle":
        return regular(40)
    if shape == "ellipse":
        return regular(40) * [0.7, 1.05]
    if shape == "square":
        return np.array([[-0.85, -0.85], [0.85, -0.85], [0.85, 0.85], [-0.85, 0.85]])
    if shape == "bar":
        return np.array([[-1.1, -0.45], [1.1, -0.45], [1.1, 0.45], [-1.1, 0.45]])
    if shape == "tall_bar":
        return np.array([[-0.4, -1.15], [0.4, -1.15], [0.4, 1.15], [-0.4, 1.15]])
    if shape == "trapezoid":
        return np.array([[-0.6, -0.7], [0.6, -0.7], [1.1, 0.7], [-1.1, 0.7]])
    if shape == "diamond":
        return np.array([[0, -1.15], [0.8, 0], [0, 1.15], [-0.8, 0]])
    if shape == "triangle":
        return regular(3, -np.pi / 2, 1.15) + [0, 0.2]
    if shape == "pentagon":
        return regular(5, -np.pi / 2)
    if shape == "hexagon":
        return regular(6)
    if shape == "octagon":
        return regular(8, np.pi / 8)
    if shape == "bowl":  # a kettle drum: half disc under a flat rim
        t = np.linspace(0, np.pi, 24)
        return np.concatenate([np.stack([np.cos(t), 0.9 * np.sin(t) - 0.2], -1), [[-1.0, -0.45], [1.0, -0.45]]])
    if shape == "cross":
        a, b = 0.35, 1.0
        return np.array(
            [[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a]]
        )
    if shape == "star":
        t = np.linspace(0, 2 * np.pi, 10, endpoint=False) - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.15, 0.5)
        return np.stack([r * np.cos(t), r * np.sin(t)], -1)
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Bool pattern in object coordinates (pixels along the object's axes) that is drawn darker."""
    period = max(3.0, radius / 2.2)
    if texture == "stripes":
        return (np.floor(u / period) % 2) == 0
    if texture == "dots":
        du, dv = (u / period) % 2 - 1, (v / period) % 2 - 1
        return du**2 + dv**2 < 0.35
    if texture == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
    return np.zeros_like(u, dtype=bool)


def _event_times(rng: np.random.Generator, duration: float, rate: float) -> list[float]:
    """Irregular event times covering [-1, duration + 1] s, so motion is continuous across the clip edges."""
    return [t - 1.0 for t in common.irregular_onsets(rng, duration + 2.0, rate, min_gap=0.2, margin=0.0)]


def _hop(times: np.ndarray, events: list[float], height: float) -> np.ndarray:
    """Vertical offset (pixels, negative = up) of an object hopping from one event (landing) to the next."""
    ev = np.asarray(events)
    idx = np.clip(np.searchsorted(ev, times, side="right") - 1, 0, len(ev) - 2)
    prev, nxt = ev[idx], ev[idx + 1]
    p = np.clip((times - prev) / (nxt - prev), 0, 1)
    return -height * np.minimum(1.0, (nxt - prev) / 0.5) * 4 * p * (1 - p)


def render(index: int, seed: int, split: str, config: WorldConfig) -> RenderedClip:
    """Renders clip ``index`` of the given split; a pure function of its arguments."""
    common.check_split(split)
    rng = common.clip_rng(NAME, seed, split, index)
    duration = float(config.duration or DEFAULT_DURATION)
    size, fps, sr = config.size, config.fps, config.sample_rate
    num_frames, num_samples = int(round(duration * fps)), int(round(duration * sr))
    bank = load_bank(bank_spec(), sr)

    # Scene: how many objects, how many sound. "1s+1d" scenes (one sounding, one silent distractor with the
    # same event style) are the localization task's hard case.
    scene = rng.choice(["1s", "1s+1d", "2s", "2s+1d", "1s+2d"], p=[0.2, 0.3, 0.25, 0.15, 0.1])
    num_sounding = int(scene[0])
    num_objects = num_sounding + (int(scene[-2]) if "d" in scene else 0)
    cats = [int(c) for c in rng.choice(len(CATEGORIES), size=num_objects, replace=False)]
    if scene == "1s+1d":  # a distractor that moves like the sounding object
        same = [c for c in range(len(CATEGORIES)) if CATEGORIES[c][5] == CATEGORIES[cats[0]][5] and c != cats[0]]
        cats[1] = int(rng.choice(same))
    variants = [int(rng.choice([v for v in range(NUM_VARIANTS) if appearance_split(c, v) == split])) for c in cats]

    # Layout: objects in columns (shuffled), each drifting smoothly around its anchor.
    slots = rng.permutation(num_objects)
    frame_times = np.arange(num_frames) / fps
    objects = []
    for k, c in enumerate(cats):
        name, program, low, shape, color, style = CATEGORIES[c]
        radius = size * rng.uniform(0.09, 0.13) * (1.0 if num_objects < 3 else 0.85)
        anchor = np.array(
            [size * (slots[k] + 0.5) / num_objects + rng.uniform(-0.04, 0.04) * size, size * rng.uniform(0.4, 0.62)]
        )
        drift = rng.uniform(-1, 1, (2, 2)) * size * 0.05
        phase = rng.uniform(0, 2 * np.pi, 2)
        speed = rng.uniform(0.3, 0.9, 2)
        rate = rng.uniform(1.8, 3.2)
        events = _event_times(rng, duration, rate)
        need = 2 if duration >= 1.0 else 1  # a sounding object plays at least this many notes in the clip
        while k < num_sounding and sum(0.0 <= t < duration - 0.05 for t in events) < need:
            events = _event_times(rng, duration, rate)
        hue = rng.uniform(0.85, 1.15, 3) * (1.0 + 0.12 * (variants[k] - 1.5) * np.array([1.0, -0.5, 0.6]))
        objects.append(
            dict(
                cat=c,
                name=name,
                shape=_unit_shape(shape),
                color=np.clip(np.array(color) * hue, 0, 255),
                texture=TEXTURES[variants[k]],
                style=style,
                radius=radius,
                anchor=anchor,
                drift=drift,
                phase=phase,
                speed=speed,
                events=events,
                angle0=rng.uniform(-0.3, 0.3),
                sounding=k < num_sounding,
            )
        )

    # Audio: a note at every in-clip event of a sounding object; a melodic random walk over the split's notes.
    stems: dict[str, np.ndarray] = {}
    for k, obj in enumerate(objects):
        obj["onsets"] = [t for t in obj["events"] if 0.0 <= t < duration - 0.05]
        obj["notes"] = []
        if not obj["sounding"]:
            continue
        name, _, low = CATEGORIES[obj["cat"]][:3]
        allowed = [
            low + s for i, s in enumerate(SCALE_STEPS) if note_split(i) == ("test" if split == "test" else "train")
        ]
        stem = np.zeros(num_samples, np.float32)
        pos = int(rng.integers(len(allowed)))
        gain = rng.uniform(0.5, 0.9)
        for onset in obj["onsets"]:
            pos = int(np.clip(pos + rng.integers(-2, 3), 0, len(allowed) - 1))
            note = allowed[pos]
            obj["notes"].append(note)
            common.place(stem, bank[name][note], int(round(onset * sr)), gain * rng.uniform(0.7, 1.0))
        stems[f"s{k}"] = stem
    stems["noise"] = common.pink_noise(rng, num_samples) * float(rng.uniform(0.002, 0.01))
    mix, stems = common.normalize_mix(stems)

    # Video.
    bg_params = rng.uniform(0, 1, 16)
    video = np.empty((num_frames, size, size, 3), np.uint8)
    masks = np.zeros((num_frames, num_objects, size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for f, t in enumerate(frame_times):
        img = common.gradient_background(size, t, bg_params).astype(np.uint8)
        drawn = np.zeros((num_objects, size, size), np.uint8)
        for k, obj in enumerate(objects):
            env = float(common.event_envelope(np.array([t]), obj["events"], tau=0.09)[0])
            pos = obj["anchor"] + obj["drift"] @ np.sin(obj["speed"] * t + obj["phase"])
            scale, angle = 1.0, obj["angle0"]
            if obj["style"] == "hop":
                pos = pos + [0.0, float(_hop(np.array([t]), obj["events"], obj["radius"] * 0.9)[0])]
                scale = 1.0 + 0.12 * env
            elif obj["style"] == "pulse":
                scale = 1.0 + 0.4 * env
            else:  # swing: a struck object jolts round and rings back
                angle += 0.5 * env * np.cos(2 * np.pi * 6 * max(0.0, t - _last_event(obj["events"], t)))
                scale = 1.0 + 0.1 * env
            r = obj["radius"] * scale
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pts = obj["shape"] @ rot.T * r + pos
            color = np.clip(obj["color"] * (1.0 + 0.45 * env) + 30 * env, 0, 255)
            common.fill_poly(img, pts, color, drawn[k])
            if obj["texture"] != "solid":
                u = (xx - pos[0]) * np.cos(angle) + (yy - pos[1]) * np.sin(angle)
                v = -(xx - pos[0]) * np.sin(angle) + (yy - pos[1]) * np.cos(angle)
                dark = drawn[k].astype(bool) & _texture(obj["texture"], u, v, r)
                img[dark] = (img[dark] * 0.55).astype(np.uint8)
            for j in range(k):  # later objects occlude earlier ones
                drawn[j][drawn[k].astype(bool)] = 0
        video[f] = img
        masks[f] = drawn.astype(bool)

    boxes = np.stack([[common.box_of_mask(masks[f, k]) for k in range(num_objects)] for f in range(num_frames)])
    sources = []
    for k, obj in enumerate(objects):
        sources.append(
            {
                "index": k,
                "label": obj["name"],
                "sounding": bool(obj["sounding"]),
                "stem": f"s{k}" if obj["sounding"] else None,
                "onsets": obj["onsets"] if obj["sounding"] else [],
                "events": [t for t in obj["events"] if 0.0 <= t < duration],
                "notes": obj["notes"],
                "appearance": {"texture": obj["texture"], "variant": TEXTURES.index(obj["texture"])},
                "event_style": obj["style"],
            }
        )
    row = {
        "labels": sorted({o["name"] for o in objects if o["sounding"]}),
        "sources": sources,
        "meta": {"scene": str(scene), "num_objects": num_objects, "num_sounding": num_sounding},
    }
    arrays = {"boxes": boxes.astype(np.float32), "masks": masks, "sounding": np.array([o["sounding"] for o in objects])}
    return RenderedClip(video=video, mix=mix, stems=stems, row=row, arrays=arrays)


def _last_event(events: list[float], t: float) -> float:
    past = [e for e in events if e <= t]
    return past[-1] if past else -10.0
