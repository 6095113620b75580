"""The Google Drive fake driven by Google's own client (google-api-python-client).

The client is built from Google's discovery document for Drive v3 with its root pointed at the
fake; answers are checked against that document's schemas (types, formats, `kind` defaults, no
property the schema lacks), not against hand-written expectations. The fake starts as a new, stock
My Drive (the root folder, no files); each test makes the files it needs.

Covered: what `shared/src/adapters/drive/` sends (`files.list` with `q`, `fields`, `pageSize` and
`pageToken`; `changes.getStartPageToken`; `changes.list` with `pageToken`, `pageSize`,
`includeRemoved` and `fields`; `changes.watch`; `channels.stop`; `about.get`) plus `files.get`,
`files.create` (metadata, folders), `permissions.list`, scopes, the per-user rate limit and
Google's error bodies.
"""

import copy
import json
import os
import pathlib
import re
import urllib.request
import uuid

import google.oauth2.credentials
import httplib2
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

SPECS = pathlib.Path(os.environ.get("SYNCBRIDGE_SPECS_DIR", pathlib.Path(__file__).parents[1] / "fakes" / "specs"))
DISCOVERY = json.loads((SPECS / "drive-v3.discovery.json").read_text())
SCHEMAS = DISCOVERY["schemas"]
TOKEN = "ya29.fake-drive"
FOLDER = "application/vnd.google-apps.folder"
METADATA_READONLY = "https://www.googleapis.com/auth/drive.metadata.readonly"
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def schema_errors(value, schema, path="$"):
    """Every way `value` departs from a discovery schema (a name or a schema dict)."""
    if isinstance(schema, str):
        schema = SCHEMAS[schema]
    if "$ref" in schema:
        return schema_errors(value, SCHEMAS[schema["$ref"]], path)
    kind, fmt, errors = schema.get("type", "any"), schema.get("format"), []
    if value is None:
        return [f"{path}: null (Google omits unset properties)"]
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: expected an object"]
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{path}.{key}")
            elif extra is not None:
                errors += schema_errors(item, extra, f"{path}.{key}")
            else:
                errors.append(f"{path}.{key}: not a property of {schema.get('id', 'this object')}")
        default_kind = props.get("kind", {}).get("default")
        if default_kind and value.get("kind", default_kind) != default_kind:
            errors.append(f"{path}.kind: {value.get('kind')!r} is not {default_kind!r}")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: expected an array"]
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
        elif fmt == "date-time" and not RFC3339.match(value):
            errors.append(f"{path}: {value!r} is not an RFC 3339 date-time")
        elif fmt in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            errors.append(f"{path}: {value!r} is not an {fmt} string")
    elif kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        errors.append(f"{path}: expected an integer, got {value!r}")
    elif kind == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: expected a boolean, got {value!r}")
    return errors


def assert_schema(value, schema):
    errors = schema_errors(value, schema)
    assert not errors, "\n".join(errors)


def assert_google_error(error, status, reason, location=None):
    """Google's JSON error body: {"error": {"errors": [{domain, reason, message}], code, message}}."""
    assert isinstance(error, HttpError)
    assert error.resp.status == status
    body = json.loads(error.content)
    err = body["error"]
    assert err["code"] == status and err["message"]
    first = err["errors"][0]
    assert {"domain", "reason", "message"} <= set(first)
    assert first["reason"] == reason
    if location:
        assert first["location"] == location


@pytest.fixture(scope="module")
def fake(start_fake):
    return start_fake("fake-drive", "--files", "0")


@pytest.fixture(scope="module")
def root(fake):
    api_root = fake.values["api_root"]
    assert api_root.endswith("/drive/v3")
    return api_root[: -len("/drive/v3")]


def service_for(root, token=TOKEN):
    doc = copy.deepcopy(DISCOVERY)
    doc["rootUrl"] = root + "/"
    doc["mtlsRootUrl"] = root + "/"
    doc["baseUrl"] = root + "/" + doc["servicePath"]
    if token is None:
        return build_from_document(doc, http=httplib2.Http())
    return build_from_document(doc, credentials=google.oauth2.credentials.Credentials(token=token))


@pytest.fixture(scope="module")
def drive(root):
    return service_for(root)


def admin(root, path, body=None, method="POST"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(root + "/_admin" + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def new_folder(drive, name=None):
    body = {"name": name or f"Deals {uuid.uuid4().hex[:8]}", "mimeType": FOLDER}
    return drive.files().create(body=body, fields="*").execute()


def new_file(drive, parent, name):
    body = {"name": name, "mimeType": "application/vnd.google-apps.document", "parents": [parent]}
    return drive.files().create(body=body, fields="id,name,parents").execute()


# --- about, root, stock account --------------------------------------------------------------------


def test_about_names_the_owner_in_the_discovery_shape_and_needs_fields(drive):
    about = drive.about().get(fields="user,storageQuota,kind").execute()
    assert_schema(about, "About")
    assert about["user"]["me"] is True and "@" in about["user"]["emailAddress"]
    with pytest.raises(HttpError) as caught:
        drive.about().get().execute()
    assert_google_error(caught.value, 400, "required", "fields")


def test_the_root_folder_is_my_drive_and_a_stock_drive_lists_no_files(drive, root, start_fake):
    rootdir = drive.files().get(fileId="root", fields="*").execute()
    assert_schema(rootdir, "File")
    assert rootdir["mimeType"] == FOLDER and rootdir["name"] == "My Drive"
    stock = service_for(start_fake("fake-drive").values["api_root"][: -len("/drive/v3")])
    listing = stock.files().list(pageSize=1000).execute()
    assert_schema(listing, "FileList")
    assert listing["files"] == []


# --- files ------------------------------------------------------------------------------------------


def test_created_folders_and_files_come_back_whole_with_the_owner_permission(drive):
    folder = new_folder(drive)
    assert_schema(folder, "File")
    assert folder["mimeType"] == FOLDER and folder["parents"]
    doc = new_file(drive, folder["id"], "Globex proposal")
    full = drive.files().get(fileId=doc["id"], fields="*").execute()
    assert_schema(full, "File")
    assert full["parents"] == [folder["id"]]
    assert full["owners"][0]["me"] is True
    assert [p["role"] for p in full["permissions"]] == ["owner"]
    assert full["webViewLink"].startswith("https://")
    default = drive.files().get(fileId=doc["id"]).execute()
    assert set(default) == {"kind", "id", "name", "mimeType"}, "the default partial response"


def test_a_listing_of_a_folder_pages_with_the_clients_list_next_and_selected_fields(drive):
    folder = new_folder(drive)
    made = {new_file(drive, folder["id"], f"Doc {i}")["id"] for i in range(7)}
    fields = "nextPageToken,files(id,name,mimeType,parents,modifiedTime,trashed,webViewLink,owners(emailAddress),permissions(emailAddress,role,type))"
    request = drive.files().list(q=f"'{folder['id']}' in parents and trashed = false", pageSize=3, fields=fields)
    seen, pages = [], 0
    while request is not None:
        page = request.execute()
        assert_schema(page, "FileList")
        pages += 1
        seen += [f["id"] for f in page["files"]]
        assert all(set(f) <= {"id", "name", "mimeType", "parents", "modifiedTime", "trashed", "webViewLink", "owners", "permissions"} for f in page["files"])
        request = drive.files().list_next(request, page)
    assert pages == 3 and set(seen) == made and len(seen) == 7


def test_an_unknown_file_is_404_not_found_naming_the_file(drive):
    with pytest.raises(HttpError) as caught:
        drive.files().get(fileId="1nosuchfile0000000000000000000000").execute()
    assert_google_error(caught.value, 404, "notFound", "fileId")


@pytest.mark.parametrize("q", ["title = 'x'", "name contains", "trashed = maybe", "'x' in children"])
def test_a_query_outside_the_language_is_400_invalid_value_on_q(drive, q):
    with pytest.raises(HttpError) as caught:
        drive.files().list(q=q).execute()
    assert_google_error(caught.value, 400, "invalid", "q")


def test_a_field_the_schema_lacks_is_400_invalid_parameter_on_fields(drive):
    with pytest.raises(HttpError) as caught:
        drive.files().list(fields="files(id,title)").execute()
    assert_google_error(caught.value, 400, "invalidParameter", "fields")


def test_a_page_size_below_one_is_400(drive):
    with pytest.raises(HttpError) as caught:
        drive.files().list(pageSize=0).execute()
    assert_google_error(caught.value, 400, "invalid", "pageSize")


def test_permissions_list_shows_who_a_file_is_shared_with(drive, root):
    folder = new_folder(drive)
    doc = new_file(drive, folder["id"], "Shared plan")
    admin(root, f"/files/{doc['id']}/share", {"email": "jane.doe@globex.example", "role": "reader"})
    perms = drive.permissions().list(fileId=doc["id"], fields="*").execute()
    assert_schema(perms, "PermissionList")
    assert {(p.get("emailAddress"), p["role"]) for p in perms["permissions"]} >= {("jane.doe@globex.example", "reader")}


# --- changes ----------------------------------------------------------------------------------------


def test_the_change_feed_pages_then_ends_with_a_new_start_token_and_reports_trash_and_removals(drive, root):
    start = drive.changes().getStartPageToken().execute()
    assert_schema(start, "StartPageToken")
    folder = new_folder(drive)
    a = new_file(drive, folder["id"], "A")
    b = new_file(drive, folder["id"], "B")
    admin(root, f"/files/{a['id']}/trash")
    admin(root, f"/files/{b['id']}", method="DELETE")
    token, changes, last = start["startPageToken"], [], None
    while token:
        last = drive.changes().list(pageToken=token, pageSize=2, fields="*").execute()
        assert_schema(last, "ChangeList")
        changes += last["changes"]
        token = last.get("nextPageToken")
    assert "newStartPageToken" in last
    by_id = {c["fileId"]: c for c in changes}
    assert set(by_id) == {folder["id"], a["id"], b["id"]}, "each changed file once"
    assert by_id[a["id"]]["file"]["trashed"] is True and by_id[a["id"]]["removed"] is False
    assert by_id[b["id"]]["removed"] is True and "file" not in by_id[b["id"]]
    quiet = drive.changes().list(pageToken=last["newStartPageToken"]).execute()
    assert quiet["changes"] == []
    kept = drive.changes().list(pageToken=start["startPageToken"], includeRemoved=False, pageSize=1000).execute()
    assert b["id"] not in {c["fileId"] for c in kept["changes"]}


def test_a_change_page_token_drive_never_issued_is_400(drive):
    with pytest.raises(HttpError) as caught:
        drive.changes().list(pageToken="not-a-token").execute()
    assert_google_error(caught.value, 400, "invalid", "pageToken")


def test_a_changes_channel_opens_and_stops_once(drive):
    start = drive.changes().getStartPageToken().execute()["startPageToken"]
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": "https://hooks.example.invalid/drive", "token": "t-1"}
    channel = drive.changes().watch(pageToken=start, body=body).execute()
    assert_schema(channel, "Channel")
    assert channel["id"] == body["id"] and channel["resourceId"] and int(channel["expiration"]) > 0
    drive.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    with pytest.raises(HttpError) as caught:
        drive.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()
    assert_google_error(caught.value, 404, "notFound")


def test_a_channel_to_a_plain_http_address_is_refused(drive):
    start = drive.changes().getStartPageToken().execute()["startPageToken"]
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": "http://hooks.example.invalid/drive"}
    with pytest.raises(HttpError) as caught:
        drive.changes().watch(pageToken=start, body=body).execute()
    assert_google_error(caught.value, 400, "push.webhookUrlNotHttps")


# --- scopes, rate limits, tokens ---------------------------------------------------------------------


def test_a_metadata_readonly_token_reads_but_cannot_create(root):
    issued = admin(root, "/tokens", {"scopes": [METADATA_READONLY]})
    readonly = service_for(root, issued["access_token"])
    assert_schema(readonly.files().list(pageSize=10, fields="files(id)").execute(), "FileList")
    with pytest.raises(HttpError) as caught:
        readonly.files().create(body={"name": "x"}).execute()
    assert_google_error(caught.value, 403, "insufficientPermissions")


def test_the_per_user_rate_limit_answers_403_user_rate_limit_exceeded(drive, root):
    admin(root, "/rate-limit", {"requests": 1, "window_secs": 60, "status": 403})
    try:
        drive.changes().getStartPageToken().execute()
        with pytest.raises(HttpError) as caught:
            drive.changes().getStartPageToken().execute()
        assert_google_error(caught.value, 403, "userRateLimitExceeded")
    finally:
        admin(root, "/rate-limit", method="DELETE")


def test_an_unknown_token_is_401_auth_error(root):
    # Plain httplib2 with the header set by hand: google-auth would try a refresh on the 401.
    request = service_for(root, token=None).files().list()
    request.headers["authorization"] = "Bearer ya29.not-issued"
    with pytest.raises(HttpError) as caught:
        request.execute()
    assert_google_error(caught.value, 401, "authError")
