"""Turns the upstream's output mapping into the list of outputs templates and handlers see.

``{"video_url": U}`` -> ``[{"url": U, "field": "video_url", "index": 0, "kind": "video",
"filename": "abc.mp4"}]``; arrays such as ``image_urls`` give one output per URL. Fields that
are not URLs (for example ``text``) stay in ``job.output`` only.
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import unquote, urlsplit

_KIND_BY_PREFIX = {"video": "video", "image": "image", "audio": "audio"}
_KIND_BY_EXTENSION = {
    **dict.fromkeys(("mp4", "mov", "webm", "mkv"), "video"),
    **dict.fromkeys(("png", "jpg", "jpeg", "webp", "gif"), "image"),
    **dict.fromkeys(("mp3", "wav", "ogg", "m4a", "flac", "aac"), "audio"),
}


def filename_of(url: str) -> str:
    try:
        name = posixpath.basename(unquote(urlsplit(url).path))
    except ValueError:  # e.g. "http://[": not a URL anything can fetch
        return "output"
    return name or "output"


def kind_of(field: str, url: str) -> str:
    prefix = field.split("_", 1)[0]
    if prefix in _KIND_BY_PREFIX:
        return _KIND_BY_PREFIX[prefix]
    extension = filename_of(url).rsplit(".", 1)[-1].lower()
    return _KIND_BY_EXTENSION.get(extension, "file")


def _urls(field: str, value: Any) -> list[str]:
    if field.endswith("_url") and isinstance(value, str):
        return [value]
    if field.endswith("_urls") and isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def normalise(output: dict[str, Any] | None) -> list[dict[str, Any]]:
    outputs: list[dict[str, Any]] = []
    for field, value in (output or {}).items():
        for url in _urls(field, value):
            if not url.startswith(("http://", "https://")):
                continue
            outputs.append(
                {
                    "url": url,
                    "field": field,
                    "index": len(outputs),
                    "kind": kind_of(field, url),
                    "filename": filename_of(url),
                }
            )
    return outputs
