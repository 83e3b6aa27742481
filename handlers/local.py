"""``local``: copies each output into a directory on this machine.

Result: ``urls`` (``file://`` URIs), ``keys`` (paths relative to ``directory``), ``paths``,
``sizes`` and ``sha256``. Paths come from the ``path`` template, so a retried step
overwrites the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from handlers import Handler, HandlerFailed, StepContext


class LocalConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    directory: str
    path: str = "{{ job.id }}/{{ output.filename }}"


class LocalHandler(Handler):
    type_name = "local"
    Config = LocalConfig
    templates = ("path",)
    result_sample = {
        "urls": ["file:///sample"],
        "keys": ["sample"],
        "paths": ["/sample"],
        "sizes": [1],
        "sha256": ["0" * 64],
    }

    _root: Path | None = None

    async def run(self, step: StepContext) -> dict[str, Any]:
        if self._root is None:  # resolved once: the directory is fixed by the config
            self._root = Path(self.config.directory).resolve()
        root = self._root
        result: dict[str, list[Any]] = {key: [] for key in self.result_sample}
        for output in step.context["outputs"]:
            key = str(step.render("path", output=output)).lstrip("/")
            target = (root / key).resolve()
            if target == root or not target.parent.is_relative_to(root):
                raise HandlerFailed(f"path {key!r} leaves the directory", retryable=False)
            download = await step.services.fetcher.to_file(output["url"], target)
            result["urls"].append(target.as_uri())
            result["keys"].append(key)
            result["paths"].append(str(target))
            result["sizes"].append(download.size)
            result["sha256"].append(download.sha256)
        return result
