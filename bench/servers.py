"""The processes the benchmark starts besides taskhook itself, one per process.

    python -m bench.servers raw      --port P   # baseline B: a no-op raw ASGI app
    python -m bench.servers litestar --port P   # baseline A: a no-op Litestar JSON endpoint
    python -m bench.servers sim      --port P [--preload FILE] [simulator options]
    python -m bench.servers moto     --port P   # moto's S3 server (ThreadedMotoServer)

The two baselines run under uvicorn with the settings ``service.server.Server`` gives
taskhook (one worker, no access log, the same loop and HTTP implementation), and answer the
callback route's shape: ``POST /hooks/{job_id}/{token}`` with a JSON body, which they read
and ignore. Every other request gets the same answer (the raw app is also the capture
endpoint of the end-to-end scenario's ``webhook`` forward).

``sim --preload FILE`` starts the Unified Tasks API simulator with tasks already
``completed`` (one task id per line): taskhook's ``verify: fetch`` of a callback for a job
created directly in its database then finds its task, as it would upstream. This reaches
into the simulator's task table (``Simulator._tasks``); it is a benchmark fixture only.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

import uvicorn

NOOP_BODY = b'{"received":true,"duplicate":false,"event_id":1}'


# ---- baseline B: raw ASGI ----------------------------------------------------------------


async def raw_app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # read the body, as the callback receiver does
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(NOOP_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": NOOP_BODY})


# ---- baseline A: Litestar ------------------------------------------------------------------


def litestar_app() -> Any:
    from litestar import Litestar, Request, get, post

    @post("/hooks/{job_id:str}/{token:str}", status_code=200)
    async def hook(request: Request, job_id: str, token: str) -> dict[str, Any]:
        await request.body()
        return {"received": True, "duplicate": False, "event_id": 1}

    @get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return Litestar(route_handlers=[hook, readyz], logging_config=None, openapi_config=None)


# ---- the simulator, optionally with completed tasks ----------------------------------------


def sim_app(args: argparse.Namespace) -> Any:
    from service import simulator as sim

    settings = sim.settings_from_args(args)
    simulator = sim.Simulator(settings)
    if args.preload:
        now = time.time()
        base = f"http://127.0.0.1:{args.port}"
        with open(args.preload) as lines:
            for line in lines:
                task_id = line.strip()
                if not task_id:
                    continue
                simulator._tasks[task_id] = sim.SimTask(
                    id=task_id,
                    model="google/nano-banana",
                    kind="image",
                    input={"prompt": "bench"},
                    callback_url=None,
                    base_url=base,
                    plan=sim.Plan(),
                    created_at=now,
                    status="completed",
                    output={"image_url": f"{base}/files/{task_id}/output.png"},
                    files={"output.png": sim.SMALL_MEDIA_BYTES},
                )
    return simulator.create_app()


# ---- moto ----------------------------------------------------------------------------------


def run_moto(port: int) -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"moto on http://127.0.0.1:{port}", flush=True)
    stop.wait()
    server.stop()
    return 0


def serve(app: Any, port: int) -> int:
    # The settings of service.server.Server: one worker, no access log, loop/http "auto".
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=15,
    )
    uvicorn.Server(config).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("raw", "litestar", "moto"):
        p = sub.add_parser(kind)
        p.add_argument("--port", type=int, required=True)
    p = sub.add_parser("sim")
    from service import simulator as sim

    sim.add_arguments(p)
    p.add_argument("--preload", help="a file of task ids to create as completed tasks")
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.kind == "raw":
        return serve(raw_app, args.port)
    if args.kind == "litestar":
        return serve(litestar_app(), args.port)
    if args.kind == "moto":
        return run_moto(args.port)
    if args.kind == "sim":
        return serve(sim_app(args), args.port)
    return 2


if __name__ == "__main__":
    sys.exit(main())
