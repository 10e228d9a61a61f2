"""The model card: the contract between ``training/`` (which writes it) and the engine (which reads it).

A card is ``model.json`` in a model folder. It says how to build the network
(architecture and arguments), how it was trained, how it scored on held-out data and
where it beat its baseline (``min_scale``, ``single_scan``, ``multi_scan``,
``min_factor``), plus the SHA-256 of the weight file it describes. The JSON Schema
of this file is :func:`json_schema` (committed as ``model_card.schema.json``).
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Optional

from ..errors import InputError

KINDS = ("hr", "implicit", "lr")


@dataclass(frozen=True)
class ModelCard:
    """What a shipped model is, how it was made and where it may run."""

    name: str
    architecture: str  # a network declared in isovox.nets
    arguments: dict[str, Any]  # keyword arguments of the architecture
    kind: Optional[str] = None  # "hr" (HR-space), "implicit" (any output grid) or "lr" (LR-space)
    guided: bool = False  # takes a registered HR reference of another contrast as an extra channel
    parameters: int = 0
    inputs: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data, steps, schedule, wall time, hardware...
    validation_gain_db: dict[str, float] = field(default_factory=dict)  # held-out gain per setting
    validation_baseline: str = ""
    min_scale: float = 0.0  # smallest through-plane scale k from which every validated k gained
    single_scan: Optional[bool] = None  # whether the single-scan setting gained (None: not measured)
    multi_scan: Optional[bool] = None  # whether 2-3 scan settings gained (None: not measured)
    min_factor: Optional[int] = None  # LR-space: smallest upsampling factor that gained
    weights_sha256: Optional[str] = None  # of weights.safetensors beside the card
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific records (e.g. a stage table)

    def __post_init__(self) -> None:
        problems = _type_problems(self)
        if self.kind is not None and self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}")
        if problems:
            raise InputError(f"model card {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelCard":
        """A card from its JSON form; unknown or mistyped fields are refused with the field's name."""
        if not isinstance(values, dict):
            raise InputError("a model card must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        missing = sorted(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
                         and f.name not in values)
        if unknown or missing:
            name = values.get("name", "?")
            parts = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing field(s) {', '.join(missing)}"] if missing else [])
            raise InputError(f"model card {name!r}: " + "; ".join(parts))
        return cls(**values)

    @classmethod
    def read(cls, path) -> "ModelCard":
        try:
            values = json.loads(open(path, encoding="utf-8").read())
        except (OSError, ValueError) as exc:
            raise InputError(f"model card {path}: cannot be read ({exc})") from None
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def outside_validated_range(self, k: Optional[float], n_scans: int) -> str:
        """Why a run with scale ``k`` and ``n_scans`` scans gets the baseline instead ("" when the network runs).

        Runs outside where the model beat CubeAvg / the B-spline on held-out data get that
        baseline, so a learned method never does worse than it on the settings it was validated on.
        """
        if n_scans == 1 and self.single_scan is False:
            return "single scan: the model did not beat the B-spline on held-out data; B-spline used"
        if n_scans > 1 and self.multi_scan is False:
            return f"{n_scans} scans: the model did not beat CubeAvg on held-out data; CubeAvg used"
        if k is not None and k < float(self.min_scale) - 1e-6:
            return f"x{k:.2f} is below x{self.min_scale:g}, where the model beat CubeAvg on held-out data; CubeAvg used"
        return ""


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _annotation(name: str) -> Any:
    return typing.get_type_hints(ModelCard)[name]


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is dict:
        _, item = typing.get_args(annotation)
        return isinstance(value, dict) and all(isinstance(k, str) for k in value) and (
            item is Any or all(_matches(v, item) for v in value.values()))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return annotation is Any or isinstance(value, annotation)


def _type_problems(card: ModelCard) -> list[str]:
    return [f"{f.name} has the wrong type ({type(getattr(card, f.name)).__name__})"
            for f in fields(card) if not _matches(getattr(card, f.name), _annotation(f.name))]


def _schema_of(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        types = [_schema_of(a) for a in typing.get_args(annotation)]
        return {"anyOf": types}
    if annotation is type(None):
        return {"type": "null"}
    if origin is dict:
        _, item = typing.get_args(annotation)
        return {"type": "object"} if item is Any else {"type": "object", "additionalProperties": _schema_of(item)}
    return {"type": _JSON_TYPES[annotation]}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``model.json``, derived from :class:`ModelCard`."""
    properties = {f.name: _schema_of(_annotation(f.name)) for f in fields(ModelCard)}
    properties["kind"] = {"anyOf": [{"enum": list(KINDS)}, {"type": "null"}]}
    required = [f.name for f in fields(ModelCard) if f.default is MISSING and f.default_factory is MISSING]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "isovox model card (model.json)",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
