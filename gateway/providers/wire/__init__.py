"""The API families on the wire, as msgspec Structs and decoders: OpenAI chat (openai_chat.py,
the common vocabulary of the translators) and its usage (openai_usage.py), the few fields the
gateway reads of any request body (head.py), Anthropic, Gemini, the Responses API, embeddings,
Midjourney's proxy, server-sent events (sse.py) and the content part types each family knows
(parts.py). Nothing here imports a translator or an adapter."""
