"""An endpoint's description and category through the admin API: set when created, shown to
the admin and the viewer, changed and cleared by PATCH, taken from the config file, and the
list narrowed to one category (compared exactly); a bad value is a 422 naming the field that
changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import ADMIN_TOKEN, VIEWER_TOKEN, Harness, api, make_config


@pytest.fixture
async def url(receivers) -> str:
    return str((await receivers()).url)


@pytest.fixture
async def h(tmp_path, url, make_harness):
    config = make_config(
        tmp_path,
        [{"name": "from-file", "url": url, "description": "The loyalty app's points", "category": "Loyalty"}],
    )
    return await make_harness(config)


async def _create(h: Harness, url: str, name: str, **fields: Any) -> dict[str, Any]:
    code, created = await api(h, "POST", "/v1/endpoints", {"name": name, "url": url, **fields})
    assert code == 201, created
    return created


def _names(listed: dict[str, Any]) -> list[str]:
    return [e["name"] for e in listed["data"]]


async def test_set_when_created_and_shown_to_admin_and_viewer(h, url):
    created = await _create(h, url, "erp", description="Orders into the ERP", category="Back office")
    assert (created["description"], created["category"]) == ("Orders into the ERP", "Back office")
    for token in (ADMIN_TOKEN, VIEWER_TOKEN):
        code, shown = await api(h, "GET", "/v1/endpoints/erp", token=token)
        assert code == 200 and (shown["description"], shown["category"]) == ("Orders into the ERP", "Back office")
    stored = h.services.registry.by_name("erp")
    assert stored is not None and (stored.description, stored.category) == ("Orders into the ERP", "Back office")
    bare = await _create(h, url, "bare")
    assert (bare["description"], bare["category"]) == (None, None)


async def test_the_config_file_gives_them(h):
    code, shown = await api(h, "GET", "/v1/endpoints/from-file")
    assert code == 200 and (shown["description"], shown["category"]) == ("The loyalty app's points", "Loyalty")
    # The file owns them too, as it owns the rest of its endpoints.
    code, problem = await api(h, "PATCH", "/v1/endpoints/from-file", {"category": "Other"})
    assert code == 409 and problem["type"].endswith("config-managed")
    assert (await api(h, "GET", "/v1/endpoints/from-file"))[1]["category"] == "Loyalty"


async def test_patch_changes_one_and_keeps_the_other_and_null_clears(h, url):
    await _create(h, url, "erp", description="Orders into the ERP", category="Back office")
    code, changed = await api(h, "PATCH", "/v1/endpoints/erp", {"category": "ERP"})
    assert code == 200 and (changed["description"], changed["category"]) == ("Orders into the ERP", "ERP")
    code, changed = await api(h, "PATCH", "/v1/endpoints/erp", {"description": "Sales into the ERP"})
    assert code == 200 and (changed["description"], changed["category"]) == ("Sales into the ERP", "ERP")
    code, cleared = await api(h, "PATCH", "/v1/endpoints/erp", {"description": None, "category": None})
    assert code == 200 and (cleared["description"], cleared["category"]) == (None, None)
    stored = h.services.registry.by_name("erp")
    assert stored is not None and (stored.description, stored.category) == (None, None)


async def test_the_list_takes_one_category_compared_exactly(h, url):
    await _create(h, url, "app", category="Loyalty")
    await _create(h, url, "app-lower", category="loyalty")
    await _create(h, url, "erp", category="Back office")
    await _create(h, url, "bare")
    for token in (ADMIN_TOKEN, VIEWER_TOKEN):
        code, listed = await api(h, "GET", "/v1/endpoints?category=Loyalty", token=token)
        assert code == 200 and _names(listed) == ["from-file", "app"]
    code, listed = await api(h, "GET", "/v1/endpoints?category=Back%20office")
    assert code == 200 and _names(listed) == ["erp"]
    code, listed = await api(h, "GET", "/v1/endpoints?category=")  # those without one
    assert code == 200 and _names(listed) == ["bare"]
    code, listed = await api(h, "GET", "/v1/endpoints?category=Nobody")
    assert code == 200 and listed == {"data": [], "next_cursor": None}
    code, listed = await api(h, "GET", "/v1/endpoints")
    assert code == 200 and _names(listed) == ["from-file", "app", "app-lower", "erp", "bare"]


@pytest.mark.parametrize(
    ("query", "field", "said"),
    [
        ("category=Loyalty/App", "category", "must be 1 to 64 letters, digits, spaces"),
        ("category=" + "x" * 65, "category", "must be 1 to 64"),
        ("category=a&category=b", "category", "give it once"),
        ("kind=Loyalty", "kind", "unknown field"),
    ],
)
async def test_a_bad_list_query_is_a_422_naming_it(h, query, field, said):
    code, problem = await api(h, "GET", f"/v1/endpoints?{query}")
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert said in problem["errors"][0]["message"] and said in problem["detail"]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("category", "", "must be 1 to 64 letters"),
        ("category", " Loyalty", "not starting or ending with a space"),
        ("category", "x" * 65, "must be 1 to 64 letters"),
        ("category", "Loyalty/App", "letters, digits, spaces, _ . or -"),
        ("category", 7, "must be a string"),
        ("description", "", "must not be empty"),
        ("description", "x" * 501, "at most 500 characters"),
        ("description", "first line\nsecond line", "control characters"),
        ("description", ["a list"], "must be a string"),
    ],
)
async def test_a_bad_value_is_a_422_naming_the_field_and_changes_nothing(h, url, field, value, said):
    code, problem = await api(h, "POST", "/v1/endpoints", {"name": "erp", "url": url, field: value})
    assert code == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert said in problem["errors"][0]["message"]
    assert problem["detail"].startswith("the body is not valid: " + field)
    assert h.services.registry.by_name("erp") is None
    await _create(h, url, "erp", category="ERP", description="Orders")
    code, problem = await api(h, "PATCH", "/v1/endpoints/erp", {field: value})
    assert code == 422 and [e["field"] for e in problem["errors"]] == [field]
    stored = h.services.registry.by_name("erp")
    assert stored is not None and (stored.category, stored.description) == ("ERP", "Orders")
