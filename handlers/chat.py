"""``slack`` and ``discord``: a message to a chat incoming webhook.

Without a ``text`` (Slack) / ``content`` (Discord) template the message shows what happened
at a glance: the model, the status, the job, a link to each output (or to its mirrored copy
when an earlier step gave ``presigned_urls``), the image itself for image outputs, and the
reason of a failure. A ``text`` / ``content`` template overrides all of it with a plain
message: Slack gets ``{"text": ...}``, Discord ``{"content": ...}``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from handlers import Handler, StepContext
from handlers.http import destination, post, result_of

_ICON = {"completed": "✅", "failed": "❌"}
_COLOR = {"completed": 0x2EB67D, "failed": 0xE01E5A}


def links(context: dict[str, Any]) -> list[dict[str, str]]:
    """One ``{name, url, kind}`` per output, pointing at a mirrored copy when there is one."""
    mirrored: list[str] = []
    for result in context["steps"].values():
        if isinstance(result, dict) and result.get("presigned_urls"):
            mirrored = result["presigned_urls"]
            break
    found = []
    for index, output in enumerate(context["outputs"]):
        url = mirrored[index] if index < len(mirrored) else output["url"]
        found.append({"name": output["filename"], "url": url, "kind": output["kind"]})
    return found


def headline(context: dict[str, Any]) -> str:
    job, status = context["job"], context["event"]["status"]
    return f"{_ICON.get(status, '🔔')} {job['model']} {status}: {job['id']}"


def slack_message(context: dict[str, Any]) -> dict[str, Any]:
    items = links(context)
    lines = [f"*{headline(context)}*"]
    if context["event"].get("error"):
        lines.append(f"Reason: {context['event']['error']}")
    lines += [f"<{item['url']}|{item['name']}>" for item in items]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    ]
    blocks += [
        {"type": "image", "image_url": item["url"], "alt_text": item["name"]}
        for item in items
        if item["kind"] == "image"
    ][:5]
    return {"text": headline(context), "blocks": blocks}


def discord_message(context: dict[str, Any]) -> dict[str, Any]:
    items = links(context)
    status = context["event"]["status"]
    description = "\n".join(f"[{item['name']}]({item['url']})" for item in items)
    embed: dict[str, Any] = {
        "title": headline(context)[:256],
        "color": _COLOR.get(status, 0),
        "description": description[:4096],
    }
    if context["event"].get("error"):
        embed["fields"] = [{"name": "Reason", "value": str(context["event"]["error"])[:1024]}]
    images = [item for item in items if item["kind"] == "image"]
    if images:
        embed["image"] = {"url": images[0]["url"]}
    return {"embeds": [embed]}


class ChatConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    webhook_url: Annotated[str, Meta(pattern=r"^(https?://|{{)")]
    text: str | None = None
    timeout: Annotated[float, Meta(gt=0, le=120)] = 15.0


class DiscordConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    webhook_url: Annotated[str, Meta(pattern=r"^(https?://|{{)")]
    content: str | None = None
    username: str | None = None
    timeout: Annotated[float, Meta(gt=0, le=120)] = 15.0


class SlackHandler(Handler):
    type_name = "slack"
    Config = ChatConfig
    templates = ("webhook_url", "text")
    result_sample = {"status_code": 200}

    async def run(self, step: StepContext) -> dict[str, Any]:
        if step.has("text"):
            message: dict[str, Any] = {"text": step.render("text")}
        else:
            message = slack_message(step.context)
        response = await post(
            step.services.session,
            await destination(step, "webhook_url", self.config.webhook_url),
            msgspec.json.encode(message),
            {"idempotency-key": step.idempotency_key},
            timeout=self.config.timeout,
        )
        return result_of(response)


class DiscordHandler(Handler):
    type_name = "discord"
    Config = DiscordConfig
    templates = ("webhook_url", "content")
    result_sample = {"status_code": 200}

    async def run(self, step: StepContext) -> dict[str, Any]:
        if step.has("content"):
            message: dict[str, Any] = {"content": str(step.render("content"))[:2000]}
        else:
            message = discord_message(step.context)
        if self.config.username:
            message["username"] = self.config.username
        response = await post(
            step.services.session,
            await destination(step, "webhook_url", self.config.webhook_url),
            msgspec.json.encode(message),
            {"idempotency-key": step.idempotency_key},
            timeout=self.config.timeout,
        )
        return result_of(response)
