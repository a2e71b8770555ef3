"""One question to every provider cachesaver speaks, offline, twice.

Run: python examples/providers.py

It starts cachesaver's local test server (it speaks the OpenAI, Anthropic and Gemini
wire protocols), then asks the same question through each provider's drop-in client or
pipeline adapter, in a temporary cache: first fresh (the API is called), then again from
a new client (a new run: an exact replay, zero API calls). LiteLLM and a local
transformers model join when their extras are installed. No key, no network.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from google.genai import types

from cachesaver import OnlineAPI
from cachesaver.models import ChatRequest
from cachesaver.models.anthropic import AsyncAnthropic
from cachesaver.models.gemini import Client as GeminiClient
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.testing.server import FakeLLMServer

QUESTION = "Name a prime number between 10 and 20."
Ask = Callable[[str], Awaitable[tuple[str, bool]]]


def openai_compatible(server: FakeLLMServer) -> Ask:
    async def ask(cache: str) -> tuple[str, bool]:
        async with AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="k") as c:
            answer = await c.chat.completions.create(
                model="llama-3-8b", messages=[{"role": "user", "content": QUESTION}]
            )
        choice: Any = answer.choices[0]
        return str(choice.message.content), bool(choice.cached)

    return ask


def anthropic(server: FakeLLMServer) -> Ask:
    async def ask(cache: str) -> tuple[str, bool]:
        async with AsyncAnthropic(cache=cache, base_url=server.url, api_key="k") as c:
            message: Any = await c.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=[{"role": "user", "content": QUESTION}],
            )
        return str(message.content[0].text), bool(message.cached)

    return ask


def gemini(server: FakeLLMServer) -> Ask:
    async def ask(cache: str) -> tuple[str, bool]:
        transport = {"transport": httpx.AsyncHTTPTransport()}
        options = types.HttpOptions(base_url=server.url, async_client_args=transport)
        client = GeminiClient(cache=cache, api_key="k", http_options=options)
        async with client.aio:
            answer: Any = await client.aio.models.generate_content(
                model="gemini-2.5-flash", contents=QUESTION
            )
        return str(answer.text), bool(answer.cached[0])

    return ask


def litellm(server: FakeLLMServer) -> Ask | None:
    try:
        from cachesaver.models.litellm import LiteLLMModel
    except ImportError:
        return None
    try:
        model = LiteLLMModel("openai/gpt-4o-mini", api_base=server.openai_base_url, api_key="k")
    except ImportError:
        return None  # the litellm extra is not installed

    async def ask(cache: str) -> tuple[str, bool]:
        async with OnlineAPI(model, cache=cache) as api:
            response = await api.request(ChatRequest(QUESTION))
        return str(response.data[0]), bool((response.cached or [False])[0])

    return ask


async def main() -> None:
    with FakeLLMServer() as server, tempfile.TemporaryDirectory() as root:
        providers: dict[str, Ask | None] = {
            "OpenAI-compatible (vLLM, OpenRouter, ...)": openai_compatible(server),
            "Anthropic": anthropic(server),
            "Gemini": gemini(server),
            "LiteLLM": litellm(server),
        }
        print(f"{'provider':<44} {'first run':<10} {'replay':<10} answer")
        for name, ask in providers.items():
            if ask is None:
                print(f"{name:<44} (extra not installed: pip install 'cachesaver[litellm]')")
                continue
            cache = os.path.join(root, name.split()[0].lower())
            before = server.stats()["requests"]
            first, first_cached = await ask(cache)
            again, again_cached = await ask(cache)  # a new client: a new run
            assert again == first and again_cached and not first_cached
            paid = server.stats()["requests"] - before
            print(f"{name:<44} {'paid':<10} {'cached':<10} {first[:40]!r} ({paid} API call)")
        print("Every replay returned the same answer with zero API calls.")


if __name__ == "__main__":
    asyncio.run(main())
