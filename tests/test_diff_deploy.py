"""The GitOps deliverables: the Dockerfile, docker-compose.yml and Kubernetes manifests parse and
say what they must (probes, grace, non-root, Redis URL from a Secret, settings that exist), and
examples/gitops/policy-diff.sh checks, diffs and posts a comment against a local receiver.
Docker and a cluster are not needed (nor used)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import ServeSettings

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
YAML_FILES = [*sorted(K8S.rglob("*.yaml")), ROOT / "docker-compose.yml", ROOT / "examples/gitops/github-actions.yml"]
FIXTURES = ROOT / "tests" / "fixtures" / "diff"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifest(kind: str, path: Path = K8S / "base") -> dict[str, Any]:
    found = [d for f in sorted(path.glob("*.yaml")) for d in docs(f) if d.get("kind") == kind
             and d.get("metadata", {}).get("name") == "tollgate"]
    assert len(found) == 1, kind
    return found[0]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    assert docs(path)


def test_deployment_probes_grace_and_secret() -> None:
    spec = manifest("Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = float(env["TOLLGATE_SHUTDOWN_GRACE_S"]["value"])
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + grace  # streams may finish
    assert env["TOLLGATE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "tollgate-redis"
    assert env["TOLLGATE_STATE_STORE"]["value"] == "redis"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert {v["name"]: v for v in spec["volumes"]}["policies"]["configMap"]["name"] == "tollgate-policies"
    assert manifest("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert manifest("Service")["spec"]["ports"][0]["targetPort"] == "http"


def test_kustomizations_name_real_files() -> None:
    base = docs(K8S / "base" / "kustomization.yaml")[0]
    for name in base["resources"]:
        assert (K8S / "base" / name).is_file(), name
    configmap = docs(K8S / "configmap" / "kustomization.yaml")[0]
    generator = configmap["configMapGenerator"][0]
    assert generator["options"]["disableNameSuffixHash"] is True  # swapped in place: hot reload
    for name in generator["files"]:
        assert (K8S / "configmap" / name).is_file(), name
    overlay = docs(K8S / "git-sync" / "kustomization.yaml")[0]
    patch = docs(K8S / "git-sync" / overlay["patches"][0]["path"])[0]["spec"]["template"]["spec"]
    sync = {c["name"]: c for c in patch["containers"]}["git-sync"]
    flags = dict(a.removeprefix("--").split("=", 1) for a in sync["args"] if "=" in a)
    policies = {e["name"]: e["value"] for e in patch["containers"][0]["env"]}["TOLLGATE_POLICIES"]
    assert policies.startswith(f"{flags['root']}/{flags['link']}/")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("variant", ["configmap", "git-sync"])
def test_kustomize_renders(variant: str) -> None:
    done = subprocess.run(["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(K8S / variant)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(done.stdout) if d)
    expected = ["Deployment", "Service", "PodDisruptionBudget", "Secret"]
    assert kinds == sorted(expected + (["ConfigMap"] if variant == "configmap" else []))
    deployment = next(d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert ("emptyDir" in volumes["policies"]) == (variant == "git-sync")
    assert ("configMap" in volumes["policies"]) == (variant == "configmap")


def test_settings_named_in_deployment_files_exist() -> None:
    fields = {f"TOLLGATE_{name.upper()}" for name in ServeSettings.model_fields}
    texts = [(ROOT / "Dockerfile").read_text(), *(p.read_text() for p in YAML_FILES)]
    named = {m for text in texts for m in re.findall(r"\bTOLLGATE_[A-Z_]+\b", text)}
    assert named and named <= fields, named - fields


def test_dockerfile_and_compose() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*/readyz", dockerfile, re.M | re.S)
    assert 'VOLUME ["/data"]' in dockerfile and 'ENTRYPOINT ["tollgate", "serve"]' in dockerfile
    compose = docs(ROOT / "docker-compose.yml")[0]
    gateway = compose["services"]["gateway"]
    assert gateway["environment"]["TOLLGATE_WORKERS"] == "2"
    assert gateway["environment"]["TOLLGATE_REDIS_URL"].startswith("redis://redis:")
    assert "redis" in compose["services"] and "tollgate-data:/data" in gateway["volumes"]


class _Receiver(BaseHTTPRequestHandler):
    posted: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.posted.append((self.headers["authorization"], body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.posted = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/comments", _Receiver.posted
    finally:
        server.shutdown()


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), *argv], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"})


def test_policy_diff_script(tmp_path: Path, receiver: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url, posted = receiver
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "base", repo / "policies")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "policies")
    _git(repo, "commit", "-q", "-m", "base")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOLLGATE": f"{sys.executable} -m gateway",
           "POST_URL": url, "POST_TOKEN": "ci-token"}
    script = str(ROOT / "examples" / "gitops" / "policy-diff.sh")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, "main", "policies"], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=120, check=False)

    same = run()
    assert same.returncode == 0, same.stderr
    assert "no policy change" in same.stdout and posted == [] and not (repo / "policy-diff.md").exists()
    shutil.rmtree(repo / "policies")
    shutil.copytree(FIXTURES / "access", repo / "policies")  # the pull request's change, not committed
    changed = run()
    assert changed.returncode == 0, changed.stderr
    assert len(posted) == 1 and posted[0][0] == "Bearer ci-token"
    assert posted[0][1]["body"].startswith("**2 keys lose access to gpt-4o")
    keys = repo / "policies" / "keys.toml"
    keys.write_text(keys.read_text().replace('group = "team"', 'group = "nobody"', 1))
    broken = run()
    assert broken.returncode == 1 and "keys.toml" in broken.stdout + broken.stderr
    assert len(posted) == 1
