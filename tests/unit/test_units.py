"""Pure functions: tokens, keys, outputs, rule matching, signing, durations."""

from __future__ import annotations

import re

import pytest

from service import config, pipeline, security
from service.outputs import normalise
from service.security import sign
from service.store import Job


def test_callback_token_is_per_job_and_checked():
    token = security.callback_token("s" * 40, "job_a")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert security.token_ok("s" * 40, "job_a", token)
    assert not security.token_ok("s" * 40, "job_b", token)
    assert not security.token_ok("t" * 40, "job_a", token)


def test_api_keys():
    assert security.api_key_ok(["a", "bb"], "bb")
    assert not security.api_key_ok(["a", "bb"], "b")
    assert not security.api_key_ok(["a"], "")
    assert security.bearer("Bearer xyz") == "xyz"
    assert security.bearer("Basic xyz") == ""


def test_job_ids_sort_by_time():
    first, second = security.new_job_id(1000.0), security.new_job_id(2000.0)
    assert first < second and first.startswith("job_") and len(first) == 30


def test_outputs_are_normalised():
    outputs = normalise(
        {
            "video_url": "https://cdn.example.com/a/clip.mp4?sig=1",
            "image_urls": ["https://cdn.example.com/1.png", "https://cdn.example.com/2.png"],
            "text": "not a url",
            "thumbnail_url": "https://cdn.example.com/t.jpg",
        }
    )
    assert [(o["field"], o["index"], o["kind"], o["filename"]) for o in outputs] == [
        ("video_url", 0, "video", "clip.mp4"),
        ("image_urls", 1, "image", "1.png"),
        ("image_urls", 2, "image", "2.png"),
        ("thumbnail_url", 3, "image", "t.jpg"),
    ]
    assert normalise(None) == []


def job(**fields) -> Job:
    values = {
        "id": "job_x",
        "model": "google/veo-3.1-fast",
        "input": {},
        "created_at": 0.0,
        "updated_at": 0.0,
        "tags": ["keep", "x"],
        "metadata": {"team": "video"},
    }
    values.update(fields)
    return Job(**values)


@pytest.mark.parametrize(
    ("match", "status", "expected"),
    [
        ({}, "completed", True),
        ({"status": "failed"}, "completed", False),
        ({"status": ["completed", "failed"]}, "failed", True),
        ({"model": "google/*"}, "completed", True),
        ({"model": ["kuaishou/*", "openai/*"]}, "completed", False),
        ({"tags": ["keep"]}, "completed", True),
        ({"tags": ["keep", "missing"]}, "completed", False),
        ({"metadata": {"team": "video"}}, "completed", True),
        ({"metadata": {"team": "audio"}}, "completed", False),
    ],
)
def test_rule_matching(match, status, expected):
    assert pipeline.matches(config.MatchConfig(**match), job(), status) is expected


def test_standard_webhooks_signature_vector():
    # The published test vector of the Standard Webhooks specification.
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_durations():
    assert config.seconds("30s") == 30
    assert config.seconds("15m") == 900
    assert config.seconds("2h") == 7200
    assert config.seconds("1d") == 86400
    with pytest.raises(ValueError, match="not a duration"):
        config.seconds("soon")


def test_rate_limiter_spaces_acquisitions():
    import asyncio
    import time

    from service.ratelimit import RateLimiter

    async def take(limiter: RateLimiter, n: int) -> float:
        start = time.monotonic()
        for _ in range(n):
            await limiter.acquire()
        return time.monotonic() - start

    # 1 token of burst, 50 per second: 11 acquisitions need at least 10 refills (0.2 s).
    assert asyncio.run(take(RateLimiter(50, burst=1), 11)) >= 0.19
    paused = RateLimiter(1000)
    paused.pause(0.2)
    assert asyncio.run(take(paused, 1)) >= 0.19


def test_downloads_connect_to_the_address_that_was_checked():
    from service.fetch import Fetcher

    url, options = Fetcher.target("https://cdn.example.com:8443/a/b.png?x=1", "93.184.216.34")
    assert str(url) == "https://93.184.216.34:8443/a/b.png?x=1"
    assert options == {
        "headers": {"Host": "cdn.example.com:8443"},
        "server_hostname": "cdn.example.com",  # TLS name and certificate check
    }
    v6, options = Fetcher.target("http://cdn.example.com/a.png", "2606:2800:220:1::1")
    assert str(v6) == "http://[2606:2800:220:1::1]/a.png"
    assert options == {"headers": {"Host": "cdn.example.com"}}
    plain, options = Fetcher.target("http://cdn.example.com/a.png", None)
    assert str(plain) == "http://cdn.example.com/a.png" and options == {}
