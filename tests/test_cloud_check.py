"""`tollgate check` on Bedrock and Vertex providers: missing or partial credentials name the
provider and what is missing (a warning under --allow-missing-env); what the bundle gives is
resolved into the runtime's credentials and masked like any secret; the AWS chain is read from
the environment and profile files without calling any metadata endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import BundleError, load_snapshot
from tests.fakes.vertex_upstream import service_account
from tests.gateway_process import ROOT

BEDROCK = """
schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "aws"
kind = "bedrock"
region = "eu-west-1"
models = ["m"]
{extra}
"""
VERTEX = """
schema = 1
[settings]
pricing = "lenient"

[[provider]]
id = "gcp"
kind = "vertex"
models = ["m"]
{extra}
"""


@pytest.fixture(autouse=True)
def no_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS credentials anywhere this test could find them, and no metadata endpoint."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _bundle(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "policies"
    d.mkdir(exist_ok=True)
    (d / "bundle.toml").write_text(text)
    return d


def _problems(directory: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(BundleError) as failed:
        load_snapshot(directory, env=env or {})
    return "\n".join(str(p) for p in failed.value.problems)


def test_bedrock_without_any_credentials_names_the_provider(tmp_path: Path) -> None:
    d = _bundle(tmp_path, BEDROCK.format(extra=""))
    text = _problems(d)
    assert "bedrock provider `aws`: no AWS credentials found" in text and "access_key_id" in text
    snap = load_snapshot(d, env={}, allow_missing_env=True)  # a warning, not an error
    assert any("no AWS credentials found" in w for w in snap.warnings)
    done = subprocess.run([sys.executable, "-m", "gateway", "check", str(d)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                      "AWS_EC2_METADATA_DISABLED": "true"})
    assert done.returncode != 0 and "no AWS credentials found" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_bedrock_credentials_from_bundle_env_and_profile(tmp_path: Path) -> None:
    half = _bundle(tmp_path, BEDROCK.format(extra='access_key_id = "${MY_KEY_ID}"'))
    assert "secret_access_key missing" in _problems(half, {"MY_KEY_ID": "AKIAX"})
    full = BEDROCK.format(extra='access_key_id = "${MY_KEY_ID}"\nsecret_access_key = "${MY_SECRET}"')
    snap = load_snapshot(_bundle(tmp_path, full), env={"MY_KEY_ID": "AKIAX", "MY_SECRET": "s3cr3t-value"})
    p = snap.providers["aws"]
    assert p.credentials == {"access_key_id": "AKIAX", "secret_access_key": "s3cr3t-value"}
    assert p.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert "s3cr3t-value" not in snap.redactor.text("echo s3cr3t-value") and "s3cr3t-value" not in repr(p)
    plain = _bundle(tmp_path, BEDROCK.format(extra=""))  # the standard variables, from the env (file)
    env = {"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}
    assert load_snapshot(plain, env=env).providers["aws"].credentials["access_key_id"] == "AKIAENV"
    credentials = tmp_path / "no-credentials"  # the file the AWS chain reads (fixture)
    credentials.write_text("[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = p\n")
    with_profile = _bundle(tmp_path, BEDROCK.format(extra='profile = "dev"'))
    assert load_snapshot(with_profile, env={}).providers["aws"].credentials == {"profile": "dev"}
    roles = _bundle(tmp_path, BEDROCK.format(extra="instance_role = true"))
    assert load_snapshot(roles, env={}).providers["aws"].credentials == {}


def test_vertex_credentials_are_checked(tmp_path: Path) -> None:
    d = _bundle(tmp_path, VERTEX.format(extra=""))
    text = _problems(d)
    assert "vertex provider `gcp` needs a project" in text and "no Google credentials" in text
    missing_file = _bundle(tmp_path, VERTEX.format(extra=f'project = "p"\nservice_account_file = "{tmp_path}/nope.json"'))
    assert "cannot read the service account file" in _problems(missing_file)
    not_sa = _bundle(tmp_path, VERTEX.format(extra='project = "p"\nservice_account_json = "${SA}"'))
    assert "lacks client_email, private_key, token_uri" in _problems(not_sa, {"SA": json.dumps({"type": "x"})})
    assert "is not JSON" in _problems(not_sa, {"SA": "{oops"})
    assert load_snapshot(not_sa, env={}, allow_missing_env=True).providers["gcp"].credentials == {}
    info, _ = service_account("http://127.0.0.1:9/token")
    snap = load_snapshot(not_sa, env={"SA": info})
    p = snap.providers["gcp"]
    assert p.kind == "vertex" and p.base_url == "https://us-central1-aiplatform.googleapis.com"
    private_key = json.loads(info)["private_key"]
    assert p.credentials["service_account"] == info and private_key not in snap.redactor.text(private_key)


def test_vertex_anthropic_publisher_is_its_own_runtime_kind(tmp_path: Path) -> None:
    info, _ = service_account("http://127.0.0.1:9/token")
    extra = 'project = "p"\nlocation = "global"\npublisher = "anthropic"\nservice_account_json = "${SA}"'
    snap = load_snapshot(_bundle(tmp_path, VERTEX.format(extra=extra)), env={"SA": info})
    assert snap.providers["gcp"].kind == "vertex-anthropic"
    assert snap.providers["gcp"].base_url == "https://aiplatform.googleapis.com"


def test_the_vertex_example_of_docs_providers_passes_check(tmp_path: Path) -> None:
    """docs/providers.md's Vertex block (a fragment for the docs test, which has no real key)."""
    text = (ROOT / "docs" / "providers.md").read_text()
    blocks = [b.split("```")[0] for b in text.split("```toml\n")[1:]]
    block = next(b for b in blocks if 'kind = "vertex"' in b)
    info, _ = service_account("https://oauth2.googleapis.com/token")
    key = tmp_path / "vertex-sa.json"
    key.write_text(info)
    d = _bundle(tmp_path, "schema = 1\n" + block.replace("/etc/tollgate/vertex-sa.json", str(key)))
    snap = load_snapshot(d, env={})
    assert {p.id: p.kind for p in snap.providers.values()} == {"vertex-gemini": "vertex",
                                                                "vertex-claude": "vertex-anthropic"}
    assert snap.providers["vertex-claude"].credentials["service_account"] == info


def test_a_worker_without_cloud_providers_loads_neither_library() -> None:
    code = ("import sys, gateway.server.app, gateway.providers.codecs, gateway.providers.adapters.registry; "
            "print(sorted(m for m in sys.modules if m.startswith(('botocore', 'google.auth', 'google.oauth2'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
