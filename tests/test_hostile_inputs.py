"""Hostile and unlucky inputs: every one becomes a CacheSaverError naming the field or key.

SEMANTICS rule 9 (a request owns a snapshot of its content), "Keys" (sets refused, bounds)
and "Errors" (never a raw ValueError, RecursionError, MemoryError or JSONDecodeError).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from cachesaver import (
    AsyncCacher,
    CacheSaverError,
    DamagedSampleError,
    InvalidRequestError,
    OnlineAPI,
    Request,
    Response,
    UnstorableSampleError,
    decode_sample,
    encode_sample,
)
from cachesaver._canonical import MAX_DEPTH
from cachesaver.stores.base import SampleRead, SampleWrite
from cachesaver.testing import RecordingModel, SimulatedLLM
from cachesaver.typedefs import MAX_N


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@dataclass(frozen=True)
class Sampling(Request):
    stop: Any = None


# -- rule 9: the request owns a snapshot -----------------------------------------------------


async def test_changing_a_chat_history_after_building_the_request_changes_nothing(
    cache_dir: str,
) -> None:
    """Appending turns before the batch goes out changes neither the key nor the prompt."""
    model = RecordingModel()
    history = [{"role": "user", "content": "hi"}]
    async with OnlineAPI(model, cache=cache_dir, batch_size=10, timeout=30) as api:
        request = Request(history, namespace="a")
        pending = asyncio.ensure_future(api.request(request))
        await asyncio.sleep(0)  # the request now waits in the batcher
        history.append({"role": "assistant", "content": "hello"})
        history.append({"role": "user", "content": "and now?"})
        history[0]["content"] = "changed"
        await api.aclose()  # sends the waiting batch
        first = await pending
        asked = model.calls[0].prompt
    assert asked == [{"role": "user", "content": "hi"}], "the model saw the snapshot"
    assert request.prompt == [{"role": "user", "content": "hi"}]
    async with OnlineAPI(model, cache=cache_dir) as api:
        honest = await api.request(Request(history, namespace="a"))
        same = await api.request(Request([{"role": "user", "content": "hi"}], namespace="a"))
    assert honest.cached == [False], "the 3-message request is not served the 1-message answer"
    assert same.data == first.data and same.cached == [True]


def test_a_str_prompt_is_not_copied() -> None:
    """The common case stays cheap: a str prompt is the caller's own object."""
    prompt = "".join(["a question ", "built at run time"])
    assert Request(prompt).prompt is prompt


def test_subclass_fields_are_snapshotted_too() -> None:
    """Lists and dicts in added fields are copied like the prompt."""
    stop = ["\n"]
    request = Sampling("q", stop=stop)
    stop.append("END")
    assert request.stop == ["\n"]


# -- keys: sets refused, bounds ---------------------------------------------------------------


@pytest.mark.parametrize("value", [{"a", "b"}, frozenset({"a"}), [{"x"}], {"k": {1, 2}}])
def test_sets_are_refused_with_the_field_named(value: Any) -> None:
    """A set anywhere in a field is refused: its order differs between processes."""
    with pytest.raises(InvalidRequestError, match=r"field 'stop'.*sorted list"):
        Sampling("q", stop=value)


def test_a_set_in_a_model_identity_is_refused_naming_it() -> None:
    """A model identity holding a set is refused (it enters every key)."""

    class SetIdentity:
        @property
        def identity(self) -> dict[str, Any]:
            return {"stops": {"a", "b"}}

        async def request(self, request: Request) -> Response:
            return Response(data=["x"])

    with pytest.raises(CacheSaverError, match=r"identity\['stops'\]"):
        AsyncCacher(SetIdentity(), "unused")


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Request(10**5000), "prompt"),
        (lambda: Request(nested(3000)), "prompt"),
        (lambda: Request(nested(MAX_DEPTH + 1)), "prompt"),
        (lambda: Sampling("q", stop={"deep": nested(3000)}), "stop"),
        (lambda: Request("q", n=10**12), "n"),
        (lambda: Request("q", n=MAX_N + 1), "n"),
    ],
)
def test_oversized_values_are_refused_naming_the_field(make: Any, field: str) -> None:
    """Huge ints, absurd nesting and huge n are InvalidRequestErrors naming the field."""
    with pytest.raises(InvalidRequestError, match=f"field '{field}'"):
        make()


def test_the_bounds_still_allow_ordinary_values() -> None:
    """Values within the bounds are accepted: deep-ish JSON, big ints, n = MAX_N."""
    Request(nested(MAX_DEPTH - 1))
    Request(10**500)
    Request("q", n=MAX_N)


# -- samples: what a model returns and what a store holds -------------------------------------


@pytest.mark.parametrize(
    "sample",
    [10**5000, -(10**700), nested(3000), {"a": nested(MAX_DEPTH + 5)}],
    ids=["huge-int", "big-negative-int", "3000-deep", "deep-in-a-dict"],
)
def test_unstorable_samples_are_refused_by_the_codec(sample: Any) -> None:
    """encode_sample refuses huge ints and absurd nesting with UnstorableSampleError."""
    with pytest.raises(UnstorableSampleError):
        encode_sample(sample)


@pytest.mark.parametrize("sample", [10**5000, nested(3000)], ids=["huge-int", "3000-deep"])
async def test_a_model_returning_an_unstorable_sample_fails_naming_the_key(
    cache_dir: str, sample: Any
) -> None:
    """The caller gets UnstorableSampleError naming the request's key; nothing is stored."""

    def responder(request: Request, rng: Any) -> Any:
        return sample

    async with OnlineAPI(SimulatedLLM(responder=responder), cache=cache_dir) as api:
        with pytest.raises(UnstorableSampleError) as caught:
            await api.request(Request("q", request_id="r7"))
        key = api.key_of(Request("q"))
    assert key[:12] in str(caught.value) and "'r7'" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[" * 3000 + "]" * 3000,
        '{"$cs": "tuple", "v": 5}',
        '{"$cs": "dict", "v": [1]}',
        '{"$cs": "bytes", "v": "***"}',
        "1" * 5000,
    ],
    ids=["not-json", "3000-deep", "tuple-tag", "dict-tag", "bytes-tag", "5000-digit-int"],
)
def test_damaged_texts_raise_damaged_sample_error(text: str) -> None:
    """decode_sample turns every kind of damage into DamagedSampleError, never a raw error."""
    with pytest.raises(DamagedSampleError):
        decode_sample(text)


async def test_a_damaged_stored_sample_fails_its_request_naming_key_and_index(
    cache_dir: str,
) -> None:
    """A request meeting a damaged stored sample gets a StoreError naming key and index."""
    model = RecordingModel()
    async with OnlineAPI(model, cache=cache_dir) as api:
        key = api.key_of(Request("q"))
        content = '{"request":{"prompt":"q"}}'
        await api.store.write([SampleWrite(key, content, {0: "{not json", 1: '"fine"'})])
    async with OnlineAPI(model, cache=cache_dir) as api:
        with pytest.raises(DamagedSampleError) as caught:
            await api.request(Request("q", n=2, namespace="n"))
        assert isinstance(caught.value, CacheSaverError)
        assert f"key={key[:12]}, index 0" in str(caught.value)
        (texts,) = await api.store.read([SampleRead(key, [0, 1])])
    assert model.calls == [], "the damaged sample is reported, not paid for again"
    assert texts == {0: "{not json", 1: '"fine"'}, "nothing stored was changed"
