"""taskhook's benchmark suite: one command, everything on 127.0.0.1, a Markdown table.

    python -m bench.run                 # the full run (6 to 10 minutes; 10 s per load run)
    python -m bench.run --quick         # a smoke check (3 s per load run, smaller sets)
    python -m bench.run --skip-memory   # without the 1 GiB S3 mirror
    python -m bench.run --help          # every option

Run it from the repository root with the project's virtual environment active. It needs
wrk (Debian/Ubuntu: ``apt-get install -y wrk``) and, for the profile, py-spy
(``pip install py-spy``; without it the profile is skipped).

Every figure is reported next to a baseline measured in the same run (this machine is shared
and noisy): callback ingest against a no-op Litestar endpoint and a no-op raw ASGI app under
the same load, API latencies against ``/healthz`` on the same server, start-up and idle
memory against the no-op Litestar app. After each ingest run the bench waits (at most
``--drain-timeout`` seconds) until every stored callback has been verified, and reports how
long that took. The profiles use ``py-spy --native`` where it works (the C frames of uvloop
tell its epoll wait from its own work), at 25 samples/s: native samples cost more. See
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` works as well as `python -m bench.run`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import msgspec  # noqa: E402
import yaml  # noqa: E402

LUA = ROOT / "bench" / "hooks.lua"
SOURCE = ROOT  # the tree whose service/ and handlers/ are measured (--ref exports another)
API_KEY = "bench-api-key-0123456789"
SECRET = "bench-secret-0123456789-0123456789-abcdef"
SIM_KEY = "bench-sim-key"
MIB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
TERMINAL = ("completed", "failed", "rejected")
CALLBACK_BODY = {"status": "completed", "data": {"image_url": "https://cdn.example.com/x.png"}}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TASKHOOK_", "UNIFICALLY_", "SLACK_", "AWS_"))
    }
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent-bench-aws-config",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent-bench-aws-credentials",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(
            dict.fromkeys(filter(None, [str(SOURCE), str(ROOT), os.environ.get("PYTHONPATH")]))
        ),
    )
    return env


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process, by native thread id."""
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    return result


def memory_kib(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def busy_cores_counter() -> tuple[float, float]:
    """(busy ticks of all CPUs, wall time): for the machine's load during a run."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS, time.monotonic()


class Proc:
    """A child process with its log in the work directory; stopped by its own pid only."""

    running: list[Proc] = []

    def __init__(self, name: str, argv: list[str], workdir: Path, url: str | None = None):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.url = url
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_path: str | None = "/readyz", timeout: float = 60.0) -> float:
        """Starts the process; returns the seconds until ``ready_path`` answered 200."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env=clean_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C of the bench does not hit it first
        )
        log_file.close()
        Proc.running.append(self)
        if ready_path is None or self.url is None:
            return 0.0
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() - started < timeout:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.tail()}")
                try:
                    if client.get(self.url + ready_path).status_code == 200:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not become ready in {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self in Proc.running:
            Proc.running.remove(self)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @classmethod
    def stop_all(cls) -> None:
        for proc in list(cls.running):
            with contextlib.suppress(Exception):
                proc.stop(timeout=10)


def taskhook_argv(config: Path) -> list[str]:
    script = Path(sys.executable).with_name("taskhook")
    if script.exists():
        return [str(script), "serve", "-c", str(config)]
    return [sys.executable, "-m", "service.cli", "serve", "-c", str(config)]


def helper_argv(kind: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench.servers", kind, "--port", str(port), *extra]


def start_helper(name: str, kind: str, workdir: Path, *extra: str, ready: str = "/") -> Proc:
    port = free_port()
    proc = Proc(name, helper_argv(kind, port, *extra), workdir, f"http://127.0.0.1:{port}")
    # any HTTP answer means it listens (the simulator answers 404 on /)
    proc.start(ready_path=None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{proc.tail()}")
        try:
            httpx.get(proc.url + ready, timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.02)
    raise RuntimeError(f"{name} did not start:\n{proc.tail()}")


def start_sim(workdir: Path, name: str = "simulator", *extra: str) -> Proc:
    return start_helper(
        name, "sim", workdir, "--api-key", SIM_KEY, "--seed", "7", *extra, ready="/_sim/stats"
    )


def write_config(
    directory: Path,
    port: int,
    sim_url: str,
    db: Path,
    *,
    verify: str = "fetch",
    handlers: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "server": {
            "public_url": f"http://127.0.0.1:{port}",
            "host": "127.0.0.1",
            "port": port,
            "api_keys": [API_KEY],
            "secret": SECRET,
        },
        "storage": {"url": f"sqlite:///{db}"},
        "upstream": {"base_url": sim_url, "api_key": SIM_KEY, "verify": verify},
        "security": {"allow_private_networks": True},  # the simulator serves from 127.0.0.1
        "handlers": handlers or {},
        "rules": rules or [],
    }
    path = directory / "bench-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def service(name: str, workdir: Path, config: Path, port: int, argv: list[str] | None = None):
    return Proc(name, argv or taskhook_argv(config), workdir, f"http://127.0.0.1:{port}")


# ---- the store, filled directly ----------------------------------------------------------------


def create_schema(db: Path) -> None:
    """Lets the service's own store create (migrate) the schema."""
    from service.sqlite_store import SQLiteStore

    async def go() -> None:
        store = SQLiteStore(str(db))
        await store.open()
        await store.close()

    asyncio.run(go())


def job_rows(jobs: list[Any]) -> tuple[str, list[list[Any]]]:
    from service.sqlite_store import _JSON_FIELDS  # the store's own JSON columns
    from service.store import Job

    columns = list(Job.__struct_fields__)
    json_fields = set(_JSON_FIELDS["jobs"])
    rows = []
    for job in jobs:
        values = msgspec.structs.asdict(job)
        rows.append(
            [
                msgspec.json.encode(values[c])
                if c in json_fields and values[c] is not None
                else values[c]
                for c in columns
            ]
        )
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})", rows


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def checkpoint(db: Path) -> None:
    with contextlib.closing(connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def scalar(db: Path, sql: str, params: tuple = ()) -> Any:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        conn.execute("PRAGMA busy_timeout=30000")
        return conn.execute(sql, params).fetchone()[0]


# ---- wrk -------------------------------------------------------------------------------------


def check_tools() -> None:
    if shutil.which("wrk") is None:
        print(
            "bench: wrk is not installed. It is the load generator of this benchmark.\n"
            "  Debian/Ubuntu: sudo apt-get install -y wrk   (check: apt-cache policy wrk)\n"
            "  macOS: brew install wrk",
            file=sys.stderr,
        )
        sys.exit(2)


def wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0].strip()


def run_wrk(
    url: str, requests_file: Path, seconds: int, args: argparse.Namespace, log_path: Path
) -> dict[str, Any]:
    argv = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests_file),
        str(args.threads),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    ended_at = time.time()  # wall clock, as the service stamps its rows
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log_path.open("a") as f:
        f.write("$ " + " ".join(argv) + "\n" + out.stdout + out.stderr + "\n")
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    result = json.loads(line.removeprefix("WRK_JSON "))
    result["seconds"] = result["duration_us"] / 1e6
    result["ended_at"] = ended_at
    result["rps"] = result["requests"] / result["seconds"]
    result["ok"] = sum(n for code, n in result["statuses"].items() if 200 <= int(code) < 300)
    result["not_ok"] = result["requests"] - result["ok"]
    errors = result["errors"]
    result["socket_errors"] = errors["connect"] + errors["read"] + errors["write"]
    result["timeouts"] = errors["timeout"]
    result["wrk_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


def load_run(
    server: Proc,
    requests_file: Path,
    seconds: int,
    args: argparse.Namespace,
    log_path: Path,
    others: tuple[Proc, ...] = (),
) -> dict[str, Any]:
    """One wrk run with the CPU used by the server, the helpers, wrk and everything else."""
    cpu0 = cpu_seconds(server.pid)
    threads0 = thread_cpu(server.pid)
    others0 = sum(cpu_seconds(p.pid) for p in others)
    busy0, wall0 = busy_cores_counter()
    result = run_wrk(server.url, requests_file, seconds, args, log_path)
    busy1, wall1 = busy_cores_counter()
    cpu1 = cpu_seconds(server.pid)
    threads1 = thread_cpu(server.pid)
    others1 = sum(cpu_seconds(p.pid) for p in others)
    deltas = {t: c - threads0.get(t, 0.0) for t, c in threads1.items()}
    result["loop_cores"] = deltas.get(server.pid, 0.0) / result["seconds"]
    result["thread_cores"] = {t: d / result["seconds"] for t, d in deltas.items() if d > 0}
    result["server_cpu"] = cpu1 - cpu0
    result["helpers_cpu"] = others1 - others0
    result["server_cores"] = result["server_cpu"] / result["seconds"]
    result["cpu_us_per_req"] = result["server_cpu"] / max(1, result["requests"]) * 1e6
    wall = wall1 - wall0
    ours = result["server_cpu"] + result["helpers_cpu"] + result["wrk_cpu"]
    result["background_cores"] = max(0.0, (busy1 - busy0) - ours) / wall
    return result


def request_file(path: Path, entries: list[tuple[str, str]]) -> Path:
    """One request per line: path, a tab, the JSON body."""
    with path.open("w") as f:
        for url_path, task_id in entries:
            body = msgspec.json.encode({"task_id": task_id, **CALLBACK_BODY}).decode()
            f.write(f"{url_path}\t{body}\n")
    return path


# ---- scenario: callback ingest -----------------------------------------------------------------


class IngestSets:
    """Jobs stored directly in a template database (status ``submitted``, with a task id
    the simulator knows), in disjoint sets: warm-up, the measured run, the profiled run."""

    def __init__(self, workdir: Path, args: argparse.Namespace) -> None:
        from service.security import callback_token, new_job_id
        from service.store import Job

        self.dir = workdir / "ingest"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.template = self.dir / "template.db"
        cap = args.max_rate
        sizes = {
            "warm": max(2000, cap * args.warmup),
            "main": max(5000, cap * args.duration),
            "profile": max(5000, cap * args.profile_seconds),
        }
        now = time.time()
        create_schema(self.template)
        jobs: list[Any] = []
        self.files: dict[str, Path] = {}
        self.sizes = sizes
        all_tasks: list[str] = []
        for name, size in sizes.items():
            entries = []
            for _ in range(size):
                job_id = new_job_id(now)
                task_id = secrets.token_hex(8)
                jobs.append(
                    Job(
                        id=job_id,
                        model="google/nano-banana",
                        input={"prompt": "a red fox", "aspect_ratio": "1:1"},
                        status="submitted",
                        upstream_task_id=task_id,
                        created_at=now,
                        updated_at=now,
                        next_attempt_at=now + 86400,  # no reconcile polls during the run
                    )
                )
                entries.append((f"/hooks/{job_id}/{callback_token(SECRET, job_id)}", task_id))
                all_tasks.append(task_id)
            random.Random(1).shuffle(entries)  # not in insertion order
            self.files[name] = request_file(self.dir / f"requests-{name}.txt", entries)
        sql, rows = job_rows(jobs)
        with contextlib.closing(connect(self.template)) as conn:
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.jobs_file = self.dir / "jobs-main.txt"
        self.jobs_file.write_text(
            "".join(f"{job.id}\t{job.upstream_task_id}\n" for job in jobs[sizes["warm"] :][:20000])
        )
        self.tasks_file = self.dir / "sim-tasks.txt"
        self.tasks_file.write_text("\n".join(all_tasks) + "\n")
        self.total = len(jobs)

    def database(self, name: str) -> Path:
        target = self.dir / name / "taskhook.db"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.template, target)
        return target


def callback_rows(db: Path) -> int:
    return scalar(db, "SELECT count(*) FROM events WHERE source = 'callback'")


def settled_count(db: Path, counter: Any, timeout: float = 10.0) -> int:
    """The count once it stops moving (commits of requests in flight when wrk stopped)."""
    last = counter(db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = counter(db)
        if now == last:
            return now
        last = now
    return last


def has_fast_path() -> bool:
    """Whether the service under test answers callbacks on a raw ASGI path of its own."""
    with contextlib.suppress(OSError):
        return "class FastPath" in (SOURCE / "service" / "receiver.py").read_text()
    return False


def ingest_variant(
    label: str,
    key: str,
    sets: IngestSets,
    args: argparse.Namespace,
    *,
    sim: Proc | None,
    sim_url: str,
    verify: str,
    profile: bool = False,
) -> dict[str, Any]:
    db = sets.database(key)
    port = free_port()
    config = write_config(sets.dir / key, port, sim_url, db, verify=verify)
    proc = service(f"service-{key}", sets.dir / key, config, port)
    proc.start()
    log_path = sets.dir / key / "wrk.log"
    others = (sim,) if sim else ()
    result: dict[str, Any] = {"label": label}
    try:
        run_wrk(proc.url, sets.files["warm"], args.warmup, args, log_path)
        time.sleep(1.0)
        settled_count(db, callback_rows)
        first = scalar(db, "SELECT COALESCE(MAX(id), 0) FROM events")
        if profile:
            result.update(profiled_run(proc, key, sets, args, log_path, others))
        else:
            result.update(load_run(proc, sets.files["main"], args.duration, args, log_path, others))
            result.update(after_the_answers(db, first, result["ended_at"], args))
    finally:
        proc.stop()
    return result


def profiled_run(
    proc: Proc,
    key: str,
    sets: IngestSets,
    args: argparse.Namespace,
    log_path: Path,
    others: tuple[Proc, ...],
) -> dict[str, Any]:
    raw = ROOT / "bench" / f"{key}.raw.txt"
    spy = start_py_spy(proc.pid, args.profile_seconds, raw, args)
    result = load_run(proc, sets.files["profile"], args.profile_seconds, args, log_path, others)
    finish_py_spy(spy)
    result["profile"] = raw
    if args.svg:
        svg = ROOT / "bench" / f"{key}.svg"
        spy = start_py_spy(proc.pid, args.profile_seconds, svg, args, svg=True)
        run_wrk(proc.url, sets.files["main"], args.profile_seconds, args, log_path)
        finish_py_spy(spy)
    return result


def count_events(db: Path, where: str, *params: Any) -> int:
    return scalar(db, f"SELECT count(*) FROM events WHERE {where}", params)


def wait_drained(db: Path, timeout: float) -> float:
    """Waits until no stored callback waits for verification (at most ``timeout`` s); returns
    the seconds waited."""
    started = time.monotonic()
    while count_events(db, "processed_at IS NULL") and time.monotonic() - started < timeout:
        time.sleep(0.2)
    return time.monotonic() - started


def after_the_answers(
    db: Path, first: int, ended_at: float, args: argparse.Namespace
) -> dict[str, Any]:
    """What became of the callbacks of the measured run (event ids above ``first``) after
    their answers: how many were verified before the load stopped (``ended_at``, wall clock:
    the service stamps ``processed_at`` with ``time.time()``), how many waited then, and how
    long the backlog (the warm-up's leftovers included) took to drain without load."""
    measured = f"source = 'callback' AND id > {int(first)}"
    committed = settled_count(db, lambda db: count_events(db, measured))
    waited = wait_drained(db, args.drain_timeout)
    left = count_events(db, "processed_at IS NULL")
    later = "(processed_at IS NULL OR processed_at >= ?)"
    drained = count_events(db, "duplicate = 0 AND processed_at >= ?", ended_at)
    last = scalar(db, "SELECT MAX(processed_at) FROM events") or ended_at
    drain_seconds = waited if left else max(0.0, last - ended_at)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        outcomes = conn.execute(
            f"SELECT verified, note, count(*) FROM events WHERE {measured} AND duplicate = 0"
            " AND processed_at IS NOT NULL GROUP BY verified, note ORDER BY count(*) DESC"
        ).fetchall()
    return {
        "committed": committed,
        "duplicates": count_events(db, f"{measured} AND duplicate = 1"),
        "verified_during": count_events(
            db, f"{measured} AND duplicate = 0 AND processed_at < ?", ended_at
        ),
        "waiting_at_end": count_events(db, f"{measured} AND duplicate = 0 AND {later}", ended_at),
        "warm_waiting_at_end": count_events(
            db, f"source = 'callback' AND id <= {int(first)} AND {later}", ended_at
        ),
        "drained": drained,
        "drain_seconds": drain_seconds,
        "drain_rate": drained / drain_seconds if drain_seconds > 0 else 0.0,
        "left": left,
        "left_measured": count_events(db, f"{measured} AND processed_at IS NULL"),
        "retried": count_events(db, f"{measured} AND attempts > 0"),
        "outcomes": [(verified, note, n) for verified, note, n in outcomes],
    }


BASELINES = (
    ("raw", "raw", "baseline B: no-op raw ASGI app"),
    ("litestar", "litestar", "baseline A: no-op Litestar JSON endpoint"),
)


def baseline_row(key: str, kind: str, label: str, sets: IngestSets, args: argparse.Namespace):
    proc = start_helper(f"baseline-{key}", kind, sets.dir, ready="/readyz")
    try:
        time.sleep(0.5)
        idle_rss = memory_kib(proc.pid)["VmRSS"]
        log_path = sets.dir / f"wrk-{key}.log"
        run_wrk(proc.url, sets.files["warm"], args.warmup, args, log_path)
        row = {"label": label, **load_run(proc, sets.files["main"], args.duration, args, log_path)}
    finally:
        proc.stop()
    row["idle_rss_kib"] = idle_rss
    return row


def ingest_specs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(key, label, verify) of the taskhook rows."""
    specs = [("ingest", "taskhook `POST /hooks/{job_id}/{token}`, verify: fetch", "fetch")]
    if not args.no_variants:
        specs.append(("trust", "taskhook, verify: trust (no simulator process)", "trust"))
    return specs


def scenario_ingest(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    log("ingest: storing jobs and writing request files")
    sets = IngestSets(workdir, args)
    report["ingest_sets"] = sets.sizes
    report["service_fast_path"] = has_fast_path()
    sim = start_sim(sets.dir, "simulator-ingest", "--preload", str(sets.tasks_file))
    rows: dict[str, dict[str, Any]] = {}
    for key, kind, label in BASELINES:
        log(f"ingest: {label}")
        rows[key] = baseline_row(key, kind, label, sets, args)
    specs = ingest_specs(args)
    for key, label, verify in specs:
        log(f"ingest: {label}")
        fetch = verify == "fetch"
        rows[key] = ingest_variant(
            label, key, sets, args, sim=sim if fetch else None, sim_url=sim.url, verify=verify
        )
    if args.profile:
        report["profiles"] = profile_rows(specs, sets, sim, args)
    sim.stop()
    report["ingest"] = rows
    report["_sets"] = sets


def profile_rows(
    specs: list[tuple[str, str, str]], sets: IngestSets, sim: Proc, args: argparse.Namespace
) -> dict[str, Any]:
    profiles = {}
    wanted = [k for k in args.profile_rows.split(",") if k]
    for key, label, verify in specs:
        if key not in wanted:
            continue
        log(f"ingest: profiling '{label}' with py-spy for {args.profile_seconds}s")
        run = ingest_variant(
            label,
            "profile-" + key,
            sets,
            args,
            sim=sim if verify == "fetch" else None,
            sim_url=sim.url,
            verify=verify,
            profile=True,
        )
        profiles[key] = {
            "label": label,
            "rps": run["rps"],
            "summary": summarise_profile(run["profile"]),
        }
    return profiles


def scenario_micro(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    sets = report.pop("_sets", None) or IngestSets(workdir, args)
    report["micro"] = micro_benchmarks(sets, args)


def micro(*argv: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.micro", *argv],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.micro {argv[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def micro_benchmarks(sets: IngestSets, args: argparse.Namespace) -> list[dict[str, Any]]:
    ops = str(8000 if not args.quick else 3000)
    rows = []
    log("micro: the store without HTTP")
    for label, mode in (
        ("`SQLiteStore.record_callback`, 64 at a time from the event loop (as is)", "store"),
        (
            "`_record_callback` on one thread, groups of 64, no event loop "
            "(the SQL work alone, as the store's thread runs it)",
            "sql",
        ),
    ):
        db = sets.database("micro")
        result = micro(mode, "--db", str(db), "--jobs", str(sets.jobs_file), "--ops", ops)
        rows.append({"group": "store", "label": label, **result})
    log("micro: the outgoing HTTP client")
    raw = start_helper("micro-noop", "raw", sets.dir, ready="/readyz")
    url = f"{raw.url}/v1/tasks/0123456789abcdef"
    requests = str(3000 if not args.quick else 1000)
    session = "aiohttp session of `service.http.new_session()`"
    try:
        for label, extra in (
            (f"{session} (as is), 32 at a time", ["--concurrency", "32"]),
            (f"{session}, one at a time", ["--concurrency", "1"]),
            (
                "httpx.AsyncClient, the service's client before aiohttp, 32 at a time (comparison)",
                ["--concurrency", "32", "--httpx"],
            ),
            (
                "minimal asyncio-streams client, 32 at a time (the floor)",
                ["--concurrency", "32", "--minimal"],
            ),
        ):
            result = micro("client", "--url", url, "--requests", requests, *extra)
            rows.append({"group": "client", "label": label, **result})
    finally:
        raw.stop()
    return rows


# ---- profile -----------------------------------------------------------------------------------


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else None


def py_spy_native_works() -> bool:
    """Whether ``py-spy --native`` can unwind a Python process here (it needs symbols and
    ptrace): one ``py-spy dump --native`` of a sleeping child."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        out = subprocess.run(
            [py_spy_path() or "py-spy", "dump", "--native", "--pid", str(child.pid)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        child.kill()
        child.wait()
    return out.returncode == 0 and "sleep" in out.stdout


def start_py_spy(
    pid: int, seconds: int, output: Path, args: argparse.Namespace, svg: bool = False
) -> subprocess.Popen:
    exe = py_spy_path()
    assert exe is not None
    fmt = ["--format", "flamegraph"] if svg else ["--format", "raw", "--idle"]
    argv = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(args.profile_rate),
        *(["--native"] if args.profile_native else []),
        "--threads",
        "--function",
        "--full-filenames",
        *fmt,
        "--output",
        str(output),
    ]
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)  # attached before the load starts
    return spy


def finish_py_spy(spy: subprocess.Popen) -> None:
    out, _ = spy.communicate(timeout=120)
    if spy.returncode != 0:
        log(f"py-spy failed: {out[-2000:]}")


# The categories of the event-loop thread's samples. With ``--native`` py-spy shows the C
# frames of uvloop, libuv, httptools and CPython too; without it, a sample inside uvloop's C
# code (its run_forever: waiting in epoll, or its own transport work) ends at the innermost
# Python frame, asyncio's Runner.run, and the two cannot be told apart.
IDLE = "idle: waiting in epoll"
GIL = "waiting for the GIL (another thread holds it)"
SOCKET_IO = "socket I/O (uvloop/libuv transports: read, write, accept, close)"
UVLOOP = "uvloop loop machinery (C: callbacks, handles, timers)"
UVLOOP_OPAQUE = (
    "inside uvloop's C code: idle in epoll or its own work (not told apart without --native)"
)
HTTP_SERVER = "uvicorn and HTTP parsing (protocol, httptools/h11, ASGI glue, proxy headers)"
CLIENT = "outgoing HTTP client (aiohttp)"
HOOK = "inside the hook handler (token, JSON, store call, answer)"

# C functions (``--native`` only), by name: the innermost frame that matches one decides.
NATIVE_FUNCS = (
    (("epoll_pwait", "epoll_wait"), IDLE),
    (("pthread_cond_wait", "pthread_cond_timedwait", "take_gil"), GIL),
    (("gc_collect_main", "gc_collect_with_callback"), "garbage collection (gc)"),
)
# The functions of uvloop and libuv that move bytes on sockets (the rest is loop machinery).
UV_SOCKET_FUNCS = (
    "UVStream",
    "UVTCP",
    "UVSocket",
    "UVHandle",
    "Transport",
    "uv__read",
    "uv__write",
    "uv__stream",
    "uv__server_io",
    "uv__accept",
    "uv_accept",
    "uv_close",
    "uv__close",
    "uv_try_write",
    "on_read",
    "on_listen",
    "streamserver",
)

STORE_ON_LOOP = "the store on the loop (quick groups' SQL, futures)"

# Where a sample of the event-loop thread goes: the innermost frame whose file matches.
SELF_MARKERS = (
    ("/selectors.py", IDLE),
    ("/hmac.py", "token check (HMAC, base64)"),
    ("/base64.py", "token check (HMAC, base64)"),
    ("_hashopenssl.c", "token check (HMAC, base64)"),
    ("libcrypto", "token check (HMAC, base64)"),
    ("/service/security.py", "token check (HMAC, base64)"),
    ("/msgspec/", "JSON (msgspec)"),
    ("/prometheus_client/", "metrics (prometheus_client)"),
    ("/logging/", "logging"),
    ("/jinja2/", "templates (jinja2)"),
    ("/service/sqlite_store.py", STORE_ON_LOOP),
    ("libsqlite3", STORE_ON_LOOP),
    ("/_sqlite/", STORE_ON_LOOP),
    ("/aiohttp/", CLIENT),
    ("/aiohappyeyeballs/", CLIENT),
    ("/yarl/", CLIENT),
    ("/multidict/", CLIENT),
    ("/service/http.py", CLIENT),
    ("/httpcore/", "outgoing HTTP client (httpx/httpcore/anyio, handlers)"),
    ("/httpx/", "outgoing HTTP client (httpx/httpcore/anyio, handlers)"),
    ("/anyio/", "outgoing HTTP client (httpx/httpcore/anyio, handlers)"),
    ("/httptools/", HTTP_SERVER),
    ("/llhttp/", HTTP_SERVER),
    ("/h11/", HTTP_SERVER),
    ("/uvicorn/", HTTP_SERVER),
    ("/litestar/", "Litestar (routing, parameters, request, response)"),
    ("/handlers/", "handlers (steps)"),
    ("/service/engine.py", "engine/worker/upstream logic"),
    ("/service/worker.py", "engine/worker/upstream logic"),
    ("/service/upstream.py", "engine/worker/upstream logic"),
    ("/service/", "other service code (hook handler, API, views)"),
    ("_asynciomodule.c", "asyncio tasks and futures (C: task steps, call_soon)"),
    ("/asyncio/runners.py", UVLOOP_OPAQUE),
    ("/asyncio/selector_events.py", "socket I/O (asyncio transports: send, recv, accept)"),
    ("/asyncio/", "asyncio in Python (locks, queues, base_events)"),
)

# What a sample of the event-loop thread is working on: the outermost matching function.
WORK_MARKERS = (
    ("Engine.process_event", "verifying stored callbacks (events loop: GET upstream, finish)"),
    ("Engine.run_step", "running steps (handlers)"),
    ("Engine.submit", "submitting jobs upstream"),
    ("Engine.reconcile", "reconcile polls"),
    ("create_job", "POST /v1/jobs"),
    ("receive_callback", HOOK),
    ("ingest", HOOK),
    ("_ingest", HOOK),
    ("Litestar.__call__", "other HTTP API requests (Litestar)"),
    ("FastPath.__call__", HOOK),
    ("HttpToolsProtocol.", "HTTP requests outside the handlers (uvicorn, httptools, framework)"),
    ("H11Protocol.", "HTTP requests outside the handlers (uvicorn, httptools, framework)"),
    ("RequestResponseCycle.", "HTTP requests outside the handlers (uvicorn, httptools, framework)"),
    ("_settle_all", "store results handed to the loop (_settle)"),
    ("_settle", "store results handed to the loop (_settle)"),
    ("ResponseHandler.", "outgoing HTTP answers arriving (aiohttp)"),
    ("Workers.", "worker loops (claiming work from the store)"),
)

SQLITE_IDLE = "idle: waiting for operations (queue.get)"
SQLITE_HAND_BACK = "handing results to the loop (call_soon_threadsafe)"


def func_of(frame: str) -> str:
    return frame.partition(" (")[0]


def file_of(frame: str) -> str:
    return frame.partition(" (")[2].rstrip(") ").rsplit(":", 1)[0]


def classify_frame(frame: str) -> str | None:
    """The category of one frame, or None for a frame that tells nothing (libc, the
    interpreter, an address): the next frame out decides."""
    func, file = func_of(frame), file_of(frame)
    for names, name in NATIVE_FUNCS:
        if func in names:
            return name
    if "/uvloop/" in file or "libuv" in file:
        return SOCKET_IO if any(m in func for m in UV_SOCKET_FUNCS) else UVLOOP
    return next((name for marker, name in SELF_MARKERS if marker in file), None)


def classify_loop_self(frames: list[str]) -> str:
    for frame in reversed(frames):
        name = classify_frame(frame)
        if name:
            return name
    return "other"


def classify_loop_work(frames: list[str]) -> str:
    where = classify_loop_self(frames)
    if where in (IDLE, UVLOOP_OPAQUE):
        return where
    funcs = [func_of(frame) for frame in frames]
    for marker, name in WORK_MARKERS:  # in the order of WORK_MARKERS: the most specific first
        if any(f == marker or (marker.endswith(".") and f.startswith(marker)) for f in funcs):
            return name
    return f"no handler on the stack: {where}"


def classify_sqlite(frames: list[str]) -> str:
    funcs = [func_of(f) for f in frames]
    python = [f for f, frame in zip(funcs, frames, strict=True) if file_of(frame).endswith(".py")]
    if any("SimpleQueue_get" in f for f in funcs) or (python and python[-1] == "_Worker._run"):
        return SQLITE_IDLE
    if file_of(frames[-1]).endswith("/queue.py"):
        return SQLITE_IDLE
    if any(f in NATIVE_FUNCS[1][0] for f in funcs[-3:]):
        return "waiting for the GIL (the loop thread holds it)"
    if any("call_soon_threadsafe" in f or f in ("_hand_back", "_write_to_self") for f in funcs):
        return SQLITE_HAND_BACK
    if "_attempt" in funcs:
        after = frames[funcs.index("_attempt") + 1 :]
        op = next((func_of(f) for f in after if "/service/sqlite_store.py" in f), None)
        if op is None:
            return "SAVEPOINT / RELEASE around each operation (the store's _attempt)"
        if op in ("_record_callback", "_insert_callback", "_insert_poll"):
            return "record_callback: SELECT job, duplicate check, INSERT event"
        return "other operations (verification reads and writes, claims, ...)"
    if "_commit" in funcs or "_execute" in funcs:
        return "BEGIN / COMMIT of each group (the COMMIT includes the fsync)"
    return "other"


def summarise_profile(path: Path) -> dict[str, Any]:
    """Shares of samples (idle included) by thread: where the time goes (innermost known
    frame), what the loop is working on (outermost known function), top functions."""
    stacks: dict[str, list[tuple[list[str], int]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        thread = frames[0].partition(": ")[2] if frames[0].startswith("thread (") else "?"
        if thread.startswith("taskhook-sqlite"):  # the store's executor: taskhook-sqlite_0
            thread = "taskhook-sqlite"
        name = thread if thread in ("MainThread", "taskhook-sqlite") else "other threads"
        stacks.setdefault(name, []).append((frames[1:] or frames, int(count)))
    summary: dict[str, Any] = {"threads": {}}
    for name, items in stacks.items():
        total = sum(n for _, n in items)
        where: Counter = Counter()
        work: Counter = Counter()
        leaf: Counter = Counter()
        for frames, n in items:
            if name == "MainThread":
                where[classify_loop_self(frames)] += n
                work[classify_loop_work(frames)] += n
            elif name == "taskhook-sqlite":
                where[classify_sqlite(frames)] += n
            leaf[short(own_frame(frames))] += n
        summary["threads"][name] = {
            "samples": total,
            "where": [(c, n / total) for c, n in where.most_common()],
            "work": [(c, n / total) for c, n in work.most_common()],
            "self": [(f, n / total) for f, n in leaf.most_common(15)],
        }
    return summary


def own_frame(frames: list[str]) -> str:
    """The innermost frame with a name (``--native`` leaves some libc frames as addresses)."""
    return next((f for f in reversed(frames) if not f.startswith("0x")), frames[-1])


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` -> ``func (pkg/mod.py)``."""
    func, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    if "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif "/lib/python3" in file:
        file = file.split("/lib/python3", 1)[1].partition("/")[2]
    else:
        for top in ("/service/", "/handlers/", "/bench/", "/project/"):
            if top in file:
                file = (
                    file.rsplit(top, 1)[1]
                    if top == "/project/"
                    else top.strip("/") + "/" + file.rsplit(top, 1)[1]
                )
                break
        else:  # a shared library: its name; a C file: its last two parts
            file = file.rsplit("/", 1)[-1] if ".so" in file else "/".join(file.rsplit("/", 2)[-2:])
    return f"{func} ({file})"


# ---- scenario: end to end ---------------------------------------------------------------------


async def submit_jobs(url: str, count: int, concurrency: int) -> tuple[list[str], float, int]:
    ids: list[str] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as c:

        async def worker() -> None:
            nonlocal failures
            while not queue.empty():
                i = queue.get_nowait()
                body = {
                    "model": "google/nano-banana",
                    "input": {"prompt": f"bench fox {i}", "aspect_ratio": "1:1"},
                    "tags": ["bench"],
                    "metadata": {"n": i},
                }
                response = await c.post("/v1/jobs", json=body)
                if response.status_code in (201, 202):
                    ids.append(response.json()["id"])
                else:
                    failures += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ids, time.monotonic() - started, failures


def e2e_progress(db: Path) -> tuple[int, int, int, int]:
    """(jobs ended, steps not settled, steps succeeded, steps dead)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        ended = conn.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed', 'rejected')"
        ).fetchone()[0]
        steps = dict(conn.execute("SELECT status, count(*) FROM steps GROUP BY status").fetchall())
    unsettled = sum(n for s, n in steps.items() if s not in ("succeeded", "dead"))
    return ended, unsettled, steps.get("succeeded", 0), steps.get("dead", 0)


def scenario_e2e(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    d = workdir / "e2e"
    sim = start_sim(d, "simulator-e2e", "--pending-seconds", "0.01", "--processing-seconds", "0.05")
    capture = start_helper("capture", "raw", d)
    port = free_port()
    db = d / "taskhook.db"
    handlers = {
        "mirror": {"type": "local", "directory": str(d / "files")},
        "forward": {"type": "webhook", "url": f"{capture.url}/webhook"},
    }
    rules = [
        {
            "name": "mirror-and-forward",
            "match": {"status": "completed"},
            "handlers": ["mirror", "forward"],
        }
    ]
    config = write_config(d, port, sim.url, db, handlers=handlers, rules=rules)
    proc = service("service-e2e", d, config, port)
    proc.start()
    warm = 20
    log(f"e2e: warming up with {warm} jobs")
    asyncio.run(submit_jobs(proc.url, warm, 8))
    wait_settled(db, warm, 2 * warm, 60)
    n = args.e2e_jobs
    log(f"e2e: {n} jobs, {args.e2e_concurrency} concurrent submissions")
    cpu0 = cpu_seconds(proc.pid)
    sim_cpu0 = cpu_seconds(sim.pid)
    busy0, wall0 = busy_cores_counter()
    started = time.monotonic()
    ids, submit_seconds, failures = asyncio.run(submit_jobs(proc.url, n, args.e2e_concurrency))
    done = wait_settled(db, warm + n, 2 * (warm + n), args.e2e_timeout)
    wall = time.monotonic() - started
    cpu = cpu_seconds(proc.pid) - cpu0
    busy1, wall1 = busy_cores_counter()
    sim_cpu = cpu_seconds(sim.pid) - sim_cpu0
    ended, unsettled, succeeded, dead = e2e_progress(db)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    files = sum(1 for p in (d / "files").rglob("*") if p.is_file())
    posts = scalar(
        db, "SELECT count(*) FROM steps WHERE handler = 'forward' AND status = 'succeeded'"
    )
    rss = memory_kib(proc.pid)
    if args.profile:
        m = min(n, 300)
        log(f"e2e: profiling {m} more jobs with py-spy (a separate batch)")
        raw = ROOT / "bench" / "profile-e2e.raw.txt"
        spy = start_py_spy(proc.pid, 900, raw, args)
        asyncio.run(submit_jobs(proc.url, m, args.e2e_concurrency))
        wait_settled(db, warm + n + m, 2 * (warm + n + m), args.e2e_timeout)
        spy.send_signal(signal.SIGINT)
        finish_py_spy(spy)
        if raw.exists():
            report["profile_e2e"] = summarise_profile(raw)
    proc.stop()
    checkpoint(db)
    jobs_total = scalar(db, "SELECT count(*) FROM jobs")
    report["e2e"] = {
        "jobs": n,
        "accepted": len(ids),
        "submit_failures": failures,
        "submit_seconds": submit_seconds,
        "wall": wall,
        "jobs_per_s": n / wall,
        "cpu": cpu,
        "cpu_ms_per_job": cpu / n * 1000,
        "sim_cpu": sim_cpu,
        "background_cores": max(0.0, (busy1 - busy0) - cpu - sim_cpu) / (wall1 - wall0),
        "all_settled": done,
        "ended": ended - warm,
        "statuses": statuses,
        "unsettled": unsettled,
        "steps_succeeded": succeeded,
        "steps_dead": dead,
        "files": files,
        "posts": posts,
        "rss_kib_after": rss["VmRSS"],
        "db_bytes": db.stat().st_size,
        "db_jobs": jobs_total,
        "db_events": scalar(db, "SELECT count(*) FROM events"),
        "db_steps": scalar(db, "SELECT count(*) FROM steps"),
    }
    capture.stop()
    sim.stop()


def wait_settled(db: Path, jobs: int, steps: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ended, unsettled, succeeded, dead = e2e_progress(db)
        if ended >= jobs and unsettled == 0 and succeeded + dead >= steps:
            return True
        time.sleep(0.05)
    return False


# ---- scenario: memory -------------------------------------------------------------------------


def scenario_memory(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    import boto3

    d = workdir / "memory"
    moto = start_helper("moto", "moto", d, ready="/moto-api/")
    sim = start_sim(
        d, "simulator-memory", "--pending-seconds", "0.01", "--processing-seconds", "0.05"
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=moto.url,
        region_name="us-east-1",
        aws_access_key_id="AKIABENCH0000000000",
        aws_secret_access_key="bench",
    )
    s3.create_bucket(Bucket="bench-media")
    port = free_port()
    db = d / "taskhook.db"
    handlers = {
        "archive": {
            "type": "s3",
            "bucket": "bench-media",
            "endpoint_url": moto.url,
            "region": "us-east-1",
            "access_key_id": "AKIABENCH0000000000",
            "secret_access_key": "bench",
        }
    }
    rules = [{"name": "archive", "match": {"status": "completed"}, "handlers": ["archive"]}]
    config = write_config(d, port, sim.url, db, handlers=handlers, rules=rules)
    proc = service("service-memory", d, config, port)
    proc.start()
    time.sleep(2.0)
    idle = memory_kib(proc.pid)
    client = httpx.Client(
        base_url=proc.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    )
    video = {"model": "google/veo-3.1-fast", "input": {"prompt": "a red fox"}}
    warm = client.post("/v1/jobs", json=video).json()["id"]  # boto3, pools, imports
    wait_job(client, warm, 120)
    before = memory_kib(proc.pid)
    exact = reset_peak(proc.pid)
    size = args.memory_bytes
    httpx.put(f"{sim.url}/_sim/settings", json={"output_bytes": size}).raise_for_status()
    log(f"memory: mirroring one {size / MIB:.0f} MiB output to moto's S3")
    started = time.monotonic()
    cpu0 = cpu_seconds(proc.pid)
    job_id = client.post("/v1/jobs", json=video).json()["id"]
    job = wait_job(client, job_id, args.memory_timeout)
    seconds = time.monotonic() - started
    cpu = cpu_seconds(proc.pid) - cpu0
    after = memory_kib(proc.pid)
    run = next((r for r in job.get("runs", []) if r["handler"] == "archive"), {})
    stored = None
    with contextlib.suppress(Exception):
        key = run["result"]["keys"][0]
        stored = s3.head_object(Bucket="bench-media", Key=key)["ContentLength"]
    client.close()
    proc.stop()
    report["memory"] = {
        "idle_rss_kib": idle["VmRSS"],
        "before_rss_kib": before["VmRSS"],
        "before_hwm_kib": before["VmHWM"],
        "after_hwm_kib": after["VmHWM"],
        "after_rss_kib": after["VmRSS"],
        "peak_reset": exact,
        "growth_mib": (after["VmHWM"] - before["VmRSS"]) / 1024,
        "size": size,
        "stored": stored,
        "step": run.get("status"),
        "error": run.get("last_error"),
        "seconds": seconds,
        "cpu": cpu,
    }
    sim.stop()
    moto.stop()


def wait_job(client: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        settled = all(r["status"] in ("succeeded", "dead") for r in job.get("runs", []))
        if job["status"] in TERMINAL and job.get("runs") and settled:
            return job
        if time.monotonic() > deadline:
            return job
        time.sleep(0.2)


# ---- scenario: store scale --------------------------------------------------------------------

MODELS = (
    "google/nano-banana",
    "black-forest-labs/flux-1.1-pro",
    "google/veo-3.1-fast",
    "kuaishou/kling-2.6-video",
    "suno-ai/suno-v5",
)


def fill_store(db: Path, count: int) -> dict[str, int]:
    """``count`` jobs shaped like real ones (inputs, tags, outputs), with one callback event
    and two settled steps per finished job, through the service's schema."""
    from service.security import new_job_id
    from service.store import Job

    create_schema(db)
    rng = random.Random(42)
    start = time.time() - count * 0.5
    jobs: list[Any] = []
    events: list[tuple] = []
    steps: list[tuple] = []
    statuses = Counter()
    for i in range(count):
        created = start + i * 0.5
        job_id = new_job_id(created)
        model = MODELS[i % len(MODELS)]
        roll = rng.random()
        status = "completed" if roll < 0.90 else "failed" if roll < 0.95 else "submitted"
        statuses[status] += 1
        tags = [f"batch-{i % 10}"]
        if i % 10 == 0:
            tags.append("animate")
        if i % 1000 == 0:
            tags.append("rare")
        task_id = secrets.token_hex(8)
        url = f"https://cdn.example.com/files/{task_id}/output.png"
        done = status != "submitted"
        jobs.append(
            Job(
                id=job_id,
                model=model,
                input={
                    "prompt": f"a red fox number {i} in the snow, cinematic",
                    "aspect_ratio": "16:9",
                },
                tags=tags,
                metadata={"customer": f"c{i % 97}", "n": i},
                status=status,
                upstream_task_id=task_id,
                created_at=created,
                updated_at=created + 30,
                finished_at=created + 30 if done else None,
                output={"image_url": url} if status == "completed" else None,
                outputs=[
                    {
                        "url": url,
                        "field": "image_url",
                        "index": 0,
                        "kind": "image",
                        "filename": "output.png",
                    }
                ]
                if status == "completed"
                else [],
                error="Generation failed: content policy" if status == "failed" else None,
                request_hash=secrets.token_hex(32),
                next_attempt_at=created + 86400 if not done else None,
            )
        )
        if done:
            payload = msgspec.json.encode(
                {"task_id": task_id, "status": status, "data": {"image_url": url}}
            )
            events.append(
                (
                    job_id,
                    "callback",
                    task_id,
                    status,
                    payload,
                    created + 29,
                    0,
                    1,
                    created + 30,
                    created + 29,
                )
            )
        if status == "completed":
            for position, handler in enumerate(("mirror", "forward")):
                result = msgspec.json.encode(
                    {"status_code": 200, "webhook_id": "msg_x"}
                    if handler == "forward"
                    else {
                        "urls": [f"file:///srv/{job_id}/output.png"],
                        "sizes": [2048],
                        "sha256": ["0" * 64],
                    }
                )
                steps.append(
                    (
                        job_id,
                        "mirror-and-forward",
                        position,
                        handler,
                        "succeeded",
                        1,
                        result,
                        created + 31,
                        created + 30,
                        created + 31,
                        created + 30,
                    )
                )
    sql, rows = job_rows(jobs)
    with contextlib.closing(connect(db)) as conn:
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        fill_tags(conn)
        conn.executemany(
            "INSERT INTO events (job_id, source, task_id, status, payload, received_at, duplicate,"
            " verified, processed_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        conn.executemany(
            "INSERT INTO steps (job_id, rule, position, handler, status, attempts, result,"
            " next_run_at, created_at, updated_at, first_attempt_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            steps,
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return dict(statuses)


def fill_tags(conn: sqlite3.Connection) -> None:
    """The tag index of a schema that has one (``job_tags``, migration 4), filled as that
    migration fills it: the jobs were inserted without the store, which writes it."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_tags'").fetchone():
        conn.execute(
            "INSERT OR IGNORE INTO job_tags (tag, job_id) SELECT DISTINCT json_each.value, jobs.id"
            " FROM jobs, json_each(CAST(jobs.tags AS TEXT)) WHERE json_each.type = 'text'"
        )


def timed_gets(client: httpx.Client, paths: list[str]) -> dict[str, Any]:
    """Sequential GETs: latency percentiles, 200s, and how many jobs the first answer listed
    (a list's ``data``; None for other answers)."""
    samples = []
    codes = Counter()
    listed = None
    for path in paths:
        t = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - t) * 1000)
        codes[response.status_code] += 1
        if listed is None and response.status_code == 200 and "?" in path:
            listed = len(response.json().get("data", []))
    samples.sort()
    return {
        "p50": percentile(samples, 50),
        "p99": percentile(samples, 99),
        "n": len(samples),
        "ok": codes[200],
        "listed": listed,
    }


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def scenario_store(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    d = workdir / "store"
    d.mkdir(parents=True, exist_ok=True)
    db = d / "taskhook.db"
    n = args.store_jobs
    log(f"store: filling {n} jobs")
    started = time.monotonic()
    statuses = fill_store(db, n)
    fill_seconds = time.monotonic() - started
    ids = [r[0] for r in sqlite3.connect(db).execute("SELECT id FROM jobs").fetchall()]
    rng = random.Random(3)
    m = args.store_requests
    sample = [rng.choice(ids) for _ in range(m)]
    queries = {
        "GET /healthz (baseline)": ["/healthz"] * m,
        "GET /v1/jobs/{id}": [f"/v1/jobs/{job_id}" for job_id in sample],
        "GET /v1/jobs?limit=50": ["/v1/jobs?limit=50"] * m,
        "GET /v1/jobs?status=completed&limit=50": ["/v1/jobs?status=completed&limit=50"] * m,
        "GET /v1/jobs?status=submitted&limit=50 (5% of jobs)": [
            "/v1/jobs?status=submitted&limit=50"
        ]
        * m,
        "GET /v1/jobs?tag=animate&limit=50 (10% of jobs)": ["/v1/jobs?tag=animate&limit=50"] * m,
        "GET /v1/jobs?tag=rare&limit=50 (0.1% of jobs)": ["/v1/jobs?tag=rare&limit=50"]
        * max(20, m // 10),
    }
    port = free_port()
    config = write_config(d, port, "http://127.0.0.1:9", db)
    proc = service("service-store", d, config, port)
    ready = proc.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        client = httpx.Client(
            base_url=proc.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
        )
        timed_gets(client, ["/healthz"] * 10 + [f"/v1/jobs/{ids[0]}"] * 10)  # warm-up
        for query, paths in queries.items():
            log(f"store: {query}")
            results[query] = timed_gets(client, paths)
        client.close()
    finally:
        proc.stop()
    checkpoint(db)
    size = db.stat().st_size
    report["store"] = {
        "jobs": n,
        "statuses": statuses,
        "fill_seconds": fill_seconds,
        "ready_seconds": ready,
        "queries": results,
        "db_bytes": size,
        "bytes_per_1000": size / n * 1000,
        "events": scalar(db, "SELECT count(*) FROM events"),
        "steps": scalar(db, "SELECT count(*) FROM steps"),
    }


# ---- scenario: start-up ---------------------------------------------------------------------


def scenario_startup(workdir: Path, args: argparse.Namespace, report: dict[str, Any]) -> None:
    d = workdir / "startup"
    results: dict[str, list[float]] = {"noop": [], "empty": [], "store": []}
    store_db = workdir / "store" / "taskhook.db"
    for i in range(args.startup_runs):
        port = free_port()
        noop = Proc(
            f"startup-noop-{i}", helper_argv("litestar", port), d, f"http://127.0.0.1:{port}"
        )
        results["noop"].append(noop.start())
        noop.stop()
        port = free_port()
        config = write_config(d / "empty", port, "http://127.0.0.1:9", d / "empty" / "taskhook.db")
        proc = service(f"startup-empty-{i}", d, config, port)
        results["empty"].append(proc.start())
        proc.stop()
        if store_db.exists():
            port = free_port()
            config = write_config(d / "store", port, "http://127.0.0.1:9", store_db)
            proc = service(f"startup-store-{i}", d, config, port)
            results["store"].append(proc.start())
            proc.stop()
    report["startup"] = {k: v for k, v in results.items() if v}


# ---- the report -------------------------------------------------------------------------------


def export_ref(ref: str, target: Path) -> None:
    """Measures the service/ and handlers/ of a commit (``git archive``, nothing checked out)."""
    global SOURCE
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "service", "handlers"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    SOURCE = target
    sys.path.insert(0, str(target))
    log(f"measuring {ref}: service/ and handlers/ exported to {target}")


def machine(workdir: Path, ref: str | None) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    import importlib.metadata

    import uvicorn

    def has(module: str) -> bool:
        import importlib.util

        return importlib.util.find_spec(module) is not None

    def version(package: str) -> str:
        return importlib.metadata.version(package)

    # what uvicorn's "auto" picks, as it runs the service and the baselines
    loop = f"uvloop {version('uvloop')}" if has("uvloop") else "asyncio (uvloop not installed)"
    http = (
        f"httptools {version('httptools')}"
        if has("httptools")
        else f"h11 {version('h11')} (httptools not installed)"
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref or "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = (
        ""
        if ref
        else subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "service", "handlers"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "litestar": version("litestar"),
        "aiohttp": version("aiohttp"),
        "uvicorn": f"{uvicorn.__version__} (loop: {loop}; HTTP: {http})",
        "wrk": " ".join(wrk_version().split()[:2]),
        "commit": commit
        + (" (service/ or handlers/ modified in the working tree)" if dirty else ""),
        "fsync": f"{fsync_latency_ms(workdir):.2f} ms",
        "load": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }


def fsync_latency_ms(directory: Path, n: int = 50) -> float:
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        samples = []
        for _ in range(n):
            f.write(b"x" * 4096)
            f.flush()
            t = time.perf_counter()
            os.fsync(f.fileno())
            samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def ms(us: float) -> str:
    return f"{us / 1000:.1f}"


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def render(report: dict[str, Any], args: argparse.Namespace) -> str:
    out: list[str] = []
    render_machine(out.append, report)
    for part in (
        render_ingest,
        render_e2e,
        render_memory,
        render_store,
        render_startup,
        render_micro,
        render_profiles,
    ):
        part(out.append, report, args)
    return "\n".join(out)


def render_machine(w: Any, report: dict[str, Any]) -> None:
    m = report["machine"]
    w(f"## Results {report['date']}\n")
    w(
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, Litestar {m['litestar']}, uvicorn {m['uvicorn']}, "
        f"outgoing HTTP: aiohttp {m['aiohttp']}, {m['wrk']}; "
        f"fsync of 4 KiB: {m['fsync']} (median); load average at start: {m['load']}; "
        f"commit {m['commit']}.\n"
    )
    w(f"Command: `{report['command']}`\n")


def render_ingest(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    ing = report.get("ingest")
    if not ing:
        return
    sizes = report["ingest_sets"]
    path = (
        "answers the hook on its raw ASGI fast path (`FastPath`, service/receiver.py) in front "
        "of Litestar"
        if report.get("service_fast_path")
        else "answers the hook through its Litestar route"
    )
    w("### Callback ingest\n")
    w(
        f"wrk, {args.connections} connections, {args.threads} thread(s), {args.duration} s per "
        f"run after a {args.warmup} s warm-up, every request a unique path and body "
        f"(`bench/hooks.lua`); one uvicorn worker per server; the rows ran one after another. "
        f"taskhook: `POST /hooks/{{job_id}}/{{token}}` for {sizes['main']:,} distinct stored "
        f'jobs (`submitted`), body `{{"task_id", "status": "completed", "data"}}`, '
        f"each a durable group commit (WAL, `synchronous=FULL`); the service under test "
        f"{path}. Server CPU is the server process's utime+stime over the run (all threads), "
        f'"loop" the event-loop thread\'s alone; "background" is CPU used by processes '
        f"outside the benchmark during the run (other test suites on this machine).\n"
    )
    w(
        "| server | req/s | / Litestar no-op | / raw ASGI | p50 ms | p99 ms | max ms "
        "| server CPU cores (loop) | CPU µs/req | non-2xx / errors | background cores |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    base_a, base_b = ing["litestar"], ing["raw"]
    for r in ing.values():
        lat = r["latency_us"]
        w(
            f"| {r['label']} | {r['rps']:,.0f} | {r['rps'] / base_a['rps']:.2f}x | "
            f"{r['rps'] / base_b['rps']:.2f}x | {ms(lat['p50'])} | {ms(lat['p99'])} | "
            f"{ms(lat['max'])} | {r['server_cores']:.2f} ({r['loop_cores']:.2f}) | "
            f"{r['cpu_us_per_req']:,.0f} | {r['not_ok']} / "
            f"{r['socket_errors'] + r['timeouts']} | {r['background_cores']:.2f} |"
        )
    w("")
    render_ingest_targets(w, ing, args)
    for key in ("ingest", "trust"):
        if key in ing:
            w(after_the_answers_text(ing[key], args) + "\n")


def render_ingest_targets(w: Any, ing: dict[str, Any], args: argparse.Namespace) -> None:
    hook, base_a, base_b = ing["ingest"], ing["litestar"], ing["raw"]
    ra = hook["rps"] / base_a["rps"]
    rb = hook["rps"] / base_b["rps"]
    p99 = hook["latency_us"]["p99"] / 1000
    extra = hook["committed"] - hook["ok"]
    lossless = 0 <= extra <= args.connections
    verified_all = hook["left"] == 0
    w("| target (the service as it is, verify: fetch) | measured | |")
    w("|---|---|---|")
    w(
        f"| ingest ≥ 1.0x the no-op Litestar endpoint | {ra:.2f}x "
        f"({hook['rps']:,.0f} / {base_a['rps']:,.0f} req/s) | {mark(ra >= 1.0)} |"
    )
    w(
        f"| stretch: ingest ≥ 0.5x the raw ASGI app | {rb:.2f}x "
        f"({hook['rps']:,.0f} / {base_b['rps']:,.0f} req/s) | {mark(rb >= 0.5)} |"
    )
    w(f"| p99 < 50 ms at {args.connections} connections | {p99:.1f} ms | {mark(p99 < 50)} |")
    w(
        f"| every acknowledged callback committed | {hook['ok']:,} 2xx answers, "
        f"{hook['committed']:,} callback rows stored "
        f"({extra:+d}: requests committed while wrk was closing its "
        f"{args.connections} connections) | {mark(lossless)} |"
    )
    w(
        f"| no callback left unverified (backlog drained within {args.drain_timeout:.0f} s of "
        f"the load's end) | {hook['left']:,} left after {hook['drain_seconds']:.1f} s | "
        f"{mark(verified_all)} |"
    )
    w("")


def after_the_answers_text(r: dict[str, Any], args: argparse.Namespace) -> str:
    """What became of the measured run's callbacks after their answers, in words."""
    mode = "verify: fetch" if "fetch" in r["label"] else "verify: trust"
    unique = r["committed"] - r["duplicates"]
    text = (
        f"After the answers ({mode}): of the {unique:,} callbacks of the measured run, "
        f"{r['verified_during']:,} were processed (verified, or trusted) before the load "
        f"stopped and {r['waiting_at_end']:,} were waiting when it did"
    )
    if r["warm_waiting_at_end"]:
        text += f", besides {r['warm_waiting_at_end']:,} left from the warm-up"
    text += " (verification yields to callbacks while the receiver is saturated). "
    if r["left"]:
        text += (
            f"**{r['left']:,} were still waiting {r['drain_seconds']:.0f} s after the load "
            f"stopped** ({r['left_measured']:,} of the measured run; {r['drained']:,} were "
            f"processed in that time, {r['drain_rate']:,.0f}/s). "
        )
    elif r["drained"]:
        text += (
            f"Without load the backlog of {r['drained']:,} drained in "
            f"{r['drain_seconds']:.1f} s ({r['drain_rate']:,.0f}/s); none was left. "
        )
    else:
        text += "Nothing was waiting when the load stopped. "
    outcomes = "; ".join(
        f"{n:,} {outcome_name(verified, note)}" for verified, note, n in r["outcomes"][:4]
    )
    text += f"Outcomes: {outcomes or 'none'}"
    if r["retried"]:
        text += f"; {r['retried']:,} needed more than one attempt"
    text += f". Duplicates among the measured callbacks: {r['duplicates']}."
    if r["helpers_cpu"] >= 0.05:
        text += f" The simulator used {r['helpers_cpu']:.1f} CPU s during the run."
    return text


def outcome_name(verified: int | None, note: str | None) -> str:
    name = {1: "confirmed by the upstream", 0: "not verified", None: "not checked"}[verified]
    return f"{name} ({note})" if note else name


def render_e2e(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    e = report.get("e2e")
    if not e:
        return
    ing = report.get("ingest")
    base = ing["litestar"]["cpu_us_per_req"] if ing else None
    w("### End to end\n")
    w(
        f"{e['jobs']} jobs (`google/nano-banana`) submitted over HTTP, "
        f"{args.e2e_concurrency} at a time, through the simulator (pending 0.01 s, "
        f"processing 0.05 s), `verify: fetch`, each completed job's output copied by a "
        f"`local` step and forwarded by a `webhook` step to a no-op endpoint. Wall time from "
        f"the first submission until every job ended and every step settled (read from the "
        f"database, not the API, so the measurement costs the service nothing).\n"
    )
    w("| measure | value | target | |")
    w("|---|---|---|---|")
    w(
        f"| jobs ended, steps settled | {e['ended']} / {e['jobs']} ended "
        f"; with the 20 warm-up jobs: {e['statuses']}, {e['steps_succeeded']} steps "
        f"succeeded, {e['steps_dead']} dead, {e['unsettled']} unsettled; {e['files']} files "
        f"copied, {e['posts']} posts forwarded | no job left "
        f"behind | {mark(e['all_settled'] and e['ended'] == e['jobs'])} |"
    )
    w(f"| wall time | {e['wall']:.1f} s (submissions took {e['submit_seconds']:.1f} s) | | |")
    w(f"| jobs/s | {e['jobs_per_s']:.0f} | | |")
    cpu_line = f"{e['cpu_ms_per_job']:.2f} ms"
    if base:
        cpu_line += (
            f" (= {e['cpu_ms_per_job'] * 1000 / base:.1f} no-op Litestar requests of this run)"
        )
    w(f"| service CPU per job | {cpu_line} | ≤ 3 ms | {mark(e['cpu_ms_per_job'] <= 3)} |")
    w(f"| simulator CPU per job (not counted) | {e['sim_cpu'] / e['jobs'] * 1000:.2f} ms | | |")
    w(f"| background load during the run | {e['background_cores']:.2f} cores | | |")
    w(
        f"| database size per 1,000 real jobs | "
        f"{e['db_bytes'] / e['db_jobs'] * 1000 / MIB:.2f} "
        f"MiB ({e['db_jobs']} jobs, {e['db_events']} events, {e['db_steps']} steps, after "
        f"checkpoint) | | |"
    )
    w("")


def render_memory(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    mem = report.get("memory")
    if not mem:
        return
    ing = report.get("ingest")
    base = ing["litestar"].get("idle_rss_kib") if ing else None
    w("### Memory\n")
    idle = f"{mem['idle_rss_kib'] / 1024:.1f} MiB"
    if base:
        idle += (
            f" (no-op Litestar app: {base / 1024:.1f} MiB, ratio {mem['idle_rss_kib'] / base:.2f}x)"
        )
    w("| measure | value | target | |")
    w("|---|---|---|---|")
    w(f"| idle RSS of the service | {idle} | reported | |")
    ok = mem["step"] == "succeeded" and mem["stored"] == mem["size"]
    w(
        f"| mirror one {mem['size'] / MIB:,.0f} MiB output to moto's S3 (`s3` handler) | "
        f"step {mem['step']}, object of {mem['stored']} bytes, {mem['seconds']:.1f} s "
        f"({mem['size'] / MIB / mem['seconds']:.0f} MiB/s), service CPU {mem['cpu']:.1f} s "
        f"| succeeds | {mark(ok)} |"
    )
    w(
        f"| peak RSS growth (VmHWM after - VmRSS before; peak reset: {mem['peak_reset']}) | "
        f"{mem['growth_mib']:.1f} MiB (RSS before {mem['before_rss_kib'] / 1024:.1f} MiB, "
        f"peak {mem['after_hwm_kib'] / 1024:.1f} MiB) | < 64 MiB | "
        f"{mark(mem['growth_mib'] < 64)} |"
    )
    w("")


def render_store(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    st = report.get("store")
    if not st:
        return
    w("### Store at scale\n")
    w(
        f"{st['jobs']:,} jobs stored ({st['statuses']}; each finished job with its callback "
        f"event, each completed one with two settled steps), filled with `executemany` into "
        f"the schema the service created. `taskhook serve` on that database; sequential "
        f"requests from one keep-alive httpx client; the baseline is `/healthz` on the same "
        f'server. "listed": the jobs in the first answer of a list request.\n'
    )
    w("| request | n | p50 ms | p99 ms | p50 / healthz | listed |")
    w("|---|---:|---:|---:|---:|---:|")
    base = st["queries"]["GET /healthz (baseline)"]["p50"]
    for name, q in st["queries"].items():
        listed = "" if q.get("listed") is None else str(q["listed"])
        failed = f" ({q['n'] - q['ok']} not 200)" if q["ok"] != q["n"] else ""
        w(
            f"| `{name}` | {q['n']}{failed} | **{q['p50']:.2f}** | {q['p99']:.2f} | "
            f"{q['p50'] / base:.1f}x | {listed} |"
        )
    w("")
    w(
        f"Database: {st['db_bytes'] / MIB:.1f} MiB for {st['jobs']:,} jobs, "
        f"{st['events']:,} events, {st['steps']:,} steps (after a checkpoint): "
        f"**{st['bytes_per_1000'] / MIB:.2f} MiB per 1,000 jobs**.\n"
    )


def render_startup(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    su = report.get("startup")
    if not su:
        return
    st = report.get("store")
    w("### Start-up\n")
    w(
        f"From launching the process to the first 200 on `/readyz` (median of "
        f"{len(su['empty'])}; the baseline is the no-op Litestar app under uvicorn).\n"
    )
    w("| process | median s | min s | max s | / no-op |")
    w("|---|---:|---:|---:|---:|")
    base = statistics.median(su["noop"])
    names = {
        "noop": "no-op Litestar app (baseline)",
        "empty": "`taskhook serve`, new database",
        "store": f"`taskhook serve`, {st['jobs']:,} jobs stored"
        if st
        else "`taskhook serve`, filled database",
    }
    for key, values in su.items():
        med = statistics.median(values)
        w(
            f"| {names[key]} | {med:.2f} | {min(values):.2f} | {max(values):.2f} | "
            f"{med / base:.1f}x |"
        )
    w("")


def render_micro(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    mic = report.get("micro")
    if not mic:
        return
    loops = sorted({r.get("loop", "?") for r in mic} - {"none"})
    w("### Micro-benchmarks: the store and the outgoing HTTP client\n")
    w(
        "Each in a process of its own (`bench/micro.py`), no HTTP server in the store rows: "
        "`record_callback` for distinct stored jobs (the ingest scenario's database); the "
        "client rows GET a no-op raw ASGI server in another process. CPU is the measuring "
        f"process's (all threads); event loop: {', '.join(loops)} (the service's). "
        '"vs first row": CPU per operation against the first row of its group.\n'
    )
    w("| what | ops | ops/s | CPU µs/op | vs first row |")
    w("|---|---:|---:|---:|---:|")
    firsts: dict[str, float] = {}
    for r in mic:
        first = firsts.setdefault(r["group"], r["cpu_us_per_op"])
        w(
            f"| {r['label']} | {r['ops']:,} | {r['ops_per_s']:,.0f} | "
            f"{r['cpu_us_per_op']:,.0f} | {r['cpu_us_per_op'] / first:.2f}x |"
        )
    w("")


def render_profiles(w: Any, report: dict[str, Any], args: argparse.Namespace) -> None:
    measured = report.get("ingest", {})
    profiles = [
        (p["label"], p["rps"], measured.get(key, {}).get("rps"), p["summary"])
        for key, p in report.get("profiles", {}).items()
    ]
    if report.get("profile_e2e"):
        profiles.append(
            ("end to end (the e2e scenario's service)", None, None, report["profile_e2e"])
        )
    native = (
        "with `--native` (the C frames of uvloop, libuv, httptools and CPython too)"
        if args.profile_native
        else "without `--native` (uvloop's C code is one opaque bucket)"
    )
    for title, rps, rps_measured, prof in profiles:
        w(f"### Profile: {title}\n")
        under = ""
        if rps:
            under = f"; {rps:,.0f} req/s under the profiler"
            if rps_measured:
                under += f" ({rps_measured:,.0f} in the measured run)"
        w(
            f"py-spy {native}, {args.profile_rate} samples/s per thread, a separate run of its "
            f"own (not the measured one), idle samples included{under}.\n"
        )
        for thread in ("MainThread", "taskhook-sqlite"):
            data = prof["threads"].get(thread)
            if data:
                render_profile_thread(w, thread, data)


def render_profile_thread(w: Any, thread: str, data: dict[str, Any]) -> None:
    label = "event-loop thread" if thread == "MainThread" else "store thread"
    w(f"**{label}** ({data['samples']} samples)\n")
    if data["work"]:
        w("| working on (outermost known frame) | share |")
        w("|---|---:|")
        for name, share in data["work"]:
            if share >= 0.005:
                w(f"| {name} | {share:.1%} |")
        w("")
    w("| where the time goes (innermost known frame) | share |")
    w("|---|---:|")
    for name, share in data["where"]:
        if share >= 0.005:
            w(f"| {name} | {share:.1%} |")
    w("")
    w(
        "Top functions by own time: "
        + "; ".join(f"`{f}` {v:.1%}" for f, v in data["self"][:8])
        + ".\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: 3 s load runs, 200 e2e jobs, 10,000 stored jobs",
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per load run")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up load per server")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument(
        "--max-rate",
        type=int,
        default=8000,
        help="requests/s the ingest job sets are sized for (beyond it, repeats)",
    )
    p.add_argument("--profile-seconds", type=int, default=12)
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument(
        "--no-native",
        dest="profile_native",
        action="store_false",
        help="py-spy without --native (which it uses where it works: %(default)s): cheaper "
        "samples, but time inside uvloop's C code (idle in epoll or its own work) is one bucket",
    )
    p.add_argument(
        "--profile-rate",
        type=int,
        help="py-spy samples/s (default 25 with --native, whose samples cost more, else 200)",
    )
    p.add_argument(
        "--svg",
        action="store_true",
        help="also write bench/profile-ingest.svg (one more profiled run)",
    )
    p.add_argument("--no-variants", action="store_true", help="skip the verify: trust row")
    p.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    p.add_argument(
        "--profile-rows",
        default="ingest",
        help="ingest rows to profile, comma-separated (ingest, trust; each in a run of its own)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="after an ingest run, seconds to wait at most for the verification backlog to drain",
    )
    p.add_argument("--e2e-jobs", type=int, default=1000)
    p.add_argument("--e2e-concurrency", type=int, default=32)
    p.add_argument("--e2e-timeout", type=float, default=300)
    p.add_argument("--skip-memory", action="store_true", help="skip the 1 GiB S3 mirror")
    p.add_argument("--memory-bytes", type=int, default=1024 * MIB)
    p.add_argument("--memory-timeout", type=float, default=900)
    p.add_argument("--store-jobs", type=int, default=100_000)
    p.add_argument("--store-requests", type=int, default=500)
    p.add_argument("--startup-runs", type=int, default=5)
    p.add_argument(
        "--only",
        nargs="+",
        choices=["ingest", "micro", "e2e", "memory", "store", "startup"],
        help="run only these scenarios",
    )
    p.add_argument(
        "--ref",
        help="measure this commit's service/ and handlers/ (git archive) "
        "instead of the working tree",
    )
    p.add_argument("--workdir", help="where databases and logs go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--output", help="also write the Markdown to this file")
    args = p.parse_args(argv)
    if args.quick:
        given = set(argv or sys.argv[1:])
        defaults = {
            "--duration": 3,
            "--profile-seconds": 3,
            "--e2e-jobs": 200,
            "--store-jobs": 10_000,
            "--store-requests": 100,
            "--startup-runs": 3,
            "--memory-bytes": 64 * MIB,
        }
        for flag, value in defaults.items():
            if flag not in given:
                setattr(args, flag[2:].replace("-", "_"), value)
    return args


def chosen_scenarios(args: argparse.Namespace) -> list[Any]:
    """The scenarios to run, in this order (start-up reuses the store scenario's database;
    micro reuses the ingest scenario's)."""
    steps = {
        "ingest": scenario_ingest,
        "micro": scenario_micro,
        "e2e": scenario_e2e,
        "memory": scenario_memory,
        "store": scenario_store,
        "startup": scenario_startup,
    }
    names = set(args.only or steps)
    if args.no_micro:
        names.discard("micro")
    if args.skip_memory:
        names.discard("memory")
    return [step for name, step in steps.items() if name in names]


def setup_profiler(args: argparse.Namespace) -> None:
    """Whether py-spy is there, whether its --native works here, and its rate."""
    if args.profile and py_spy_path() is None:
        log("py-spy not found (pip install py-spy): the profile is skipped")
        args.profile = False
    if args.profile and args.profile_native and not py_spy_native_works():
        log("py-spy --native does not work here: profiling without it")
        args.profile_native = False
    if args.profile_rate is None:
        args.profile_rate = 25 if args.profile_native else 200


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    check_tools()
    setup_profiler(args)
    workdir = (
        Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="taskhook-bench-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work directory: {workdir}")
    if args.ref:
        export_ref(args.ref, workdir / "src")
    scenarios = chosen_scenarios(args)
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(workdir, args.ref),
    }
    try:
        for step in scenarios:
            step(workdir, args, report)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        Proc.stop_all()
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    text = render(report, args)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
