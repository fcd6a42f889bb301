"""The cloud provider kinds at load time: AWS Bedrock and Google Vertex AI. Their credentials
are not `api_keys` but kind-specific fields (`${ENV}` resolved here), checked so that
`tollgate check` names a provider whose credentials are missing; the resolved secrets go into
`ProviderRuntime.credentials` for the adapters (providers/adapters/bedrock.py, vertex.py).

botocore and google-auth are imported only when a bundle has such a provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import msgspec

from .envsubst import has_missing
from .load import Loc
from .types import BedrockProvider, VertexProvider

CLOUD_KINDS = frozenset({"bedrock", "vertex"})
SA_FIELDS = ("client_email", "private_key", "token_uri")


class Context(Protocol):
    env: Mapping[str, str]
    allow_missing_env: bool

    def interpolate(self, text: str, loc: Loc, *sub: str | int) -> str: ...

    def error(self, loc: Loc, message: str, *sub: str | int) -> None: ...

    def read_file(self, path: str) -> str: ...


Warn = Callable[[Loc, str], None]


def runtime_kind(spec: BedrockProvider | VertexProvider) -> str:
    """The kind the codec table and the adapters know: a Vertex provider serving Anthropic
    models speaks Anthropic's API (core/family.py), one serving Gemini models Gemini's."""
    if isinstance(spec, VertexProvider) and spec.publisher == "anthropic":
        return "vertex-anthropic"
    return "bedrock" if isinstance(spec, BedrockProvider) else "vertex"


def default_base_url(spec: BedrockProvider | VertexProvider) -> str:
    if isinstance(spec, BedrockProvider):
        return f"https://bedrock-runtime.{spec.region}.amazonaws.com"
    if spec.location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{spec.location}-aiplatform.googleapis.com"


def credentials(ctx: Context, spec: BedrockProvider | VertexProvider, loc: Loc, warn: Warn) -> dict[str, str]:
    """The provider's resolved secrets; a located problem when they are missing."""
    if isinstance(spec, BedrockProvider):
        return _aws(ctx, spec, loc, warn)
    return _google(ctx, spec, loc, warn)


def _aws(ctx: Context, spec: BedrockProvider, loc: Loc, warn: Warn) -> dict[str, str]:
    fields = ("access_key_id", "secret_access_key", "session_token")
    found = {f: ctx.interpolate(getattr(spec, f), loc, f) for f in fields if getattr(spec, f)}
    if found:
        missing = [f for f in fields[:2] if f not in found]
        if missing and not ctx.allow_missing_env:
            ctx.error(loc, f"bedrock provider `{spec.id}`: {' and '.join(missing)} missing "
                      "(access_key_id and secret_access_key go together)", missing[0])
        return {f: v for f, v in found.items() if v}
    env = ctx.env
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        keys = {"access_key_id": env["AWS_ACCESS_KEY_ID"], "secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
        if env.get("AWS_SESSION_TOKEN"):
            keys["session_token"] = env["AWS_SESSION_TOKEN"]
        return keys
    profile = ctx.interpolate(spec.profile, loc, "profile") if spec.profile else ""
    if spec.instance_role or _local_chain_has_credentials(profile):
        return {"profile": profile} if profile else {}
    message = (f"bedrock provider `{spec.id}`: no AWS credentials found: set access_key_id and "
               "secret_access_key (e.g. \"${AWS_ACCESS_KEY_ID}\"), AWS_ACCESS_KEY_ID and "
               "AWS_SECRET_ACCESS_KEY in the environment, a `profile` with credentials in ~/.aws, or "
               "instance_role = true on EC2/ECS/EKS")
    if ctx.allow_missing_env:
        warn(loc, message)
    else:
        ctx.error(loc, message, "access_key_id")
    return {}


def _local_chain_has_credentials(profile: str) -> bool:
    """The standard AWS chain without its network steps (instance and container metadata),
    so that a check on a laptop does not wait for an EC2 endpoint."""
    import botocore.credentials  # only bundles with a Bedrock provider pay for botocore
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=profile or None)
        resolver = botocore.credentials.create_credential_resolver(session)
        for name in ("iam-role", "container-role"):
            resolver.remove(name)
        return resolver.load_credentials() is not None
    except botocore.exceptions.BotoCoreError:
        return False


class _ServiceAccount(msgspec.Struct):
    type: str = ""
    client_email: str = ""
    private_key: str = ""
    token_uri: str = ""


def _google(ctx: Context, spec: VertexProvider, loc: Loc, warn: Warn) -> dict[str, str]:
    if not spec.project:
        ctx.error(loc, f"vertex provider `{spec.id}` needs a project (a Google Cloud project id)", "project")
    where = "service_account_json"
    raw = spec.service_account_json or spec.service_account_file
    if ctx.allow_missing_env and raw and has_missing(raw, ctx.env, ctx.read_file):
        return {}  # a placeholder, not the account: nothing to check
    if spec.service_account_json:
        text = ctx.interpolate(spec.service_account_json, loc, where)
    elif spec.service_account_file:
        where = "service_account_file"
        path = ctx.interpolate(spec.service_account_file, loc, where)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            ctx.error(loc, f"vertex provider `{spec.id}`: cannot read the service account file "
                      f"{path}: {exc.strerror}", where)
            return {}
    else:
        message = (f"vertex provider `{spec.id}`: no Google credentials: set service_account_file "
                   "(a service account's JSON key) or service_account_json")
        warn(loc, message) if ctx.allow_missing_env else ctx.error(loc, message, where)
        return {}
    if not text:  # a ${VAR} that is not set: reported by interpolate
        return {}
    try:
        sa = msgspec.json.decode(text, type=_ServiceAccount)
    except (msgspec.DecodeError, msgspec.ValidationError):
        ctx.error(loc, f"vertex provider `{spec.id}`: the service account is not JSON", where)
        return {}
    missing = [f for f in SA_FIELDS if not getattr(sa, f)]
    if missing or sa.type != "service_account":
        what = f"lacks {', '.join(missing)}" if missing else f'has type "{sa.type}"'
        ctx.error(loc, f"vertex provider `{spec.id}`: the service account JSON {what} (a "
                  'service account key of type "service_account" is needed)', where)
        return {}
    return {"service_account": text, "private_key": sa.private_key}
