"""A model that pays the prompt per sample (an API without n) declares it in its flags."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cachesaver import ModelContractError, OnlineAPI, Request, Response


class PerSampleCalls:
    """An API without ``n``: one call per sample, each paying its prompt, except where
    the provider's prompt cache served it (``cached_prompts`` lists those samples)."""

    def __init__(self, cached_prompts: frozenset[int] = frozenset(), bad: Any = None) -> None:
        self.cached_prompts = cached_prompts
        self.bad = bad
        self.calls = 0

    async def request(self, request: Request) -> Response:
        self.calls += 1
        data = [f"{request.prompt}-{self.calls}-{i}" for i in range(request.n)]
        if self.bad is not None:
            return Response(data, duplicated=self.bad)
        return Response(data, duplicated=[i in self.cached_prompts for i in range(request.n)])


async def test_declared_flags_replace_the_one_prompt_per_call_rule(cache_dir: str) -> None:
    """n=3 from a per-sample API: only samples it declares are duplicated; stats agree."""
    async with OnlineAPI(PerSampleCalls(frozenset({2})), cache=cache_dir) as api:
        response = await api.request(Request("q", n=3))
        stats = api.stats()
    assert response.duplicated == [False, False, True]
    assert stats.duplicated == 1


async def test_the_first_fresh_sample_is_never_duplicated(cache_dir: str) -> None:
    """A model declaring its first sample duplicated is overruled: someone paid the prompt."""
    async with OnlineAPI(PerSampleCalls(frozenset({0, 1})), cache=cache_dir) as api:
        response = await api.request(Request("q", n=2))
    assert response.duplicated == [False, True]


async def test_merged_requests_keep_the_declared_flags(cache_dir: str) -> None:
    """Two same-key requests merged into one call keep the per-sample truth."""
    async with OnlineAPI(PerSampleCalls(), cache=cache_dir, timeout=0.05) as api:
        a, b = await asyncio.gather(api.request(Request("q")), api.request(Request("q")))
    assert (a.duplicated, b.duplicated) == ([False], [False])


@pytest.mark.parametrize("bad", [[False], "no", [False, False, False]])
async def test_declared_flags_of_the_wrong_shape_are_a_contract_error(
    cache_dir: str, bad: Any
) -> None:
    """duplicated must be None or one bool per sample; anything else fails the request."""
    async with OnlineAPI(PerSampleCalls(bad=bad), cache=cache_dir) as api:
        with pytest.raises(ModelContractError, match="duplicated"):
            await api.request(Request("q", n=2))
