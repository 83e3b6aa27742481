"""The model catalog: which models exist, what kind each is, and how to validate an input.

Interface used by the rest of taskhook (keep it stable):

- ``Problem(path, message)``: one validation problem; ``path`` like ``input.duration``.
- ``get(name) -> ModelSpec | None``; ``all_models() -> list[ModelSpec]``.
- ``validate(model, input) -> list[Problem]``: every problem at once; an unknown model gives
  one problem at path ``model`` with a "did you mean" suggestion. Never raises for any JSON
  input.
- ``price(model, input) -> float``: the dry-run price in USD.
- ``describe(spec) -> dict``: a JSON-ready description for ``GET /v1/models``.

This is the minimal catalog of the spine; the catalog issue fills in every model's parameters.
"""

from __future__ import annotations

import difflib
from typing import Any

import msgspec


class Problem(msgspec.Struct, frozen=True):
    path: str
    message: str


class ModelSpec(msgspec.Struct, frozen=True):
    name: str
    kind: str  # video | image | audio | text
    description: str = ""
    required: tuple[str, ...] = ()


_MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("google/veo-3.1-fast", "video", "Google Veo 3.1 Fast", ("prompt",)),
        ModelSpec("google/nano-banana", "image", "Nano Banana", ("prompt", "aspect_ratio")),
        ModelSpec("google/nano-banana-pro", "image", "Nano Banana Pro", ("prompt", "aspect_ratio")),
        ModelSpec("kuaishou/kling-2.6-video", "video", "Kling v2.6 Video",
                  ("prompt", "start_frame_url")),
        ModelSpec("elevenlabs/text-to-speech", "audio", "ElevenLabs Text-to-Speech"),
        ModelSpec("suno-ai/music", "audio", "Suno Music Generation", ("mv", "custom")),
        ModelSpec("suno-ai/lyrics", "text", "Generate Lyrics", ("prompt", "mv")),
    )
}

FLAT_PRICE = 0.05


def get(name: str) -> ModelSpec | None:
    return _MODELS.get(name)


def all_models() -> list[ModelSpec]:
    return sorted(_MODELS.values(), key=lambda m: m.name)


def suggest(name: str) -> list[str]:
    return difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)


def validate(model: str, input: Any) -> list[Problem]:
    spec = _MODELS.get(model)
    if spec is None:
        hint = suggest(model)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        return [Problem("model", f"unknown model {model!r}{extra}")]
    if not isinstance(input, dict):
        return [Problem("input", "must be an object")]
    return [Problem(f"input.{key}", "is required") for key in spec.required if key not in input]


def price(model: str, input: Any) -> float:
    return FLAT_PRICE


def describe(spec: ModelSpec) -> dict[str, Any]:
    return {"name": spec.name, "kind": spec.kind, "description": spec.description,
            "required": list(spec.required)}
