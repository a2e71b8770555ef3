"""Helpers shared by the provider adapters and the drop-in clients."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cachesaver.errors import InvalidRequestError

if TYPE_CHECKING:
    from cachesaver.typedefs import Request

__all__ = [
    "CACHESAVER_KEYWORDS",
    "CALL_CLIENT",
    "CALL_OPTIONS_ATTR",
    "SDK_ATTR",
    "TRANSPORT_PARAMS",
    "ClientT",
    "ConcurrencyLimit",
    "TokenUsage",
    "apportion",
    "base_url_of",
    "call_client",
    "check_call_options",
    "check_model",
    "is_omitted",
    "jsonable",
    "request_label",
    "sdk_params",
    "validator_of",
]

# Keywords of a drop-in call that cachesaver takes for itself and never sends.
CACHESAVER_KEYWORDS = frozenset({"namespace", "request_id"})

# Name of the attribute a drop-in request carries its call options in: parameters that
# are sent to the API but are not part of the key (extra_headers, timeout, user, ...).
CALL_OPTIONS_ATTR = "_csm_call_options"
# Name of the attribute a drop-in request carries the SDK client to call in (a client
# derived by ``with_options`` calls with its own options on the shared pipelines).
SDK_ATTR = "_csm_sdk"
#: The SDK client of the API call being made (set by the adapters around ``_create``).
CALL_CLIENT: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "cachesaver_call_client", default=None
)


def call_client(adapter: Any) -> Any:
    """The SDK client to make the current API call with (a request's, or the adapter's)."""
    client = CALL_CLIENT.get()
    return adapter.client if client is None else client


#: The SDK client type an adapter calls (bound by each provider's adapter classes).
ClientT = TypeVar("ClientT")


def request_label(request: Request) -> str:
    """How error messages name a request."""
    return f"{type(request).__name__}(request_id={request.request_id!r})"


def base_url_of(client: Any) -> str:
    """The client's base URL without a trailing slash (``""`` if it has none)."""
    return str(getattr(client, "base_url", "")).rstrip("/")


def check_model(name: str, model: Any) -> None:
    """Raise unless ``model`` (an adapter's model name) is a non-empty str."""
    if not isinstance(model, str) or not model:
        raise ValueError(f"{name} needs the model name as a non-empty str, got {model!r}")


def check_call_options(
    name: str, call_options: Mapping[str, Any] | None, allowed: frozenset[str], hint: str = ""
) -> dict[str, Any]:
    """``call_options`` as a dict; raise if one of them is not in ``allowed``."""
    options = dict(call_options or {})
    bad = sorted(set(options) - allowed)
    if bad:
        raise ValueError(
            f"{name}: call_options {bad} are not options that leave the output "
            f"unchanged ({sorted(allowed)}){hint}"
        )
    return options


def is_omitted(value: Any) -> bool:
    """True for ``None`` and for the SDKs' ``NOT_GIVEN`` / ``omit`` sentinels."""
    return value is None or type(value).__name__ in ("NotGiven", "Omit")


_SCALARS = (str, int, float, bool, type(None))


def jsonable(value: Any, path: str) -> Any:
    """Return ``value`` as plain JSON data (what the SDK would send), or raise.

    Mappings become dicts, tuples and other iterables become lists, pydantic objects (for
    example a ``ChatCompletionMessage`` taken from an earlier answer) become the dict the
    SDK would send. Anything else that is not JSON is refused, naming ``path``. The
    result is a copy: mutating the argument afterwards does not change it.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        out: dict[str, Any] = {}
        for k, item in value.items():
            if type(k) is not str:
                raise InvalidRequestError(
                    f"{path} has a dict key {k!r} of type {type(k).__name__}; JSON object "
                    "keys must be strings"
                )
            if type(item) in _SCALARS:
                out[k] = item
            elif not is_omitted(item):
                out[k] = jsonable(item, f"{path}[{k!r}]")
        return out
    if kind is list or kind is tuple:
        return [
            item if type(item) in _SCALARS else jsonable(item, f"{path}[{i}]")
            for i, item in enumerate(value)
        ]
    if isinstance(value, (set, frozenset)):
        raise InvalidRequestError(
            f"{path} is a {kind.__name__}, whose order depends on the process, so it cannot "
            "enter a cache key; pass a list (sorted, or in the order you mean)"
        )
    if isinstance(value, type):
        raise InvalidRequestError(
            f"{path} is the class {value.__qualname__}, not JSON data; pass the JSON the API "
            "expects (for a structured output, a response_format dict with a json_schema)"
        )
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        # As the SDKs send a pydantic object (their own ``__api_exclude__`` included).
        exclude = getattr(value, "__api_exclude__", None)
        return jsonable(dump(mode="json", exclude_unset=True, exclude=exclude), path)
    if isinstance(value, Mapping):
        return jsonable(dict(value), path)
    if isinstance(value, (str, bytes, bytearray)):  # str subclasses, bytes
        raise InvalidRequestError(
            f"{path} is a {kind.__name__}; pass a plain str (bytes are not JSON)"
        )
    if isinstance(value, Iterable):
        return [jsonable(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise InvalidRequestError(
        f"{path} is a {kind.__module__}.{kind.__qualname__}, which is not JSON data; pass "
        "str, int, float, bool, None, lists and dicts (as the API receives them)"
    )


def apportion(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` into integer parts proportional to ``weights`` that sum to it."""
    if not weights:
        return []
    if len(weights) == 1:
        return [total]
    weight_sum = sum(weights)
    if weight_sum <= 0:
        weights = [1] * len(weights)
        weight_sum = len(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    short = total - sum(parts)
    order = sorted(range(len(weights)), key=lambda i: (parts[i] - exact[i], i))
    for i in order[:short]:
        parts[i] += 1
    return parts


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens an adapter paid for: what its API calls reported, summed.

    ``calls`` counts API calls that returned (failed calls are the SDK's business and
    cost nothing here); ``samples`` counts the samples they produced.
    """

    calls: int = 0
    samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.calls + other.calls,
            self.samples + other.samples,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class ConcurrencyLimit:
    """At most ``limit`` API calls at once (``None``: no limit), per event loop."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(
                f"max_concurrency must be a positive int or None (no limit), got {limit!r}"
            )
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.limit is None:
            yield
            return
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop = loop
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            yield


#: Transport options: sent to the API, never part of a key.
TRANSPORT_PARAMS = frozenset({"extra_headers", "extra_query", "timeout"})
_HANDLED = frozenset({"self", "model", "messages", "input", "n", "stream", "extra_body"})


def sdk_params(create: Callable[..., Any]) -> frozenset[str]:
    """The keyword parameters an SDK ``create`` method takes that the adapters pass on."""
    return frozenset(inspect.signature(create).parameters) - _HANDLED - TRANSPORT_PARAMS


_M = TypeVar("_M")
_validators: dict[type[Any], Callable[[Any], Any]] = {}


def validator_of(cls: type[_M]) -> Callable[[Any], _M]:
    """``cls.model_validate`` (a pydantic model of a provider SDK) as one call of the
    class's schema validator.

    The same validation and the same object, without ``model_validate``'s per-call
    keyword handling (about a tenth of a one-choice hit's validation). Taken on first
    use (the SDKs defer building the schema until then), then kept.
    """
    validate = _validators.get(cls)
    if validate is None:
        validate = _validators[cls] = cls.__pydantic_validator__.validate_python  # type: ignore[attr-defined]
    return validate
