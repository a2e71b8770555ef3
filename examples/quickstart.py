"""cachesaver in one minute, offline: no API key, a simulated model, the embedded disk cache.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass

from cachesaver import Batch, OnlineAPI, Request
from cachesaver.testing import SimulatedLLM


@dataclass(frozen=True)
class MyRequest(Request):
    """Subclass Request to add decoding parameters: they become part of the cache key."""

    temperature: float = 1.0
    max_completion_tokens: int | None = None


def show(label: str, response: object) -> None:
    print(f"  {label}: {response}")


async def main(cache_dir: str) -> None:
    model = SimulatedLLM(seed=7, latency=0.05)
    question = MyRequest("What is the meaning of life?", n=2, namespace="run-A", request_id="q1")
    other = MyRequest("Cats or dogs?", n=1, namespace="run-A", request_id="q2")

    print("1) First run: nothing is cached, so the model is called.")
    async with OnlineAPI(model, cache=cache_dir, batch_size=4, timeout=0.05) as pipeline:
        show("q1", await pipeline.request(question))
        print("   Same request again, same namespace: fresh samples (i.i.d. draws).")
        show("q1 again", await pipeline.request(question))
        print("   A batch with q1 and q2, identical requests merged into one model call:")
        for response in await pipeline.batch_request(Batch([question, question, other])):
            show("batch", response)
        stats = pipeline.stats()
        print(f"   stats: {stats}")

    print("\n2) A new namespace reuses the samples namespace run-A already paid for.")
    async with OnlineAPI(model, cache=cache_dir) as pipeline:
        show(
            "q1 in run-B",
            await pipeline.request(
                MyRequest("What is the meaning of life?", n=2, namespace="run-B")
            ),
        )
        print(f"   model calls: {pipeline.stats().model_calls}")

    print("\n3) Replay: a new run of the same program gets exactly the same samples,")
    print("   with zero model calls.")
    async with OnlineAPI(model, cache=cache_dir, batch_size=4, timeout=0.05) as pipeline:
        show("q1", await pipeline.request(question))
        show("q1 again", await pipeline.request(question))
        print(f"   model calls: {pipeline.stats().model_calls}")


if __name__ == "__main__":
    directory = tempfile.mkdtemp(prefix="cachesaver-quickstart-")
    try:
        asyncio.run(main(directory))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
