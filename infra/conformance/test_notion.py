"""The Notion fake driven by Notion's Python SDK (notion-client 3.1.0, API version 2025-09-03).

The SDK's `Client` talks to the fake's base URL with an internal integration token. The workspace
starts new: a bot, a person and one page shared with the integration (`root_page`, printed by the
fake); each test builds the databases it needs through the API (`databases.create` with
`initial_data_source`), as a person's integration would. Error answers must raise the SDK's
`APIResponseError` with Notion's `code` (the OAuth token endpoint answers OAuth's `error` body
instead, which the SDK raises as `UnknownHTTPResponseError` with that body); the SDK's own 429 handling (it waits `Retry-After`) must
work against the fake's rate limit.

Covered: what `shared/src/adapters/notion/` sends (`databases.retrieve` to resolve a data source,
`data_sources.retrieve`/`update`/`query` with a `last_edited_time` timestamp filter (alone, or
with `created_time` in an `and` for a minute of over 10,000 edits), sorts and
`start_cursor` paging, `in_trash` queries, `pages.create`/`update`/`retrieve`, `blocks.children`
append and list) plus `users.me` and the size limits; a public integration's OAuth
(`oauth.token`: the authorization-code and refresh-token grants; `oauth.revoke`).
"""

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from notion_client import APIErrorCode, APIResponseError, Client
from notion_client.errors import UnknownHTTPResponseError
from notion_client.helpers import collect_paginated_api, iterate_paginated_api

TOKEN = "ntn_fake_notion"


@pytest.fixture(scope="module")
def fake(start_fake):
    return start_fake("fake-notion")


@pytest.fixture(scope="module")
def notion(fake):
    return Client(auth=TOKEN, base_url=fake.base_url)


def text(s):
    return [{"type": "text", "text": {"content": s}}]


def make_database(notion, fake, name="Deals"):
    db = notion.databases.create(
        parent={"type": "page_id", "page_id": fake.values["root_page"]},
        title=text(name),
        initial_data_source={
            "properties": {
                "Name": {"title": {}},
                "Stage": {"status": {"options": [{"name": "Lead"}, {"name": "Won"}]}},
                "Value": {"number": {"format": "dollar"}},
                "Close date": {"date": {}},
                "Source": {"select": {"options": [{"name": "Inbound"}]}},
                "Email": {"email": {}},
                "Phone": {"phone_number": {}},
                "Notes": {"rich_text": {}},
            }
        },
    )
    return db, db["data_sources"][0]["id"]


def new_deal(notion, ds, name, **extra):
    props = {"Name": {"title": text(name)}, **extra}
    return notion.pages.create(parent={"type": "data_source_id", "data_source_id": ds}, properties=props)


def test_users_me_is_the_integrations_bot(notion):
    me = notion.users.me()
    assert me["object"] == "user"
    assert me["type"] == "bot"


def test_a_created_database_resolves_to_its_data_source_with_the_schema(notion, fake):
    db, ds = make_database(notion, fake)
    assert db["object"] == "database"
    again = notion.databases.retrieve(database_id=db["id"])
    assert [s["id"] for s in again["data_sources"]] == [ds]
    source = notion.data_sources.retrieve(data_source_id=ds)
    assert source["object"] == "data_source"
    assert source["parent"] == {"type": "database_id", "database_id": db["id"]}
    kinds = {name: p["type"] for name, p in source["properties"].items()}
    assert kinds["Name"] == "title" and kinds["Stage"] == "status" and kinds["Value"] == "number"


def test_pages_are_created_read_and_updated_by_property_type(notion, fake):
    _, ds = make_database(notion, fake)
    page = new_deal(
        notion,
        ds,
        "Acme",
        Stage={"status": {"name": "Lead"}},
        Value={"number": 5000},
        Email={"email": "ada@acme.example"},
        **{"Close date": {"date": {"start": "2027-02-01"}}},
    )
    assert page["parent"]["data_source_id"] == ds
    assert page["last_edited_time"].endswith(":00.000Z"), "Notion rounds stamps to the minute"
    got = notion.pages.retrieve(page_id=page["id"])
    assert got["properties"]["Value"]["number"] == 5000
    assert got["properties"]["Stage"]["status"]["name"] == "Lead"
    assert got["properties"]["Close date"]["date"]["start"] == "2027-02-01"
    updated = notion.pages.update(
        page_id=page["id"], properties={"Stage": {"status": {"name": "Won"}}, "Notes": {"rich_text": text("hi")}}
    )
    assert updated["properties"]["Stage"]["status"]["name"] == "Won"
    assert updated["properties"]["Notes"]["rich_text"][0]["plain_text"] == "hi"
    assert updated["properties"]["Value"]["number"] == 5000, "properties not sent are kept"


def test_queries_page_with_the_sdks_paginators_and_filter_on_last_edited_time(notion, fake):
    _, ds = make_database(notion, fake)
    created = [new_deal(notion, ds, f"Deal {i}")["id"] for i in range(25)]
    pages = collect_paginated_api(
        notion.data_sources.query,
        data_source_id=ds,
        page_size=10,
        sorts=[{"timestamp": "last_edited_time", "direction": "ascending"}],
    )
    assert sorted(p["id"] for p in pages) == sorted(created)
    first = next(iterate_paginated_api(notion.data_sources.query, data_source_id=ds, page_size=3))
    assert first["object"] == "page"
    stamp = pages[-1]["last_edited_time"]
    recent = notion.data_sources.query(
        data_source_id=ds,
        filter={"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": stamp}},
    )
    assert len(recent["results"]) == 25, "all made within this minute share its stamp"
    later = notion.data_sources.query(
        data_source_id=ds,
        filter={"timestamp": "last_edited_time", "last_edited_time": {"after": stamp}},
    )
    assert later["results"] == [] and later["has_more"] is False
    one = notion.data_sources.query(data_source_id=ds, filter={"property": "Name", "title": {"equals": "Deal 7"}})
    assert [p["id"] for p in one["results"]] == [created[7]]


def test_a_minute_is_listed_by_creation_time_with_a_compound_timestamp_filter(notion, fake):
    # What the adapter sends for a minute of over 10,000 edits: that minute's pages by creation.
    # https://developers.notion.com/reference/post-database-query-filter#compound-filter-conditions
    _, ds = make_database(notion, fake)
    created = [new_deal(notion, ds, f"Deal {i}")["id"] for i in range(12)]
    stamp = notion.pages.retrieve(page_id=created[0])["last_edited_time"]
    minute = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    after = (minute + timedelta(minutes=1)).isoformat()

    def window(created_from):
        parts = [
            {"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": stamp}},
            {"timestamp": "last_edited_time", "last_edited_time": {"before": after}},
            {"timestamp": "created_time", "created_time": {"on_or_after": created_from}},
        ]
        return collect_paginated_api(
            notion.data_sources.query,
            data_source_id=ds,
            page_size=5,
            filter={"and": parts},
            sorts=[{"timestamp": "created_time", "direction": "ascending"}],
        )

    pages = window(stamp)
    assert sorted(p["id"] for p in pages) == sorted(created)
    assert [p["created_time"] for p in pages] == sorted(p["created_time"] for p in pages)
    assert window(after) == [], "nothing created after the minute"


def test_trashed_pages_leave_the_default_query_and_appear_with_in_trash(notion, fake):
    _, ds = make_database(notion, fake)
    keep = new_deal(notion, ds, "Keep")["id"]
    gone = new_deal(notion, ds, "Gone")["id"]
    trashed = notion.pages.update(page_id=gone, in_trash=True)
    assert trashed["in_trash"] is True
    live = collect_paginated_api(notion.data_sources.query, data_source_id=ds)
    assert [p["id"] for p in live] == [keep]
    bin_ = notion.data_sources.query(data_source_id=ds, in_trash=True)
    assert [p["id"] for p in bin_["results"]] == [gone]
    restored = notion.pages.update(page_id=gone, in_trash=False)
    assert restored["in_trash"] is False


def test_a_schema_update_adds_a_rich_text_property_that_queries_can_match(notion, fake):
    _, ds = make_database(notion, fake)
    source = notion.data_sources.update(data_source_id=ds, properties={"Syncbridge key": {"rich_text": {}}})
    assert source["properties"]["Syncbridge key"]["type"] == "rich_text"
    page = new_deal(notion, ds, "Keyed", **{"Syncbridge key": {"rich_text": text("k-123")}})
    found = notion.data_sources.query(
        data_source_id=ds, filter={"property": "Syncbridge key", "rich_text": {"equals": "k-123"}}
    )
    assert [p["id"] for p in found["results"]] == [page["id"]]


def test_blocks_are_appended_to_a_page_and_listed_with_the_paginator(notion, fake):
    _, ds = make_database(notion, fake)
    page = new_deal(notion, ds, "With notes")["id"]
    children = [{"type": "paragraph", "paragraph": {"rich_text": text(f"note {i}")}} for i in range(12)]
    appended = notion.blocks.children.append(block_id=page, children=children)
    assert len(appended["results"]) == 12
    listed = collect_paginated_api(notion.blocks.children.list, block_id=page, page_size=5)
    assert [b["paragraph"]["rich_text"][0]["plain_text"] for b in listed] == [f"note {i}" for i in range(12)]


@pytest.mark.parametrize(
    "props, why",
    [
        ({"Stage": {"status": {"name": "Nope"}}}, "a status option that does not exist"),
        ({"Value": {"number": "many"}}, "a string for a number"),
        ({"Absent": {"number": 1}}, "a property the data source lacks"),
        ({"Notes": {"rich_text": text("x" * 2001)}}, "text past 2000 characters"),
        ({"Notes": {"rich_text": text("a") * 101}}, "more than 100 rich text elements"),
        ({"Email": {"email": "a" * 201}}, "an email past 200 characters"),
    ],
)
def test_bad_property_values_raise_validation_error(notion, fake, props, why):
    _, ds = make_database(notion, fake)
    page = new_deal(notion, ds, "Target")["id"]
    with pytest.raises(APIResponseError) as err:
        notion.pages.update(page_id=page, properties=props)
    assert err.value.code == APIErrorCode.ValidationError, why
    assert err.value.status == 400


def test_more_than_a_hundred_blocks_or_a_page_size_past_a_hundred_are_refused(notion, fake):
    _, ds = make_database(notion, fake)
    page = new_deal(notion, ds, "Big")["id"]
    children = [{"type": "paragraph", "paragraph": {"rich_text": text("x")}} for _ in range(101)]
    with pytest.raises(APIResponseError) as err:
        notion.blocks.children.append(block_id=page, children=children)
    assert err.value.code == APIErrorCode.ValidationError
    with pytest.raises(APIResponseError) as err:
        notion.data_sources.query(data_source_id=ds, page_size=101)
    assert err.value.code == APIErrorCode.ValidationError


def test_unknown_objects_and_tokens_raise_their_codes(notion, fake):
    with pytest.raises(APIResponseError) as err:
        notion.pages.retrieve(page_id=str(uuid.uuid4()))
    assert err.value.code == APIErrorCode.ObjectNotFound and err.value.status == 404
    stranger = Client(auth="ntn_not_this_one", base_url=fake.base_url)
    with pytest.raises(APIResponseError) as err:
        stranger.users.me()
    assert err.value.code == APIErrorCode.Unauthorized and err.value.status == 401


def test_a_request_without_notion_version_gets_missing_version(fake):
    resp = httpx.get(f"{fake.base_url}/v1/users/me", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["object"] == "error" and body["code"] == "missing_version" and body["status"] == 400


def test_the_sdk_waits_out_a_429_and_a_client_without_retries_sees_rate_limited(notion, fake):
    admin = f"{fake.base_url}/_admin"
    httpx.post(f"{admin}/faults", json={"route": "me", "kind": "rate_limit", "retry_after_secs": 1})
    before = httpx.get(f"{admin}/stats").json()["rate_limited"]
    assert notion.users.me()["type"] == "bot", "the SDK retried after Retry-After"
    assert httpx.get(f"{admin}/stats").json()["rate_limited"] == before + 1
    strict = Client(auth=TOKEN, base_url=fake.base_url, retry=False)
    httpx.post(f"{admin}/faults", json={"route": "me", "kind": "rate_limit", "retry_after_secs": 2})
    with pytest.raises(APIResponseError) as err:
        strict.users.me()
    assert err.value.code == APIErrorCode.RateLimited and err.value.status == 429
    assert err.value.headers["retry-after"] == "2"


def test_the_switchable_rate_limit_holds_a_burst_to_about_three_a_second(notion, fake):
    admin = f"{fake.base_url}/_admin"
    httpx.post(f"{admin}/rate-limits", json={"enabled": True})
    try:
        strict = Client(auth=TOKEN, base_url=fake.base_url, retry=False)
        codes = []
        for _ in range(20):
            try:
                strict.users.me()
                codes.append(200)
            except APIResponseError as e:
                codes.append(e.code)
        assert APIErrorCode.RateLimited in codes
        assert codes.count(200) < 20
        assert notion.users.me()["type"] == "bot", "the retrying SDK gets through"
    finally:
        httpx.post(f"{admin}/rate-limits", json={"enabled": False})


CLIENT_ID = "fake-notion-client-id"
CLIENT_SECRET = "fake-notion-client-secret"
REDIRECT = "http://app.test/callback"


def authorization_code(fake):
    """The code Notion's authorize URL redirects with once the user allows (a program consents at once)."""
    resp = httpx.get(
        f"{fake.base_url}/v1/oauth/authorize",
        params={"client_id": CLIENT_ID, "response_type": "code", "owner": "user", "redirect_uri": REDIRECT, "state": "s1"},
        follow_redirects=False,
    )
    assert resp.status_code == 302
    location = httpx.URL(resp.headers["location"])
    assert location.params["state"] == "s1"
    return location.params["code"]


def test_oauth_token_exchanges_a_code_for_a_workspace_token_that_opens_the_api(fake):
    oauth = Client(base_url=fake.base_url)
    grant = oauth.oauth.token(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        grant_type="authorization_code", code=authorization_code(fake), redirect_uri=REDIRECT,
    )
    assert grant["token_type"] == "bearer"
    assert grant["access_token"] and grant["refresh_token"] and grant["bot_id"] and grant["workspace_id"]
    assert grant["owner"]["type"] == "user"
    assert Client(auth=grant["access_token"], base_url=fake.base_url).users.me()["id"] == grant["bot_id"]

    fresh = oauth.oauth.token(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        grant_type="refresh_token", refresh_token=grant["refresh_token"],
    )
    assert fresh["refresh_token"] != grant["refresh_token"]
    assert fresh["workspace_id"] == grant["workspace_id"]
    assert Client(auth=fresh["access_token"], base_url=fake.base_url).users.me()["type"] == "bot"


def test_oauth_token_refuses_a_used_code_and_a_wrong_client_secret_with_oauths_error_body(fake):
    oauth = Client(base_url=fake.base_url)
    code = authorization_code(fake)
    oauth.oauth.token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                      grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    with pytest.raises(UnknownHTTPResponseError) as used:
        oauth.oauth.token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                          grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert used.value.status == 400
    assert '"error":"invalid_grant"' in used.value.body.replace(" ", "")
    with pytest.raises(UnknownHTTPResponseError) as bad_client:
        oauth.oauth.token(client_id=CLIENT_ID, client_secret="wrong",
                          grant_type="authorization_code", code=authorization_code(fake), redirect_uri=REDIRECT)
    assert bad_client.value.status == 401


def test_oauth_revoke_ends_the_access_token(fake):
    oauth = Client(base_url=fake.base_url)
    grant = oauth.oauth.token(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        grant_type="authorization_code", code=authorization_code(fake), redirect_uri=REDIRECT,
    )
    user = Client(auth=grant["access_token"], base_url=fake.base_url)
    assert user.users.me()["type"] == "bot"
    assert "request_id" in oauth.oauth.revoke(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token=grant["access_token"])
    with pytest.raises(APIResponseError) as gone:
        user.users.me()
    assert gone.value.code == APIErrorCode.Unauthorized
