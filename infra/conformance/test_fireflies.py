"""The Fireflies fake driven by `gql` (Fireflies publishes no SDK; its API is GraphQL at
https://api.fireflies.ai/graphql, https://docs.fireflies.ai/getting-started/introduction).

The client holds the schema we wrote from Fireflies' documentation
(infra/fakes/specs/fireflies.graphql), so every query is validated client-side before it is sent:
the queries the Rust adapter sends (read from its source) must validate, and the fake's introspected
schema must agree with the held one for every type the adapter reads. Then the fake is checked
against Fireflies' documented behaviour: a stock account (one user, no transcripts), newest-first
paging with `limit` (at most 50) and `skip`, `fromDate`/`toDate` windows, the error body (`code`,
`extensions.status`, `metadata`), `auth_failed`, `object_not_found`, `too_many_requests` with
`retryAfter`, transcripts invisible while processing, deletes, and the webhook signed with
`x-hub-signature`.
"""

import datetime
import hashlib
import hmac
import http.server
import json
import os
import pathlib
import re
import threading

import pytest
import requests
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from graphql import GraphQLError, build_schema, parse, validate

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = pathlib.Path(os.environ.get("SYNCBRIDGE_SPECS_DIR", ROOT / "infra" / "fakes" / "specs"))
SDL = (SPECS / "fireflies.graphql").read_text()
ADAPTER = ROOT / "shared" / "src" / "adapters" / "fireflies"
KEY = "ff_fake_fireflies"
OWNER = "ada@acme.example"


def adapter_queries():
    """Every GraphQL document in the adapter's source (string literals that start with `query`)."""
    found = []
    for path in sorted(ADAPTER.glob("*.rs")):
        for m in re.finditer(r'"(query [^"]*)"', path.read_text()):
            found.append((path.name, m.group(1).replace('\\"', '"')))
    return found


@pytest.fixture(scope="module")
def fake(start_fake):
    return start_fake("fake-fireflies", "--api-key", KEY)


def client(fake, key=KEY, schema=SDL):
    transport = RequestsHTTPTransport(url=f"{fake.base_url}/graphql", headers={"Authorization": f"Bearer {key}"})
    return Client(transport=transport, schema=schema)


def run(c, query, **variables):
    request = gql(query)
    request.variable_values = variables or None
    return c.execute(request)


def admin(fake, method, path, body=None):
    r = requests.request(method, f"{fake.base_url}/_admin{path}", json=body, timeout=10)
    assert r.status_code < 300, r.text
    return r.json() if r.content else None


def add(fake, title, hours_ago, **extra):
    date = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours_ago)
    body = {"title": title, "date": date.isoformat().replace("+00:00", "Z"), "duration": 30.0, **extra}
    return admin(fake, "POST", "/transcripts", body)["id"]


def error_of(exc):
    errors = exc.value.errors
    assert errors, exc.value
    return errors[0]


def test_the_adapters_queries_validate_against_the_schema_we_hold():
    schema = build_schema(SDL)
    queries = adapter_queries()
    assert len(queries) >= 3, queries
    for name, q in queries:
        errors = validate(schema, parse(q))
        assert not errors, f"{name}: {errors}"


def test_client_side_validation_refuses_what_fireflies_does_not_have(fake):
    with pytest.raises(GraphQLError):
        run(client(fake), "{ transcripts { id no_such_field } }")
    with pytest.raises(GraphQLError):
        run(client(fake), "{ transcripts(limit: \"fifty\") { id } }")


def test_the_fakes_introspected_schema_agrees_with_the_held_one(fake):
    c = client(fake, schema=None)
    c.transport = RequestsHTTPTransport(url=f"{fake.base_url}/graphql", headers={"Authorization": f"Bearer {KEY}"})
    c.fetch_schema_from_transport = True
    with c as session:
        live = session.client.schema
    held = build_schema(SDL)
    for name in ["Transcript", "Summary", "MeetingAttendee", "User", "Query"]:
        ours, theirs = live.type_map[name], held.type_map[name]
        assert set(ours.fields) == set(theirs.fields), name
        for field, f in theirs.fields.items():
            assert str(ours.fields[field].type) == str(f.type), f"{name}.{field}"
            assert {a: str(t.type) for a, t in f.args.items()} == {
                a: str(t.type) for a, t in ours.fields[field].args.items()
            }, f"{name}.{field} arguments"


def test_a_new_account_has_its_owner_and_no_transcripts(fake):
    data = run(client(fake), "{ user { user_id email name num_transcripts } transcripts { id } }")
    assert data["user"]["email"] == OWNER
    assert data["transcripts"] == []


def test_a_wrong_key_is_auth_failed(fake):
    with pytest.raises(TransportQueryError) as exc:
        run(client(fake, key="wrong"), "{ user { email } }")
    e = error_of(exc)
    assert e["code"] == "auth_failed" and e["extensions"]["status"] == 401, e


def test_transcripts_are_newest_first_and_paged_by_limit_and_skip(fake):
    admin(fake, "POST", "/seed", {"count": 60})
    c = client(fake)
    q = "query($limit: Int, $skip: Int) { transcripts(limit: $limit, skip: $skip) { id title date dateString } }"
    first = run(c, q, limit=50, skip=0)["transcripts"]
    rest = run(c, q, limit=50, skip=50)["transcripts"]
    assert (len(first), len(rest)) == (50, 10)
    dates = [t["date"] for t in first + rest]
    assert dates == sorted(dates, reverse=True), "newest first"
    assert isinstance(first[0]["date"], float) and first[0]["date"] > 1.7e12, "epoch milliseconds"
    assert first[0]["dateString"].endswith("Z")
    assert len({t["id"] for t in first + rest}) == 60


def test_limit_above_fifty_is_invalid_arguments_naming_limit(fake):
    with pytest.raises(TransportQueryError) as exc:
        run(client(fake), "{ transcripts(limit: 51) { id } }")
    e = error_of(exc)
    assert e["code"] == "invalid_arguments" and e["extensions"]["status"] == 400, e
    assert e["extensions"]["metadata"]["fields"][0]["name"] == "limit"
    assert e["friendly"] is True


def test_a_date_window_keeps_the_meetings_inside_it(fake):
    now = datetime.datetime.now(datetime.timezone.utc)
    iso = lambda d: d.isoformat().replace("+00:00", "Z")  # noqa: E731
    q = "query($f: DateTime, $t: DateTime) { transcripts(fromDate: $f, toDate: $t, limit: 50) { title } }"
    data = run(client(fake), q, f=iso(now - datetime.timedelta(hours=7)), t=iso(now - datetime.timedelta(hours=3)))
    assert sorted(t["title"] for t in data["transcripts"]) == ["Meeting 2", "Meeting 3"]


def test_a_bad_date_and_two_owner_filters_at_once_are_invalid_arguments(fake):
    with pytest.raises(TransportQueryError) as exc:
        run(client(fake), '{ transcripts(fromDate: "last week") { id } }')
    assert error_of(exc)["extensions"]["metadata"]["fields"][0]["constraints"][0]["type"] == "isDate"
    with pytest.raises(TransportQueryError) as exc:
        run(client(fake), '{ transcripts(mine: true, participant_email: "a@b.example") { id } }')
    assert error_of(exc)["code"] == "invalid_arguments"


def test_an_unknown_transcript_is_object_not_found(fake):
    with pytest.raises(TransportQueryError) as exc:
        run(client(fake), 'query($id: String!) { transcript(id: $id) { id } }', id="nope")
    e = error_of(exc)
    assert e["code"] == "object_not_found" and e["extensions"]["status"] == 404, e


def test_a_meeting_is_invisible_while_processing_and_its_summary_reads_once_done(fake):
    items = "**Ada Lovelace**\nSend the proposal (01:10)"
    mid = add(fake, "Kickoff", 30, processing=True, summary={"overview": "Intro.", "action_items": items})
    c = client(fake)
    one = "query($id: String!) { transcript(id: $id) { id title duration summary { overview action_items } } }"
    with pytest.raises(TransportQueryError):
        run(c, one, id=mid)
    admin(fake, "POST", f"/transcripts/{mid}/complete")
    t = run(c, one, id=mid)["transcript"]
    assert (t["title"], t["duration"], t["summary"]["action_items"]) == ("Kickoff", 30.0, items)


def test_a_meeting_names_its_calendar_event_and_the_calendar_it_came_from(fake):
    # Transcript.calendar_id / cal_id / calendar_type (https://docs.fireflies.ai/schema/transcript).
    uid = "040000008200E00074C5B7101A82E00800000000D0F2"
    outlook = add(fake, "Renewal", 2, calendar_id=uid, calendar_type="outlook")
    google = add(fake, "Kickoff", 2, calendar_id="gcal42")
    c = client(fake)
    one = "query($id: String!) { transcript(id: $id) { calendar_id cal_id calendar_type } }"
    assert run(c, one, id=outlook)["transcript"] == {"calendar_id": uid, "cal_id": uid, "calendar_type": "outlook"}
    assert run(c, one, id=google)["transcript"] == {"calendar_id": "gcal42", "cal_id": "gcal42", "calendar_type": "google"}


def test_a_deleted_meeting_disappears_from_every_query(fake):
    mid = add(fake, "Gone soon", 1)
    c = client(fake)
    ids = lambda: {t["id"] for t in run(c, "{ transcripts(limit: 50) { id } }")["transcripts"]}  # noqa: E731
    assert mid in ids()
    admin(fake, "DELETE", f"/transcripts/{mid}")
    assert mid not in ids()


def test_the_transcription_completed_webhook_is_signed_with_the_secret(fake):
    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers.get("x-hub-signature"), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = "a-secret-of-20-chars"
    admin(fake, "POST", "/webhook", {"url": f"http://127.0.0.1:{server.server_port}/hook", "secret": secret})
    mid = add(fake, "Hooked", 1, processing=True)
    answer = admin(fake, "POST", f"/transcripts/{mid}/complete")
    server.shutdown()
    assert answer["webhook_status"] == 200
    signature, body = received[0]
    assert signature == hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body) == {"meetingId": mid, "eventType": "Transcription completed", "clientReferenceId": None}
    admin(fake, "DELETE", "/webhook")


def test_past_the_rate_limit_queries_get_too_many_requests_with_retry_after(fake):
    admin(fake, "POST", "/rate-limits", {"enabled": True, "limit": 2, "window_secs": 60})
    c = client(fake)
    try:
        run(c, "{ user { email } }")
        run(c, "{ user { email } }")
        with pytest.raises(TransportQueryError) as exc:
            run(c, "{ user { email } }")
        e = error_of(exc)
        assert e["code"] == "too_many_requests" and e["extensions"]["status"] == 429, e
        now_ms = datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000
        assert e["extensions"]["metadata"]["retryAfter"] > now_ms
    finally:
        admin(fake, "POST", "/rate-limits", {"enabled": False})
