"""Structured outputs (parse, pydantic response_format) and the Responses API, cached."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ParsedChatCompletion
from openai.types.responses import Response as SDKResponse
from pydantic import BaseModel

from cachesaver import InvalidRequestError
from cachesaver.models import ChoiceFlags, cache_flags
from cachesaver.models.openai import AsyncOpenAI
from cachesaver.testing.server import FakeLLMServer

MESSAGES = [{"role": "user", "content": "Solve 8x + 31 = 2."}]


class Step(BaseModel):
    explanation: str
    output: str


class MathAnswer(BaseModel):
    steps: list[Step]
    final_answer: float


class OtherAnswer(BaseModel):
    final_answer: float


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def client_for(server: FakeLLMServer, cache: str, **options: Any) -> AsyncOpenAI:
    options.setdefault("max_retries", 1)
    return AsyncOpenAI(cache=cache, base_url=server.openai_base_url, api_key="t", **options)


# -- structured outputs ---------------------------------------------------------------------


async def test_parse_is_cached_and_a_hit_rebuilds_the_users_model(
    server: FakeLLMServer, cache: str
) -> None:
    """parse (and the beta alias) store the answer; a hit in a new client parses again."""
    async with client_for(server, cache) as client:
        fresh = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer, n=2
        )
        beta = await client.beta.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer, namespace="B"
        )
    assert isinstance(fresh, ParsedChatCompletion)
    assert all(isinstance(c.message.parsed, MathAnswer) for c in fresh.choices)
    assert beta.choices[0].message.parsed == fresh.choices[0].message.parsed
    sent = server.stats()["requests"]
    body = server.received[0].body
    assert body["response_format"]["type"] == "json_schema"
    assert "steps" in body["response_format"]["json_schema"]["schema"]["properties"]
    async with client_for(server, cache) as client:
        again = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer, n=2
        )
    assert server.stats()["requests"] == sent  # zero HTTP requests
    assert [c.message.parsed for c in again.choices] == [c.message.parsed for c in fresh.choices]
    assert cache_flags(again) == [ChoiceFlags(True, False)] * 2
    assert again.usage is not None and again.usage.total_tokens == 0


async def test_pydantic_response_format_on_create_is_parsed(
    server: FakeLLMServer, cache: str
) -> None:
    """create(response_format=<model>) is served like parse; the SDK's dict format too."""
    async with client_for(server, cache) as client:
        made = await client.chat.completions.create(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer
        )
        parsed = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer, namespace="other"
        )
    assert isinstance(made.choices[0].message.parsed, MathAnswer)
    assert made.choices[0].message.parsed == parsed.choices[0].message.parsed
    assert server.stats()["chat_requests"] == 1  # same key: the schema made it the same


async def test_the_schema_is_part_of_the_key(server: FakeLLMServer, cache: str) -> None:
    """Another response model (another schema) never reads the first model's answers."""
    async with client_for(server, cache) as client:
        await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer
        )
        other = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=OtherAnswer
        )
    assert isinstance(other.choices[0].message.parsed, OtherAnswer)
    assert cache_flags(other) == [ChoiceFlags(False, False)]
    assert server.stats()["chat_requests"] == 2


async def test_parsed_tool_calls_are_rebuilt_on_a_hit(server: FakeLLMServer, cache: str) -> None:
    """Strict pydantic function tools: a hit parses the tool arguments into the model."""
    tool = openai.pydantic_function_tool(OtherAnswer, name="answer")
    async with client_for(server, cache) as client:
        first = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, tools=[tool], tool_choice="required"
        )
    async with client_for(server, cache) as client:
        again = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, tools=[tool], tool_choice="required"
        )
    call = again.choices[0].message.tool_calls
    assert call is not None and isinstance(call[0].function.parsed_arguments, OtherAnswer)
    first_call = first.choices[0].message.tool_calls
    assert first_call is not None
    assert call[0].function.parsed_arguments == first_call[0].function.parsed_arguments
    assert server.stats()["chat_requests"] == 1


async def test_a_failed_parse_call_consumes_nothing(server: FakeLLMServer, cache: str) -> None:
    """An API error during parse stores nothing: the next call gets the first draw."""
    async with client_for(server, cache, max_retries=0) as client:
        server.fail_next(500)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.parse(
                model="fake-chat", messages=MESSAGES, response_format=MathAnswer
            )
        ok = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer
        )
    async with client_for(server, cache) as client:
        again = await client.chat.completions.parse(
            model="fake-chat", messages=MESSAGES, response_format=MathAnswer
        )
    assert again.choices[0].message.parsed == ok.choices[0].message.parsed


# -- the Responses API -----------------------------------------------------------------------


async def test_responses_hit_in_a_new_client_with_zero_http_requests(
    server: FakeLLMServer, cache: str
) -> None:
    """responses.create is cached per sample: fresh within a namespace, replayed by a new run."""
    async with client_for(server, cache) as client:
        first = await client.responses.create(
            model="fake-chat", input="Tell me a joke.", instructions="Be brief.", namespace="A"
        )
        second = await client.responses.create(
            model="fake-chat", input="Tell me a joke.", instructions="Be brief.", namespace="A"
        )
        other = await client.responses.create(
            model="fake-chat", input="Tell me a joke.", instructions="Be brief.", namespace="B"
        )
    assert isinstance(first, SDKResponse)
    assert first.output_text != second.output_text
    assert other.output_text == first.output_text and other.model_extra == {
        "cached": True,
        "duplicated": False,
    }
    assert other.usage is not None and other.usage.total_tokens == 0
    assert first.usage is not None and first.usage.total_tokens > 0
    sent = server.stats()["requests"]
    async with client_for(server, cache) as client:
        again = [
            await client.responses.create(
                model="fake-chat", input="Tell me a joke.", instructions="Be brief.", namespace="A"
            )
            for _ in range(2)
        ]
    assert server.stats()["requests"] == sent
    assert [r.output_text for r in again] == [first.output_text, second.output_text]


async def test_merged_responses_calls_each_pay_their_prompt(
    server: FakeLLMServer, cache: str
) -> None:
    """Identical concurrent calls are one request of n=2: two API calls, none duplicated."""
    async with client_for(server, cache) as client:
        both = await asyncio.gather(
            *(client.responses.create(model="fake-chat", input="same", namespace="A") for _ in "ab")
        )
    assert server.stats()["response_requests"] == 2
    assert [r.model_extra for r in both] == [{"cached": False, "duplicated": False}] * 2
    assert all(r.usage is not None and r.usage.input_tokens > 0 for r in both)
    assert both[0].output_text != both[1].output_text


async def test_responses_key_holds_instructions_tools_and_text_format(
    server: FakeLLMServer, cache: str
) -> None:
    """instructions, tools and text.format change the key; transport options do not."""
    tools = [
        {
            "type": "function",
            "name": "lookup",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    fmt = {
        "format": {
            "type": "json_schema",
            "name": "answer",
            "schema": OtherAnswer.model_json_schema(),
        }
    }
    async with client_for(server, cache) as client:
        base = await client.responses.create(model="fake-chat", input="q")
        await client.responses.create(model="fake-chat", input="q", instructions="x")
        tool = await client.responses.create(
            model="fake-chat", input="q", tools=tools, tool_choice="required"
        )
        shaped = await client.responses.create(model="fake-chat", input="q", text=fmt)
        same = await client.responses.create(
            model="fake-chat", input="q", namespace="B", timeout=9, store=False, user="u"
        )
    assert server.stats()["response_requests"] == 4
    assert same.output_text == base.output_text
    assert tool.output[0].type == "function_call"
    assert OtherAnswer.model_validate_json(shaped.output_text)


async def test_responses_refuse_provider_state_and_streams(
    server: FakeLLMServer, cache: str
) -> None:
    """previous_response_id, conversation, background and stream are refused, saying why."""
    async with client_for(server, cache) as client:
        first = await client.responses.create(model="fake-chat", input="hi")
        for name, value in (
            ("previous_response_id", first.id),
            ("conversation", "conv_1"),
            ("background", True),
            ("stream", True),
        ):
            with pytest.raises(InvalidRequestError, match=name):
                await client.responses.create(model="fake-chat", input="more", **{name: value})
        turns = await client.responses.create(
            model="fake-chat",
            input=[
                {"role": "user", "content": "hi"},
                *[item.model_dump(exclude_unset=True) for item in first.output],
                {"role": "user", "content": "more"},
            ],
        )
    assert turns.output_text
    assert server.stats()["response_requests"] == 2


async def test_responses_errors_consume_nothing(server: FakeLLMServer, cache: str) -> None:
    """A failed Responses call stores nothing and the next call gets the first draw."""
    async with client_for(server, cache, max_retries=0) as client:
        server.fail_next(429, endpoint="responses")
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="fake-chat", input="x", namespace="A")
        ok = await client.responses.create(model="fake-chat", input="x", namespace="A")
    async with client_for(server, cache) as client:
        again = await client.responses.create(model="fake-chat", input="x", namespace="A")
    assert again.output_text == ok.output_text
