"""The Salesforce fake, driven by simple-salesforce (the pinned SDK) as a stock Developer/Enterprise
org would be: every route our adapter uses (SOQL + `nextRecordsUrl`, getDeleted/getUpdated, sObject
Collections, Bulk API 2.0 query jobs, OAuth) and what clients commonly send besides (API versions,
trailing slashes, sObject rows, describe, Tooling API custom fields).

simple-salesforce builds `https://{instance}` URLs; a transport adapter mounted on the fake's
`https://127.0.0.1:PORT` prefix sends those requests over plain http. Nothing else is patched.
"""

import datetime as dt
import urllib.parse

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

TOKEN = "00DFAKE!session"
CURRENT = "68.0"
KEY = "Syncbridge_Key__c"
UTC = dt.timezone.utc


class PlainHttp(requests.adapters.HTTPAdapter):
    """Sends simple-salesforce's `https://127.0.0.1:PORT/...` requests as `http://`."""

    def send(self, request, **kwargs):
        if request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://"):]
        return super().send(request, **kwargs)


class Org:
    """A running fake plus helpers to reach it with simple-salesforce and its admin routes."""

    def __init__(self, fake):
        self.fake = fake
        self.base = fake.base_url
        self.session = requests.Session()
        host = urllib.parse.urlparse(self.base).netloc
        self.session.mount(f"https://{host}", PlainHttp())

    def sf(self, version=CURRENT, token=TOKEN):
        return Salesforce(instance_url=self.base, session_id=token, version=version, session=self.session)

    def admin(self, method, path, **kwargs):
        resp = requests.request(method, f"{self.base}/_admin{path}", timeout=10, **kwargs)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else None

    def now(self):
        return dt.datetime.fromisoformat(self.admin("GET", "/clock")["now"])

    def set_now(self, when):
        self.admin("POST", "/clock", json={"now": when.isoformat()})

    def advance(self, **delta):
        self.admin("POST", "/clock", json={"advance_seconds": dt.timedelta(**delta).total_seconds()})


@pytest.fixture(scope="module")
def org(start_fake):
    return Org(start_fake("fake-salesforce", "--contacts", "0", "--accounts", "0", "--opportunities", "0"))


@pytest.fixture(scope="module")
def seeded(start_fake):
    return Org(start_fake("fake-salesforce", "--contacts", "450", "--accounts", "3", "--opportunities", "0"))


@pytest.fixture(scope="module")
def small_limit(start_fake):
    return Org(start_fake("fake-salesforce", "--contacts", "0", "--replication-id-limit", "3"))


def error_of(excinfo):
    """The first element of Salesforce's error list, after checking the body is that list."""
    content = excinfo.value.content
    assert isinstance(content, list) and content, content
    assert set(content[0]) >= {"message", "errorCode"}, content
    return content[0]


def sf_time(value):
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


def grant_field(sf, sobject, field):
    """Field-level security: the profile's permission set may read and edit `sobject.field`."""
    ps = sf.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true")["records"][0]["Id"]
    return sf.FieldPermissions.create(
        {
            "ParentId": ps,
            "SobjectType": sobject,
            "Field": f"{sobject}.{field}",
            "PermissionsRead": True,
            "PermissionsEdit": True,
        }
    )


def create_key_field(sf, sobject="Contact"):
    return sf.restful(
        "tooling/sobjects/CustomField",
        method="POST",
        json={
            "FullName": f"{sobject}.{KEY}",
            "Metadata": {
                "label": "Syncbridge Key",
                "type": "Text",
                "length": 64,
                "externalId": True,
                "unique": True,
            },
        },
    )


# --- versions and paths ---------------------------------------------------------------------


def test_the_versions_resource_lists_every_supported_version_up_to_the_current_one(org):
    resp = org.session.get(f"https://{org.sf().sf_instance}/services/data/")
    assert resp.status_code == 200
    versions = {v["version"]: v for v in resp.json()}
    for n in range(50, 69):
        assert f"{n}.0" in versions
    assert versions[CURRENT]["url"] == f"/services/data/v{CURRENT}"
    assert versions[CURRENT]["label"] == "Winter '27"
    assert versions["60.0"]["label"] == "Spring '24"
    assert max(versions, key=float) == CURRENT


@pytest.mark.parametrize("version", [f"{n}.0" for n in range(50, 69)])
def test_every_version_from_50_0_to_the_current_serves_queries(org, version):
    result = org.sf(version=version).query("SELECT COUNT() FROM Contact")
    assert result["done"] is True and isinstance(result["totalSize"], int)


def test_an_unknown_api_version_is_a_404_not_found_in_salesforce_error_shape(org):
    with pytest.raises(SalesforceResourceNotFound) as e:
        org.sf(version="99.0").query("SELECT Id FROM Contact")
    assert error_of(e)["errorCode"] == "NOT_FOUND"


def test_an_unknown_path_is_a_404_with_salesforce_error_list(org):
    with pytest.raises(SalesforceResourceNotFound) as e:
        org.sf().restful("no/such/resource")
    assert error_of(e)["errorCode"] == "NOT_FOUND"


def test_trailing_slashes_are_served_like_the_paths_without_them(org):
    sf = org.sf()
    assert sf.restful("query/", params={"q": "SELECT COUNT() FROM Contact"})["done"] is True
    assert sf.restful("sobjects/Contact/describe/")["name"] == "Contact"
    assert sf.restful("sobjects/")["sobjects"]


def test_a_bad_session_is_401_invalid_session_id(org):
    with pytest.raises(SalesforceExpiredSession) as e:
        org.sf(token="00DFAKE!nope").query("SELECT Id FROM Contact")
    assert error_of(e)["errorCode"] == "INVALID_SESSION_ID"


# --- sObject rows, describe --------------------------------------------------------------------


def test_a_contact_is_created_read_updated_and_deleted_through_sobject_rows(org):
    sf = org.sf()
    created = sf.Contact.create({"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"})
    assert created["success"] is True and created["errors"] == []
    cid = created["id"]
    assert cid.startswith("003") and len(cid) == 18
    got = sf.Contact.get(cid)
    assert got["Id"] == cid and got["Email"] == "ada@example.com"
    assert got["attributes"] == {"type": "Contact", "url": f"/services/data/v{CURRENT}/sobjects/Contact/{cid}"}
    assert "OwnerId" in got and got["Title"] is None
    assert sf.Contact.update(cid, {"Title": "Countess"}) == 204
    assert sf.Contact.get(cid)["Title"] == "Countess"
    assert sf.Contact.delete(cid) == 204
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Contact.get(cid)
    assert error_of(e)["errorCode"] == "ENTITY_IS_DELETED"


def test_a_create_missing_a_required_field_is_400_with_the_field_named(org):
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().Contact.create({"FirstName": "NoLast"})
    err = error_of(e)
    assert err["errorCode"] == "REQUIRED_FIELD_MISSING" and err["fields"] == ["LastName"]


def test_contact_name_is_the_read_only_compound_of_first_and_last_name(org):
    sf = org.sf()
    cid = sf.Contact.create({"FirstName": "Grace", "LastName": "Hopper"})["id"]
    rec = sf.query(f"SELECT Id, Name FROM Contact WHERE Id = '{cid}'")["records"][0]
    assert rec["Name"] == "Grace Hopper"
    assert sf.query("SELECT Id FROM Contact WHERE Name = 'Grace Hopper'")["totalSize"] == 1
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Contact.update(cid, {"Name": "Amazing Grace"})
    assert error_of(e)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


def test_get_of_an_id_the_org_never_had_is_404_not_found(org):
    with pytest.raises(SalesforceResourceNotFound) as e:
        org.sf().Contact.get("003000000099999AAA")
    assert error_of(e)["errorCode"] == "NOT_FOUND"


def test_get_of_a_segment_that_is_no_id_is_read_as_an_unknown_external_id_field(org):
    with pytest.raises(SalesforceResourceNotFound) as e:
        org.sf().Contact.get("not-an-id")
    err = error_of(e)
    assert err["errorCode"] == "NOT_FOUND" and "not-an-id" in err["message"]


def test_describe_global_and_describe_list_objects_and_standard_fields(org):
    sf = org.sf()
    names = {s["name"] for s in sf.describe()["sobjects"]}
    assert {"Contact", "Account", "Opportunity", "Task", "Event", "Note"} <= names
    desc = sf.Contact.describe()
    fields = {f["name"]: f for f in desc["fields"]}
    assert desc["keyPrefix"] == "003" and desc["replicateable"] is True
    assert fields["Id"]["type"] == "id" and fields["Id"]["createable"] is False
    assert fields["LastName"]["nillable"] is False and fields["LastName"]["createable"] is True
    assert fields["Name"]["createable"] is False and fields["Name"]["updateable"] is False
    assert fields["Email"]["type"] == "email"
    assert fields["SystemModstamp"]["type"] == "datetime"
    assert all(f["custom"] is False for f in desc["fields"])


def test_describe_of_an_unknown_object_is_404_not_found(org):
    with pytest.raises(SalesforceResourceNotFound) as e:
        org.sf().Lead__c.describe()
    assert error_of(e)["errorCode"] == "NOT_FOUND"


# --- SOQL -----------------------------------------------------------------------------------


def test_query_all_follows_next_records_url_through_every_page(seeded):
    sf = seeded.sf()
    first = sf.query("SELECT Id FROM Contact ORDER BY Id", headers={"Sforce-Query-Options": "batchSize=200"})
    assert first["done"] is False and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith(f"/services/data/v{CURRENT}/query/")
    everything = sf.query_all("SELECT Id, Name FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"})
    ids = [r["Id"] for r in everything["records"]]
    assert len(ids) == 450 == len(set(ids))


def test_next_records_url_carries_the_version_the_client_asked_for(seeded):
    first = seeded.sf(version="52.0").query("SELECT Id FROM Contact", headers={"Sforce-Query-Options": "batchSize=200"})
    assert first["nextRecordsUrl"].startswith("/services/data/v52.0/query/")
    assert first["records"][0]["attributes"]["url"].startswith("/services/data/v52.0/sobjects/Contact/")


def test_malformed_soql_is_400_malformed_query(org):
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().query("SELECT Id FORM Contact")
    assert error_of(e)["errorCode"] == "MALFORMED_QUERY"


def test_an_unknown_column_is_400_invalid_field_naming_it(org):
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().query("SELECT Id, Nope__c FROM Contact")
    err = error_of(e)
    assert err["errorCode"] == "INVALID_FIELD"
    assert "No such column 'Nope__c' on entity 'Contact'" in err["message"]


def test_an_unknown_object_is_400_invalid_type(org):
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().query("SELECT Id FROM Widget")
    assert error_of(e)["errorCode"] == "INVALID_TYPE"


# --- stock org: no custom fields until a client creates them ----------------------------------


def test_a_stock_org_has_no_syncbridge_key_field(org):
    sf = org.sf()
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query(f"SELECT Id, {KEY} FROM Account")
    err = error_of(e)
    assert err["errorCode"] == "INVALID_FIELD" and KEY in err["message"]
    assert KEY not in {f["name"] for f in sf.Account.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Account.create({"Name": "Acme", KEY: "k-1"})
    assert error_of(e)["errorCode"] == "INVALID_FIELD"


def test_the_tooling_api_creates_the_key_field_once_and_refuses_a_duplicate(org):
    sf = org.sf()
    created = create_key_field(sf, "Opportunity")
    assert created["success"] is True and created["errors"] == []
    assert created["id"].startswith("00N")
    with pytest.raises(SalesforceMalformedRequest) as e:
        create_key_field(sf, "Opportunity")
    err = error_of(e)
    assert err["errorCode"] == "DUPLICATE_DEVELOPER_NAME"
    assert "There is already a field named Syncbridge_Key on Opportunity" in err["message"]


def test_a_tooling_created_field_stays_invisible_until_field_permissions_grant_it(org):
    sf = org.sf()
    create_key_field(sf, "Contact")
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query(f"SELECT Id, {KEY} FROM Contact")
    assert error_of(e)["errorCode"] == "INVALID_FIELD"
    assert KEY not in {f["name"] for f in sf.Contact.describe()["fields"]}
    assert grant_field(sf, "Contact", KEY)["success"] is True
    field = {f["name"]: f for f in sf.Contact.describe()["fields"]}[KEY]
    assert field["externalId"] is True and field["unique"] is True and field["custom"] is True
    assert field["createable"] is True and field["length"] == 64 and field["type"] == "string"
    assert sf.query(f"SELECT Id, {KEY} FROM Contact WHERE {KEY} = 'none'")["totalSize"] == 0


def test_creates_and_upserts_by_the_key_enforce_unique_values(org):
    sf = org.sf()
    if KEY not in {f["name"] for f in sf.Contact.describe()["fields"]}:
        create_key_field(sf, "Contact")
        grant_field(sf, "Contact", KEY)
    cid = sf.Contact.create({"LastName": "Keyed", KEY: "key-1"})["id"]
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Contact.create({"LastName": "Again", KEY: "KEY-1"})
    err = error_of(e)
    assert err["errorCode"] == "DUPLICATE_VALUE" and cid in err["message"]
    assert sf.Contact.get_by_custom_id(KEY, "key-1")["Id"] == cid
    assert sf.Contact.upsert(f"{KEY}/key-1", {"Title": "Updated"}) == 200
    assert sf.Contact.get(cid)["Title"] == "Updated"
    resp = sf.Contact.upsert(f"{KEY}/key-2", {"LastName": "Fresh"}, raw_response=True)
    assert resp.status_code == 201 and resp.json()["created"] is True
    rows = sf.query(f"SELECT Id FROM Contact WHERE {KEY} IN ('key-1', 'key-2')")
    assert rows["totalSize"] == 2


def test_collection_creates_by_the_key_report_duplicate_value_per_record(org):
    sf = org.sf()
    if KEY not in {f["name"] for f in sf.Contact.describe()["fields"]}:
        create_key_field(sf, "Contact")
        grant_field(sf, "Contact", KEY)
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "LastName": "A", KEY: "coll-1"},
            {"attributes": {"type": "Contact"}, "LastName": "B", KEY: "coll-1"},
        ],
    }
    results = sf.restful("composite/sobjects", method="POST", json=body)
    assert results[0]["success"] is True
    assert results[1]["success"] is False and results[1]["errors"][0]["statusCode"] == "DUPLICATE_VALUE"


def test_without_customize_application_the_tooling_create_is_refused(org):
    sf = org.sf()
    org.admin("POST", "/permissions", json={"customize_application": False})
    try:
        with pytest.raises(SalesforceRefusedRequest) as e:
            create_key_field(sf, "Account")
        assert error_of(e)["errorCode"] == "INSUFFICIENT_ACCESS"
    finally:
        org.admin("POST", "/permissions", json={"customize_application": True})
    assert create_key_field(sf, "Account")["success"] is True


def test_note_takes_no_custom_field(org):
    with pytest.raises(SalesforceMalformedRequest) as e:
        create_key_field(org.sf(), "Note")
    assert error_of(e)["errorCode"] == "FIELD_INTEGRITY_EXCEPTION"


# --- getUpdated / getDeleted -------------------------------------------------------------------


def test_deleted_lists_a_delete_and_truncates_the_window_to_the_minute(org):
    sf = org.sf()
    start = org.now()
    cid = sf.Contact.create({"LastName": "Gone"})["id"]
    sf.Contact.delete(cid)
    org.advance(minutes=3)
    end = org.now()
    result = sf.Contact.deleted(start - dt.timedelta(minutes=1), end)
    assert cid in [r["id"] for r in result["deletedRecords"]]
    latest = sf_time(result["latestDateCovered"])
    assert latest.second == 0 and latest.microsecond == 0
    assert latest <= end and end - latest < dt.timedelta(minutes=1)
    earliest = sf_time(result["earliestDateAvailable"])
    assert earliest.second == 0
    assert dt.timedelta(days=15) - dt.timedelta(minutes=2) < end - earliest <= dt.timedelta(days=15, minutes=1)


def test_a_delete_in_the_minute_the_window_ends_is_left_for_the_next_window(org):
    sf = org.sf()
    org.set_now(org.now().replace(second=30))
    start = org.now() - dt.timedelta(minutes=5)
    cid = sf.Contact.create({"LastName": "Late"})["id"]
    sf.Contact.delete(cid)
    first = sf.Contact.deleted(start, org.now())
    assert cid not in [r["id"] for r in first["deletedRecords"]]
    org.advance(minutes=2)
    second = sf.Contact.deleted(sf_time(first["latestDateCovered"]), org.now())
    assert cid in [r["id"] for r in second["deletedRecords"]]


@pytest.mark.parametrize("kind", ["deleted", "updated"])
def test_a_window_of_one_minute_or_less_is_invalid_replication_date(org, kind):
    now = org.now()
    with pytest.raises(SalesforceMalformedRequest) as e:
        getattr(org.sf().Contact, kind)(now - dt.timedelta(seconds=60), now)
    err = error_of(e)
    assert err["errorCode"] == "INVALID_REPLICATION_DATE"
    assert err["message"] == "startDate must be at least one minute greater than endDate"


@pytest.mark.parametrize("kind", ["deleted", "updated"])
def test_an_end_before_the_start_is_invalid_replication_date(org, kind):
    now = org.now()
    with pytest.raises(SalesforceMalformedRequest) as e:
        getattr(org.sf().Contact, kind)(now, now - dt.timedelta(hours=1))
    assert error_of(e)["errorCode"] == "INVALID_REPLICATION_DATE"


def test_deleted_refuses_a_start_older_than_the_15_day_delete_log(org):
    now = org.now()
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().Contact.deleted(now - dt.timedelta(days=16), now)
    assert error_of(e)["errorCode"] == "INVALID_REPLICATION_DATE"
    assert org.sf().Contact.deleted(now - dt.timedelta(days=14), now)["deletedRecords"] is not None


def test_updated_refuses_a_start_older_than_30_days(org):
    now = org.now()
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().Contact.updated(now - dt.timedelta(days=31), now)
    assert error_of(e)["errorCode"] == "INVALID_REPLICATION_DATE"
    assert "ids" in org.sf().Contact.updated(now - dt.timedelta(days=29), now)


def test_a_record_deleted_16_days_ago_was_listed_then_and_has_left_the_delete_log_since(org):
    sf = org.sf()
    real_now = org.now()
    org.set_now(real_now - dt.timedelta(days=16))
    start = org.now()
    old = sf.Contact.create({"LastName": "Ancient"})["id"]
    sf.Contact.delete(old)
    org.advance(minutes=2)
    assert old in [r["id"] for r in sf.Contact.deleted(start - dt.timedelta(minutes=1), org.now())["deletedRecords"]]
    org.set_now(real_now)
    recent = sf.Contact.create({"LastName": "Recent"})["id"]
    sf.Contact.delete(recent)
    org.advance(minutes=2)
    result = sf.Contact.deleted(real_now - dt.timedelta(days=14), org.now())
    listed = [r["id"] for r in result["deletedRecords"]]
    assert recent in listed and old not in listed
    assert sf_time(result["earliestDateAvailable"]) > start
    recycle_bin = sf.query_all(f"SELECT Id FROM Contact WHERE Id IN ('{old}', '{recent}')", include_deleted=True)
    assert [r["Id"] for r in recycle_bin["records"]] == [recent]


def test_updated_lists_records_created_or_modified_in_the_window(org):
    sf = org.sf()
    start = org.now()
    a = sf.Account.create({"Name": "Window A"})["id"]
    org.advance(minutes=2)
    end = org.now()
    org.advance(minutes=1)
    b = sf.Account.create({"Name": "After the window"})["id"]
    result = sf.Account.updated(start - dt.timedelta(minutes=1), end)
    assert a in result["ids"] and b not in result["ids"]
    assert sf_time(result["latestDateCovered"]).second == 0


def test_updated_past_the_id_limit_is_exceeded_id_limit(small_limit):
    sf = small_limit.sf()
    start = small_limit.now()
    for n in range(4):
        sf.Contact.create({"LastName": f"Many {n}"})
    small_limit.advance(minutes=2)
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Contact.updated(start - dt.timedelta(minutes=1), small_limit.now())
    assert error_of(e)["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_the_date_header_follows_the_org_clock(org):
    org.set_now(dt.datetime(2030, 6, 1, 12, 0, tzinfo=UTC))
    try:
        resp = org.session.get(f"{org.base}/services/data/")
        assert resp.headers["Date"].startswith("Sat, 01 Jun 2030 12:0")
    finally:
        org.admin("POST", "/clock", json={"reset": True})
    assert "2030" not in org.session.get(f"{org.base}/services/data/").headers["Date"]


# --- sObject Collections -----------------------------------------------------------------------


def test_collections_create_update_and_delete_up_to_200_records_a_call(org):
    sf = org.sf()
    records = [{"attributes": {"type": "Contact"}, "LastName": f"Bulk {n}"} for n in range(200)]
    created = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert len(created) == 200 and all(r["success"] for r in created)
    ids = [r["id"] for r in created]
    updates = [{"attributes": {"type": "Contact"}, "id": i, "Title": "Bulk"} for i in ids[:2]]
    updates.append({"attributes": {"type": "Contact"}, "id": "003000000099999AAA", "Title": "x"})
    updated = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": updates})
    assert [r["success"] for r in updated] == [True, True, False]
    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids), "allOrNone": "false"})
    assert len(deleted) == 200 and all(r["success"] for r in deleted)


def test_collections_refuse_201_records_with_exceeded_id_limit(org):
    records = [{"attributes": {"type": "Contact"}, "LastName": f"Too many {n}"} for n in range(201)]
    with pytest.raises(SalesforceMalformedRequest) as e:
        org.sf().restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert error_of(e)["errorCode"] == "EXCEEDED_ID_LIMIT"


# --- Bulk API 2.0 -----------------------------------------------------------------------------


def test_a_bulk_2_query_job_returns_every_record_as_csv(seeded):
    pages = list(seeded.sf().bulk2.Contact.query("SELECT Id, LastName FROM Contact", max_records=200, wait=0))
    assert len(pages) == 3
    lines = [line for page in pages for line in page.splitlines()[1:]]
    assert pages[0].splitlines()[0] == '"Id","LastName"'
    assert len(lines) == 450


# --- OAuth ------------------------------------------------------------------------------------


def test_a_refresh_token_grant_returns_a_working_session_and_revoke_ends_it(org):
    issued = org.admin("POST", "/tokens")
    resp = requests.post(
        f"{org.base}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "fake-sf-client-id",
            "client_secret": "fake-sf-client-secret",
            "refresh_token": issued["refresh_token"],
        },
        timeout=10,
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["instance_url"] == org.base and "expires_in" not in body
    sf = org.sf(token=body["access_token"])
    assert sf.query("SELECT COUNT() FROM Contact")["done"] is True
    info = sf.oauth2("userinfo")
    assert info["organization_id"].startswith("00D")
    resp = requests.post(f"{org.base}/services/oauth2/revoke", data={"token": body["access_token"]}, timeout=10)
    assert resp.status_code == 200
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT COUNT() FROM Contact")


def test_a_revoked_refresh_token_is_invalid_grant(org):
    issued = org.admin("POST", "/tokens")
    requests.post(f"{org.base}/services/oauth2/revoke", data={"token": issued["refresh_token"]}, timeout=10)
    resp = requests.post(
        f"{org.base}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "fake-sf-client-id",
            "client_secret": "fake-sf-client-secret",
            "refresh_token": issued["refresh_token"],
        },
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"



def test_the_api_users_profile_permission_set_is_found_by_a_semi_join_on_its_assignments(org):
    # What the adapter asks before granting its key field: the user's profile-owned permission set.
    # https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_comparisonoperators.htm
    sf = org.sf()
    user_id = sf.oauth2("userinfo")["user_id"]
    found = sf.query(
        "SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true AND Id IN "
        f"(SELECT PermissionSetId FROM PermissionSetAssignment WHERE AssigneeId = '{user_id}')"
    )
    plain = sf.query("SELECT Id FROM PermissionSet WHERE IsOwnedByProfile = true")
    assert found["totalSize"] == 1
    assert found["records"][0]["Id"] in {r["Id"] for r in plain["records"]}
