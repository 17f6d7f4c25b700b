"""Stripe's error envelope, so the SDK raises the same exception classes it would for Stripe."""

from __future__ import annotations


class StripeError(Exception):
    def __init__(self, status: int, type_: str, code: str | None, message: str, param: str | None = None, **extra):
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra

    def body(self) -> dict:
        """Stripe leaves unset fields out of an error (no ``"param": null``)."""
        err = {"type": self.type, "message": self.message}
        if self.code:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param:
            err["param"] = self.param
        err.update({k: v for k, v in self.extra.items() if v is not None})
        return {"error": err}


def missing(kind: str, id_: str, param: str = "id") -> StripeError:
    return StripeError(404, "invalid_request_error", "resource_missing", f"No such {kind}: '{id_}'", param)


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeError:
    return StripeError(400, "invalid_request_error", code, message, param)


def card_declined(message: str = "Your card was declined.", decline_code: str = "generic_decline", **extra) -> StripeError:
    return StripeError(402, "card_error", "card_declined", message, None, decline_code=decline_code, **extra)
