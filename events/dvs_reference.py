"""The numpy reference of a DVS emulator step: plain whole-array operations, for the tests.

Same float32/float64 operations in the same order as :mod:`respike.events.dvs_step`, so the
packets and states are identical (tested on real clips and property-based inputs).
"""

from __future__ import annotations

import numpy as np

from respike.events.dvs_step import NEVER, Step, StepResult, check_event_count
from respike.events.types import empty_events


def run_reference(step: Step) -> StepResult:
    """numpy reference: whole-array float32 updates, then one vectorised pass per crossing number."""
    pixels = step.levels.shape[0]
    c_on = np.broadcast_to(step.on_thresholds, (pixels,))
    c_off = np.broadcast_to(step.off_thresholds, (pixels,))
    log_now = step.lut[step.levels]
    ref = step.log_ref - step.leak * c_on
    d1 = log_now - ref
    on = d1 >= c_on
    off = ~on & (d1 <= -c_off)
    n = np.zeros(pixels, dtype=np.int64)
    n[on] = (d1[on] / c_on[on]).astype(np.int64)
    n[off] = -((-d1[off]) / c_off[off]).astype(np.int64)
    c = np.where(n > 0, c_on, c_off)
    new_ref = ref + n.astype(np.float32) * c
    check_event_count(int(np.abs(n).sum()) + step.noise_index.shape[0])

    active = np.flatnonzero(n)
    n_act = n[active]
    sign = np.sign(n_act)
    c_act = c[active].astype(np.float64)
    d0 = (step.lut[step.old_levels[active]] - step.log_ref[active]).astype(np.float64)
    d1_act = d1[active].astype(np.float64)
    denom = d1_act - d0
    inv = 1.0 / np.where(denom != 0.0, denom, 1.0)
    dt = step.t1 - step.t0
    use_refractory = step.refractory_us > 0
    last = step.last_event_t.copy()
    times, pixel, crossing, polarity = [], [], [], []
    for k in range(1, int(np.abs(n_act).max(initial=0)) + 1):
        has_k = np.abs(n_act) >= k
        idx = active[has_k]
        level = (sign[has_k] * k).astype(np.float64) * c_act[has_k]
        frac = np.where(denom[has_k] != 0.0, (level - d0[has_k]) * inv[has_k], 1.0)
        frac = np.minimum(np.maximum(frac, 0.0), 1.0)
        t = step.t0 + np.minimum((frac * np.float64(dt)).astype(np.int64), dt - 1)
        if use_refractory:
            prev = last[idx]
            keep = (prev == NEVER) | (t - prev >= step.refractory_us)
            idx, t, has_sign = idx[keep], t[keep], sign[has_k][keep]
            last[idx] = t
        else:
            has_sign = sign[has_k]
        times.append(t)
        pixel.append(idx)
        crossing.append(np.full(idx.shape[0], k, dtype=np.int64))
        polarity.append((has_sign > 0).astype(np.uint8))
    if times:
        t_all, pix_all = np.concatenate(times), np.concatenate(pixel)
        k_all, p_all = np.concatenate(crossing), np.concatenate(polarity)
        raster = np.lexsort((k_all, pix_all))
        t_all, pix_all, p_all = t_all[raster], pix_all[raster], p_all[raster]
    else:
        t_all = pix_all = np.zeros(0, dtype=np.int64)
        p_all = np.zeros(0, dtype=np.uint8)
    t_all = np.concatenate([t_all, step.t0 + step.noise_offset])
    pix_all = np.concatenate([pix_all, step.noise_index])
    p_all = np.concatenate([p_all, step.noise_polarity])
    order = np.argsort(t_all, kind="stable")
    events = empty_events(order.shape[0])
    events["t"] = t_all[order]
    events["x"] = pix_all[order] % step.width
    events["y"] = pix_all[order] // step.width
    events["p"] = p_all[order]
    return events, new_ref, last
