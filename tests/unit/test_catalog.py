"""Tests of the model catalog (service/catalog.py).

- every model of the provider reference is in the catalog, with its kind;
- every documented rule has an accepted and a refused input, and the refusal names the path;
- validate never raises for any JSON-like input (hypothesis), price and describe are sane.

Kinds: the reference has Video, Image and Audio sections. ``suno-ai/lyrics`` and
``elevenlabs/speech-to-text`` are listed under Audio but produce text, so their kind is
``text`` (see TEXT_PRODUCING).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service import catalog
from service.catalog import FLAT_PRICE, Param, Problem, Schema

REFERENCE = (
    Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "unified-tasks-api.txt"
)

TEXT_PRODUCING = {"suno-ai/lyrics", "elevenlabs/speech-to-text"}

# The model tables of the reference, checked in so the tests mean something without the file.
EXPECTED_MODELS: dict[str, str] = {
    "google/veo-3.1-fast": "video",
    "google/veo-3.1-quality": "video",
    "google/veo-3.1-lite": "video",
    "google/veo-3.1-lite-relaxed": "video",
    "google/veo-3.1-extend": "video",
    "google/veo-3.1-upscale": "video",
    "google/gemini-omni-flash-video": "video",
    "google/gemini-omni-flash-video-edit": "video",
    "hailuo/minimax-2.0": "video",
    "hailuo/minimax-2.3": "video",
    "hailuo/minimax-2.3-fast": "video",
    "kuaishou/kling-3.0-omni-video": "video",
    "kuaishou/kling-3.0-omni-video-edit": "video",
    "kuaishou/kling-o1-video": "video",
    "kuaishou/kling-o1-video-edit": "video",
    "kuaishou/kling-3.0-video": "video",
    "kuaishou/kling-3.0-turbo-video": "video",
    "kuaishou/kling-2.6-video": "video",
    "kuaishou/kling-2.5-turbo-video": "video",
    "kuaishou/kling-2.1-video": "video",
    "kuaishou/kling-2.1-master-video": "video",
    "kuaishou/kling-2.6-motion-control": "video",
    "kuaishou/kling-3.0-motion-control": "video",
    "xai/grok-imagine-video-extend": "video",
    "topaz-labs/video-upscale": "video",
    "google/nano-banana": "image",
    "google/nano-banana-pro": "image",
    "openai/gpt-image-2": "image",
    "black-forest-labs/flux.2-pro": "image",
    "black-forest-labs/flux.2-flex": "image",
    "black-forest-labs/flux.2-max": "image",
    "kuaishou/kling-o1-image": "image",
    "kuaishou/kling-3.0-omni-image": "image",
    "kuaishou/kling-3.0-image": "image",
    "kuaishou/kling-2.1-image": "image",
    "topaz-labs/image-upscale": "image",
    "topaz-labs/image-generative": "image",
    "alibaba/qwen-image-2.0-pro": "image",
    "alibaba/qwen-image-2.0": "image",
    "alibaba/qwen-image-max": "image",
    "alibaba/qwen-image-plus": "image",
    "alibaba/qwen-image": "image",
    "alibaba/z-image-turbo": "image",
    "alibaba/wan-2.7-pro-image": "image",
    "alibaba/wan-2.7-image": "image",
    "alibaba/wan-2.6-image": "image",
    "alibaba/wan-2.5-image": "image",
    "alibaba/wan-2.2-image": "image",
    "alibaba/wan-2.2-flash-image": "image",
    "xai/grok-imagine-image": "image",
    "suno-ai/music": "audio",
    "suno-ai/add-vocals": "audio",
    "suno-ai/add-instrumental": "audio",
    "suno-ai/extend": "audio",
    "suno-ai/cover": "audio",
    "suno-ai/stems": "audio",
    "suno-ai/stems-all": "audio",
    "suno-ai/lyrics": "text",
    "suno-ai/wav": "audio",
    "elevenlabs/text-to-speech": "audio",
    "elevenlabs/text-to-dialogue": "audio",
    "elevenlabs/sound-effect": "audio",
    "elevenlabs/voice-isolation": "audio",
    "elevenlabs/speech-to-text": "text",
}

# Models the reference lists without a parameter table: they accept any keys.
NO_TABLE = {
    "topaz-labs/video-upscale",
    "topaz-labs/image-upscale",
    "topaz-labs/image-generative",
    "kuaishou/kling-o1-image",
    "kuaishou/kling-3.0-omni-image",
    "kuaishou/kling-3.0-image",
    "kuaishou/kling-2.1-image",
    "suno-ai/wav",
    "elevenlabs/text-to-speech",
    "elevenlabs/text-to-dialogue",
    "elevenlabs/sound-effect",
    "elevenlabs/voice-isolation",
    "elevenlabs/speech-to-text",
}

SECTIONS = {"Video Generation": "video", "Image Generation": "image", "Audio Generation": "audio"}
ROW = re.compile(r"^([a-z0-9][\w.-]*/[\w.-]+) \| (.+?) \|\s*$")


def parse_reference(text: str) -> dict[str, tuple[str, str]]:
    """The model tables of the reference: name -> (section kind, description)."""
    models: dict[str, tuple[str, str]] = {}
    section = None
    for line in text.splitlines():
        if line.strip() == "Model Parameters":
            break
        section = SECTIONS.get(line.strip(), section)
        match = ROW.match(line)
        if match and section:
            models[match[1]] = (section, match[2].strip())
    return models


def expected_kind(name: str, section: str) -> str:
    return "text" if name in TEXT_PRODUCING else section


# --------------------------------------------------------------------------- the model list


def test_catalog_has_exactly_the_checked_in_models() -> None:
    assert {m.name: m.kind for m in catalog.all_models()} == EXPECTED_MODELS


def test_model_count_by_kind() -> None:
    counts = Counter(m.kind for m in catalog.all_models())
    assert counts == {"video": 25, "image": 25, "audio": 12, "text": 2}
    for kind in catalog.KINDS:
        assert [m.kind for m in catalog.models_of_kind(kind)] == [kind] * counts[kind]
    assert catalog.models_of_kind("nope") == []


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"provider reference not found at {REFERENCE}")
def test_reference_model_tables_are_all_in_the_catalog() -> None:
    table = parse_reference(REFERENCE.read_text(encoding="utf-8"))
    assert len(table) >= 60, "the reference's model tables could not be parsed"
    problems = []
    for name, (section, description) in table.items():
        spec = catalog.get(name)
        if spec is None:
            problems.append(f"{name}: missing from the catalog")
        elif spec.kind != expected_kind(name, section):
            problems.append(f"{name}: kind {spec.kind}, expected {expected_kind(name, section)}")
        elif spec.description != description:
            problems.append(f"{name}: description {spec.description!r} != {description!r}")
    assert problems == []
    assert {n: expected_kind(n, s) for n, (s, _) in table.items()} == EXPECTED_MODELS


def test_parse_reference_reads_rows_by_section() -> None:
    text = "Video Generation\n|---|\na/b | B |\nAudio Generation\nsuno-ai/lyrics | L |\n"
    text += "Model Parameters\nc/d | D |\n"
    assert parse_reference(text) == {"a/b": ("video", "B"), "suno-ai/lyrics": ("audio", "L")}


def test_no_table_models_accept_any_keys_and_others_refuse_unknown() -> None:
    for spec in catalog.all_models():
        assert spec.open_input is (spec.name in NO_TABLE), spec.name
        problems = catalog.validate(spec.name, {"surely_not_a_parameter": 1})
        unknown = [p for p in problems if p.path == "input.surely_not_a_parameter"]
        if spec.name in NO_TABLE:
            assert problems == []
        else:
            assert [p.message for p in unknown] == ["unknown parameter"]


# --------------------------------------------------------------------------- rules, table-driven

P = {"prompt": "a cat"}
VEO, VEO_Q = "google/veo-3.1-fast", "google/veo-3.1-quality"
GEMINI, GEMINI_EDIT = "google/gemini-omni-flash-video", "google/gemini-omni-flash-video-edit"
OMNI, O1 = "kuaishou/kling-3.0-omni-video", "kuaishou/kling-o1-video"
K26 = "kuaishou/kling-2.6-video"
GROK_X = "xai/grok-imagine-video-extend"
FLUX_PRO, FLUX_FLEX, FLUX_MAX = (
    "black-forest-labs/flux.2-pro",
    "black-forest-labs/flux.2-flex",
    "black-forest-labs/flux.2-max",
)
NANO, NANO_PRO = "google/nano-banana", "google/nano-banana-pro"
EDIT_SRC = {"reference_video_urls": ["v"], "prompt": "edit"}
K26_OK = {"prompt": "p", "start_frame_url": "s"}


def urls(n: int) -> list[str]:
    return [f"https://x/{i}.png" for i in range(n)]


def char(n: int = 1, **extra: Any) -> dict[str, Any]:
    return {"image_urls": urls(n), **extra}


def shots(*durations: Any) -> list[dict[str, Any]]:
    return [{"prompt": f"shot {i}", "duration": d} for i, d in enumerate(durations)]


# (id, model, accepted input, refused input, path of the refusal, words of the refusal)
# fmt: off
CASES: list[tuple[str, str, dict[str, Any], Any, str, str]] = [
    # Veo generate
    ("veo-prompt-required", VEO, P, {}, "input.prompt", "is required"),
    ("veo-frame-vs-reference", VEO, {**P, "start_image_url": "s", "end_image_url": "e"},
     {**P, "start_image_url": "s", "reference_image_urls": urls(1), "duration": 8},
     "input.reference_image_urls", "cannot be combined with start_image_url"),
    ("veo-end-frame-vs-character", VEO, {**P, "start_image_url": "s"},
     {**P, "end_image_url": "e", "reference_characters": [char()], "duration": 8},
     "input.reference_characters", "cannot be combined"),
    ("veo-end-needs-start", VEO, {**P, "start_image_url": "s", "end_image_url": "e"},
     {**P, "end_image_url": "e"}, "input.end_image_url", "requires start_image_url"),
    ("veo-image-ref-duration-8", VEO, {**P, "reference_image_urls": urls(1), "duration": 8},
     {**P, "reference_image_urls": urls(1), "duration": 6}, "input.duration",
     "must be 8 when a reference image or character is set"),
    ("veo-ref-default-duration", VEO, {**P, "duration": 6}, {**P, "reference_image_urls": urls(1)},
     "input.duration", "the default is 4"),
    ("veo-character-duration-8", VEO, {**P, "reference_characters": [char()], "duration": 8},
     {**P, "reference_characters": [char()], "duration": 4}, "input.duration", "must be 8"),
    ("veo-duration-values", VEO, {**P, "duration": 4}, {**P, "duration": 5}, "input.duration",
     "must be one of 4, 6, 8"),
    ("veo-aspect-values", VEO, {**P, "aspect_ratio": "9:16"}, {**P, "aspect_ratio": "1:1"},
     "input.aspect_ratio", "must be one of"),
    ("veo-characters-not-on-quality", VEO, {**P, "reference_characters": [char()], "duration": 8},
     {**P, "reference_characters": [char()], "duration": 8} | {"_model": VEO_Q},
     "input.reference_characters", "is not available on google/veo-3.1-quality"),
    ("veo-quality-image-refs", VEO_Q, {**P, "reference_image_urls": urls(3), "duration": 8},
     {**P, "reference_image_urls": urls(4), "duration": 8}, "input.reference_image_urls",
     "at most 3"),
    ("veo-3-expanded", VEO,
     {**P, "reference_image_urls": urls(1), "reference_characters": [char(2)], "duration": 8},
     {**P, "reference_image_urls": urls(2), "reference_characters": [char(2)], "duration": 8},
     "input.reference_characters", "at most 3 image URLs"),
    ("veo-character-empty-image-urls", VEO, {**P, "reference_characters": [char()], "duration": 8},
     {**P, "reference_characters": [{"image_urls": []}], "duration": 8},
     "input.reference_characters[0].image_urls", "at least 1 item"),
    ("veo-character-missing-image-urls", VEO,
     {**P, "reference_characters": [char(name="Ann", description="tall")], "duration": 8},
     {**P, "reference_characters": [{"name": "Ann"}], "duration": 8},
     "input.reference_characters[0].image_urls", "is required"),
    ("veo-character-image-url", VEO, {**P, "reference_characters": [char()], "duration": 8},
     {**P, "reference_characters": [char(), {"image_url": "u", **char()}], "duration": 8},
     "input.reference_characters[1].image_url", "is not supported"),
    ("veo-character-plain-string", VEO, {**P, "reference_characters": [char()], "duration": 8},
     {**P, "reference_characters": ["https://x/1.png"], "duration": 8},
     "input.reference_characters[0]", "must be an object"),
    ("veo-voice-needs-reference", VEO,
     {**P, "voice": "v1", "reference_image_urls": urls(1), "duration": 8}, {**P, "voice": "v1"},
     "input.voice", "requires at least one reference"),
    ("veo-seed-not-bool", VEO, {**P, "seed": 7}, {**P, "seed": True}, "input.seed",
     "must be an integer"),
    # Veo extend / upscale
    ("veo-extend-duration-8", "google/veo-3.1-extend",
     {**P, "task_id": "t", "model": "lite-relaxed", "duration": 8},
     {**P, "task_id": "t", "model": "fast", "duration": 4}, "input.duration", "must be one of 8"),
    ("veo-extend-model", "google/veo-3.1-extend", {**P, "task_id": "t", "model": "quality"},
     {**P, "task_id": "t", "model": "ultra"}, "input.model", "must be one of"),
    ("veo-extend-task-id", "google/veo-3.1-extend", {**P, "task_id": "t", "model": "lite"},
     {**P, "model": "lite"}, "input.task_id", "is required"),
    ("veo-upscale-resolution", "google/veo-3.1-upscale", {"task_id": "t", "resolution": "4k"},
     {"task_id": "t", "resolution": "720p"}, "input.resolution", "must be one of"),
    # Gemini Omni Flash
    ("gemini-duration", GEMINI, {**P, "duration": 10}, {**P, "duration": 12}, "input.duration",
     "must be one of"),
    ("gemini-start-vs-refs", GEMINI, {**P, "start_image_url": "s"},
     {**P, "start_image_url": "s", "reference_characters": [char()]}, "input.reference_characters",
     "cannot be combined with start_image_url"),
    ("gemini-7-expanded", GEMINI,
     {**P, "reference_image_urls": urls(4), "reference_characters": [char(3)]},
     {**P, "reference_image_urls": urls(5), "reference_characters": [char(3)]},
     "input.reference_characters", "at most 7"),
    ("gemini-3-characters", GEMINI, {**P, "reference_characters": [char()] * 3},
     {**P, "reference_characters": [char()] * 4}, "input.reference_characters", "at most 3 items"),
    ("gemini-no-end-frame", GEMINI, {**P, "start_image_url": "s"},
     {**P, "start_image_url": "s", "end_image_url": "e"}, "input.end_image_url", "not available"),
    ("gemini-voice-needs-reference", GEMINI, {**P, "voice": "v", "reference_image_urls": urls(1)},
     {**P, "voice": "v"}, "input.voice", "requires at least one reference"),
    # Gemini Omni Flash Edit
    ("edit-video-required", GEMINI_EDIT, EDIT_SRC, {"prompt": "edit"}, "input.reference_video_urls",
     "is required"),
    ("edit-video-empty", GEMINI_EDIT, EDIT_SRC, {**EDIT_SRC, "reference_video_urls": []},
     "input.reference_video_urls", "exactly 1 item"),
    ("edit-video-multiple", GEMINI_EDIT, EDIT_SRC, {**EDIT_SRC, "reference_video_urls": ["a", "b"]},
     "input.reference_video_urls", "exactly 1 item"),
    ("edit-end-after-start", GEMINI_EDIT, {**EDIT_SRC, "start_frame": 10, "end_frame": 10},
     {**EDIT_SRC, "start_frame": 20, "end_frame": 10}, "input.end_frame",
     "must not be lower than start_frame"),
    ("edit-7-references", GEMINI_EDIT,
     {**EDIT_SRC, "reference_image_urls": urls(3), "reference_characters": [char(3)]},
     {**EDIT_SRC, "reference_image_urls": urls(4), "reference_characters": [char(3)]},
     "input.reference_characters", "at most 7 references"),
    ("edit-3-characters", GEMINI_EDIT, {**EDIT_SRC, "reference_characters": [char()] * 3},
     {**EDIT_SRC, "reference_characters": [char()] * 4}, "input.reference_characters",
     "at most 3 items"),
    ("edit-no-task-id", GEMINI_EDIT, EDIT_SRC, {**EDIT_SRC, "task_id": "t"}, "input.task_id",
     "is not accepted"),
    ("edit-no-duration", GEMINI_EDIT, EDIT_SRC, {**EDIT_SRC, "duration": 8}, "input.duration",
     "locked to the input video length"),
    ("edit-character-voice", GEMINI_EDIT, {**EDIT_SRC, "reference_characters": [char(voice="v")]},
     {**EDIT_SRC, "reference_characters": [char(voice="v", custom_voice="c")]},
     "input.reference_characters[0].custom_voice", "cannot be combined with voice"),
    ("edit-character-plain-string", GEMINI_EDIT, {**EDIT_SRC, "reference_characters": [char()]},
     {**EDIT_SRC, "reference_characters": ["u"]}, "input.reference_characters[0]",
     "must be an object"),
    # Hailuo
    ("hailuo-prompt-or-start", "hailuo/minimax-2.3", {"start_image_url": "s"}, {"duration": 6},
     "input.prompt", "is required unless start_image_url is set"),
    ("hailuo-prompt-only", "hailuo/minimax-2.0", P, {"prompt_optimization": True}, "input.prompt",
     "is required unless"),
    ("hailuo-fast-needs-start", "hailuo/minimax-2.3-fast", {"start_image_url": "s"}, P,
     "input.start_image_url", "is required"),
    ("hailuo-1080p-6s", "hailuo/minimax-2.3", {**P, "resolution": "1080p", "duration": 6},
     {**P, "resolution": "1080p", "duration": 10}, "input.duration", "must be 6 when resolution"),
    ("hailuo-end-frame-2.0-only", "hailuo/minimax-2.0",
     {**P, "start_image_url": "s", "end_image_url": "e"},
     {**P, "start_image_url": "s", "end_image_url": "e", "_model": "hailuo/minimax-2.3"},
     "input.end_image_url", "is not available on hailuo/minimax-2.3"),
    ("hailuo-prompt-2000", "hailuo/minimax-2.3", {"prompt": "x" * 2000}, {"prompt": "x" * 2001},
     "input.prompt", "at most 2000 characters"),
    ("hailuo-resolution", "hailuo/minimax-2.3", {**P, "resolution": "768p"},
     {**P, "resolution": "720p"}, "input.resolution", "must be one of"),
    # Kling 3.0 Omni / O1 video
    ("omni-prompt-vs-shots", OMNI, {"multi_shots": shots(3, 4)}, {**P, "multi_shots": shots(3, 4)},
     "input.multi_shots", "cannot be combined with prompt"),
    ("omni-prompt-or-shots", OMNI, P, {"duration": 5}, "input.prompt", "unless multi_shots"),
    ("omni-2-shots", OMNI, {"multi_shots": shots(3, 3)}, {"multi_shots": shots(3)},
     "input.multi_shots", "at least 2 items"),
    ("omni-6-shots", OMNI, {"multi_shots": shots(*[2] * 6)}, {"multi_shots": shots(*[2] * 7)},
     "input.multi_shots", "at most 6 items"),
    ("omni-shot-duration", OMNI, {"multi_shots": shots(3, 3, 3)},
     {"multi_shots": [*shots(3, 3), {"prompt": "third"}]}, "input.multi_shots[2].duration",
     "is required"),
    ("omni-shot-duration-bool", OMNI, {"multi_shots": shots(3, 3)}, {"multi_shots": shots(3, True)},
     "input.multi_shots[1].duration", "must be an integer"),
    ("omni-shot-object", OMNI, {"multi_shots": shots(3, 3)},
     {"multi_shots": ["shot one", "shot two"]}, "input.multi_shots[0]", "must be an object"),
    ("omni-duration-3-15", OMNI, {**P, "duration": 15}, {**P, "duration": 16}, "input.duration",
     "between 3 and 15"),
    ("omni-duration-min", OMNI, {**P, "duration": 3}, {**P, "duration": 2}, "input.duration",
     "between 3 and 15"),
    ("omni-auto-aspect", OMNI, {**P, "aspect_ratio": "auto", "video_mode": "start_end_frame"},
     {**P, "aspect_ratio": "auto"}, "input.aspect_ratio", "only allowed with video_mode"),
    ("omni-7-images", OMNI, {**P, "image_urls": urls(7)}, {**P, "image_urls": urls(8)},
     "input.image_urls", "at most 7 items"),
    ("omni-video-mode", OMNI, {**P, "video_mode": "transform", "video_url": "v"},
     {**P, "video_mode": "edit"}, "input.video_mode", "must be one of"),
    ("o1-duration-3-10", O1, {**P, "duration": 10}, {**P, "duration": 11}, "input.duration",
     "between 3 and 10"),
    ("o1-no-shots", O1, P, {**P, "multi_shots": shots(3, 3)}, "input.multi_shots",
     "not supported on Kling O1"),
    ("o1-no-native-audio", O1, P, {**P, "native_audio": True}, "input.native_audio",
     "not supported"),
    ("o1-prompt-required", O1, P, {"duration": 5}, "input.prompt", "is required"),
    ("o1-auto-aspect", O1, {**P, "aspect_ratio": "auto", "video_mode": "start_end_frame"},
     {**P, "aspect_ratio": "auto", "video_mode": "elements"}, "input.aspect_ratio", "only"),
    # Kling edits
    ("omni-edit-4-elements", "kuaishou/kling-3.0-omni-video-edit",
     {"video_url": "v", **P, "elements": [{}] * 4}, {"video_url": "v", **P, "elements": [{}] * 5},
     "input.elements", "at most 4 items"),
    ("omni-edit-4-images", "kuaishou/kling-3.0-omni-video-edit",
     {"video_url": "v", **P, "image_urls": urls(4)}, {"video_url": "v", **P, "image_urls": urls(5)},
     "input.image_urls", "at most 4 items"),
    ("o1-edit-no-elements", "kuaishou/kling-o1-video-edit", {"video_url": "v", **P},
     {"video_url": "v", **P, "elements": [{}]}, "input.elements", "not supported"),
    ("o1-edit-video-url", "kuaishou/kling-o1-video-edit", {"video_url": "v", **P}, P,
     "input.video_url", "is required"),
    # Kling 3.0 / turbo
    ("k30-start-required", "kuaishou/kling-3.0-video", {**P, "start_frame_url": "s"}, P,
     "input.start_frame_url", "is required"),
    ("k30-prompt-vs-shots", "kuaishou/kling-3.0-video",
     {"start_frame_url": "s", "multi_shots": shots(5, 5)},
     {"start_frame_url": "s", "prompt": "p", "multi_shots": shots(5, 5)}, "input.multi_shots",
     "cannot be combined"),
    ("turbo-no-end-frame", "kuaishou/kling-3.0-turbo-video", {**P, "start_frame_url": "s"},
     {**P, "end_frame_url": "e"}, "input.end_frame_url", "not supported on Kling v3.0 Turbo"),
    ("turbo-no-audio", "kuaishou/kling-3.0-turbo-video", P, {**P, "native_audio": False},
     "input.native_audio", "not supported"),
    # Kling 2.6
    ("k26-audio-needs-pro", K26, {**K26_OK, "native_audio": True, "mode": "pro"},
     {**K26_OK, "native_audio": True, "mode": "std"}, "input.native_audio", "requires mode 'pro'"),
    ("k26-end-frame-not-with-audio", K26, {**K26_OK, "end_frame_url": "e"},
     {**K26_OK, "end_frame_url": "e", "native_audio": True}, "input.end_frame_url",
     "not available with native_audio"),
    ("k26-voices-need-audio", K26, {**K26_OK, "native_audio": True, "voices": [{"voice_id": 1}]},
     {**K26_OK, "voices": [{"voice_id": 1}]}, "input.voices", "requires native_audio"),
    ("k26-5-voices", K26, {**K26_OK, "native_audio": True, "voices": [{"voice_url": "u"}] * 5},
     {**K26_OK, "native_audio": True, "voices": [{"voice_url": "u"}] * 6}, "input.voices",
     "at most 5 items"),
    ("k26-voice-id-int", K26, {**K26_OK, "native_audio": True, "voices": [{"voice_id": 3}]},
     {**K26_OK, "native_audio": True, "voices": [{"voice_id": "3"}]}, "input.voices[0].voice_id",
     "must be an integer"),
    ("k26-voice-one-of", K26, {**K26_OK, "native_audio": True, "voices": [{"voice_url": "u"}]},
     {**K26_OK, "native_audio": True, "voices": [{"voice_id": 3, "voice_url": "u"}]},
     "input.voices[0]", "exactly one of voice_id or voice_url"),
    ("k26-voice-empty", K26, {**K26_OK, "native_audio": True, "voices": [{"voice_url": "u"}]},
     {**K26_OK, "native_audio": True, "voices": [{}]}, "input.voices[0]", "exactly one of"),
    ("k26-duration", K26, {**K26_OK, "duration": 10}, {**K26_OK, "duration": 7}, "input.duration",
     "must be one of 5, 10"),
    ("k26-start-required", K26, K26_OK, P, "input.start_frame_url", "is required"),
    # Kling 2.5 / 2.1 / master / motion
    ("k25-sound-effects", "kuaishou/kling-2.5-turbo-video",
     {**P, "sound_effects": {"sound": "rain", "music": "jazz", "asmr_mode": False}},
     {**P, "sound_effects": {"asmr_mode": "yes"}}, "input.sound_effects.asmr_mode",
     "must be a boolean"),
    ("k25-sound-effects-keys", "kuaishou/kling-2.5-turbo-video", {**P, "sound_effects": {}},
     {**P, "sound_effects": {"volume": 3}}, "input.sound_effects.volume", "unknown parameter"),
    ("k21-start-required", "kuaishou/kling-2.1-video", {**P, "start_frame_url": "s"}, P,
     "input.start_frame_url", "is required"),
    ("k21-master-no-end-frame", "kuaishou/kling-2.1-master-video", {**P, "start_frame_url": "s"},
     {**P, "end_frame_url": "e"}, "input.end_frame_url", "no end frame"),
    ("k21-master-pro-only", "kuaishou/kling-2.1-master-video", {**P, "duration": 10},
     {**P, "mode": "std"}, "input.mode", "pro-only"),
    ("motion-30-orientation", "kuaishou/kling-3.0-motion-control",
     {**P, "image_url": "i", "video_url": "v", "character_orientation": "image", "elements": []},
     {**P, "image_url": "i", "video_url": "v", "character_orientation": "side"},
     "input.character_orientation", "must be one of"),
    ("motion-26-no-elements", "kuaishou/kling-2.6-motion-control",
     {**P, "image_url": "i", "video_url": "v"},
     {**P, "image_url": "i", "video_url": "v", "elements": []}, "input.elements",
     "unknown parameter"),
    # Grok video extend
    ("grok-custom-mode", GROK_X, {"task_id": "t", **P, "extend_at": 2.5, "extend_duration": 6},
     {"task_id": "t", **P, "extend_duration": 6}, "input.extend_at", "required in custom mode"),
    ("grok-preset-mode", GROK_X, {"task_id": "t", "video_preset": "spicy"}, {"task_id": "t"},
     "input.prompt", "required in custom mode"),
    ("grok-extend-duration", GROK_X, {"task_id": "t", **P, "extend_at": 0, "extend_duration": 10},
     {"task_id": "t", **P, "extend_at": 0, "extend_duration": 8}, "input.extend_duration",
     "must be one of 6, 10"),
    ("grok-extend-at-number", GROK_X, {"task_id": "t", **P, "extend_at": 3, "extend_duration": 6},
     {"task_id": "t", **P, "extend_at": True, "extend_duration": 6}, "input.extend_at",
     "booleans are not numbers"),
    ("grok-preset-values", GROK_X, {"task_id": "t", "video_preset": "normal"},
     {"task_id": "t", "video_preset": "wild"}, "input.video_preset", "must be one of"),
    # Images
    ("gpt-resolution", "openai/gpt-image-2", {**P, "resolution": "4K", "image_urls": urls(2)},
     {**P, "resolution": "8K"}, "input.resolution", "must be one of"),
    ("nano-aspect-required", NANO, {**P, "aspect_ratio": "21:9"}, P, "input.aspect_ratio",
     "is required"),
    ("nano-resolution-pro-only", NANO_PRO, {**P, "aspect_ratio": "1:1", "resolution": "4k"},
     {**P, "aspect_ratio": "1:1", "resolution": "4k", "_model": NANO}, "input.resolution",
     "is not available on google/nano-banana"),
    ("nano-pro-resolution-values", NANO_PRO, {**P, "aspect_ratio": "1:1", "resolution": "2k"},
     {**P, "aspect_ratio": "1:1", "resolution": "4K"}, "input.resolution", "must be one of"),
    ("flux-pro-8-refs", FLUX_PRO, {**P, "image_urls": urls(8)}, {**P, "image_urls": urls(9)},
     "input.image_urls", "at most 8 items"),
    ("flux-max-8-refs", FLUX_MAX, {**P, "image_urls": urls(8)}, {**P, "image_urls": urls(9)},
     "input.image_urls", "at most 8 items"),
    ("flux-flex-10-refs", FLUX_FLEX, {**P, "image_urls": urls(10)}, {**P, "image_urls": urls(11)},
     "input.image_urls", "at most 10 items"),
    ("flux-max-only-aspects", FLUX_MAX, {**P, "aspect_ratio": "21:9"},
     {**P, "aspect_ratio": "21:9", "_model": FLUX_PRO}, "input.aspect_ratio", "must be one of"),
    ("flux-max-5-4", FLUX_MAX, {**P, "aspect_ratio": "5:4"},
     {**P, "aspect_ratio": "5:4", "_model": FLUX_FLEX}, "input.aspect_ratio", "must be one of"),
    ("flux-steps-flex-only", FLUX_FLEX, {**P, "steps": 50}, {**P, "steps": 20, "_model": FLUX_PRO},
     "input.steps", "is not available"),
    ("flux-steps-range", FLUX_FLEX, {**P, "steps": 1}, {**P, "steps": 51}, "input.steps",
     "between 1 and 50"),
    ("flux-cfg-range", FLUX_FLEX, {**P, "cfg": 1.5}, {**P, "cfg": 1.4}, "input.cfg",
     "between 1.5 and 10"),
    ("flux-cfg-max", FLUX_FLEX, {**P, "cfg": 10}, {**P, "cfg": 10.5}, "input.cfg", "between"),
    ("flux-cfg-flex-only", FLUX_FLEX, {**P, "cfg": 3.5}, {**P, "cfg": 3.5, "_model": FLUX_MAX},
     "input.cfg", "is not available"),
    ("flux-quality", FLUX_PRO, {**P, "quality": "2K"}, {**P, "quality": "4K"}, "input.quality",
     "must be one of"),
    ("qwen-prompt-800", "alibaba/qwen-image", {"prompt": "x" * 800}, {"prompt": "x" * 801},
     "input.prompt", "at most 800 characters"),
    ("qwen-pro-prompt-800", "alibaba/qwen-image-2.0-pro", {"prompt": "x" * 800},
     {"prompt": "x" * 801}, "input.prompt", "at most 800 characters"),
    ("qwen-negative-500", "alibaba/qwen-image-max", {**P, "negative_prompt": "x" * 500},
     {**P, "negative_prompt": "x" * 501}, "input.negative_prompt", "at most 500"),
    ("qwen-unknown", "alibaba/qwen-image-plus", {**P, "image_urls": urls(2)}, {**P, "steps": 4},
     "input.steps", "unknown parameter"),
    ("z-image-prompt-800", "alibaba/z-image-turbo", {"prompt": "x" * 800}, {"prompt": "x" * 801},
     "input.prompt", "at most 800 characters"),
    ("z-image-t2i-only", "alibaba/z-image-turbo", P, {**P, "image_urls": urls(1)},
     "input.image_urls", "unknown parameter"),
    ("wan27-prompt-5000", "alibaba/wan-2.7-pro-image", {"prompt": "x" * 5000},
     {"prompt": "x" * 5001}, "input.prompt", "at most 5000 characters"),
    ("wan27-9-images", "alibaba/wan-2.7-image", {**P, "image_urls": urls(9)},
     {**P, "image_urls": urls(10)}, "input.image_urls", "at most 9 items"),
    ("wan27-thinking-t2i-only", "alibaba/wan-2.7-pro-image", {**P, "thinking_mode": True},
     {**P, "thinking_mode": True, "image_urls": urls(1)}, "input.thinking_mode",
     "text-to-image only"),
    ("wan26-prompt-2000", "alibaba/wan-2.6-image", {"prompt": "x" * 2000}, {"prompt": "x" * 2001},
     "input.prompt", "at most 2000 characters"),
    ("wan26-1-to-4", "alibaba/wan-2.6-image", {**P, "image_urls": urls(4)},
     {**P, "image_urls": urls(5)}, "input.image_urls", "at most 4 items"),
    ("wan26-not-empty", "alibaba/wan-2.6-image", {**P, "image_urls": urls(1)},
     {**P, "image_urls": []}, "input.image_urls", "at least 1 item"),
    ("wan25-1-to-3", "alibaba/wan-2.5-image", {**P, "image_urls": urls(3)},
     {**P, "image_urls": urls(4)}, "input.image_urls", "at most 3 items"),
    ("wan22-no-image-urls", "alibaba/wan-2.2-image", {**P, "negative_prompt": "x" * 900},
     {**P, "image_urls": urls(1)}, "input.image_urls", "text-to-image only"),
    ("wan22-flash-prompt-500", "alibaba/wan-2.2-flash-image", {"prompt": "x" * 500},
     {"prompt": "x" * 501}, "input.prompt", "at most 500 characters"),
    ("wan22-flash-no-image-urls", "alibaba/wan-2.2-flash-image", P, {**P, "image_urls": urls(1)},
     "input.image_urls", "is not accepted"),
    ("grok-image-1-to-5", "xai/grok-imagine-image", {**P, "image_urls": urls(5)},
     {**P, "image_urls": urls(6)}, "input.image_urls", "at most 5 items"),
    ("grok-image-not-empty", "xai/grok-imagine-image", {**P, "image_urls": urls(1)},
     {**P, "image_urls": []}, "input.image_urls", "at least 1 item"),
    ("grok-image-url-strings", "xai/grok-imagine-image", {**P, "enable_pro": True},
     {**P, "image_urls": ["a", 3]}, "input.image_urls[1]", "must be a string"),
    # Suno
    ("suno-mv", "suno-ai/music", {"mv": "chirp-crow", "custom": False},
     {"mv": "chirp-v5", "custom": False}, "input.mv", "must be one of"),
    ("suno-custom-required", "suno-ai/music", {"mv": "chirp-v4", "custom": True},
     {"mv": "chirp-v4"}, "input.custom", "is required"),
    ("suno-custom-bool", "suno-ai/music", {"mv": "chirp-v4", "custom": True, "prompt": "la"},
     {"mv": "chirp-v4", "custom": "true"}, "input.custom", "must be a boolean"),
    ("suno-op-clip-or-url", "suno-ai/extend",
     {"mv": "chirp-v4", "custom": False, "clip_id": "c", "continue_at": 30.5},
     {"mv": "chirp-v4", "custom": False}, "input.clip_id", "unless audio_url"),
    ("suno-op-audio-url", "suno-ai/cover", {"mv": "chirp-v4", "custom": False, "audio_url": "u"},
     {"mv": "chirp-v4", "custom": False, "clip_id": ""}, "input.clip_id", "unless audio_url"),
    ("suno-op-times", "suno-ai/add-vocals",
     {"mv": "chirp-v4", "custom": True, "clip_id": "c", "start_s": 0, "end_s": 12.5},
     {"mv": "chirp-v4", "custom": True, "clip_id": "c", "start_s": -1}, "input.start_s",
     "at least 0"),
    ("suno-stems-clip", "suno-ai/stems-all", {"clip_id": "c", "title": "t"}, {"title": "t"},
     "input.clip_id", "is required"),
    ("suno-lyrics-mv", "suno-ai/lyrics", {**P, "mv": "default"}, {**P, "mv": "remi-v2"}, "input.mv",
     "must be one of 'remi-v1', 'default'"),
    ("suno-lyrics-prompt", "suno-ai/lyrics", {**P, "mv": "remi-v1"},
     {"mv": "remi-v1", "prompt": ""}, "input.prompt", "must not be empty"),
    # Input shape
    ("input-object", "suno-ai/wav", {"anything": [1, {"x": None}]}, ["a"], "input",
     "must be an object"),
    ("input-null", "elevenlabs/text-to-speech", {}, None, "input", "must be an object"),
]
# fmt: on


@pytest.mark.parametrize(
    ("model", "accepted"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_accepts(model: str, accepted: dict[str, Any]) -> None:
    assert catalog.validate(model, accepted) == []


@pytest.mark.parametrize(
    ("model", "refused", "path", "words"),
    [(c[1], c[3], c[4], c[5]) for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_rule_refuses(model: str, refused: Any, path: str, words: str) -> None:
    if isinstance(refused, dict) and "_model" in refused:  # the same input on a sibling model
        refused = dict(refused)
        model = refused.pop("_model")
    problems = catalog.validate(model, refused)
    at_path = [p.message for p in problems if p.path == path]
    assert at_path, f"no problem at {path}: {problems}"
    assert any(words in m for m in at_path), f"{words!r} not in {at_path}"


def test_every_family_with_a_table_has_a_case() -> None:
    covered = {c[1] for c in CASES}
    covered |= {c[3]["_model"] for c in CASES if isinstance(c[3], dict) and "_model" in c[3]}
    families = {spec.family for spec in catalog.all_models() if spec.name in covered}
    tabled = {spec.family for spec in catalog.all_models() if not spec.open_input}
    assert tabled <= families


# --------------------------------------------------------------------------- other behaviour


def test_validate_reports_every_problem_at_once() -> None:
    problems = catalog.validate(
        VEO,
        {
            "end_image_url": "e",
            "seed": True,
            "voice": "v",
            "duration": "8",
            "colour": "red",
            "reference_characters": [{"image_url": "u"}, "plain"],
        },
    )
    paths = {p.path for p in problems}
    assert {
        "input.prompt",
        "input.seed",
        "input.duration",
        "input.colour",
        "input.end_image_url",
        "input.reference_characters[0].image_url",
        "input.reference_characters[0].image_urls",
        "input.reference_characters[1]",
    } <= paths
    assert all(isinstance(p, Problem) for p in problems)


def test_unknown_model_gives_one_problem_with_suggestion() -> None:
    assert catalog.validate("google/veo-3.1-fats", {"prompt": "x"}) == [
        Problem("model", "unknown model 'google/veo-3.1-fats'; did you mean 'google/veo-3.1-fast'?")
    ]
    [problem] = catalog.validate("zzzzzz", None)
    assert problem.path == "model" and "did you mean" not in problem.message
    assert catalog.validate(None, {}) == [Problem("model", "must be a string")]  # type: ignore[arg-type]
    assert catalog.suggest("suno-ai/lyric")[0] == "suno-ai/lyrics"
    assert catalog.get(["not", "a", "name"]) is None  # type: ignore[arg-type]


def test_unknown_parameter_suggests_a_close_name() -> None:
    [problem] = catalog.validate("alibaba/qwen-image", {**P, "negative_promt": "x"})
    assert problem == Problem(
        "input.negative_promt", "unknown parameter; did you mean 'negative_prompt'?"
    )


def test_null_optional_is_unset_and_null_required_is_missing() -> None:
    assert catalog.validate(VEO, {**P, "seed": None, "voice": None}) == []
    assert catalog.validate(VEO, {"prompt": None}) == [Problem("input.prompt", "is required")]


def test_integers_refuse_floats_and_huge_numbers_do_not_crash() -> None:
    [problem] = catalog.validate(VEO, {**P, "duration": 8.0})
    assert problem == Problem("input.duration", "must be an integer")
    assert catalog.validate(VEO, {**P, "seed": 10**400}) == []
    assert catalog.validate(FLUX_FLEX, {**P, "cfg": 10**400})[0].path == "input.cfg"
    assert catalog.validate(FLUX_FLEX, {**P, "cfg": float("nan")})[0].message == (
        "must be a finite number"
    )


def test_prices() -> None:
    assert catalog.price("alibaba/qwen-image-2.0-pro", P) == 0.0525
    assert catalog.price("alibaba/qwen-image-2.0", {**P, "image_urls": urls(1)}) == 0.0245
    assert catalog.price("alibaba/qwen-image-max", P) == 0.0525
    assert catalog.price("alibaba/qwen-image-plus", P) == 0.021
    assert catalog.price("alibaba/qwen-image", P) == 0.0315
    assert catalog.price("alibaba/qwen-image", {**P, "image_urls": urls(1)}) == FLAT_PRICE
    assert catalog.price("alibaba/z-image-turbo", P) == 0.0105
    assert catalog.price("alibaba/z-image-turbo", {**P, "prompt_extend": True}) == 0.021
    assert catalog.price("alibaba/wan-2.7-pro-image", P) == 0.0525
    assert catalog.price("alibaba/wan-2.7-image", P) == 0.021
    assert catalog.price("alibaba/wan-2.6-image", P) == 0.021
    assert catalog.price("alibaba/wan-2.5-image", P) == 0.021
    assert catalog.price("alibaba/wan-2.2-image", P) == 0.035
    assert catalog.price("alibaba/wan-2.2-flash-image", P) == 0.0175
    assert catalog.price("xai/grok-imagine-image", {**P, "enable_pro": True}) == 0.025
    assert catalog.price("xai/grok-imagine-image", P) == FLAT_PRICE
    assert catalog.price(VEO, P) == FLAT_PRICE
    assert catalog.price("no/such-model", None) == FLAT_PRICE
    assert catalog.price("alibaba/z-image-turbo", ["junk"]) == 0.0105


def test_describe_is_json_ready_and_complete() -> None:
    for spec in catalog.all_models():
        described = json.loads(json.dumps(catalog.describe(spec)))
        assert described["name"] == spec.name
        assert described["kind"] == spec.kind
        assert described["description"] == spec.description
        assert [p["name"] for p in described["parameters"]] == [p.name for p in spec.params]
        assert described["rules"] == [r.text for r in spec.rules]
        assert described["accepts_unknown_parameters"] is spec.open_input
    veo = catalog.describe(catalog.get(VEO))  # type: ignore[arg-type]
    duration = next(p for p in veo["parameters"] if p["name"] == "duration")
    assert duration["type"] == "integer" and duration["default"] == 4
    assert duration["allowed"] == [4, 6, 8]
    assert "duration must be 8 when a reference image or character is set" in veo["rules"]
    characters = next(p for p in veo["parameters"] if p["name"] == "reference_characters")
    image_urls = characters["fields"]["parameters"][0]
    assert image_urls["name"] == "image_urls" and image_urls["required"] is True
    quality = catalog.describe(catalog.get(VEO_Q))  # type: ignore[arg-type]
    assert "reference_characters" in quality["not_accepted"]
    flex = catalog.describe(catalog.get(FLUX_FLEX))  # type: ignore[arg-type]
    steps = next(p for p in flex["parameters"] if p["name"] == "steps")
    assert (steps["minimum"], steps["maximum"]) == (1, 50)
    qwen = catalog.describe(catalog.get("alibaba/qwen-image"))  # type: ignore[arg-type]
    prompt = next(p for p in qwen["parameters"] if p["name"] == "prompt")
    assert prompt["max_length"] == 800 and prompt["required"] is True
    assert qwen["pricing"]["per_image"][0]["usd"] == 0.0315


def test_required_property_lists_always_required_parameters() -> None:
    assert catalog.get(NANO).required == ("prompt", "aspect_ratio")  # type: ignore[union-attr]
    assert catalog.get("hailuo/minimax-2.3").required == ()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- never raises

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def typed_values(p: Param) -> st.SearchStrategy[Any]:
    """Values near the parameter's declaration (mixed with junk), to reach the rules."""
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "string": st.text(max_size=12),
        "integer": st.integers(-3, 20),
        "number": st.floats(-3, 20) | st.integers(-3, 20),
        "boolean": st.booleans(),
        "string[]": st.lists(st.text(max_size=4) | json_leaves, max_size=10),
        "object": keyed_objects(p.schema),
        "object[]": st.lists(keyed_objects(p.schema) | json_values, max_size=7),
        "any": json_values,
    }
    strategy = by_type[p.type]
    if p.choices:
        strategy = st.sampled_from(p.choices) | strategy
    return strategy | json_values


def keyed_objects(schema: Schema | None) -> st.SearchStrategy[dict[str, Any]]:
    """Objects keyed by the schema's real parameter names (and refused names)."""
    if schema is None:
        return st.dictionaries(st.text(max_size=6), json_values, max_size=3)
    optional: dict[str, st.SearchStrategy[Any]] = {p.name: typed_values(p) for p in schema.params}
    for name, _reason in schema.unsupported:
        optional.setdefault(name, json_values)
    return st.fixed_dictionaries({}, optional=optional)


MODEL_NAMES = sorted(EXPECTED_MODELS)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_validate_never_raises(model: str) -> None:
    spec = catalog.get(model)
    assert spec is not None
    inputs = (
        json_values
        | keyed_objects(spec.schema)
        | st.builds(
            lambda a, b: {**a, **b},
            keyed_objects(spec.schema),
            st.dictionaries(st.text(max_size=6), json_values, max_size=2),
        )
    )

    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(inputs)
    def check(value: Any) -> None:
        problems = catalog.validate(model, value)
        assert isinstance(problems, list)
        assert all(isinstance(p, Problem) and p.path and p.message for p in problems)
        assert isinstance(catalog.price(model, value), float)

    check()


@settings(max_examples=100, deadline=None, database=None)
@given(json_values, json_values)
def test_validate_never_raises_for_any_model_value(model: Any, value: Any) -> None:
    assume(model not in EXPECTED_MODELS if isinstance(model, str) else True)
    problems = catalog.validate(model, value)
    assert len(problems) == 1 and problems[0].path == "model"
    assert catalog.price(model, value) == FLAT_PRICE
