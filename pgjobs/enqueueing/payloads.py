"""Task arguments checked against the task function's type hints.

At enqueue, arguments are validated and converted to JSON (pydantic models
become objects); a bad payload raises ``InvalidPayload`` and nothing is
written. In the worker, the stored JSON is validated again and the task gets
real values (a parameter annotated with a pydantic model receives the model).
"""

from __future__ import annotations

import datetime
import inspect
import json
import math
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticSerializationError

from pgjobs.errors import InvalidPayload

#: Payloads larger than this (encoded JSON) are refused: pass ids, not blobs.
MAX_PAYLOAD_BYTES = 1_000_000


#: Validated values that are JSON as they are: nothing inside to check.
_PLAIN = frozenset({int, str, bool, type(None)})
_ANY: TypeAdapter[Any] = TypeAdapter(Any)
#: JSON as stored: compact UTF-8 (what the size limit counts), NUL escaped.
_encode = pydantic_core.to_json


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _leaves(value: Any) -> Iterator[Any]:
    """Every scalar inside ``value`` (containers and pydantic models opened)."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _not_json_safe(value: Any) -> str | None:
    """Why ``value`` cannot be stored faithfully, or None. pydantic would
    quietly write NaN/infinity as ``null``, and a naive datetime means a
    different instant on every server."""
    for leaf in _leaves(value):
        if isinstance(leaf, float) and not math.isfinite(leaf):
            return "NaN and infinity are not JSON numbers"
        if isinstance(leaf, datetime.datetime) and leaf.tzinfo is None:
            return "naive datetime: give it a timezone (e.g. datetime.UTC)"
    return None


def _dumps_plain_as_is(adapter: TypeAdapter[Any]) -> bool:
    """Whether ``adapter`` writes an int, str, bool or None unchanged: a bare
    ``int``/``str``/``bool``/``Any`` hint (optionally ``| None``) with no
    custom serializer."""
    schema: Any = adapter.core_schema
    if schema.get("type") == "nullable":
        schema = schema["schema"]
    return schema.get("type") in {"int", "str", "bool", "any"} and (
        "serialization" not in schema
    )


class PayloadSchema:
    """The arguments one task accepts, derived from its function signature."""

    def __init__(self, func: Callable[..., Any], *, task_name: str, skip_first: bool):
        self.task_name = task_name
        signature = inspect.signature(func)
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # unresolvable forward references: accept any JSON
            hints = {}
        params = list(signature.parameters.values())
        if skip_first and params:
            params = params[1:]
        self.var_keyword = any(p.kind is p.VAR_KEYWORD for p in params)
        self.adapters: dict[str, TypeAdapter[Any]] = {}
        #: Parameters typed with classes pydantic has no schema for (checked
        #: with isinstance at enqueue, handed over as stored in the worker).
        self.opaque: set[str] = set()
        self.required: set[str] = set()
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            self.adapters[param.name] = self._adapter(
                param.name, hints.get(param.name, Any)
            )
            if param.default is inspect.Parameter.empty:
                self.required.add(param.name)
        #: Parameters whose plain values (int, str, bool, None) pydantic
        #: writes as they are: no serializer call for those.
        self.as_is = {
            name
            for name, adapter in self.adapters.items()
            if _dumps_plain_as_is(adapter)
        }

    def _adapter(self, name: str, hint: Any) -> TypeAdapter[Any]:
        try:
            return TypeAdapter(hint)
        except PydanticSchemaGenerationError:
            # A plain class (procrastinate accepts any annotation): an
            # isinstance check; its JSON comes from the connector's json_dumps.
            self.opaque.add(name)
        try:
            return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
        except PydanticSchemaGenerationError:  # pragma: no cover - defensive
            return _ANY

    def _fail(self, message: str) -> InvalidPayload:
        return InvalidPayload(f"task {self.task_name!r}: {message}")

    def _check_names(self, kwargs: Mapping[str, Any]) -> None:
        if not self.var_keyword:
            unknown = sorted(kwargs.keys() - self.adapters.keys())
            if unknown:
                raise self._fail(f"unexpected argument(s) {', '.join(unknown)}")
        if self.required and not self.required <= kwargs.keys():
            missing = sorted(self.required - kwargs.keys())
            raise self._fail(f"missing argument(s) {', '.join(missing)}")

    def _validate(self, name: str, value: Any) -> Any:
        adapter = self.adapters.get(name)
        if adapter is None:
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
        # Raised outside the handler: no pydantic error as its context, which
        # procrastinate's CLI would print too (it prints the whole chain).
        where = ".".join(str(part) for part in (name, *error["loc"]))
        raise self._fail(f"argument {where}: {error['msg']}")

    def dump(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``kwargs`` and return them as JSON-ready values."""
        return self.encode(kwargs)[0]

    def dump_json(self, kwargs: Mapping[str, Any]) -> bytes:
        """Validate ``kwargs`` and return them as JSON (what is stored)."""
        return self.encode(kwargs)[1]

    def encode(
        self,
        kwargs: Mapping[str, Any],
        json_dumps: Callable[[Any], str | bytes] | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        """Validate ``kwargs``: their JSON-ready values and their JSON.

        ``json_dumps`` is the connector's own encoder (procrastinate's
        ``json_dumps=`` option): values pydantic cannot write as JSON are
        left to it, and it writes the JSON, as procrastinate would.
        """
        self._check_names(kwargs)
        result: dict[str, Any] = {}
        for name, value in kwargs.items():
            validated = self._validate(name, value)
            if type(validated) in _PLAIN:
                if name in self.as_is:
                    result[name] = validated
                    continue
            else:
                problem = _not_json_safe(validated)
                if problem is not None:
                    raise self._fail(f"argument {name}: {problem}")
            adapter = self.adapters.get(name) or _ANY
            try:
                result[name] = adapter.dump_python(validated, mode="json")
                continue
            except PydanticSerializationError:
                pass
            if json_dumps is None:
                raise self._fail(
                    f"argument {name}: {type(value).__name__} is not "
                    "JSON-serialisable (or give the connector a json_dumps)"
                )
            result[name] = validated
        # One encoding serves the NUL check, the size check and the insert.
        data = (
            _encode(result) if json_dumps is None else self._custom(json_dumps, result)
        )
        if b"\\u0000" in data and _contains_nul(
            result if json_dumps is None else json.loads(data)
        ):
            raise self._fail("strings may not contain NUL (\\x00) characters")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise self._fail(
                f"payload is {len(data)} bytes, over the {MAX_PAYLOAD_BYTES} byte "
                "limit (store the data in a table and pass its id)"
            )
        return result, data

    def _custom(self, json_dumps: Callable[[Any], str | bytes], value: Any) -> bytes:
        try:
            data = json_dumps(value)
        except (TypeError, ValueError) as exc:
            raise self._fail(f"arguments are not JSON-serialisable: {exc}") from None
        return data.encode() if isinstance(data, str) else data

    def load(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate stored arguments into the values the task function expects."""
        self._check_names(kwargs)
        return {
            name: value if name in self.opaque else self._validate(name, value)
            for name, value in kwargs.items()
        }
