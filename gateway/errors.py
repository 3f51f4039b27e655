"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

from django.http import JsonResponse


class ApiError(Exception):
    """An error the client should see. The message is written by AURA, never copied from input."""

    def __init__(self, status: int, message: str, type: str, code: str | None = None, param: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        response = JsonResponse(body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


def invalid_api_key() -> ApiError:
    return ApiError(
        401,
        "Incorrect API key provided. Pass your AURA key as 'Authorization: Bearer aura_…'. Keys are issued in the cabinet.",
        "invalid_request_error",
        "invalid_api_key",
    )


def model_not_found(model: str) -> ApiError:
    shown = model if len(model) <= 120 else model[:120] + "…"
    return ApiError(
        404,
        f"The model '{shown}' does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
        "model",
    )


def provider_key_unreadable(provider: str) -> ApiError:
    return invalid_request(
        f"The stored {provider} key can no longer be decrypted (it was shredded). Replace it under Provider keys in the AURA cabinet.",
        "model",
        "provider_key_unreadable",
    )
