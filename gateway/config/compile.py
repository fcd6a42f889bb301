"""Check a merged bundle's cross-references and compile it into an immutable `Snapshot`.

Every check appends a located `Problem`; the snapshot is built only when there are none. This
module runs the passes in order and compiles settings, providers, rules and prices; the route
table is compiled in `routes`, groups and keys in `keys`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime

from msgspec import structs

from ..policy.cel import PRICE_VARIABLES, RULE_VARIABLES, CelCompileError, compile_expr
from ..policy.rules import CompiledRule, RuleSet
from ..redact import Redactor, is_secret_header
from . import cloud, shaping
from .alerts import compile_alerts
from .envsubst import (
    BadReference,
    MissingEnv,
    MissingFile,
    has_missing,
    interpolate,
    read_secret_file,
    referenced_values,
)
from .headers import check_headers
from .keys import KeyCompiler
from .load import Loc, Located, RawBundle
from .problems import BundleError, Problem
from .routes import compile_routes
from .snapshot import GroupRuntime, PriceRuntime, ProviderRuntime, Route, Snapshot
from .types import BedrockProvider, Provider, Rule, Settings, VertexProvider

KEYLESS_KINDS = frozenset({"mock", "openai-compatible", *cloud.CLOUD_KINDS})  # clouds: config/cloud.py
URL_REQUIRED_KINDS = frozenset({"openai-compatible", "azure", "midjourney", "suno"})
PER_ACTION_KINDS = frozenset({"midjourney", "suno"})  # billed per action (price.per_action), not per token


class Compiler:
    def __init__(self, raw: RawBundle, env: Mapping[str, str], allow_missing_env: bool) -> None:
        self.raw, self.env, self.allow_missing_env = raw, env, allow_missing_env
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.settings = raw.settings.item if raw.settings else Settings()
        self.providers: dict[str, ProviderRuntime] = {}
        self.routes: dict[str, Route] = {}
        self.groups: dict[str, GroupRuntime] = {}
        self.secrets: set[str] = set()  # masked in everything the gateway sends: gateway/redact.py
        self.env_values: set[str] = set()  # also masked in bundle problems, whatever field they are in
        self.files_read: dict[str, str | MissingFile] = {}  # `${file:...}`: read once per compile

    def error(self, loc: Loc, message: str, *sub: str | int) -> None:
        self.problems.append(self.raw.problem(loc, message, *sub))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(self.raw.problem(loc, message, severity="warning"))

    def run(self, revision: str) -> Snapshot:
        self.check_settings()
        self.compile_providers()
        self.routes = compile_routes(self.raw.aliases, self.providers, self.error)
        keys = KeyCompiler(self.raw, self.error)
        self.groups = keys.compile_groups()
        keys_by_hash, keys_by_id, admins = keys.compile_keys()
        rules = self.compile_rules()
        prices = self.compile_prices()
        self.check_pricing(prices)
        alerts = compile_alerts(self.raw.alerts, self.interpolate, self.error, self.secrets)
        if self.problems:  # a message may quote a value that came from the environment
            quiet = Redactor(self.secrets | self.env_values)
            raise BundleError(
                [structs.replace(p, message=quiet.text(p.message)) for p in self.problems],
                sources=sorted(self.files_read),
            )
        redactor = Redactor(self.secrets)
        return Snapshot(
            revision=revision,
            loaded_at=datetime.now(UTC),
            directory=str(self.raw.directory),
            settings=self.settings,
            providers=self.providers,
            routes=self.routes,
            groups=self.groups,
            keys_by_hash=keys_by_hash,
            keys_by_id=keys_by_id,
            admins_by_hash=admins,
            prices=prices,
            rules=rules,
            warnings=tuple(redactor.text(str(w)) for w in self.warnings),
            redactor=redactor,
            sources=tuple(sorted(self.files_read)),
            alerts=alerts,
        )

    # settings -------------------------------------------------------------------------------
    def check_settings(self) -> None:
        if self.raw.settings is None:
            return
        loc = self.raw.settings.loc
        try:
            zoneinfo.ZoneInfo(self.settings.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.error(loc, f'unknown time zone "{self.settings.timezone}"', "timezone")
        for i, status in enumerate(self.settings.routing.retry_on):
            if not 400 <= status <= 599:
                self.error(loc, f"{status} is not an HTTP error status (400-599)", "routing", "retry_on", i)

    # providers ------------------------------------------------------------------------------
    def compile_providers(self) -> None:
        for located in self.raw.providers:
            runtime = self.compile_provider(located)
            if runtime is not None:
                self.providers[runtime.id] = runtime

    def compile_provider(self, located: Located[Provider]) -> ProviderRuntime | None:
        spec, loc = located.item, located.loc
        kind = type(spec).__struct_config__.tag
        assert isinstance(kind, str)
        base_url = self.interpolate(spec.base_url, loc, "base_url")
        preset = shaping.preset_of(spec)
        if preset is not None:
            base_url = base_url or preset.base_url  # a set base_url wins over the preset's
            shaping.check_preset(preset, spec, loc, self.error)
        keys = tuple(self.interpolate(k, loc, "api_keys", i) for i, k in enumerate(spec.api_keys))
        values = [(h, self.interpolate(v, loc, "headers", h)) for h, v in spec.headers.items()]
        headers = self.compile_headers(loc, values, "headers")
        self.secrets.update(keys)
        self.secrets.update(v for h, v in values if is_secret_header(h, spec.headers[h]))
        if kind in URL_REQUIRED_KINDS and not spec.base_url and preset is None:
            self.error(loc, f'provider kind "{kind}" needs a base_url', "base_url")
        elif (
            base_url
            and not base_url.startswith(("http://", "https://"))
            and not (self.allow_missing_env and has_missing(spec.base_url, self.env, self.read_file))
        ):
            self.error(loc, f'base_url "{spec.base_url}" must start with http:// or https://', "base_url")
        if kind not in KEYLESS_KINDS and not spec.api_keys:
            self.error(loc, f'provider kind "{kind}" needs at least one api_keys entry', "api_keys")
        for i, code in enumerate(spec.disable_on):
            if isinstance(code, int) and not 400 <= code <= 599:
                self.error(loc, f"{code} is not an HTTP error status (400-599)", "disable_on", i)
        credentials: dict[str, str] = {}
        if isinstance(spec, BedrockProvider | VertexProvider):
            kind, base_url = cloud.runtime_kind(spec), base_url or cloud.default_base_url(spec)
            credentials = cloud.credentials(self, spec, loc, self.warn)
            self.secrets.update(v for k, v in credentials.items() if k != "profile")
        return ProviderRuntime(
            id=spec.id,
            kind=kind,
            base_url=base_url.rstrip("/"),
            api_keys=keys,
            models=frozenset(spec.models),
            priority=spec.priority,
            weight=spec.weight,
            timeouts=spec.timeouts,
            headers=headers,
            model_map=dict(spec.model_map),
            spec=spec,
            credentials=credentials,
            body=shaping.compile_body(spec.body, kind, loc, self.error),
            preset=preset,
        )

    def read_file(self, path: str) -> str:
        """A `${file:...}` reference's content, read once per compile (every reload reads
        again: a rotated secret file takes effect with the next reload)."""
        if path not in self.files_read:
            try:
                self.files_read[path] = read_secret_file(path)
            except MissingFile as exc:
                self.files_read[path] = exc
        found = self.files_read[path]
        if isinstance(found, MissingFile):
            raise found.with_traceback(None)
        return found

    def interpolate(self, text: str, loc: Loc, *sub: str | int) -> str:
        self.env_values.update(referenced_values(text, self.env, self.read_file))
        try:
            return interpolate(text, self.env, allow_missing=self.allow_missing_env, read_file=self.read_file)
        except (MissingEnv, MissingFile, BadReference) as exc:
            self.error(loc, str(exc), *sub)
            return ""

    def compile_headers(
        self, loc: Loc, items: list[tuple[str, str]], section: str
    ) -> tuple[tuple[str, str], ...]:
        pairs, problems = check_headers(items)
        for name, message in problems:
            self.error(loc, message, section, name)
        return pairs

    # rules ----------------------------------------------------------------------------------
    def compile_rules(self) -> RuleSet:
        compiled = []
        for located in self.raw.rules:
            rule = self.compile_rule(located)
            if rule is not None:
                compiled.append(rule)
        return RuleSet.build(tuple(compiled))

    def compile_rule(self, located: Located[Rule]) -> CompiledRule | None:
        r, loc = located.item, located.loc
        actions = [
            name
            for name in ("deny", "route", "set_model", "set_headers", "add_tags", "set_body")
            if getattr(r, name) is not None
        ]
        if len(actions) != 1:
            found = ", ".join(actions) if actions else "none"
            self.error(
                loc,
                "a rule needs exactly one action (deny, route, set_model, set_headers, add_tags, "
                "set_body); "
                f"found: {found}",
            )
            return None
        for action in ("route", "set_model"):
            target = getattr(r, action)
            if target is not None and target not in self.routes:
                self.error(loc, f'unknown model or alias "{target}"', action)
        set_headers = self.compile_headers(loc, list((r.set_headers or {}).items()), "set_headers")
        try:
            expr = compile_expr(r.when, RULE_VARIABLES)
        except CelCompileError as exc:
            self.error(loc, f"rule {r.id!r}: CEL {exc}", "when")
            return None
        return CompiledRule(
            id=r.id,
            expr=expr,
            deny=r.deny,
            route=r.route,
            set_model=r.set_model,
            set_headers=set_headers,
            add_tags=tuple(r.add_tags or ()),
            set_body=shaping.compile_set_body(r.set_body, r.id, loc, self.error),
        )

    # prices ---------------------------------------------------------------------------------
    def compile_prices(self) -> dict[str, PriceRuntime]:
        prices = {}
        for located in self.raw.prices:
            tiers = []
            for i, tier in enumerate(located.item.tiers):
                try:
                    tiers.append((compile_expr(tier.when, PRICE_VARIABLES), tier))
                except CelCompileError as exc:
                    self.error(located.loc, f"CEL {exc}", "tiers", i, "when")
            prices[located.name] = PriceRuntime(located.name, located.item, tuple(tiers))
        return prices

    def check_pricing(self, prices: Mapping[str, PriceRuntime]) -> None:
        """Strict pricing: an unpriced routable model is an error. Lenient: a warning (its usage
        rows get cost NULL). A per-action kind (Midjourney) needs a `per_action` table."""
        strict = self.settings.pricing == "strict"

        def check(p: ProviderRuntime, model: str, loc: Loc, *sub: str | int) -> None:
            upstream = p.model_map.get(model, model)
            price = prices.get(f"{p.id}/{upstream}") or prices.get(upstream)  # as Snapshot.price_for
            per_action = p.kind in PER_ACTION_KINDS
            if price is not None and (price.rates.per_action or not per_action):
                return
            what = "per_action price" if per_action else "price"
            table = f'[price."{upstream}".per_action]' if per_action else f'[price."{upstream}"]'
            if strict:
                message = f'no {what} for model "{upstream}" (add {table} or set settings.pricing = '
                message += '"lenient")'
                self.error(loc, message, *sub)
            else:
                message = f'no {what} for model "{upstream}": its usage is recorded with cost NULL'
                self.warnings.append(self.raw.problem(loc, message, *sub, severity="warning"))

        for located in self.raw.providers:
            provider = self.providers.get(located.item.id)
            if provider is not None:
                for i, model in enumerate(located.item.models):
                    check(provider, model, located.loc, "models", i)
        for alias in self.raw.aliases:
            for i, t in enumerate(alias.item.targets):
                provider = self.providers.get(t.provider)
                if provider is not None and t.model not in provider.models:  # listed: checked above
                    check(provider, t.model, alias.loc, "targets", i, "model")


def compile_bundle(
    raw: RawBundle, env: Mapping[str, str], revision: str, *, allow_missing_env: bool = False
) -> Snapshot:
    return Compiler(raw, env, allow_missing_env).run(revision)
