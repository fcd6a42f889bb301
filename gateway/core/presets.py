"""OpenAI-compatible presets: `kind = "openai-compatible"` with `preset = "<name>"` takes its
base URL (overridable by `base_url`) and its known quirks from this table, as data.

Quirks (each looked up in the upstream's docs or its users' bug reports, see docs/providers.md):
- `stream_options`: False when the upstream refuses the field (Mistral answers 422
  `extra_forbidden`); the gateway then drops it and reads the usage the upstream sends unasked
  in its last chunk (or estimates it when none comes).
- `needs_key`: a hosted API (an `api_keys` entry is required); local servers need none.
Usage field names differ too (DeepSeek's `prompt_cache_hit_tokens`, Moonshot's usage inside
the last choice, Groq's `x_groq.usage`); the usage readers of providers/wire/openai_usage.py
and the stream tap read every variant, so they need no switch here.

The ground floor: pure data, importing nothing of ours (config and providers both read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

PresetName = Literal[
    "deepseek", "openrouter", "groq", "mistral", "xai", "together", "fireworks", "ollama", "vllm",
    "siliconflow", "moonshot", "zhipu", "qwen",
]


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    base_url: str
    stream_options: bool = True  # False: the upstream refuses `stream_options`; it is dropped
    needs_key: bool = True  # False: a local server (Ollama, vLLM) that takes no key
    notes: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("deepseek", "https://api.deepseek.com/v1",
               notes="reasoning_content passed through; prompt_cache_hit_tokens priced as cached input"),
        Preset("openrouter", "https://openrouter.ai/api/v1"),
        Preset("groq", "https://api.groq.com/openai/v1", notes="stream usage also read from x_groq.usage"),
        Preset("mistral", "https://api.mistral.ai/v1", stream_options=False,
               notes="refuses stream_options (422); sends stream usage in its last chunk unasked"),
        Preset("xai", "https://api.x.ai/v1"),
        Preset("together", "https://api.together.xyz/v1"),
        Preset("fireworks", "https://api.fireworks.ai/inference/v1"),
        Preset("ollama", "http://localhost:11434/v1", needs_key=False),
        Preset("vllm", "http://localhost:8000/v1", needs_key=False),
        Preset("siliconflow", "https://api.siliconflow.cn/v1"),
        Preset("moonshot", "https://api.moonshot.cn/v1", notes="stream usage read from the last choice"),
        Preset("zhipu", "https://open.bigmodel.cn/api/paas/v4"),
        Preset("qwen", "https://dashscope.aliyuncs.com/compatible-mode/v1"),
    )
}

assert set(PRESETS) == set(get_args(PresetName)), "every preset name has a table entry"
