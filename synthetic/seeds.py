"""Seeds of the synthetic generator: one clip seed, several independent random streams.

Every random choice is drawn from ``np.random.default_rng([seed, TAG, ...])``: the tag keeps
the streams apart, so drawing more of one (more distractors, say) never shifts another (the
performer). The splits' seeds come from disjoint ranges.
"""

from __future__ import annotations

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_SPAN = 1 << 40

TAG_BODY, TAG_MOTION, TAG_SCENE, TAG_BACKGROUND, TAG_STREAM, TAG_OTHER = range(1, 7)
"""The random streams of one seed: performer, timing, scene, backdrop, live stream, freestyle."""


def split_seed(split: str, index: int) -> int:
    """Seed number ``index`` of ``split``; the splits' seeds never overlap.

    Training, validation and test clips drawn with ``split_seed("train", i)``,
    ``split_seed("val", i)`` and ``split_seed("test", i)`` never share a performer, scene or
    background instance.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if not 0 <= index < _SPLIT_SPAN:
        raise ValueError(f"seed index {index} out of range 0..{_SPLIT_SPAN - 1}")
    return SPLITS.index(split) * _SPLIT_SPAN + index


def hash_time(seed: int, t: float) -> int:
    """A well-mixed 64-bit number from a seed and a time (splitmix64 of both)."""
    x = (seed * 0x9E3779B97F4A7C15 + round(t * 1e6) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)
