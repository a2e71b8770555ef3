"""What the adapters store as one sample, and how to read a drop-in answer's flags.

Samples are plain JSON (``TypedDict`` s, so they are typed for you and stored as they
are: no type tag, nothing to register, readable by any process and any tool). No SDK
class is ever stored; the drop-in clients rebuild the SDK's own objects from them.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple, TypedDict

__all__ = [
    "ChatSample",
    "ChoiceFlags",
    "ChoiceUsage",
    "EmbeddingSample",
    "cache_flags",
    "choice_usage",
    "sample_message",
    "sample_text",
]


class ChatSample(TypedDict):
    """One chat sample (``sample="full"``) as the provider returned it, with its tokens.

    - ``choice``: the provider's choice as JSON (``message``, ``finish_reason``,
      ``logprobs``, ...), without its ``index``;
    - ``prompt_tokens``: the prompt tokens of the API call that produced it (a call's
      prompt is paid once: by its sample whose ``duplicated`` flag is False). When a
      provider returned fewer choices than asked and was asked again, each call's first
      choice is flagged not duplicated and so pays that call's prompt;
    - ``completion_tokens``: its output tokens. When a call returns several choices and
      the provider reports only the total, the total is split by the length of each
      choice's output (the parts sum to the exact total);
    - ``model``, ``id``, ``created``, ``system_fingerprint``: of that API call.
    """

    choice: dict[str, Any]
    prompt_tokens: int | None
    completion_tokens: int | None
    model: str
    id: str
    created: int
    system_fingerprint: str | None


class EmbeddingSample(TypedDict):
    """One input's embedding, with its share of the call's prompt tokens."""

    embedding: list[float]
    prompt_tokens: int | None
    model: str


def sample_message(sample: ChatSample) -> dict[str, Any]:
    """The assistant message of a `ChatSample` (append it to a conversation as it is)."""
    message = sample["choice"].get("message")
    return dict(message) if isinstance(message, dict) else {"role": "assistant"}


def sample_text(sample: ChatSample | str | None) -> str | None:
    """The text of a sample of either kind (``None`` for a pure tool call or a refusal)."""
    if sample is None or isinstance(sample, str):
        return sample
    choice = sample["choice"]
    message = choice.get("message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else None
    text = choice.get("text")
    return text if isinstance(text, str) else None


class ChoiceFlags(NamedTuple):
    """The two flags of one choice of a drop-in answer (see SEMANTICS "Flags")."""

    cached: bool
    duplicated: bool


def _choice_extras(completion: Any, reader: str, fields: Collection[str], what: str) -> list[Any]:
    """The cachesaver extras of each choice of a drop-in answer (raises ValueError if none)."""
    choices = getattr(completion, "choices", None)
    if not isinstance(choices, list):
        raise ValueError(
            f"{reader} needs a ChatCompletion from a cachesaver drop-in client, got "
            f"{type(completion).__name__}"
        )
    extras: list[Any] = []
    for choice in choices:
        extra = getattr(choice, "model_extra", None) or {}
        if any(name not in extra for name in fields):
            raise ValueError(
                f"this ChatCompletion has no {what}: it did not come from "
                "cachesaver.models.openai.AsyncOpenAI or cachesaver.models.together."
                "AsyncTogether"
            )
        extras.append(extra)
    return extras


def cache_flags(completion: Any) -> list[ChoiceFlags]:
    """Return the flags of each choice of a drop-in ``ChatCompletion``, in choice order.

    The same values are on each choice as extra fields: ``choice.cached`` and
    ``choice.duplicated``. Raises ``ValueError`` for a completion that did not come from
    a cachesaver drop-in client.
    """
    extras = _choice_extras(completion, "cache_flags", ("cached", "duplicated"), "cachesaver flags")
    return [ChoiceFlags(bool(e["cached"]), bool(e["duplicated"])) for e in extras]


class ChoiceUsage(NamedTuple):
    """What the sample behind one choice of a drop-in answer cost when it was made.

    Unlike ``completion.usage`` (what this call paid: 0 on a hit), these are the
    sample's own counts as stored, the same whether it is served fresh or from the cache:

    - ``prompt_tokens``: the prompt tokens of the API call that made the sample (every
      sample of that call carries them; the call paid them once);
    - ``completion_tokens``: the sample's output tokens (its share of the call's total
      when the provider reports only a total);
    - ``completion_id``: the ``id`` of the API completion that made the sample (the
      answer's own ``id`` is that of its first choice's call).

    The token counts are None where the provider reported no usage.
    """

    prompt_tokens: int | None
    completion_tokens: int | None
    completion_id: str


def choice_usage(completion: Any) -> list[ChoiceUsage]:
    """Return, per choice of a drop-in ``ChatCompletion``, its sample's `ChoiceUsage`.

    The same values are on each choice as extra fields (``choice.prompt_tokens``,
    ``choice.completion_tokens``, ``choice.completion_id``). Raises ``ValueError`` for a
    completion that did not come from a cachesaver drop-in client.
    """
    extras = _choice_extras(completion, "choice_usage", _USAGE_FIELDS, "per-choice token counts")
    usage: list[ChoiceUsage] = []
    for extra in extras:
        prompt, output = extra["prompt_tokens"], extra["completion_tokens"]
        usage.append(
            ChoiceUsage(
                None if prompt is None else int(prompt),
                None if output is None else int(output),
                str(extra["completion_id"]),
            )
        )
    return usage


_USAGE_FIELDS = frozenset({"prompt_tokens", "completion_tokens", "completion_id"})
