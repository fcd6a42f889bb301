# mypy: disable-error-code="misc"
# (msgspec: subclasses inherit `frozen` from Base; mypy's dataclass model does not know it)
"""The policy file format, schema = 1, as strict msgspec Structs.

Every file of a bundle decodes into `BundleFile`; files are then merged into one `Bundle`.
Unknown fields are rejected everywhere so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ..core.presets import PresetName


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """All policy types: strict, keyword-only, immutable."""


Id = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$", max_length=128)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegFloat = Annotated[float, Meta(ge=0)]
Period = Literal["day", "week", "month", "total"]
Strategy = Literal["weighted", "round_robin"]
Reasoning = Literal["none", "minimal", "low", "medium", "high"]


class BodyOverride(Base):
    """`set`: fields deep-merged into the upstream body; `remove`: dotted paths dropped from it."""

    set: dict[str, Any] = {}
    remove: list[str] = []


class Timeouts(Base):
    """Seconds. `read` is the gap allowed between two streamed chunks."""

    connect: Annotated[float, Meta(gt=0)] = 5.0
    read: Annotated[float, Meta(gt=0)] = 120.0
    total: Annotated[float, Meta(gt=0)] = 600.0


class ProviderBase(Base):
    id: Id
    base_url: str = ""
    api_keys: list[str] = []
    models: list[str] = []
    priority: Annotated[int, Meta(ge=0)] = 0
    weight: Annotated[int, Meta(ge=0)] = 1
    timeouts: Timeouts = Timeouts()
    headers: dict[str, str] = {}
    # upstream model names differ from what clients call them: {"gpt-4o" = "gpt-4o-2024-08-06"}
    model_map: dict[str, str] = {}
    # upstream statuses or error codes that bench the key until a provider test passes
    # (e.g. [401, "insufficient_quota"]); the test is retried every `retest_every_s`
    disable_on: list[int | str] = []
    retest_every_s: Annotated[float, Meta(ge=5)] = 300.0
    # fields set in (deep-merged) or removed from every upstream body (docs/providers.md)
    body: BodyOverride | None = None


class OpenAIProvider(ProviderBase, tag_field="kind", tag="openai"):
    base_url: str = "https://api.openai.com/v1"


class OpenAICompatibleProvider(ProviderBase, tag_field="kind", tag="openai-compatible"):
    # a known service: its base URL (unless base_url is set) and quirks (gateway/core/presets.py)
    preset: PresetName | None = None


class AzureProvider(ProviderBase, tag_field="kind", tag="azure"):
    api_version: str = "2024-10-21"
    # model name -> deployment name; a model not listed uses its own name as the deployment
    deployments: dict[str, str] = {}


class AnthropicProvider(ProviderBase, tag_field="kind", tag="anthropic"):
    base_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    default_max_tokens: PositiveInt = 4096


class GeminiProvider(ProviderBase, tag_field="kind", tag="gemini"):
    base_url: str = "https://generativelanguage.googleapis.com"


class MidjourneyProvider(ProviderBase, tag_field="kind", tag="midjourney"):
    pass


class SunoProvider(ProviderBase, tag_field="kind", tag="suno"):
    """A suno-api compatible service (`/suno/submit/*`, `/suno/fetch`), Bearer-authenticated."""


class MockProvider(ProviderBase, tag_field="kind", tag="mock"):
    """A deterministic fake LLM served in-process: no network, no credentials."""

    latency_ms: NonNegFloat = 0.0
    chunk_delay_ms: NonNegFloat = 0.0
    reply: str = ""


class BedrockProvider(ProviderBase, tag_field="kind", tag="bedrock"):
    """AWS Bedrock's Converse API, SigV4-signed. Credentials: `access_key_id` and
    `secret_access_key` (and `session_token`), usually `${ENV}`; when empty, the standard AWS
    chain (environment, `profile`, shared files, SSO; instance and container roles at run time
    only, with `instance_role = true`). base_url defaults to the region's bedrock-runtime host."""

    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    profile: str = ""
    instance_role: bool = False  # credentials from the instance/container role: not checked at load
    default_max_tokens: PositiveInt | None = None  # Converse's maxTokens when the client sends none
    # a cachePoint after the system prompt and after the tools (the stable prefix): Bedrock caches
    # only where a request marks it, and chat clients have no way to mark it
    prompt_cache: bool = False


class VertexProvider(ProviderBase, tag_field="kind", tag="vertex"):
    """Google Vertex AI: Gemini models (`publisher = "google"`) or Anthropic models
    (`publisher = "anthropic"`, rawPredict), with a service account's OAuth token.
    base_url defaults to `https://{location}-aiplatform.googleapis.com`."""

    project: str = ""  # required (checked at load: a required field cannot follow optional ones)
    location: str = "us-central1"
    publisher: Literal["google", "anthropic"] = "google"
    service_account_file: str = ""  # a path to the service account's JSON key
    service_account_json: str = ""  # or the JSON itself, e.g. "${GOOGLE_SA_JSON}" or "${file:...}"
    default_max_tokens: PositiveInt = 4096  # Anthropic models: max_tokens when the client sends none


Provider = (
    OpenAIProvider
    | OpenAICompatibleProvider
    | AzureProvider
    | AnthropicProvider
    | GeminiProvider
    | MidjourneyProvider
    | SunoProvider
    | MockProvider
    | BedrockProvider
    | VertexProvider
)


class Target(Base):
    provider: Id
    model: str
    weight: Annotated[int, Meta(ge=0)] = 1
    priority: Annotated[int, Meta(ge=0)] | None = None  # defaults to the provider's priority


class Alias(Base):
    targets: Annotated[list[Target], Meta(min_length=1)]
    fallbacks: list[str] = []
    strategy: Strategy = "weighted"
    description: str = ""
    # reasoning effort applied when the client sets none (mapped per upstream family)
    reasoning: Reasoning | None = None
    # CEL over `request` and `key`: requests with the same value go to the same target and key
    affinity: str | None = None


class PriceTier(Base):
    """A tier replaces the listed rates when `when` (CEL over `tokens`) holds."""

    when: str
    input: NonNegFloat | None = None
    output: NonNegFloat | None = None
    cached_input: NonNegFloat | None = None
    cache_write: NonNegFloat | None = None


class Price(Base):
    """USD per million tokens, and per request / image / audio second / Midjourney action."""

    input: NonNegFloat = 0.0
    output: NonNegFloat = 0.0
    cached_input: NonNegFloat | None = None  # defaults to `input`
    cache_write: NonNegFloat | None = None  # defaults to `input`
    reasoning: NonNegFloat | None = None  # defaults to `output`
    audio_input: NonNegFloat | None = None  # audio input tokens (Realtime API); defaults to `input`
    audio_output: NonNegFloat | None = None  # audio output tokens; defaults to `output`
    per_request: NonNegFloat = 0.0
    per_image: NonNegFloat = 0.0
    per_audio_second: NonNegFloat = 0.0
    per_action: dict[str, NonNegFloat] = {}
    # generated video (/v1/videos): USD per second of video; per size ("1280x720") when listed
    per_second: NonNegFloat = 0.0
    per_second_by_size: dict[str, NonNegFloat] = {}
    tiers: list[PriceTier] = []


class Limits(Base):
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    concurrency: PositiveInt | None = None


class Budget(Base):
    usd: NonNegFloat
    period: Period = "month"


Billing = Literal["postpaid", "prepaid"]


class Group(Base):
    price_multiplier: NonNegFloat = 1.0
    models: list[str] = []  # allow-list of globs; empty means every model
    limits: Limits = Limits()
    model_limits: dict[str, Limits] = {}
    budget: Budget | None = None
    description: str = ""
    # prepaid: requests spend the key's credit balance (docs/credits.md); a key may override
    billing: Billing = "postpaid"
    credit_limit: NonNegFloat = 0.0  # USD a prepaid key may go below zero (overdraft)
    low_balance_usd: NonNegFloat | None = None  # alert when a prepaid balance falls below this


class Key(Base):
    id: Id
    hash: str
    group: str | None = None
    models: list[str] = []  # allow-list of globs; empty means what the group allows
    expires: datetime | None = None
    ip_allow: list[str] = []  # CIDRs; empty means any address
    tags: list[str] = []
    budget: Budget | None = None
    limits: Limits = Limits()
    model_limits: dict[str, Limits] = {}
    price_multiplier: NonNegFloat = 1.0
    disabled: bool = False
    # unset: as the key's group says (postpaid without a group); see Group
    billing: Billing | None = None
    credit_limit: NonNegFloat | None = None
    low_balance_usd: NonNegFloat | None = None


class AdminKey(Base):
    id: Id
    hash: str


class Rule(Base):
    """`when` is CEL; exactly one action. deny/route/set_model are decisive (first one wins);
    set_headers and add_tags accumulate from every matching rule before it."""

    id: Id
    when: str
    deny: str | None = None
    route: str | None = None
    set_model: str | None = None
    set_headers: dict[str, str] | None = None
    add_tags: list[str] | None = None
    set_body: dict[str, Any] | None = None  # deep-merged into the upstream body (after translation)
    description: str = ""


class Breaker(Base):
    failures: PositiveInt = 3  # failures within `window_s` that open the circuit
    window_s: Annotated[float, Meta(gt=0)] = 30.0
    cooldown_s: Annotated[float, Meta(gt=0)] = 15.0


class Routing(Base):
    retry_on: list[int] = msgspec.field(default_factory=lambda: [429, 500, 502, 503, 504])
    max_attempts: PositiveInt = 3
    breaker: Breaker = Breaker()


class Usage(Base):
    retention_days: PositiveInt | None = None


class Settings(Base):
    pricing: Literal["strict", "lenient"] = "strict"
    timezone: str = "UTC"
    max_body_bytes: PositiveInt = 32 * 1024 * 1024
    routing: Routing = Routing()
    usage: Usage = Usage()


AlertEvent = Literal[
    "breaker_open", "breaker_closed", "key_benched", "key_restored", "budget_threshold",
    "balance_low", "reload_failed", "upstream_error_rate",
]


class Alert(Base):
    """A webhook told when `on` happens (and CEL `when` over `event.*` holds). Headers and the
    HMAC-SHA256 `secret` take `${ENV}`; `text` is a template over the event's fields
    (`{provider}`); `format = "slack"` posts `{"text": ...}` instead of the event document."""

    id: Id
    on: AlertEvent
    url: str
    when: str | None = None
    headers: dict[str, str] = {}
    secret: str | None = None
    signature_header: str = "x-tollgate-signature"
    format: Literal["json", "slack"] = "json"
    text: str | None = None
    dedup_s: Annotated[float, Meta(ge=0)] = 300.0  # one delivery per alert and subject per window
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0  # each attempt
    attempts: Annotated[int, Meta(ge=1, le=10)] = 4
    backoff_s: Annotated[float, Meta(ge=0, le=300)] = 1.0  # doubled after each failed attempt
    description: str = ""


class BundleFile(Base):
    """One `*.toml` file of a bundle. Every section is optional; files are merged."""

    schema: Literal[1]
    settings: Settings | None = None
    provider: list[Provider] = []
    model: dict[str, Alias] = {}
    price: dict[str, Price] = {}
    group: dict[str, Group] = {}
    key: list[Key] = []
    admin_key: list[AdminKey] = []
    rule: list[Rule] = []
    alert: list[Alert] = []
