"""A self-consistency experiment on Together through an OnlineAPI pipeline.

Run: python examples/together_pipeline.py

Each question is asked for 5 samples; the majority answer wins. The pipeline caches
every sample, merges identical requests and batches the rest; a second run of the same
experiment replays it exactly with zero API calls, and another namespace reuses the
samples the first one paid for.

Without TOGETHER_API_KEY it starts cachesaver's local test server in-process (no network,
no key) and uses a temporary cache. With TOGETHER_API_KEY set it calls Together
(model: TOGETHER_MODEL, default meta-llama/Llama-3.3-70B-Instruct-Turbo) and keeps its
cache in caches/examples-together.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

import together

from cachesaver import Batch, OnlineAPI, Request
from cachesaver.models import TogetherModel
from cachesaver.testing.server import FakeLLMServer

QUESTIONS = [
    "Is 91 a prime number? Answer yes or no, then explain briefly.",
    "Is the Pacific larger than the Atlantic? Answer yes or no, then explain briefly.",
    "Can penguins fly? Answer yes or no, then explain briefly.",
]


@dataclass(frozen=True, kw_only=True)
class Sampling(Request):
    """The decoding parameters of the experiment: each is sent and is part of the key."""

    temperature: float = 0.8
    top_k: int | None = 50
    max_tokens: int | None = 64


def first_word(text: str | None) -> str:
    words = (text or "").strip().split()
    return words[0].strip(".,!:").lower() if words else "?"


async def experiment(
    client: together.AsyncTogether, model_name: str, cache: str, namespace: str
) -> TogetherModel:
    model = TogetherModel(client, model_name, max_concurrency=8)
    async with OnlineAPI(model, cache=cache, batch_size=16, timeout=0.02) as pipeline:
        requests: list[Request] = [
            Sampling(question, n=5, namespace=namespace, request_id=f"q{i}")
            for i, question in enumerate(QUESTIONS)
        ]
        responses = await pipeline.batch_request(Batch(requests))
        for request, response in zip(requests, responses, strict=True):
            votes = Counter(first_word(text) for text in response.data)
            answer, count = votes.most_common(1)[0]
            cached = sum(response.cached or [])
            print(
                f"  {request.request_id}: majority {answer!r} ({count}/5), "
                f"{cached}/5 samples from the cache"
            )
        stats = pipeline.stats()
    print(
        f"  API calls: {model.usage.calls}, tokens paid: {model.usage.total_tokens}, "
        f"samples generated: {stats.generated}"
    )
    return model


async def main(client_options: dict[str, Any], model_name: str, cache: str) -> None:
    async with together.AsyncTogether(**client_options) as client:
        print("1) First run of the experiment: every sample is paid for.")
        await experiment(client, model_name, cache, namespace="self-consistency")
        print("2) The same experiment again (a new pipeline): exact replay, no API call.")
        await experiment(client, model_name, cache, namespace="self-consistency")
        print("3) Another analysis in its own namespace walks the same samples for free.")
        await experiment(client, model_name, cache, namespace="ablation")


if __name__ == "__main__":
    if os.environ.get("TOGETHER_API_KEY"):
        print("Using the Together API (TOGETHER_API_KEY is set); cache: caches/examples-together\n")
        asyncio.run(
            main(
                {},
                os.environ.get("TOGETHER_MODEL", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
                "caches/examples-together",
            )
        )
    else:
        directory = tempfile.mkdtemp(prefix="cachesaver-together-example-")
        try:
            with FakeLLMServer(latency=0.05) as server:
                print(f"No TOGETHER_API_KEY: using the local test server at {server.url}\n")
                options: dict[str, Any] = {"base_url": server.url, "api_key": "local-test-key"}
                asyncio.run(main(options, "fake-chat", directory))
                print(f"\nHTTP requests the server received: {server.stats()['requests']}")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
