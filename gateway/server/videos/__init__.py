"""The OpenAI Videos API (`/v1/videos`) in front of OpenAI, Azure OpenAI and Gemini's Veo, on
the task engine (gateway/tasks/); docs/tasks.md.

- parse.py: the create body (JSON or multipart/form-data), checked; the model rewritten
- submit.py: create and remix: admitted, priced per second, reserved, forwarded, stored
- upstream.py: what each provider kind is sent and answers (OpenAI video object or Veo operation)
- adapter.py: the engine's adapter (a task refreshed from its upstream)
- endpoints.py: retrieve, list, delete, content (streamed through, Range passed on); the routes
"""
