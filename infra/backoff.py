"""Waiting before trying again: a pause that doubles with each failure in a row, up to a cap,
and jittered where many callers would otherwise try again in step."""

import random


def pause(failures: int, *, first: float, most: float, jitter: bool = False) -> float:
    """The pause after the `failures`-th failure in a row (1 for the first): `first`,
    doubling, at most `most`; with `jitter`, anywhere from 0 to that ("full jitter")."""
    ceiling = min(most, first * 2 ** (failures - 1))
    return random.uniform(0, ceiling) if jitter else ceiling
