"""The model catalog: which models exist, what kind each is, and how to validate an input.

Interface used by the rest of taskhook (keep it stable):

- ``Problem(path, message)``: one validation problem; ``path`` like ``input.duration`` or
  ``input.multi_shots[2].duration``.
- ``ModelSpec``: ``.name``, ``.kind`` (``video | image | audio | text``), ``.description``,
  plus ``.family``, ``.params``, ``.rules``, ``.required``, ``.open_input``, ``.prices``.
- ``get(name) -> ModelSpec | None``; ``all_models() -> list[ModelSpec]``;
  ``models_of_kind(kind) -> list[ModelSpec]``; ``suggest(name) -> list[str]``.
- ``validate(model, input) -> list[Problem]``: every problem at once; an unknown model gives
  one problem at path ``model`` with a "did you mean" suggestion. Never raises for any
  JSON-like input.
- ``price(model, input) -> float``: the dry-run price in USD.
- ``describe(spec) -> dict``: a JSON-ready description for ``GET /v1/models`` and
  ``taskhook models MODEL``.

Everything here comes from the provider reference (``shared/reference/unified-tasks-api.txt``).
Models are declared as data: one ``Family`` per parameter table of the reference, listing the
models that share it. Where models of a family differ, a ``Param`` or ``Rule`` carries
``only=(model, ...)``; a parameter declared only for other models of the family is refused
with "is not available on ...". Cross-field rules are small named functions wrapped in
``Rule(text, check)``; ``text`` is what ``describe`` shows. Adding a model is one ``Variant``
line in its family, or one new ``Family``.

Policy decisions (where the reference is silent or ambiguous):

- Kinds follow the reference's sections, except that ``suno-ai/lyrics`` and
  ``elevenlabs/speech-to-text`` are listed under Audio but produce text: their kind is ``text``.
- A constraint is enforced when the reference states it as one ("only", "requires",
  "must", "max", "cannot", "mutually exclusive", "not available", "rejected"). Parenthetical
  mode hints such as "(start_end_frame mode)" or Suno's "Custom mode:" are descriptive and
  not enforced.
- ``null`` for an optional parameter means "not set"; for a required one it is "is required".
  A required string must not be empty. Booleans are never integers or numbers.
- Models the reference lists without a parameter table (``_NO_TABLE`` below) declare no
  parameters and accept any keys (``open_input``); the input must still be an object.
- Veo: a reference with ``duration`` omitted is refused, because the documented default (4)
  is not 8. Gemini Omni Edit's "7 total references" counts the source video, the image URLs
  and every character image URL (the Flash model says expanded character images count).
- Prices: the reference's per-image prices (Qwen, Wan, Z-Image, Grok pro). Where it gives
  only a text-to-image price (Qwen Max/Plus/base) an edit falls back to ``FLAT_PRICE``.
  Z-Image's base price is not legible in the reference; it is half the prompt-rewriting price
  (0.021), as prompt rewriting "doubles cost".
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import msgspec

KINDS = ("video", "image", "audio", "text")

FLAT_PRICE = 0.05
"""Placeholder price in USD for models whose price the reference does not give."""


class Problem(msgspec.Struct, frozen=True):
    path: str
    message: str


# --------------------------------------------------------------------------- declarations

STR, INT, NUM, BOOL = "string", "integer", "number", "boolean"
STRS, OBJS, OBJ, ANY = "string[]", "object[]", "object", "any"

Check = Callable[[dict[str, Any], str], list[Problem]]


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: ``text`` in words, ``check(obj, path)`` returns its problems."""

    text: str
    check: Check
    only: tuple[str, ...] | None = None  # the models of the family it applies to


@dataclass(frozen=True)
class Schema:
    """The parameters and rules of an object (a model's input, or an item of a list)."""

    params: tuple[Param, ...] = ()
    rules: tuple[Rule, ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()  # (key, why it is refused)
    open: bool = False  # accept keys that are not declared
    hint: str = ""  # appended to "must be an object"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    description: str = ""
    required: bool = False
    required_if: str | None = None  # a conditional requirement in words (a Rule enforces it)
    default: Any = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    schema: Schema | None = None  # fields of an object, or of each item of an object list
    only: tuple[str, ...] | None = None  # the models of the family that accept it


def _always(_input: dict[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Price:
    """A per-image price in USD, used when ``applies(input)``; the first that applies wins."""

    usd: float
    when: str
    applies: Callable[[dict[str, Any]], bool] = _always


@dataclass(frozen=True)
class Variant:
    """One model of a family."""

    name: str
    description: str
    kind: str | None = None  # overrides the family's kind
    prices: tuple[Price, ...] = ()


@dataclass(frozen=True)
class Family:
    """The models that share one parameter table of the reference."""

    title: str
    kind: str
    models: tuple[Variant, ...]
    params: tuple[Param, ...] = ()
    rules: tuple[Rule, ...] = ()
    unsupported: tuple[tuple[str, str], ...] = ()
    open: bool = False
    note: str = ""


class ModelSpec(msgspec.Struct, frozen=True):
    name: str
    kind: str  # video | image | audio | text
    description: str = ""
    family: str = ""
    schema: Schema = msgspec.field(default_factory=Schema)
    prices: tuple[Price, ...] = ()
    note: str = ""

    @property
    def params(self) -> tuple[Param, ...]:
        return self.schema.params

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.schema.rules

    @property
    def required(self) -> tuple[str, ...]:
        """The parameters that are always required (conditional ones are rules)."""
        return tuple(p.name for p in self.schema.params if p.required)

    @property
    def open_input(self) -> bool:
        return self.schema.open


# --------------------------------------------------------------------------- value checks


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value)


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    STR: lambda v: isinstance(v, str),
    INT: _is_int,
    NUM: _is_number,
    BOOL: lambda v: isinstance(v, bool),
    STRS: lambda v: isinstance(v, list),
    OBJS: lambda v: isinstance(v, list),
    OBJ: lambda v: isinstance(v, dict),
    ANY: lambda v: True,
}

_TYPE_WORDS = {
    STR: "a string",
    INT: "an integer",
    NUM: "a finite number",
    BOOL: "a boolean (true or false)",
    STRS: "a list of strings",
    OBJS: "a list of objects",
    OBJ: "an object",
}


def _type_message(type_: str, value: Any) -> str | None:
    if _TYPE_TESTS[type_](value):
        return None
    if isinstance(value, bool) and type_ in (INT, NUM):
        return f"must be {_TYPE_WORDS[type_]} (booleans are not numbers)"
    return f"must be {_TYPE_WORDS[type_]}"


def _words(values: Iterable[Any]) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


def _range_messages(p: Param, value: Any) -> list[str]:
    if not _is_number(value):
        return []
    if p.minimum is not None and p.maximum is not None and not p.minimum <= value <= p.maximum:
        return [f"must be between {p.minimum:g} and {p.maximum:g}"]
    if p.minimum is not None and value < p.minimum:
        return [f"must be at least {p.minimum:g}"]
    if p.maximum is not None and value > p.maximum:
        return [f"must be at most {p.maximum:g}"]
    return []


def _length_messages(p: Param, value: Any) -> list[str]:
    if not isinstance(value, str):
        return []
    if p.required and not value:
        return ["must not be empty"]
    if p.max_length is not None and len(value) > p.max_length:
        return [f"must be at most {p.max_length} characters (got {len(value)})"]
    return []


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _size_messages(p: Param, value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    if p.min_items is not None and p.min_items == p.max_items and len(value) != p.min_items:
        return [f"must contain exactly {_items(p.min_items)} (got {len(value)})"]
    if p.min_items is not None and len(value) < p.min_items:
        return [f"must contain at least {_items(p.min_items)} (got {len(value)})"]
    if p.max_items is not None and len(value) > p.max_items:
        return [f"must contain at most {_items(p.max_items)} (got {len(value)})"]
    return []


def _choice_messages(p: Param, value: Any) -> list[str]:
    if p.choices is None or value in p.choices:
        return []
    return [f"must be one of {_words(p.choices)}"]


def _item_problems(p: Param, value: Any, at: str) -> list[Problem]:
    if p.type == STRS:
        return [
            Problem(f"{at}[{i}]", "must be a string")
            for i, item in enumerate(value)
            if not isinstance(item, str)
        ]
    if p.type == OBJS:
        schema = p.schema or Schema(open=True)
        return [
            pb for i, item in enumerate(value) for pb in _check_object(item, schema, f"{at}[{i}]")
        ]
    if p.type == OBJ:
        return _check_object(value, p.schema or Schema(open=True), at)
    return []


def _check_value(p: Param, value: Any, at: str) -> list[Problem]:
    wrong_type = _type_message(p.type, value)
    if wrong_type:
        return [Problem(at, wrong_type)]
    messages = [
        *_choice_messages(p, value),
        *_range_messages(p, value),
        *_length_messages(p, value),
        *_size_messages(p, value),
    ]
    return [Problem(at, m) for m in messages] + _item_problems(p, value, at)


def _check_param(p: Param, obj: dict[str, Any], at: str) -> list[Problem]:
    value = obj.get(p.name)
    if value is None:
        return [Problem(f"{at}.{p.name}", "is required")] if p.required else []
    return _check_value(p, value, f"{at}.{p.name}")


def _unknown_message(key: Any, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    return "unknown parameter" + (f"; did you mean {hint[0]!r}?" if hint else "")


def _unknown_keys(obj: dict[Any, Any], schema: Schema, at: str) -> list[Problem]:
    known = {p.name for p in schema.params}
    refused = dict(schema.unsupported)
    problems = []
    for key in obj:
        if key in known:
            continue
        if key in refused:
            problems.append(Problem(f"{at}.{key}", refused[key]))
        elif not schema.open:
            problems.append(Problem(f"{at}.{key}", _unknown_message(key, known)))
    return problems


def _check_object(obj: Any, schema: Schema, at: str) -> list[Problem]:
    if not isinstance(obj, dict):
        return [Problem(at, "must be an object" + schema.hint)]
    problems = _unknown_keys(obj, schema, at)
    for p in schema.params:
        problems += _check_param(p, obj, at)
    for rule in schema.rules:
        problems += rule.check(obj, at)
    return problems


# --------------------------------------------------------------------------- rule helpers


def _has(obj: dict[str, Any], key: str) -> bool:
    """Whether ``key`` is set to something other than null, "", [] or {}."""
    value = obj.get(key)
    return not (value is None or value == "" or value == [] or value == {})


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, list) else []


def _int(obj: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """The integer at ``key``, ``default`` when unset, None when it is not an integer."""
    value = obj.get(key)
    if value is None:
        return default
    return value if _is_int(value) else None


def _first_set(obj: dict[str, Any], keys: Iterable[str]) -> str | None:
    return next((k for k in keys if _has(obj, k)), None)


def _exclusive(first: tuple[str, ...], second: tuple[str, ...], text: str) -> Rule:
    """Fields of ``first`` and of ``second`` cannot be combined (reported on ``second``)."""

    def check(obj: dict[str, Any], at: str) -> list[Problem]:
        a, b = _first_set(obj, first), _first_set(obj, second)
        if a is None or b is None:
            return []
        return [Problem(f"{at}.{b}", f"cannot be combined with {a}")]

    return Rule(text, check)


def _requires(field: str, needs: tuple[str, ...], text: str, message: str) -> Rule:
    """When ``field`` is set, at least one of ``needs`` must be set."""

    def check(obj: dict[str, Any], at: str) -> list[Problem]:
        if _has(obj, field) and _first_set(obj, needs) is None:
            return [Problem(f"{at}.{field}", message)]
        return []

    return Rule(text, check)


def _one_required(field: str, others: tuple[str, ...], text: str, message: str) -> Rule:
    """At least one of ``field`` and ``others`` must be set (reported on ``field``)."""

    def check(obj: dict[str, Any], at: str) -> list[Problem]:
        if _first_set(obj, (field, *others)) is None:
            return [Problem(f"{at}.{field}", message)]
        return []

    return Rule(text, check)


def _exactly_one_of(fields: tuple[str, ...]) -> Rule:
    """Exactly one of ``fields`` is set (reported on the object itself)."""
    names = " or ".join(fields)

    def check(obj: dict[str, Any], at: str) -> list[Problem]:
        count = sum(1 for f in fields if _has(obj, f))
        return [] if count == 1 else [Problem(at, f"must have exactly one of {names}")]

    return Rule(f"each item has exactly one of {names}", check)


def _image_urls_expanded(obj: dict[str, Any]) -> int:
    """Image URLs in reference_image_urls plus every character's image_urls."""
    count = sum(1 for url in _list(obj, "reference_image_urls") if isinstance(url, str))
    for character in _list(obj, "reference_characters"):
        count += sum(1 for url in _list(character, "image_urls") if isinstance(url, str))
    return count


def _max_references(limit: int, *, with_video: bool = False) -> Rule:
    """At most ``limit`` expanded references (optionally counting reference_video_urls)."""
    what = "image URLs in total across reference_image_urls and character image_urls"
    if with_video:
        what = "references in total (source video, reference_image_urls, character image_urls)"

    def check(obj: dict[str, Any], at: str) -> list[Problem]:
        videos = len(_list(obj, "reference_video_urls")) if with_video else 0
        total = videos + _image_urls_expanded(obj)
        if total <= limit:
            return []
        field = (
            "reference_characters"
            if _list(obj, "reference_characters")
            else ("reference_image_urls")
        )
        return [Problem(f"{at}.{field}", f"at most {limit} {what} (got {total})")]

    return Rule(f"at most {limit} {what}", check)


# --------------------------------------------------------------------------- named rules

_FRAME = ("start_image_url", "end_image_url")
_REFERENCES = ("reference_image_urls", "reference_characters")


def _veo_duration_with_references(obj: dict[str, Any], at: str) -> list[Problem]:
    duration = _int(obj, "duration", 4)
    if _first_set(obj, _REFERENCES) is None or duration in (None, 8):
        return []
    why = " (the default is 4)" if obj.get("duration") is None else ""
    return [Problem(f"{at}.duration", f"must be 8 when a reference image or character is set{why}")]


def _end_frame_not_before_start(obj: dict[str, Any], at: str) -> list[Problem]:
    start, end = _int(obj, "start_frame", 0), _int(obj, "end_frame")
    if start is None or end is None or end >= start:
        return []
    return [Problem(f"{at}.end_frame", f"must not be lower than start_frame ({start})")]


def _hailuo_1080p_duration(obj: dict[str, Any], at: str) -> list[Problem]:
    if obj.get("resolution") != "1080p" or _int(obj, "duration") in (None, 6):
        return []
    return [Problem(f"{at}.duration", "must be 6 when resolution is '1080p'")]


def _auto_aspect_only_start_end(obj: dict[str, Any], at: str) -> list[Problem]:
    mode = obj.get("video_mode") or "elements"
    if obj.get("aspect_ratio") != "auto" or mode == "start_end_frame":
        return []
    return [
        Problem(f"{at}.aspect_ratio", "'auto' is only allowed with video_mode 'start_end_frame'")
    ]


def _kling26_audio_needs_pro(obj: dict[str, Any], at: str) -> list[Problem]:
    if obj.get("native_audio") is True and obj.get("mode", "pro") == "std":
        return [Problem(f"{at}.native_audio", "requires mode 'pro'")]
    return []


def _kling26_end_frame_without_audio(obj: dict[str, Any], at: str) -> list[Problem]:
    if obj.get("native_audio") is True and _has(obj, "end_frame_url"):
        return [Problem(f"{at}.end_frame_url", "is not available with native_audio")]
    return []


def _kling26_voices_need_audio(obj: dict[str, Any], at: str) -> list[Problem]:
    if _has(obj, "voices") and obj.get("native_audio") is not True:
        return [Problem(f"{at}.voices", "requires native_audio to be true")]
    return []


def _grok_custom_mode(obj: dict[str, Any], at: str) -> list[Problem]:
    if _has(obj, "video_preset"):
        return []
    return [
        Problem(f"{at}.{field}", "is required in custom mode (when video_preset is not set)")
        for field in ("prompt", "extend_at", "extend_duration")
        if obj.get(field) is None or obj.get(field) == ""
    ]


def _wan27_thinking_t2i_only(obj: dict[str, Any], at: str) -> list[Problem]:
    if obj.get("thinking_mode") is True and _has(obj, "image_urls"):
        return [Problem(f"{at}.thinking_mode", "is text-to-image only; not with image_urls")]
    return []


def _text_to_image(inp: dict[str, Any]) -> bool:
    return not _has(inp, "image_urls")


def _prompt_extend_on(inp: dict[str, Any]) -> bool:
    return inp.get("prompt_extend") is True


def _pro_mode(inp: dict[str, Any]) -> bool:
    return inp.get("enable_pro") is True


# --------------------------------------------------------------------------- shared params


def _prompt(description: str = "Text prompt", **kw: Any) -> Param:
    return Param("prompt", STR, description, **({"required": True} | kw))


def _aspect(choices: tuple[str, ...], default: str | None = None, **kw: Any) -> Param:
    kw = {"description": "Aspect ratio"} | kw
    return Param("aspect_ratio", STR, default=default, choices=choices, **kw)


def _image_urls(description: str = "Reference image URLs", **kw: Any) -> Param:
    return Param("image_urls", STRS, description, **kw)


SEED = Param("seed", INT, "Reproducibility seed")
NEGATIVE_PROMPT = Param("negative_prompt", STR, "What to avoid", max_length=500)
KLING_MODE_PRO = Param(
    "mode", STR, "'std' (720p) or 'pro' (1080p)", default="pro", choices=("std", "pro")
)
KLING_MODE_STD = Param("mode", STR, "'std' or 'pro'", default="std", choices=("std", "pro"))
KLING_ASPECT = _aspect(("16:9", "9:16", "1:1"), "16:9")
KLING_5_OR_10 = Param("duration", INT, "Seconds", choices=(5, 10))
START_FRAME = Param("start_frame_url", STR, "First frame image URL")
END_FRAME = Param("end_frame_url", STR, "Last frame image URL")
ELEMENTS_SCHEMA = Schema(open=True)  # the reference gives no element schema
ELEMENTS = Param(
    "elements",
    OBJS,
    "Character/object elements (no schema in the reference)",
    schema=ELEMENTS_SCHEMA,
)
SOUND_EFFECTS = Param(
    "sound_effects",
    OBJ,
    "Audio: sound, music, asmr_mode. Omit to disable audio",
    schema=Schema((Param("sound", STR), Param("music", STR), Param("asmr_mode", BOOL))),
)
SHOT = Schema(
    (
        _prompt("Prompt of this shot"),
        Param("duration", INT, "Seconds of this shot", required=True, minimum=1, maximum=15),
    ),
    hint=' like {"prompt": string, "duration": int}',
)
MULTI_SHOTS = Param(
    "multi_shots",
    OBJS,
    "2-6 shots. Mutually exclusive with prompt",
    min_items=2,
    max_items=6,
    schema=SHOT,
)
PROMPT_OR_SHOTS = (
    _exclusive(("prompt",), ("multi_shots",), "prompt and multi_shots are mutually exclusive"),
    _one_required(
        "prompt",
        ("multi_shots",),
        "prompt is required unless multi_shots is set",
        "is required unless multi_shots is set",
    ),
)

_CHARACTER_FIELDS = (
    Param("image_urls", STRS, "Character image URLs", required=True, min_items=1),
    Param("name", STR, "Character name"),
    Param("description", STR, "Character description"),
)
_CHARACTER_REFUSED = (("image_url", "is not supported; use image_urls (a non-empty list of URLs)"),)
_CHARACTER_HINT = " with non-empty image_urls (plain strings are not supported)"
CHARACTER = Schema(_CHARACTER_FIELDS, unsupported=_CHARACTER_REFUSED, hint=_CHARACTER_HINT)
VOICED_CHARACTER = Schema(
    (
        *_CHARACTER_FIELDS,
        Param("voice", STR, "Voice preset ID for this character"),
        Param("custom_voice", ANY, "Custom voice (the reference gives no type)"),
    ),
    rules=(_exclusive(("voice",), ("custom_voice",), "voice and custom_voice are exclusive"),),
    unsupported=_CHARACTER_REFUSED,
    hint=_CHARACTER_HINT,
)
VOICE_ITEM = Schema(
    (Param("voice_id", INT, "Voice ID"), Param("voice_url", STR, "Voice sample URL")),
    rules=(_exactly_one_of(("voice_id", "voice_url")),),
    hint=' like {"voice_id": int} or {"voice_url": string}',
)

VOICE_NEEDS_REFERENCE = _requires(
    "voice",
    _REFERENCES,
    "voice requires at least one reference image or character",
    "requires at least one reference image or character",
)
START_NOT_WITH_REFERENCES = _exclusive(
    _FRAME,
    _REFERENCES,
    "frame mode (start_image_url, end_image_url) and reference mode "
    "(reference_image_urls, reference_characters) are mutually exclusive",
)

# --------------------------------------------------------------------------- the families

VEO_FAST, VEO_QUALITY = "google/veo-3.1-fast", "google/veo-3.1-quality"
VEO_LITE, VEO_LITE_RELAXED = "google/veo-3.1-lite", "google/veo-3.1-lite-relaxed"
HAILUO_20, HAILUO_23 = "hailuo/minimax-2.0", "hailuo/minimax-2.3"
HAILUO_23_FAST = "hailuo/minimax-2.3-fast"
FLUX_PRO, FLUX_FLEX, FLUX_MAX = (
    "black-forest-labs/flux.2-pro",
    "black-forest-labs/flux.2-flex",
    "black-forest-labs/flux.2-max",
)
WAN_26, WAN_25 = "alibaba/wan-2.6-image", "alibaba/wan-2.5-image"
FLUX_ASPECTS = ("auto", "1:1", "4:3", "16:9", "3:2", "2:3", "9:16", "3:4")
SEVEN_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "9:16", "16:9")
SUNO_MV = ("chirp-v3-5", "chirp-v4", "chirp-auk", "chirp-bluejay", "chirp-crow")

VEO = Family(
    "Google Veo 3.1 Generate",
    "video",
    (
        Variant(VEO_FAST, "Google Veo 3.1 Fast"),
        Variant(VEO_QUALITY, "Google Veo 3.1 Quality"),
        Variant(VEO_LITE, "Google Veo 3.1 Lite"),
        Variant(VEO_LITE_RELAXED, "Google Veo 3.1 Lite Relaxed"),
    ),
    (
        _prompt("Text prompt. Use @ImageN or @CharacterN to point at references"),
        _aspect(("16:9", "9:16"), "16:9"),
        Param(
            "duration", INT, "Seconds. Must be 8 with any reference", default=4, choices=(4, 6, 8)
        ),
        SEED,
        Param("start_image_url", STR, "First frame image URL"),
        Param("end_image_url", STR, "Final frame image URL. Requires start_image_url"),
        Param("reference_image_urls", STRS, "Image references for reference-to-video"),
        Param(
            "reference_characters",
            OBJS,
            "Character references",
            schema=CHARACTER,
            only=(VEO_FAST, VEO_LITE, VEO_LITE_RELAXED),
        ),
        Param("voice", STR, "Voice preset ID. Requires a reference"),
    ),
    (
        START_NOT_WITH_REFERENCES,
        _requires(
            "end_image_url",
            ("start_image_url",),
            "end_image_url requires start_image_url",
            "requires start_image_url",
        ),
        Rule(
            "duration must be 8 when a reference image or character is set",
            _veo_duration_with_references,
        ),
        _max_references(3),
        VOICE_NEEDS_REFERENCE,
    ),
)

VEO_EXTEND = Family(
    "Google Veo 3.1 Extend",
    "video",
    (Variant("google/veo-3.1-extend", "Google Veo 3.1 Extend"),),
    (
        _prompt("Text prompt for the extended content"),
        Param("task_id", STR, "Task ID of a completed generation", required=True),
        Param(
            "model",
            STR,
            "Veo model of the source",
            required=True,
            choices=("lite", "fast", "quality", "lite-relaxed"),
        ),
        Param("duration", INT, "Must be 8", default=8, choices=(8,)),
        SEED,
    ),
)

VEO_UPSCALE = Family(
    "Google Veo 3.1 Upscale",
    "video",
    (Variant("google/veo-3.1-upscale", "Google Veo 3.1 Upscale"),),
    (
        Param("task_id", STR, "Task ID of a completed generation", required=True),
        Param("resolution", STR, "Target resolution", required=True, choices=("1080p", "4k")),
    ),
)

GEMINI_FLASH = Family(
    "Google Gemini Omni Flash Video",
    "video",
    (Variant("google/gemini-omni-flash-video", "Google Gemini Omni Flash Video"),),
    (
        _prompt("Main video prompt. Use @ImageN or @CharacterN to point at references"),
        SEED,
        _aspect(("16:9", "9:16"), "16:9"),
        Param("duration", INT, "Seconds", default=4, choices=(4, 6, 8, 10)),
        Param("start_image_url", STR, "First frame image URL"),
        Param("reference_image_urls", STRS, "Image reference URLs"),
        Param("reference_characters", OBJS, "Character references", max_items=3, schema=CHARACTER),
        Param("voice", STR, "Voice preset ID. Requires a reference"),
    ),
    (
        _exclusive(
            ("start_image_url",),
            _REFERENCES,
            "start_image_url cannot be combined with reference_image_urls or reference_characters",
        ),
        _max_references(7),
        VOICE_NEEDS_REFERENCE,
    ),
    unsupported=(("end_image_url", "is not available yet (only start frame control)"),),
)

GEMINI_EDIT = Family(
    "Google Gemini Omni Flash Video Edit",
    "video",
    (Variant("google/gemini-omni-flash-video-edit", "Google Gemini Omni Flash Video Edit"),),
    (
        Param(
            "reference_video_urls",
            STRS,
            "The source video URL (exactly one)",
            required=True,
            min_items=1,
            max_items=1,
        ),
        _prompt("Edit instruction. Use @Video1, @ImageN, @CharacterN"),
        Param("reference_image_urls", STRS, "Image URLs used as edit references"),
        Param(
            "reference_characters",
            OBJS,
            "Character references (per-character voice)",
            max_items=3,
            schema=VOICED_CHARACTER,
        ),
        SEED,
        Param("start_frame", INT, "First source frame of the edit range", default=0, minimum=0),
        Param("end_frame", INT, "Last source frame of the edit range", minimum=0),
    ),
    (
        Rule("end_frame must not be lower than start_frame", _end_frame_not_before_start),
        _max_references(7, with_video=True),
    ),
    unsupported=(
        ("task_id", "is not accepted: provide the source video in reference_video_urls"),
        ("duration", "is not accepted: duration is locked to the input video length"),
    ),
)

HAILUO = Family(
    "Minimax Hailuo",
    "video",
    (
        Variant(HAILUO_20, "Minimax Hailuo 2.0"),
        Variant(HAILUO_23, "Minimax Hailuo 2.3"),
        Variant(HAILUO_23_FAST, "Minimax Hailuo 2.3 Fast"),
    ),
    (
        Param("prompt", STR, "Text prompt", required_if="no start_image_url", max_length=2000),
        Param(
            "start_image_url",
            STR,
            "First frame image URL",
            required_if="no prompt",
            only=(HAILUO_20, HAILUO_23),
        ),
        Param(
            "start_image_url", STR, "First frame image URL", required=True, only=(HAILUO_23_FAST,)
        ),
        Param("end_image_url", STR, "End frame image URL", only=(HAILUO_20,)),
        Param("duration", INT, "Seconds; 1080p only supports 6", choices=(6, 10)),
        Param("resolution", STR, "Resolution", default="768p", choices=("768p", "1080p")),
        Param("prompt_optimization", BOOL, "Let MiniMax optimize the prompt"),
    ),
    (
        replace(
            _one_required(
                "prompt",
                ("start_image_url",),
                "prompt or start_image_url is required",
                "is required unless start_image_url is set",
            ),
            only=(HAILUO_20, HAILUO_23),
        ),
        Rule("duration must be 6 when resolution is '1080p'", _hailuo_1080p_duration),
    ),
)

_OMNI_VIDEO_PARAMS = (
    Param(
        "video_mode",
        STR,
        "Generation mode",
        default="elements",
        choices=("elements", "start_end_frame", "transform", "video_reference"),
    ),
    KLING_MODE_PRO,
    _aspect(("16:9", "9:16", "1:1", "auto"), "16:9"),
    Param("keep_audio", BOOL, "Preserve audio from the source video", default=True),
    _image_urls("Reference image URLs (@Image1, @Image2 in the prompt)", max_items=7),
    Param("start_frame_url", STR, "First frame image URL (start_end_frame mode)"),
    Param("end_frame_url", STR, "Last frame image URL (start_end_frame mode)"),
    Param("video_url", STR, "Source video URL (transform/video_reference modes)"),
    ELEMENTS,
)
AUTO_ASPECT = Rule(
    "aspect_ratio 'auto' is only allowed with video_mode 'start_end_frame'",
    _auto_aspect_only_start_end,
)

KLING_OMNI_VIDEO = Family(
    "Kling v3.0 Omni Video",
    "video",
    (Variant("kuaishou/kling-3.0-omni-video", "Kling v3.0 Omni Video"),),
    (
        Param(
            "prompt",
            STR,
            "Text prompt. Mutually exclusive with multi_shots",
            required_if="no multi_shots",
        ),
        Param("duration", INT, "Seconds", default=5, minimum=3, maximum=15),
        Param("native_audio", BOOL, "Generate AI audio", default=False),
        MULTI_SHOTS,
        *_OMNI_VIDEO_PARAMS,
    ),
    (*PROMPT_OR_SHOTS, AUTO_ASPECT),
)

KLING_O1_VIDEO = Family(
    "Kling O1 Video",
    "video",
    (Variant("kuaishou/kling-o1-video", "Kling O1 Video"),),
    (
        _prompt(),
        Param("duration", INT, "Seconds", default=5, minimum=3, maximum=10),
        *_OMNI_VIDEO_PARAMS,
    ),
    (AUTO_ASPECT,),
    unsupported=(
        ("multi_shots", "is not supported on Kling O1"),
        ("native_audio", "is not supported on Kling O1"),
    ),
    note="The O1 table omits elements but its text says only multi_shots and native_audio "
    "are unsupported; elements is accepted.",
)

_OMNI_EDIT_PARAMS = (
    Param("video_url", STR, "Source video URL to edit", required=True),
    _prompt("Text prompt describing the edit"),
    Param("video_mode", STR, "Edit mode", default="reference", choices=("reference", "transform")),
    Param("keep_audio", BOOL, "Preserve original audio", default=False),
    KLING_MODE_STD,
    KLING_ASPECT,
    _image_urls("Reference image URLs (@Image1, @Image2 in the prompt)", max_items=4),
)

KLING_OMNI_EDIT = Family(
    "Kling v3.0 Omni Video Edit",
    "video",
    (Variant("kuaishou/kling-3.0-omni-video-edit", "Kling v3.0 Omni Video Edit"),),
    (
        *_OMNI_EDIT_PARAMS,
        Param("elements", OBJS, "Character/object elements", max_items=4, schema=ELEMENTS_SCHEMA),
    ),
)

KLING_O1_EDIT = Family(
    "Kling O1 Video Edit",
    "video",
    (Variant("kuaishou/kling-o1-video-edit", "Kling O1 Video Edit"),),
    _OMNI_EDIT_PARAMS,
    unsupported=(("elements", "is not supported on Kling O1 Video Edit"),),
)

KLING_30_VIDEO = Family(
    "Kling v3.0 Video",
    "video",
    (Variant("kuaishou/kling-3.0-video", "Kling v3.0 Video"),),
    (
        Param(
            "prompt",
            STR,
            "Text prompt. Mutually exclusive with multi_shots",
            required_if="no multi_shots",
        ),
        KLING_MODE_PRO,
        Param("duration", INT, "Seconds", default=5, minimum=3, maximum=15),
        KLING_ASPECT,
        Param("native_audio", BOOL, "Generate AI audio", default=True),
        Param("start_frame_url", STR, "First frame image URL", required=True),
        END_FRAME,
        ELEMENTS,
        MULTI_SHOTS,
    ),
    PROMPT_OR_SHOTS,
)

_TURBO_NO = "is not supported on Kling v3.0 Turbo"
KLING_30_TURBO = Family(
    "Kling v3.0 Turbo Video",
    "video",
    (Variant("kuaishou/kling-3.0-turbo-video", "Kling v3.0 Turbo Video"),),
    (
        _prompt(),
        KLING_MODE_PRO,
        Param("duration", INT, "Seconds", default=5, minimum=3, maximum=15),
        KLING_ASPECT,
        Param("start_frame_url", STR, "First frame image URL. Omit for text-to-video"),
    ),
    unsupported=(
        ("native_audio", _TURBO_NO),
        ("multi_shots", _TURBO_NO),
        ("end_frame_url", _TURBO_NO),
    ),
)

KLING_26_VIDEO = Family(
    "Kling v2.6 Video",
    "video",
    (Variant("kuaishou/kling-2.6-video", "Kling v2.6 Video"),),
    (
        _prompt(),
        KLING_MODE_PRO,
        KLING_5_OR_10,
        Param("native_audio", BOOL, "AI audio generation. Requires pro mode", default=False),
        Param("start_frame_url", STR, "First frame image URL", required=True),
        Param("end_frame_url", STR, "Last frame image URL (not with native_audio)"),
        Param(
            "voices",
            OBJS,
            "Voice references. Requires native_audio",
            max_items=5,
            schema=VOICE_ITEM,
        ),
    ),
    (
        Rule("native_audio requires mode 'pro'", _kling26_audio_needs_pro),
        Rule("end_frame_url is not available with native_audio", _kling26_end_frame_without_audio),
        Rule("voices require native_audio", _kling26_voices_need_audio),
    ),
)

KLING_25_TURBO = Family(
    "Kling v2.5 Turbo Video",
    "video",
    (Variant("kuaishou/kling-2.5-turbo-video", "Kling v2.5 Turbo Video"),),
    (
        _prompt(),
        KLING_MODE_PRO,
        KLING_5_OR_10,
        _aspect(("16:9", "9:16", "1:1"), "16:9", description="Ignored with start_frame_url"),
        START_FRAME,
        END_FRAME,
        SOUND_EFFECTS,
    ),
)

KLING_21_VIDEO = Family(
    "Kling v2.1 Video",
    "video",
    (Variant("kuaishou/kling-2.1-video", "Kling v2.1 Video"),),
    (
        _prompt(),
        Param("start_frame_url", STR, "First frame image URL", required=True),
        END_FRAME,
        KLING_5_OR_10,
        KLING_MODE_PRO,
        SOUND_EFFECTS,
    ),
)

KLING_21_MASTER = Family(
    "Kling v2.1 Master Video",
    "video",
    (Variant("kuaishou/kling-2.1-master-video", "Kling v2.1 Master Video"),),
    (_prompt(), KLING_5_OR_10, START_FRAME, SOUND_EFFECTS),
    unsupported=(
        ("end_frame_url", "is not supported: Kling v2.1 Master has no end frame"),
        ("mode", "is not accepted: Kling v2.1 Master is pro-only"),
    ),
)

_MOTION_PARAMS = (
    _prompt("Text prompt describing the motion"),
    Param("image_url", STR, "Character/subject image URL", required=True),
    Param("video_url", STR, "Motion reference video URL", required=True),
    KLING_MODE_STD,
    Param("keep_audio", BOOL, "Preserve audio from the motion video", default=True),
    Param(
        "character_orientation",
        STR,
        "Orientation source",
        default="video",
        choices=("video", "image"),
    ),
)

KLING_30_MOTION = Family(
    "Kling v3.0 Motion Control",
    "video",
    (Variant("kuaishou/kling-3.0-motion-control", "Kling v3.0 Motion Control"),),
    (*_MOTION_PARAMS, ELEMENTS),
)

KLING_26_MOTION = Family(
    "Kling v2.6 Motion Control",
    "video",
    (Variant("kuaishou/kling-2.6-motion-control", "Kling v2.6 Motion Control"),),
    _MOTION_PARAMS,
)

GROK_EXTEND = Family(
    "Grok Imagine Video Extend",
    "video",
    (Variant("xai/grok-imagine-video-extend", "Grok Imagine Video Extend"),),
    (
        Param("task_id", STR, "Task ID of a completed video generation", required=True),
        Param("video_preset", STR, "Enables preset mode", choices=("spicy", "normal")),
        Param(
            "prompt",
            STR,
            "Text prompt. Required in custom mode",
            required_if="custom mode (no video_preset)",
        ),
        Param(
            "extend_at",
            NUM,
            "Second to start from. Required in custom mode",
            required_if="custom mode (no video_preset)",
            minimum=0,
        ),
        Param(
            "extend_duration",
            INT,
            "Seconds. Required in custom mode",
            required_if="custom mode (no video_preset)",
            choices=(6, 10),
        ),
    ),
    (
        Rule(
            "custom mode (no video_preset) requires prompt, extend_at and extend_duration; "
            "preset mode ignores them",
            _grok_custom_mode,
        ),
    ),
)

GPT_IMAGE = Family(
    "GPT Image",
    "image",
    (Variant("openai/gpt-image-2", "GPT Image 2 (1K/2K/4K, multiple aspect ratios)"),),
    (
        _prompt("Text description"),
        _image_urls("Reference image URLs for image editing mode"),
        _aspect(("1:1", "3:2", "2:3", "16:9"), "1:1"),
        Param("resolution", STR, "Resolution", default="1K", choices=("1K", "2K", "4K")),
    ),
)

NANO_BANANA = Family(
    "Nano Banana",
    "image",
    (
        Variant("google/nano-banana", "Nano Banana"),
        Variant("google/nano-banana-pro", "Nano Banana Pro"),
    ),
    (
        _prompt("Text description"),
        _aspect(
            ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"), required=True
        ),
        _image_urls("Reference images"),
        Param(
            "resolution",
            STR,
            "Pro only",
            choices=("1k", "2k", "4k"),
            only=("google/nano-banana-pro",),
        ),
    ),
)

FLUX = Family(
    "Flux.2",
    "image",
    (
        Variant(FLUX_PRO, "Flux.2 Pro"),
        Variant(FLUX_FLEX, "Flux.2 Flex"),
        Variant(FLUX_MAX, "Flux.2 Max"),
    ),
    (
        _prompt("Text description"),
        _image_urls("Reference images (Pro/Max: 8)", max_items=8, only=(FLUX_PRO, FLUX_MAX)),
        _image_urls("Reference images (Flex: 10)", max_items=10, only=(FLUX_FLEX,)),
        _aspect(FLUX_ASPECTS, only=(FLUX_PRO, FLUX_FLEX)),
        _aspect((*FLUX_ASPECTS, "5:4", "21:9"), only=(FLUX_MAX,)),
        Param("quality", STR, "Quality", choices=("1K", "2K")),
        Param(
            "steps",
            INT,
            "Flex only (more = higher quality)",
            minimum=1,
            maximum=50,
            only=(FLUX_FLEX,),
        ),
        Param(
            "cfg",
            NUM,
            "Flex only (higher = follows the prompt more strictly)",
            minimum=1.5,
            maximum=10,
            only=(FLUX_FLEX,),
        ),
    ),
)

QWEN = Family(
    "Qwen Image",
    "image",
    (
        Variant(
            "alibaba/qwen-image-2.0-pro",
            "Qwen Image 2.0 Pro (T2I + editing)",
            prices=(Price(0.0525, "per image"),),
        ),
        Variant(
            "alibaba/qwen-image-2.0",
            "Qwen Image 2.0 (T2I + editing)",
            prices=(Price(0.0245, "per image"),),
        ),
        Variant(
            "alibaba/qwen-image-max",
            "Qwen Image Max (T2I + editing)",
            prices=(Price(0.0525, "per image, text-to-image", _text_to_image),),
        ),
        Variant(
            "alibaba/qwen-image-plus",
            "Qwen Image Plus (T2I + editing)",
            prices=(Price(0.021, "per image, text-to-image", _text_to_image),),
        ),
        Variant(
            "alibaba/qwen-image",
            "Qwen Image (T2I + editing)",
            prices=(Price(0.0315, "per image, text-to-image", _text_to_image),),
        ),
    ),
    (
        _prompt("Text prompt", max_length=800),
        _aspect(("1:1", "16:9", "9:16", "4:3", "3:4"), "1:1"),
        _image_urls("Omit for text-to-image; image URLs for editing"),
        NEGATIVE_PROMPT,
        Param("prompt_extend", BOOL, "Smart prompt rewriting", default=True),
        SEED,
    ),
)

Z_IMAGE = Family(
    "Z-Image Turbo",
    "image",
    (
        Variant(
            "alibaba/z-image-turbo",
            "Z-Image Turbo (T2I only)",
            prices=(
                Price(0.021, "per image with prompt_extend", _prompt_extend_on),
                Price(0.0105, "per image (half the prompt_extend price)"),
            ),
        ),
    ),
    (
        _prompt("Text prompt", max_length=800),
        _aspect(SEVEN_ASPECTS, "1:1"),
        Param("prompt_extend", BOOL, "Prompt rewriting (doubles cost)", default=False),
        SEED,
    ),
)

WAN_27 = Family(
    "Wan 2.7 Image",
    "image",
    (
        Variant(
            "alibaba/wan-2.7-pro-image",
            "Wan 2.7 Pro Image (T2I + editing, up to 4K)",
            prices=(Price(0.0525, "per image"),),
        ),
        Variant(
            "alibaba/wan-2.7-image",
            "Wan 2.7 Image (T2I + editing)",
            prices=(Price(0.021, "per image"),),
        ),
    ),
    (
        _prompt("Text prompt", max_length=5000),
        _aspect(("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"), "1:1"),
        _image_urls("Omit for text-to-image; up to 9 images for editing", max_items=9),
        Param("thinking_mode", BOOL, "Better quality, slower. Text-to-image only", default=True),
        SEED,
    ),
    (Rule("thinking_mode is text-to-image only (not with image_urls)", _wan27_thinking_t2i_only),),
)

WAN_26_25 = Family(
    "Wan 2.6 / 2.5 Image",
    "image",
    (
        Variant(WAN_26, "Wan 2.6 Image (T2I + editing)", prices=(Price(0.021, "per image"),)),
        Variant(WAN_25, "Wan 2.5 Image (T2I + editing)", prices=(Price(0.021, "per image"),)),
    ),
    (
        _prompt("Text prompt", max_length=2000),
        _aspect(SEVEN_ASPECTS, "1:1"),
        _image_urls("Omit for text-to-image; 1-4 images", min_items=1, max_items=4, only=(WAN_26,)),
        _image_urls("Omit for text-to-image; 1-3 images", min_items=1, max_items=3, only=(WAN_25,)),
        NEGATIVE_PROMPT,
        Param("prompt_extend", BOOL, "Smart prompt rewriting", default=True),
        SEED,
    ),
)

WAN_22 = Family(
    "Wan 2.2 Image",
    "image",
    (
        Variant(
            "alibaba/wan-2.2-image", "Wan 2.2 Image (T2I only)", prices=(Price(0.035, "per image"),)
        ),
        Variant(
            "alibaba/wan-2.2-flash-image",
            "Wan 2.2 Flash Image (T2I only)",
            prices=(Price(0.0175, "per image"),),
        ),
    ),
    (
        _prompt("Text prompt", max_length=500),
        _aspect(("1:1", "3:4", "4:3", "9:16", "16:9"), "1:1"),
        Param("negative_prompt", STR, "What to avoid"),
        SEED,
    ),
    unsupported=(("image_urls", "is not accepted: Wan 2.2 is text-to-image only"),),
)

GROK_IMAGE = Family(
    "Grok Imagine Image",
    "image",
    (
        Variant(
            "xai/grok-imagine-image",
            "Grok Imagine Image (T2I + editing)",
            prices=(Price(0.025, "per image in pro mode", _pro_mode),),
        ),
    ),
    (
        _prompt("Text description or edit instruction"),
        _aspect(("1:1", "2:3", "3:2", "9:16", "16:9"), "1:1"),
        _image_urls("1-5 reference image URLs (edit mode)", min_items=1, max_items=5),
        Param("enable_pro", BOOL, "Pro mode for higher quality"),
        Param("upsample_prompt", BOOL, "Let AI enhance the prompt"),
        Param("enable_nsfw", BOOL, "Enable NSFW content generation"),
    ),
)

SUNO_MUSIC = Family(
    "Suno Music",
    "audio",
    (Variant("suno-ai/music", "Suno Music Generation"),),
    (
        Param("mv", STR, "Model version", required=True, choices=SUNO_MV),
        Param("custom", BOOL, "false: simple mode, true: custom mode", required=True),
        Param("gpt_description_prompt", STR, "Simple mode: song description with lyrics"),
        Param("prompt", STR, "Custom mode: detailed lyrics/prompt"),
        Param("tags", STR, "Custom mode: genre/style tags"),
        Param("title", STR, "Song title"),
        Param("make_instrumental", BOOL, "Instrumental only"),
        Param("negative_tags", STR, "Custom mode: styles to avoid"),
        Param("persona_id", STR, "Custom voice ID from Suno voice creation"),
    ),
)

SUNO_OPS = Family(
    "Suno Audio Operations",
    "audio",
    (
        Variant("suno-ai/add-vocals", "Add Vocals to Track"),
        Variant("suno-ai/add-instrumental", "Add Instrumental"),
        Variant("suno-ai/extend", "Extend Audio"),
        Variant("suno-ai/cover", "Create Cover"),
    ),
    (
        Param("mv", STR, "Model version (the reference lists no values here)", required=True),
        Param("clip_id", STR, "Existing clip ID", required_if="no audio_url"),
        Param(
            "audio_url", STR, "Audio file URL (alternative to clip_id)", required_if="no clip_id"
        ),
        Param("custom", BOOL, "Simple or custom mode", required=True),
        Param("gpt_description_prompt", STR, "Simple mode description"),
        Param("prompt", STR, "Custom mode prompt"),
        Param("continue_at", NUM, "Extend: seconds to continue from", minimum=0),
        Param("start_s", NUM, "Start time of the overlay (seconds)", minimum=0),
        Param("end_s", NUM, "End time of the overlay (seconds)", minimum=0),
    ),
    (
        _one_required(
            "clip_id",
            ("audio_url",),
            "clip_id or audio_url is required",
            "is required unless audio_url is set",
        ),
    ),
)

SUNO_STEMS = Family(
    "Suno Stems",
    "audio",
    (
        Variant("suno-ai/stems", "Extract Stems"),
        Variant("suno-ai/stems-all", "Extract All Stems"),
    ),
    (
        Param("clip_id", STR, "Clip ID to extract stems from", required=True),
        Param("title", STR, "Title for the extraction"),
    ),
)

SUNO_LYRICS = Family(
    "Suno Lyrics",
    "text",
    (Variant("suno-ai/lyrics", "Generate Lyrics"),),
    (
        _prompt("Description of the lyrics to generate"),
        Param("mv", STR, "Lyrics model", required=True, choices=("remi-v1", "default")),
    ),
)

_NO_TABLE_NOTE = "The reference gives no parameter table: any keys are accepted."

# The reference lists these models without a parameter table: no parameters are declared and
# any keys are accepted (open), so that valid requests are never refused on a guess.
_NO_TABLE = (
    Family(
        "Topaz Video",
        "video",
        (Variant("topaz-labs/video-upscale", "Topaz Video Upscale"),),
        open=True,
        note=_NO_TABLE_NOTE,
    ),
    Family(
        "Topaz Image",
        "image",
        (
            Variant("topaz-labs/image-upscale", "Topaz Image Upscale"),
            Variant("topaz-labs/image-generative", "Topaz Image Generative"),
        ),
        open=True,
        note=_NO_TABLE_NOTE,
    ),
    Family(
        "Kling Image",
        "image",
        (
            Variant("kuaishou/kling-o1-image", "Kling O1 Image"),
            Variant("kuaishou/kling-3.0-omni-image", "Kling v3.0 Omni Image"),
            Variant("kuaishou/kling-3.0-image", "Kling v3.0 Image"),
            Variant("kuaishou/kling-2.1-image", "Kling v2.1 Image"),
        ),
        open=True,
        note=_NO_TABLE_NOTE,
    ),
    Family(
        "Suno WAV", "audio", (Variant("suno-ai/wav", "WAV Export"),), open=True, note=_NO_TABLE_NOTE
    ),
    Family(
        "ElevenLabs",
        "audio",
        (
            Variant("elevenlabs/text-to-speech", "ElevenLabs Text-to-Speech"),
            Variant("elevenlabs/text-to-dialogue", "ElevenLabs Multi-Voice Dialogue"),
            Variant("elevenlabs/sound-effect", "ElevenLabs Sound Effects"),
            Variant("elevenlabs/voice-isolation", "ElevenLabs Voice Isolation"),
            Variant("elevenlabs/speech-to-text", "ElevenLabs Speech-to-Text", kind="text"),
        ),
        open=True,
        note=_NO_TABLE_NOTE,
    ),
)

FAMILIES: tuple[Family, ...] = (
    VEO, VEO_EXTEND, VEO_UPSCALE, GEMINI_FLASH, GEMINI_EDIT, HAILUO,
    KLING_OMNI_VIDEO, KLING_O1_VIDEO, KLING_OMNI_EDIT, KLING_O1_EDIT, KLING_30_VIDEO,
    KLING_30_TURBO, KLING_26_VIDEO, KLING_25_TURBO, KLING_21_VIDEO, KLING_21_MASTER,
    KLING_30_MOTION, KLING_26_MOTION, GROK_EXTEND,
    GPT_IMAGE, NANO_BANANA, FLUX, QWEN, Z_IMAGE, WAN_27, WAN_26_25, WAN_22, GROK_IMAGE,
    SUNO_MUSIC, SUNO_OPS, SUNO_STEMS, SUNO_LYRICS,
    *_NO_TABLE,
)  # fmt: skip


# --------------------------------------------------------------------------- building


def _applies(only: tuple[str, ...] | None, model: str) -> bool:
    return only is None or model in only


def _elsewhere(family: Family, model: str, names: set[str]) -> tuple[tuple[str, str], ...]:
    """Parameters of the family that this model does not accept, with the reason."""
    refused: dict[str, str] = {}
    for p in family.params:
        if p.name not in names and p.only:
            refused.setdefault(p.name, f"is not available on {model} (only on {', '.join(p.only)})")
    return tuple(refused.items())


def _build(family: Family, variant: Variant) -> ModelSpec:
    params = tuple(p for p in family.params if _applies(p.only, variant.name))
    refused = _elsewhere(family, variant.name, {p.name for p in params})
    schema = Schema(
        params=params,
        rules=tuple(r for r in family.rules if _applies(r.only, variant.name)),
        unsupported=family.unsupported + refused,
        open=family.open,
    )
    return ModelSpec(
        variant.name,
        variant.kind or family.kind,
        variant.description,
        family=family.title,
        schema=schema,
        prices=variant.prices,
        note=family.note,
    )


_MODELS: dict[str, ModelSpec] = {
    variant.name: _build(family, variant) for family in FAMILIES for variant in family.models
}


# --------------------------------------------------------------------------- public API


def get(name: str) -> ModelSpec | None:
    return _MODELS.get(name) if isinstance(name, str) else None


def all_models() -> list[ModelSpec]:
    return sorted(_MODELS.values(), key=lambda m: m.name)


def models_of_kind(kind: str) -> list[ModelSpec]:
    return [m for m in all_models() if m.kind == kind]


def suggest(name: str) -> list[str]:
    if not isinstance(name, str):
        return []
    return difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)


def validate(model: str, input: Any) -> list[Problem]:
    """Every problem of ``input`` for ``model``; never raises for JSON-like values."""
    if not isinstance(model, str):
        return [Problem("model", "must be a string")]
    spec = _MODELS.get(model)
    if spec is None:
        hint = suggest(model)
        extra = f"; did you mean {hint[0]!r}?" if hint else ""
        return [Problem("model", f"unknown model {model!r}{extra}")]
    return _check_object(input, spec.schema, "input")


def price(model: str, input: Any) -> float:
    """The dry-run price in USD: the reference's per-image price, else ``FLAT_PRICE``."""
    spec = get(model)
    if spec is None:
        return FLAT_PRICE
    inp = input if isinstance(input, dict) else {}
    return next((p.usd for p in spec.prices if p.applies(inp)), FLAT_PRICE)


def _describe_schema(schema: Schema) -> dict[str, Any]:
    return {
        "parameters": [_describe_param(p) for p in schema.params],
        "rules": [r.text for r in schema.rules],
        "not_accepted": dict(schema.unsupported),
        "accepts_unknown_parameters": schema.open,
    }


def _describe_param(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "type": p.type,
        "required": p.required,
        "required_if": p.required_if,
        "default": p.default,
        "allowed": list(p.choices) if p.choices is not None else None,
        "minimum": p.minimum,
        "maximum": p.maximum,
        "max_length": p.max_length,
        "min_items": p.min_items,
        "max_items": p.max_items,
        "description": p.description,
    }
    if p.schema is not None:
        out["fields"] = _describe_schema(p.schema)
    return out


def _describe_pricing(spec: ModelSpec) -> dict[str, Any]:
    complete = any(p.applies is _always for p in spec.prices)
    return {
        "per_image": [{"usd": p.usd, "when": p.when} for p in spec.prices],
        "otherwise": None if complete else FLAT_PRICE,  # FLAT_PRICE is a placeholder
    }


def describe(spec: ModelSpec) -> dict[str, Any]:
    """A JSON-ready description of a model, its parameters and rules."""
    return {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "family": spec.family,
        **_describe_schema(spec.schema),
        "pricing": _describe_pricing(spec),
        "note": spec.note,
    }
