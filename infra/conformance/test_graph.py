"""The Microsoft Graph fake driven by Microsoft's own SDK (msgraph-sdk, on kiota).

The SDK's `GraphServiceClient` runs on a `GraphRequestAdapter` whose base URL is the fake's `/v1.0`,
authenticated by a static bearer token through kiota's `BaseBearerTokenAuthenticationProvider`
(kiota's own provider checks no scheme; only the Azure identity provider insists on https, and it
is not used here). Every answer must parse into the SDK's models, and is checked against the
OpenAPI subset of Graph v1.0 in `infra/fakes/specs` by `check_schema` below (types, formats,
enums, nullability, no property the schema lacks). Error bodies are read raw (httpx) to check
their shape. The fake starts as a new, stock mailbox (`--events 0`); each test makes its events.

Covered: what `shared/src/adapters/graph/` sends (`me/calendarView/delta` with
`startDateTime`/`endDateTime` and two `Prefer` headers, `@odata.nextLink` paging to an
`@odata.deltaLink`, `@removed`, 410 after the sync state is gone; `POST me/events` with
`transactionId`; `GET`, `PATCH` and `DELETE me/events/{id}` with `If-Match`; `subscriptions`
create / patch / delete with the validation handshake) plus `GET me` and Graph's error bodies.
"""

import asyncio
import datetime as dt
import http.server
import json
import os
import pathlib
import re
import threading
import urllib.parse
import uuid

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.attendee import Attendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder

SPECS = pathlib.Path(os.environ.get("SYNCBRIDGE_SPECS_DIR", pathlib.Path(__file__).parents[1] / "fakes" / "specs"))
OPENAPI = json.loads((SPECS / "graph-v1.0-calendar-subset.json").read_text())
SCHEMAS = OPENAPI["components"]["schemas"]
TOKEN = "graph-fake-token"
# Graph's limit for Outlook resources (events): https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime
MAX_SUBSCRIPTION_MINUTES = 4230

# --- a schema checker driven by the OpenAPI description ----------------------------------------

DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
NAIVE_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def resolve(schema):
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def flatten(schema):
    """An object schema with its `allOf` parts merged: (properties, required)."""
    schema = resolve(schema)
    props, required = {}, set()
    for part in schema.get("allOf", []):
        p, r = flatten(part)
        props.update(p)
        required |= r
    props.update(schema.get("properties", {}))
    required |= set(schema.get("required", []))
    return props, required


def check_schema(value, schema, path="$", errors=None):
    """Every way `value` departs from an OpenAPI schema (a component name or a schema), as strings."""
    errors = [] if errors is None else errors
    schema = resolve(SCHEMAS[schema] if isinstance(schema, str) else schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = schema[key]
            if value is None and any(resolve(o).get("nullable") for o in options):
                return errors
            attempts = [check_schema(value, o, path, []) for o in options]
            if all(attempts):
                errors.extend(min(attempts, key=len))
            return errors
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null where the schema does not allow it")
        return errors
    kind = schema.get("type") or ("object" if "allOf" in schema or "properties" in schema else None)
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return errors
        props, required = flatten(schema)
        # The OpenAPI conversion marks complex types' `@odata.type` required; Graph omits it.
        for name in required - {"@odata.type"} - set(value):
            errors.append(f"{path}.{name}: required but absent")
        lower = {k.lower(): k for k in props}
        for key, item in value.items():
            # OData instance annotations (`@odata.etag`, `@removed`, ...) may ride on any object.
            if key.startswith("@") and key not in props:
                continue
            # The description spells `innererror` where Graph (and the SDK's model) say `innerError`.
            name = key if key in props else lower.get(key.lower())
            if name is None:
                errors.append(f"{path}.{key}: not a property of {schema.get('title', 'this object')}")
            else:
                check_schema(item, props[name], f"{path}.{key}", errors)
    elif kind == "array":
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array, got {value!r}")
        else:
            for i, item in enumerate(value):
                check_schema(item, schema.get("items", {}), f"{path}[{i}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
            return errors
        fmt = schema.get("format")
        # Graph stamps `innerError.date` without a zone ("2024-05-01T10:00:00", UTC), which the
        # description's pattern does not allow; the SDK's InnerError parses it either way.
        naive_ok = path.endswith(".innerError.date") and NAIVE_DATE_TIME.match(value)
        if fmt == "date-time" and not DATE_TIME.match(value) and not naive_ok:
            errors.append(f"{path}: {value!r} is not a date-time")
        if fmt == "uuid" and not UUID.match(value):
            errors.append(f"{path}: {value!r} is not a uuid")
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    elif kind == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: expected a boolean, got {value!r}")
    elif kind in ("integer", "number") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        errors.append(f"{path}: expected a number, got {value!r}")
    return errors


def response_schema(path, method, status="2XX"):
    """The schema the description gives for an operation's answer."""
    response = OPENAPI["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def assert_schema(value, schema):
    errors = check_schema(value, schema)
    assert not errors, "\n".join(errors)


def assert_graph_error(response, status, code):
    """Graph's error body: {"error": {"code", "message", "innerError": {date, request-id, ...}}}."""
    assert response.status_code == status
    body = response.json()
    assert_schema(body, response_schema("/me/events", "post", "4XX" if status < 500 else "5XX"))
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    inner = body["error"]["innerError"]
    assert inner["request-id"] and inner["date"]
    assert response.headers.get("request-id") == inner["request-id"]
    return body["error"]


# --- the SDK, pointed at the fake ----------------------------------------------------------------


class StaticToken(AccessTokenProvider):
    """The fake's static token for every request (no Azure identity involved)."""

    async def get_authorization_token(self, uri, additional_authentication_context=None):
        return TOKEN

    def get_allowed_hosts_validator(self):
        return AllowedHostsValidator(["127.0.0.1"])


def sdk(base):
    """A GraphServiceClient on the fake; made per event loop (kiota's httpx client is loop-bound)."""
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticToken()))
    adapter.base_url = base + "/v1.0"
    return GraphServiceClient(request_adapter=adapter)


def run(coroutine_fn, base):
    return asyncio.run(coroutine_fn(sdk(base)))


def raw(base, method, path, token=TOKEN, **kwargs):
    """A plain request, to read bodies the SDK turns into exceptions or models."""
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = path if path.startswith("http") else f"{base}/v1.0/{path}"
    return httpx.request(method, url, headers=headers, timeout=20, **kwargs)


@pytest.fixture(scope="module")
def base(start_fake):
    return start_fake("fake-graph", "--events", "0").base_url


class Receiver(http.server.BaseHTTPRequestHandler):
    """A notification endpoint: echoes Graph's `validationToken` as text/plain (or refuses)."""

    refuse = False

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        token = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("validationToken")
        if token and not self.refuse:
            body = token[0].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(202 if not token else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def day(offset, hour=0):
    base = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return base + dt.timedelta(days=offset, hours=hour)


def graph_time(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def new_event(subject, start, minutes=30, transaction_id=None):
    """An event as our adapter writes one: UTC `dateTime`s, `timeZone: UTC`, required attendees."""
    return Event(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content="Agenda"),
        start=DateTimeTimeZone(date_time=graph_time(start), time_zone="UTC"),
        end=DateTimeTimeZone(date_time=graph_time(start + dt.timedelta(minutes=minutes)), time_zone="UTC"),
        location=Location(display_name="Room 4"),
        attendees=[
            Attendee(email_address=EmailAddress(address="pat.lee@fabrikam.example"), type=AttendeeType.Required)
        ],
        transaction_id=transaction_id,
    )


def headers_config(**headers):
    config = RequestConfiguration()
    for name, value in headers.items():
        config.headers.add(name.replace("_", "-"), value)
    return config


def delta_config(start, end, page_size):
    """The adapter's first delta request: the window and its two `Prefer` headers."""
    params = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        start_date_time=start.strftime("%Y-%m-%dT%H:%M:%SZ"), end_date_time=end.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    config = RequestConfiguration(query_parameters=params)
    config.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    config.headers.add("Prefer", 'outlook.timezone="UTC"')
    return config


async def delta_round(client, first_config, link=None, page_size=2):
    """Follows a delta round to its end: (events, pages, delta link)."""
    builder = client.me.calendar_view.delta
    pages, events = [], []
    page = await (builder.with_url(link).get(headers_only(page_size)) if link else builder.get(first_config))
    while True:
        pages.append(page)
        events.extend(page.value or [])
        if page.odata_next_link:
            page = await builder.with_url(page.odata_next_link).get(headers_only(page_size))
        else:
            assert page.odata_delta_link
            return events, pages, page.odata_delta_link


def headers_only(page_size):
    config = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    config.headers.add("Prefer", 'outlook.timezone="UTC"')
    return config


# --- me ------------------------------------------------------------------------------------------


def test_me_parses_into_the_sdks_user_with_the_default_properties(base):
    async def go(client):
        return await client.me.get()

    user = run(go, base)
    assert user.id and user.mail and user.user_principal_name and user.display_name
    body = raw(base, "GET", "me").json()
    default_select = {"businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                      "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id"}
    assert default_select <= set(body)


def test_a_request_without_a_valid_token_is_401_invalid_authentication_token(base):
    assert_graph_error(raw(base, "GET", "me", token=None), 401, "InvalidAuthenticationToken")
    assert_graph_error(raw(base, "GET", "me", token="not-issued"), 401, "InvalidAuthenticationToken")

    async def go(client):
        client.request_adapter._authentication_provider.access_token_provider.get_authorization_token = _bad
        return await client.me.get()

    with pytest.raises(ODataError) as caught:
        run(go, base)
    assert caught.value.response_status_code == 401
    assert caught.value.error.code == "InvalidAuthenticationToken"


async def _bad(*args, **kwargs):
    return "not-issued"


# --- events --------------------------------------------------------------------------------------


def test_creating_an_event_returns_201_with_the_event_in_graphs_shape(base):
    async def go(client):
        return await client.me.events.post(new_event("Intro call", day(1, 9)))

    created = run(go, base)
    assert created.id and created.change_key and created.transaction_id is None
    assert created.start.time_zone == "UTC" and created.start.date_time.startswith(graph_time(day(1, 9)))
    body = raw(base, "GET", f"me/events/{created.id}").json()
    assert_schema(body, response_schema("/me/events/{event-id}", "get"))
    assert body["@odata.etag"] == f'W/"{created.change_key}"'


def test_each_event_carries_its_own_ical_uid_and_reads_it_back_unchanged(base):
    # iCalUId: read-only, unique across calendars, one per occurrence
    # (https://learn.microsoft.com/en-us/graph/api/resources/event?view=graph-rest-1.0#properties).
    async def go(client):
        first = await client.me.events.post(new_event("UID one", day(3, 9)))
        second = await client.me.events.post(new_event("UID two", day(3, 11)))
        fetched = await client.me.events.by_event_id(first.id).get()
        return first, second, fetched

    first, second, fetched = run(go, base)
    assert first.i_cal_u_id and second.i_cal_u_id and first.i_cal_u_id != second.i_cal_u_id
    assert fetched.i_cal_u_id == first.i_cal_u_id


def test_a_create_retried_with_the_same_transaction_id_returns_the_first_event(base):
    transaction = f"syncbridge-{uuid.uuid4().hex}"

    async def go(client):
        first = await client.me.events.post(new_event("Demo", day(2, 10), transaction_id=transaction))
        second = await client.me.events.post(new_event("Demo", day(2, 10), transaction_id=transaction))
        return first, second

    first, second = run(go, base)
    assert first.transaction_id == transaction
    assert second.id == first.id


def test_get_of_an_event_parses_and_an_unknown_id_is_404_error_item_not_found(base):
    async def go(client):
        created = await client.me.events.post(new_event("Pipeline review", day(1, 11)))
        fetched = await client.me.events.by_event_id(created.id).get()
        return created, fetched

    created, fetched = run(go, base)
    assert fetched.id == created.id and fetched.subject == "Pipeline review"
    assert [a.email_address.address for a in fetched.attendees] == ["pat.lee@fabrikam.example"]
    unknown = "AAMkAGZha2UtZ3JhcGgARgAAA999999deadbeefAAA="
    assert_graph_error(raw(base, "GET", f"me/events/{unknown}"), 404, "ErrorItemNotFound")

    async def missing(client):
        return await client.me.events.by_event_id(unknown).get()

    with pytest.raises(ODataError) as caught:
        run(missing, base)
    assert caught.value.response_status_code == 404
    assert caught.value.error.code == "ErrorItemNotFound"


def test_patch_with_a_stale_if_match_is_412_and_with_the_current_etag_succeeds(base):
    async def go(client):
        created = await client.me.events.post(new_event("1:1", day(1, 13)))
        stale = f'W/"{created.change_key}"'
        first = await client.me.events.by_event_id(created.id).patch(Event(subject="Moved 1:1"))
        try:
            await client.me.events.by_event_id(created.id).patch(Event(subject="Lost"), headers_config(If_Match=stale))
        except ODataError as e:
            refused = e
        else:
            refused = None
        fresh = f'W/"{first.change_key}"'
        second = await client.me.events.by_event_id(created.id).patch(Event(subject="Kept"), headers_config(If_Match=fresh))
        return created, first, refused, second

    created, first, refused, second = run(go, base)
    assert first.change_key != created.change_key
    assert refused is not None and refused.response_status_code == 412
    assert refused.error.code == "ErrorIrresolvableConflict"
    assert second.subject == "Kept" and second.location.display_name == "Room 4"
    stale = f'W/"{created.change_key}"'
    response = raw(base, "PATCH", f"me/events/{created.id}", json={"subject": "x"}, headers={"If-Match": stale})
    assert_graph_error(response, 412, "ErrorIrresolvableConflict")


def test_delete_with_a_stale_if_match_is_412_then_204_and_a_second_delete_is_404(base):
    async def go(client):
        created = await client.me.events.post(new_event("Contract review", day(1, 15)))
        edited = await client.me.events.by_event_id(created.id).patch(Event(subject="Contract review v2"))
        return created, edited

    created, edited = run(go, base)
    stale = raw(base, "DELETE", f"me/events/{created.id}", headers={"If-Match": f'W/"{created.change_key}"'})
    assert_graph_error(stale, 412, "ErrorIrresolvableConflict")

    async def delete(client):
        config = headers_config(If_Match=f'W/"{edited.change_key}"')
        return await client.me.events.by_event_id(created.id).delete(config)

    assert run(delete, base) is None
    assert_graph_error(raw(base, "DELETE", f"me/events/{created.id}"), 404, "ErrorItemNotFound")


def test_an_event_ending_before_it_starts_is_400(base):
    body = {
        "subject": "Backwards",
        "start": {"dateTime": graph_time(day(1, 10)), "timeZone": "UTC"},
        "end": {"dateTime": graph_time(day(1, 9)), "timeZone": "UTC"},
    }
    response = raw(base, "POST", "me/events", json=body)
    assert response.status_code == 400
    assert_schema(response.json(), "microsoft.graph.ODataErrors.ODataError")


# --- delta ---------------------------------------------------------------------------------------


def test_a_delta_round_pages_by_odata_maxpagesize_and_ends_with_a_delta_link(base):
    start, end = day(30), day(31)

    async def go(client):
        ids = []
        for hour in (8, 9, 10, 11, 12):
            ids.append((await client.me.events.post(new_event(f"Slot {hour}", day(30, hour)))).id)
        await client.me.events.post(new_event("Outside the window", day(33, 9)))
        events, pages, delta_link = await delta_round(client, delta_config(start, end, 2))
        return ids, events, pages, delta_link

    ids, events, pages, delta_link = run(go, base)
    assert sorted(e.id for e in events) == sorted(ids)
    assert [len(p.value) for p in pages] == [2, 2, 1]
    assert all(p.odata_next_link and not p.odata_delta_link for p in pages[:-1])
    assert "$deltatoken=" in delta_link
    first = raw(base, "GET", "me/calendarView/delta", params={
        "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")
    }, headers={"Prefer": "odata.maxpagesize=2"})
    assert first.status_code == 200
    body = first.json()
    assert_schema(body, response_schema("/me/calendarView/delta", "get"))
    assert "$skiptoken=" in body["@odata.nextLink"]
    for item in body["value"]:
        assert_schema(item, "microsoft.graph.event")


def test_the_delta_link_returns_the_changes_since_with_removed_entries(base):
    start, end = day(40), day(41)

    async def go(client):
        kept = await client.me.events.post(new_event("Kept", day(40, 9)))
        edited = await client.me.events.post(new_event("To edit", day(40, 10)))
        deleted = await client.me.events.post(new_event("To delete", day(40, 11)))
        _, _, delta_link = await delta_round(client, delta_config(start, end, 10))
        await client.me.events.by_event_id(edited.id).patch(Event(subject="Edited"))
        await client.me.events.by_event_id(deleted.id).delete()
        added = await client.me.events.post(new_event("Added", day(40, 12)))
        changes, _, next_delta = await delta_round(client, None, link=delta_link, page_size=10)
        again, _, _ = await delta_round(client, None, link=next_delta, page_size=10)
        return kept, edited, deleted, added, changes, again

    kept, edited, deleted, added, changes, again = run(go, base)
    by_id = {e.id: e for e in changes}
    assert set(by_id) == {edited.id, deleted.id, added.id}
    assert by_id[edited.id].subject == "Edited"
    assert by_id[deleted.id].additional_data.get("@removed") == {"reason": "deleted"}
    assert by_id[added.id].subject == "Added"
    assert again == []


def test_a_delta_request_without_a_window_is_400(base):
    response = raw(base, "GET", "me/calendarView/delta")
    assert response.status_code == 400
    assert_schema(response.json(), "microsoft.graph.ODataErrors.ODataError")


def test_a_delta_link_whose_sync_state_is_gone_is_410_and_a_new_round_works(base):
    start, end = day(50), day(51)

    async def first_round(client):
        await client.me.events.post(new_event("Before", day(50, 9)))
        return await delta_round(client, delta_config(start, end, 10))

    _, _, delta_link = run(first_round, base)
    assert httpx.post(f"{base}/_admin/sync-state/expire").status_code == 204
    response = raw(base, "GET", delta_link)
    assert_graph_error(response, 410, "syncStateNotFound")

    async def again(client):
        try:
            await client.me.calendar_view.delta.with_url(delta_link).get()
        except ODataError as e:
            gone = e
        events, _, _ = await delta_round(client, delta_config(start, end, 10))
        return gone, events

    gone, events = run(again, base)
    assert gone.response_status_code == 410
    assert [e.subject for e in events] == ["Before"]


# --- subscriptions -------------------------------------------------------------------------------


def subscription(receiver, minutes, client_state="sb-secret"):
    return Subscription(
        change_type="created,updated,deleted",
        notification_url=f"{receiver}/webhooks/microsoft",
        lifecycle_notification_url=f"{receiver}/webhooks/microsoft",
        resource="me/events",
        expiration_date_time=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=minutes),
        client_state=client_state,
    )


def test_a_subscription_is_created_after_the_validation_handshake_renewed_and_deleted(base, receiver):
    async def go(client):
        created = await client.subscriptions.post(subscription(receiver, MAX_SUBSCRIPTION_MINUTES - 1))
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=MAX_SUBSCRIPTION_MINUTES - 2)
        renewed = await client.subscriptions.by_subscription_id(created.id).patch(Subscription(expiration_date_time=later))
        await client.subscriptions.by_subscription_id(created.id).delete()
        return created, renewed

    created, renewed = run(go, base)
    assert UUID.match(created.id)
    assert created.resource == "me/events" and created.client_state == "sb-secret"
    assert renewed.id == created.id
    assert renewed.expiration_date_time < created.expiration_date_time
    assert_graph_error(raw(base, "DELETE", f"subscriptions/{created.id}"), 404, "ResourceNotFound")


def test_a_subscription_answer_matches_graphs_subscription_schema(base, receiver):
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{receiver}/webhooks/microsoft",
        "resource": "me/events",
        "expirationDateTime": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "clientState": "sb-secret",
    }
    response = raw(base, "POST", "subscriptions", json=body)
    assert response.status_code == 201
    assert_schema(response.json(), response_schema("/subscriptions", "post"))
    assert raw(base, "DELETE", f"subscriptions/{response.json()['id']}").status_code == 204


def test_a_subscription_longer_than_4230_minutes_is_refused_on_create_and_on_renewal(base, receiver):
    async def too_long(client):
        await client.subscriptions.post(subscription(receiver, MAX_SUBSCRIPTION_MINUTES + 5))

    with pytest.raises(ODataError) as caught:
        run(too_long, base)
    assert caught.value.response_status_code == 400

    async def renew(client):
        created = await client.subscriptions.post(subscription(receiver, 60))
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=MAX_SUBSCRIPTION_MINUTES + 5)
        try:
            await client.subscriptions.by_subscription_id(created.id).patch(Subscription(expiration_date_time=later))
        except ODataError as e:
            return e
        finally:
            await client.subscriptions.by_subscription_id(created.id).delete()

    refused = run(renew, base)
    assert refused is not None and refused.response_status_code == 400


def test_a_subscription_whose_endpoint_does_not_echo_the_validation_token_is_400(base, receiver):
    Receiver.refuse = True
    try:
        async def go(client):
            await client.subscriptions.post(subscription(receiver, 60))

        with pytest.raises(ODataError) as caught:
            run(go, base)
        body = {
            "changeType": "created", "notificationUrl": f"{receiver}/webhooks/microsoft", "resource": "me/events",
            "expirationDateTime": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        response = raw(base, "POST", "subscriptions", json=body)
    finally:
        Receiver.refuse = False
    assert caught.value.response_status_code == 400
    assert caught.value.error.code == "ValidationError"
    error = assert_graph_error(response, 400, "ValidationError")
    assert error["message"].startswith("Subscription validation request failed.")
