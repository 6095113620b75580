//! The API against its own OpenAPI document, black-box, through the local gateway over HTTP: a
//! sweep of every operation the served document lists (no token: 401; tenant B on tenant A's ids:
//! 404, and never a byte of A's data; malformed, mistyped, unknown-enum, unknown-field, oversized
//! and non-JSON bodies: 4xx problems), and schemathesis's property-based run (no 5xx, every
//! response as the document says).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use axum::body::Body;
use chrono::Utc;
use serde_json::{Value, json};
use syncbridge::domain::policy::Strategy;
use syncbridge::domain::push::{ConflictItem, conflict_id};
use syncbridge::domain::{
    CanonicalRecord, ConflictStatus, ConnectionId, ExternalId, ObjectType, Provider, RecordId, Resolution,
    TenantId,
};
use syncbridge::http::openapi;
use syncbridge::http::{self as api, common::BODY_LIMIT_BYTES};
use syncbridge::ports::RecordWrite;
use syncbridge::wiring;
use syncbridge_local::local::{LocalStack, StackOptions};
use tower::ServiceExt as _;

/// Tenant A's data, and tokens of A and of B.
struct Seeded {
    stack: LocalStack,
    base: String,
    http: reqwest::Client,
    token_a: String,
    token_b: String,
    connection: String,
    record: String,
    push_id: String,
    conflict_id: String,
}

impl Seeded {
    /// The value of tenant A's resource for a path parameter.
    fn id_for(&self, parameter: &str) -> Result<&str> {
        Ok(match parameter {
            "connection_id" => &self.connection,
            "record_id" => &self.record,
            "push_id" => &self.push_id,
            "conflict_id" => &self.conflict_id,
            // Not a tenant's resource: the same for every tenant.
            "provider" => "hubspot",
            other => bail!("the sweep has no id for path parameter `{other}`: seed one in `seed`"),
        })
    }

    fn a_ids(&self) -> [&str; 4] {
        [&self.connection, &self.record, &self.push_id, &self.conflict_id]
    }
}

async fn seed() -> Result<Seeded> {
    let stack = LocalStack::start(StackOptions::default()).await?;
    let base = stack.gateway.base_url();
    let http = reqwest::Client::new();
    let (token_a, token_b) = (stack.token("acme")?, stack.token("globex")?);
    let created: Value = http
        .post(format!("{base}/v1/connections"))
        .bearer_auth(&token_a)
        .json(
            &json!({ "provider": "hubspot", "base_url": stack.hubspot.base_url(), "access_token": "pat-a" }),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let connection = created["id"].as_str().context("no connection id")?.to_owned();
    http.post(format!("{base}/v1/connections"))
        .bearer_auth(&token_b)
        .json(&json!({ "provider": "google", "access_token": "token-b" }))
        .send()
        .await?
        .error_for_status()?;

    let (tenant, connection_id) = (TenantId::parse("acme")?, ConnectionId::parse(&connection)?);
    let external_id = ExternalId::parse("101")?;
    let record_id = RecordId::derive(&tenant, &connection_id, ObjectType::Contacts, &external_id);
    let now = Utc::now();
    let record = CanonicalRecord {
        record_id: record_id.clone(),
        tenant_id: tenant.clone(),
        connection_id: connection_id.clone(),
        object: ObjectType::Contacts,
        external_id: external_id.clone(),
        fields: [("email".to_owned(), json!("ann@acme.example")), ("phone".to_owned(), json!("1"))].into(),
        base: Default::default(),
        remote_modified_at: Some(now),
        etag: None,
        local_modified_at: None,
        sources: Default::default(),
        pending_push: Default::default(),
        deleted: false,
        created_at: now,
        updated_at: now,
        version: 0,
    };
    let written = stack.deps.records.write(Provider::Hubspot, vec![RecordWrite::Create(record)]).await?;
    ensure!(written.iter().all(Result::is_ok), "seeding the record failed");

    let edit: Value = http
        .post(format!("{base}/v1/connections/{connection}/records/{record_id}/edit"))
        .bearer_auth(&token_a)
        .json(&json!({ "fields": { "phone": "+47 1234" }, "idempotency_key": "seed-edit" }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let push_id = edit["push_id"].as_str().context("no push id")?.to_owned();

    let conflict = ConflictItem {
        tenant_id: tenant,
        connection_id,
        conflict_id: conflict_id(&record_id, "email"),
        record_id: record_id.clone(),
        object: ObjectType::Contacts,
        external_id,
        field: "email".to_owned(),
        base: Some(json!("ann@acme.example")),
        local: Some(json!("ann@local.example")),
        remote: Some(json!("ann@remote.example")),
        suggested: Resolution::UseRemote,
        suggested_by: Strategy::LastWriteWins,
        status: ConflictStatus::Open,
        detected_at: now,
        resolution: None,
        resolved_by: None,
        resolved_at: None,
        version: 0,
    };
    stack.deps.conflicts.detected(&conflict).await?;
    Ok(Seeded {
        base,
        http,
        token_a,
        token_b,
        connection,
        record: record_id.to_string(),
        push_id,
        conflict_id: conflict.conflict_id,
        stack,
    })
}

/// One operation of the served document.
struct Operation {
    method: reqwest::Method,
    template: String,
    id: String,
    path_params: Vec<String>,
    body_schema: Option<Value>,
}

impl Operation {
    fn label(&self) -> String {
        format!("{} {} ({})", self.method, self.template, self.id)
    }

    fn path(&self, seeded: &Seeded) -> Result<String> {
        let mut path = self.template.clone();
        for name in &self.path_params {
            path = path.replace(&format!("{{{name}}}"), seeded.id_for(name)?);
        }
        Ok(path)
    }
}

fn operations(document: &Value) -> Result<Vec<Operation>> {
    let mut out = Vec::new();
    for (template, item) in document["paths"].as_object().context("no paths")? {
        for (method, op) in item.as_object().context("path item is not an object")? {
            let path_params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Operation {
                method: method.to_uppercase().parse()?,
                template: template.clone(),
                id: op["operationId"].as_str().unwrap_or_default().to_owned(),
                path_params,
                body_schema: op
                    .pointer("/requestBody/content/application~1json/schema")
                    .map(|s| resolve(document, s)),
            });
        }
    }
    Ok(out)
}

/// `schema` with `$ref`s and nullable `oneOf`s followed to the schema that says what it is.
fn resolve(document: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema["$ref"].as_str() {
        let pointer = reference.trim_start_matches('#');
        return resolve(document, document.pointer(pointer).unwrap_or(&Value::Null));
    }
    let branches = schema["oneOf"].as_array().into_iter().flatten();
    if let Some(branch) = branches.into_iter().find(|b| b["type"] != "null") {
        return resolve(document, branch);
    }
    schema.clone()
}

fn types_of(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// A body the operation accepts, with tenant A's ids where it names them.
fn valid_body(op: &Operation, seeded: &Seeded) -> Result<Value> {
    Ok(match op.id.as_str() {
        "create_connection" => json!({ "provider": "hubspot", "access_token": "pat-sweep" }),
        "queue_push" => json!({
            "action": "update_field", "record_id": seeded.record,
            "fields": { "lead_score": 87 }, "idempotency_key": "sweep-push"
        }),
        "edit_record" => json!({ "fields": { "phone": "+47 5678" }, "idempotency_key": "sweep-edit" }),
        "approve" | "reject" => json!({ "ids": [seeded.push_id] }),
        "resolve" => json!({ "ids": [seeded.conflict_id], "resolution": "use_local" }),
        "patch_settings" => json!({ "interval_minutes": 30, "conflict_policy": "manual" }),
        "authorize" => {
            json!({ "redirect_uri": format!("{}{}", seeded.base, syncbridge::http::oauth::CALLBACK_PATH) })
        }
        other => bail!("the sweep has no valid body for `{other}`: add one to `valid_body`"),
    })
}

struct Reply {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    text: String,
    json: Value,
}

async fn send(
    seeded: &Seeded,
    method: &reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Reply> {
    let mut request = seeded.http.request(method.clone(), format!("{}{path}", seeded.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    }
    let response = request.send().await?;
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (status, content_type, www_authenticate) =
        (response.status().as_u16(), header("content-type").unwrap_or_default(), header("www-authenticate"));
    let text = response.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Reply { status, content_type, www_authenticate, text, json })
}

fn json_body(value: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", value.to_string().into_bytes()))
}

fn assert_problem(reply: &Reply, status: u16, code: &str, context: &str) {
    assert_eq!(reply.status, status, "{context}: {}", reply.text);
    assert_eq!(reply.content_type, "application/problem+json", "{context}: {}", reply.text);
    assert_eq!(reply.json["code"], code, "{context}: {}", reply.text);
    assert_eq!(reply.json["status"], status, "{context}: {}", reply.text);
}

async fn served_document(seeded: &Seeded) -> Result<Value> {
    let reply = send(seeded, &reqwest::Method::GET, openapi::OPENAPI_PATH, None, None).await?;
    ensure!(reply.status == 200, "GET {} without a token: {}", openapi::OPENAPI_PATH, reply.status);
    Ok(reply.json)
}

#[tokio::test]
async fn every_documented_operation_refuses_no_token_hides_other_tenants_ids_and_rejects_bad_bodies()
-> Result<()> {
    let seeded = seed().await?;
    let document = served_document(&seeded).await?;
    let ops = operations(&document)?;
    ensure!(ops.len() >= 18, "only {} operations in the document", ops.len());
    // The router itself, as the Lambda runs it, for requests that carry no identity at all.
    let lambda = api::router(wiring::api_state(&seeded.stack.deps, &seeded.stack.config));
    let (mut swept_401, mut swept_404, mut swept_bodies) = (0, 0, 0);

    for op in &ops {
        let label = op.label();
        let path = op.path(&seeded)?;
        if openapi::is_public(op.method.as_str(), &op.template) {
            let reply = send(&seeded, &op.method, &path, None, None).await?;
            if op.template == syncbridge::http::oauth::CALLBACK_PATH {
                // Reached without a token; without a state it is refused by the function itself.
                assert_problem(&reply, 400, "invalid_state", &label);
            } else {
                assert_eq!(reply.status, 200, "{label} is public: {}", reply.text);
            }
            continue;
        }
        let body = match &op.body_schema {
            Some(_) => Some(valid_body(op, &seeded)?),
            None => None,
        };

        // No token, or a forged one: API Gateway's 401 before the function.
        for token in [None, Some("not.a.jwt")] {
            let reply = send(&seeded, &op.method, &path, token, body.as_ref().and_then(json_body)).await?;
            assert_eq!(reply.status, 401, "{label} with token {token:?}: {}", reply.text);
            assert_eq!(reply.www_authenticate.as_deref(), Some("Bearer"), "{label}");
            assert!(!seeded.a_ids().iter().any(|id| reply.text.contains(id)), "{label}: {}", reply.text);
        }
        // Without an identity in the request context the function answers a 401 problem itself.
        let mut request = http::Request::builder().method(op.method.as_str()).uri(&path);
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(body.as_ref().map_or_else(Body::empty, |b| Body::from(b.to_string())))?;
        let response = lambda.clone().oneshot(request).await?;
        assert_eq!(response.status(), 401, "{label} without identity");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{label}");
        let problem: Value =
            serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 16).await?)?;
        assert_eq!(problem["code"], "unauthorized", "{label}");
        swept_401 += 1;

        // Tenant B with tenant A's ids: 404 where the path names them; never any of A's data.
        let reply =
            send(&seeded, &op.method, &path, Some(&seeded.token_b), body.as_ref().and_then(json_body))
                .await?;
        if op.path_params.iter().all(|p| p == "provider") {
            assert!(reply.status < 300, "{label} as tenant B: {}", reply.text);
            if let Some(items) = reply.json["items"].as_array().filter(|_| body.is_some()) {
                // Bulk decisions naming A's items: each one not found for B.
                assert!(!items.is_empty(), "{label}: {}", reply.text);
                for item in items {
                    assert_eq!(
                        (&item["ok"], &item["error"]),
                        (&json!(false), &json!("not_found")),
                        "{label}"
                    );
                }
            }
        } else {
            assert_problem(&reply, 404, "not_found", &format!("{label} as tenant B"));
            swept_404 += 1;
        }
        let a_leaked: Vec<&str> = seeded
            .a_ids()
            .into_iter()
            .filter(|id| reply.text.contains(id) && !body_names(&body, id))
            .collect();
        assert!(a_leaked.is_empty(), "{label} showed tenant B {a_leaked:?}: {}", reply.text);

        // Bodies that are not what the document says: 4xx problems (as tenant A, on A's ids).
        let Some(schema) = &op.body_schema else { continue };
        let valid = body.clone().unwrap_or(Value::Null);
        let a = Some(seeded.token_a.as_str());
        let cases: Vec<(String, &str, Vec<u8>, u16, &str)> = {
            let mut cases = vec![
                ("malformed JSON".to_owned(), "application/json", b"{\"".to_vec(), 400, "malformed_json"),
                ("an array".to_owned(), "application/json", b"[1,2]".to_vec(), 422, "invalid_request"),
                (
                    "text/plain".to_owned(),
                    "text/plain",
                    valid.to_string().into_bytes(),
                    415,
                    "unsupported_media_type",
                ),
            ];
            let mut oversized = valid.clone();
            oversized["padding"] = json!("a".repeat(BODY_LIMIT_BYTES + 1));
            cases.push((
                "65 KiB".to_owned(),
                "application/json",
                oversized.to_string().into_bytes(),
                413,
                "payload_too_large",
            ));
            if schema["additionalProperties"] == json!(false) {
                let mut unknown = valid.clone();
                unknown["tenant_id"] = json!("globex");
                cases.push((
                    "an unknown field".to_owned(),
                    "application/json",
                    unknown.to_string().into_bytes(),
                    422,
                    "invalid_request",
                ));
            }
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                let property = resolve(&document, property);
                let types = types_of(&property);
                if types.is_empty() && property.get("enum").is_none() {
                    continue; // any JSON: no wrong type
                }
                let wrong =
                    if types.iter().any(|t| t == "string") { json!(12345) } else { json!("wrong-type") };
                let mut mistyped = valid.clone();
                mistyped[name] = wrong;
                cases.push((
                    format!("{name} of a wrong type"),
                    "application/json",
                    mistyped.to_string().into_bytes(),
                    422,
                    "invalid_request",
                ));
                if property.get("enum").is_some() {
                    let mut unknown_value = valid.clone();
                    unknown_value[name] = json!("no_such_value");
                    cases.push((
                        format!("{name} with an unknown value"),
                        "application/json",
                        unknown_value.to_string().into_bytes(),
                        422,
                        "invalid_request",
                    ));
                }
            }
            cases
        };
        for (what, content_type, bytes, status, code) in cases {
            let reply = send(&seeded, &op.method, &path, a, Some((content_type, bytes))).await?;
            assert_problem(&reply, status, code, &format!("{label} with {what}"));
            swept_bodies += 1;
        }
    }

    // A's items are untouched by everything B tried.
    let a = Some(seeded.token_a.as_str());
    let push = send(&seeded, &reqwest::Method::GET, &format!("/v1/push/{}", seeded.push_id), a, None).await?;
    assert_eq!(push.json["status"], "pending", "{}", push.text);
    let conflict =
        send(&seeded, &reqwest::Method::GET, &format!("/v1/conflicts/{}", seeded.conflict_id), a, None)
            .await?;
    assert_eq!(conflict.json["status"], "open", "{}", conflict.text);
    assert!(
        swept_401 >= 17 && swept_404 >= 9 && swept_bodies >= 40,
        "{swept_401} {swept_404} {swept_bodies}"
    );
    Ok(())
}

/// Whether the request body itself named `id` (so the reply may echo it as "not found").
fn body_names(body: &Option<Value>, id: &str) -> bool {
    body.as_ref().is_some_and(|b| b.to_string().contains(id))
}

/// A tool of the project's `.venv-openapi` (`make setup`), or where `$variable` points.
fn openapi_tool(variable: &str, name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    let path = syncbridge_local::stack::repo_root()?.join(".venv-openapi/bin").join(name);
    ensure!(path.is_file(), "{name} not found at {}: run `make setup` (or set {variable})", path.display());
    Ok(path)
}

fn schemathesis() -> Result<PathBuf> {
    openapi_tool("SCHEMATHESIS", "st")
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_and_is_the_committed_one() -> Result<()> {
    let validator = openapi_tool("OPENAPI_SPEC_VALIDATOR", "openapi-spec-validator")?;
    let seeded = seed().await?;
    let reply = send(&seeded, &reqwest::Method::GET, openapi::OPENAPI_PATH, None, None).await?;
    assert_eq!(reply.status, 200);
    let committed = std::fs::read_to_string(syncbridge_local::stack::repo_root()?.join("docs/openapi.json"))?;
    assert!(reply.text == committed, "the served document is not docs/openapi.json: run `make openapi`");
    let file = std::env::temp_dir().join(format!("syncbridge-openapi-{}.json", ulid::Ulid::new()));
    std::fs::write(&file, &reply.text)?;
    let output = tokio::process::Command::new(&validator).arg(&file).output().await?;
    std::fs::remove_file(&file).ok();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "openapi-spec-validator: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(": OK"), "{stdout}");
    Ok(())
}

/// Seeded, so a failure is reproducible (`st run ... --seed`).
const SCHEMATHESIS_SEED: u64 = 20261129;
const SCHEMATHESIS_EXAMPLES: u32 = 25;
const SCHEMATHESIS_CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_headers_conformance,response_schema_conformance,negative_data_rejection,ignored_auth,\
    unsupported_method,use_after_free,ensure_resource_availability";

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_that_breaks_the_document() -> Result<()> {
    let st = schemathesis()?;
    let seeded = seed().await?;
    let dir = std::env::temp_dir().join(format!("syncbridge-schemathesis-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir)?;
    // Tenant A's real ids half of the time, so operations reach real resources, not only 404s.
    let mut config = String::new();
    let mut parameters = String::from("[parameters]\n");
    for name in ["connection_id", "record_id", "push_id", "conflict_id"] {
        config.push_str(&format!("[dictionaries.{name}]\nvalues = [\"{}\"]\n", seeded.id_for(name)?));
        parameters.push_str(&format!("\"path.{name}\" = {{ dictionary = \"{name}\", probability = 0.5 }}\n"));
    }
    config.push_str(&parameters);
    // Connecting Fireflies asks Fireflies whose the key is; with no internet here (or a base_url
    // that is not Fireflies) it cannot answer: the documented 502 `provider_unavailable`, by design.
    config.push_str(
        "[[operations]]\ninclude-name = \"POST /v1/connections\"\n\
         checks.not_a_server_error.expected-statuses = [\"2xx\", \"3xx\", \"4xx\", \"502\"]\n",
    );
    let config_path = dir.join("schemathesis.toml");
    std::fs::write(&config_path, config)?;

    let started = Instant::now();
    let mut command = tokio::process::Command::new(&st);
    command
        .arg("--config-file")
        .arg(&config_path)
        .arg("run")
        .arg(format!("{}{}", seeded.base, openapi::OPENAPI_PATH))
        .args(["--header", &format!("Authorization: Bearer {}", seeded.token_a)])
        .args(["--checks", &SCHEMATHESIS_CHECKS.replace(char::is_whitespace, "")])
        .args(["--max-examples", &SCHEMATHESIS_EXAMPLES.to_string()])
        .args(["--seed", &SCHEMATHESIS_SEED.to_string()])
        .args(["--workers", "1", "--request-timeout", "10"])
        .arg("--report-dir")
        .arg(dir.join("report"))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(&dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .context("schemathesis ran over 10 minutes")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Vec<&str> =
        stdout.lines().skip_while(|l| !l.contains("SUMMARY")).filter(|l| !l.trim().is_empty()).collect();
    println!("schemathesis in {:.1} s:\n{}", started.elapsed().as_secs_f64(), summary.join("\n"));
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("generated") && !stdout.contains(" 0 generated"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn the_template_opens_exactly_the_public_operations_of_the_api_function() -> Result<()> {
    let text = std::fs::read_to_string(syncbridge_local::stack::template_path()?)?;
    let template = syncbridge_local::stack::Template::parse(&text)?;
    let api = template.resources.get("ApiFunction").context("no ApiFunction")?;
    let mut open: Vec<(String, String)> = api.properties["Events"]
        .as_object()
        .context("ApiFunction has no events")?
        .values()
        .filter(|event| event["Type"] == "HttpApi" && event["Properties"]["Auth"]["Authorizer"] == "NONE")
        .map(|event| {
            let p = &event["Properties"];
            (
                p["Method"].as_str().unwrap_or_default().to_uppercase(),
                p["Path"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    open.sort();
    // The dashboard's files (outside /v1) are open; nothing under /v1 is, but the public operations.
    let (api_open, dashboard): (Vec<_>, Vec<_>) =
        open.into_iter().partition(|(_, path)| path.starts_with("/v1/"));
    assert_eq!(
        dashboard,
        [("GET".to_owned(), "/".to_owned()), ("GET".to_owned(), "/{proxy+}".to_owned())],
        "the dashboard's open routes"
    );
    let mut public: Vec<(String, String)> =
        openapi::PUBLIC_ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    public.sort();
    assert_eq!(api_open, public, "routes without the JWT authorizer in template.yaml");
    // `/v1/{proxy+}` per method, never ANY: a GET to /v1/... must pick the authorized GET route over
    // the dashboard's open `GET /{proxy+}` (the longer greedy path wins among routes of one method).
    let v1_methods: std::collections::BTreeSet<String> = api.properties["Events"]
        .as_object()
        .context("ApiFunction has no events")?
        .values()
        .filter(|event| event["Properties"]["Path"] == "/v1/{proxy+}")
        .map(|event| event["Properties"]["Method"].as_str().unwrap_or_default().to_uppercase())
        .collect();
    assert_eq!(
        v1_methods,
        ["DELETE", "GET", "PATCH", "POST"].map(str::to_owned).into(),
        "methods of /v1/{{proxy+}}"
    );
    let document = serde_json::to_value(openapi::document())?;
    for (method, path) in &public {
        let op = &document["paths"][path][method.to_lowercase()];
        assert!(op.is_object() && op.get("security").is_none(), "{method} {path}");
    }
    Ok(())
}
