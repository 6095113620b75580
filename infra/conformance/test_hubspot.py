"""The HubSpot fake, driven by HubSpot's own Python SDK (hubspot-api-client, client-side validation
on): every route the adapter (shared/src/adapters/hubspot) uses, plus what real clients commonly send
beside them. The fake starts as a new, stock portal: HubSpot's standard objects and properties only.

When the SDK and the fake disagree, the fake is wrong.
"""

import json
import urllib.request

import pytest
from hubspot import HubSpot
from hubspot.crm.associations.v4 import models as assoc
from hubspot.crm.objects import models as obj
from hubspot.crm.objects.exceptions import ApiException
from hubspot.crm.properties import models as props
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from hubspot.oauth.exceptions import ApiException as OAuthApiException

TOKEN = "pat-na1-fake"
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
ALL_SCOPES = {
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.schemas.companies.read",
    "crm.schemas.companies.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
}


@pytest.fixture(scope="module")
def fake(start_fake):
    return start_fake("fake-hubspot", "--contacts", "0")


def sdk(base_url, token=TOKEN):
    """HubSpot's client pointed at the fake, validating every model it builds."""
    return HubSpot(access_token=token, host=base_url, client_side_validation=True)


@pytest.fixture(scope="module")
def client(fake):
    return sdk(fake.base_url)


def admin(fake, path, body=None, method="POST"):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(fake.base_url + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


class _Raw:
    def __init__(self, body):
        self.data = body


def error_body(client, exc):
    """The error body, parsed into the SDK's `Error` model (validated) and as a dict."""
    body = json.loads(exc.body)
    model = client.crm.objects.basic_api.api_client.deserialize(_Raw(exc.body), "Error")
    assert model.correlation_id and model.message and model.category
    return body


def batch_create(client, object_type, inputs):
    batch = obj.BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
    return client.crm.objects.batch_api.create(object_type, batch)


def create_one(client, object_type, properties, associations=None):
    body = obj.SimplePublicObjectInputForCreate(properties=properties, associations=associations or [])
    return client.crm.objects.basic_api.create(object_type, body)


def search(client, object_type, **kwargs):
    return client.crm.objects.search_api.do_search(object_type, obj.PublicObjectSearchRequest(**kwargs))


def unique_property(name, unique=True):
    return props.PropertyCreate(
        name=name,
        label=name.replace("_", " ").title(),
        type="string",
        field_type="text",
        group_name="contactinformation",
        has_unique_value=unique,
    )


# --- objects: get, list, paging -------------------------------------------------------------


def test_a_new_portal_lists_no_contacts_and_no_paging(fake):
    page = sdk(fake.base_url).crm.objects.basic_api.get_page("companies", limit=10)
    assert isinstance(page, obj.CollectionResponseSimplePublicObjectWithAssociationsForwardPaging)
    assert page.results == []
    assert page.paging is None


def test_a_created_contact_reads_back_by_id_with_its_properties(client):
    created = create_one(client, "contacts", {"email": "ada@example.com", "firstname": "Ada"})
    assert isinstance(created, obj.SimplePublicObject)
    got = client.crm.objects.basic_api.get_by_id("contacts", created.id, properties=["email", "firstname"])
    assert isinstance(got, obj.SimplePublicObjectWithAssociations)
    assert got.properties["email"] == "ada@example.com"
    assert got.properties["firstname"] == "Ada"
    assert got.properties["hs_object_id"] == created.id
    assert got.archived is False


def test_reading_a_missing_id_answers_404_with_hubspots_error_body(client):
    with pytest.raises(ApiException) as err:
        client.crm.objects.basic_api.get_by_id("contacts", "987654321")
    assert err.value.status == 404
    body = error_body(client, err.value)
    assert body["status"] == "error"
    assert body["category"] == "OBJECT_NOT_FOUND"


def test_a_call_without_a_valid_token_answers_401_invalid_authentication(fake, client):
    with pytest.raises(ApiException) as err:
        sdk(fake.base_url, "pat-na1-wrong").crm.objects.basic_api.get_page("contacts")
    assert err.value.status == 401
    assert error_body(client, err.value)["category"] == "INVALID_AUTHENTICATION"


def test_listing_with_associations_returns_the_associated_records(client):
    company = create_one(client, "companies", {"name": "Acme", "domain": "acme.example"})
    spec = obj.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)
    contact = create_one(
        client,
        "contacts",
        {"email": "grace@example.com"},
        [obj.PublicAssociationsForObject(to=obj.PublicObjectId(id=company.id), types=[spec])],
    )
    page = client.crm.objects.basic_api.get_page(
        "contacts", limit=100, properties=["email"], associations=["companies"], archived=False
    )
    mine = [c for c in page.results if c.id == contact.id]
    assert len(mine) == 1
    companies = mine[0].associations["companies"].results
    assert [a.id for a in companies] == [company.id]
    assert companies[0].type == "contact_to_company"


def test_listing_pages_to_the_end_through_paging_next_after(client):
    names = [f"Paged deal {i}" for i in range(23)]
    created = batch_create(
        client, "deals", [obj.SimplePublicObjectBatchInputForCreate(properties={"dealname": n}) for n in names]
    )
    assert len(created.results) == 23
    seen, after, pages = [], None, 0
    while True:
        kwargs = {"limit": 10, "properties": ["dealname"]}
        if after:
            kwargs["after"] = after
        page = client.crm.objects.basic_api.get_page("deals", **kwargs)
        seen += [d.properties["dealname"] for d in page.results]
        pages += 1
        if page.paging is None:
            break
        after = page.paging.next.after
    assert pages >= 3
    assert set(names) <= set(seen)
    assert len(seen) == len(set(seen))


def test_the_archived_listing_returns_only_archived_records_with_archived_at(client):
    doomed = create_one(client, "companies", {"name": "Gone Inc"})
    kept = create_one(client, "companies", {"name": "Kept Inc"})
    client.crm.objects.basic_api.archive("companies", doomed.id)
    page = client.crm.objects.basic_api.get_page("companies", archived=True, properties=["hs_lastmodifieddate"])
    ids = [c.id for c in page.results]
    assert doomed.id in ids and kept.id not in ids
    gone = [c for c in page.results if c.id == doomed.id][0]
    assert gone.archived is True and gone.archived_at is not None


# --- batch ----------------------------------------------------------------------------------


def test_batch_create_with_associations_and_trace_ids_answers_201_with_the_trace_ids(client):
    contact = create_one(client, "contacts", {"email": "linus@example.com"})
    spec = obj.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=3)
    inputs = [
        obj.SimplePublicObjectBatchInputForCreate(
            properties={"dealname": f"Traced {i}", "amount": "100"},
            associations=[obj.PublicAssociationsForObject(to=obj.PublicObjectId(id=contact.id), types=[spec])],
            object_write_trace_id=f"trace-{i}",
        )
        for i in range(3)
    ]
    reply = batch_create(client, "deals", inputs)
    assert isinstance(reply, obj.BatchResponseSimplePublicObject)
    assert reply.status == "COMPLETE"
    assert sorted(r.object_write_trace_id for r in reply.results) == ["trace-0", "trace-1", "trace-2"]
    fetch = assoc.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[assoc.PublicFetchAssociationsBatchRequest(id=r.id) for r in reply.results]
    )
    read = client.crm.associations.v4.batch_api.get_page("deals", "contacts", fetch)
    assert len(read.results) == 3
    assert all([t.to_object_id for t in r.to] == [contact.id] for r in read.results)


def test_batch_read_by_id_reports_missing_ids_in_a_207(client):
    a = create_one(client, "contacts", {"email": "one@example.com"})
    body = obj.BatchReadInputSimplePublicObjectId(
        inputs=[obj.SimplePublicObjectId(id=a.id), obj.SimplePublicObjectId(id="999999")],
        properties=["email"],
        properties_with_history=[],
    )
    reply = client.crm.objects.batch_api.read("contacts", body)
    assert isinstance(reply, obj.BatchResponseSimplePublicObjectWithErrors)
    assert [r.properties["email"] for r in reply.results] == ["one@example.com"]
    assert reply.num_errors == 1
    assert reply.errors[0].category == "OBJECT_NOT_FOUND"
    assert reply.errors[0].context["ids"] == ["999999"]


def test_batch_update_changes_properties_and_moves_hs_lastmodifieddate(client):
    a = create_one(client, "companies", {"name": "Before"})
    before = client.crm.objects.basic_api.get_by_id("companies", a.id, properties=["hs_lastmodifieddate"])
    body = obj.BatchInputSimplePublicObjectBatchInput(
        inputs=[obj.SimplePublicObjectBatchInput(id=a.id, properties={"name": "After"}, object_write_trace_id="u1")]
    )
    reply = client.crm.objects.batch_api.update("companies", body)
    assert isinstance(reply, obj.BatchResponseSimplePublicObject)
    assert reply.results[0].properties["name"] == "After"
    after = client.crm.objects.basic_api.get_by_id("companies", a.id, properties=["hs_lastmodifieddate", "name"])
    assert after.properties["name"] == "After"
    assert after.properties["hs_lastmodifieddate"] > before.properties["hs_lastmodifieddate"]


def test_batch_archive_answers_204_and_the_records_answer_404_afterwards(client):
    a = create_one(client, "deals", {"dealname": "Archive me"})
    body = obj.BatchInputSimplePublicObjectId(inputs=[obj.SimplePublicObjectId(id=a.id)])
    assert client.crm.objects.batch_api.archive("deals", body) is None
    with pytest.raises(ApiException) as err:
        client.crm.objects.basic_api.get_by_id("deals", a.id)
    assert err.value.status == 404


def test_batch_endpoints_refuse_more_than_100_inputs_with_a_validation_error(client):
    inputs = [obj.SimplePublicObjectId(id=str(i)) for i in range(1, 102)]
    body = obj.BatchReadInputSimplePublicObjectId(inputs=inputs, properties=[], properties_with_history=[])
    with pytest.raises(ApiException) as err:
        client.crm.objects.batch_api.read("contacts", body)
    assert err.value.status == 400
    assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"
    creates = [obj.SimplePublicObjectBatchInputForCreate(properties={"name": f"c{i}"}) for i in range(101)]
    with pytest.raises(ApiException) as err:
        batch_create(client, "companies", creates)
    assert err.value.status == 400


def test_a_bad_number_on_create_answers_400_with_property_values_not_valid(client):
    with pytest.raises(ApiException) as err:
        create_one(client, "deals", {"dealname": "Bad", "amount": "lots"})
    assert err.value.status == 400
    body = error_body(client, err.value)
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    details = json.loads(body["message"][len("Property values were not valid: ") :])
    assert details[0]["name"] == "amount" and details[0]["isValid"] is False


def test_malformed_json_answers_400_validation_error(fake, client):
    req = urllib.request.Request(
        fake.base_url + "/crm/v3/objects/contacts/search", data=b"{not json", method="POST"
    )
    req.add_header("authorization", f"Bearer {TOKEN}")
    req.add_header("content-type", "application/json")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 400
    assert json.loads(err.value.read())["category"] == "VALIDATION_ERROR"


# --- search ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searchable(client):
    """30 new companies named with a common prefix, created one batch after another."""
    ids = []
    for chunk in range(3):
        reply = batch_create(
            client,
            "companies",
            [
                obj.SimplePublicObjectBatchInputForCreate(properties={"name": f"Searchable {chunk * 10 + i:02d}"})
                for i in range(10)
            ],
        )
        ids += [r.id for r in reply.results]
    first = client.crm.objects.basic_api.get_by_id("companies", ids[0], properties=["hs_lastmodifieddate"])
    return ids, first.properties["hs_lastmodifieddate"]


def modified_filter(since, op="GTE"):
    return [obj.FilterGroup(filters=[obj.Filter(property_name="hs_lastmodifieddate", operator=op, value=since)])]


def test_search_accepts_sorts_as_plain_strings_as_the_sdk_sends_them(client, searchable):
    ids, since = searchable
    up = search(client, "companies", filter_groups=modified_filter(since), sorts=["hs_lastmodifieddate"], limit=5)
    assert isinstance(up, obj.CollectionResponseWithTotalSimplePublicObjectForwardPaging)
    assert up.total == len(ids)
    down = search(client, "companies", filter_groups=modified_filter(since), sorts=["-hs_object_id"], limit=5)
    assert [int(r.id) for r in down.results] == sorted((int(i) for i in ids), reverse=True)[:5]


def test_search_accepts_sorts_as_objects_with_a_direction(client, searchable):
    ids, since = searchable
    body = {
        "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": since}]}],
        "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
        "properties": ["name"],
        "limit": 5,
    }
    reply = client.crm.objects.search_api.do_search("companies", body)
    assert [int(r.id) for r in reply.results] == sorted((int(i) for i in ids), reverse=True)[:5]


def test_search_on_hs_lastmodifieddate_pages_to_the_end_through_after(client, searchable):
    ids, since = searchable
    seen, after = [], None
    while True:
        kwargs = dict(
            filter_groups=modified_filter(since),
            sorts=["hs_lastmodifieddate"],
            properties=["name", "hs_lastmodifieddate"],
            limit=7,
        )
        if after:
            kwargs["after"] = after
        page = search(client, "companies", **kwargs)
        seen += page.results
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(r.id for r in seen) == sorted(ids)
    stamps = [r.properties["hs_lastmodifieddate"] for r in seen]
    assert stamps == sorted(stamps)
    assert all(r.properties["name"].startswith("Searchable") for r in seen)


def test_search_refuses_paging_past_the_10000_result_cap(client):
    with pytest.raises(ApiException) as err:
        search(client, "contacts", after="9950", limit=100)
    assert err.value.status == 400
    assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"


def test_search_refuses_more_than_200_results_a_page(client):
    with pytest.raises(ApiException) as err:
        search(client, "contacts", limit=201)
    assert err.value.status == 400
    assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"
    assert search(client, "contacts", limit=200).results is not None


def f(name="hs_object_id", op="GT", value="0"):
    return obj.Filter(property_name=name, operator=op, value=value)


def test_search_refuses_more_than_5_filter_groups_6_filters_a_group_or_18_in_all(client):
    for groups in (
        [obj.FilterGroup(filters=[f()]) for _ in range(6)],
        [obj.FilterGroup(filters=[f() for _ in range(7)])],
        [obj.FilterGroup(filters=[f() for _ in range(4)]) for _ in range(5)],
    ):
        with pytest.raises(ApiException) as err:
            search(client, "contacts", filter_groups=groups)
        assert err.value.status == 400
        assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"
    ok = [obj.FilterGroup(filters=[f() for _ in range(6)]) for _ in range(3)]
    assert search(client, "contacts", filter_groups=ok).total >= 0


# --- v4 associations ------------------------------------------------------------------------


def test_v4_associations_batch_create_read_and_archive(client):
    deal = create_one(client, "deals", {"dealname": "Assoc deal"})
    company = create_one(client, "companies", {"name": "Assoc company"})
    post = assoc.BatchInputPublicAssociationMultiPost(
        inputs=[
            assoc.PublicAssociationMultiPost(
                _from=assoc.PublicObjectId(id=deal.id),
                to=assoc.PublicObjectId(id=company.id),
                types=[assoc.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=341)],
            )
        ]
    )
    created = client.crm.associations.v4.batch_api.create("deals", "companies", post)
    assert isinstance(created, assoc.BatchResponseLabelsBetweenObjectPair)
    assert created.results[0].to_object_id == company.id

    fetch = assoc.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[assoc.PublicFetchAssociationsBatchRequest(id=deal.id)]
    )
    read = client.crm.associations.v4.batch_api.get_page("deals", "companies", fetch)
    assert read.results[0]._from.id == deal.id
    to = read.results[0].to[0]
    assert to.to_object_id == company.id
    assert to.association_types[0].type_id == 341 and to.association_types[0].category == "HUBSPOT_DEFINED"

    archive = assoc.BatchInputPublicAssociationMultiArchive(
        inputs=[
            assoc.PublicAssociationMultiArchive(
                _from=assoc.PublicObjectId(id=deal.id), to=[assoc.PublicObjectId(id=company.id)]
            )
        ]
    )
    assert client.crm.associations.v4.batch_api.archive("deals", "companies", archive) is None
    again = client.crm.associations.v4.batch_api.get_page("deals", "companies", fetch)
    assert again.results == []
    assert again.errors[0].category == "OBJECT_NOT_FOUND"


# --- a stock portal and the properties API ---------------------------------------------------


def test_a_stock_portal_has_no_custom_syncbridge_key_property(client):
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.get_by_name("contacts", "syncbridge_key")
    assert err.value.status == 404
    everything = client.crm.properties.core_api.get_all("contacts")
    assert isinstance(everything, props.CollectionResponsePropertyNoPaging)
    names = {p.name for p in everything.results}
    assert {"email", "firstname", "lastname", "hs_object_id", "lastmodifieddate"} <= names
    assert "syncbridge_key" not in names
    assert not any(p.has_unique_value for p in everything.results if not p.hubspot_defined)


def test_batch_read_by_an_idproperty_that_is_not_unique_answers_400(client):
    body = obj.BatchReadInputSimplePublicObjectId(
        inputs=[obj.SimplePublicObjectId(id="k-1")],
        properties=[],
        properties_with_history=[],
        id_property="syncbridge_key",
    )
    with pytest.raises(ApiException) as err:
        client.crm.objects.batch_api.read("companies", body)
    assert err.value.status == 400
    assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"


def test_writing_a_property_the_portal_does_not_have_answers_property_doesnt_exist(client):
    with pytest.raises(ApiException) as err:
        create_one(client, "contacts", {"email": "x@example.com", "syncbridge_key": "k-1"})
    assert err.value.status == 400
    body = error_body(client, err.value)
    assert body["category"] == "VALIDATION_ERROR"
    details = json.loads(body["message"][len("Property values were not valid: ") :])
    assert details[0]["error"] == "PROPERTY_DOESNT_EXIST"
    assert details[0]["name"] == "syncbridge_key"
    a = create_one(client, "contacts", {"email": "y@example.com"})
    update = obj.BatchInputSimplePublicObjectBatchInput(
        inputs=[obj.SimplePublicObjectBatchInput(id=a.id, properties={"nope_prop": "1"})]
    )
    with pytest.raises(ApiException) as err:
        client.crm.objects.batch_api.update("contacts", update)
    assert err.value.status == 400
    assert "PROPERTY_DOESNT_EXIST" in error_body(client, err.value)["message"]


def test_a_client_creates_a_unique_property_once_and_the_second_time_answers_409(client):
    made = client.crm.properties.core_api.create("companies", unique_property("syncbridge_key"))
    assert isinstance(made, props.ModelProperty)
    assert made.name == "syncbridge_key" and made.has_unique_value is True
    assert made.hubspot_defined in (None, False)
    got = client.crm.properties.core_api.get_by_name("companies", "syncbridge_key")
    assert got.has_unique_value is True and got.type == "string" and got.field_type == "text"
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.create("companies", unique_property("syncbridge_key"))
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["status"] == "error" and body["category"] == "OBJECT_ALREADY_EXISTS"


def test_once_unique_the_property_reads_by_idproperty_and_refuses_duplicate_values(client):
    try:
        client.crm.properties.core_api.create("deals", unique_property("syncbridge_key"))
    except PropertiesApiException as e:
        assert e.status == 409
    first = create_one(client, "deals", {"dealname": "Keyed", "syncbridge_key": "key-1"})
    body = obj.BatchReadInputSimplePublicObjectId(
        inputs=[obj.SimplePublicObjectId(id="key-1"), obj.SimplePublicObjectId(id="key-404")],
        properties=["syncbridge_key"],
        properties_with_history=[],
        id_property="syncbridge_key",
    )
    reply = client.crm.objects.batch_api.read("deals", body)
    assert [r.id for r in reply.results] == [first.id]
    assert reply.results[0].properties["syncbridge_key"] == "key-1"
    assert reply.errors[0].category == "OBJECT_NOT_FOUND"
    assert reply.errors[0].context["ids"] == ["key-404"]
    by_key = client.crm.objects.basic_api.get_by_id("deals", "key-1", id_property="syncbridge_key")
    assert by_key.id == first.id

    with pytest.raises(ApiException) as err:
        create_one(client, "deals", {"dealname": "Again", "syncbridge_key": "key-1"})
    assert err.value.status == 400
    dup = error_body(client, err.value)
    assert dup["category"] == "VALIDATION_ERROR" and "already has that value" in dup["message"]

    traced = batch_create(
        client,
        "deals",
        [
            obj.SimplePublicObjectBatchInputForCreate(
                properties={"dealname": "Dup", "syncbridge_key": "key-1"}, object_write_trace_id="key-1"
            ),
            obj.SimplePublicObjectBatchInputForCreate(
                properties={"dealname": "Fresh", "syncbridge_key": "key-2"}, object_write_trace_id="key-2"
            ),
        ],
    )
    assert isinstance(traced, obj.BatchResponseSimplePublicObjectWithErrors)
    assert [r.object_write_trace_id for r in traced.results] == ["key-2"]
    assert traced.errors[0].category == "VALIDATION_ERROR"
    assert traced.errors[0].context["objectWriteTraceId"] == ["key-1"]
    assert "already has that value" in traced.errors[0].message


def test_notes_refuse_a_unique_property_and_keep_hs_note_body_verbatim(client):
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.create("notes", unique_property("syncbridge_key"))
    assert err.value.status == 400
    assert json.loads(err.value.body)["category"] == "VALIDATION_ERROR"
    plain = client.crm.properties.core_api.create("notes", unique_property("syncbridge_marker", unique=False))
    assert plain.has_unique_value is False
    text = "<p>Call  notes &amp; more</p>\n\n  trailing [sb:key-9]  "
    note = create_one(client, "notes", {"hs_note_body": text, "hs_timestamp": "2024-05-01T10:00:00Z"})
    got = client.crm.objects.basic_api.get_by_id("notes", note.id, properties=["hs_note_body"])
    assert got.properties["hs_note_body"] == text


def test_an_object_type_holds_at_most_10_unique_properties(client):
    for i in range(10):
        client.crm.properties.core_api.create("contacts", unique_property(f"unique_slot_{i}"))
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.create("contacts", unique_property("unique_slot_10"))
    assert err.value.status == 400
    assert json.loads(err.value.body)["category"] == "VALIDATION_ERROR"
    plain = client.crm.properties.core_api.create("contacts", unique_property("not_unique_slot", unique=False))
    assert plain.name == "not_unique_slot"


# --- activities: calls, emails, meetings, tasks ------------------------------------------------
# Each through the SDK's own activity client (`client.crm.objects.calls`, ...), whose models are
# that object's; HUBSPOT_DEFINED association type ids from the associations v4 guide.

ACTIVITIES = [
    # (object type, SDK client, body property, another standard property and a value, to-contact type id)
    ("calls", "calls", "hs_call_body", ("hs_call_direction", "OUTBOUND"), 194),
    ("emails", "emails", "hs_email_text", ("hs_email_subject", "Pricing"), 198),
    ("meetings", "meetings", "hs_meeting_body", ("hs_meeting_title", "Kickoff"), 200),
    ("tasks", "tasks", "hs_task_body", ("hs_task_status", "NOT_STARTED"), 204),
]


def activity_api(client, name):
    return getattr(client.crm.objects, name)


def activity_models(name):
    return __import__(f"hubspot.crm.objects.{name}.models", fromlist=["models"])


@pytest.mark.parametrize("object_type,api,body,other,to_contact", ACTIVITIES)
def test_an_activity_is_created_with_a_contact_association_and_reads_back_through_its_own_client(
    client, object_type, api, body, other, to_contact
):
    m = activity_models(api)
    contact = create_one(client, "contacts", {"email": f"{object_type}@example.com"})
    created = activity_api(client, api).basic_api.create(
        m.SimplePublicObjectInputForCreate(
            properties={"hs_timestamp": "2026-01-05T10:00:00.000Z", body: "Talked pricing", other[0]: other[1]},
            associations=[
                m.PublicAssociationsForObject(
                    to=m.PublicObjectId(id=contact.id),
                    types=[m.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=to_contact)],
                )
            ],
        )
    )
    assert isinstance(created, m.SimplePublicObject)
    got = activity_api(client, api).basic_api.get_by_id(
        created.id, properties=["hs_timestamp", body, other[0]], associations=["contacts"]
    )
    assert isinstance(got, m.SimplePublicObjectWithAssociations)
    assert got.properties[body] == "Talked pricing"
    assert got.properties[other[0]] == other[1]
    assert got.properties["hs_timestamp"].startswith("2026-01-05T10:00:00")
    assert [a.id for a in got.associations["contacts"].results] == [contact.id]
    fetch = assoc.BatchInputPublicFetchAssociationsBatchRequest(
        inputs=[assoc.PublicFetchAssociationsBatchRequest(id=created.id)]
    )
    read = client.crm.associations.v4.batch_api.get_page(object_type, "contacts", fetch)
    assert read.results[0].to[0].association_types[0].type_id == to_contact
    back = client.crm.associations.v4.batch_api.get_page(
        "contacts", object_type, assoc.BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[assoc.PublicFetchAssociationsBatchRequest(id=contact.id)]
        )
    )
    assert [str(t.to_object_id) for t in back.results[0].to] == [created.id]


@pytest.mark.parametrize("object_type,api,body,other,to_contact", ACTIVITIES)
def test_an_activity_without_hs_timestamp_is_refused_with_a_validation_error(
    client, object_type, api, body, other, to_contact
):
    m = activity_models(api)
    exceptions = __import__(f"hubspot.crm.objects.{api}.exceptions", fromlist=["ApiException"])
    with pytest.raises(exceptions.ApiException) as err:
        activity_api(client, api).basic_api.create(m.SimplePublicObjectInputForCreate(properties={body: "x"}))
    assert err.value.status == 400
    assert error_body(client, err.value)["category"] == "VALIDATION_ERROR"
    with pytest.raises(exceptions.ApiException) as err:
        activity_api(client, api).basic_api.create(
            m.SimplePublicObjectInputForCreate(
                properties={"hs_timestamp": "2026-01-05T10:00:00Z"},
                associations=[
                    m.PublicAssociationsForObject(
                        to=m.PublicObjectId(id="1"),
                        types=[m.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)],
                    )
                ],
            )
        )
    assert err.value.status == 400, "279 is contact -> company, not an activity's"


def test_activities_are_searched_on_hs_lastmodifieddate_and_paged_in_batches(client):
    m = activity_models("tasks")
    tasks = client.crm.objects.tasks
    made = tasks.batch_api.create(
        m.BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                m.SimplePublicObjectBatchInputForCreate(
                    properties={"hs_timestamp": "2026-02-0%dT09:00:00Z" % i, "hs_task_subject": f"Task {i}"}
                )
                for i in range(1, 4)
            ]
        )
    )
    assert made.status == "COMPLETE" and len(made.results) == 3
    since = str(int(min(r.updated_at for r in made.results).timestamp() * 1000))
    found = tasks.search_api.do_search(
        m.PublicObjectSearchRequest(
            filter_groups=[m.FilterGroup(filters=[m.Filter(property_name="hs_lastmodifieddate", operator="GTE", value=since)])],
            sorts=["hs_lastmodifieddate"],
            properties=["hs_task_subject", "hs_task_status"],
            limit=200,
        )
    )
    assert isinstance(found, m.CollectionResponseWithTotalSimplePublicObjectForwardPaging)
    assert sorted(r.properties["hs_task_subject"] for r in found.results) == ["Task 1", "Task 2", "Task 3"]
    read = tasks.batch_api.read(
        m.BatchReadInputSimplePublicObjectId(
            properties=["hs_task_subject"], inputs=[m.SimplePublicObjectId(id=r.id) for r in made.results]
        )
    )
    assert len(read.results) == 3
    tasks.basic_api.archive(made.results[0].id)
    archived = tasks.basic_api.get_page(archived=True, properties=["hs_task_subject"])
    assert [r.id for r in archived.results] == [made.results[0].id]
    assert archived.results[0].archived is True


def test_activity_properties_are_stock_hubspot_defined_and_refuse_unique_values(client):
    for object_type, _, body, other, _ in ACTIVITIES:
        names = {p.name for p in client.crm.properties.core_api.get_all(object_type).results}
        assert {"hs_timestamp", body, other[0], "hs_lastmodifieddate", "hs_object_id"} <= names, object_type
        assert not any(n.startswith("syncbridge") for n in names)
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.create("calls", unique_property("syncbridge_key"))
    assert err.value.status == 400


# --- scopes and OAuth -----------------------------------------------------------------------


def test_a_token_without_the_contacts_scopes_gets_403_missing_scopes_on_contacts_and_notes(fake, client):
    scopes = sorted(ALL_SCOPES - {"crm.objects.contacts.read", "crm.objects.contacts.write"})
    issued = admin(fake, "/_admin/tokens", {"scopes": scopes})
    limited = sdk(fake.base_url, issued["access_token"])
    for object_type in ("contacts", "notes"):
        with pytest.raises(ApiException) as err:
            limited.crm.objects.basic_api.get_page(object_type)
        assert err.value.status == 403
        body = error_body(client, err.value)
        assert body["category"] == "MISSING_SCOPES"
        assert body["errors"][0]["context"]["requiredGranularScopes"] == ["crm.objects.contacts.read"]
    assert limited.crm.objects.basic_api.get_page("deals").results is not None
    info = client.oauth.access_tokens_api.get(issued["access_token"])
    assert set(info.scopes) == set(scopes)


def test_a_read_only_token_cannot_write(fake, client):
    issued = admin(fake, "/_admin/tokens", {"scopes": ["crm.objects.deals.read"]})
    limited = sdk(fake.base_url, issued["access_token"])
    assert limited.crm.objects.basic_api.get_page("deals").results is not None
    with pytest.raises(ApiException) as err:
        create_one(limited, "deals", {"dealname": "nope"})
    assert err.value.status == 403
    assert error_body(client, err.value)["errors"][0]["context"]["requiredGranularScopes"] == [
        "crm.objects.deals.write"
    ]
    with pytest.raises(PropertiesApiException) as err:
        limited.crm.properties.core_api.create("deals", unique_property("no_schema_scope"))
    assert err.value.status == 403


def test_the_refresh_token_grant_and_the_access_token_info_deserialize(fake, client):
    issued = admin(fake, "/_admin/tokens", {})
    tokens = client.oauth.tokens_api.create(
        grant_type="refresh_token",
        refresh_token=issued["refresh_token"],
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    assert tokens.token_type == "bearer" and tokens.expires_in > 0
    assert tokens.refresh_token == issued["refresh_token"]
    info = client.oauth.access_tokens_api.get(tokens.access_token)
    assert info.hub_id > 0 and info.app_id > 0 and info.expires_in > 0
    assert ALL_SCOPES <= set(info.scopes)
    assert sdk(fake.base_url, tokens.access_token).crm.objects.basic_api.get_page("contacts").results is not None


def test_a_bad_refresh_token_answers_400_bad_refresh_token(client):
    with pytest.raises(OAuthApiException) as err:
        client.oauth.tokens_api.create(
            grant_type="refresh_token", refresh_token="nope", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
    assert err.value.status == 400
    assert json.loads(err.value.body)["status"] == "BAD_REFRESH_TOKEN"


def test_contacts_read_by_email_as_idproperty_case_insensitively(client):
    # https://developers.hubspot.com/docs/api/crm/contacts ("Retrieve contacts": idProperty=email)
    created = create_one(client, "contacts", {"email": "hedy.by-email@example.com", "firstname": "Grace"})
    body = obj.BatchReadInputSimplePublicObjectId(
        inputs=[obj.SimplePublicObjectId(id="Hedy.By-Email@Example.com"), obj.SimplePublicObjectId(id="nobody@example.com")],
        properties=["email"],
        properties_with_history=[],
        id_property="email",
    )
    got = client.crm.objects.batch_api.read("contacts", body)
    assert [r.id for r in got.results] == [created.id]
    assert got.num_errors == 1


def test_a_second_contact_with_an_existing_email_answers_409_contact_already_exists(client):
    # https://developers.hubspot.com/docs/api/crm/contacts ("Create contacts": emails are unique)
    first = create_one(client, "contacts", {"email": "lin.twice@example.com"})
    with pytest.raises(ApiException) as err:
        create_one(client, "contacts", {"email": "LIN.TWICE@example.com"})
    assert err.value.status == 409
    body = error_body(client, err.value)
    assert body["category"] == "CONFLICT"
    assert f"Existing ID: {first.id}" in body["message"]
