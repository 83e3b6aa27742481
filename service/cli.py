"""The ``taskhook`` command line: run the service, check a config, and talk to a running one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import httpx

from service import __version__, catalog
from service.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("completed", "failed", "rejected")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"error: cannot reach taskhook at {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `taskhook models | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="taskhook", description=__doc__)
    parser.add_argument("--version", action="version", version=f"taskhook {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")
    _serve_parser(sub)
    check = sub.add_parser("check", help="validate a config file")
    check.add_argument(
        "-c", "--config", help="config file (default $TASKHOOK_CONFIG, then ./taskhook.yaml)"
    )
    check.set_defaults(func=cmd_check)
    _client_parsers(sub)
    models = sub.add_parser("models", help="the model catalog")
    models.add_argument("model", nargs="?", help="show one model's parameters")
    models.add_argument("--kind", choices=["video", "image", "audio", "text"])
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=cmd_models)
    simulator = sub.add_parser("simulator", help="run the Unified Tasks API simulator alone")
    from service import simulator as sim

    sim.add_arguments(simulator)
    simulator.set_defaults(func=sim.run)
    return parser


def _serve_parser(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the API, the callback receiver and the workers")
    serve.add_argument(
        "-c", "--config", help="config file (default $TASKHOOK_CONFIG, then ./taskhook.yaml)"
    )
    serve.add_argument("--host", help="bind address (default: server.host)")
    serve.add_argument("--port", type=int, help="port (default: server.port)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="no config, no network: embedded simulator, files under ./taskhook-demo/",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)


def _client_parsers(sub: Any) -> None:
    def client(name: str, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help)
        parser.add_argument(
            "--url",
            default=os.environ.get("TASKHOOK_URL", DEFAULT_URL),
            help="the taskhook server (default $TASKHOOK_URL or "
            f"{DEFAULT_URL}); the key comes from $TASKHOOK_API_KEY",
        )
        return parser

    submit = client("submit", "submit a job")
    submit.add_argument("model")
    submit.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an input field; VALUE is read as JSON when it parses, else text",
    )
    submit.add_argument("--input-json", help="the whole input as a JSON object")
    submit.add_argument("--tag", action="append", default=[])
    submit.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--dry-run", action="store_true", help="price it, create nothing")
    submit.add_argument("--wait", action="store_true", help="follow the job to its end")
    submit.add_argument("--timeout", type=float, default=600.0, help="--wait gives up after")
    submit.set_defaults(func=cmd_submit)
    jobs = client("jobs", "list jobs, newest first")
    jobs.add_argument("--status", choices=["accepted", "submitted", *TERMINAL])
    jobs.add_argument("--model")
    jobs.add_argument("--tag")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--cursor", help="the next_cursor of the previous page")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(func=cmd_jobs)
    show = client("show", "show a job with its callbacks and steps")
    show.add_argument("job_id")
    show.set_defaults(func=cmd_show)
    replay = client("replay", "run a job's rules again, or every job matching a filter")
    replay.add_argument("job_id", nargs="?", help="one job (or use --status / --since)")
    replay.add_argument(
        "--status",
        choices=["pending", "running", "succeeded", "retrying", "dead"],
        help="jobs with a step in this status",
    )
    replay.add_argument("--since", help="steps (or jobs) updated within this long, e.g. 1h")
    replay.add_argument(
        "--force",
        action="store_true",
        help="also rerun steps that already succeeded (or resend an ambiguous submission)",
    )
    replay.set_defaults(func=cmd_replay)
    adopt = client("adopt", "attach a task found upstream to an ambiguous job")
    adopt.add_argument("job_id")
    adopt.add_argument("task_id")
    adopt.set_defaults(func=cmd_adopt)


# ---- serve / check -------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from service import config as config_module
    from service.app import create_app
    from service.server import Server

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every URL it requests at INFO: callback URLs and chat webhook URLs carry
    # credentials in their path, so keep it to warnings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.demo:
        from service.demo import demo_app

        app, host, port = demo_app(args.port or 8000)
    else:
        config = config_module.load(args.config)
        app = create_app(config)
        host = args.host or config.server.host
        port = args.port if args.port is not None else config.server.port
    Server(app, host, port, args.log_level).run()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from service import config as config_module

    config = config_module.load(args.config)
    steps = sum(len(rule.steps) for rule in config.rules)
    print(f"{config.source}: valid ({len(config.rules)} rule(s), {steps} step(s))")
    return 0


# ---- client commands -----------------------------------------------------------------------


class ApiError(Exception):
    pass


def _client(args: argparse.Namespace) -> httpx.Client:
    key = os.environ.get("TASKHOOK_API_KEY") or "demo"
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {key}"}, timeout=60.0)


def _check(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    if response.status_code >= 400:
        detail = body.get("detail", body) if isinstance(body, dict) else body
        problems = [
            item
            for item in (body.get("extra") or [] if isinstance(body, dict) else [])
            if isinstance(item, dict) and "path" in item
        ]
        if problems:
            detail = str(detail).split(": ", 1)[0] + ":"
        lines = [f"{response.status_code}: {detail}"]
        lines += [f"  {item['path']}: {item['message']}" for item in problems]
        raise ApiError("\n".join(lines))
    return body


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(f"{what} {item!r} must look like KEY=VALUE")
        result[key] = _value(value)
    return result


def _job_body(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if args.input_json:
        try:
            data = json.loads(args.input_json)
        except ValueError as exc:
            raise ApiError(f"--input-json is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError("--input-json must be a JSON object")
    data.update(_pairs(args.input, "--input"))
    body = {
        "model": args.model,
        "input": data,
        "tags": args.tag,
        "metadata": _pairs(args.metadata, "--metadata"),
    }
    if args.dry_run:
        body["dry_run"] = True
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    with _client(args) as client:
        job = _check(client.post("/v1/jobs", json=_job_body(args), headers=headers))
        if args.dry_run:
            print(json.dumps(job, indent=2))
            return 0
        print(f"job {job['id']}: {job['status']}")
        if not args.wait:
            return 0
        print(f"waiting for {job['id']} (Ctrl-C stops waiting, not the job)")
        job = _follow(client, job, args.timeout)
    _print_result(job)
    return 0 if job["status"] == "completed" and _steps_done(job) else 1


def _steps_done(job: dict[str, Any]) -> bool:
    return all(run["status"] == "succeeded" for run in job.get("runs", []))


def _steps_settled(job: dict[str, Any]) -> bool:
    return all(run["status"] in ("succeeded", "dead") for run in job.get("runs", []))


def _follow(client: httpx.Client, job: dict[str, Any], timeout: float) -> dict[str, Any]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while True:
        for line in _progress(job):
            if line not in seen:
                seen.add(line)
                print(line, flush=True)
        if job["status"] in TERMINAL and _steps_settled(job):
            return job
        if time.monotonic() > deadline:
            raise ApiError(f"gave up waiting after {timeout:.0f}s (status {job['status']})")
        time.sleep(0.5)
        job = _check(client.get(f"/v1/jobs/{job['id']}"))


def _progress(job: dict[str, Any]) -> list[str]:
    lines = [f"  status: {job['status']}"]
    for event in job.get("events", []):
        flags = ", duplicate" if event["duplicate"] else ""
        lines.append(f"  {event['source']} #{event['id']}: {event['status']}{flags}")
    for run in job.get("runs", []):
        lines.append(
            f"  step {run['rule']}/{run['handler']}: {run['status']}"
            + (f" ({run['last_error']})" if run.get("last_error") else "")
        )
    return lines


def _print_result(job: dict[str, Any]) -> None:
    print(f"job {job['id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
    for output in job.get("outputs", []):
        print(f"  output {output['index']} ({output['kind']}): {output['url']}")
    for child in job.get("children", []):
        print(f"  follow-up job: {child} (taskhook show {child})")
    for run in job.get("runs", []):
        for key in ("paths", "urls", "presigned_urls"):
            for item in (run.get("result") or {}).get(key, []):
                print(f"  {run['handler']} -> {item}")
            if (run.get("result") or {}).get(key):
                break


def cmd_jobs(args: argparse.Namespace) -> int:
    params = {
        k: v
        for k, v in {
            "cursor": args.cursor,
            "status": args.status,
            "model": args.model,
            "tag": args.tag,
            "limit": args.limit,
        }.items()
        if v is not None
    }
    with _client(args) as client:
        page = _check(client.get("/v1/jobs", params=params))
    if args.json:
        print(json.dumps(page, indent=2))
        return 0
    for job in page["data"]:
        print(f"{job['id']}  {job['status']:<9}  {job['created_at']}  {job['model']}")
    if not page["data"]:
        print("no jobs")
    if page.get("next_cursor"):
        print(f"more: taskhook jobs --cursor {page['next_cursor']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(json.dumps(_check(client.get(f"/v1/jobs/{args.job_id}")), indent=2))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if bool(args.job_id) == bool(args.status or args.since):
        raise ApiError("give a JOB_ID, or --status and/or --since (not both)")
    with _client(args) as client:
        if args.job_id:
            body = _check(client.post(f"/v1/jobs/{args.job_id}/replay", json={"force": args.force}))
            print(
                f"job {body['job_id']}: {body['steps_scheduled']} step(s) scheduled"
                + (", submission resent" if body.get("resubmitted") else "")
            )
        else:
            query = {"status": args.status, "since": args.since, "force": args.force}
            body = _check(
                client.post("/v1/replay", json={k: v for k, v in query.items() if v is not None})
            )
            print(f"{len(body['jobs'])} job(s), {body['steps_scheduled']} step(s) scheduled")
    if body["steps_scheduled"] == 0 and not args.force and not body.get("resubmitted"):
        print("nothing to do: every step already succeeded (--force runs them again)")
    return 0


def _param_text(param: dict[str, Any]) -> str:
    facts = [param["type"], "required" if param.get("required") else "optional"]
    if param.get("required_if"):
        facts.append(f"required if {param['required_if']}")
    if param.get("allowed"):
        facts.append("one of " + ", ".join(map(str, param["allowed"])))
    if param.get("minimum") is not None or param.get("maximum") is not None:
        facts.append(f"{param.get('minimum', '')}..{param.get('maximum', '')}")
    for key, label in (
        ("max_length", "max length"),
        ("max_items", "max items"),
        ("default", "default"),
    ):
        if param.get(key) is not None:
            facts.append(f"{label} {param[key]}")
    return f"  {param['name']:<24} " + "; ".join(facts)


def _model_text(model: dict[str, Any]) -> str:
    lines = [f"{model['name']} ({model['kind']}): {model.get('description', '')}"]
    params = model.get("parameters") or []
    lines.append("parameters:" if params else "parameters: not documented (any are accepted)")
    lines += [_param_text(p) for p in params]
    if model.get("rules"):
        lines.append("rules:")
        lines += [f"  - {rule}" for rule in model["rules"]]
    return "\n".join(lines)


def cmd_adopt(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = _check(client.post(f"/v1/jobs/{args.job_id}/adopt", json={"task_id": args.task_id}))
    print(f"job {body['job_id']}: task {body['upstream_task_id']} attached; it is polled now")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.model:
        spec = catalog.get(args.model)
        if spec is None:
            hint = catalog.suggest(args.model)
            raise ApiError(
                f"unknown model {args.model!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
            )
        described = catalog.describe(spec)
        print(json.dumps(described, indent=2) if args.json else _model_text(described))
        return 0
    models = [m for m in catalog.all_models() if args.kind in (None, m.kind)]
    if args.json:
        print(json.dumps([catalog.describe(m) for m in models], indent=2))
        return 0
    for model in models:
        print(f"{model.name:<42} {model.kind:<6} {model.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
