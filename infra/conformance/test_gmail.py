"""The Gmail fake driven by Google's own client (google-api-python-client).

The client is built from Google's discovery document for Gmail v1
(`infra/fakes/specs/gmail-v1.discovery.json`, or `SYNCBRIDGE_SPECS_DIR`, else the static copy
inside google-api-python-client) with its root pointed at
the fake; every answer is checked against that document's schemas (types, formats, no property the
schema lacks) by `check_schema` below. The fake starts as a new, stock account: the system labels
and no message (`--messages 0`); each test inserts the mail it needs with `users.messages.insert`.

Covered: what `shared/src/adapters/gmail/` sends (`getProfile`; `messages.list` with `maxResults`
and `pageToken`; `messages.get` with `format=metadata` and `metadataHeaders`; `history.list` with
`startHistoryId` and `historyTypes`, and its 404 past the history horizon; `messages.modify`;
`users.watch` and `users.stop`) plus `messages.insert`, the other formats, `batchModify` and its
1000-id limit, `threads.list/get`, `labels.list/create`, the scopes (`gmail.metadata` refuses
bodies and `q`, `gmail.readonly` refuses writes), the per-user quota's 429 and Google's error body.
"""

import base64
import copy
import json
import os
import pathlib
import re
import urllib.request

import google.oauth2.credentials
import httplib2
import pytest
from googleapiclient import discovery_cache
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

SPECS = pathlib.Path(os.environ.get("SYNCBRIDGE_SPECS_DIR", pathlib.Path(__file__).parents[1] / "fakes" / "specs"))


def load_discovery():
    """The spec we hold, else the copy google-api-python-client ships (same revision today)."""
    path = SPECS / "gmail-v1.discovery.json"
    if path.exists():
        return json.loads(path.read_text())
    return json.loads(discovery_cache.get_static_doc("gmail", "v1"))


DISCOVERY = load_discovery()
SCHEMAS = DISCOVERY["schemas"]
TOKEN = "ya29.fake-gmail"
OWNER = "owner@acme.example"
SCOPE = "https://www.googleapis.com/auth/gmail."

# --- a schema checker driven by the discovery document -------------------------------------------


def check_schema(value, schema, path="$", errors=None):
    """Every way `value` departs from a Gmail discovery schema (a name or a schema dict)."""
    errors = [] if errors is None else errors
    if isinstance(schema, str):
        schema = SCHEMAS[schema]
    if "$ref" in schema:
        return check_schema(value, SCHEMAS[schema["$ref"]], path, errors)
    kind = schema.get("type", "any")
    fmt = schema.get("format")
    if value is None:
        errors.append(f"{path}: null (Google omits unset properties)")
    elif kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return errors
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                check_schema(item, props[key], f"{path}.{key}", errors)
            else:
                errors.append(f"{path}.{key}: not a property of {schema.get('id', 'this object')}")
    elif kind == "array":
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array, got {value!r}")
        else:
            for i, item in enumerate(value):
                check_schema(item, schema["items"], f"{path}[{i}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            errors.append(f"{path}: {value!r} is not an {fmt} string")
        elif fmt == "byte" and not re.fullmatch(r"[A-Za-z0-9_\-+/]*=*", value):
            errors.append(f"{path}: {value!r} is not base64")
        elif "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    return errors


def assert_schema(value, schema):
    errors = check_schema(value, schema)
    assert not errors, "\n".join(errors)


def assert_google_error(error, status, reason):
    """Google's JSON error body: {"error": {"code", "message", "errors": [{domain, reason}], "status"}}."""
    assert isinstance(error, HttpError)
    assert error.resp.status == status
    body = json.loads(error.content)
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == status
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["status"], str) and err["status"].isupper()
    first = err["errors"][0]
    assert {"domain", "reason", "message"} <= set(first)
    assert first["reason"] == reason
    return err


# --- fixtures ---------------------------------------------------------------------------------------


def service_for(root, token=TOKEN):
    doc = copy.deepcopy(DISCOVERY)
    doc["rootUrl"] = root + "/"
    doc["mtlsRootUrl"] = root + "/"
    doc["baseUrl"] = root + "/" + doc["servicePath"]
    if token is None:
        return build_from_document(doc, http=httplib2.Http())
    return build_from_document(doc, credentials=google.oauth2.credentials.Credentials(token=token))


def admin(root, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(root + path, data=data, method="POST", headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def token_with(root, *scopes):
    return admin(root, "/_admin/tokens", {"scopes": [SCOPE + s for s in scopes]})["access_token"]


@pytest.fixture(scope="module")
def root(start_fake):
    return start_fake("fake-gmail", "--messages", "0").base_url


@pytest.fixture(scope="module")
def gmail(root):
    return service_for(root)


def rfc822(subject, sender="Jane Doe <jane.doe@globex.example>", to=OWNER, cc=None, body="Hello from Globex."):
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", "Date: Fri, 04 Dec 2026 10:00:00 +0000"]
    if cc:
        lines.append(f"Cc: {cc}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def insert(gmail, subject, labels=("INBOX", "UNREAD"), **kw):
    raw = base64.urlsafe_b64encode(rfc822(subject, **kw).encode()).decode()
    message = gmail.users().messages().insert(userId="me", body={"raw": raw, "labelIds": list(labels)}).execute()
    assert_schema(message, "Message")
    return message


def profile_history_id(gmail):
    profile = gmail.users().getProfile(userId="me").execute()
    assert_schema(profile, "Profile")
    return profile["historyId"]


# --- profile and labels -------------------------------------------------------------------------


def test_get_profile_names_the_owner_and_a_history_id_in_the_discovery_shape(gmail):
    profile = gmail.users().getProfile(userId="me").execute()
    assert_schema(profile, "Profile")
    assert profile["emailAddress"] == OWNER
    assert int(profile["historyId"]) > 0


def test_another_users_mailbox_is_403_forbidden(gmail):
    with pytest.raises(HttpError) as caught:
        gmail.users().getProfile(userId="someone@else.example").execute()
    assert_google_error(caught.value, 403, "forbidden")


def test_a_new_account_lists_the_system_labels_and_a_created_label_is_a_user_label(gmail):
    listed = gmail.users().labels().list(userId="me").execute()
    assert_schema(listed, "ListLabelsResponse")
    system = {l["id"] for l in listed["labels"] if l["type"] == "system"}
    assert {"INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT"} <= system
    assert any(l.startswith("CATEGORY_") for l in system)
    created = gmail.users().labels().create(userId="me", body={"name": "Customers"}).execute()
    assert_schema(created, "Label")
    assert created["type"] == "user" and created["name"] == "Customers" and created["id"] not in system


def test_creating_a_label_whose_name_exists_is_409_aborted(gmail):
    gmail.users().labels().create(userId="me", body={"name": "Partners"}).execute()
    with pytest.raises(HttpError) as caught:
        gmail.users().labels().create(userId="me", body={"name": "partners"}).execute()
    assert_google_error(caught.value, 409, "aborted")
    with pytest.raises(HttpError) as caught:
        gmail.users().labels().create(userId="me", body={"name": "INBOX"}).execute()
    assert_google_error(caught.value, 409, "aborted")


# --- messages -----------------------------------------------------------------------------------


def test_an_inserted_message_comes_back_in_each_format(gmail):
    inserted = insert(gmail, "Pricing question", cc="ann@acme.example")
    assert inserted["labelIds"] == ["INBOX", "UNREAD"]
    mid = inserted["id"]
    minimal = gmail.users().messages().get(userId="me", id=mid, format="minimal").execute()
    assert_schema(minimal, "Message")
    assert "payload" not in minimal and minimal["threadId"] == inserted["threadId"]
    meta = gmail.users().messages().get(
        userId="me", id=mid, format="metadata", metadataHeaders=["From", "Subject", "Cc"]
    ).execute()
    assert_schema(meta, "Message")
    names = {h["name"]: h["value"] for h in meta["payload"]["headers"]}
    assert names == {"From": "Jane Doe <jane.doe@globex.example>", "Subject": "Pricing question", "Cc": "ann@acme.example"}
    assert "data" not in meta["payload"].get("body", {})
    assert meta["snippet"].startswith("Hello from Globex")
    full = gmail.users().messages().get(userId="me", id=mid).execute()
    assert_schema(full, "Message")
    assert base64.urlsafe_b64decode(full["payload"]["body"]["data"]).decode() == "Hello from Globex."
    raw = gmail.users().messages().get(userId="me", id=mid, format="raw").execute()
    assert_schema(raw, "Message")
    assert b"Subject: Pricing question" in base64.urlsafe_b64decode(raw["raw"])


def test_an_insert_without_raw_or_with_an_unknown_label_is_400_invalid_argument(gmail):
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().insert(userId="me", body={"labelIds": ["INBOX"]}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")
    raw = base64.urlsafe_b64encode(rfc822("x").encode()).decode()
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().insert(userId="me", body={"raw": raw, "labelIds": ["Label_404"]}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")


def test_get_of_an_unknown_message_is_404_not_found_with_googles_error_body(gmail):
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().get(userId="me", id="18c0ffffffffffff").execute()
    assert_google_error(caught.value, 404, "notFound")


def test_messages_list_pages_with_page_tokens_without_repeats_and_hides_spam_and_trash(gmail):
    ids = {insert(gmail, f"Paging {i}")["id"] for i in range(5)}
    spam = insert(gmail, "Buy now", labels=("SPAM",))["id"]
    seen, token, pages = [], None, 0
    while True:
        page = gmail.users().messages().list(userId="me", maxResults=2, pageToken=token).execute()
        assert_schema(page, "ListMessagesResponse")
        pages += 1
        seen.extend(m["id"] for m in page.get("messages", []))
        token = page.get("nextPageToken")
        if not token:
            break
    assert ids <= set(seen) and len(seen) == len(set(seen)) and pages >= 3
    assert spam not in seen
    with_spam = gmail.users().messages().list(userId="me", includeSpamTrash=True, maxResults=500).execute()
    assert spam in {m["id"] for m in with_spam["messages"]}
    inbox_only = gmail.users().messages().list(userId="me", labelIds=["SPAM"], includeSpamTrash=True).execute()
    assert [m["id"] for m in inbox_only["messages"]] == [spam]


def test_modify_adds_and_removes_labels_and_refuses_labels_gmail_sets_itself(gmail):
    mid = insert(gmail, "Label me")["id"]
    modified = gmail.users().messages().modify(
        userId="me", id=mid, body={"addLabelIds": ["STARRED"], "removeLabelIds": ["UNREAD"]}
    ).execute()
    assert_schema(modified, "Message")
    assert sorted(modified["labelIds"]) == ["INBOX", "STARRED"]
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().modify(userId="me", id=mid, body={"addLabelIds": ["SENT"]}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().modify(userId="me", id="18c0fffffffffff0", body={"addLabelIds": ["STARRED"]}).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_batch_modify_changes_every_message_and_refuses_more_than_1000_ids(gmail):
    a, b = insert(gmail, "Batch a")["id"], insert(gmail, "Batch b")["id"]
    assert gmail.users().messages().batchModify(userId="me", body={"ids": [a, b], "addLabelIds": ["IMPORTANT"]}).execute() == ""
    for mid in (a, b):
        got = gmail.users().messages().get(userId="me", id=mid, format="minimal").execute()
        assert "IMPORTANT" in got["labelIds"]
    too_many = [f"{i:016x}" for i in range(1001)]
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().batchModify(userId="me", body={"ids": too_many, "addLabelIds": ["STARRED"]}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")


def test_threads_list_and_get_group_a_reply_with_its_message(gmail):
    first = insert(gmail, "Contract draft")
    raw = base64.urlsafe_b64encode(rfc822("Re: Contract draft", sender=OWNER, to="jane.doe@globex.example").encode()).decode()
    reply = gmail.users().messages().insert(
        userId="me", body={"raw": raw, "labelIds": ["SENT"], "threadId": first["threadId"]}
    ).execute()
    assert reply["threadId"] == first["threadId"]
    thread = gmail.users().threads().get(userId="me", id=first["threadId"], format="metadata").execute()
    assert_schema(thread, "Thread")
    assert [m["id"] for m in thread["messages"]] == [first["id"], reply["id"]]
    listed = gmail.users().threads().list(userId="me", maxResults=500).execute()
    assert_schema(listed, "ListThreadsResponse")
    assert first["threadId"] in {t["id"] for t in listed["threads"]}


# --- history ------------------------------------------------------------------------------------


def test_history_lists_additions_and_label_changes_after_the_start_id(gmail):
    start = profile_history_id(gmail)
    mid = insert(gmail, "History")["id"]
    gmail.users().messages().modify(userId="me", id=mid, body={"removeLabelIds": ["UNREAD"]}).execute()
    history = gmail.users().history().list(userId="me", startHistoryId=start).execute()
    assert_schema(history, "ListHistoryResponse")
    records = history["history"]
    assert [r["messagesAdded"][0]["message"]["id"] for r in records if "messagesAdded" in r] == [mid]
    removed = [r for r in records if "labelsRemoved" in r]
    assert removed and removed[0]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    assert all(int(r["id"]) > int(start) for r in records)
    assert int(history["historyId"]) >= int(records[-1]["id"])
    only_added = gmail.users().history().list(userId="me", startHistoryId=start, historyTypes=["messageAdded"]).execute()
    assert all(set(r) & {"messagesAdded"} and "labelsRemoved" not in r for r in only_added["history"])


def test_history_pages_with_page_tokens(gmail):
    start = profile_history_id(gmail)
    for i in range(3):
        insert(gmail, f"History page {i}")
    seen, token = [], None
    while True:
        page = gmail.users().history().list(userId="me", startHistoryId=start, maxResults=1, pageToken=token).execute()
        assert_schema(page, "ListHistoryResponse")
        seen.extend(r["id"] for r in page.get("history", []))
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(seen) == 3 and seen == sorted(seen, key=int)


def test_a_deleted_message_is_a_messages_deleted_record_and_then_404(root, gmail):
    mid = insert(gmail, "Delete me")["id"]
    start = profile_history_id(gmail)
    all_mail = service_for(root, admin(root, "/_admin/tokens", {"scopes": ["https://mail.google.com/"]})["access_token"])
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().delete(userId="me", id=mid).execute()
    assert_google_error(caught.value, 403, "insufficientPermissions")
    assert all_mail.users().messages().delete(userId="me", id=mid).execute() == ""
    history = gmail.users().history().list(userId="me", startHistoryId=start).execute()
    assert [r["messagesDeleted"][0]["message"]["id"] for r in history["history"]] == [mid]
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().get(userId="me", id=mid).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_a_start_id_older_than_the_history_kept_is_404_not_found(start_fake):
    root = start_fake("fake-gmail", "--messages", "2").base_url
    gmail = service_for(root)
    start = profile_history_id(gmail)
    admin(root, "/_admin/history/expire")
    with pytest.raises(HttpError) as caught:
        gmail.users().history().list(userId="me", startHistoryId=start).execute()
    assert_google_error(caught.value, 404, "notFound")
    fresh = profile_history_id(gmail)
    assert gmail.users().history().list(userId="me", startHistoryId=fresh).execute().get("history") is None


# --- scopes, auth, quota --------------------------------------------------------------------------


def test_a_metadata_scope_token_gets_no_bodies_and_no_q(root, gmail):
    mid = insert(gmail, "Metadata only")["id"]
    meta = service_for(root, token_with(root, "metadata"))
    got = meta.users().messages().get(userId="me", id=mid, format="metadata").execute()
    assert_schema(got, "Message")
    with pytest.raises(HttpError) as caught:
        meta.users().messages().get(userId="me", id=mid, format="full").execute()
    err = assert_google_error(caught.value, 403, "forbidden")
    assert err["message"] == "Metadata scope doesn't allow format FULL"
    with pytest.raises(HttpError) as caught:
        meta.users().messages().list(userId="me", q="from:jane").execute()
    assert_google_error(caught.value, 403, "forbidden")


def test_a_readonly_token_reads_but_cannot_modify(root, gmail):
    mid = insert(gmail, "Read only")["id"]
    ro = service_for(root, token_with(root, "readonly"))
    assert ro.users().messages().get(userId="me", id=mid).execute()["id"] == mid
    with pytest.raises(HttpError) as caught:
        ro.users().messages().modify(userId="me", id=mid, body={"addLabelIds": ["STARRED"]}).execute()
    assert_google_error(caught.value, 403, "insufficientPermissions")


def test_a_request_with_a_rejected_token_is_401_auth_error(root):
    plain = service_for(root, token=None)
    request = plain.users().getProfile(userId="me")
    request.headers["authorization"] = "Bearer ya29.not-issued"
    with pytest.raises(HttpError) as caught:
        request.execute()
    assert_google_error(caught.value, 401, "authError")


def test_the_per_user_quota_answers_429_rate_limit_exceeded(start_fake):
    root = start_fake("fake-gmail", "--messages", "1", "--units-per-minute", "10").base_url
    gmail = service_for(root)
    gmail.users().messages().list(userId="me").execute()
    gmail.users().messages().list(userId="me").execute()
    with pytest.raises(HttpError) as caught:
        gmail.users().messages().list(userId="me").execute()
    err = assert_google_error(caught.value, 429, "rateLimitExceeded")
    assert err["message"].startswith("User-rate limit exceeded.")


# --- watch --------------------------------------------------------------------------------------


def test_watch_needs_a_pubsub_topic_name_and_stop_ends_it(gmail):
    with pytest.raises(HttpError) as caught:
        gmail.users().watch(userId="me", body={"labelIds": ["INBOX"]}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")
    with pytest.raises(HttpError) as caught:
        gmail.users().watch(userId="me", body={"topicName": "gmail-topic"}).execute()
    assert_google_error(caught.value, 400, "invalidArgument")
    watched = gmail.users().watch(userId="me", body={"topicName": "projects/acme/topics/gmail", "labelIds": ["INBOX"]}).execute()
    assert_schema(watched, "WatchResponse")
    assert int(watched["historyId"]) > 0 and int(watched["expiration"]) > 0
    assert gmail.users().stop(userId="me").execute() == ""
