"""Process settings (not policy): flags, `TOLLGATE_*` environment, optional settings file."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .settings_fields import SettingsFields
from .worker_settings import CONFIG_ENV, ENV_FILE_ENV, SETTINGS_JSON_ENV

__all__ = ["CONFIG_ENV", "ENV_FILE_ENV", "SETTINGS_JSON_ENV", "ServeSettings", "SettingsFields"]


class ServeSettings(BaseSettings, SettingsFields):  # the fields: settings_fields.py
    model_config = SettingsConfigDict(env_prefix="TOLLGATE_", extra="forbid")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags beat environment, which beats the settings file, which beats defaults."""
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        config = os.environ.get(CONFIG_ENV)
        if config:
            sources += (TomlConfigSettingsSource(settings_cls, toml_file=Path(config)),)
        return sources

    def to_env(self) -> dict[str, str]:
        """Workers are separate processes: they take the checked settings from
        `TOLLGATE_SETTINGS_JSON` (worker_settings.py); the one-per-setting variables
        serve the other processes (the ledger owner, commands) and people reading the environment."""
        env = {
            f"TOLLGATE_{name.upper()}": str(value)
            for name, value in self.model_dump().items()
            if value is not None  # unset stays unset (str(None) would read back as "None")
        }
        env[SETTINGS_JSON_ENV] = self.model_dump_json()
        return env
