"""`make deploy-check`: build the images, bring the compose stack up, use it, tear it down.

What it shows, on the machine it runs on (docs/deployment.md, "Checking a deployment"):

1. a Docker engine answers (started here, and said so, when it does not);
2. the CPU image builds (from the public base images, or from docker/local-base/ where no
   registry answers); with --gpu the CUDA image too (built, not started);
3. docker/compose.yml (+ compose.check.yml: a CPU worker labelled `fake_h100`) comes up
   healthy with every published port on 127.0.0.1;
4. MLflow and Ray refuse requests without the credential and accept them with it;
5. `algoperf env` finds every node on the same versions;
6. a campaign submitted as a Ray job runs on the worker; the worker container is killed
   mid-trial, restarts, and the trial resumes with no duplicate rows (trial log, MLflow);
7. a campaign driven from this host (`algoperf run --address ray://...`) runs there too;
8. both campaigns' runs are read back from MLflow through its API with a user's password;
9. everything is torn down (containers, volumes, secrets); the timings are printed.

Run it with the Python that drives campaigns (the "laptop": same Ray and Python minor
version as the image). It exits 1 with the reason on the first check that fails.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy_stack import (  # noqa: E402 - the sibling module, found without installing
    REPO,
    SECRET_NAMES,
    CheckFailed,
    Stack,
    docker_client,
    ensure_engine,
    free_ports,
    http_status,
    image_size,
    run,
    run_ray_client,
)

WORKER_LABEL = "fake_h100"
DEFAULT_EXTRA_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def build_images(docker: str, python_image: str, extra_ca: Path | None, gpu: bool) -> dict[str, float]:
    """Build algoperf:cpu (and algoperf:gpu); returns the seconds each took."""
    commit = run(["git", "rev-parse", "HEAD"], cwd=REPO).stdout.strip() or "unknown"
    times = {}
    for tag, extra in [("algoperf:cpu", "cpu")] + ([("algoperf:gpu", "cuda12")] if gpu else []):
        argv = [docker, "build", "-f", "docker/Dockerfile", "-t", tag, "--build-arg", f"JAX_EXTRA={extra}",
                "--build-arg", f"PYTHON_IMAGE={python_image}", "--build-arg", f"GIT_COMMIT={commit}"]
        if extra_ca is not None:
            argv += ["--secret", f"id=extra_ca,src={extra_ca}"]
        print(f"deploy-check: building {tag} on {python_image} ...", flush=True)
        start = time.monotonic()
        run([*argv, "."], cwd=REPO, env={"DOCKER_BUILDKIT": "1"}, timeout=3600, what=f"docker build {tag}")
        times[tag] = time.monotonic() - start
        print(f"deploy-check: built {tag} in {times[tag]:.0f} s ({image_size(docker, tag)})", flush=True)
    return times


def choose_bases(docker: str, local_bases: bool) -> tuple[str, str]:
    """The Python and PostgreSQL base images: the public ones if present or pullable, else local."""
    public = ("python:3.11-slim-bookworm", "postgres:16-bookworm")
    if not local_bases:
        present = all(run([docker, "image", "inspect", image], check=False).returncode == 0 for image in public)
        if present or all(run([docker, "pull", "-q", image], check=False, timeout=300).returncode == 0 for image in public):
            return public
        print("deploy-check: no image registry answers; using the local bases (docker/local-base/build.sh)", flush=True)
    run([str(REPO / "docker" / "local-base" / "build.sh")], env={"DOCKER": docker}, timeout=1800,
        what="docker/local-base/build.sh", show=True)
    return "algoperf-local/python:3.11-slim-bookworm", "algoperf-local/postgres:15-bookworm"


def write_secrets(folder: Path) -> dict[str, str]:
    folder.mkdir(mode=0o700)
    values = {name: secrets.token_hex(32) if name == "ray_auth_token" else secrets.token_urlsafe(24) for name in SECRET_NAMES}
    for name, value in values.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o644)  # read by the services' own users; the folder keeps others out
    return values


def check_refusals(stack: Stack) -> None:
    """Without the credential MLflow and Ray say no; with it, yes."""
    search = f"{stack.mlflow_local}/api/2.0/mlflow/experiments/search?max_results=1"
    got = {"mlflow without a password": http_status(search),
           "mlflow with a wrong password": http_status(search, auth=("admin", "wrong-password-123")),
           "ray dashboard without the token": http_status(f"{stack.dashboard}/api/version"),
           "ray jobs API without the token": http_status(f"{stack.dashboard}/api/jobs/"),
           "ray jobs API with a wrong token": http_status(f"{stack.dashboard}/api/jobs/", headers={"Authorization": "Bearer " + "0" * 64})}
    refused = {what: code for what, code in got.items() if code not in (401, 403)}
    if refused:
        raise CheckFailed(f"not refused: {refused} (expected 401/403)")
    ok = {"mlflow as admin": http_status(search, auth=("admin", stack.secrets["mlflow_admin_password"])),
          "ray jobs API with the token": http_status(f"{stack.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {stack.secrets['ray_auth_token']}"})}
    if set(ok.values()) != {200}:
        raise CheckFailed(f"with the credential: {ok} (expected 200)")
    # The Ray client port (what `algoperf run --address ray://...` dials), asked directly.
    client = {what: ray_client_status(stack.client, token) for what, token in
              [("ray client without the token", None), ("ray client with a wrong token", "0" * 64)]}
    if set(client.values()) != {"UNAUTHENTICATED"}:
        raise CheckFailed(f"the Ray client port did not refuse: {client}")
    if (status := ray_client_status(stack.client, stack.secrets["ray_auth_token"])) != "OK":
        raise CheckFailed(f"the Ray client port refused the cluster token: {status}")
    got.update(client)
    print(f"deploy-check: refused without the credential: {', '.join(sorted(got))}", flush=True)


def ray_client_status(address: str, token: str | None) -> str:
    """The gRPC status the Ray client server answers a ping with (OK, UNAUTHENTICATED, ...)."""
    import grpc
    from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc

    with grpc.insecure_channel(address.removeprefix("ray://")) as channel:
        stub = ray_client_pb2_grpc.RayletDriverStub(channel)
        metadata = [("authorization", f"Bearer {token}")] if token else None
        try:
            stub.ClusterInfo(ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING),
                             metadata=metadata, timeout=60)
        except grpc.RpcError as e:
            return e.code().name
    return "OK"


def check_env(stack: Stack) -> dict:
    done = run_ray_client([sys.executable, "-m", "algoperf.cli", "env", "--json", "--address", stack.client,
                           "--tracking-uri", stack.mlflow_local], stack.laptop_env(), "algoperf env --address", timeout=600)
    report = json.loads(done.stdout)
    nodes = report["nodes"]
    if len(nodes) != 2:
        raise CheckFailed(f"algoperf env found {len(nodes)} node(s), expected the head and one worker")
    versions = [node["facts"]["versions"] for node in nodes]
    if any(v != versions[0] for v in versions):
        raise CheckFailed(f"the nodes' versions differ: {versions}")
    if not report["tracking"].get("access_ok"):
        raise CheckFailed(f"algoperf env: the tracking server refused the laptop's user: {report['tracking']}")
    images = {node["facts"].get("image", {}).get("git_commit") for node in nodes}
    print(f"deploy-check: algoperf env: {len(nodes)} nodes, same versions (jax {versions[0].get('jax')}, "
          f"ray {versions[0].get('ray')}, mlflow {versions[0].get('mlflow')}), image commit {images}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local-bases", action="store_true", help="Use docker/local-base/ images without trying the registry.")
    parser.add_argument("--gpu", action="store_true", help="Also build the CUDA image (large; not started).")
    parser.add_argument("--extra-ca", default=os.environ.get("ALGOPERF_EXTRA_CA", str(DEFAULT_EXTRA_CA)),
                        help="A CA bundle pip trusts during the build (a build secret, not kept in the image); 'none' for none.")
    parser.add_argument("--max-steps", type=int, default=3000, help="Steps of the killed-and-resumed trial.")
    parser.add_argument("--keep", action="store_true", help="Leave the stack up (tear it down with the printed command).")
    args = parser.parse_args(argv)
    started = time.monotonic()
    docker = docker_client()
    try:
        ensure_engine(docker)
        python_image, postgres_image = choose_bases(docker, args.local_bases)
        extra_ca = None if args.extra_ca == "none" else Path(args.extra_ca)
        if extra_ca is not None and not extra_ca.is_file():
            raise CheckFailed(f"--extra-ca {extra_ca}: no such file (pass 'none' to build without an extra CA)")
        build_s = build_images(docker, python_image, extra_ca, args.gpu)
        bases = (python_image, postgres_image)
    except CheckFailed as e:
        print(f"deploy-check: FAILED: {e}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="algoperf-deploy-check-") as tmp:
        work = Path(tmp)
        values = write_secrets(work / "secrets")
        mlflow_port, client_port, dashboard_port = free_ports(3)
        stack = Stack(docker, work, values, postgres_image, mlflow_port, client_port, dashboard_port)
        try:
            timings = exercise(stack, args.max_steps)
        except CheckFailed as e:
            print(f"deploy-check: FAILED: {e}", file=sys.stderr)
            stack.dump_logs()
            return 1
        finally:
            if args.keep:
                print(f"deploy-check: left up; tear down with: {' '.join(stack.compose_argv('down', '-v'))}")
            else:
                stack.down()
    print("\ndeploy-check: PASSED")
    for tag, seconds in build_s.items():
        print(f"  build {tag:<14} {seconds:7.0f} s   image {image_size(docker, tag)}")
    for tag in bases:
        print(f"  base image {tag}: {image_size(docker, tag)}")
    for name, seconds in timings.items():
        print(f"  {name:<20} {seconds:7.0f} s")
    print(f"  total                {time.monotonic() - started:7.0f} s")
    return 0


def exercise(stack: Stack, max_steps: int) -> dict[str, float]:
    timings = {}
    start = time.monotonic()
    stack.up()
    timings["stack up (healthy)"] = time.monotonic() - start
    stack.check_ports_on_loopback()
    stack.create_mlflow_users()
    check_refusals(stack)
    check_env(stack)
    start = time.monotonic()
    stack.campaign_as_job_with_worker_killed("check_job", max_steps, WORKER_LABEL)
    timings["campaign (Ray job)"] = time.monotonic() - start
    start = time.monotonic()
    stack.campaign_from_laptop("check_laptop", WORKER_LABEL)
    timings["campaign (laptop)"] = time.monotonic() - start
    return timings


if __name__ == "__main__":
    if shutil.which("git") is None:
        sys.exit("deploy-check: git is needed (the image records the commit)")
    sys.exit(main())
