"""``echo``: appends a rendered line to a file. A third-party handler type, one class."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from handlers import Handler, StepContext


class EchoConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str
    message: str = "{{ job.id }} {{ event.status }}"


class EchoHandler(Handler):
    type_name = "echo"
    Config = EchoConfig
    templates = ("message",)
    result_sample = {"written": "sample"}

    async def run(self, step: StepContext) -> dict[str, Any]:
        line = step.render("message")
        with Path(self.config.path).open("a") as file:
            file.write(line + "\n")
        return {"written": line}
