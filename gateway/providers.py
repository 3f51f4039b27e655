"""The providers AURA forwards to: how each is spoken to and where it lives by default."""

from dataclasses import dataclass


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
PROVIDER_CHOICES = [(p.code, p.name) for p in PROVIDERS.values()]
