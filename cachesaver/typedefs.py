"""The values that flow through a pipeline and the two model contracts.

``Request`` is subclassed to add decoding parameters::

    @dataclass(frozen=True)
    class Request(Request):
        temperature: float = 1
        max_completion_tokens: int | None = None

Every field except ``n``, ``request_id`` and ``namespace`` is part of the request's key
(a field whose value is ``None`` is left out, so adding an optional field keeps an existing
cache valid). Reading a field that no class declares returns ``None``.

A request owns a snapshot of its content (SEMANTICS rule 9): lists, tuples and dicts in
its fields are copied at construction, so changing the caller's chat history afterwards
changes neither the key nor what the model is asked. A ``str`` prompt is not copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from cachesaver._canonical import CanonicalError, canonical_json, snapshot_json
from cachesaver.errors import InvalidRequestError

__all__ = ["MAX_N", "Batch", "BatchRequestModel", "Request", "Response", "SingleRequestModel"]

MAX_N = 100_000
"""The largest ``n`` one request may ask for (split larger draws into several requests)."""

# Fields that say how many samples and from which stream, not what is asked.
R = TypeVar("R", bound="Request")
_NOT_CONTENT = frozenset({"n", "request_id", "namespace"})
_content_fields: dict[type, tuple[str, ...]] = {}


def _fields_of(cls: type) -> tuple[str, ...]:
    names = _content_fields.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _NOT_CONTENT)
        _content_fields[cls] = names
    return names


def _label(request: Request) -> str:
    return f"{type(request).__name__}(request_id={request.request_id!r})"


@dataclass(frozen=True)
class Request:
    """What to ask the model (``prompt`` plus subclass fields) and how many samples.

    ``prompt`` is a string or any JSON-like structure (for example a list of chat
    messages). ``n`` is the number of samples; ``namespace`` names the stream they are
    drawn from; ``request_id`` is a label that shows up in errors and run manifests (and
    matches a request to its record when a run is reproduced). ``n`` is at most `MAX_N`.

    The request keeps its own copy of list, tuple and dict fields (taken at construction),
    so the content the model sees is exactly the content its key was made from.
    """

    prompt: Any
    n: int = field(default=1, kw_only=True)
    request_id: str | None = field(default=None, kw_only=True)
    namespace: str = field(default="default", kw_only=True)

    _cs_content: ClassVar[str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_cs_content", _encode_content(self))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names no class declares: undeclared decoding parameters read
        # as None (``request.seed or None``); private and dunder names stay errors.
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return None


def _encode_content(request: Request) -> str:
    n = request.n
    if type(n) is not int:
        raise InvalidRequestError(
            f"{_label(request)}: field 'n' must be a positive int, got "
            f"{type(n).__name__} {n!r}; pass the number of samples as an int such as n=3"
        )
    if n < 1:
        raise InvalidRequestError(
            f"{_label(request)}: field 'n' must be a positive int, got {n}; "
            "ask for at least one sample"
        )
    if n > MAX_N:
        raise InvalidRequestError(
            f"{_label(request)}: field 'n' is {n}, more than the {MAX_N} samples one request "
            "may ask for; split the draw into several requests (same namespace: they get "
            "successive samples)"
        )
    if type(request.namespace) is not str:
        raise InvalidRequestError(
            f"{_label(request)}: field 'namespace' must be a str, got "
            f"{type(request.namespace).__name__} {request.namespace!r}"
        )
    if request.request_id is not None and type(request.request_id) is not str:
        raise InvalidRequestError(
            f"{_label(request)}: field 'request_id' must be a str or None, got "
            f"{type(request.request_id).__name__} {request.request_id!r}"
        )
    content: dict[str, Any] = {}
    for name in _fields_of(type(request)):
        value = getattr(request, name)
        if value is not None:
            content[name] = value
    try:
        # The snapshot (rule 9) and the key's text in one walk: the text is made from the
        # copy, so the key and what the model sees are the same content.
        snapshot, text = snapshot_json(content, "request")
        text.encode("utf-8")
    except UnicodeEncodeError:
        for name, value in content.items():
            try:
                canonical_json(value).encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidRequestError(
                    f"{_label(request)}: field {name!r} is not valid Unicode (it holds a lone "
                    "surrogate, such as half an emoji); clean the text before asking"
                ) from None
        raise
    except CanonicalError as exc:
        field_name = exc.path.removeprefix("request[").split("]", 1)[0].strip("'\"")
        raise InvalidRequestError(
            f"{_label(request)}: field {field_name!r} cannot be encoded canonically "
            f"({exc.path}: {exc.problem})"
        ) from None
    for name, value in snapshot.items():
        kind = type(value)
        if kind is list or kind is dict or kind is tuple:
            object.__setattr__(request, name, value)
    return text


_MISSING = object()
_defaults: dict[type, dict[str, Any] | None] = {}


def _defaults_of(cls: type) -> dict[str, Any] | None:
    """Every field's default but ``prompt``'s; None if ``cls`` cannot be built from them."""
    state = _defaults.get(cls, _MISSING)
    if state is not _MISSING:
        return state  # type: ignore[return-value]
    built: dict[str, Any] | None = None
    if cls.__post_init__ is Request.__post_init__:  # type: ignore[attr-defined]
        defaults: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "prompt":
                continue
            if f.default is dataclasses.MISSING or not f.init:
                break
            defaults[f.name] = f.default
        else:
            built = defaults
    _defaults[cls] = built
    return built


def prebuilt_request(
    cls: type[R],
    content: dict[str, Any],
    text: str,
    n: Any,
    namespace: Any,
    request_id: Any,
) -> R | None:
    """A ``cls`` request from ``content`` already copied and encoded by ``plain_json``.

    ``content`` holds ``prompt`` and the other fields that are not ``None``, as fresh
    copies nobody else holds (so the request owns them, rule 9), and ``text`` is their
    canonical JSON: nothing is walked again. ``None`` when ``cls`` has fields without
    defaults or its own ``__post_init__``, or ``n`` / ``namespace`` / ``request_id`` are
    not valid: the caller then calls ``cls(...)``, which says what is wrong.
    """
    if (
        type(n) is not int
        or not 0 < n <= MAX_N
        or type(namespace) is not str
        or (request_id is not None and type(request_id) is not str)
    ):
        return None
    defaults = _defaults_of(cls)
    if defaults is None:
        return None
    state = dict(defaults)
    state.update(content)
    if len(state) != len(defaults) + 1 or "prompt" not in content:
        return None  # a name in content that is not a field
    state["n"] = n
    state["namespace"] = namespace
    state["request_id"] = request_id
    state["_cs_content"] = text
    request = object.__new__(cls)
    object.__setattr__(request, "__dict__", state)
    return request


def request_content(request: Request) -> str:
    """Return the canonical JSON of the request's content (everything but n/id/namespace)."""
    try:
        return request._cs_content
    except AttributeError:  # a subclass overrode __post_init__ without calling super()
        content = _encode_content(request)
        object.__setattr__(request, "_cs_content", content)
        return content


def with_n(request: Request, n: int) -> Request:
    """Return a copy of ``request`` asking for ``n`` samples (same content and key).

    Attributes set on the instance outside the dataclass fields (provider adapters use
    one for per-call transport options that must not enter the key) travel with the copy.
    """
    state = getattr(request, "__dict__", None)
    if state is None or "_cs_content" not in state:
        return dataclasses.replace(request, n=n)
    copy = object.__new__(type(request))
    copy.__dict__.update(state)
    object.__setattr__(copy, "n", n)
    return copy


@dataclass(frozen=True)
class Batch:
    """Several requests sent together; responses come back in the same order."""

    requests: Sequence[Request]


@dataclass(frozen=True)
class Response:
    """The samples of one request, with one ``cached`` and one ``duplicated`` flag each.

    ``cached[i]`` is True when sample i cost this request nothing; ``duplicated[i]`` is
    True when it came from a model call that had already produced an earlier sample (so
    its prompt was not paid again). A list is ``None`` when the pipeline has no caching
    (or no deduplication) stage.
    """

    data: list[Any]
    cached: list[bool] | None = None
    duplicated: list[bool] | None = None


@runtime_checkable
class SingleRequestModel(Protocol):
    """A model that answers one request at a time (an API)."""

    async def request(self, request: Request) -> Response:
        """Return a `Response` with exactly ``request.n`` samples."""
        ...


@runtime_checkable
class BatchRequestModel(Protocol):
    """A model that answers a batch of requests at once (a local model)."""

    async def batch_request(self, batch: Batch) -> list[Response]:
        """Return one `Response` per request, in order, each with ``n`` samples."""
        ...
