"""The Google Calendar fake driven by Google's own client (google-api-python-client).

The client is built from Google's discovery document for Calendar v3 with its root pointed at the
fake; every answer is checked against that document's schemas (types, formats, `Possible values`
enums, `kind` defaults, no property the schema lacks) by `check_schema` below, not against
hand-written expectations. The fake starts as a new, stock account: the primary calendar and no
events (`--events 0 --weekly-instances 0`); each test makes the events it needs, with its own ids.

Covered: what `shared/src/adapters/google/` sends (windowed full listing with `singleEvents`,
`showDeleted`, `maxResults`, `pageToken`; incremental listing with `syncToken`; the gap listing with
`updatedMin`; insert with a client-chosen id and 409 `duplicate`; get; patch and delete with
`If-Match`; `events.watch`; `channels.stop`) plus `calendars.get('primary')`, update, and Google's
error bodies.
"""

import copy
import datetime as dt
import json
import os
import pathlib
import re
import secrets
import urllib.request

import google.oauth2.credentials
import httplib2
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

SPECS = pathlib.Path(os.environ.get("SYNCBRIDGE_SPECS_DIR", pathlib.Path(__file__).parents[1] / "fakes" / "specs"))
DISCOVERY = json.loads((SPECS / "calendar-v3.discovery.json").read_text())
SCHEMAS = DISCOVERY["schemas"]
TOKEN = "ya29.fake-google"
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"

# --- a schema checker driven by the discovery document -------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def documented_values(prop):
    """The values a property's description lists under `Possible values are:` (Google's enums)."""
    if "enum" in prop:
        return prop["enum"]
    description = prop.get("description", "")
    if "Possible values are" not in description:
        return None
    return re.findall(r'^- "([^"]+)"', description.split("Possible values are", 1)[1], re.M)


def check_schema(value, schema, path="$", errors=None):
    """Every way `value` departs from a discovery schema (a name or a schema dict), as strings."""
    errors = [] if errors is None else errors
    if isinstance(schema, str):
        schema = SCHEMAS[schema]
    if "$ref" in schema:
        return check_schema(value, SCHEMAS[schema["$ref"]], path, errors)
    kind = schema.get("type", "any")
    fmt = schema.get("format")
    if value is None:
        errors.append(f"{path}: null (Google omits unset properties)")
        return errors
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return errors
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], f"{path}.{key}", errors)
            elif extra is not None:
                check_schema(item, extra, f"{path}.{key}", errors)
            else:
                errors.append(f"{path}.{key}: not a property of {schema.get('id', 'this object')}")
        if "kind" in props and "default" in props["kind"] and value.get("kind") != props["kind"]["default"]:
            errors.append(f"{path}.kind: {value.get('kind')!r} is not {props['kind']['default']!r}")
    elif kind == "array":
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array, got {value!r}")
        else:
            for i, item in enumerate(value):
                check_schema(item, schema["items"], f"{path}[{i}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif fmt == "date-time" and not RFC3339.match(value):
            errors.append(f"{path}: {value!r} is not an RFC 3339 date-time")
        elif fmt == "date" and not DATE.match(value):
            errors.append(f"{path}: {value!r} is not a date")
        elif fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            errors.append(f"{path}: {value!r} is not an {fmt} string")
        values = documented_values(schema)
        if values and isinstance(value, str) and value not in values:
            errors.append(f"{path}: {value!r} is not one of {values}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {value!r}")
    return errors


def assert_schema(value, schema):
    errors = check_schema(value, schema)
    assert not errors, "\n".join(errors)


def required_for(method_id, schema):
    """Properties a method needs in its request body (the document's `annotations.required`)."""
    return [
        name
        for name, prop in SCHEMAS[schema]["properties"].items()
        if method_id in prop.get("annotations", {}).get("required", [])
    ]


def assert_google_error(error, status, reason):
    """Google's JSON error body: {"error": {"errors": [{domain, reason, message}], code, message}}."""
    assert isinstance(error, HttpError)
    assert error.resp.status == status
    body = json.loads(error.content)
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == status
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["errors"], list) and err["errors"]
    first = err["errors"][0]
    assert {"domain", "reason", "message"} <= set(first)
    assert first["reason"] == reason
    return err


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake(start_fake):
    return start_fake("fake-google", "--events", "0", "--weekly-instances", "0")


@pytest.fixture(scope="module")
def root(fake):
    api_root = fake.values["api_root"]
    assert api_root.endswith("/calendar/v3")
    return api_root[: -len("/calendar/v3")]


def service_for(root, token=TOKEN):
    doc = copy.deepcopy(DISCOVERY)
    doc["rootUrl"] = root + "/"
    doc["mtlsRootUrl"] = root + "/"
    doc["baseUrl"] = root + "/" + doc["servicePath"]
    if token is None:
        return build_from_document(doc, http=httplib2.Http())
    credentials = google.oauth2.credentials.Credentials(token=token)
    return build_from_document(doc, credentials=credentials)


@pytest.fixture(scope="module")
def cal(root):
    return service_for(root)


def new_id():
    return "sb" + "".join(secrets.choice(BASE32HEX) for _ in range(24))


def at(day_offset, hour):
    base = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return base + dt.timedelta(days=day_offset, hours=hour)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_body(event_id=None, day=1, hour=10, **extra):
    """An event as our adapter writes one: UTC times with `timeZone: UTC`, attendees by email."""
    body = {
        "summary": "Demo with Globex",
        "start": {"dateTime": rfc3339(at(day, hour)), "timeZone": "UTC"},
        "end": {"dateTime": rfc3339(at(day, hour) + dt.timedelta(minutes=30)), "timeZone": "UTC"},
        "attendees": [{"email": "jane.doe@globex.example"}, {"email": "ann@acme.example"}],
        **extra,
    }
    if event_id:
        body["id"] = event_id
    return body


def with_if_match(request, etag):
    request.headers["If-Match"] = etag
    return request


def list_all(cal, **params):
    """Every page of a listing; returns (items, pages, last page)."""
    items, pages, token = [], [], None
    while True:
        page = cal.events().list(calendarId="primary", pageToken=token, **params).execute()
        assert_schema(page, "Events")
        pages.append(page)
        items.extend(page.get("items", []))
        token = page.get("nextPageToken")
        if not token:
            return items, pages, page


# --- calendars ----------------------------------------------------------------------------------


def test_calendars_get_primary_returns_the_owners_calendar_in_the_discovery_shape(cal):
    calendar = cal.calendars().get(calendarId="primary").execute()
    assert_schema(calendar, "Calendar")
    assert calendar["id"] != "primary" and "@" in calendar["id"]
    assert calendar["summary"] and calendar["timeZone"]


def test_calendars_get_of_an_unknown_calendar_is_404_not_found_with_googles_error_body(cal):
    with pytest.raises(HttpError) as caught:
        cal.calendars().get(calendarId="nobody@example.invalid").execute()
    assert_google_error(caught.value, 404, "notFound")


# --- insert / get -------------------------------------------------------------------------------


def test_an_event_inserted_with_a_client_chosen_id_comes_back_whole_with_needs_action_attendees(cal):
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id)).execute()
    assert_schema(created, "Event")
    assert created["id"] == event_id
    assert created["status"] == "confirmed"
    assert created["etag"].startswith('"') and created["etag"].endswith('"')
    assert {a["email"] for a in created["attendees"]} == {"jane.doe@globex.example", "ann@acme.example"}
    assert {a["responseStatus"] for a in created["attendees"]} == {"needsAction"}
    fetched = cal.events().get(calendarId="primary", eventId=event_id).execute()
    assert_schema(fetched, "Event")
    assert fetched == created


def test_an_inserted_event_carries_an_ical_uid_that_reads_back_unchanged(cal):
    # iCalUID: the RFC 5545 UID, distinct from the id
    # (https://developers.google.com/calendar/api/v3/reference/events#iCalUID).
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id)).execute()
    assert isinstance(created["iCalUID"], str) and created["iCalUID"] and created["iCalUID"] != event_id
    fetched = cal.events().get(calendarId="primary", eventId=event_id).execute()
    assert fetched["iCalUID"] == created["iCalUID"]


def test_inserting_the_same_id_again_is_409_duplicate(cal):
    event_id = new_id()
    cal.events().insert(calendarId="primary", body=event_body(event_id)).execute()
    with pytest.raises(HttpError) as caught:
        cal.events().insert(calendarId="primary", body=event_body(event_id, summary="retry")).execute()
    assert_google_error(caught.value, 409, "duplicate")
    assert cal.events().get(calendarId="primary", eventId=event_id).execute()["summary"] == "Demo with Globex"


@pytest.mark.parametrize("missing", required_for("calendar.events.insert", "Event"))
def test_an_insert_without_a_property_the_document_requires_is_400(cal, missing):
    body = event_body(new_id())
    del body[missing]
    with pytest.raises(HttpError) as caught:
        cal.events().insert(calendarId="primary", body=body).execute()
    assert caught.value.resp.status == 400
    assert_google_error(caught.value, 400, json.loads(caught.value.content)["error"]["errors"][0]["reason"])


def test_an_event_ending_before_it_starts_is_400_time_range_empty_on_insert_and_on_patch(cal):
    body = event_body(new_id())
    body["start"], body["end"] = body["end"], body["start"]
    with pytest.raises(HttpError) as caught:
        cal.events().insert(calendarId="primary", body=body).execute()
    assert_google_error(caught.value, 400, "timeRangeEmpty")
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id, day=1, hour=10)).execute()
    with pytest.raises(HttpError) as caught:
        cal.events().patch(calendarId="primary", eventId=event_id, body={"end": {"dateTime": rfc3339(at(1, 9))}}).execute()
    assert_google_error(caught.value, 400, "timeRangeEmpty")
    assert cal.events().get(calendarId="primary", eventId=event_id).execute()["etag"] == created["etag"]


def test_an_id_outside_base32hex_is_400_invalid(cal):
    with pytest.raises(HttpError) as caught:
        cal.events().insert(calendarId="primary", body=event_body("Not_Base32hex")).execute()
    assert_google_error(caught.value, 400, "invalid")


def test_get_of_an_unknown_event_is_404_not_found_with_googles_error_body(cal):
    with pytest.raises(HttpError) as caught:
        cal.events().get(calendarId="primary", eventId=new_id()).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_a_request_with_a_rejected_token_is_401_auth_error(root):
    # Plain httplib2 with the header set by hand: google-auth's authorized http would try to
    # refresh the token on a 401 (and fail for want of a refresh token) before we saw the answer.
    plain = service_for(root, token=None)
    request = plain.events().get(calendarId="primary", eventId=new_id())
    request.headers["authorization"] = "Bearer ya29.not-issued"
    with pytest.raises(HttpError) as caught:
        request.execute()
    assert_google_error(caught.value, 401, "authError")


# --- listings -----------------------------------------------------------------------------------


def test_a_windowed_full_listing_pages_with_page_tokens_and_only_its_last_page_has_a_sync_token(cal):
    ids = [new_id() for _ in range(5)]
    for i, event_id in enumerate(ids):
        cal.events().insert(calendarId="primary", body=event_body(event_id, day=20, hour=8 + i)).execute()
    outside = new_id()
    cal.events().insert(calendarId="primary", body=event_body(outside, day=40)).execute()
    items, pages, last = list_all(
        cal,
        timeMin=rfc3339(at(20, 0)),
        timeMax=rfc3339(at(21, 0)),
        singleEvents=True,
        showDeleted=True,
        maxResults=2,
    )
    assert [e["id"] for e in items] == ids
    assert len(pages) == 3 and all(len(p["items"]) <= 2 for p in pages)
    assert all("nextSyncToken" not in p for p in pages[:-1])
    assert last["nextSyncToken"]
    for item in items:
        assert_schema(item, "Event")


def test_a_full_listing_without_show_deleted_hides_cancelled_events_and_with_it_shows_them(cal):
    gone = new_id()
    cal.events().insert(calendarId="primary", body=event_body(gone, day=22)).execute()
    cal.events().delete(calendarId="primary", eventId=gone).execute()
    window = {"timeMin": rfc3339(at(22, 0)), "timeMax": rfc3339(at(23, 0)), "singleEvents": True}
    hidden, _, _ = list_all(cal, **window)
    shown, _, _ = list_all(cal, showDeleted=True, **window)
    assert gone not in [e["id"] for e in hidden]
    assert [e["status"] for e in shown if e["id"] == gone] == ["cancelled"]


def test_an_incremental_listing_with_the_sync_token_returns_only_the_changes_since(cal):
    params = {"singleEvents": True, "showDeleted": True, "maxResults": 250}
    _, _, last = list_all(cal, timeMin=rfc3339(at(0, 0)), timeMax=rfc3339(at(60, 0)), **params)
    token = last["nextSyncToken"]
    changed, cancelled, created = new_id(), new_id(), new_id()
    for event_id in (changed, cancelled):
        cal.events().insert(calendarId="primary", body=event_body(event_id, day=3)).execute()
    _, _, last = list_all(cal, syncToken=token, **params)
    token = last["nextSyncToken"]
    cal.events().patch(calendarId="primary", eventId=changed, body={"summary": "Moved"}).execute()
    cal.events().delete(calendarId="primary", eventId=cancelled).execute()
    cal.events().insert(calendarId="primary", body=event_body(created, day=90)).execute()
    items, _, last = list_all(cal, syncToken=token, **params)
    by_id = {e["id"]: e for e in items}
    assert set(by_id) == {changed, cancelled, created}
    assert by_id[changed]["summary"] == "Moved"
    assert by_id[cancelled]["status"] == "cancelled"
    assert last["nextSyncToken"] and last["nextSyncToken"] != token
    again, _, _ = list_all(cal, syncToken=last["nextSyncToken"], **params)
    assert again == []


def test_an_incremental_listing_pages_with_page_tokens_too(cal):
    params = {"singleEvents": True, "showDeleted": True}
    _, _, last = list_all(cal, timeMin=rfc3339(at(0, 0)), timeMax=rfc3339(at(1, 0)), **params)
    ids = [new_id() for _ in range(3)]
    for event_id in ids:
        cal.events().insert(calendarId="primary", body=event_body(event_id, day=5)).execute()
    items, pages, _ = list_all(cal, syncToken=last["nextSyncToken"], maxResults=1, **params)
    assert sorted(e["id"] for e in items) == sorted(ids)
    assert len(pages) == 3


@pytest.mark.parametrize("other", ["timeMin", "timeMax", "updatedMin"])
def test_a_sync_token_with_a_time_bound_is_400(cal, other):
    _, _, last = list_all(cal, timeMin=rfc3339(at(0, 0)), timeMax=rfc3339(at(1, 0)), singleEvents=True)
    with pytest.raises(HttpError) as caught:
        cal.events().list(calendarId="primary", syncToken=last["nextSyncToken"], **{other: rfc3339(at(0, 0))}).execute()
    assert caught.value.resp.status == 400
    assert_google_error(caught.value, 400, json.loads(caught.value.content)["error"]["errors"][0]["reason"])


def test_an_invalidated_sync_token_is_410_full_sync_required_with_googles_error_body(cal, root):
    _, _, last = list_all(cal, timeMin=rfc3339(at(0, 0)), timeMax=rfc3339(at(1, 0)), singleEvents=True)
    request = urllib.request.Request(root + "/_admin/sync-tokens/invalidate", method="POST")
    with urllib.request.urlopen(request) as resp:
        assert resp.status == 204
    with pytest.raises(HttpError) as caught:
        cal.events().list(calendarId="primary", syncToken=last["nextSyncToken"], singleEvents=True).execute()
    assert_google_error(caught.value, 410, "fullSyncRequired")


def test_the_adapters_gap_listing_by_updated_min_includes_cancelled_events_outside_any_window(cal):
    since = rfc3339(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10))
    far = new_id()
    cal.events().insert(calendarId="primary", body=event_body(far, day=200)).execute()
    cal.events().delete(calendarId="primary", eventId=far).execute()
    items, _, last = list_all(cal, updatedMin=since, singleEvents=True, showDeleted=True, maxResults=250)
    assert [e["status"] for e in items if e["id"] == far] == ["cancelled"]
    assert last["nextSyncToken"]


def test_max_results_below_the_documented_minimum_is_400(cal):
    minimum = int(DISCOVERY["resources"]["events"]["methods"]["list"]["parameters"]["maxResults"]["minimum"])
    with pytest.raises(HttpError) as caught:
        cal.events().list(calendarId="primary", maxResults=minimum - 1).execute()
    assert caught.value.resp.status == 400


# --- patch / update / delete with If-Match ------------------------------------------------------


def test_patch_with_a_stale_if_match_is_412_condition_not_met_and_with_the_current_etag_succeeds(cal):
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id)).execute()
    first = cal.events().patch(calendarId="primary", eventId=event_id, body={"summary": "One"}).execute()
    assert first["etag"] != created["etag"]
    stale = with_if_match(cal.events().patch(calendarId="primary", eventId=event_id, body={"summary": "Two"}), created["etag"])
    with pytest.raises(HttpError) as caught:
        stale.execute()
    assert_google_error(caught.value, 412, "conditionNotMet")
    fresh = with_if_match(cal.events().patch(calendarId="primary", eventId=event_id, body={"summary": "Two"}), first["etag"])
    patched = fresh.execute()
    assert_schema(patched, "Event")
    assert patched["summary"] == "Two"
    assert patched["attendees"] == created["attendees"]


def test_patch_with_null_clears_the_property_and_the_event_no_longer_carries_it(cal):
    event_id = new_id()
    cal.events().insert(calendarId="primary", body=event_body(event_id, location="Room 4", description="Agenda")).execute()
    patched = cal.events().patch(calendarId="primary", eventId=event_id, body={"location": None, "description": None}).execute()
    assert_schema(patched, "Event")
    assert "location" not in patched and "description" not in patched
    assert "location" not in cal.events().get(calendarId="primary", eventId=event_id).execute()


def test_patch_of_an_unknown_event_is_404_not_found(cal):
    with pytest.raises(HttpError) as caught:
        cal.events().patch(calendarId="primary", eventId=new_id(), body={"summary": "x"}).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_update_replaces_the_event_and_honours_if_match(cal):
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id, location="Room 4")).execute()
    replacement = event_body(summary="Replaced")
    del replacement["attendees"]
    updated = with_if_match(cal.events().update(calendarId="primary", eventId=event_id, body=replacement), created["etag"]).execute()
    assert_schema(updated, "Event")
    assert updated["summary"] == "Replaced"
    assert "location" not in updated and "attendees" not in updated
    with pytest.raises(HttpError) as caught:
        with_if_match(cal.events().update(calendarId="primary", eventId=event_id, body=replacement), created["etag"]).execute()
    assert_google_error(caught.value, 412, "conditionNotMet")


def test_delete_with_a_stale_if_match_is_412_then_it_deletes_and_a_second_delete_is_410_deleted(cal):
    event_id = new_id()
    created = cal.events().insert(calendarId="primary", body=event_body(event_id)).execute()
    cal.events().patch(calendarId="primary", eventId=event_id, body={"summary": "Edited"}).execute()
    with pytest.raises(HttpError) as caught:
        with_if_match(cal.events().delete(calendarId="primary", eventId=event_id), created["etag"]).execute()
    assert_google_error(caught.value, 412, "conditionNotMet")
    current = cal.events().get(calendarId="primary", eventId=event_id).execute()
    assert with_if_match(cal.events().delete(calendarId="primary", eventId=event_id), current["etag"]).execute() == ""
    cancelled = cal.events().get(calendarId="primary", eventId=event_id).execute()
    assert_schema(cancelled, "Event")
    assert cancelled["status"] == "cancelled"
    with pytest.raises(HttpError) as caught:
        cal.events().delete(calendarId="primary", eventId=event_id).execute()
    assert_google_error(caught.value, 410, "deleted")


# --- push channels ------------------------------------------------------------------------------


def test_watch_opens_a_channel_capped_at_a_week_and_channels_stop_closes_it_once(cal):
    week = dt.timedelta(days=7)
    asked = int((dt.datetime.now(dt.timezone.utc) + 2 * week).timestamp() * 1000)
    body = {
        "id": "6f1c2a8e-8a8e-4c55-9d0b-5f7f6a1d3c21",
        "type": "web_hook",
        "address": "https://hooks.example.invalid/webhooks/google",
        "token": "channel-secret",
        "expiration": str(asked),
    }
    channel = cal.events().watch(calendarId="primary", body=body).execute()
    assert_schema(channel, "Channel")
    assert channel["id"] == body["id"] and channel["token"] == "channel-secret"
    assert channel["resourceId"] and channel["resourceUri"]
    expiration = int(channel["expiration"])
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    assert now_ms < expiration <= now_ms + int(week.total_seconds() * 1000) + 5_000
    stop = {"id": channel["id"], "resourceId": channel["resourceId"]}
    assert cal.channels().stop(body=stop).execute() == ""
    with pytest.raises(HttpError) as caught:
        cal.channels().stop(body=stop).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_watch_refuses_a_plain_http_address_that_is_not_loopback(cal):
    body = {"id": "a2b5c7d9-0000-4000-8000-000000000001", "type": "web_hook", "address": "http://hooks.example.invalid/g"}
    with pytest.raises(HttpError) as caught:
        cal.events().watch(calendarId="primary", body=body).execute()
    assert_google_error(caught.value, 400, "push.webhookUrlNotHttps")
