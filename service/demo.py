"""``taskhook serve --demo``: the whole chain on one machine, with no config and no network.

The simulator of the Unified Tasks API is mounted at ``/simulator`` of the same server; jobs
are stored in ``./taskhook-demo/taskhook.db``; outputs are copied to ``./taskhook-demo/files``;
the webhook and Slack steps post to a local inbox at ``/demo/inbox`` (``GET`` it to read).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, get, post

from service import config as config_module
from service.app import create_app
from service.simulator import Simulator, SimulatorSettings

DEMO_DIR = Path("taskhook-demo")
log = logging.getLogger("taskhook.demo")


def _secret(directory: Path) -> str:
    """A callback secret kept across restarts, so jobs submitted earlier still verify."""
    path = directory / "secret"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_config(port: int, directory: Path = DEMO_DIR) -> config_module.Config:
    base = f"http://127.0.0.1:{port}"
    data: dict[str, Any] = {
        "server": {
            "public_url": base,
            "host": "127.0.0.1",
            "port": port,
            "api_keys": [os.environ.get("TASKHOOK_API_KEY") or "demo"],
            "secret": _secret(directory),
        },
        "storage": {"url": f"sqlite:///{directory / 'taskhook.db'}"},
        "upstream": {
            "base_url": f"{base}/simulator",
            "api_key": "demo-upstream",
            "reconcile_after": "20s",
        },
        "security": {"allow_private_networks": True},  # the simulator serves from 127.0.0.1
        "handlers": {
            "files": {
                "type": "local",
                "directory": str(directory / "files"),
                "path": "{{ job.model | replace('/', '_') }}/{{ job.id }}/{{ output.filename }}",
            },
            "forward": {
                "type": "webhook",
                "url": f"{base}/demo/inbox/webhook",
                "secret": "whsec_" + "ZGVtby1zaWduaW5nLWtleS1ub3QtYS1zZWNyZXQ=",
            },
            "team": {"type": "slack", "webhook_url": f"{base}/demo/inbox/slack"},
            "animate": {
                "type": "followup",
                "model": "kuaishou/kling-2.6-video",
                "input": {
                    "prompt": "{{ job.input.prompt }}, slowly coming to life",
                    "start_frame_url": "{{ outputs[0].url }}",
                    "duration": 5,
                },
                "tags": ["animated"],
                "budget": {"max_chain_cost": 1.0},
            },
        },
        "rules": [
            {
                "name": "copy-and-forward",
                "match": {"status": "completed"},
                "handlers": [
                    "files",
                    {
                        "handler": "forward",
                        "with": {
                            "body": {
                                "job": "{{ job.id }}",
                                "model": "{{ job.model }}",
                                "files": "{{ steps.files.paths | join(', ') }}",
                            }
                        },
                    },
                ],
            },
            {"name": "tell-the-team", "handlers": ["team"]},
            {
                "name": "animate-tagged-images",
                "match": {
                    "status": "completed",
                    "model": "google/nano-banana",
                    "tags": ["animate"],
                },
                "handlers": ["animate"],
            },
        ],
    }
    return config_module.parse(data, source="<demo>")


def _inbox_handlers() -> list[Any]:
    received: list[dict[str, Any]] = []

    @post("/demo/inbox/{channel:str}", status_code=200, include_in_schema=False)
    async def deliver(request: Request, channel: str) -> dict[str, bool]:
        body = await request.json()
        received.append({"channel": channel, "body": body})
        summary = body.get("text") or body.get("type") or body.get("job") or "a message"
        log.info("demo inbox <- %s: %s", channel, str(summary).splitlines()[0][:120])
        return {"ok": True}

    @get("/demo/inbox", include_in_schema=False)
    async def read() -> list[dict[str, Any]]:
        return received

    return [deliver, read]


def demo_app(port: int, directory: Path = DEMO_DIR) -> tuple[Litestar, str, int]:
    config = demo_config(port, directory)
    simulator = Simulator(
        SimulatorSettings(api_key="demo-upstream", pending_seconds=0.5, processing_seconds=1.5)
    )
    app = create_app(
        config,
        extra_handlers=[simulator.router("/simulator"), *_inbox_handlers()],
        on_shutdown=[simulator.aclose],
    )
    _print_welcome(config, port, directory)
    return app, "127.0.0.1", port


def _print_welcome(config: config_module.Config, port: int, directory: Path) -> None:
    key = config.server.api_keys[0]
    url = f"http://127.0.0.1:{port}"
    print(
        f"""
taskhook demo on {url}  (API key: {key}; simulated upstream at {url}/simulator/v1/tasks)
Data: {directory}/taskhook.db   Copied outputs: {directory}/files/

Try it from another terminal:
  taskhook submit google/nano-banana -i prompt="a red fox" -i aspect_ratio=1:1 --wait
  curl -s -X POST {url}/v1/jobs -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "google/nano-banana",
            "input": {{"prompt": "a red fox", "aspect_ratio": "1:1"}}}}'
  taskhook submit google/nano-banana -i prompt="a red fox" -i aspect_ratio=1:1 \\
       --tag animate --wait   # a follow-up turns the image into a video
  taskhook jobs            # list;  taskhook show JOB_ID  # callbacks and steps
  curl -s {url}/demo/inbox # what the webhook and Slack steps posted
API docs: {url}/schema
""",
        flush=True,
    )
