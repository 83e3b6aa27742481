"""``slack`` and ``discord``: a message to a chat incoming webhook.

Slack gets ``{"text": ...}``, Discord ``{"content": ...}``. Without a ``text`` / ``content``
template the message says the model, the status, the job, each output as a link (or the
copies made by earlier steps) and, for failures, the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from handlers import Handler, StepContext
from handlers.http import post, result_of

_ICON = {"completed": "✅", "failed": "❌"}


def _links(context: dict[str, Any], fmt: str) -> list[str]:
    for result in context["steps"].values():
        if isinstance(result, dict) and result.get("presigned_urls"):
            return [
                fmt.format(url=u, name=u.split("?")[0].rsplit("/", 1)[-1])
                for u in result["presigned_urls"]
            ]
    return [fmt.format(url=o["url"], name=o["filename"]) for o in context["outputs"]]


def summary(context: dict[str, Any], link_format: str) -> str:
    job, event = context["job"], context["event"]
    status = event["status"]
    lines = [f"{_ICON.get(status, '🔔')} {job['model']} {status}: {job['id']}"]
    if event.get("error"):
        lines.append(f"Reason: {event['error']}")
    lines.extend(_links(context, link_format))
    return "\n".join(lines)


class ChatConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    webhook_url: Annotated[str, Meta(pattern=r"^https?://")]
    text: str | None = None
    timeout: Annotated[float, Meta(gt=0, le=120)] = 15.0


class DiscordConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    webhook_url: Annotated[str, Meta(pattern=r"^https?://")]
    content: str | None = None
    username: str | None = None
    timeout: Annotated[float, Meta(gt=0, le=120)] = 15.0


class SlackHandler(Handler):
    type_name = "slack"
    Config = ChatConfig
    templates = ("webhook_url", "text")
    result_sample = {"status_code": 200}

    async def run(self, step: StepContext) -> dict[str, Any]:
        text = step.render("text") if step.has("text") else summary(step.context, "<{url}|{name}>")
        content = msgspec.json.encode({"text": text})
        response = await post(
            step.services.http, step.render("webhook_url"), content, timeout=self.config.timeout
        )
        return result_of(response)


class DiscordHandler(Handler):
    type_name = "discord"
    Config = DiscordConfig
    templates = ("webhook_url", "content")
    result_sample = {"status_code": 200}

    async def run(self, step: StepContext) -> dict[str, Any]:
        if step.has("content"):
            content = step.render("content")
        else:
            content = summary(step.context, "[{name}]({url})")
        body: dict[str, Any] = {"content": content[:2000]}
        if self.config.username:
            body["username"] = self.config.username
        response = await post(
            step.services.http,
            step.render("webhook_url"),
            msgspec.json.encode(body),
            timeout=self.config.timeout,
        )
        return result_of(response)
