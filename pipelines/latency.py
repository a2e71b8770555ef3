"""A latency profile for the simulated model, so wall-clock numbers mean something offline.

`LatencyModel` wraps a model: each call first gets its samples from the inner model, then
sleeps ``overhead + per_token * completion tokens`` (the longest sample of the call, as
the samples of one call are decoded in parallel), scaled by ``time_scale``. The overhead
is drawn from a log-normal distribution seeded by the call's content and first sample, so
the same call always takes the same time. The profile never changes a sample's text, so
it is not part of the model's identity (nor of any cache key). Samples are stamped with
their call (`pipelines.accounting.stamp`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from dataclasses import dataclass
from typing import Any

from cachesaver import Request, Response
from pipelines.accounting import sample_text, sample_tokens, stamp

__all__ = ["LatencyModel", "LatencyProfile"]


@dataclass(frozen=True)
class LatencyProfile:
    """Seconds per call: a log-normal overhead (median, spread) plus a time per output token.

    Defaults are typical of a small hosted model (gpt-4.1-nano class): about 0.4 s to the
    first token and 8 ms per generated token; assumed values, not measurements.
    """

    overhead: float = 0.4
    spread: float = 0.35
    per_token: float = 0.008

    def __post_init__(self) -> None:
        for name in ("overhead", "spread", "per_token"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"latency {name} must be a finite number >= 0, got {value!r}")

    def seconds(self, request: Request, samples: list[Any]) -> float:
        """Return the simulated duration of one call that produced ``samples``."""
        first = sample_text(samples[0]) if samples else ""
        material = f"{request.prompt}\x00{request.n}\x00{first}".encode()
        rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
        overhead = self.overhead * math.exp(self.spread * rng.gauss(0.0, 1.0))
        longest = max((sample_tokens(sample)[1] for sample in samples), default=0)
        return overhead + self.per_token * longest


class LatencyModel:
    """A `SingleRequestModel` that answers like ``inner`` and takes its profile's time."""

    def __init__(
        self, inner: Any, profile: LatencyProfile | None = None, time_scale: float = 1.0
    ) -> None:
        if not math.isfinite(time_scale) or time_scale < 0:
            raise ValueError(f"time_scale must be a finite number >= 0, got {time_scale!r}")
        self.inner = inner
        self.profile = profile or LatencyProfile()
        self.time_scale = time_scale
        self.calls = 0
        self.simulated_seconds = 0.0  # summed over calls, unscaled

    @property
    def identity(self) -> Any:
        return self.inner.identity

    def cold_start(self) -> None:
        """Make the next run start cold, as a run in a new process would (the paper runs
        every configuration of both arms in its own process): the simulated reasoner
        forgets its memos, so no arm is timed with CPU work another arm already did."""
        responder = getattr(self.inner, "responder", None)
        reset = getattr(responder, "cold_start", None)
        if reset is not None:
            reset()

    async def request(self, request: Request) -> Response:
        response: Response = await self.inner.request(request)
        stamp(list(response.data))
        seconds = self.profile.seconds(request, list(response.data))
        self.calls += 1
        self.simulated_seconds += seconds
        if self.time_scale:
            await asyncio.sleep(seconds * self.time_scale)
        return response
