"""Stand-ins for the cloud-facing CLIs the pipeline's scripts call (terraform output, aws ecr, skopeo,
kubectl): small programs on PATH that answer from a JSON state file and record every
call, so a test runs the real script and then reads what it asked the cloud to do."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Each shim is this file run as a program; SHIM_NAME (set by the launcher) picks the behaviour.
_HERE = Path(__file__).resolve()


class Shims:
    """A bin/ directory of shims sharing one state file and one call log."""

    def __init__(self, root: Path, state: dict[str, Any]) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state_file = root / "state.json"
        self.log = root / "calls.jsonl"
        self.state_file.write_text(json.dumps(state))

    def add(self, *names: str) -> Shims:
        for name in names:
            path = self.bin / name
            path.write_text(
                f"#!{sys.executable}\nimport runpy\n"
                f"runpy.run_path({str(_HERE)!r}, init_globals={{'SHIM_NAME': {name!r}}}, run_name='__shim__')\n"
            )
            path.chmod(0o755)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "SHIM_STATE": str(self.state_file),
            "SHIM_LOG": str(self.log),
            **extra,
        }

    def calls(self, name: str | None = None) -> list[list[str]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r for r in rows if name is None or r[0] == name]

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())  # type: ignore[no-any-return]


def _terraform(args: list[str], state: dict[str, Any]) -> int:
    """`terraform output [-json|-raw] [NAME]` over state["terraform_outputs"] (values keep their types)."""
    outputs: dict[str, Any] = state.get("terraform_outputs", {})
    words = [a for a in args if not a.startswith("-")]
    if words[:1] in (["init"], ["plan"], ["apply"]):
        # What the pipeline hands Terraform: the TF_VAR_* it sees, and the plan file it writes/reads.
        state.setdefault("tf_vars", []).append({k: v for k, v in os.environ.items() if k.startswith("TF_VAR_")})
        return 0
    if words[:1] == ["show"]:
        print("Plan: 0 to add, 0 to change, 0 to destroy.")
        return 0
    if "output" not in args:
        print(f"terraform shim: unsupported {args}", file=sys.stderr)
        return 1
    rest = [a for a in args[args.index("output") + 1 :] if not a.startswith("-")]
    if not rest:
        print(json.dumps({k: {"value": v, "type": "dynamic", "sensitive": False} for k, v in outputs.items()}))
        return 0
    name = rest[0]
    if name not in outputs:
        print(f"Error: Output {name!r} not found", file=sys.stderr)
        return 1
    value = outputs[name]
    if "-json" in args:
        print(json.dumps(value))
    elif isinstance(value, (list, dict)):
        print("Error: Unsupported value for raw output", file=sys.stderr)
        return 1
    elif value is not None:
        sys.stdout.write(str(value).lower() if isinstance(value, bool) else str(value))
    return 0


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _aws(args: list[str], state: dict[str, Any]) -> int:
    """`aws ecr` as the promotion and publish scripts use it, over state["ecr"]: {repo: {tag: digest}}."""
    ecr: dict[str, dict[str, str]] = state.setdefault("ecr", {})
    if args[:2] == ["eks", "update-kubeconfig"]:
        return 0
    if args[:1] != ["ecr"]:
        print(f"aws shim: unsupported {args}", file=sys.stderr)
        return 1
    op, repo = args[1], _arg(args, "--repository-name")
    tags = ecr.get(repo)
    if tags is None:
        print(f"An error occurred (RepositoryNotFoundException): repository {repo} not found", file=sys.stderr)
        return 254
    image_id = _arg(args, "--image-ids") if "--image-ids" in args else ""
    key, _, value = image_id.partition("=")
    digests = set(tags.values())
    if op in ("describe-images", "batch-get-image"):
        digest = tags.get(value) if key == "imageTag" else (value if value in digests else None)
        if digest is None:
            if op == "batch-get-image":
                print(json.dumps({"images": [], "failures": [{"failureCode": "ImageNotFound"}]}))
                return 0
            print(
                "An error occurred (ImageNotFoundException) when calling the DescribeImages operation", file=sys.stderr
            )
            return 254
        if op == "batch-get-image":
            print(
                json.dumps(
                    {
                        "images": [
                            {
                                "imageId": {"imageDigest": digest},
                                "imageManifest": f"manifest-of-{digest}",
                                "imageManifestMediaType": "application/vnd.oci.image.index.v1+json",
                            }
                        ]
                    }
                )
            )
        else:
            print(
                json.dumps(
                    {
                        "imageDetails": [
                            {"imageDigest": digest, "imageTags": sorted(t for t, d in tags.items() if d == digest)}
                        ]
                    }
                )
            )
        return 0
    if op == "put-image":
        tag, manifest = _arg(args, "--image-tag"), _arg(args, "--image-manifest")
        digest = manifest.removeprefix("manifest-of-")
        if tag in tags and tags[tag] != digest:
            print(f"An error occurred (ImageTagAlreadyExistsException): tag {tag} is immutable", file=sys.stderr)
            return 254
        if tag in tags:
            print("An error occurred (ImageAlreadyExistsException)", file=sys.stderr)
            return 254
        tags[tag] = digest
        print(json.dumps({"image": {"imageId": {"imageDigest": digest, "imageTag": tag}}}))
        return 0
    print(f"aws shim: unsupported ecr {op}", file=sys.stderr)
    return 1


def _container_port(docs: list[dict[str, Any]], selector: dict[str, str], name: str) -> int | None:
    for doc in docs:
        if doc.get("kind") != "Deployment":
            continue
        template = doc["spec"]["template"]
        if not selector.items() <= template["metadata"].get("labels", {}).items():
            continue
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                if port.get("name") == name:
                    return int(port["containerPort"])
    return None


def _kubectl(args: list[str], state: dict[str, Any]) -> int:
    """`kubectl port-forward svc/NAME LOCAL:PORT` as kubectl resolves it, over a rendered manifest:
    PORT must be one of the Service's ports, its targetPort a container port of the selected pods;
    then LOCAL is forwarded to state["backend"] (the local process standing in for the pod)."""
    import socket
    import threading

    import yaml

    if "port-forward" not in args:
        return _kubectl_deployments(args, state)
    target, mapping = args[args.index("port-forward") + 1 :][:2]
    local, _, remote = mapping.partition(":")
    name = target.removeprefix("svc/").removeprefix("service/")
    docs = [d for d in yaml.safe_load_all(Path(state["manifest"]).read_text()) if d]
    service = next((d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == name), None)
    if service is None:
        print(f'Error from server (NotFound): services "{name}" not found', file=sys.stderr)
        return 1
    port = next((p for p in service["spec"]["ports"] if remote in (str(p["port"]), p.get("name"))), None)
    if port is None:
        print(f"error: Service {name} does not have a service port {remote}", file=sys.stderr)
        return 1
    target_port = port.get("targetPort", port["port"])
    if isinstance(target_port, str):
        resolved = _container_port(docs, service["spec"]["selector"], target_port)
        if resolved is None:
            print(f"error: no container port named {target_port} behind Service {name}", file=sys.stderr)
            return 1
        target_port = resolved
    host, _, backend_port = str(state["backend"]).partition(":")
    server = socket.create_server(("127.0.0.1", int(local)))
    print(f"Forwarding from 127.0.0.1:{local} -> {target_port}", flush=True)
    with open(os.environ["SHIM_LOG"] + ".pids", "a") as pids:
        pids.write(f"{os.getpid()}\n")

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    while True:  # until the test kills it, like the real port-forward
        client, _ = server.accept()
        upstream = socket.create_connection((host, int(backend_port)))
        threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()


def _kubectl_deployments(args: list[str], state: dict[str, Any]) -> int:
    """apply / get / rollout over state["deployments"] ({name: revision}): each apply of a changed
    Deployment is a new revision, `rollout status` fails for names in state["unhealthy"], `rollout
    undo --to-revision` makes a new revision with the old one's template (as Kubernetes does)."""
    import yaml

    deployments: dict[str, int] = state.setdefault("deployments", {})
    words = [a for a in args if not a.startswith("-")]
    if words[:1] == ["apply"]:
        manifest = Path(args[args.index("-f") + 1]).read_text()
        for doc in yaml.safe_load_all(manifest):
            if doc and doc.get("kind") == "Deployment":
                name = doc["metadata"]["name"]
                deployments[name] = deployments.get(name, 0) + 1
        return 0
    if "get" in words:
        rest = words[words.index("get") + 1 :]
        if rest[:1] == ["deployments"] and "json" in args:
            items = [
                {"metadata": {"name": n, "annotations": {"deployment.kubernetes.io/revision": str(r)}}}
                for n, r in deployments.items()
            ]
            print(json.dumps({"items": items}))
        elif rest[:1] == ["deployments"]:
            print("\n".join(f"deployment.apps/{n}" for n in deployments))
        elif rest[:1] == ["deployment"]:
            sys.stdout.write(str(deployments[rest[1]]))
        return 0
    if "rollout" in words:
        op, target = words[words.index("rollout") + 1 : words.index("rollout") + 3]
        name = target.split("/")[-1]
        if op == "status":
            return 1 if name in state.get("unhealthy", []) else 0
        if op == "undo":
            to = next(a.split("=", 1)[1] for a in args if a.startswith("--to-revision="))
            state.setdefault("undone", {})[name] = int(to)
            state["unhealthy"] = [n for n in state.get("unhealthy", []) if n != name]  # the old template was fine
            deployments[name] = max(deployments.values()) + 1
            return 0
    print(f"kubectl shim: unsupported {args}", file=sys.stderr)
    return 1


def _refuse(args: list[str], state: dict[str, Any]) -> int:
    """docker, crane, cosign: present so that a script calling them is recorded (and fails)."""
    print(f"shim: this script must not need {args}", file=sys.stderr)
    return 1


def _skopeo(args: list[str], state: dict[str, Any]) -> int:
    """`skopeo inspect --raw` and `skopeo copy` between an upstream registry and our ECR.

    state["upstream"]: {name as the script writes it: {"tags": {tag: digest}, "manifests": {digest:
    text}}} (no name normalisation here: the script must name the image the way the test does).
    A copy lands in state["ecr"] ({repository: {tag: digest}}, the `aws` shim's, immutable tags) under
    the path after the destination's host. Without --all only one platform's manifest is copied, so
    the mirror gets another digest than the index's, as with the real skopeo; state["rewrites"] makes
    the destination store another digest whatever the flags."""
    upstream: dict[str, dict[str, dict[str, str]]] = state.get("upstream", {})
    refs = [a.removeprefix("docker://") for a in args if a.startswith("docker://")]

    def manifest(ref: str) -> tuple[str, str] | None:
        name, _, digest = ref.partition("@")
        if not digest:
            name, _, tag = name.rpartition(":")
            digest = upstream.get(name, {}).get("tags", {}).get(tag, "")
        text = upstream.get(name, {}).get("manifests", {}).get(digest)
        return None if text is None else (digest, text)

    if args[:1] == ["inspect"] and "--raw" in args and len(refs) == 1:
        found = manifest(refs[0])
        if found is None:
            print(f"FATA[0000] Error reading manifest {refs[0]}: manifest unknown", file=sys.stderr)
            return 1
        sys.stdout.write(found[1])
        return 0
    if args[:1] == ["copy"] and len(refs) == 2:
        found = manifest(refs[0])
        if found is None:
            print(f"FATA[0000] initializing source {refs[0]}: manifest unknown", file=sys.stderr)
            return 1
        # Without --all: one platform's manifest. state["rewrites"]: a registry storing something else.
        digest = found[0] if "--all" in args and not state.get("rewrites") else "sha256:" + "f" * 64
        host, _, path = refs[1].partition("/")
        repo, _, tag = path.rpartition(":")
        tags = state.setdefault("ecr", {}).get(repo)
        if tags is None:
            print(f"FATA[0000] trying to reuse blob in {host}/{repo}: name unknown", file=sys.stderr)
            return 1
        if tags.get(tag, digest) != digest:
            print(f"FATA[0000] writing manifest: tag invalid: {tag} is immutable", file=sys.stderr)
            return 1
        tags[tag] = digest
        return 0
    print(f"skopeo shim: unsupported {args}", file=sys.stderr)
    return 1


_HANDLERS = {
    "terraform": _terraform,
    "docker": _refuse,
    "aws": _aws,
    "kubectl": _kubectl,
    "crane": _refuse,
    "cosign": _refuse,  # present so that an unexpected signature is recorded (and fails)
    "skopeo": _skopeo,
}


def _main() -> int:
    name, args = str(globals()["SHIM_NAME"]), sys.argv[1:]
    state_file = Path(os.environ["SHIM_STATE"])
    state = json.loads(state_file.read_text())
    with open(os.environ["SHIM_LOG"], "a") as log:
        log.write(json.dumps([name, *args]) + "\n")
    code = _HANDLERS[name](args, state)
    state_file.write_text(json.dumps(state))
    return code


if __name__ == "__shim__":
    sys.exit(_main())
