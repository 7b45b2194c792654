"""Model calls through litellm: the only module that imports litellm (its import takes seconds).

Import this lazily, from code that is about to call a model, never from CLI start-up paths.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

# Use the cost table shipped inside litellm instead of fetching one from the network at import.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402

from orchestrator.config.settings import DEMO_MODEL_KEY, CadreSettings, Role  # noqa: E402

log = logging.getLogger(__name__)
litellm.suppress_debug_info = True
logging.getLogger("LiteLLM").setLevel(logging.WARNING)
FATAL_ERRORS = (litellm.AuthenticationError, litellm.NotFoundError, litellm.PermissionDeniedError)


def _drop_decoded_tokenizer() -> None:
    """litellm.utils keeps its Claude tokenizer twice: as JSON text (`claude_json_str`, read when a Claude
    tokenizer is built) and decoded (`json_data`, about 13 MB of Python objects nothing reads after the
    import). Every worker process would carry the decoded copy; the text stays."""
    utils = sys.modules.get("litellm.utils")
    if isinstance(getattr(utils, "claude_json_str", None), str):
        vars(utils).pop("json_data", None)


_drop_decoded_tokenizer()


def warm_up() -> None:
    """Load what litellm otherwise loads on the first call of each process (response types, the HTTP
    client stack): done once in a worker's main process, its pool processes share it. No network."""
    litellm.completion(model="openai/warm-up", api_key="none", mock_response="ok",
                       messages=[{"role": "user", "content": "warm up"}])
    for module in ("httpcore", "h11", "httpx._transports.default"):
        __import__(module)


class ModelAccessError(RuntimeError):
    """The model cannot be used at all (bad key, unknown model, no permission): retrying is pointless."""


@dataclass(frozen=True)
class ToolCallRequest:
    """One tool call the model asked for; `arguments` is the raw JSON text it sent."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelReply:
    """One assistant turn with its measured usage."""

    content: str | None
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    model: str = ""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_message(self) -> dict:
        """The assistant message to append to the conversation."""
        message: dict = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return message


class LiteLLMModel:
    """The model of one role, called through `litellm.completion`."""

    def __init__(self, settings: CadreSettings, role: Role):
        self.role = role
        self.model = settings.model_for(role)
        self.api_base = settings.api_base_for(role)
        self.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        if settings.uses_demo_model(role):
            self.api_key = DEMO_MODEL_KEY  # the demo model takes no key, but the client must send one
        role_settings = settings.role(role)
        self.price = role_settings.price_per_mtok
        self.params = role_settings.model_params
        self.fallbacks = role_settings.fallbacks
        self.retries = settings.model_retries
        # Transient failures are retried with exponential backoff; a bad key or model never is.
        self.retry_policy = litellm.RetryPolicy(
            AuthenticationErrorRetries=0, NotFoundErrorRetries=0, BadRequestErrorRetries=0,
            ContentPolicyViolationErrorRetries=0, RateLimitErrorRetries=self.retries,
            InternalServerErrorRetries=self.retries, ServiceUnavailableErrorRetries=self.retries,
            TimeoutErrorRetries=self.retries, DefaultRetries=self.retries,
        )

    def complete(self, messages: list[dict], tools: list[dict]) -> ModelReply:
        """Ask the model for its next turn.

        Rate limits, server errors and timeouts are retried by litellm with backoff; an
        authentication, permission or unknown-model error raises ModelAccessError (one line).
        Other system errors propagate.
        """
        kwargs: dict = {**self.params, "model": self.model, "messages": messages, "num_retries": self.retries,
                        "retry_policy": self.retry_policy, "retry_strategy": "exponential_backoff_retry"}
        if self.fallbacks:
            kwargs["fallbacks"] = self.fallbacks
        if tools:
            kwargs["tools"] = tools
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        try:
            response = litellm.completion(**kwargs)
        except FATAL_ERRORS as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelAccessError(f"{self.role} model {self.model} unusable ({type(exc).__name__}): "
                                   f"{first_line[:300]}") from None
        message = response.choices[0].message
        calls = [
            ToolCallRequest(id=c.id or f"call_{i}", name=c.function.name or "", arguments=c.function.arguments or "")
            for i, c in enumerate(message.tool_calls or [])
        ]
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        served = self.served_by(getattr(response, "model", None) or "")
        cost, priced = self._cost(response, served, prompt_tokens, completion_tokens)
        return ModelReply(content=message.content, tool_calls=calls, prompt_tokens=prompt_tokens,
                          completion_tokens=completion_tokens, cost_usd=cost, priced=priced, model=served)

    def served_by(self, response_model: str) -> str:
        """The configured model (primary or a fallback) that answered, from the model name in the response."""
        for fallback in self.fallbacks:
            name = fallback.split("/", 1)[-1]
            if response_model and (response_model == name or response_model.startswith(f"{name}-")):
                return fallback
        return self.model

    def _cost(self, response, served: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, bool]:
        """Cost of the model that served the reply: the configured price (for the primary model), else
        litellm's cost table for the served model, else 0 (marked unpriced)."""
        if self.price is not None and served == self.model:
            return price_tokens(self.price, prompt_tokens, completion_tokens), True
        try:
            return float(litellm.completion_cost(completion_response=response, model=served)), True
        except Exception as exc:  # litellm raises a bare Exception for models missing from its table
            log.debug("no price for model %s (%s); counting cost 0", served, exc)
            return 0.0, False


def price_tokens(price: tuple[float, float], prompt_tokens: int, completion_tokens: int) -> float:
    """USD for the tokens at `price` = (input, output) USD per million tokens."""
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


def table_cost(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD for the tokens of `model` from litellm's cost table, or None when the table has no price for it."""
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens,
                                                              completion_tokens=completion_tokens)
    except Exception:  # litellm raises a bare Exception for models missing from its table
        return None
    return float(prompt_cost + completion_cost)
