"""The providers AURA forwards to: how each is spoken to and where it lives by default."""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy


@dataclass(frozen=True)
class Provider:
    code: str
    name: str
    protocol: str  # "openai", "anthropic" or "gemini": which adapter speaks to it
    base_url: str
    embeddings: bool = True


PROVIDERS = {
    p.code: p
    for p in [
        Provider("openai", "OpenAI", "openai", "https://api.openai.com/v1"),
        Provider("anthropic", "Anthropic", "anthropic", "https://api.anthropic.com", embeddings=False),
        Provider("gemini", "Google Gemini", "gemini", "https://generativelanguage.googleapis.com"),
        Provider("mistral", "Mistral", "openai", "https://api.mistral.ai/v1"),
        Provider("groq", "Groq", "openai", "https://api.groq.com/openai/v1", embeddings=False),
        Provider("deepseek", "DeepSeek", "openai", "https://api.deepseek.com/v1", embeddings=False),
        Provider("together", "Together AI", "openai", "https://api.together.xyz/v1"),
        Provider("fireworks", "Fireworks AI", "openai", "https://api.fireworks.ai/inference/v1"),
        Provider("openrouter", "OpenRouter", "openai", "https://openrouter.ai/api/v1", embeddings=False),
        Provider("xai", "xAI", "openai", "https://api.x.ai/v1", embeddings=False),
        Provider("custom", "OpenAI-compatible server", "openai", ""),
    ]
}
# The names as the cabinet shows them: only the custom server's is a description, in the reader's language
# (``Provider.name`` stays English: /v1's error messages use it).
PROVIDER_CHOICES = [(p.code, gettext_lazy("OpenAI-compatible server") if p.code == "custom" else p.name) for p in PROVIDERS.values()]
