"""The configuration file: typed, strict, interpolated from the environment, checked whole.

``load(path)`` returns a ``Config`` or raises ``ConfigError`` listing *every* problem, each
with its key path (``handlers.archive.buckett: unknown key``). Templates are compiled and
rendered against a sample context, and rules' handler names resolved, before anything runs.

``${VAR}`` and ``${VAR:-default}`` are replaced in string values after YAML parsing (so a
secret containing ``#`` or ``: `` cannot change the document's structure, and comments are
ignored); ``$${`` gives a literal ``${``. Values are then converted leniently, so
``port: ${PORT:-8000}`` is an integer.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import msgspec
import yaml
from msgspec import Meta

from handlers import Handler, load_handler_types
from service.errors import ConfigError
from service.templates import (
    ANY_STEPS,
    AnyKeys,
    TemplateError,
    compile_tree,
    render_tree,
    sample_context,
)

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}

Duration = Annotated[
    str, Meta(pattern=_DURATION_RE.pattern, description="a duration such as 30s, 15m, 2h, 7d")
]


def seconds(duration: str) -> float:
    """``"15m"`` -> ``900.0``."""
    match = _DURATION_RE.match(duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, kw_only=True):
    public_url: Annotated[
        str,
        Meta(
            pattern=r"^https?://[^/\s]+",
            description=(
                "how the upstream reaches this service; callbacks go to {public_url}/hooks/..."
            ),
        ),
    ]
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8000
    api_keys: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(min_length=1)]
    secret: Annotated[str, Meta(min_length=32, description="key for callback tokens")]


class StorageConfig(_Section, kw_only=True):
    url: Annotated[str, Meta(pattern=r"^sqlite:///.+")] = "sqlite:///./taskhook.db"
    retention: Duration = "30d"


class UpstreamConfig(_Section, kw_only=True):
    base_url: Annotated[str, Meta(pattern=r"^https?://")] = "https://api.unifically.com"
    api_key: Annotated[str, Meta(min_length=1)]
    verify: Literal["fetch", "trust"] = "fetch"
    reconcile_after: Duration = "15m"
    timeout: Duration = "30s"
    allow_unknown_models: bool = False
    reconcile_rate: Annotated[float, Meta(gt=0, description="status polls per second")] = 5.0
    signing_secret: (
        Annotated[
            str,
            Meta(
                pattern=r"^whsec_[A-Za-z0-9+/=]+$",
                description="require Standard Webhooks signatures on callbacks",
            ),
        ]
        | None
    ) = None


class SecurityConfig(_Section, kw_only=True):
    allow_private_networks: bool = False
    max_download_bytes: Annotated[int, Meta(ge=1)] = 2 * 1024**3


class RetryConfig(_Section, kw_only=True):
    max_attempts: Annotated[int, Meta(ge=1, le=100)] = 8
    max_age: Duration = "24h"


class MatchConfig(_Section, kw_only=True):
    status: Literal["completed", "failed"] | list[Literal["completed", "failed"]] | None = None
    model: str | list[str] | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}


class StepRef(_Section, kw_only=True):
    handler: str
    with_: dict[str, Any] = msgspec.field(default_factory=dict, name="with")


class RuleConfig(_Section, kw_only=True):
    name: Annotated[str, Meta(min_length=1)]
    match: MatchConfig = msgspec.field(default_factory=MatchConfig)
    handlers: Annotated[list[str | StepRef], Meta(min_length=1)]


@dataclass(frozen=True)
class BoundStep:
    """One step of one rule: a handler instance with its compiled templates."""

    handler_name: str
    handler: Handler
    templates: dict[str, Any]
    retry: RetryConfig


@dataclass(frozen=True)
class Rule:
    name: str
    match: MatchConfig
    steps: list[BoundStep]


@dataclass
class Config:
    server: ServerConfig
    upstream: UpstreamConfig
    storage: StorageConfig = field(default_factory=StorageConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    rules: list[Rule] = field(default_factory=list)
    source: str = "<memory>"

    @property
    def database_path(self) -> str:
        return self.storage.url.removeprefix("sqlite:///")


_TOP_LEVEL = {"server", "storage", "upstream", "security", "handlers", "rules"}
_VAR_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (YAML says it is an
    error; PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool | None):
                continue  # an unhashable key: construct_mapping reports it
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def default_path() -> Path:
    return Path(os.environ.get("TASKHOOK_CONFIG") or "taskhook.yaml")


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    path = Path(path) if path else default_path()
    try:
        text = path.read_text()
    except OSError as exc:
        hint = (
            " (start from taskhook.example.yaml, or try `taskhook serve --demo`)"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}{hint}"]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    return parse(data, source=str(path), env=env)


def parse(data: Any, source: str = "<memory>", env: dict[str, str] | None = None) -> Config:
    """Validates a parsed document; raises ``ConfigError`` with every problem found."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping"])
    data = _interpolate(data, "", os.environ if env is None else env, problems)
    unset = {p.split(": ", 1)[0] for p in problems}
    config = _build(data, problems)
    # A value left empty by an unset variable is reported once, as the unset variable.
    problems[len(unset) :] = [p for p in problems[len(unset) :] if p.split(": ", 1)[0] not in unset]
    if problems or config is None:
        raise ConfigError([f"{source}: {p}" for p in problems])
    config.source = source
    return config


def _build(data: dict[str, Any], problems: list[str]) -> Config | None:
    for key in data:
        if key not in _TOP_LEVEL:
            problems.append(f"{key}: unknown key{_did_you_mean(key, _TOP_LEVEL)}")
    server = _convert(ServerConfig, data.get("server"), "server", problems, required=True)
    upstream = _convert(UpstreamConfig, data.get("upstream"), "upstream", problems, required=True)
    storage = _convert(StorageConfig, data.get("storage", {}), "storage", problems)
    security = _convert(SecurityConfig, data.get("security", {}), "security", problems)
    specs = _handler_specs(data.get("handlers", {}), problems)
    allow_unknown = isinstance(upstream, UpstreamConfig) and upstream.allow_unknown_models
    rules = _Binder(specs, problems, allow_unknown).rules(data.get("rules", []))
    if None in (server, upstream, storage, security):
        return None
    return Config(server=server, upstream=upstream, storage=storage, security=security, rules=rules)


def _interpolate(value: Any, path: str, env: Any, problems: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, _join(path, str(k)), env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, name, default = match.groups()
        if escaped:
            return match.group(0)[1:]
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{path}: environment variable {name} is not set (and has no default)")
        return ""

    return _VAR_RE.sub(replace, value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _did_you_mean(key: str, choices: Any) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_PATTERN_WORDS = {
    r"^https?://[^/\s]+": "an http(s) URL",
    r"^https?://": "an http(s) URL",
    r"^(https?://|{{)": "an http(s) URL (or a template that renders one)",
    r"^sqlite:///.+": "a URL like sqlite:///./taskhook.db",
    _DURATION_RE.pattern: "a duration such as 30s, 15m, 2h or 7d",
    r"^whsec_[A-Za-z0-9+/=]+$": "a Standard Webhooks secret (whsec_ and base64)",
}


def friendly(message: str) -> str:
    """msgspec's message, with regular expressions replaced by what they mean."""
    for pattern, words in _PATTERN_WORDS.items():
        message = message.replace(f"Expected `str` matching regex {pattern!r}", f"must be {words}")
    return message


def _error_text(exc: msgspec.ValidationError, path: str) -> str:
    message = friendly(str(exc))
    where = re.search(r" - at `\$(.*)`$", message)
    if where:
        message = message[: where.start()]
        path = path + where.group(1)
    return f"{path}: {message}"


def _convert(tp: type, data: Any, path: str, problems: list[str], required: bool = False) -> Any:
    """Converts ``data`` to the Struct ``tp``, reporting every unknown or invalid key."""
    if data is None:
        if required:
            problems.append(f"{path}: required section is missing")
            return None
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{path}: must be a mapping")
        return None
    before = len(problems)
    fields = {f.encode_name: f for f in msgspec.structs.fields(tp)}
    for key in data:
        if key not in fields:
            problems.append(f"{_join(path, str(key))}: unknown key{_did_you_mean(key, fields)}")
    _check_fields(fields, data, path, problems)
    if len(problems) > before:
        return None
    return msgspec.convert(data, tp, strict=False)


def _check_fields(
    fields: dict[str, Any], data: dict[str, Any], path: str, problems: list[str]
) -> None:
    for name, info in fields.items():
        if name not in data:
            if info.required:
                problems.append(f"{_join(path, name)}: required")
            continue
        _check_value(info.type, data[name], _join(path, name), problems)


def _struct_in(tp: Any) -> type | None:
    """The Struct type among ``tp`` and its union members, if any."""
    for candidate in (tp, *get_args(tp)):
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _check_value(tp: Any, value: Any, path: str, problems: list[str]) -> None:
    """Checks one value; nested Structs (and lists of them) are checked key by key, so every
    problem inside them is listed, not only the first."""
    bare = get_args(tp)[0] if get_origin(tp) is Annotated else tp
    struct = _struct_in(bare)
    if struct is not None and isinstance(value, dict):
        _convert(struct, value, path, problems)
        return
    item = _struct_in(get_args(bare)[0]) if get_origin(bare) is list else None
    checked: set[int] = set()
    if item is not None and isinstance(value, list):
        for index, element in enumerate(value):
            if isinstance(element, dict):
                checked.add(index)
                _convert(item, element, f"{path}[{index}]", problems)
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        where = re.search(r" - at `\$\[(\d+)\]", str(exc))
        if not (where and int(where.group(1)) in checked):  # not listed already
            problems.append(_error_text(exc, path))


@dataclass(frozen=True)
class _HandlerSpec:
    name: str
    cls: type[Handler]
    options: dict[str, Any]
    retry: RetryConfig


def _handler_specs(data: Any, problems: list[str]) -> dict[str, _HandlerSpec | None]:
    if not isinstance(data, dict):
        problems.append("handlers: must be a mapping of names to handlers")
        return {}
    types = load_handler_types()
    specs: dict[str, _HandlerSpec | None] = {}
    for name, options in data.items():
        specs[str(name)] = _handler_spec(str(name), options, types, problems)
    return specs


def _handler_spec(
    name: str, options: Any, types: dict[str, type[Handler]], problems: list[str]
) -> _HandlerSpec | None:
    path = f"handlers.{name}"
    if not isinstance(options, dict):
        problems.append(f"{path}: must be a mapping with a 'type'")
        return None
    options = dict(options)
    type_name = options.pop("type", None)
    retry = _convert(RetryConfig, options.pop("retry", {}), f"{path}.retry", problems)
    if type_name not in types:
        known = ", ".join(sorted(types)) or "none installed"
        problems.append(f"{path}.type: unknown handler type {type_name!r} (known: {known})")
        return None
    cls = types[type_name]
    config = _convert(cls.Config, options, path, problems)
    syntax_ok = _syntax_ok(cls, options, path, problems)
    if config is None or retry is None or not syntax_ok:
        return None
    return _HandlerSpec(name=name, cls=cls, options=options, retry=retry)


def _syntax_ok(cls: type[Handler], options: dict[str, Any], path: str, problems: list[str]) -> bool:
    """Reports template syntax errors once per handler, even when no rule uses it."""
    ok = True
    for name in cls.templates:
        try:
            compile_tree(options.get(name))
        except TemplateError as exc:
            problems.append(f"{path}.{name}: template error: {exc.message}")
            ok = False
    return ok


def _names_in(raw: Any) -> set[str]:
    handlers = raw.get("handlers") if isinstance(raw, dict) else None
    names = set()
    for item in handlers if isinstance(handlers, list) else []:
        name = item.get("handler") if isinstance(item, dict) else item
        if isinstance(name, str):
            names.add(name)
    return names


class _Binder:
    """Binds rules to handler instances: resolves names, merges ``with``, checks templates."""

    def __init__(
        self, specs: dict[str, _HandlerSpec | None], problems: list[str], allow_unknown_models: bool
    ) -> None:
        self.specs = specs
        self.used: set[str] = set()
        self.problems = problems
        self.allow_unknown_models = allow_unknown_models

    def rules(self, data: Any) -> list[Rule]:
        if not isinstance(data, list):
            self.problems.append("rules: must be a list")
            return []
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, raw in enumerate(data):
            path = f"rules[{index}]"
            name = raw.get("name") if isinstance(raw, dict) else None
            if isinstance(name, str) and name in seen:
                self.problems.append(f"{path}.name: duplicate rule name {name!r}")
            seen.add(str(name))
            self.used.update(_names_in(raw))
            rule = _convert(RuleConfig, raw, path, self.problems)
            if rule is None:
                self.check_names(raw, path)
                continue
            steps = self.steps(rule, path)
            if steps is not None:
                rules.append(Rule(name=rule.name, match=rule.match, steps=steps))
        self.check_unused()
        return rules

    def check_names(self, raw: Any, path: str) -> None:
        """A rule that failed to convert still gets its handler names checked."""
        handlers = raw.get("handlers") if isinstance(raw, dict) else None
        for index, item in enumerate(handlers if isinstance(handlers, list) else []):
            name = item.get("handler") if isinstance(item, dict) else item
            if isinstance(name, str) and name not in self.specs:
                self.problems.append(
                    f"{path}.handlers[{index}]: no handler named {name!r}"
                    f"{_did_you_mean(name, self.specs)}"
                )

    def check_unused(self) -> None:
        """Handlers no rule uses are still checked (templates, follow-up inputs)."""
        for name, spec in self.specs.items():
            if spec is not None and name not in self.used:
                config = msgspec.convert(spec.options, spec.cls.Config, strict=False)
                self.compile(spec.cls, config, f"handlers.{name}", ANY_STEPS)

    def steps(self, rule: RuleConfig, path: str) -> list[BoundStep] | None:
        steps: list[BoundStep] = []
        results: dict[str, dict[str, Any]] = {}
        failed = False
        for index, ref in enumerate(rule.handlers):
            ref = StepRef(handler=ref) if isinstance(ref, str) else ref
            step_path = f"{path}.handlers[{index}]"
            step = self.step(ref, step_path, results)
            if step is None:
                failed = True
                results[ref.handler] = AnyKeys()  # its own problem is listed; no cascade
                continue
            if ref.handler in results:
                self.problems.append(
                    f"{step_path}: handler {ref.handler!r} appears twice in one rule"
                )
                failed = True
            results[ref.handler] = step.handler.result_sample
            steps.append(step)
        return None if failed else steps

    def step(self, ref: StepRef, path: str, results: dict[str, dict[str, Any]]) -> BoundStep | None:
        if ref.handler not in self.specs:
            self.problems.append(
                f"{path}: no handler named {ref.handler!r}{_did_you_mean(ref.handler, self.specs)}"
            )
            return None
        spec = self.specs[ref.handler]
        if spec is None:  # its own problems are already listed
            return None
        config = _convert(
            spec.cls.Config, {**spec.options, **ref.with_}, f"{path}.with", self.problems
        )
        if config is None:
            return None
        templates = self.compile(spec.cls, config, path, results)
        if templates is None:
            return None
        return BoundStep(
            handler_name=spec.name, handler=spec.cls(config), templates=templates, retry=spec.retry
        )

    def compile(
        self,
        cls: type[Handler],
        config: msgspec.Struct,
        path: str,
        results: dict[str, dict[str, Any]],
    ) -> dict[str, Any] | None:
        """Compiles the template fields, renders each with a sample context and lets the
        handler type check the rendered values (a follow-up's input against the catalog)."""
        context = sample_context(results)
        templates: dict[str, Any] = {}
        rendered: dict[str, Any] = {}
        before = len(self.problems)
        label = f"{path} ({cls.type_name})"
        for name in cls.templates:
            try:
                templates[name] = compile_tree(getattr(config, name))
                rendered[name] = render_tree(templates[name], context)
            except TemplateError as exc:
                self.problems.append(f"{label}.{name}: template error: {exc.message}")
        if len(self.problems) == before:
            for problem in cls.check(config, rendered, self.allow_unknown_models):
                self.problems.append(f"{label}.{problem}")
        return templates if len(self.problems) == before else None
