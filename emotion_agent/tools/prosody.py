"""Prosody of one clip in numpy: pitch (autocorrelation, YIN-style), energy, voicing, tempo, pauses.

Everything is computed from the clip itself (16 kHz mono float32): no model, a few ms per clip.
:func:`prosody` returns a :class:`Prosody` with a fixed-length feature vector (for the speech-emotion
head) and :func:`readable_cues` turns it into cues an analyst can read ("pitch peaks 30 % above the
clip's median", "loud", "fast").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SR = 16_000
HOP = 160        # 10 ms
WIN = 640        # 40 ms: two periods of a 50 Hz voice
FMIN, FMAX = 60.0, 500.0
SILENCE_DBFS = -60.0   # a clip whose loud frames stay below this is treated as silent

FEATURE_NAMES: tuple[str, ...] = (
    "f0_median_log",      # log2 of median pitch (Hz)
    "f0_p10_st",          # 10th percentile, semitones relative to the median
    "f0_p90_st",          # 90th percentile, semitones relative to the median
    "f0_std_st",          # spread in semitones
    "f0_slope_st_s",      # linear trend over the clip, semitones / s
    "f0_jump_st",         # mean |change| between consecutive voiced frames (semitones)
    "voiced_frac",        # voiced share of the active (non-silent) frames
    "level_dbfs",         # mean level of active frames (dBFS)
    "level_std_db",       # spread of frame level (dB)
    "level_range_db",     # p95 - p10 frame level (dB)
    "peak_minus_mean_db", # p95 - mean (dB)
    "active_frac",        # frames above the clip's noise floor + 15 dB
    "syllable_rate",      # energy-envelope peaks per active second
    "pause_count_rate",   # pauses > 0.2 s per second
    "centroid_khz",       # mean spectral centroid of active frames
    "centroid_std_khz",
    "hf_ratio_db",        # energy above 2 kHz relative to below (spectral tilt)
    "zcr",                # zero-crossing rate of active frames
    "duration_log",       # log of active duration (s)
)


@dataclass
class Prosody:
    """Prosodic measures of a clip (pitch, level, rate, pauses) and its feature vector."""

    duration_s: float
    features: np.ndarray                 # len(FEATURE_NAMES), float32
    silent: bool
    f0_median_hz: float | None
    f0_p90_hz: float | None
    f0_p10_hz: float | None
    voiced_frac: float
    level_dbfs: float
    level_range_db: float
    syllable_rate: float
    active_s: float
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of gaps > 0.2 s
    active: np.ndarray | None = None     # per 10 ms frame: speech-level energy

    def active_mask(self, frame_s: float = 0.02) -> np.ndarray | None:
        """The activity mask resampled to frames of ``frame_s`` (Whisper encoder frames are 20 ms)."""
        if self.active is None:
            return None
        step = max(1, int(round(frame_s * SR / HOP)))
        n = len(self.active) // step
        return self.active[: n * step].reshape(n, step).any(axis=1) if n else None

    def as_dict(self) -> dict[str, float]:
        """The feature vector as ``{feature name: value}`` (rounded)."""
        return {k: round(float(v), 4) for k, v in zip(FEATURE_NAMES, self.features)}


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n = 1 + (len(x) - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def pitch_track(x: np.ndarray, sr: int = SR) -> tuple[np.ndarray, np.ndarray]:
    """(f0 Hz per 10 ms frame, 0 where unvoiced; periodicity 0..1), cumulative-mean-normalised difference (YIN)."""
    frames = _frames(x.astype(np.float64), WIN, HOP)
    frames = frames - frames.mean(axis=1, keepdims=True)
    lag_min, lag_max = int(sr / FMAX), int(sr / FMIN)
    w = WIN - lag_max - 2  # integration window of the difference function
    n_fft = 1 << int(np.ceil(np.log2(2 * WIN)))
    spec = np.fft.rfft(frames, n_fft, axis=1)
    acf = np.fft.irfft(spec * np.conj(np.fft.rfft(frames[:, :w], n_fft, axis=1)), n_fft, axis=1)[:, :lag_max + 2]
    # energy of frames[:, tau:tau+w] for every tau (cumulative sums)
    sq = np.cumsum(np.pad(frames ** 2, ((0, 0), (1, 0))), axis=1)
    taus = np.arange(lag_max + 2)
    e_tau = sq[:, taus + w] - sq[:, taus]
    d = e_tau[:, :1] + e_tau - 2 * acf
    d[:, 0] = 0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, d.shape[1])
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    seg = cmnd[:, lag_min:lag_max + 1]
    thr = 0.15
    below = seg < thr
    first = np.where(below.any(axis=1), below.argmax(axis=1), seg.argmin(axis=1))
    # walk to the local minimum after the first dip under the threshold
    rows = np.arange(len(seg))
    for _ in range(8):
        nxt = np.minimum(first + 1, seg.shape[1] - 1)
        move = seg[rows, nxt] < seg[rows, first]
        if not move.any():
            break
        first = np.where(move, nxt, first)
    val = seg[rows, first]
    lag = (first + lag_min).astype(np.float64)
    # parabolic interpolation
    i = np.clip(first, 1, seg.shape[1] - 2)
    a, b, c = seg[rows, i - 1], seg[rows, i], seg[rows, i + 1]
    den = a - 2 * b + c
    shift = np.where(np.abs(den) > 1e-9, 0.5 * (a - c) / np.where(np.abs(den) > 1e-9, den, 1), 0.0)
    lag = np.where((first >= 1) & (first <= seg.shape[1] - 2), i + lag_min + np.clip(shift, -1, 1), lag)
    periodicity = np.clip(1.0 - val, 0.0, 1.0)
    f0 = np.where(val < 0.35, sr / lag, 0.0)
    return f0, periodicity


def prosody(x: np.ndarray, sr: int = SR) -> Prosody:
    """Prosody of a mono clip at ``sr`` Hz; silent clips get zero features and ``silent=True``."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    duration = len(x) / sr
    frames = _frames(x, 400, HOP)  # 25 ms for level
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    db = 20 * np.log10(rms + 1e-9)
    floor = np.percentile(db, 10)
    loud = np.percentile(db, 95)
    silent = bool(loud < SILENCE_DBFS or len(x) < sr // 10)
    active = db > max(min(floor + 15.0, loud - 10.0), loud - 35.0, SILENCE_DBFS)
    if silent or active.sum() < 5:
        feats = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        return Prosody(duration, feats, True, None, None, None, 0.0, float(loud), 0.0, 0.0, 0.0, [], active)

    f0, _ = pitch_track(x, sr)
    n = min(len(f0), len(active))
    f0, act = f0[:n], active[:n]
    voiced = (f0 > 0) & act
    # octave-error clean-up: drop voiced frames > 1 octave from the median
    if voiced.sum() >= 3:
        med = np.median(f0[voiced])
        voiced &= (f0 > med / 2.1) & (f0 < med * 2.1)
    vf = f0[voiced]
    if len(vf) >= 3:
        med = float(np.median(vf))
        st = 12 * np.log2(vf / med)
        p10, p90 = np.percentile(st, [10, 90])
        t = np.nonzero(voiced)[0] * HOP / sr
        slope = float(np.polyfit(t, st, 1)[0]) if np.ptp(t) > 0.2 else 0.0
        consecutive = np.diff(np.nonzero(voiced)[0]) == 1
        jumps = np.abs(np.diff(st))[consecutive]
        jump = float(np.clip(jumps, 0, 12).mean()) if len(jumps) else 0.0
        f0_feats = [np.log2(med), p10, p90, st.std(), np.clip(slope, -30, 30), jump]
        f0_med, f0_p10, f0_p90 = med, med * 2 ** (p10 / 12), med * 2 ** (p90 / 12)
    else:
        f0_feats = [np.log2(150.0), 0, 0, 0, 0, 0]
        f0_med = f0_p10 = f0_p90 = None
    voiced_frac = float(voiced.sum() / max(act.sum(), 1))
    adb = db[active]
    level = float(adb.mean())
    lrange = float(np.percentile(adb, 95) - np.percentile(adb, 10))

    # syllable nuclei: peaks of the smoothed level envelope that stand 3 dB above their neighbourhood
    env = np.convolve(db, np.ones(7) / 7, mode="same")
    peaks = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & active[1:-1]
    pk = np.nonzero(peaks)[0] + 1
    keep, last = [], -100
    for p in pk:
        lo = env[max(0, p - 8):p + 9].min()
        if env[p] - lo >= 4.0 and p - last >= 10:
            keep.append(p)
            last = p
    active_s = float(active.sum() * HOP / sr)
    syl_rate = len(keep) / max(active_s, 0.3)

    # pauses: inactive runs > 0.2 s between the first and last active frame
    pauses: list[tuple[float, float]] = []
    idx = np.nonzero(active)[0]
    inner = ~active[idx[0]:idx[-1] + 1]
    run_start = None
    for j, flag in enumerate(np.append(inner, False)):
        if flag and run_start is None:
            run_start = j
        elif not flag and run_start is not None:
            if (j - run_start) * HOP / sr > 0.2:
                pauses.append(((idx[0] + run_start) * HOP / sr, (idx[0] + j) * HOP / sr))
            run_start = None

    spec_frames = _frames(x, 512, HOP)[: len(active)][active[: len(_frames(x, 512, HOP))]]
    mag = np.abs(np.fft.rfft(spec_frames * np.hanning(512), axis=1)) + 1e-9
    freqs = np.fft.rfftfreq(512, 1 / sr)
    cent = (mag * freqs).sum(axis=1) / mag.sum(axis=1) / 1000.0
    hf = 10 * np.log10((mag[:, freqs >= 2000] ** 2).sum(axis=1) / (mag[:, freqs < 2000] ** 2).sum(axis=1))
    zc = (np.abs(np.diff(np.signbit(frames[active]).astype(np.int8), axis=1)).sum(axis=1) / frames.shape[1])

    feats = np.array([
        *f0_feats, voiced_frac, level, float(adb.std()), lrange, float(np.percentile(adb, 95) - level),
        float(active.mean()), syl_rate, len(pauses) / max(duration, 0.5),
        float(cent.mean()), float(cent.std()), float(hf.mean()), float(zc.mean()), float(np.log(max(active_s, 0.05))),
    ], dtype=np.float32)
    feats = np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
    return Prosody(duration, feats, False, f0_med, f0_p90, f0_p10, voiced_frac, level, lrange, syl_rate, active_s,
                   pauses, active)


def readable_cues(p: Prosody) -> list[tuple[str, object, str]]:
    """(name, value, reading) triples for the evidence cues."""
    out: list[tuple[str, object, str]] = []
    if p.silent:
        return [("level", round(p.level_dbfs, 1), "silent: no speech energy")]
    if p.f0_median_hz:
        out.append(("pitch median", f"{p.f0_median_hz:.0f} Hz",
                    "high" if p.f0_median_hz > 260 else "low" if p.f0_median_hz < 110 else "mid"))
        rise = (p.f0_p90_hz / p.f0_median_hz - 1) * 100
        semis = 12 * np.log2(p.f0_p90_hz / p.f0_p10_hz)
        spread = "wide, animated" if semis > 8 else "narrow, flat" if semis < 3.5 else "normal"
        out.append(("pitch peaks", f"{rise:.0f} % above the clip's median", f"range {semis:.1f} semitones ({spread})"))
    else:
        out.append(("pitch", None, "too little voiced speech to measure"))
    lvl = p.level_dbfs
    out.append(("loudness", f"{lvl:.0f} dBFS", "loud" if lvl > -22 else "quiet" if lvl < -40 else "moderate"))
    out.append(("loudness variation", f"{p.level_range_db:.0f} dB",
                "strongly varying" if p.level_range_db > 25 else "even" if p.level_range_db < 12 else "normal"))
    rate = p.syllable_rate
    out.append(("tempo", f"{rate:.1f} syllables/s", "fast" if rate > 5.5 else "slow" if rate < 3.0 else "normal"))
    out.append(("voicing", f"{p.voiced_frac * 100:.0f} % of speech voiced",
                "breathy/tense (little voicing)" if p.voiced_frac < 0.35 else "normal"))
    if p.pauses:
        out.append(("pauses", len(p.pauses), f"{len(p.pauses)} pause(s) > 0.2 s"))
    return out
