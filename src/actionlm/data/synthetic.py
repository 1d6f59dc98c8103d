"""Deterministic synthetic NTU RGB+D raw ``.skeleton`` files.

NTU RGB+D may not be redistributed, so tests and demos run the real pipeline on files that look and
behave like it: the same names (``SsssCcccPpppRrrrAaaa``), text layout (CRLF, 25 Kinect v2 joints in
camera space, metres) and split semantics, and the same dirt that NTU loaders clean up.

NTU facts reproduced (Shahroudy et al., CVPR 2016, sec. 3):

* three Kinects film one performance at once from horizontal angles 0, +45 and -45 degrees; here
  C001 is at 0, C002 at +45 and C003 at -45 degrees about the vertical axis of the stage;
* each action is done twice, once facing each side camera: R001 faces C002, R002 faces C003
  (R003, beyond NTU, faces C001).  So C002/C003 see front and 90-degree side views and C001 sees the
  two 45-degree views, which makes X-View (train C002+C003, test C001) an unseen-viewpoint test;
* performers are the X-Sub subjects; setups (S###) change camera height, distance and tilt;
* A50-A60 are two-person interactions; bodies carry Kinect tracking ids (2**56 + n).

Motions come from a forward-kinematic body (bones of fixed, per-subject length rotated by joint
angles over time), so bone lengths only change by sensor jitter.  Dirt: Gaussian joint jitter,
occasional empty frames and spurious bodies that CTR-GCN's denoising (drop bodies tracked <= 11
frames or too wide for >= 69.754 % of their frames) removes while keeping the real actors.

Variation sits mostly within a subject's takes (timing, amplitude, posture, handedness, a step
and turn on the spot, facing +-15 degrees) so that a nearest-centroid classifier on raw joints stays
far from perfect (about 45 % X-Sub, 60 % X-View by default) while a learned model is not hindered.

Coordinates are Kinect v2 camera space: right-handed, y up, z = depth, x towards the sensor's left,
i.e. the right-hand side of a person facing the camera.  The body frame used to animate is that
camera frame for a person facing the camera: x = the body's right, y up, z = behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from actionlm.data.pool import ParentBoundPool

_FPS = 30.0  # Kinect v2 frame rate
_KINECT_ID_BASE = 2**56  # real NTU body ids look like 72057594037937513 = 2**56 + 9577

# Forward-kinematic tree (0-based NTU joint indices).  Rotations are stored per bone, indexed by the
# bone's child joint, so bending the lower back does not move the hips.
_PARENT = np.array([-1, 0, 20, 2, 20, 4, 5, 6, 20, 8, 9, 10, 0, 12, 13, 14, 0, 16, 17, 18,
                    1, 7, 7, 11, 11])
_ORDER = (1, 20, 2, 3, 4, 5, 6, 7, 21, 22, 8, 9, 10, 11, 23, 24, 12, 13, 14, 15, 16, 17, 18, 19)
# Left-right mirror of joints; left limb bones flip the sign of their azimuth and twist so that an
# angle means the same anatomical movement on either side.
_MIRROR = np.array([0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 16, 17, 18, 19, 12, 13, 14, 15,
                    20, 23, 24, 21, 22])
_SIDE_SIGN = np.where(np.isin(np.arange(25), [4, 5, 6, 7, 12, 13, 14, 15, 21, 22]), -1.0, 1.0)
_CENTRE = np.array([0, 1, 2, 3, 20])

# Bones by name -> child joint index; "R"/"L" variants of limbs.
_LBACK, _UBACK, _NECK, _HEAD = 1, 20, 2, 3
_ARM = {"R": (8, 9, 10, 11), "L": (4, 5, 6, 7)}  # clavicle, shoulder, elbow, wrist bones
_LEG = {"R": (17, 18, 19), "L": (13, 14, 15)}  # hip (thigh), knee (shin), ankle (foot) bones
_SPINE_MID, _SPINE_SH = 1, 20
_ANKLE = {"R": 18, "L": 14}

# Kinect v2 depth (512x424) and colour (1920x1080) projections, matching real NTU rows.
_DEPTH_F, _DEPTH_C = 365.5, (256.0, 208.0)
_COLOR_F, _COLOR_C, _COLOR_DX = 1063.0, (960.0, 540.0), 0.052

_CAMERA_YAW = {1: 0.0, 2: 45.0, 3: -45.0}
_FACING_CAMERA = (2, 3, 1)  # replication r faces camera _FACING_CAMERA[(r - 1) % 3]


# ----------------------------------------------------------------------------------------------
# rotations


def _rx(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(*np.shape(a), 3, 3)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(*np.shape(a), 3, 3)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(*np.shape(a), 3, 3)


def _yaw(deg: float) -> np.ndarray:
    return _ry(np.float64(np.radians(deg)))


# ----------------------------------------------------------------------------------------------
# subjects and motions


@dataclass(frozen=True)
class _Subject:
    """One performer: body proportions and movement style, the same in every file."""

    offsets: np.ndarray  # (25, 3) rest bone vectors in the parent frame, metres
    height: float
    amp: float  # scales movement amplitudes
    rate: float  # Hz of repetitive movements (waving, clapping, hopping)
    lean: float  # degrees of habitual forward trunk lean
    arm_out: float  # degrees the arms hang away from the body
    elbow: float  # degrees of resting elbow flexion
    head: float  # degrees of habitual head pitch
    left_handed: bool


def _subject(seed: int, sid: int) -> _Subject:
    """Draw subject ``sid`` from (seed, sid) alone, so a performer is one person in all files."""
    rng = np.random.default_rng([seed, 101, sid])
    h = float(np.clip(rng.normal(1.70, 0.09), 1.50, 1.92))
    torso, arm, leg, shoulder, hip, head = rng.normal(1.0, [0.05, 0.05, 0.04, 0.08, 0.09, 0.06])
    r = np.zeros((25, 3))
    r[1] = 0, 0.155 * torso, 0.0
    r[20] = 0, 0.125 * torso, 0.01
    r[2] = 0, 0.040 * head, 0.0
    r[3] = 0, 0.075 * head, -0.01
    r[8] = 0.10 * shoulder, -0.025, 0.0
    r[9] = 0, -0.15 * arm, 0
    r[10] = 0, -0.145 * arm, 0
    r[11] = 0, -0.04 * arm, 0
    r[23] = 0, -0.045 * arm, 0
    r[24] = -0.012, -0.022 * arm, -0.024
    r[16] = 0.045 * hip, -0.025, 0.0
    stance = np.radians(rng.uniform(1.0, 5.0))  # feet apart: thighs slant outwards at rest
    r[17] = 0.23 * leg * np.sin(stance), -0.23 * leg * np.cos(stance), 0
    r[18] = 0, -0.22 * leg, 0
    r[19] = 0, -0.035, -0.06
    right = [8, 9, 10, 11, 23, 24, 16, 17, 18, 19]
    r[_MIRROR[right]] = r[right] * [-1, 1, 1]
    return _Subject(
        offsets=r * h,
        height=h,
        amp=float(rng.uniform(0.8, 1.2)),
        rate=float(rng.uniform(1.4, 2.6)),
        lean=float(rng.uniform(-3.0, 9.0)),
        arm_out=float(rng.uniform(4.0, 16.0)),
        elbow=float(rng.uniform(5.0, 25.0)),
        head=float(rng.uniform(-8.0, 10.0)),
        left_handed=bool(rng.random() < 0.2),
    )


@dataclass
class _Motion:
    """Joint angles of one body over T frames, in degrees.

    ``ang[:, b] = (elevation, azimuth, twist)`` of bone b: local rotation
    ``Ry(-azimuth) Rx(elevation) Ry(azimuth + twist)`` (a swing then a twist, so an elbow always
    flexes forwards).  ``root`` = pelvis (yaw, pitch, roll); ``shift`` = extra body translation;
    ``support`` = weight of the left foot in keeping the feet planted (0.5 = both feet);
    ``yaw0``/``pos0`` place the body on the stage (two-person actions).
    """

    sub: _Subject
    ang: np.ndarray
    root: np.ndarray
    shift: np.ndarray
    support: np.ndarray
    flat_feet: dict[str, np.ndarray]
    yaw0: float = 0.0
    pos0: np.ndarray = field(default_factory=lambda: np.zeros(3))

    @property
    def T(self) -> int:
        return len(self.ang)


def _fk(m: _Motion) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics, pelvis at the origin: joints (T, 25, 3) and bone frames (T, 25, 3, 3)."""
    a = np.radians(m.ang)
    beta = a[..., 1] * _SIDE_SIGN
    local = _ry(-beta) @ _rx(a[..., 0]) @ _ry(beta + a[..., 2] * _SIDE_SIGN)
    r = np.radians(m.root)
    rot = np.empty((m.T, 25, 3, 3))
    pos = np.zeros((m.T, 25, 3))
    rot[:, 0] = _ry(r[:, 0]) @ _rx(r[:, 1]) @ _rz(r[:, 2])
    off = m.sub.offsets
    for j in _ORDER:
        p = _PARENT[j]
        rot[:, j] = rot[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + rot[:, j] @ off[j]
    return pos, rot


def _ankle_height(sub: _Subject) -> float:
    return -sub.offsets[19, 1] + 0.02


def _body_frame(m: _Motion) -> tuple[np.ndarray, np.ndarray]:
    """Joints and bone frames in the body frame, with the planted feet on the floor (y = 0)."""
    pos, rot = _fk(m)
    w = m.support[:, None]
    anchor = {s: np.array([pos[0, _ANKLE[s], 0], _ankle_height(m.sub), pos[0, _ANKLE[s], 2]])
              for s in "LR"}
    root = (w * (anchor["L"] - pos[:, _ANKLE["L"]]) + (1 - w) * (anchor["R"] - pos[:, _ANKLE["R"]])
            + m.shift)
    return pos + root[:, None], rot


def _stage(m: _Motion) -> np.ndarray:
    """Joints on the stage (the pair's frame): body frame turned by ``yaw0``, moved to ``pos0``."""
    pos, _ = _body_frame(m)
    return pos @ _yaw(m.yaw0).T + m.pos0


def _to_body(m: _Motion, stage_points: np.ndarray) -> np.ndarray:
    """Stage points (T, 3) in body ``m``'s frame."""
    return (stage_points - m.pos0) @ _yaw(m.yaw0)


def _in_frame(pos: np.ndarray, rot: np.ndarray, joint: int, local: Sequence[float]) -> np.ndarray:
    """Points fixed in bone ``joint``'s frame (``local`` metres from the joint), in body frame."""
    return pos[:, joint] + rot[:, joint] @ np.asarray(local, float)


def _reach(m: _Motion, side: str, goal: np.ndarray, weight: np.ndarray,
           hint: Sequence[float] = (0.6, -1.0, 0.2)) -> None:
    """Two-bone IK: move hand ``side`` towards ``goal`` (T, 3, body frame) by ``weight``.

    Sets the shoulder and elbow angles (wrist straight).  ``hint`` is the preferred elbow
    direction in the right shoulder's frame (x out, y up, z back); the left arm is solved mirrored.
    """
    clav, sh, el, wr = _ARM[side]
    pos, rot = _body_frame(m)
    shoulder, hand = pos[:, clav], pos[:, wr]
    target = hand + weight[:, None] * (goal - hand)
    p = np.einsum("tji,tj->ti", rot[:, clav], target - shoulder)
    hint_v = np.asarray(hint, float)
    if side == "L":
        p[:, 0] *= -1
    off = m.sub.offsets
    l1 = np.linalg.norm(off[sh])
    l2 = np.linalg.norm(off[el]) + np.linalg.norm(off[wr])
    d = np.clip(np.linalg.norm(p, axis=1), abs(l1 - l2) + 1e-3, (l1 + l2) * 0.999)
    ph = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-9)
    n = hint_v - (ph @ hint_v)[:, None] * ph
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    a = (l1**2 - l2**2 + d**2) / (2 * d)
    elbow = a[:, None] * ph + np.sqrt(np.maximum(l1**2 - a**2, 0))[:, None] * n
    u = elbow / l1
    f = (ph * d[:, None] - elbow) / l2
    alpha = np.arccos(np.clip(-u[:, 1], -1, 1))
    beta = np.arctan2(u[:, 0], -u[:, 2])
    r0 = _ry(-beta) @ _rx(alpha) @ _ry(beta)
    fl = np.einsum("tji,tj->ti", r0, f)
    twist = np.arctan2(-fl[:, 0], -fl[:, 2])
    flex = np.arccos(np.clip(np.sum(u * f, axis=1), -1, 1))
    m.ang[:, sh] = np.degrees(np.stack([alpha, beta, twist], 1))
    m.ang[:, el] = 0
    m.ang[:, el, 0] = np.degrees(flex)
    m.ang[:, wr] = 0


def _mirror(m: _Motion) -> _Motion:
    """The same motion with the other hand/foot (reflection in the body's sagittal plane)."""
    ang = m.ang[:, _MIRROR].copy()
    ang[:, _CENTRE, 1:] *= -1
    root = m.root * [-1, 1, -1]
    return replace(m, ang=ang, root=root, shift=m.shift * [-1, 1, 1], support=1 - m.support,
                   flat_feet={"L": m.flat_feet["R"], "R": m.flat_feet["L"]})


# ----------------------------------------------------------------------------------------------
# timing helpers


def _kf(u: np.ndarray, *keys: tuple[float, float]) -> np.ndarray:
    """Smoothstep interpolation through keyframes (time, value); flat before and after."""
    ks = np.maximum.accumulate(np.array([k for k, _ in keys], float))
    vs = np.array([v for _, v in keys], float)
    i = np.clip(np.searchsorted(ks, u, side="right") - 1, 0, len(ks) - 2)
    span = ks[i + 1] - ks[i]
    s = np.clip((u - ks[i]) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return vs[i] + (vs[i + 1] - vs[i]) * s * s * (3 - 2 * s)


def _hold(u: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """0 -> 1 between a and b, 1 until c, back to 0 by d."""
    return _kf(u, (a, 0.0), (b, 1.0), (c, 1.0), (d, 0.0))


@dataclass
class _Take:
    """Per-performance random draws shared by all bodies and cameras."""

    rng: np.random.Generator
    u: np.ndarray  # (T,) warped action progress, 0 in the lead-in idle, 1 in the tail idle
    t: np.ndarray  # (T,) seconds
    active_s: float  # seconds of the active window
    amp: float
    rate: float

    def cycles(self, frac: float, lo: int = 1) -> int:
        """Repetitions of a ``rate``-Hz movement that fit into ``frac`` of the active window."""
        return max(lo, round(self.rate * self.active_s * frac))

    def jit(self, x: float, spread: float = 0.03) -> float:
        """A key time ``x`` moved by up to ``spread``: no two takes are timed alike."""
        return x + float(self.rng.uniform(-spread, spread))

    def window(self, start: float, rise: tuple[float, float], end: float, end_spread: float,
               fall: tuple[float, float]) -> tuple[float, float, float, float]:
        """Key times (fractions of the take) of a hold: ramp up from ``start`` over a ``rise``
        draw, hold, ramp down over a ``fall`` draw to ``end``; jittered, drawn in a fixed order."""
        t1 = self.jit(start)
        t2 = t1 + self.rng.uniform(*rise)
        t4 = self.jit(end, end_spread)
        return t1, t2, t4 - self.rng.uniform(*fall), t4


def _progress(u: np.ndarray, start: float, end: float) -> np.ndarray:
    """0 before ``start``, 1 after ``end``, linear between: the phase of a repeated movement."""
    return np.clip((u - start) / (end - start), 0, 1)


def _base(sub: _Subject, take: _Take, wander: bool = True) -> _Motion:
    """Relaxed standing: the subject's posture, breathing and weight-shift sway, and (``wander``)
    a slow drift and turn on the spot."""
    T, rng, t = len(take.u), take.rng, take.t
    ang = np.zeros((T, 25, 3))

    def sway(amp: float, hz: float) -> np.ndarray:
        return amp * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))

    lean, head = sub.lean + rng.normal(0, 3), sub.head + rng.normal(0, 5)  # nobody stands
    ang[:, _LBACK, 0] = -0.5 * lean + sway(1.0, rng.uniform(0.15, 0.35))  # the same way twice
    ang[:, _UBACK, 0] = -0.5 * lean + sway(0.8, rng.uniform(0.2, 0.4))
    ang[:, _HEAD, 0] = -head + sway(3.0, rng.uniform(0.1, 0.3))
    ang[:, _NECK, 2] = sway(8.0, rng.uniform(0.05, 0.2))
    for s in "LR":
        _, sh, el, _ = _ARM[s]
        ang[:, sh, 0] = max(sub.arm_out + rng.normal(0, 4), 1.0) + sway(1.5, 0.25)
        ang[:, sh, 1] = 90.0
        ang[:, el, 0] = max(sub.elbow + rng.normal(0, 6), 0.0) + sway(2.0, 0.25)
    shift = np.zeros((T, 3))
    shift[:, 0] = sway(0.012, rng.uniform(0.1, 0.3))
    shift[:, 2] = sway(0.008, rng.uniform(0.1, 0.3))
    root = np.zeros((T, 3))
    support = np.full(T, 0.5)
    if wander:  # one step (right foot, then left) to a new spot, turning a little
        start, span = rng.uniform(0, 0.7) * t[-1], rng.uniform(0.6, 1.5)
        move = rng.normal(0, 0.2, 3) * [1, 0, 1]
        there = _kf(t, (start, 0.0), (start + span, 1.0))
        shift += there[:, None] * move
        root[:, 0] = there * rng.normal(0, 15.0)
        stride = min(1.0, 4 * float(np.hypot(move[0], move[2])))  # short moves: a shuffle
        step = stride * np.sin(2 * np.pi * np.clip((t - start) / span, 0, 1))
        for s, sign in (("R", 1), ("L", -1)):
            lift = np.maximum(sign * step, 0)
            ang[:, _LEG[s][0], 0] += 20 * lift
            ang[:, _LEG[s][1], 0] -= 35 * lift
        support += 0.5 * np.clip(3 * step, -1, 1)
    ones = np.ones(T)
    return _Motion(sub, ang, root, shift, support, {"L": ones.copy(), "R": ones.copy()})


def _lean_on(support: np.ndarray, foot: float, weight: np.ndarray) -> np.ndarray:
    """Shift the support towards ``foot`` (1 = left, 0 = right) by ``weight``."""
    return support + weight * (foot - support)


def _finish(m: _Motion) -> _Motion:
    """Keep planted feet flat on the floor (ankle cancels the pitch of pelvis, hip and knee)."""
    for s in "LR":
        hip, knee, ankle = _LEG[s]
        level = -(m.root[:, 1] + m.ang[:, hip, 0] + m.ang[:, knee, 0])
        m.ang[:, ankle, 0] += m.flat_feet[s] * level
    return m


# ----------------------------------------------------------------------------------------------
# motion programs (one-hand actions are written right-handed and mirrored per take)


def _pickup(sub: _Subject, k: _Take) -> list[_Motion]:
    """A6: stoop or squat, grasp a spot on the floor, straighten up."""
    m, u = _base(sub, k), k.u
    squat = k.rng.uniform(0.15, 1.0)
    t1 = k.jit(0.15)
    t2 = t1 + k.rng.uniform(0.22, 0.32)
    t3 = t2 + k.rng.uniform(0.05, 0.15)
    t4 = k.jit(0.9)
    env = _hold(u, t1, t2, t3, t4)
    bend = (45 + 35 * (1 - squat)) * min(k.amp, 1.1) * env
    m.root[:, 1] -= 0.5 * bend
    m.ang[:, _LBACK, 0] -= 0.3 * bend
    m.ang[:, _UBACK, 0] -= 0.2 * bend
    m.ang[:, _HEAD, 0] -= 15 * env
    for s in "LR":
        hip, knee, _ = _LEG[s]
        m.ang[:, hip, 0] += 0.5 * bend + 70 * squat * env
        m.ang[:, knee, 0] -= 110 * squat * env
        m.ang[:, _ARM[s][1], 0] += 0.8 * bend  # arms keep hanging while the trunk bends
        m.ang[:, _ARM[s][1], 1] -= 90 * env
    pos, _ = _body_frame(m)
    spot = pos[0, 0] + [k.rng.uniform(0.0, 0.25), 0.0, -k.rng.uniform(0.2, 0.45)]
    spot[1] = k.rng.uniform(0.05, 0.15)
    grasp = _hold(u, (t1 + t2) / 2, t2, t3, (t3 + t4) / 2)
    _reach(m, "R", np.broadcast_to(spot, (k.u.size, 3)), grasp, hint=(0.6, -0.3, 0.8))
    return [m]


def _drink(sub: _Subject, k: _Take) -> list[_Motion]:
    """A1: bring a cup to the mouth, tip the head back, lower it."""
    m, u = _base(sub, k), k.u
    t1, t2, t3, t4 = k.window(0.12, (0.15, 0.25), 0.88, 0.05, (0.15, 0.25))
    lift = _hold(u, t1, t2, t3, t4)
    sip = _hold(u, t2, t2 + 0.08, t3 - 0.08, t3)
    m.ang[:, _HEAD, 0] += k.rng.uniform(8, 25) * sip  # head tips back to drink
    m.ang[:, _UBACK, 0] += 5 * sip
    pos, rot = _body_frame(m)
    mouth = _in_frame(pos, rot, _HEAD, (0.02, -0.09, -0.13))
    _reach(m, "R", mouth, lift, hint=(0.7, -1.0, 0.1))
    return [m]


def _bow(sub: _Subject, k: _Take) -> list[_Motion]:
    """A35: bow from the hips once or twice, arms hanging."""
    m, u = _base(sub, k), k.u
    n = 1 + int(k.rng.random() < 0.3)  # some nod twice
    env = np.zeros_like(u)
    start = k.jit(0.2, 0.08)
    for _ in range(n):
        down = start + k.rng.uniform(0.12, 0.22)
        up = down + k.rng.uniform(0.0, 0.15)
        end = up + k.rng.uniform(0.12, 0.22)
        env = np.maximum(env, _hold(u, start, down, up, end))
        start = end
    depth = k.rng.uniform(20, 55) * k.amp * env
    m.root[:, 1] -= 0.4 * depth
    m.ang[:, _LBACK, 0] -= 0.35 * depth
    m.ang[:, _UBACK, 0] -= 0.25 * depth
    m.ang[:, _HEAD, 0] -= 15 * env
    for s in "LR":
        m.ang[:, _LEG[s][0], 0] += 0.4 * depth
        m.ang[:, _ARM[s][1], 0] += 0.8 * depth
        m.ang[:, _ARM[s][1], 1] -= 90 * env
    return [m]


def _cheer(sub: _Subject, k: _Take) -> list[_Motion]:
    """A22: both arms up in a V, pumping, with a little knee bounce."""
    m, u = _base(sub, k), k.u
    t1, t2, t3, t4 = k.window(0.12, (0.1, 0.2), 0.88, 0.05, (0.1, 0.2))
    env = _hold(u, t1, t2, t3, t4)
    n = k.cycles(t3 - t2, lo=2)
    pump = 0.5 - 0.5 * np.cos(2 * np.pi * n * _progress(u, t2, t3))
    raise_, spread = k.rng.uniform(140, 175), k.rng.uniform(30, 75)
    for s in "LR":
        _, sh, el, _ = _ARM[s]
        m.ang[:, sh, 0] += (raise_ * min(k.amp, 1.05) - sub.arm_out) * env - 15 * pump
        m.ang[:, sh, 1] += (spread - 90) * env
        m.ang[:, el, 0] += 50 * pump
        m.ang[:, _LEG[s][0], 0] += 8 * pump
        m.ang[:, _LEG[s][1], 0] -= 16 * pump
    m.ang[:, _HEAD, 0] += 10 * env
    return [m]


def _throw(sub: _Subject, k: _Take) -> list[_Motion]:
    """A7: overarm throw: wind up behind the head, whip forward, step into it."""
    m, u = _base(sub, k), k.u
    w0 = k.jit(0.15)
    w1 = w0 + k.rng.uniform(0.2, 0.3)
    r = w1 + k.rng.uniform(0.06, 0.1)
    f = r + 0.08
    e = k.jit(0.88, 0.05)
    a = k.amp
    _, sh, el, _ = _ARM["R"]
    m.ang[:, sh, 0] = _kf(u, (w0, sub.arm_out), (w1, min(150 * a, 170)), (r, 85), (f, 45),
                          (e, sub.arm_out))
    m.ang[:, sh, 1] = _kf(u, (w0, 90), (w1, 115), (r, 20), (f, -25), (e, 90))
    m.ang[:, el, 0] = _kf(u, (w0, sub.elbow), (w1, 110), (r, 25), (f, 15), (e, sub.elbow))
    m.ang[:, _UBACK, 2] += _kf(u, (w0, 0), (w1, -30 * a), (r, 15 * a), (f, 25 * a), (e, 0))
    m.ang[:, _LBACK, 0] += _kf(u, (w0, 0), (w1, 8), (r, -15 * a), (f, -12), (e, 0))
    m.ang[:, _ARM["L"][1], 0] += _kf(u, (w0, 0), (w1, 40), (r, 20), (e, 0))
    m.ang[:, _LEG["L"][0], 0] += _kf(u, (w1, 0), (r, 15), (e, 0))
    m.ang[:, _LEG["L"][1], 0] -= _kf(u, (w1, 0), (r, 20), (e, 0))
    m.support = _lean_on(m.support, 0.1, _hold(u, w1, r, f, e))  # weight on the back foot
    return [m]


def _sitting(sub: _Subject, k: _Take, standing_up: bool) -> list[_Motion]:
    """A8/A9: hips and knees flex to ~90 degrees and the pelvis drops (or the reverse)."""
    m, u = _base(sub, k), k.u
    t1 = k.jit(0.15, 0.06)
    t2 = t1 + k.rng.uniform(0.4, 0.55)
    p = _kf(u, (t1, 0.0), (t2, 1.0))
    if standing_up:
        p = 1 - _kf(u, (1 - t2, 0.0), (1 - t1, 1.0))
    seat = k.rng.uniform(75, 95)
    bump = np.sin(np.pi * p)
    m.root[:, 1] -= (30 * k.amp) * bump + 5 * p
    m.ang[:, _LBACK, 0] -= 8 * bump
    m.ang[:, _HEAD, 0] -= 10 * bump
    for s in "LR":
        hip, knee, _ = _LEG[s]
        m.ang[:, hip, 0] += seat * p + 30 * bump
        m.ang[:, knee, 0] -= seat * p
        _, sh, el, _ = _ARM[s]
        m.ang[:, sh, 0] += (45 if standing_up else 25) * bump + 20 * p
        m.ang[:, sh, 1] -= 70 * np.maximum(bump, p)
        m.ang[:, el, 0] += 45 * p
    return [m]


def _clap(sub: _Subject, k: _Take) -> list[_Motion]:
    """A10: hands meet repeatedly in front of the chest."""
    m, u = _base(sub, k), k.u
    t1, t2, t3, t4 = k.window(0.1, (0.1, 0.18), 0.92, 0.05, (0.1, 0.18))
    env = _hold(u, t1, t2, t3, t4)
    n = k.cycles(t3 - t2, lo=2)
    ph = _progress(u, t2, t3)
    gap = 0.04 + k.rng.uniform(0.2, 0.35) * k.amp * (0.5 + 0.5 * np.cos(2 * np.pi * n * ph))
    height, depth = k.rng.uniform(-0.2, 0.05), k.rng.uniform(0.22, 0.35)
    pos, rot = _body_frame(m)
    for s, sign in (("R", 1), ("L", -1)):
        goal = np.stack([sign * gap / 2, np.full_like(gap, height), np.full_like(gap, -depth)], 1)
        goal = pos[:, _SPINE_SH] + np.einsum("tij,tj->ti", rot[:, _SPINE_SH], goal)
        _reach(m, s, goal, env, hint=(0.8, -1.0, 0.4))
    return [m]


def _wave(sub: _Subject, k: _Take) -> list[_Motion]:
    """A23: hand raised beside the head, swinging side to side."""
    m, u = _base(sub, k), k.u
    t1, t2, t3, t4 = k.window(0.1, (0.1, 0.2), 0.9, 0.06, (0.1, 0.2))
    env = _hold(u, t1, t2, t3, t4)
    n = k.cycles(t3 - t2, lo=2)
    ph = _progress(u, t2, t3)
    arm = np.linalg.norm(sub.offsets[[9, 10, 11]], axis=1).sum()
    phase = k.rng.uniform(0, 2 * np.pi)
    side = k.rng.uniform(0.15, 0.35) + 0.15 * k.amp * np.sin(2 * np.pi * n * ph + phase)
    local = np.stack([side * arm, np.full_like(ph, k.rng.uniform(0.45, 0.75) * arm),
                      np.full_like(ph, -k.rng.uniform(0.0, 0.3) * arm)], 1)
    pos, rot = _body_frame(m)
    goal = pos[:, 8] + np.einsum("tij,tj->ti", rot[:, 8], local)
    _reach(m, "R", goal, env, hint=(1.0, -0.5, 0.0))
    return [m]


def _kick(sub: _Subject, k: _Take) -> list[_Motion]:
    """A24: back-swing then forward kick of one leg, standing on the other."""
    m, u = _base(sub, k), k.u
    t0 = k.jit(0.15)
    t1 = t0 + k.rng.uniform(0.15, 0.25)
    t2 = t1 + k.rng.uniform(0.08, 0.14)
    t3 = t2 + k.rng.uniform(0.1, 0.15)
    t4 = t3 + k.rng.uniform(0.12, 0.2)
    hip, knee, ankle = _LEG["R"]
    m.ang[:, hip, 0] += _kf(u, (t0, 0), (t1, -25), (t2, min(70 * k.amp, 80)), (t3, 15), (t4, 0))
    m.ang[:, knee, 0] -= _kf(u, (t0, 0), (t1, 80), (t2, 5), (t3, 40), (t4, 0))
    lifted = _hold(u, t0 - 0.02, t0 + 0.03, t3 + 0.05, t4)
    m.flat_feet["R"] = 1 - lifted
    m.ang[:, ankle, 0] -= 25 * lifted
    m.support = _lean_on(m.support, 1.0, lifted)
    m.ang[:, _LBACK, 0] += _kf(u, (t1, 0), (t2, 12), (t4, 0))
    swing = _kf(u, (t0, 0), (t2, 1), (t4, 0))  # arms counter-swing in the sagittal plane
    m.ang[:, _ARM["L"][1], :2] += swing[:, None] * [35, -90]
    m.ang[:, _ARM["R"][1], :2] += swing[:, None] * [-25 - sub.arm_out, -90]
    return [m]


def _hop(sub: _Subject, k: _Take) -> list[_Motion]:
    """A26: one foot lifted behind, hops on the other."""
    m, u = _base(sub, k), k.u
    t1 = k.jit(0.1)
    t2 = t1 + 0.1
    t4 = k.jit(0.9, 0.05)
    t3 = t4 - 0.1
    env = _hold(u, t1, t2, t3, t4)
    hip, knee, ankle = _LEG["R"]
    m.ang[:, hip, 0] += k.rng.uniform(5, 30) * env
    m.ang[:, knee, 0] -= k.rng.uniform(60, 95) * env
    m.ang[:, ankle, 0] -= 20 * env
    m.flat_feet["R"] = 1 - env
    m.support = _lean_on(m.support, 1.0, env)
    n = k.cycles(t3 - t2, lo=2)
    ph = n * _progress(u, t2, t3)
    frac = ph % 1.0
    ground = 0.35
    air = np.clip((frac - ground) / (1 - ground), 0, 1) * (ph < n)
    m.shift[:, 1] += k.rng.uniform(0.08, 0.16) * k.amp * 4 * air * (1 - air)
    crouch = np.sin(np.pi * np.clip(frac / ground, 0, 1)) * (ph > 0) * (ph < n)
    hip_l, knee_l, ankle_l = _LEG["L"]
    m.ang[:, hip_l, 0] += 15 * crouch
    m.ang[:, knee_l, 0] -= 30 * crouch
    m.flat_feet["L"] = 1 - (air > 0)
    m.ang[:, ankle_l, 0] -= 25 * np.sin(np.pi * air)
    for s in "LR":
        m.ang[:, _ARM[s][1], 0] += 25 * env
    return [m]


def _jump(sub: _Subject, k: _Take) -> list[_Motion]:
    """A27: crouch with arms back, ballistic flight with arms up, land in a crouch."""
    m, u = _base(sub, k), k.u
    # Ballistic flight: airtime 2*sqrt(2h/g), kept within 40 % of the action (h drops if needed).
    flight = min(2 * np.sqrt(2 * k.rng.uniform(0.15, 0.4) * k.amp / 9.81) / k.active_s, 0.4)
    height = 9.81 * (flight * k.active_s) ** 2 / 8
    c0 = k.jit(0.2, 0.06)
    c1 = c0 + k.rng.uniform(0.12, 0.2)
    up = c1 + 0.06
    land = up + flight
    rec = land + k.rng.uniform(0.15, 0.25)
    deep = k.rng.uniform(50, 85)
    crouch = _kf(u, (c0, 0), (c1, 1), (up, 0), (land, 0), (land + 0.06, 0.6), (rec, 0))
    m.root[:, 1] -= 25 * crouch
    m.ang[:, _LBACK, 0] -= 10 * crouch
    for s in "LR":
        hip, knee, _ = _LEG[s]
        m.ang[:, hip, 0] += (deep * 0.8 + 25) * crouch
        m.ang[:, knee, 0] -= deep * crouch
        sh = _ARM[s][1]
        m.ang[:, sh, 0] = _kf(u, (c0, sub.arm_out), (c1, -40),
                              (up + flight / 2, 160 * min(k.amp, 1.05)),
                              (rec, sub.arm_out))
        m.ang[:, sh, 1] = _kf(u, (c0, 90), (c1, 0), (rec, 0), (rec + 0.05, 90))
    s = np.clip((u - up) / flight, 0, 1)
    airborne = (s > 0) & (s < 1)
    m.shift[:, 1] += 4 * height * s * (1 - s)
    for f in "LR":
        m.flat_feet[f] = 1.0 - airborne
        m.ang[:, _LEG[f][2], 0] -= 30 * np.sin(np.pi * s)
    return [m]


def _point(sub: _Subject, k: _Take) -> list[_Motion]:
    """A31: arm held straight towards a random direction, head turned that way."""
    m, u = _base(sub, k), k.u
    env = _hold(u, k.jit(0.12), k.jit(0.32), k.jit(0.68), k.jit(0.88))
    az, el = np.radians(k.rng.uniform(-15, 55)), np.radians(k.rng.uniform(-15, 25))
    direction = np.array([np.sin(az) * np.cos(el), np.sin(el), -np.cos(az) * np.cos(el)])
    arm = np.linalg.norm(sub.offsets[[9, 10, 11]], axis=1).sum()
    m.ang[:, _NECK, 2] -= np.degrees(az) * 0.6 * env
    pos, _ = _body_frame(m)
    _reach(m, "R", pos[:, 8] + 0.97 * arm * direction, env, hint=(0.5, -1.0, 0.3))
    return [m]


def _salute(sub: _Subject, k: _Take) -> list[_Motion]:
    """A38: straighten up, hand to the brow with the elbow out."""
    m, u = _base(sub, k), k.u
    env = _hold(u, k.jit(0.12), k.jit(0.3), k.jit(0.68), k.jit(0.88))
    m.ang[:, [_LBACK, _UBACK], 0] += 0.5 * sub.lean * env[:, None]
    m.ang[:, _HEAD, 0] += sub.head * env
    pos, rot = _body_frame(m)
    brow = (0.05 + k.rng.uniform(0.0, 0.04), 0.02, -0.1)
    _reach(m, "R", _in_frame(pos, rot, _HEAD, brow), env, hint=(1.0, 0.2, -0.4))
    return [m]


def _fall(sub: _Subject, k: _Take) -> list[_Motion]:
    """A43: knees buckle and the body topples forwards or sideways onto the floor."""
    m, u = _base(sub, k), k.u
    # The fall starts in the second half of the clip: lying on the floor (wide, not tall) must
    # last well under the 69.754 % of frames for which denoising would drop the body.
    b0 = float(u[int(k.rng.uniform(0.48, 0.6) * (len(u) - 1))])
    b1 = b0 + k.rng.uniform(0.12, 0.18)
    b2 = b1 + k.rng.uniform(0.08, 0.12)
    down = _kf(u, (b0, 0), (b1, 0.35), (b2, 1))
    kneel = _kf(u, (b0, 0), (b1, 1), (b2, 0.2))
    if k.rng.random() < 0.6:  # forwards, arms out to break the fall
        m.root[:, 1] -= 85 * down
        for s in "LR":
            m.ang[:, _ARM[s][1], 0] += 140 * down
            m.ang[:, _ARM[s][1], 1] -= 80 * down
    else:  # sideways onto the right side, pivoting on the right foot
        m.root[:, 2] -= 80 * down
        m.support = _lean_on(m.support, 0.0, down)
        m.ang[:, _ARM["L"][1], 0] += 80 * down
        m.ang[:, _ARM["R"][1], 0] += 30 * down
    for s in "LR":
        hip, knee, _ = _LEG[s]
        m.ang[:, hip, 0] += 60 * kneel
        m.ang[:, knee, 0] -= 80 * kneel
    m.ang[:, _HEAD, 0] += 20 * down
    return [m]


def _pair(sub: _Subject, partner: _Subject, k: _Take, distance: float) -> tuple[_Motion, _Motion]:
    """Two bodies facing each other along the stage x axis, ``distance`` metres apart (they do
    not wander off: their contact points are planned from these positions)."""
    a, b = _base(sub, k, wander=False), _base(partner, k, wander=False)
    a.yaw0, a.pos0 = -90.0, np.array([-distance / 2, 0.0, 0.0])
    b.yaw0, b.pos0 = 90.0, np.array([distance / 2, 0.0, 0.0])
    return a, b


def _punch(sub: _Subject, partner: _Subject, k: _Take) -> list[_Motion]:
    """A50: guard up, one fist strikes the partner's chest (or slaps the face); partner recoils."""
    u = k.u
    a, b = _pair(sub, partner, k, k.rng.uniform(0.72, 0.9))
    side, sign = ("L", -1) if k.rng.random() < 0.3 else ("R", 1)
    g0 = k.jit(0.12)
    s0 = k.jit(0.42, 0.06)
    s1 = s0 + k.rng.uniform(0.05, 0.09)
    s2 = s1 + 0.1
    e = k.jit(0.86, 0.05)
    guard = _hold(u, g0, g0 + 0.12, s2 + 0.05, e)
    for s in "LR":
        _, sh, el, _ = _ARM[s]
        a.ang[:, sh, 0] += 35 * guard
        a.ang[:, sh, 1] -= 70 * guard
        a.ang[:, el, 0] += 100 * guard
    a.ang[:, _UBACK, 2] += sign * _kf(u, (s0, 0), (s1, 20 * k.amp), (e, 0))  # shoulder leads
    a.ang[:, _LBACK, 0] -= _kf(u, (s0, 0), (s1, 12), (e, 0))
    hit = _hold(u, s1, s1 + 0.05, s1 + 0.12, s1 + 0.35)
    b.ang[:, _UBACK, 0] += 15 * hit
    b.ang[:, _HEAD, 0] += 15 * hit
    b.shift[:, 2] += 0.12 * hit
    slap = k.rng.random() < 0.35
    pb, rb = _body_frame(b)
    spot = (-0.12 * sign, 0.02, -0.08) if slap else (0.0, -0.05, -0.12)  # cheek facing the hand
    target = _in_frame(pb, rb, _HEAD if slap else _SPINE_SH, spot) @ _yaw(b.yaw0).T + b.pos0
    strike = _kf(u, (s0, 0), (s1, 1), (s2, 0))
    _reach(a, side, _to_body(a, target), strike, hint=(1.0, 0.3, 0.2) if slap else (0.6, -1, 0.4))
    return [a, b]


def _push(sub: _Subject, partner: _Subject, k: _Take) -> list[_Motion]:
    """A52: both hands shove the partner's chest; the partner stumbles back."""
    u = k.u
    a, b = _pair(sub, partner, k, k.rng.uniform(0.7, 0.85))
    s0 = k.jit(0.35, 0.06)
    s1 = s0 + k.rng.uniform(0.1, 0.16)
    s2 = s1 + k.rng.uniform(0.1, 0.2)
    e = k.jit(0.88, 0.05)
    shove = _kf(u, (s0, 0), (s1, 1), (s2, 1), (e, 0))
    back = _kf(u, (s1 - 0.05, 0), (s1 + 0.1, 1), (1.0, 1))
    b.shift[:, 2] += k.rng.uniform(0.2, 0.4) * back  # stumbles backwards
    b.ang[:, _UBACK, 0] += 15 * _hold(u, s1 - 0.05, s1 + 0.05, s1 + 0.1, s1 + 0.3)
    for s in "LR":
        b.ang[:, _ARM[s][1], 0] += 30 * _hold(u, s1, s1 + 0.08, s1 + 0.15, e)
    a.ang[:, _LBACK, 0] -= 15 * shove
    a.shift[:, 2] -= 0.15 * back
    pb, rb = _body_frame(b)
    for s, x in (("R", -0.13), ("L", 0.13)):
        chest = _in_frame(pb, rb, _SPINE_SH, (x, -0.08, -0.12)) @ _yaw(b.yaw0).T + b.pos0
        _reach(a, s, _to_body(a, chest), shove, hint=(0.8, -1.0, 0.4))
    return [a, b]


def _hug(sub: _Subject, partner: _Subject, k: _Take) -> list[_Motion]:
    """A55: walk together, arms wrap around the partner's back, release."""
    u = k.u
    d0, d1 = k.rng.uniform(1.1, 1.4), k.rng.uniform(0.36, 0.46)
    a, b = _pair(sub, partner, k, d0)
    a0 = k.jit(0.1)
    a1 = a0 + k.rng.uniform(0.2, 0.28)
    r0 = k.jit(0.7, 0.05)
    r1 = r0 + 0.1
    near = _kf(u, (a0, 0), (a1, 1), (r1, 1), (1.0, 0.7))
    wrap = _hold(u, a1 - 0.08, a1 + 0.04, r0, r1)
    step = np.sin(np.pi * np.clip((u - a0) / (a1 - a0), 0, 1) * 2)
    for m in (a, b):
        m.shift[:, 2] -= (d0 - d1) / 2 * near
        m.ang[:, _LBACK, 0] -= 10 * wrap
        for s, sign in (("R", 1), ("L", -1)):
            swing = np.maximum(sign * step, 0)
            m.ang[:, _LEG[s][0], 0] += 20 * swing
            m.ang[:, _LEG[s][1], 0] -= 30 * swing
        m.support = 0.5 + 0.5 * np.clip(3 * step, -1, 1)
    for me, other, spine, y in ((a, b, _SPINE_SH, -0.02), (b, a, _SPINE_MID, 0.05)):
        po, ro = _body_frame(other)
        for s, x in (("R", -0.12), ("L", 0.12)):
            back = _in_frame(po, ro, spine, (x, y, 0.1)) @ _yaw(other.yaw0).T + other.pos0
            _reach(me, s, _to_body(me, back), wrap, hint=(1.0, 0.0, 0.3))
    return [a, b]


def _handshake(sub: _Subject, partner: _Subject, k: _Take) -> list[_Motion]:
    """A58: right hands meet midway between the two and shake."""
    u = k.u
    a, b = _pair(sub, partner, k, k.rng.uniform(0.6, 0.75))  # within a bent arm's reach
    t1, t2, t3, t4 = k.window(0.12, (0.15, 0.22), 0.88, 0.05, (0.12, 0.2))
    grip = _hold(u, t1, t2, t3, t4)
    n = k.cycles(t3 - t2, lo=2)
    ph = _progress(u, t2, t3)
    shake = np.sin(2 * np.pi * n * ph + k.rng.uniform(0, 2 * np.pi))
    y = 0.6 * (sub.height + partner.height) / 2 + 0.04 * k.amp * shake
    for m, dx in ((a, -0.02), (b, 0.02)):
        m.ang[:, _LBACK, 0] -= 6 * grip
        m.ang[:, _HEAD, 0] -= 8 * grip
        meet = np.stack([np.full_like(y, dx), y, np.zeros_like(y)], 1)
        _reach(m, "R", _to_body(m, meet), grip, hint=(0.5, -1.0, 0.3))
    return [a, b]


_SOLO: dict[int, Callable[[_Subject, _Take], list[_Motion]]] = {
    1: _drink,
    6: _pickup,
    7: _throw,
    8: lambda s, k: _sitting(s, k, standing_up=False),
    9: lambda s, k: _sitting(s, k, standing_up=True),
    10: _clap,
    22: _cheer,
    23: _wave,
    24: _kick,
    26: _hop,
    27: _jump,
    31: _point,
    35: _bow,
    38: _salute,
    43: _fall,
}
_DUO: dict[int, Callable[[_Subject, _Subject, _Take], list[_Motion]]] = {
    50: _punch,
    52: _push,
    55: _hug,
    58: _handshake,
}
_ONE_SIDED = frozenset({1, 6, 7, 23, 24, 26, 31, 38, 43})
_TAIL_MAX = {43: 0.08}  # a faller lies still afterwards; keep that short as in NTU clips

SYNTHETIC_ACTIONS: tuple[int, ...] = tuple(sorted(_SOLO | _DUO))


# ----------------------------------------------------------------------------------------------
# one performance, filmed by three cameras


def _rng(*key: int) -> np.random.Generator:
    """A generator keyed by ints (tag, ids): independent streams, same draws in any process."""
    return np.random.default_rng([int(x) for x in key])


def _take(rng: np.random.Generator, sub: _Subject, action: int, frames: tuple[int, int]) -> _Take:
    T = int(rng.integers(frames[0], frames[1] + 1))
    lead = rng.uniform(0.02, 0.35) * T  # standing still before and after the action
    tail = rng.uniform(0.02, _TAIL_MAX.get(action, 0.35)) * T
    squeeze = min(1.0, 0.5 * T / (lead + tail))  # the action itself gets at least half the clip
    lead, tail = lead * squeeze, tail * squeeze
    t = np.arange(T, dtype=float)
    u = np.clip((t - lead) / (T - 1 - lead - tail), 0.0, 1.0)
    warp = rng.uniform(-0.5, 0.5)
    u = u + warp / np.pi * np.sin(np.pi * u) * 0.9
    return _Take(rng, u, t / _FPS, (T - lead - tail) / _FPS,
                 amp=sub.amp * float(rng.uniform(0.75, 1.25)),
                 rate=sub.rate * float(rng.uniform(0.8, 1.2)))


def _perform(seed: int, setup: int, subject: int, rep: int, action: int,
             frames: tuple[int, int], n_subjects: int) -> list[np.ndarray]:
    """Joints (T, 25, 3) of every real body on the stage (floor y = 0), one array per body."""
    rng = _rng(seed, 202, setup, subject, rep, action)
    sub = _subject(seed, subject)
    take = _take(rng, sub, action, frames)
    if action in _DUO:
        others = [p for p in range(1, n_subjects + 1) if p != subject] or [subject + 1]
        partner = _subject(seed, int(rng.choice(others)))
        bodies = _DUO[action](sub, partner, take)
        if rng.random() < 0.5:  # which side of the stage the performer stands on
            for m in bodies:
                m.yaw0 += 180.0
                m.pos0 = -m.pos0
    else:
        bodies = _SOLO[action](sub, take)
        if action in _ONE_SIDED and (rng.random() < 0.3) != sub.left_handed:
            bodies = [_mirror(m) for m in bodies]
    facing = _CAMERA_YAW[_FACING_CAMERA[(rep - 1) % 3]] + rng.uniform(-15, 15)
    spot = np.array([rng.uniform(-0.25, 0.25), 0.0, rng.uniform(-0.25, 0.25)])
    return [_stage(_finish(m)) @ _yaw(facing).T + spot for m in bodies]


@dataclass(frozen=True)
class _Camera:
    yaw: float
    height: float
    distance: float
    tilt: float  # degrees looking down
    roll: float  # degrees off level

    def view(self, stage: np.ndarray) -> np.ndarray:
        """Stage points -> this camera's space (it stands ``distance`` from the stage centre)."""
        turn = _yaw(self.yaw) @ _rx(np.radians(np.float64(self.tilt))) @ _rz(
            np.radians(np.float64(self.roll)))
        centre = _yaw(self.yaw) @ np.array([0.0, self.height, -self.distance])
        return (stage - centre) @ turn


def _camera(seed: int, setup: int, camera: int) -> _Camera:
    """NTU setups differ in camera height and distance; the three cameras share a height but
    each Kinect is aimed by hand (own distance, tilt and a slight roll)."""
    height = _rng(seed, 303, setup).uniform(0.6, 1.4)
    crng = _rng(seed, 304, setup, camera)
    return _Camera(_CAMERA_YAW[camera], float(height), float(crng.uniform(2.7, 3.6)),
                   float(crng.uniform(-2.0, 14.0)), float(crng.uniform(-3.0, 3.0)))


_JITTER_SCALE = np.ones(25)
_JITTER_SCALE[[6, 7, 10, 11, 21, 22, 23, 24]] = 2.0  # Kinect hands are the noisiest joints
_JITTER_SCALE[[14, 15, 18, 19]] = 1.5


def _jitter(rng: np.random.Generator, T: int, sigma: float) -> np.ndarray:
    """Kinect joint noise (T, 25, 3): mostly a slow wobble (the SDK smooths over frames) plus
    a little frame-to-frame shake, so joints move ~1 cm per frame at rest as in real NTU files."""
    width = 10
    white = rng.normal(0, sigma, (T + width, 25, 3))
    csum = np.cumsum(white, axis=0)
    wobble = (csum[width:] - csum[:-width]) / np.sqrt(width)
    return wobble + rng.normal(0, 0.2 * sigma, (T, 25, 3))


def _film(bodies: list[np.ndarray], cam: _Camera, rng: np.random.Generator,
          ) -> list[list[tuple[int, np.ndarray]]]:
    """What one Kinect records: jittered joints, body ids, and the occasional tracking glitch."""
    T = len(bodies[0])
    sigma = rng.uniform(0.006, 0.012)
    tracks = []
    for stage in bodies:
        xyz = cam.view(stage) + _jitter(rng, T, sigma) * _JITTER_SCALE[:, None]
        tracks.append((np.ones(T, bool), xyz))
    if len(bodies) == 1 and rng.random() < 0.06:  # Kinect lost the actor for a few frames
        k = int(rng.integers(1, 5))
        lost = np.arange(k) if rng.random() < 0.5 else rng.choice(T, k, replace=False)
        tracks[0][0][lost] = False
    if rng.random() < 0.1:
        tracks.append(_spurious(T, rng))
    ids = _KINECT_ID_BASE + 1000 + rng.choice(199_000, len(tracks), replace=False)
    slots = rng.permutation(len(tracks))  # Kinect lists bodies by tracking slot
    order = [tracks[i] + (int(ids[i]),) for i in np.argsort(slots)]
    return [[(bid, xyz[f]) for seen, xyz, bid in order if seen[f]] for f in range(T)]


def _spurious(T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A false body: a brief ghost (<= 10 frames) or a wide flat object seen most of the clip."""
    seen = np.zeros(T, bool)
    centre = np.array([rng.uniform(-1.2, 1.2), rng.uniform(-0.6, 0.2), rng.uniform(2.2, 4.0)])
    if rng.random() < 0.5:
        n = int(rng.integers(2, 11))
        start = int(rng.integers(0, T - n + 1))
        seen[start:start + n] = True
        shape = rng.normal(0, [0.15, 0.4, 0.1], (25, 3))
        xyz = centre + shape + rng.normal(0, 0.08, (T, 25, 3))
    else:
        n = int(rng.integers(int(0.6 * T), T + 1))
        start = int(rng.integers(0, T - n + 1))
        seen[start:start + n] = True
        half = rng.uniform(0.35, 0.7)
        shape = np.stack([np.linspace(-half, half, 25), rng.uniform(-0.1, 0.1, 25),
                          rng.uniform(-0.15, 0.15, 25)], 1)[rng.permutation(25)]
        xyz = centre + shape + rng.normal(0, 0.02, (T, 25, 3))
    return seen, xyz


# ----------------------------------------------------------------------------------------------
# writing


def _skeleton_name(setup: int, camera: int, subject: int, rep: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{rep:03d}A{action:03d}.skeleton"


_NO_ORIENTATION = [3, 15, 19, 21, 22, 23, 24]
_JOINT_FMT = " ".join(["%.7g"] * 11) + " 2"
_BODY_FMT = "\r\n".join(["%d %d 1 1 1 1 0 %.7g %.7g 2", "25"] + [_JOINT_FMT] * 25)


def _joint_fields(xyz: np.ndarray) -> np.ndarray:
    """(N, 25, 3) camera-space joints -> (N, 25, 11) NTU joint fields.

    Depth/colour pixels are the Kinect projections; the orientation is the shortest rotation from
    +y to the bone reaching the joint (Kinect bone frames have y along the bone), and all zeros
    for the end joints the SDK gives no orientation (head, feet, hand tips, thumbs).
    """
    x, y, z = xyz[..., 0], xyz[..., 1], np.maximum(xyz[..., 2], 0.1)
    bone = xyz - xyz[:, np.maximum(_PARENT, 0)]
    bone[:, 0] = xyz[:, 1] - xyz[:, 0]
    bone /= np.maximum(np.linalg.norm(bone, axis=-1, keepdims=True), 1e-9)
    quat = np.stack([1 + bone[..., 1], bone[..., 2], np.zeros_like(x), -bone[..., 0]], -1)
    quat /= np.maximum(np.linalg.norm(quat, axis=-1, keepdims=True), 1e-9)
    quat[:, _NO_ORIENTATION] = 0.0
    return np.concatenate([
        xyz,
        np.stack([_DEPTH_C[0] + _DEPTH_F * x / z, _DEPTH_C[1] - _DEPTH_F * y / z,
                  _COLOR_C[0] + _COLOR_F * (x + _COLOR_DX) / z,
                  _COLOR_C[1] - _COLOR_F * y / z], -1),
        quat,
    ], -1)


def write_ntu_skeleton(path: Path, frames: Sequence[Sequence[tuple[int, np.ndarray]]]) -> None:
    """Write one NTU-format file (CRLF, as the Kinect SDK dumps were).

    ``frames[f]`` lists the bodies of frame f as ``(body_id, xyz (25, 3))``; an empty list is an
    empty frame.  Fields other than x y z are derived from them: Kinect depth/colour projections,
    bone-aligned orientation quaternions, lean from the spine, edge-clipping flags; every joint is
    tracked (state 2).
    """
    bodies = [(bid, np.asarray(xyz, float)) for frame in frames for bid, xyz in frame]
    lines, rows = [str(len(frames))], []
    if bodies:
        xyz = np.stack([b for _, b in bodies])
        fields = _joint_fields(xyz)
        spine = xyz[:, 20] - xyz[:, 0]
        spine /= np.maximum(np.linalg.norm(spine, axis=-1, keepdims=True), 1e-9)
        dx, dy = fields[..., 3], fields[..., 4]
        clipped = (((dx > 512).any(1) * 1) | ((dx < 0).any(1) * 2) | ((dy < 0).any(1) * 4)
                   | ((dy > 424).any(1) * 8))
        info = np.stack([clipped, spine[:, 0], -spine[:, 2]], 1)
        rows = np.concatenate([info, fields.reshape(len(bodies), -1)], 1).tolist()
    k = 0
    for frame in frames:
        lines.append(str(len(frame)))
        for bid, _ in frame:
            lines.append(_BODY_FMT % (bid, *rows[k]))
            k += 1
    Path(path).write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def _write_performance(job: tuple[int, int, int, int, int, tuple[int, int], int, str],
                       ) -> list[Path]:
    seed, setup, subject, rep, action, frames, n_subjects, out_dir = job
    bodies = _perform(seed, setup, subject, rep, action, frames, n_subjects)
    paths = []
    for camera in (1, 2, 3):
        rng = _rng(seed, 404, setup, camera, subject, rep, action)
        path = Path(out_dir) / _skeleton_name(setup, camera, subject, rep, action)
        write_ntu_skeleton(path, _film(bodies, _camera(seed, setup, camera), rng))
        paths.append(path)
    return paths


def generate_ntu_files(out_dir: Path, *, actions: Sequence[int] = SYNTHETIC_ACTIONS,
                       n_subjects: int = 10, n_replications: int = 2, n_setups: int = 1,
                       seed: int = 0, frames: tuple[int, int] = (40, 80),
                       workers: int = 1) -> list[Path]:
    """Write every (setup, camera 1..3, subject, replication, action) file; return the paths sorted.

    Every file depends only on (seed, its ids, n_subjects, frames), so output is byte-identical
    for any ``workers``.  Subjects are P001..P{n_subjects}; X-Sub trains on 1 2 4 5 8 9 of 1..10.
    """
    unknown = sorted(set(actions) - set(SYNTHETIC_ACTIONS))
    if unknown:
        raise ValueError(f"no synthetic motion for NTU actions {unknown}; have {SYNTHETIC_ACTIONS}")
    if min(n_subjects, n_replications, n_setups) < 1 or seed < 0:
        raise ValueError("n_subjects, n_replications and n_setups must be >= 1 and seed >= 0")
    if not 16 <= frames[0] <= frames[1]:
        raise ValueError(f"frames must be (lo, hi) with 16 <= lo <= hi, got {frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(seed, s, p, r, a, tuple(frames), n_subjects, str(out))
            for s in range(1, n_setups + 1) for p in range(1, n_subjects + 1)
            for r in range(1, n_replications + 1) for a in actions]
    if workers > 1:
        with ParentBoundPool(workers) as pool:  # its workers exit if this process is killed
            groups = list(pool.map(_write_performance, jobs, chunksize=8))
    else:
        groups = [_write_performance(job) for job in jobs]
    return sorted(p for group in groups for p in group)
