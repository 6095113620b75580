//! The fake's GraphQL schema (async-graphql): the part of Fireflies' schema a transcript sync
//! uses, with Fireflies' names (snake_case fields, `dateString`, `displayName`, camelCase
//! `fromDate`/`toDate` arguments) and its argument rules, each beside its documentation page.
//! `infra/fakes/specs/fireflies.graphql` holds the same types as SDL; a test keeps them equal.

use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, ErrorExtensions, InputValueError, InputValueResult, Object,
    Scalar, ScalarType, Schema, SimpleObject, Value,
};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{FirefliesState, MAX_LIMIT, Transcript as Stored};

pub type FirefliesSchema = Schema<QueryRoot, EmptyMutation, EmptySubscription>;

pub fn build(state: Arc<FirefliesState>) -> FirefliesSchema {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription).data(state).finish()
}

/// The schema as SDL (what introspection describes).
pub fn sdl() -> String {
    Schema::build(QueryRoot, EmptyMutation, EmptySubscription).finish().sdl()
}

/// Fireflies' `DateTime` scalar: an ISO 8601 string. The scalar takes any string; the resolver
/// checks it and answers `invalid_arguments` with an `isDate` constraint, as Fireflies does
/// (<https://docs.fireflies.ai/miscellaneous/error-codes#invalid_arguments>).
pub struct DateTimeArg(String);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTimeArg {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(DateTimeArg(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// An error in Fireflies' shape (<https://docs.fireflies.ai/fundamentals/errors>): the server
/// copies `extensions.code` to the top-level `code` and adds `friendly`.
pub fn ff_error(
    message: &str,
    code: &'static str,
    status: u16,
    metadata: Option<serde_json::Value>,
) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| {
        e.set("code", code);
        e.set("status", status);
        e.set(
            "helpUrls",
            Value::List(vec![Value::String(format!(
                "https://docs.fireflies.ai/miscellaneous/error-codes#{code}"
            ))]),
        );
        if let Some(m) = metadata.and_then(|m| async_graphql::Value::from_json(m).ok()) {
            e.set("metadata", m);
        }
    })
}

fn invalid_argument(name: &str, kind: &str, message: &str) -> async_graphql::Error {
    ff_error(
        "Invalid argument(s) were provided",
        "invalid_arguments",
        400,
        Some(json!({ "fields": [{ "name": name, "message": message,
            "constraints": [{ "type": kind, "message": message }] }] })),
    )
}

fn parse_date(name: &str, arg: Option<&DateTimeArg>) -> async_graphql::Result<Option<DateTime<Utc>>> {
    let Some(DateTimeArg(raw)) = arg else { return Ok(None) };
    DateTime::parse_from_rfc3339(raw)
        .map(|d| Some(d.to_utc()))
        .map_err(|_| invalid_argument(name, "isDate", &format!("{name} must be a Date instance")))
}

fn state<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Arc<FirefliesState>> {
    ctx.data::<Arc<FirefliesState>>()
}

/// `User` (<https://docs.fireflies.ai/schema/user>).
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct User {
    user_id: String,
    email: Option<String>,
    name: Option<String>,
    num_transcripts: Option<i32>,
    recent_meeting: Option<String>,
    minutes_consumed: Option<f64>,
    is_admin: Option<bool>,
    integrations: Option<Vec<Option<String>>>,
}

// `MeetingAttendee` (<https://docs.fireflies.ai/schema/meeting-attendee>).
#[derive(SimpleObject)]
pub struct MeetingAttendee {
    #[graphql(name = "displayName")]
    display_name: Option<String>,
    email: Option<String>,
    #[graphql(name = "phoneNumber")]
    phone_number: Option<String>,
    name: Option<String>,
    location: Option<String>,
}

// `Summary` (<https://docs.fireflies.ai/schema/summary>).
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Summary {
    action_items: Option<String>,
    keywords: Option<Vec<Option<String>>>,
    outline: Option<String>,
    overview: Option<String>,
    shorthand_bullet: Option<String>,
    short_summary: Option<String>,
    gist: Option<String>,
    bullet_gist: Option<String>,
}

// `Transcript` (<https://docs.fireflies.ai/schema/transcript>): `date` is the meeting's start
// in epoch milliseconds, `duration` in minutes.
#[derive(SimpleObject)]
#[graphql(rename_fields = "snake_case")]
pub struct Transcript {
    id: String,
    title: Option<String>,
    date: Option<f64>,
    #[graphql(name = "dateString")]
    date_string: Option<String>,
    duration: Option<f64>,
    host_email: Option<String>,
    organizer_email: Option<String>,
    participants: Option<Vec<Option<String>>>,
    fireflies_users: Option<Vec<Option<String>>>,
    calendar_id: Option<String>,
    cal_id: Option<String>,
    calendar_type: Option<String>,
    meeting_link: Option<String>,
    transcript_url: Option<String>,
    meeting_attendees: Option<Vec<Option<MeetingAttendee>>>,
    summary: Option<Summary>,
    user: Option<User>,
}

fn user_of(s: &FirefliesState) -> User {
    let visible = s.visible();
    User {
        user_id: s.user_id.clone(),
        email: Some(s.owner_email.clone()),
        name: Some(s.owner_name.clone()),
        num_transcripts: Some(visible.len() as i32),
        recent_meeting: visible.first().map(|t| t.id.clone()),
        minutes_consumed: Some(visible.iter().map(|t| t.duration).sum()),
        is_admin: Some(true),
        integrations: Some(vec![Some("google_calendar".into())]),
    }
}

fn render(s: &FirefliesState, t: &Stored) -> Transcript {
    let date = t.date.timestamp_millis() as f64;
    Transcript {
        id: t.id.clone(),
        title: Some(t.title.clone()),
        date: Some(date),
        date_string: Some(t.date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        duration: Some(t.duration),
        host_email: Some(t.organizer_email.clone()),
        organizer_email: Some(t.organizer_email.clone()),
        participants: Some(t.participants().into_iter().map(Some).collect()),
        fireflies_users: Some(vec![Some(s.owner_email.clone())]),
        calendar_id: t.calendar_id.clone(),
        cal_id: t.calendar_id.clone(),
        calendar_type: t.calendar_type.clone(),
        meeting_link: Some(format!("https://meet.google.com/{}", t.id.to_ascii_lowercase())),
        transcript_url: Some(format!("https://app.fireflies.ai/view/{}", t.id)),
        meeting_attendees: Some(
            t.attendees
                .iter()
                .map(|a| {
                    Some(MeetingAttendee {
                        display_name: a.display_name.clone(),
                        email: Some(a.email.clone()),
                        phone_number: None,
                        name: a.display_name.clone(),
                        location: None,
                    })
                })
                .collect(),
        ),
        summary: Some(Summary {
            action_items: t.summary.action_items.clone(),
            keywords: Some(t.summary.keywords.iter().cloned().map(Some).collect()),
            outline: None,
            overview: t.summary.overview.clone(),
            shorthand_bullet: None,
            short_summary: t.summary.short_summary.clone(),
            gist: t.summary.short_summary.clone(),
            bullet_gist: None,
        }),
        user: Some(user_of(s)),
    }
}

pub struct QueryRoot;

#[Object(name = "Query", rename_args = "snake_case")]
impl QueryRoot {
    // The API key's owner, or a teammate by id (<https://docs.fireflies.ai/graphql-api/query/user>).
    async fn user(&self, ctx: &Context<'_>, id: Option<String>) -> async_graphql::Result<Option<User>> {
        let s = state(ctx)?;
        s.count_field("user");
        match id {
            Some(id) if !id.is_empty() && id != s.user_id => Err(ff_error(
                "User not found",
                "object_not_found",
                404,
                Some(json!({ "objectType": "User" })),
            )),
            _ => Ok(Some(user_of(s))),
        }
    }

    // The team's users (<https://docs.fireflies.ai/graphql-api/query/users>).
    async fn users(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Vec<Option<User>>>> {
        let s = state(ctx)?;
        s.count_field("users");
        Ok(Some(vec![Some(user_of(s))]))
    }

    // One processed meeting (<https://docs.fireflies.ai/graphql-api/query/transcript>); an id
    // that names none (deleted, still processing, never existed) is `object_not_found`.
    async fn transcript(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Option<Transcript>> {
        let s = state(ctx)?;
        s.count_field("transcript");
        match s.transcript(&id).filter(|t| !t.processing) {
            Some(t) => Ok(Some(render(s, &t))),
            None => Err(ff_error(
                "Transcript not found",
                "object_not_found",
                404,
                Some(json!({ "objectType": "Transcript" })),
            )),
        }
    }

    // Processed meetings, newest first (<https://docs.fireflies.ai/graphql-api/query/transcripts>).
    #[allow(clippy::too_many_arguments)]
    async fn transcripts(
        &self,
        ctx: &Context<'_>,
        title: Option<String>,
        date: Option<f64>,
        limit: Option<i32>,
        skip: Option<i32>,
        host_email: Option<String>,
        organizer_email: Option<String>,
        participant_email: Option<String>,
        user_id: Option<String>,
        mine: Option<bool>,
        #[graphql(name = "fromDate")] from_date: Option<DateTimeArg>,
        #[graphql(name = "toDate")] to_date: Option<DateTimeArg>,
        keyword: Option<String>,
        organizers: Option<Vec<Option<String>>>,
        participants: Option<Vec<Option<String>>>,
    ) -> async_graphql::Result<Option<Vec<Option<Transcript>>>> {
        let s = state(ctx)?;
        s.count_field("transcripts");
        // `limit`: "Maximum 50"; a negative `skip` is no page.
        let limit = limit.unwrap_or(MAX_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(invalid_argument(
                "limit",
                if limit < 1 { "min" } else { "max" },
                &format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let skip = skip.unwrap_or(0);
        if skip < 0 {
            return Err(invalid_argument("skip", "min", "skip must not be less than 0"));
        }
        // Changelog 2.4.0: only one of these filters at a time
        // (<https://docs.fireflies.ai/additional-info/change-log>).
        let exclusive =
            [organizer_email.is_some(), participant_email.is_some(), user_id.is_some(), mine.is_some()];
        if exclusive.iter().filter(|x| **x).count() > 1 {
            return Err(invalid_argument(
                "organizer_email",
                "exclusive",
                "Only one of organizer_email, participant_email, user_id and mine may be used at a time",
            ));
        }
        let from = parse_date("fromDate", from_date.as_ref())?;
        let to = parse_date("toDate", to_date.as_ref())?;
        let lower = |v: &Option<String>| v.as_ref().map(|x| x.to_ascii_lowercase());
        let (host, organizer, participant) =
            (lower(&host_email), lower(&organizer_email), lower(&participant_email));
        let organizers: Option<Vec<String>> =
            organizers.map(|v| v.iter().flatten().map(|x| x.to_ascii_lowercase()).collect());
        let participants_any: Option<Vec<String>> =
            participants.map(|v| v.iter().flatten().map(|x| x.to_ascii_lowercase()).collect());
        let found = s
            .visible()
            .into_iter()
            .filter(|t| from.is_none_or(|f| t.date >= f) && to.is_none_or(|u| t.date <= u))
            .filter(|t| date.is_none_or(|d| t.date.timestamp_millis() as f64 == d))
            .filter(|t| {
                title.as_ref().is_none_or(|x| t.title.to_lowercase().contains(&x.to_lowercase()))
                    && keyword.as_ref().is_none_or(|k| {
                        let k = k.to_lowercase();
                        t.title.to_lowercase().contains(&k)
                            || t.summary.overview.as_ref().is_some_and(|o| o.to_lowercase().contains(&k))
                    })
            })
            .filter(|t| {
                let ps = t.participants();
                host.as_ref().is_none_or(|h| &t.organizer_email == h)
                    && organizer.as_ref().is_none_or(|o| &t.organizer_email == o)
                    && participant.as_ref().is_none_or(|p| ps.contains(p))
                    && user_id.as_ref().is_none_or(|u| u == &s.user_id)
                    && mine.is_none_or(|m| !m || t.organizer_email == s.owner_email)
                    && organizers.as_ref().is_none_or(|os| os.contains(&t.organizer_email))
                    && participants_any.as_ref().is_none_or(|any| any.iter().any(|p| ps.contains(p)))
            })
            .skip(skip as usize)
            .take(limit as usize)
            .map(|t| Some(render(s, &t)))
            .collect();
        Ok(Some(found))
    }
}
