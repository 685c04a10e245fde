"""Request validation against the provider's own OpenAPI schemas.

The provider's schema files ship as package data in ``veo_async/emulator/schemas``. They use
a small subset of JSON Schema (``type``, ``enum``, ``required``, ``properties``, ``items``,
``minLength``, ``maxItems``, ``format: uri``, OpenAPI's ``nullable``), which this module
implements without a JSON-Schema dependency. Errors imitate the provider's Zod-style
"Body validation error" detail: one entry per field with ``path``, ``expected``,
``received`` and ``message``. Unknown extra fields are accepted, as the real API does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import urlsplit

__all__ = [
    "UNIVERSAL_PATH",
    "VENDOR_PATH",
    "FieldError",
    "ModelSpec",
    "SchemaRegistry",
    "validate_value",
]

VENDOR_PATH = "/v2/generate/video/google/generation"
"""The Veo2 vendor path of the original guide."""
UNIVERSAL_PATH = "/v2/video/generations"
"""The universal video path (every video model)."""


class FieldError(TypedDict):
    """One validation problem, in the provider's Expected/Received style."""

    code: str
    path: list[str | int]
    expected: str
    received: str
    message: str


@dataclass(frozen=True)
class ModelSpec:
    """The request schema of one model on one path."""

    model: str
    schema: Mapping[str, Any]
    source: str
    default_duration: int | None


def _type_name(value: object) -> str:
    """Name a JSON value's type the way Zod's ``received`` does."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _literal(value: object) -> str:
    """Format an enum member or received value (strings quoted, as Zod prints them)."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _type_ok(expected: str, value: object) -> bool:
    if expected == "string":
        return isinstance(value, str)
    if expected == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "array":
        return isinstance(value, list)
    if expected == "object":
        return isinstance(value, dict)
    if expected == "null":
        return value is None
    return True


def _in_enum(value: object, enum: Sequence[object]) -> bool:
    """Enum membership without Python's ``True == 1`` confusion."""
    return any(
        member == value and isinstance(member, bool) == isinstance(value, bool) for member in enum
    )


def _uri_ok(value: str) -> bool:
    """Loose ``format: uri``: an absolute URL with a host, or a ``data:`` URI."""
    if value.startswith("data:"):
        return "," in value
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme) and bool(parts.netloc)


def _expected_type(expected: str) -> str:
    return "number" if expected == "integer" else expected


def validate_value(
    schema: Mapping[str, Any], value: object, path: list[str | int] | None = None
) -> list[FieldError]:
    """Validate ``value`` against a schema of the supported subset; return every error.

    A wrong type or a value outside the enum is the only error reported for that value;
    otherwise strings, arrays and objects are checked by their own rules, recursively.
    """
    where: list[str | int] = path or []
    if value is None and schema.get("nullable"):
        return []
    mismatch = _type_error(schema, value, where) or _enum_error(schema, value, where)
    if mismatch is not None:
        return [mismatch]
    errors: list[FieldError] = []
    if isinstance(value, str):
        errors.extend(_string_errors(schema, value, where))
    if isinstance(value, list):
        errors.extend(_array_errors(schema, value, where))
    if isinstance(value, dict):
        errors.extend(_object_errors(schema, value, where))
    return errors


def _field_error(
    code: str, where: list[str | int], expected: str, received: str, message: str
) -> FieldError:
    return FieldError(code=code, path=where, expected=expected, received=received, message=message)


def _type_error(
    schema: Mapping[str, Any], value: object, where: list[str | int]
) -> FieldError | None:
    """``invalid_type`` when ``value`` is not of the schema's ``type``."""
    expected = schema.get("type")
    if not isinstance(expected, str) or _type_ok(expected, value):
        return None
    shown = _expected_type(expected)
    received = _type_name(value)
    if expected == "integer" and received == "number":
        message = "Expected integer, received float"
        return _field_error("invalid_type", where, "integer", "float", message)
    message = f"Expected {shown}, received {received}"
    return _field_error("invalid_type", where, shown, received, message)


def _enum_error(
    schema: Mapping[str, Any], value: object, where: list[str | int]
) -> FieldError | None:
    """``invalid_enum_value`` when the schema has an ``enum`` without ``value``."""
    enum = schema.get("enum")
    if not isinstance(enum, list) or _in_enum(value, enum):
        return None
    expected_text = " | ".join(_literal(e) for e in enum)
    received_text = _literal(value)
    message = f"Invalid enum value. Expected {expected_text}, received {received_text}"
    return _field_error("invalid_enum_value", where, expected_text, received_text, message)


def _string_errors(
    schema: Mapping[str, Any], value: str, where: list[str | int]
) -> list[FieldError]:
    """``minLength`` and ``format: uri``."""
    errors: list[FieldError] = []
    min_length = schema.get("minLength")
    if isinstance(min_length, int) and len(value) < min_length:
        unit = "character" if min_length == 1 else "characters"
        errors.append(
            _field_error(
                "too_small",
                where,
                f"string with at least {min_length} {unit}",
                f"string with {len(value)} characters",
                f"String must contain at least {min_length} {unit}",
            )
        )
    if schema.get("format") == "uri" and not _uri_ok(value):
        shown = value if len(value) <= 60 else value[:57] + "..."
        errors.append(_field_error("invalid_string", where, "uri", _literal(shown), "Invalid url"))
    return errors


def _array_errors(
    schema: Mapping[str, Any], value: list[Any], where: list[str | int]
) -> list[FieldError]:
    """``maxItems``, then each item against ``items``."""
    errors: list[FieldError] = []
    max_items = schema.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        errors.append(
            _field_error(
                "too_big",
                where,
                f"array with at most {max_items} element(s)",
                f"array with {len(value)} element(s)",
                f"Array must contain at most {max_items} element(s)",
            )
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            errors.extend(validate_value(items, item, [*where, index]))
    return errors


def _object_errors(
    schema: Mapping[str, Any], value: dict[Any, Any], where: list[str | int]
) -> list[FieldError]:
    """Missing ``required`` properties, then each present property against its schema."""
    properties = schema.get("properties")
    props: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
    required = schema.get("required")
    errors = [
        _missing(props.get(name, {}), [*where, name])
        for name in (required if isinstance(required, list) else [])
        if name not in value
    ]
    for name, sub in props.items():
        if name in value and isinstance(sub, Mapping):
            errors.extend(validate_value(sub, value[name], [*where, name]))
    return errors


def _missing(sub: object, where: list[str | int]) -> FieldError:
    """A required property that is absent: ``Required``, expecting its type or enum."""
    kind = sub.get("type", "value") if isinstance(sub, Mapping) else "value"
    if isinstance(sub, Mapping) and isinstance(sub.get("enum"), list):
        shown = " | ".join(_literal(e) for e in sub["enum"])
    else:
        shown = _expected_type(str(kind))
    return _field_error("invalid_type", where, shown, "undefined", "Required")


def _request_schema(operation: Mapping[str, Any]) -> Mapping[str, Any] | None:
    try:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
    except (KeyError, TypeError):
        return None
    return schema if isinstance(schema, Mapping) else None


def _default_duration(schema: Mapping[str, Any]) -> int | None:
    duration = schema.get("properties", {}).get("duration", {})
    if not isinstance(duration, Mapping):
        return None
    default = duration.get("default")
    try:
        return int(default) if default is not None else None
    except (TypeError, ValueError):
        return None


class SchemaRegistry:
    """The provider's request schemas, indexed by path and model name."""

    def __init__(self, documents: Mapping[str, Mapping[str, Any]]) -> None:
        """Index already-loaded OpenAPI documents (``{file name: document}``)."""
        self._by_path: dict[str, dict[str, ModelSpec]] = {VENDOR_PATH: {}, UNIVERSAL_PATH: {}}
        image_to_video: ModelSpec | None = None
        for source in sorted(documents):
            document = documents[source]
            for path, operations in document.get("paths", {}).items():
                operation = operations.get("post") if isinstance(operations, Mapping) else None
                if not isinstance(operation, Mapping):
                    continue
                schema = _request_schema(operation)
                if schema is None:
                    continue
                models = schema.get("properties", {}).get("model", {}).get("enum", [])
                for model in models:
                    spec = ModelSpec(model, schema, source, _default_duration(schema))
                    self._by_path.setdefault(path, {})[model] = spec
                    if model == "veo2/image-to-video":
                        image_to_video = spec
        if image_to_video is not None:
            # The vendor path of the Veo2 guide also takes the Veo2 image-to-video model.
            self._by_path[VENDOR_PATH].setdefault(image_to_video.model, image_to_video)

    @classmethod
    def from_directory(cls, directory: Path | None = None) -> SchemaRegistry:
        """Load every ``*.json`` in ``directory`` (default: the packaged schemas)."""
        documents: dict[str, Mapping[str, Any]] = {}
        if directory is None:
            root = resources.files(__package__ or "veo_async.emulator") / "schemas"
            for entry in root.iterdir():
                if entry.name.endswith(".json"):
                    documents[entry.name] = json.loads(entry.read_text(encoding="utf-8"))
        else:
            for file in directory.glob("*.json"):
                documents[file.name] = json.loads(file.read_text(encoding="utf-8"))
        return cls(documents)

    @property
    def paths(self) -> tuple[str, ...]:
        """The create paths that have schemas."""
        return tuple(self._by_path)

    def models(self, path: str) -> Mapping[str, ModelSpec]:
        """The models accepted on ``path`` (empty for an unknown path)."""
        return self._by_path.get(path, {})

    def spec(self, path: str, model: str) -> ModelSpec | None:
        """The schema of ``model`` on ``path``, if it is accepted there."""
        return self._by_path.get(path, {}).get(model)

    def validate(self, path: str, body: object) -> tuple[ModelSpec | None, list[FieldError]]:
        """Validate a create body; return the matched model spec and the errors."""
        if not isinstance(body, dict):
            received = _type_name(body)
            message = f"Expected object, received {received}"
            return None, [_field_error("invalid_type", [], "object", received, message)]
        models = self.models(path)
        model = body.get("model")
        spec = models.get(model) if isinstance(model, str) else None
        if spec is not None:
            return spec, validate_value(spec.schema, body)
        names: Sequence[str] = sorted(models)
        expected = " | ".join(_literal(name) for name in names)
        if "model" not in body:
            return None, [
                _field_error("invalid_type", ["model"], expected, "undefined", "Required")
            ]
        received = _literal(model)
        message = f"Invalid discriminator value. Expected {expected}, received {received}"
        return None, [
            _field_error("invalid_union_discriminator", ["model"], expected, received, message)
        ]
