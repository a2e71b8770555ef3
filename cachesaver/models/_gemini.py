"""Gemini (``google-genai``): the `GeminiModel` pipeline adapter over generateContent.

``OnlineAPI(GeminiModel(genai.Client(), "gemini-2.5-flash"), cache=...)``. The SDK is an
optional extra (``pip install "cachesaver[gemini]"``). ``n`` is sent as
``candidate_count``; a model that returns fewer candidates (many Gemini models take only
one) is asked again for the rest, so a request always gets exactly ``n`` samples, and
the extra calls' samples are flagged as having paid their prompt (not ``duplicated``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachesaver.errors import InvalidRequestError, MissingExtraError, ModelContractError
from cachesaver.models._adapter import AdapterBase, SampleKind
from cachesaver.models._common import (
    CALL_OPTIONS_ATTR,
    SDK_ATTR,
    apportion,
    request_label,
)
from cachesaver.typedefs import Request, Response

__all__ = ["GENERATE_NOT_IN_KEY", "GeminiModel", "GeminiRequest", "candidate_text", "contents_of"]

#: GenerateContentConfig fields that do not change the output: never part of the key.
GENERATE_NOT_IN_KEY: frozenset[str] = frozenset({"http_options", "labels", "service_tier"})
_BASE_FIELDS = frozenset({"prompt", "n", "request_id", "namespace", "config"})
_OWNED = frozenset({"model", "contents", "candidate_count", "stream"})
# Config fields that change how the SDK behaves rather than what the model is asked.
_NOT_ALLOWED = frozenset({"automatic_function_calling", "should_return_http_response"})
_ROLES = {"user": "user", "assistant": "model", "model": "model"}


@dataclass(frozen=True, kw_only=True)
class GeminiRequest(Request):
    """A `Request` for Gemini: ``config`` holds GenerateContentConfig fields by name (JSON)."""

    config: dict[str, Any] | None = None


def _sdk() -> Any:
    try:
        return importlib.import_module("google.genai")
    except ImportError as exc:
        raise MissingExtraError(
            f'the Gemini adapter needs google-genai: pip install "cachesaver[gemini]" ({exc})'
        ) from exc


def contents_of(request: Request) -> tuple[Any, str | None]:
    """``(contents, system_instruction)`` from a request's prompt.

    A str is sent as it is. A list of OpenAI-style chat messages (``role`` and a str
    ``content``) becomes Gemini contents (``assistant`` -> ``model``; ``system`` messages
    become the system instruction); a list of Gemini contents (``role`` and ``parts``)
    is sent as it is.
    """
    prompt = request.prompt
    if isinstance(prompt, str):
        return prompt, None
    if isinstance(prompt, dict) and "parts" in prompt:
        return [prompt], None
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, str) for m in prompt):
        return list(prompt), None
    if isinstance(prompt, (list, tuple)) and prompt and all(isinstance(m, dict) for m in prompt):
        if all("parts" in m for m in prompt):
            return list(prompt), None
        system: list[str] = []
        contents: list[dict[str, Any]] = []
        for message in prompt:
            role, content = message.get("role"), message.get("content")
            if not isinstance(content, str):
                raise InvalidRequestError(
                    f"{request_label(request)}: chat message content must be a str for Gemini "
                    "(or pass Gemini contents with 'parts')"
                )
            if role == "system":
                system.append(content)
            elif role in _ROLES:
                contents.append({"role": _ROLES[role], "parts": [{"text": content}]})
            else:
                raise InvalidRequestError(
                    f"{request_label(request)}: chat message role {role!r} is not one of "
                    "'system', 'user', 'assistant'"
                )
        if not contents:
            raise InvalidRequestError(
                f"{request_label(request)}: the prompt has only system messages"
            )
        return contents, ("\n\n".join(system) if system else None)
    raise InvalidRequestError(
        f"{request_label(request)}: prompt must be a str or a non-empty list of messages, got "
        f"{type(prompt).__name__}"
    )


class GeminiModel(AdapterBase):
    """Gemini's generateContent as a `SingleRequestModel` for `OnlineAPI`.

    - ``client``: a ``google.genai.Client``; its async API (``client.aio``) is used;
    - request fields are sent as the ``GenerateContentConfig`` field of their name
      (``temperature``, ``top_p``, ``top_k``, ``max_output_tokens``, ``stop_sequences``,
      ``seed``, ``response_mime_type``, ``response_json_schema``, ``system_instruction``,
      ``tools``, ...); others are refused unless named in ``ignore_fields``;
    - ``sample="text"``: a sample is the candidate's text; ``"full"``: a dict with the
      candidate as JSON (``candidate``), the tokens of its call (``prompt_tokens``,
      ``completion_tokens``), ``model_version`` and ``response_id``;
    - ``call_options``: config fields that leave the output unchanged
      (`GENERATE_NOT_IN_KEY`);
    - ``identity_base_url``: the endpoint recorded in the identity (default: the client's).
    """

    provider = "gemini"
    endpoint = "generate_content"
    call_option_names = GENERATE_NOT_IN_KEY

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        sample: SampleKind = "text",
        max_concurrency: int | None = None,
        call_options: Mapping[str, Any] | None = None,
        ignore_fields: Iterable[str] = (),
        identity_base_url: str | None = None,
    ) -> None:
        super().__init__(
            client,
            model,
            sample=sample,
            max_concurrency=max_concurrency,
            call_options=call_options,
            ignore_fields=ignore_fields,
            base_url=identity_base_url or endpoint_of(client),
        )
        genai = _sdk()
        self._config_type = genai.types.GenerateContentConfig
        self._config_fields = frozenset(self._config_type.model_fields) - _NOT_ALLOWED

    def config(self, request: Request) -> tuple[Any, dict[str, Any]]:
        """``(contents, config fields)`` for ``request`` (without ``candidate_count``)."""
        contents, system = contents_of(request)
        fields: dict[str, Any] = {}
        why = "model is the adapter's, contents come from prompt, candidate_count from n"
        for name, value in self._set_fields(request, _BASE_FIELDS, _OWNED, why):
            if name not in self._config_fields:
                raise InvalidRequestError(
                    f"{request_label(request)}: field {name!r} is not a GenerateContentConfig "
                    f"field; remove it or pass ignore_fields=[{name!r}] to GeminiModel"
                )
            fields[name] = value
        extra = getattr(request, "config", None)
        if extra is not None:
            if not isinstance(extra, dict):
                raise InvalidRequestError(
                    f"{request_label(request)}: field 'config' must be a dict of "
                    f"GenerateContentConfig fields, got {type(extra).__name__}"
                )
            for name, value in extra.items():
                if name in fields or name not in self._config_fields or name in _OWNED:
                    raise InvalidRequestError(
                        f"{request_label(request)}: config[{name!r}] is set twice, set by the "
                        "adapter, or not a GenerateContentConfig field of the installed SDK"
                    )
                if value is not None:
                    fields[name] = value
        if system is not None:
            if "system_instruction" in fields:
                raise InvalidRequestError(
                    f"{request_label(request)}: the prompt has a system message and the field "
                    "'system_instruction' is set too; use one of them"
                )
            fields["system_instruction"] = system
        return contents, fields

    async def request(self, request: Request) -> Response:
        """Return ``request.n`` candidates (more calls if the model returns fewer)."""
        contents, fields = self.config(request)
        fields.update(self.call_options)
        per_call = getattr(request, CALL_OPTIONS_ATTR, None)
        if per_call:  # a drop-in call's options that leave the output unchanged
            fields.update(per_call)
        client = getattr(request, SDK_ATTR, None) or self.client
        samples: list[Any] = []
        duplicated: list[bool] = []
        while len(samples) < request.n:
            wanted = request.n - len(samples)
            config = self._config_type(**fields, candidate_count=wanted)
            async with self._limit.slot():
                answer = await client.aio.models.generate_content(
                    model=self.model, contents=contents, config=config
                )
            candidates = list(getattr(answer, "candidates", None) or ())[:wanted]
            if not candidates:
                raise ModelContractError(
                    f"gemini returned no candidates for model {self.model!r} "
                    f"({request_label(request)}); check the model name, parameters and the "
                    "answer's prompt_feedback (a blocked prompt has none)"
                )
            usage = getattr(answer, "usage_metadata", None)
            self._count(
                1,
                len(candidates),
                getattr(usage, "prompt_token_count", 0),
                getattr(usage, "candidates_token_count", 0),
            )
            if self.sample == "text":
                samples.extend(candidate_text(c) for c in candidates)
            else:
                samples.extend(_full_samples(answer, candidates, usage))
            # The first candidate of every call paid its prompt; later ones shared it.
            duplicated.extend(j > 0 for j in range(len(candidates)))
        return Response(samples, duplicated=duplicated)


def _full_samples(answer: Any, candidates: list[Any], usage: Any) -> list[dict[str, Any]]:
    """One sample per candidate: the candidate as JSON and the tokens of its call.

    ``prompt_tokens`` is the call's prompt (paid by its first candidate);
    ``completion_tokens`` the candidate's share of the call's output tokens (split by
    the length of each candidate's text when the API reports only the total).
    """
    dumps = [c.model_dump(mode="json", exclude_none=True) for c in candidates]
    for dump in dumps:
        dump.pop("index", None)
    total = getattr(usage, "candidates_token_count", None)
    shares: list[int | None] = [None] * len(dumps)
    if total is not None:
        weights = [1 + len(candidate_text(c) or "") for c in candidates]
        shares = list(apportion(int(total), weights))
    prompt = getattr(usage, "prompt_token_count", None)
    return [
        {
            "candidate": dumps[j],
            "prompt_tokens": prompt,
            "completion_tokens": shares[j],
            "model_version": getattr(answer, "model_version", None),
            "response_id": getattr(answer, "response_id", None),
        }
        for j in range(len(dumps))
    ]


def candidate_text(candidate: Any) -> str | None:
    """The text parts of a candidate joined (``None`` when it has none)."""
    content = getattr(candidate, "content", None)
    parts = getattr(content, "parts", None) or []
    texts = [p.text for p in parts if isinstance(getattr(p, "text", None), str)]
    return "".join(texts) if texts else None


def endpoint_of(client: Any) -> str:
    """Where a ``genai.Client`` sends its calls: its base URL (and ``vertexai`` if set)."""
    api = getattr(client, "_api_client", None)
    options = getattr(api, "_http_options", None)
    base = str(getattr(options, "base_url", "") or "").rstrip("/")
    if getattr(api, "vertexai", False):
        project = getattr(api, "project", None)
        location = getattr(api, "location", None)
        return f"vertexai:{project}:{location}:{base}"
    return base
