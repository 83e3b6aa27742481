"""Config loading and ``taskhook check``: strict, interpolated, every problem listed at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from service import config
from service.errors import ConfigError

VALID = """
server:
  public_url: https://hooks.example.com
  api_keys: ["${TASKHOOK_API_KEY}"]
  secret: "${TASKHOOK_SECRET}"
  port: ${PORT:-8123}
upstream:
  api_key: "${UNIFICALLY_API_KEY}"
  reconcile_after: 10m
handlers:
  files:
    type: local
    directory: /tmp/out
    path: "{{ job.model }}/{{ job.id }}/{{ output.filename }}"
  team:
    type: slack
    webhook_url: "${SLACK_WEBHOOK_URL:-https://hooks.slack.example/T/B/X}"
    text: "{{ job.model }} finished: {{ job.id }}"
    retry: {max_attempts: 3, max_age: 1h}
rules:
  - name: keep
    match: {status: completed, model: "google/*", tags: [keep], metadata: {team: video}}
    handlers:
      - files
      - handler: team
        with:
          text: "Saved {{ steps.files.urls | join(' ') }}"
"""

ENV = {"TASKHOOK_API_KEY": "k" * 20, "TASKHOOK_SECRET": "s" * 40, "UNIFICALLY_API_KEY": "u"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taskhook.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.load(write(tmp_path, text), env=ENV if env is None else env)
    source = f"{tmp_path / 'taskhook.yaml'}: "
    assert all(p.startswith(source) for p in info.value.problems)
    return [p.removeprefix(source) for p in info.value.problems]


def test_valid_config_loads_with_interpolation(tmp_path):
    loaded = config.load(write(tmp_path, VALID), env=ENV)
    assert loaded.server.port == 8123
    assert loaded.server.api_keys == ["k" * 20]
    assert config.seconds(loaded.upstream.reconcile_after) == 600
    (rule,) = loaded.rules
    assert [s.handler_name for s in rule.steps] == ["files", "team"]
    assert rule.steps[1].retry.max_attempts == 3


def test_every_problem_is_listed_with_its_key_path(tmp_path):
    text = VALID.replace("directory: /tmp/out", "directory: /tmp/out\n    buckett: x")
    text = text.replace("port: ${PORT:-8123}", "port: 99999")
    text = text.replace("- files\n", "- filez\n")
    text += "extra_section: 1\n"
    found = problems(tmp_path, text)
    assert "handlers.files.buckett: unknown key" in found
    assert any(p.startswith("server.port: Expected `int` <= 65535") for p in found)
    assert "rules[0].handlers[0]: no handler named 'filez' (did you mean 'files'?)" in found
    assert "extra_section: unknown key" in found


def test_unset_variable_is_named(tmp_path):
    found = problems(tmp_path, VALID, env={"TASKHOOK_API_KEY": "k" * 20})
    assert found == [
        "server.secret: environment variable TASKHOOK_SECRET is not set (and has no default)",
        "upstream.api_key: environment variable UNIFICALLY_API_KEY is not set "
        "(and has no default)",
    ]


def test_template_errors_are_caught_at_load(tmp_path):
    text = VALID.replace("Saved {{ steps.files.urls | join(' ') }}",
                         "Saved {{ steps.archive.urls }}")
    text = text.replace("{{ job.model }} finished", "{{ job.modle }} finished")
    found = problems(tmp_path, text)
    assert any("rules[0].handlers[1] (slack).text" in p and "archive" in p for p in found)
    broken = VALID.replace("{{ output.filename }}", "{{ output.filename")
    assert any("handlers.files.path: template error" in p for p in problems(tmp_path, broken))


def test_short_secret_and_unknown_handler_type(tmp_path):
    env = {**ENV, "TASKHOOK_SECRET": "short"}
    text = VALID.replace("type: local", "type: ftp")
    found = problems(tmp_path, text, env=env)
    assert any(p.startswith("server.secret: Expected `str` of length >= 32") for p in found)
    assert any("handlers.files.type: unknown handler type 'ftp'" in p for p in found)


def run_check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.cli", "check", "-c", str(path)],
                          capture_output=True, text=True, env={**env, "PATH": "/usr/bin"},
                          timeout=60)


def test_check_command_exit_codes(tmp_path):
    good = run_check(write(tmp_path, VALID), ENV)
    assert good.returncode == 0 and "valid" in good.stdout
    bad = run_check(write(tmp_path, VALID.replace("directory:", "directroy:")), ENV)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert any("handlers.files.directroy: unknown key (did you mean 'directory'?)" in line
               for line in lines)
    assert any("handlers.files.directory: required" in line for line in lines)
    assert all(line.startswith(str(tmp_path)) for line in lines)


FOLLOWUP = """
server: {public_url: "https://h.example.com", api_keys: [k], secret: "${TASKHOOK_SECRET}"}
upstream: {api_key: u}
handlers:
  animate:
    type: followup
    model: kuaishou/kling-2.6-video
    input:
      prompt: "{{ job.input.prompt }}"
      start_frame_url: "{{ outputs[0].url }}"
      duration: 7
      native_audio: true
      mode: std
  typo:
    type: followup
    model: google/veo-3.1-fsat
    input: {prompt: "{{ job.input.prompt }}"}
rules:
  - name: chain
    handlers: [animate]
  - name: broken
    handlers: [typo]
"""


def test_followup_inputs_are_checked_against_the_catalog(tmp_path):
    found = problems(tmp_path, FOLLOWUP)
    animate = [p for p in found if p.startswith("rules[0].handlers[0] (followup).")]
    assert any(".input.duration: " in p for p in animate), found
    assert any(".input.native_audio: " in p and "pro" in p for p in animate), found
    assert not any("input.prompt" in p or "input.start_frame_url" in p for p in found)
    assert any(p.startswith("rules[1].handlers[0] (followup).model: unknown model") and
               "google/veo-3.1-fast" in p for p in found), found


EVERYTHING_WRONG = """
server: {public_url: "https://h.example.com", api_keys: [k], secret: "${TASKHOOK_SECRET}"}
upstream: {api_key: u}
handlers:
  team: {type: slack, webhook_url: "https://hooks.example.com/x", texxt: "hi"}
  fwd: {type: webhook, url: "https://x.example.com", body: {a: "{{ steps.team.status_code }}"}}
  broken: {type: slack, webhook_url: 5, text: "{{ oops"}
  unused:
    type: followup
    model: kuaishou/kling-2.6-video
    input: {prompt: x, start_frame_url: "{{ outputs[0].url }}", duration: 7}
rules:
  - name: r1
    match: {tagz: [a], status: done}
    handlers: [team, nope]
  - name: r1
    handlers: [team, fwd, {handler: fwd, wiht: {}}]
  - name: r2
    handlers: [team, fwd]
"""


def test_check_lists_every_problem_without_cascades(tmp_path):
    assert problems(tmp_path, EVERYTHING_WRONG) == [
        "handlers.team.texxt: unknown key (did you mean 'text'?)",
        "handlers.broken.webhook_url: Expected `str`, got `int`",
        "handlers.broken.text: template error: unexpected end of template, expected "
        "'end of print statement'.",
        "rules[0].match.tagz: unknown key (did you mean 'tags'?)",
        "rules[0].match.status: Invalid enum value 'done'",
        "rules[0].handlers[1]: no handler named 'nope'",
        "rules[1].name: duplicate rule name 'r1'",
        "rules[1].handlers[2].wiht: unknown key (did you mean 'with'?)",
        "handlers.unused (followup).input.duration: must be one of 5, 10",
    ]


def test_duplicate_keys_are_refused(tmp_path):
    (found,) = problems(tmp_path, VALID + "storage: {url: sqlite:///x.db}\nstorage: {}\n")
    assert found.startswith("not valid YAML: duplicate key 'storage'")


def test_example_config_is_valid():
    example = Path(__file__).resolve().parents[2] / "taskhook.example.yaml"
    env = {"TASKHOOK_PUBLIC_URL": "https://hooks.example.com", "TASKHOOK_API_KEY": "k",
           "TASKHOOK_SECRET": "s" * 40, "UNIFICALLY_API_KEY": "u",
           "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X"}
    loaded = config.load(example, env=env)
    assert [rule.name for rule in loaded.rules] == [
        "archive-and-tell", "tell-failures", "animate-images"]
