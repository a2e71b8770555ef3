"""Change one import: existing OpenAI code becomes cached, deduplicated and reproducible.

Run: python examples/openai_dropin.py

Without OPENAI_API_KEY it starts cachesaver's local OpenAI-compatible test server
in-process (no network, no key) and uses a temporary cache. With OPENAI_API_KEY set it
talks to the real API (models: OPENAI_MODEL, default gpt-4o-mini, and
OPENAI_EMBEDDING_MODEL, default text-embedding-3-small) and keeps its cache in
caches/examples-openai, so a second run costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from typing import Any

from pydantic import BaseModel

from cachesaver.models import cache_flags

# from openai import AsyncOpenAI, OpenAI              <- before
from cachesaver.models.openai import AsyncOpenAI, OpenAI  # <- after: the only change
from cachesaver.testing.server import FakeLLMServer

QUESTION = [{"role": "user", "content": "Give me a one-line fun fact about octopuses."}]


class Fact(BaseModel):
    animal: str
    fact: str


def show(label: str, completion: Any) -> None:
    flags = ", ".join(
        f"{'cached' if f.cached else 'paid'}{'+dup' if f.duplicated else ''}"
        for f in cache_flags(completion)
    )
    usage = completion.usage
    print(
        f"  {label}: {len(completion.choices)} choice(s) [{flags}], "
        f"usage paid: {usage.prompt_tokens} prompt + {usage.completion_tokens} output"
    )
    for choice in completion.choices:
        text = (choice.message.content or "").replace("\n", " ")
        print(f"    [{choice.index}] {text[:90]}")


async def tour(options: dict[str, Any], model: str, embedding_model: str) -> None:
    async with AsyncOpenAI(**options) as client:
        print("1) n=3 in one API call; the prompt is paid once (later samples are +dup).")
        first = await client.chat.completions.create(
            model=model, messages=QUESTION, n=3, temperature=1.0, namespace="run-A"
        )
        show("run-A", first)

        print("2) Another namespace reuses what run-A paid for: no API call.")
        show(
            "run-B",
            await client.chat.completions.create(
                model=model, messages=QUESTION, n=3, temperature=1.0, namespace="run-B"
            ),
        )

        print("3) n=5 in a third namespace: 3 cached, only n=2 is asked from the API.")
        show(
            "run-C",
            await client.chat.completions.create(
                model=model, messages=QUESTION, n=5, temperature=1.0, namespace="run-C"
            ),
        )

        print("4) Four identical calls at once are merged into one API call with n=4.")
        merged = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=model,
                    messages=QUESTION,
                    temperature=1.0,
                    namespace="run-D",
                    max_tokens=60,
                )
                for _ in range(4)
            )
        )
        for i, completion in enumerate(merged):
            show(f"run-D call {i}", completion)

        print("5) stream=True: a fresh answer streams live and is stored once complete;")
        print("   the same call in another namespace replays it as SDK chunks.")
        for namespace in ("run-E", "run-F"):
            stream = await client.chat.completions.create(
                model=model, messages=QUESTION, temperature=0.9, namespace=namespace, stream=True
            )
            pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            print(f"    {namespace}: {len(pieces)} chunks: {''.join(pieces)[:70]}")
            show(namespace, stream.completion)

        print("5b) Structured outputs: parse() is cached; message.parsed is your model.")
        parsed = await client.chat.completions.parse(
            model=model, messages=QUESTION, response_format=Fact, namespace="run-A"
        )
        print(f"    {parsed.choices[0].message.parsed!r}")

        print("5c) The Responses API is cached per sample too.")
        answer = await client.responses.create(
            model=model, input="One word for the sea?", instructions="Be brief."
        )
        print(f"    {answer.output_text[:70]!r} (cached: {answer.model_extra['cached']})")

        print("6) Embeddings: each input is cached on its own; only new inputs are sent.")
        await client.embeddings.create(model=embedding_model, input=["octopus", "squid"])
        mixed = await client.embeddings.create(
            model=embedding_model, input=["squid", "cuttlefish", "octopus", "nautilus"]
        )
        print(
            f"    4 inputs, {mixed.usage.prompt_tokens} prompt tokens paid "
            "(only 'cuttlefish' and 'nautilus' were sent)"
        )
        print(f"  client totals: {client.token_usage()}")


async def replay(options: dict[str, Any], model: str) -> None:
    print("7) A new client (a new run) over the same cache replays run-A exactly.")
    async with AsyncOpenAI(**options) as client:
        show(
            "run-A again",
            await client.chat.completions.create(
                model=model, messages=QUESTION, n=3, temperature=1.0, namespace="run-A"
            ),
        )
        print(f"  API calls made by this client: {client.token_usage().calls}")


async def main(options: dict[str, Any], model: str, embedding_model: str) -> None:
    await tour(options, model, embedding_model)
    await replay(options, model)


def sync_replay(options: dict[str, Any], model: str) -> None:
    print("8) The sync client (no asyncio in sight) replays the same run-A.")
    with OpenAI(**options) as client:
        show(
            "run-A, sync",
            client.chat.completions.create(
                model=model, messages=QUESTION, n=3, temperature=1.0, namespace="run-A"
            ),
        )


if __name__ == "__main__":
    if os.environ.get("OPENAI_API_KEY"):
        print("Using the OpenAI API (OPENAI_API_KEY is set); cache: caches/examples-openai\n")
        asyncio.run(
            main(
                {"cache": "caches/examples-openai"},
                os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
                os.environ.get("OPENAI_EMBEDDING_MODEL", "text-embedding-3-small"),
            )
        )
        sync_replay(
            {"cache": "caches/examples-openai"}, os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        )
    else:
        directory = tempfile.mkdtemp(prefix="cachesaver-openai-example-")
        try:
            with FakeLLMServer(latency=0.05) as server:
                print(f"No OPENAI_API_KEY: using the local test server at {server.url}\n")
                options = {
                    "cache": directory,
                    "base_url": server.openai_base_url,
                    "api_key": "local-test-key",
                }
                asyncio.run(main(options, "fake-chat", "fake-embed"))
                sync_replay(options, "fake-chat")
                print(f"\nHTTP requests the server received: {server.stats()['requests']}")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
