"""The Gmail fake's authenticated Pub/Sub pushes, checked with Google's own library (google-auth).

A push subscription with `pushConfig.oidcToken` sends each push with `Authorization: Bearer <JWT>`
(https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions). Google documents verifying
that token with `google.oauth2.id_token.verify_token(token, request, audience=...)`; here its
`certs_url` is the fake's `/oauth2/v3/certs` (Google's JWKS URL), so google-auth (and PyJWT under it,
for a JWK set) checks the fake's signature, key ids, `aud` and `exp`, and the test the claims
Google's sample checks (`iss`, `email`, `email_verified`). The mailbox watch is set with Google's
Gmail client; the subscription itself through the fake's admin route (Pub/Sub is not Gmail's API).
"""

import base64
import http.server
import json
import threading
import time
import urllib.error

import google.auth.transport.requests
import jwt
import pytest
import requests
from google.oauth2 import id_token
from jwt.exceptions import InvalidAudienceError, PyJWKClientError

from test_gmail import OWNER, admin, service_for

TOPIC = "projects/acme/topics/gmail"
ACCOUNT = "gmail-push@acme-project.iam.gserviceaccount.com"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


class PushSink:
    """A push endpoint on 127.0.0.1 that keeps each request's path, `Authorization` and body."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((self.path, self.headers.get("authorization"), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def authorization(self, path):
        found = [auth for p, auth, _ in self.received if p == path]
        assert found, f"no push reached {path}: {self.received}"
        return found[-1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sink():
    s = PushSink()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def pushed(start_fake, sink):
    """A fake whose watched topic has three subscriptions (OIDC with the default audience, OIDC
    with a named audience, none), after one publish."""
    root = start_fake("fake-gmail", "--messages", "0").base_url
    subs = {
        "/default": {"serviceAccountEmail": ACCOUNT},
        "/named": {"serviceAccountEmail": ACCOUNT, "audience": "https://hooks.example.com/gmail"},
        "/bare": None,
    }
    for path, oidc in subs.items():
        body = {"topic_name": TOPIC, "endpoint": sink.base + path}
        if oidc:
            body["oidc_token"] = oidc
        made = admin(root, "/_admin/pubsub/subscriptions", body)
        assert made.get("oidc_token") == oidc
    gmail = service_for(root)
    gmail.users().watch(userId="me", body={"topicName": TOPIC}).execute()
    sent = admin(root, "/_admin/pubsub/publish")
    assert [d["status"] for d in sent] == [204, 204, 204]
    return root


def bearer(sink, path):
    auth = sink.authorization(path)
    assert auth and auth.startswith("Bearer "), auth
    return auth[len("Bearer "):]


def verify(token, root, audience):
    request = google.auth.transport.requests.Request()
    return id_token.verify_token(token, request, audience=audience, certs_url=root + "/oauth2/v3/certs")


def test_googles_library_verifies_the_push_token_for_the_endpoint_and_finds_the_claims_google_sends(pushed, sink):
    endpoint = sink.base + "/default"
    claims = verify(bearer(sink, "/default"), pushed, endpoint)
    assert claims["aud"] == endpoint, "the audience defaults to the push endpoint's URL"
    assert claims["iss"] in GOOGLE_ISSUERS
    assert claims["email"] == ACCOUNT and claims["email_verified"] is True
    assert claims["sub"] == claims["azp"] and claims["sub"].isdigit()
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 120
    header = jwt.get_unverified_header(bearer(sink, "/default"))
    assert header["alg"] == "RS256" and header["typ"] == "JWT" and header["kid"]


def test_a_named_audience_is_the_tokens_aud_and_the_endpoint_is_then_refused_as_audience(pushed, sink):
    token = bearer(sink, "/named")
    assert verify(token, pushed, "https://hooks.example.com/gmail")["aud"] == "https://hooks.example.com/gmail"
    with pytest.raises(InvalidAudienceError):
        verify(token, pushed, sink.base + "/named")


def test_a_subscription_without_an_oidc_token_pushes_without_authorization(pushed, sink):
    assert sink.authorization("/bare") is None
    _, _, body = next(r for r in sink.received if r[0] == "/bare")
    assert body["message"]["messageId"] and body["subscription"].startswith("projects/acme/subscriptions/")


def test_another_fakes_keys_do_not_verify_the_token(start_fake, pushed, sink):
    other = start_fake("fake-gmail", "--messages", "0").base_url
    with pytest.raises(PyJWKClientError):
        verify(bearer(sink, "/default"), other, sink.base + "/default")


def test_the_keys_are_a_jwk_set_of_rs256_signing_keys_cacheable_for_a_max_age(pushed):
    reply = requests.get(pushed + "/oauth2/v3/certs", timeout=5)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    directives = [d.strip() for d in reply.headers["cache-control"].split(",")]
    assert "public" in directives
    assert int(next(d for d in directives if d.startswith("max-age=")).split("=", 1)[1]) > 0
    keyset = jwt.PyJWKSet.from_dict(reply.json())
    assert [(k.key_type, k.algorithm_name, k.public_key_use) for k in keyset.keys] == [("RSA", "RS256", "sig")]


def test_an_oidc_token_config_without_a_service_account_is_refused_as_invalid_argument(pushed):
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(pushed, "/_admin/pubsub/subscriptions",
              {"topic_name": TOPIC, "endpoint": "http://127.0.0.1:9/x", "oidc_token": {"serviceAccountEmail": ""}})
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["error"]["status"] == "INVALID_ARGUMENT"


def test_the_mailbox_in_the_push_is_the_owners(pushed, sink):
    _, _, body = next(r for r in sink.received if r[0] == "/default")
    data = json.loads(base64.b64decode(body["message"]["data"]))
    assert data["emailAddress"] == OWNER and int(data["historyId"]) > 0
