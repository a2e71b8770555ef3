"""The LiteLLM adapter, driven through the real litellm package over HTTP to the test server."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from cachesaver import InvalidRequestError, OnlineAPI, Request
from cachesaver.models import ChatRequest
from cachesaver.testing.server import FakeLLMServer

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # litellm's own import-time deprecation notices
        import litellm
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CACHESAVER_REQUIRE_LITELLM") == "1":
        raise
    pytest.skip(
        "litellm is not installed (pip install 'cachesaver[litellm]'); "
        "CACHESAVER_REQUIRE_LITELLM=1 makes this a failure",
        allow_module_level=True,
    )

from cachesaver.models.litellm import LiteLLMModel

MODULE: ModuleType = litellm
# LiteLLM's lazily imported provider modules warn about their own pydantic types.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(error_retry_after=0.005) as running:
        yield running


def adapter(
    server: FakeLLMServer, model: str = "openai/gpt-test", **options: object
) -> LiteLLMModel:
    return LiteLLMModel(model, api_base=server.openai_base_url, api_key="test", **options)  # type: ignore[arg-type]


def chat_calls(server: FakeLLMServer) -> int:
    return int(server.stats()["chat_requests"])


@dataclass(frozen=True)
class Odd(Request):
    not_a_parameter: int | None = None


async def test_n_samples_in_one_call_then_a_hit_with_zero_http(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """n=3 is one HTTP call; a new pipeline over the cache answers with none."""
    cache = str(tmp_path / "c")
    request = ChatRequest("Name a colour.", n=3, temperature=0.7, namespace="a")
    async with OnlineAPI(adapter(server), cache=cache) as api:
        first = await api.request(request)
    assert chat_calls(server) == 1
    assert first.cached == [False, False, False]
    assert first.duplicated == [False, True, True]
    async with OnlineAPI(adapter(server), cache=cache) as api:
        again = await api.request(request)
    assert chat_calls(server) == 1
    assert again.data == first.data
    assert again.cached == [True, True, True]


async def test_a_server_that_caps_n_is_asked_again_for_the_rest(tmp_path: Path) -> None:
    """With a provider that returns one choice per call, n=3 still gets 3 samples."""
    with FakeLLMServer(max_choices=1) as capped:
        async with OnlineAPI(adapter(capped), cache=str(tmp_path / "c")) as api:
            response = await api.request(ChatRequest("Hi", n=3, temperature=1.0))
        assert len(response.data) == 3
        assert chat_calls(capped) == 3


def test_identity_is_litellms_provider_model_and_endpoint(server: FakeLLMServer) -> None:
    """The identity names LiteLLM's provider and model and the endpoint, never the key."""
    identity = adapter(server).identity
    assert identity["litellm_provider"] == "openai"
    assert identity["model"] == "gpt-test"
    assert identity["base_url"] == server.openai_base_url.rstrip("/")
    assert "test" not in identity.values()  # the api key
    elsewhere = LiteLLMModel("openai/gpt-test", api_base="http://127.0.0.1:9/v1").identity
    assert elsewhere != identity
    other_provider = LiteLLMModel("anthropic/gpt-test").identity
    assert other_provider["litellm_provider"] == "anthropic"


async def test_provider_errors_reach_the_caller_and_consume_nothing(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """A 400 is LiteLLM's own exception; the retry takes the indices the failed call held."""
    cache = str(tmp_path / "c")
    request = ChatRequest("Hi", n=2, temperature=0.7)
    async with OnlineAPI(adapter(server), cache=cache) as api:
        server.fail_next(400)
        with pytest.raises(litellm.BadRequestError):
            await api.request(request)
        retried = await api.request(request)
    calls = chat_calls(server)
    async with OnlineAPI(adapter(server), cache=cache) as api:
        replayed = await api.request(request)  # a new run reads indices 0 and 1
    assert replayed.data == retried.data
    assert replayed.cached == [True, True]
    assert chat_calls(server) == calls


async def test_fields_litellm_does_not_take_are_refused(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """A request field that is no acompletion parameter fails clearly, before any call."""
    async with OnlineAPI(adapter(server), cache=str(tmp_path / "c")) as api:
        with pytest.raises(InvalidRequestError, match="not_a_parameter"):
            await api.request(Odd("Hi", not_a_parameter=3))
    assert chat_calls(server) == 0


def test_options_that_change_the_output_are_not_call_options(server: FakeLLMServer) -> None:
    """call_options only takes parameters that leave the output unchanged."""
    with pytest.raises(ValueError, match="temperature"):
        adapter(server, call_options={"temperature": 0.1})
    assert adapter(server, call_options={"user": "me", "timeout": 30}).call_options


async def test_concurrent_requests_for_one_prompt_share_one_call(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    """Same-key requests in one namespace are merged into one LiteLLM call."""
    async with OnlineAPI(adapter(server), cache=str(tmp_path / "c"), timeout=0.05) as api:
        responses = await asyncio.gather(
            *(api.request(ChatRequest("Same?", temperature=0.3)) for _ in range(4))
        )
    assert chat_calls(server) == 1
    assert len({r.data[0] for r in responses}) == 4
