"""Form decoding and parameter checking against the SDK's TypedDicts."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from billing_app.sandbox import resources  # noqa: F401  (registers the routes)
from billing_app.sandbox.api import ROUTES
from billing_app.sandbox.errors import StripeError
from billing_app.sandbox.params import check, parse_form, schema_for


def encode(params):
    return urlencode(list(_api_encode(params))).replace("%5B", "[").replace("%5D", "]")


def stringify(v, list_item=False):
    """What the server sees: strings.  The SDK lowercases booleans except the direct items of a
    list (those it urlencodes as Python's True/False); a list inside a list is encoded like a hash."""
    if isinstance(v, bool):
        return str(v) if list_item else str(v).lower()
    if isinstance(v, dict):
        return {k: stringify(x) for k, x in v.items()}
    if isinstance(v, list):
        return [stringify(x, not list_item) for x in v]
    return str(v)


def test_nested_sdk_encoding_round_trips():
    params = {"line_items": [{"price": "price_1", "quantity": 2}, {"price": "price_2", "quantity": 1}],
              "subscription_data": {"metadata": {"user": "7", "0": "digit key"}, "trial_period_days": 14},
              "expand": ["subscription", "line_items"], "allow_promotion_codes": True}
    assert parse_form(encode(params)) == stringify(params)


def test_brackets_without_index_append():
    assert parse_form("expand[]=a&expand[]=b&lookup_keys[]=x") == {"expand": ["a", "b"], "lookup_keys": ["x"]}


def test_empty_values_are_kept_for_unsetting():
    assert parse_form("metadata[k]=&pause_collection=") == {"metadata": {"k": ""}, "pause_collection": ""}


keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
leaves = st.one_of(st.text(alphabet="abc xyz-_.:/{}", max_size=8), st.integers(-10**6, 10**6), st.booleans())
values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, min_size=1, max_size=3),
                                                     st.dictionaries(keys, inner, min_size=1, max_size=3)), max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, min_size=1, max_size=4))
def test_any_sdk_encoded_params_decode_back(params):
    def empty_free(v):  # the SDK drops empty lists/dicts, so they cannot round-trip
        if isinstance(v, dict):
            return bool(v) and all(empty_free(x) for x in v.values())
        if isinstance(v, list):
            return bool(v) and all(empty_free(x) for x in v)
        return True
    if not empty_free(params):
        return
    assert parse_form(encode(params)) == stringify(params)


def test_every_route_names_a_loadable_sdk_params_class():
    specs = [spec for _, _, _, spec, _ in ROUTES if spec]
    assert len(specs) > 60
    for spec in specs:
        schema = schema_for(spec)
        assert "expand" in schema or spec.endswith("DeleteParams"), spec


def test_check_unknown_nested_and_missing():
    spec = "checkout._session_create_params:SessionCreateParams"
    check({"mode": "subscription", "line_items": [{"price": "p", "quantity": "1"}], "metadata": {"anything": "x"}}, spec)
    with pytest.raises(StripeError) as exc:
        check({"line_items": [{"price": "p"}, {"prise": "p"}]}, spec)
    assert exc.value.param == "line_items[1][prise]" and exc.value.code == "parameter_unknown"
    with pytest.raises(StripeError) as exc:
        check({"features": {"subscription_cancel": {"mode": "immediately"}}},
              "billing_portal._configuration_create_params:ConfigurationCreateParams")
    assert exc.value.param == "features[subscription_cancel][enabled]" and exc.value.code == "parameter_missing"
