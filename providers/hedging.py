"""Hedging: when an entry of a chain has not produced its first chunk after a delay, the next entry
starts too, and the first of them to produce one wins (providers/fallback.py runs the race).

The delay of an entry is, first to last: the request's ``hedge_after``, its provider config's
``hedge_after`` option, else the default: ``auto`` for streams, never for whole answers. A number is
seconds; ``off`` never hedges; ``auto`` is learned here, per provider config, model and way of calling
(stream or whole answer), from this process's recent times to the first chunk: the
``QALBY_HEDGE_PERCENTILE`` of the last ``WINDOW`` of them, bounded by ``QALBY_HEDGE_MIN`` and
``QALBY_HEDGE_MAX``, and ``QALBY_HEDGE_DEFAULT`` until ``QALBY_HEDGE_SAMPLES`` have been seen.

An attempt cancelled before its first chunk (it lost a hedge or a race) is observed too, at the time
it was cancelled: its first chunk would have come later still, and leaving it out would pull the
learned delay down with every hedge won, until hedging fires on ordinary requests.

Learned per process (no shared state): each replica hedges on what its own requests see, and the
first requests after a start use the default.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from typing import Annotated, Literal

from annotated_types import Interval
from django.conf import settings
from pydantic import StrictFloat

Hedge = float | Literal["auto", "off"] | None  # seconds, learned, never; None: the default of the way
MAX_DELAY = 600.0  # seconds: the longest hedge_after a request, a config or a route may ask for
# What a request, a provider config's options and a route accept as hedge_after.
HedgeAfter = Annotated[StrictFloat, Interval(gt=0, le=MAX_DELAY)] | Literal["auto", "off"] | None
WINDOW = 200  # the most recent times to the first chunk kept per provider config, model and way
LOCAL_MAX = 10_000  # provider config and model pairs kept at most (models come from clients)

_Key = tuple[str, str, bool]


class FirstChunkTimes:
    """Recent seconds to the first chunk (to the answer, for whole answers), per config, model and way."""

    def __init__(self) -> None:
        self._seen: OrderedDict[_Key, deque[float]] = OrderedDict()

    def observe(self, uid: str, model: str, streamed: bool, seconds: float) -> None:
        key = (uid, model, streamed)
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque(maxlen=WINDOW)
            if len(self._seen) > LOCAL_MAX:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        times.append(seconds)

    def delay(self, uid: str, model: str, streamed: bool) -> float:
        """The learned delay: a high percentile of the recent times, bounded; the default until enough."""
        times = self._seen.get((uid, model, streamed))
        if times is None or len(times) < settings.QALBY_HEDGE_SAMPLES:
            return settings.QALBY_HEDGE_DEFAULT
        ordered = sorted(times)
        rank = max(math.ceil(settings.QALBY_HEDGE_PERCENTILE / 100 * len(ordered)) - 1, 0)
        return min(max(ordered[rank], settings.QALBY_HEDGE_MIN), settings.QALBY_HEDGE_MAX)

    def clear(self) -> None:
        self._seen.clear()


first_chunk_times = FirstChunkTimes()


def delay_of(chosen: Hedge | str, uid: str, model: str, streamed: bool) -> float | None:
    """Seconds after an entry starts at which the next one starts too; None: never. ``chosen`` is the
    request's or the config's ``hedge_after`` (None: neither said, the default of the way applies)."""
    if chosen is None:
        chosen = "auto" if streamed else "off"
    if chosen == "off":
        return None
    if chosen == "auto":
        return first_chunk_times.delay(uid, model, streamed)
    return float(chosen)
