"""The OpenAPI document and the one error envelope (including FastAPI's own 404/405/422)."""

from fastapi.testclient import TestClient

from billing_app.errors import HTTP_STATUS, ErrorCode
from tests.api.helpers import err

ROUTES = {
    ("get", "/api/subscriptions"), ("get", "/api/subscriptions/my"), ("post", "/api/subscriptions/buy"),
    ("get", "/api/subscriptions/checkout-session/{session_id}"), ("post", "/api/subscriptions/portal"),
    ("post", "/api/billing/portal"), ("get", "/api/subscriptions/payments"), ("post", "/api/subscriptions/cancel"),
    ("post", "/api/subscriptions/reactivate"), ("post", "/api/subscriptions/change"), ("get", "/api/billing/summary"),
    ("post", "/api/subscriptions/keep-current-plan"), ("post", "/api/subscriptions/pause"), ("post", "/api/subscriptions/resume"),
    ("get", "/api/subscriptions/retention"), ("post", "/api/subscriptions/retention/accept"),
    # Teams (tests/teams)
    ("get", "/api/billing/entitlements"), ("get", "/api/org/members"), ("post", "/api/org/invitations"),
    ("delete", "/api/org/invitations/{id}"), ("delete", "/api/org/members/{userId}"), ("post", "/api/subscriptions/seats"),
}
ADMIN_ONLY = {"/api/subscriptions/buy", "/api/subscriptions/portal", "/api/billing/portal", "/api/subscriptions/payments",
              "/api/subscriptions/cancel", "/api/subscriptions/reactivate", "/api/subscriptions/change",
              "/api/subscriptions/keep-current-plan", "/api/subscriptions/pause", "/api/subscriptions/resume",
              "/api/subscriptions/retention", "/api/subscriptions/retention/accept",
              "/api/org/invitations", "/api/org/invitations/{id}", "/api/org/members/{userId}", "/api/subscriptions/seats"}
# POST routes without a body: nothing to validate.
BODILESS = ("/api/subscriptions/reactivate", "/api/subscriptions/keep-current-plan", "/api/subscriptions/resume",
            "/api/subscriptions/retention/accept")


def test_the_document_lists_every_route_with_its_auth_and_errors(client):
    response = client.get("/api/openapi.json")  # public, like the docs it feeds
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert {(m, p) for p, item in doc["paths"].items() for m in item} == ROUTES
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {**doc["components"]["securitySchemes"]["bearerAuth"],
                                                                  "type": "http", "scheme": "bearer"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert "200" in responses
            if path == "/api/subscriptions":
                assert "security" not in op and set(responses) == {"200"}
                continue
            assert op["security"] == [{"bearerAuth": []}]
            assert "401" in responses
            assert ("403" in responses) == (path in ADMIN_ONLY), (method, path)
            assert ("422" in responses) == (method == "post" and path not in BODILESS
                                            or method == "delete"  # an id that is not an integer
                                            or path in ("/api/subscriptions/payments", "/api/subscriptions/checkout-session/{session_id}"))
            for status, doc_response in responses.items():
                if status == "200":
                    continue
                schema = doc_response["content"]["application/json"]["schema"]
                assert schema["required"] == ["success", "error_code", "message"]
                codes = schema["properties"]["error_code"]["enum"]
                # Every documented code is a shared code whose HTTP status is the one it is documented under.
                for code in codes:
                    assert HTTP_STATUS.get(ErrorCode(code), 400) == int(status) or (status == "404" and "{" in path)
    change = doc["paths"]["/api/subscriptions/change"]["post"]["responses"]
    assert set(change["409"]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"]) == {
        "SAME_PLAN", "LIFETIME_NOT_CHANGEABLE", "SUBSCRIPTION_ALREADY_CANCELED",
        "SUBSCRIPTION_CANCELING",  # issue 10: a downgrade on a subscription set to cancel
        "SEAT_LIMIT_EXCEEDED", "SEAT_CHANGE_IN_PROGRESS",  # teams: a plan whose seat cap is below the members
        "PLAN_CHANGE_PENDING",  # another plan while an upgrade waits for 3-D Secure
        "SUBSCRIPTION_PAUSED"}  # an upgrade while paused (resume first)
    assert "STRIPE_PLAN_CHANGE_FAILED" in change["502"]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"]
    pause = doc["paths"]["/api/subscriptions/pause"]["post"]["responses"]
    assert set(pause["409"]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"]) >= {
        "SUBSCRIPTION_PAUSED", "SUBSCRIPTION_CANCELING", "SUBSCRIPTION_NOT_PAUSABLE"}
    accept = doc["paths"]["/api/subscriptions/retention/accept"]["post"]["responses"]
    assert "RETENTION_OFFER_USED" in accept["409"]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"]
    assert accept["404"]["content"]["application/json"]["schema"]["properties"]["error_code"]["enum"] == [
        "SUBSCRIPTION_NOT_FOUND", "RETENTION_OFFER_UNAVAILABLE"]
    buy = doc["paths"]["/api/subscriptions/buy"]["post"]
    assert buy["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BuyRequest"}
    assert doc["components"]["schemas"]["BuyRequest"]["required"] == ["subscriptionPeriodId"]
    assert doc["components"]["schemas"]["ErrorResponse"]["properties"]["error_code"] == {
        **doc["components"]["schemas"]["ErrorResponse"]["properties"]["error_code"], "$ref": "#/components/schemas/ErrorCode"}
    assert set(doc["components"]["schemas"]["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}


def test_unknown_routes_and_methods_use_the_envelope(client):
    err(client.get("/api/nothing-here"), 404)
    err(client.get("/api/nothing%0Ahere"), 404)  # a decoded newline still reaches the API's mount
    err(client.get("/api/subscriptions/checkout-session/a/b", headers={"Authorization": "Bearer x"}), 404)
    response = client.delete("/api/subscriptions")
    err(response, 405)
    assert response.headers["allow"] == "GET"
    err(client.get("/api/subscriptions/buy"), 405)


def test_validation_errors_use_the_envelope_and_name_the_field(client, tokens):
    body = err(client.post("/api/subscriptions/buy", headers=tokens.admin, json={"subscriptionPeriodId": "one"}),
               422, "VALIDATION_ERROR")
    assert "subscriptionPeriodId" in body["message"]
    body = err(client.post("/api/subscriptions/buy", headers={**tokens.admin, "content-type": "application/json"},
                           content=b'{"subscriptionPeriodId": '), 422, "VALIDATION_ERROR")
    body = err(client.get("/api/subscriptions/payments", headers=tokens.admin, params={"limit": "many"}), 422, "VALIDATION_ERROR")
    assert "limit" in body["message"]


def test_authentication_comes_before_validation(client, tokens):
    response = client.post("/api/subscriptions/buy", json={"nonsense": True})
    err(response, 401, "UNAUTHENTICATED")
    assert response.headers["www-authenticate"] == "Bearer"
    err(client.post("/api/subscriptions/buy", headers={"Authorization": "Basic dXNlcjpwYXNz"}, json={}), 401, "UNAUTHENTICATED")
    err(client.post("/api/subscriptions/buy", headers=tokens.member, json={"nonsense": True}), 403, "FORBIDDEN")


def test_the_backend_serves_the_rest_api_under_api(database_url):
    """The backend's own app (what rx.App(api_transformer=...) serves) mounts the REST API at /api."""
    from billing_app.api import build_api

    with TestClient(build_api()) as client:
        assert client.get("/api/health").json() == {"status": "ok"}
        assert client.get("/api/openapi.json").json()["openapi"].startswith("3.1")
        err(client.get("/api/subscriptions/my"), 401, "UNAUTHENTICATED")
        err(client.get("/api/no-such-route"), 404)
