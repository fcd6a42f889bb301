"""The asynchronous task engine shared by every task family (Midjourney, OpenAI-style videos,
Gemini Veo, Suno): the durable task store (store.py), the adapter each family implements
(adapter.py), the engine that refreshes, polls with backoff and settles tasks (engine.py), and
the usage rows a task leaves besides its submit (rows.py). The families' HTTP front doors are
gateway/server/midjourney/, gateway/server/videos/ and gateway/server/suno/ (docs/tasks.md)."""
