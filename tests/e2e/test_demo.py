"""``taskhook serve --demo`` as a new user runs it: no config, no network, one command."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.support import free_port, wait_until


def test_demo_runs_the_whole_chain(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    with (tmp_path / "demo.log").open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--demo",
                                   "--port", str(port)], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
                time.sleep(0.1)
        submit = subprocess.run(
            [sys.executable, "-m", "service.cli", "submit", "google/nano-banana",
             "-i", "prompt=a red fox", "-i", "aspect_ratio=1:1", "--wait", "--url", url],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        assert "completed" in submit.stdout
        copies = list((tmp_path / "taskhook-demo" / "files").rglob("*.png"))
        assert len(copies) == 1 and copies[0].read_bytes().startswith(b"\x89PNG")
        assert str(copies[0]) in submit.stdout
        inbox = httpx.get(f"{url}/demo/inbox").json()
        assert sorted(item["channel"] for item in inbox) == ["slack", "webhook"]
        chained = subprocess.run(
            [sys.executable, "-m", "service.cli", "submit", "google/nano-banana",
             "-i", "prompt=a red fox", "-i", "aspect_ratio=1:1", "--tag", "animate", "--wait",
             "--url", url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert chained.returncode == 0 and "follow-up job:" in chained.stdout, chained.stdout
        videos = wait_until(lambda: list((tmp_path / "taskhook-demo" / "files").rglob("*.mp4")))
        assert "kuaishou_kling-2.6-video" in str(videos[0])
        banner = (tmp_path / "demo.log").read_text()
        assert "API key: demo" in banner and "taskhook submit" in banner
    finally:
        server.terminate()
        server.wait(timeout=20)
