"""What the Anthropic and Gemini pipeline adapters share: their common options, their
identity (part of every key), the usage they count and how they name themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Literal

from cachesaver.errors import InvalidRequestError
from cachesaver.models._common import (
    ConcurrencyLimit,
    TokenUsage,
    check_call_options,
    check_model,
    request_label,
)
from cachesaver.typedefs import Request

__all__ = ["AdapterBase", "SampleKind"]

SampleKind = Literal["text", "full"]


class AdapterBase:
    """A provider adapter's options: ``client``, ``model``, ``sample`` (``"text"`` or
    ``"full"``), ``max_concurrency``, ``call_options`` (only names in
    ``call_option_names``: they leave the output unchanged), ``ignore_fields`` (kept in the
    key, not sent) and ``identity_base_url`` (the endpoint recorded in the identity)."""

    provider: ClassVar[str] = ""
    endpoint: ClassVar[str] = ""
    call_option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        sample: SampleKind,
        max_concurrency: int | None,
        call_options: Mapping[str, Any] | None,
        ignore_fields: Iterable[str],
        base_url: str,
    ) -> None:
        name = type(self).__name__
        check_model(name, model)
        if sample not in ("text", "full"):
            raise ValueError(f"{name}: sample must be 'text' or 'full', got {sample!r}")
        self.client = client
        self.model = model
        self.sample: SampleKind = sample
        self.call_options = check_call_options(name, call_options, self.call_option_names)
        self.ignore_fields = frozenset(ignore_fields)
        self._limit = ConcurrencyLimit(max_concurrency)
        self._base_url = base_url
        self._usage = TokenUsage()

    @property
    def identity(self) -> dict[str, Any]:
        """Provider, endpoint, model, base URL and sample kind (and what a subclass adds)."""
        return {
            "provider": self.provider,
            "endpoint": self.endpoint,
            "model": self.model,
            "base_url": self._base_url,
            "sample": self.sample,
        }

    @property
    def usage(self) -> TokenUsage:
        """API calls made and the tokens they reported, since this adapter was created."""
        return self._usage

    def _set_fields(
        self, request: Request, skip: frozenset[str], owned: frozenset[str], why: str
    ) -> Iterator[tuple[str, Any]]:
        """``(name, value)`` of each field of ``request`` that is set and to be sent:
        not in ``skip`` or ``ignore_fields``; a field in ``owned`` is an error (``why``)."""
        for field in dataclasses.fields(type(request)):
            name = field.name
            value = getattr(request, name)
            if name in skip or value is None or name in self.ignore_fields:
                continue
            if name in owned:
                raise InvalidRequestError(
                    f"{request_label(request)}: field {name!r} is set, but the adapter sets "
                    f"it ({why})"
                )
            yield name, value

    def _count(self, calls: int, samples: int, prompt: Any, output: Any) -> None:
        self._usage = self._usage + TokenUsage(calls, samples, int(prompt or 0), int(output or 0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self._base_url!r})"
