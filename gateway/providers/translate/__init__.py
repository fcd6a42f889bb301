"""Codecs: a client family's request to an upstream family's, and the answer back (whole or
streamed), with the usage read on the way. `codec.py` is the protocol; the pairwise translators
are named `<client>_<upstream>.py` (openai_anthropic, anthropic_openai, openai_gemini,
gemini_openai; openai_openai and native_passthrough pass the bytes through); `via_chat.py`
composes two through OpenAI chat; responses_*.py and *_embeddings.py serve one endpoint each.
Which codec serves which pair is the table in ../codecs.py; no module registers itself."""
