"""Provider adapters, one module each with the same shape:

``to_upstream(call)``, ``from_upstream(data, call)``, ``stream_chunks(lines, call, state)``,
``embeddings_to_upstream(call)``, ``embeddings_from_upstream(data, call)``,
``check_key(base_url, secret)`` and ``error_info(data)``.
"""

from . import anthropic, gemini, openai

ADAPTERS = {"openai": openai, "anthropic": anthropic, "gemini": gemini}
