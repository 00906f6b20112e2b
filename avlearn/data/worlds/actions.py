"""The ``actions`` world: untrimmed 20-60 s clips of a figure doing 12 actions between idle stretches.

A stick figure walks about idly (with soft footsteps) against a changing background and background noise;
now and then, in segments of 2-5 s between idle stretches of 3-9 s, it performs the clip's action (one of
12, the clip's label, as in untrimmed video classification). Each action is a motion pattern (clapping,
chopping, jumping, waving, ...) whose strikes make a characteristic sound (General MIDI percussion through
fluidsynth). Actions come in pairs that share a sound family (clap in front / clap overhead, knock / chop,
...), so audio tells *when* something happens and narrows *what* to two classes, and the picture settles
which: the Listen-to-Look setting, where a cheap audio preview chooses the moments worth looking at.

Held-out identities: each action has 4 motion variants (which arm leads, and how wide the motion is);
one is test-only, one val-only, two train-only, so test clips show motion patterns never seen in training.

Ground truth: labelled time segments (``segments`` in the manifest), per-frame box of the figure and its
12 keypoints (head, neck, shoulders, elbows, hands, hips, feet) in the npz; stems: ``s0`` the action sounds,
``noise`` footsteps plus noise.
"""

from __future__ import annotations

import numpy as np

from avlearn.data.worlds import common
from avlearn.data.worlds.common import RenderedClip, WorldConfig
from avlearn.data.worlds.notebank import DRUMS, load_bank

NAME = "actions"
DEFAULT_DURATION = None  # drawn per clip in [20, 60] s

# action -> (sound family notes (GM percussion), strikes per cycle at these phases)
ACTIONS: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {
    "clap_front": ((39,), (0.5,)),
    "clap_overhead": ((39,), (0.5,)),
    "knock": ((76, 77), (0.5,)),
    "chop": ((76, 77), (0.0,)),
    "hammer": ((56, 81), (0.5,)),
    "ring_bell": ((56, 81), (0.25, 0.75)),
    "jump": ((41, 36), (0.0,)),
    "stomp": ((41, 36), (0.5,)),
    "shake": ((70, 69), (0.125, 0.375, 0.625, 0.875)),
    "sweep": ((70, 69), (0.0, 0.5)),
    "wave": ((71, 74), (0.25, 0.75)),
    "spin": ((71, 74), (0.0,)),
}
ACTION_NAMES = list(ACTIONS)
FOOTSTEP = 35
NUM_VARIANTS = 4  # (leading arm) x (amplitude)
KEYPOINTS = (
    "head",
    "neck",
    "r_shoulder",
    "l_shoulder",
    "r_elbow",
    "l_elbow",
    "r_hand",
    "l_hand",
    "hip",
    "r_foot",
    "l_foot",
    "center",
)


def variant_split(action: int, variant: int) -> str:
    offset = (variant - action) % NUM_VARIANTS
    return "test" if offset == 0 else "val" if offset == 1 else "train"


def bank_spec() -> dict[str, tuple[int, list[int]]]:
    notes = sorted({n for family, _ in ACTIONS.values() for n in family} | {FOOTSTEP})
    return {"kit": (DRUMS, notes)}


def prepare(config: WorldConfig) -> None:
    load_bank(bank_spec(), config.sample_rate)


def _hands(action: str, phi: float, side: float, amp: float) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Pose of an action at cycle phase ``phi`` in [0, 1).

    Returns (lead hand, other hand) targets in body units relative to the neck (x right, y down), the body's
    vertical offset, the lead leg's lift (0-1) and a width factor (spin foreshortens the figure).
    ``side`` = +1 leads with the right arm, -1 with the left; ``amp`` scales the motion.
    """
    c = 0.5 * (1 + np.cos(2 * np.pi * phi))  # 1 at phi = 0, 0 at phi = 0.5
    rest_l = np.array([-0.6 * side, 1.9])
    dy, lift, width = 0.0, 0.0, 1.0
    if action == "clap_front":
        lead = np.array([side * (0.12 + 0.9 * amp * c), 0.9])
        other = np.array([-lead[0], 0.9])
    elif action == "clap_overhead":
        lead = np.array([side * (0.12 + 0.9 * amp * c), -1.5])
        other = np.array([-lead[0], -1.5])
    elif action == "knock":
        lead = np.array([side * (1.1 + 0.7 * amp * (1 - c)), 0.2])
        other = rest_l
    elif action == "chop":  # raise slowly, strike fast; the strike lands at phi = 0
        p = phi / 0.75 if phi < 0.75 else 1 - (phi - 0.75) / 0.25
        lead = np.array([side * 0.6, 0.9 - 2.7 * amp * p])
        other = lead + [-0.18 * side, 0.12]
    elif action == "hammer":
        lead = np.array([side * 1.2, 0.9 - 0.9 * amp * c])
        other = np.array([side * 0.3, 1.0])
    elif action == "ring_bell":
        lead = np.array([side * 0.6, -1.6 + 0.35 * amp * np.cos(4 * np.pi * phi)])
        other = rest_l
    elif action == "jump":
        dy = -0.9 * amp * 4 * phi * (1 - phi)
        lead = np.array([side * 1.0, -0.6 - 0.6 * 4 * phi * (1 - phi)])
        other = np.array([-side * 1.0, lead[1]])
    elif action == "stomp":
        lift = amp * (1 - abs(2 * phi - 1)) ** 0.5 * (phi < 0.5)  # up slowly, down fast at phi = 0.5
        lead = np.array([side * 0.9, 1.2])
        other = np.array([-side * 0.9, 1.2])
    elif action == "shake":
        x = 0.35 * amp * np.sin(4 * np.pi * phi)
        lead, other = np.array([0.35 * side + x, 0.6]), np.array([-0.35 * side + x, 0.6])
    elif action == "sweep":
        x = 1.0 * amp * np.sin(2 * np.pi * phi)
        lead, other = np.array([x + 0.2 * side, 1.8]), np.array([x - 0.2 * side, 1.5])
    elif action == "wave":
        lead = np.array([side * (0.9 + 0.55 * amp * np.sin(2 * np.pi * phi)), -1.5])
        other = rest_l
    elif action == "spin":
        width = float(np.cos(2 * np.pi * phi))
        lead, other = np.array([side * 1.9 * width, -0.1]), np.array([-side * 1.9 * width, -0.1])
    else:
        raise ValueError(f"unknown action {action!r}")
    return lead, other, dy, lift, width


def _arm(
    shoulder: np.ndarray, target: np.ndarray, l1: float, l2: float, outward: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two-link inverse kinematics: (elbow, hand) reaching toward ``target``, elbow bent to ``outward`` side."""
    d = target - shoulder
    dist = float(np.clip(np.hypot(*d), 1e-6, (l1 + l2) * 0.999))
    direction = d / max(np.hypot(*d), 1e-6)
    hand = shoulder + direction * dist
    a = np.arccos(np.clip((l1**2 + dist**2 - l2**2) / (2 * l1 * dist), -1, 1)) * outward
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return shoulder + rot @ direction * l1, hand


def render(index: int, seed: int, split: str, config: WorldConfig) -> RenderedClip:
    """Renders clip ``index`` of the given split; a pure function of its arguments."""
    common.check_split(split)
    rng = common.clip_rng(NAME, seed, split, index)
    duration = float(config.duration) if config.duration else float(np.round(rng.uniform(20, 60), 2))
    size, fps, sr = config.size, config.fps, config.sample_rate
    num_frames, num_samples = int(round(duration * fps)), int(round(duration * sr))
    kit = load_bank(bank_spec(), sr)["kit"]

    # Timeline: one action per clip (its label, as in untrimmed video classification), performed in segments
    # of 2-5 s separated by idle stretches of 3-9 s, so about a third of the clip shows it.
    a = int(rng.integers(len(ACTION_NAMES)))
    variants = [v for v in range(NUM_VARIANTS) if variant_split(a, v) == split]
    segments, t = [], float(rng.uniform(1.0, 6.0))
    while True:
        length = float(rng.uniform(2.0, 5.0))
        if t + length > duration - 0.5:
            break
        variant, period = int(rng.choice(variants)), float(rng.uniform(0.45, 0.9))
        segments.append(
            dict(label=ACTION_NAMES[a], start=round(t, 3), end=round(t + length, 3), variant=variant, period=period)
        )
        t += length + float(rng.uniform(3.0, 9.0))
    if not segments:  # short clips: one segment in the middle
        s0, s1 = round(duration * 0.25, 3), round(duration * 0.75, 3)
        segments.append(dict(label=ACTION_NAMES[a], start=s0, end=s1, variant=int(rng.choice(variants)), period=0.6))

    # Audio: strikes of each action (with jitter of the tempo so onsets are irregular), footsteps while idle.
    action_stem = np.zeros(num_samples, np.float32)
    background = common.pink_noise(rng, num_samples) * float(rng.uniform(0.01, 0.03))
    background *= (1 + 0.5 * np.sin(2 * np.pi * np.arange(num_samples) / sr / rng.uniform(5, 15))).astype(np.float32)
    strike_times = []
    for seg in segments:
        family, phases = ACTIONS[seg["label"]]
        cycle_starts = [seg["start"]]
        while cycle_starts[-1] + seg["period"] < seg["end"]:
            cycle_starts.append(cycle_starts[-1] + seg["period"] * float(rng.uniform(0.85, 1.15)))
        seg["cycles"] = cycle_starts
        for k, c0 in enumerate(cycle_starts[:-1]):
            span = cycle_starts[k + 1] - c0
            for ph in phases:
                onset = c0 + ph * span
                if seg["start"] < onset < seg["end"]:
                    strike_times.append(round(onset, 4))
                    note = int(rng.choice(family))
                    common.place(action_stem, kit[note], int(round(onset * sr)), float(rng.uniform(0.6, 1.0)))
    # Idle walking: the figure drifts between x positions; footsteps at each plant.
    walk_speed = float(rng.uniform(0.04, 0.08)) * size  # px per second
    step_period = float(rng.uniform(0.45, 0.6))
    in_action = np.zeros(num_frames, bool)
    frame_times = np.arange(num_frames) / fps
    for seg in segments:
        in_action |= (frame_times >= seg["start"]) & (frame_times < seg["end"])
    step_phase = np.cumsum(~in_action) / fps / step_period  # advances only while idle
    footstep_frames = np.nonzero(np.diff(np.floor(2 * step_phase)) > 0)[0] + 1
    for f in footstep_frames:
        common.place(background, kit[FOOTSTEP], int(round(frame_times[f] * sr)), float(rng.uniform(0.08, 0.15)))
    stems = {"s0": action_stem, "noise": background}
    mix, stems = common.normalize_mix(stems)

    # Video.
    bg_params = rng.uniform(0, 1, 16)
    u = size * 0.085  # body unit in pixels
    colors = {k: rng.uniform(20, 235, 3) for k in ("body", "head", "legs")}
    x_path = np.clip(
        size / 2
        + np.cumsum(~in_action * np.sign(np.sin(2 * np.pi * frame_times / rng.uniform(6, 12)))) * walk_speed / fps,
        2.5 * u,
        size - 2.5 * u,
    )
    video = np.empty((num_frames, size, size, 3), np.uint8)
    boxes = np.zeros((num_frames, 1, 4), np.float32)
    keypoints = np.zeros((num_frames, len(KEYPOINTS), 2), np.float32)
    seg_of_frame = np.full(num_frames, -1)
    for i, seg in enumerate(segments):
        seg_of_frame[(frame_times >= seg["start"]) & (frame_times < seg["end"])] = i
    for f, t in enumerate(frame_times):
        img = common.gradient_background(size, t, bg_params)
        img[int(size * 0.88) :] = (img[int(size * 0.88) :] * 0.7).astype(np.uint8)  # floor
        swing = np.sin(np.pi * step_phase[f])  # walking legs
        sway = 0.15 * np.sin(2 * np.pi * t / 3.0)
        lead = np.array([0.6 + 0.1 * swing, 1.9]) + [sway, 0]
        other = np.array([-0.6 - 0.1 * swing, 1.9]) + [sway, 0]
        dy, lift, width, side = 0.0, 0.0, 1.0, 1.0
        leg_swing = 0.35 * swing * (not in_action[f])
        if seg_of_frame[f] >= 0:
            seg = segments[seg_of_frame[f]]
            cycles = seg["cycles"]
            k = max(0, np.searchsorted(cycles, t, side="right") - 1)
            span = (cycles[k + 1] - cycles[k]) if k + 1 < len(cycles) else seg["period"]
            phi = ((t - cycles[k]) / span) % 1.0
            side = 1.0 if seg["variant"] % 2 == 0 else -1.0
            amp = 1.0 if seg["variant"] < 2 else 1.35
            lead, other, dy, lift, width = _hands(seg["label"], phi, side, amp)
        hip = np.array([x_path[f], size * 0.62 + dy * u])
        neck = hip - [0, 2.4 * u]
        head = neck - [0, 0.75 * u]
        shoulders = [neck + [0.55 * u * width, 0.1 * u], neck + [-0.55 * u * width, 0.1 * u]]
        right_target, left_target = (lead, other) if side > 0 else (other, lead)
        r_elbow, r_hand = _arm(shoulders[0], neck + right_target * u, 1.1 * u, 1.0 * u, -1.0)
        l_elbow, l_hand = _arm(shoulders[1], neck + left_target * u, 1.1 * u, 1.0 * u, 1.0)
        leg = 2.6 * u
        lift_r, lift_l = (lift, 0.0) if side > 0 else (0.0, lift)
        r_foot = hip + [0.45 * u + leg * np.sin(leg_swing), leg * np.cos(leg_swing) - 1.2 * u * lift_r]
        l_foot = hip + [-0.45 * u - leg * np.sin(leg_swing), leg * np.cos(leg_swing) - 1.2 * u * lift_l]
        thick = max(2.0, 0.42 * u)
        common.draw_line(img, hip, r_foot, colors["legs"], thick)
        common.draw_line(img, hip, l_foot, colors["legs"], thick)
        common.draw_line(img, hip, neck, colors["body"], 1.6 * thick)
        for shoulder, elbow, hand in ((shoulders[0], r_elbow, r_hand), (shoulders[1], l_elbow, l_hand)):
            common.draw_line(img, neck, shoulder, colors["body"], thick)
            common.draw_line(img, shoulder, elbow, colors["body"], thick)
            common.draw_line(img, elbow, hand, colors["body"] * 0.8, thick * 0.85)
            common.fill_ellipse(img, hand, (0.28 * u, 0.28 * u), 0, colors["head"])
        common.fill_ellipse(img, head, (0.6 * u, 0.7 * u), 0, colors["head"])
        video[f] = img
        pts = np.stack(
            [
                head,
                neck,
                shoulders[0],
                shoulders[1],
                r_elbow,
                l_elbow,
                r_hand,
                l_hand,
                hip,
                r_foot,
                l_foot,
                hip - [0, 1.2 * u],
            ]
        )
        keypoints[f] = pts
        pad = 0.5 * u
        boxes[f, 0] = [pts[:, 0].min() - pad, head[1] - 0.7 * u, pts[:, 0].max() + pad, pts[:, 1].max() + pad]
    np.clip(boxes, 0, size, out=boxes)

    row = {
        "labels": sorted({s["label"] for s in segments}),
        "segments": [
            {"label": s["label"], "start": s["start"], "end": s["end"], "variant": s["variant"]} for s in segments
        ],
        "sources": [
            {"index": 0, "label": "actor", "sounding": True, "stem": "s0", "onsets": strike_times},
        ],
        "meta": {"duration": duration, "num_segments": len(segments)},
    }
    arrays = {"boxes": boxes, "keypoints": keypoints, "keypoint_names": np.array(KEYPOINTS)}
    return RenderedClip(video=video, mix=mix, stems=stems, row=row, arrays=arrays)
