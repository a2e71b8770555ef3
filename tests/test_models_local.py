"""The transformers adapter: a tiny random causal LM loaded from disk through LocalAPI."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cachesaver import InvalidRequestError, Request
from cachesaver.pipelines import LocalAPI
from cachesaver.typedefs import Batch

REASON = "torch and transformers are not installed (pip install 'cachesaver[local]')"
try:
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
except ImportError:  # pragma: no cover - depends on the machine
    if os.environ.get("CACHESAVER_REQUIRE_LOCAL") == "1":
        raise
    pytest.skip(
        REASON + "; CACHESAVER_REQUIRE_LOCAL=1 makes this a failure", allow_module_level=True
    )

from cachesaver.models.local import TransformersModel  # noqa: E402

CORPUS = [
    "the cat sat on the mat and the dog ate the bone",
    "four plus four is eight and eight times three is twenty four",
    "user assistant system answer question number prime",
] * 20
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer GPT-2 and a trained byte-level BPE tokenizer."""
    directory = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = TEMPLATE
    fast.save_pretrained(directory)
    config = transformers.GPT2Config(
        vocab_size=len(fast),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.eos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> TransformersModel:
    return TransformersModel(model_dir, name="tiny-gpt2", batch_size=5, max_new_tokens=6)


@dataclass(frozen=True)
class SamplingRequest(Request):
    temperature: float | None = None
    max_new_tokens: int | None = None


@dataclass(frozen=True)
class SeededRequest(Request):
    seed: int | None = None


async def test_loads_from_a_directory_and_declares_its_identity(loaded: TransformersModel) -> None:
    """The adapter loads through from_pretrained and names model, dtype and settings."""
    identity = loaded.identity
    assert identity["provider"] == "transformers"
    assert identity["model"] == "tiny-gpt2"
    assert identity["dtype"] == "float32"
    assert identity["generation"]["max_new_tokens"] == 6
    assert identity["chat_template"] is not None
    assert loaded.tokenizer.padding_side == "left"


async def test_batch_size_is_a_hard_limit_and_samples_keep_their_order(
    loaded: TransformersModel, tmp_path: Path
) -> None:
    """n=7 with batch_size 5 reaches generate as calls of at most 5 rows, 7 samples back."""
    before = len(loaded.generate_calls)
    async with LocalAPI(loaded, cache=str(tmp_path / "c"), batch_size=5, timeout=0.01) as api:
        response = await api.request(Request("the cat", n=7, namespace="a"))
    calls = loaded.generate_calls[before:]
    assert sum(calls) == 7
    assert max(calls) <= 5
    assert len(response.data) == 7
    assert all(isinstance(text, str) for text in response.data)
    assert response.cached == [False] * 7


async def test_a_whole_batch_is_one_padded_generate_call(loaded: TransformersModel) -> None:
    """Requests of different lengths in one batch share one padded generate call."""
    before = len(loaded.generate_calls)
    batch = Batch([Request("the cat sat on the mat", n=2), Request("four", n=2)])
    responses = await loaded.batch_request(batch)
    assert loaded.generate_calls[before:] == (4,)
    assert [len(r.data) for r in responses] == [2, 2]


async def test_greedy_decoding_is_deterministic_per_prompt(loaded: TransformersModel) -> None:
    """temperature=0 (a request field) decodes greedily: padding does not change the text."""
    alone = await loaded.batch_request(Batch([SamplingRequest("four plus", temperature=0)]))
    padded = await loaded.batch_request(
        Batch(
            [
                SamplingRequest("four plus", temperature=0),
                SamplingRequest("the cat sat on the mat and the dog", temperature=0),
            ]
        )
    )
    assert alone[0].data == padded[0].data


async def test_a_replay_reads_the_cache_without_generating(
    loaded: TransformersModel, tmp_path: Path
) -> None:
    """A second run over the same cache returns the same samples and calls generate 0 times."""
    cache = str(tmp_path / "c")
    prompts = [Request("the dog", n=3), Request([{"role": "user", "content": "hi"}], n=2)]
    async with LocalAPI(loaded, cache=cache, batch_size=5, timeout=0.01) as api:
        first = await asyncio.gather(*(api.request(r) for r in prompts))
    calls = len(loaded.generate_calls)
    async with LocalAPI(loaded, cache=cache, batch_size=5, timeout=0.01) as api:
        second = await asyncio.gather(*(api.request(r) for r in prompts))
    assert len(loaded.generate_calls) == calls
    assert [r.data for r in second] == [r.data for r in first]
    assert all(all(r.cached or []) for r in second)


async def test_settings_enter_the_key_through_request_fields(
    loaded: TransformersModel, tmp_path: Path
) -> None:
    """A request field overriding max_new_tokens makes a different key and is applied."""
    async with LocalAPI(loaded, cache=str(tmp_path / "c"), batch_size=5, timeout=0.01) as api:
        short = SamplingRequest("the", max_new_tokens=1, temperature=0)
        long = SamplingRequest("the", max_new_tokens=6, temperature=0)
        assert api.key_of(short) != api.key_of(long)
        one = await api.request(short)
        six = await api.request(long)
    tokens = loaded.tokenizer
    assert len(tokens(one.data[0], add_special_tokens=False)["input_ids"]) <= 1
    assert six.data[0].startswith(one.data[0])


async def test_unknown_fields_and_bad_prompts_are_refused(loaded: TransformersModel) -> None:
    """A field the model would ignore, or a prompt it cannot render, is a clear error."""
    with pytest.raises(InvalidRequestError, match="'seed'"):
        await loaded.batch_request(Batch([SeededRequest("x", seed=3)]))
    with pytest.raises(InvalidRequestError, match="prompt"):
        await loaded.batch_request(Batch([Request({"not": "messages"})]))
    with pytest.raises(InvalidRequestError, match="max_new_tokens"):
        await loaded.batch_request(Batch([SamplingRequest("x", max_new_tokens=0)]))


def test_bad_options_are_refused_before_loading(model_dir: Path) -> None:
    """dtype and batch_size are checked before anything is loaded."""
    with pytest.raises(ValueError, match="dtype"):
        TransformersModel(model_dir, dtype="float8")
    with pytest.raises(ValueError, match="batch_size"):
        TransformersModel(model_dir, batch_size=0)


def test_different_settings_make_different_identities(model_dir: Path) -> None:
    """Two adapters over one checkpoint with other defaults never share samples."""
    a: Any = TransformersModel(model_dir, max_new_tokens=6)
    b: Any = TransformersModel(model_dir, max_new_tokens=7)
    assert a.identity != b.identity
