"""``webhook``: POSTs a JSON document to ``url``, signed per Standard Webhooks with ``secret``.

The body is the rendered ``body`` template when given, else a document with the job, the
event, the outputs and earlier steps' results. ``webhook-id`` is derived from the step, so
every retry of one step carries the same id and receivers can deduplicate.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from handlers import Handler, StepContext
from handlers.http import destination, post, result_of
from service.security import sign


class WebhookConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, Meta(pattern=r"^(https?://|{{)")]
    secret: Annotated[str, Meta(pattern=r"^whsec_[A-Za-z0-9+/=]+$")] | None = None
    headers: dict[str, str] = {}
    body: Any = None
    timeout: Annotated[float, Meta(gt=0, le=120)] = 15.0


def default_body(context: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": f"job.{context['event']['status']}",
        "job": context["job"],
        "event": context["event"],
        "outputs": context["outputs"],
        "steps": context["steps"],
    }


class WebhookHandler(Handler):
    type_name = "webhook"
    Config = WebhookConfig
    templates = ("url", "headers", "body")
    result_sample = {"status_code": 200, "webhook_id": "msg_sample"}

    async def run(self, step: StepContext) -> dict[str, Any]:
        body = step.render("body") if self.config.body is not None else default_body(step.context)
        content = msgspec.json.encode(body)
        msg_id = f"msg_{step.idempotency_key}"
        headers = {
            **step.render("headers"),
            "webhook-id": msg_id,
            "idempotency-key": step.idempotency_key,
        }
        if self.config.secret:
            timestamp = int(time.time())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self.config.secret, msg_id, timestamp, content)
        response = await post(
            step.services.session,
            await destination(step, "url", self.config.url),
            content,
            headers,
            timeout=self.config.timeout,
        )
        return result_of(response, webhook_id=msg_id)
