//! A provider of your own: `tickets`, for a small ticketing service with a JSON API.
//!
//! The service (any service you run) answers:
//! * `GET /tickets?status=open` → `{"tickets": [{"id", "title", "status", "assignee"}]}`
//! * `POST /tickets` with `{"title", "body", "assignee"}` → `201 {"id", ...}`
//!
//! and wants `Authorization: Bearer <token>`. This crate turns that into two actions, a read
//! and a write, so that a runbook can say:
//!
//! ```rhai
//! let open = tickets::list_tickets(#{status: "open"});
//! if open.len() > 10 { tickets::open_ticket("Too many open tickets", #{assignee: "oncall"}); }
//! ```
//!
//! What it takes, in order: for each action, its arguments as a type with its [`ActionSpec`]
//! (what the engine validates, plans, guards and documents) and a handler; [`runbook_core::actions!`]
//! to tie them together; a [`Provider`] implementation (namespace, specs, dispatch); and a
//! [`ProviderDescriptor`] submitted with `inventory` so that any program linking this crate finds
//! the provider. The engine calls providers on its Tokio runtime, many calls at once: keep one
//! [`HttpClient`] (one connection pool) for all of them.

use std::sync::Arc;

use runbook_core::http::{HttpClient, HttpRequest, HttpResponse};
use runbook_core::{
    Action, ActionError, ActionSpec, CallContext, ConfigError, ParamSpec, ParamType, Provider, ProviderConfig,
    ProviderDescriptor, Record, Records, Secret, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// What scripts see of a ticket: every field below (`()` when the service leaves one out), and
/// reading any other field is an error naming the closest one.
const TICKET: Record = Record::new("Ticket", &["id", "title", "status", "assignee"]);

/// `list_tickets(#{status})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTickets {
    /// Only tickets in this status.
    pub status: Option<String>,
}

impl Action for ListTickets {
    const SPEC: ActionSpec = ActionSpec::read("list_tickets", "List tickets")
        .params(&[ParamSpec::optional(
            "status",
            ParamType::String,
            "only tickets in this status (open, closed)",
        )])
        .returns("array of Ticket {id, title, status, assignee}")
        .records(Records::List(&TICKET))
        .example(r#"tickets::list_tickets(#{status: "open"})"#);
}

/// `open_ticket(title, #{body, assignee})`: also the body the service takes.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenTicket {
    /// One line.
    pub title: String,
    /// The details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Who should act.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

impl Action for OpenTicket {
    // Opening a ticket twice opens two tickets: never resent after an ambiguous failure.
    const SPEC: ActionSpec = ActionSpec::write("open_ticket", "Open a ticket")
        .params(&[
            ParamSpec::required("title", ParamType::String, "one line"),
            ParamSpec::optional("body", ParamType::String, "the details"),
            ParamSpec::optional("assignee", ParamType::String, "who should act"),
        ])
        .idempotent(false)
        .returns("Ticket")
        .records(Records::One(&TICKET))
        .example(r#"tickets::open_ticket("Revoke MFA for ann", #{assignee: "secops"})"#);
}

/// The namespace scripts use: `tickets::...`.
pub const NAMESPACE: &str = "tickets";

runbook_core::actions! {
    /// The `tickets` actions.
    pub const ACTIONS for Tickets {
        ListTickets => list_tickets,
        OpenTicket => open_ticket,
    }
}

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
        summary: "A small ticketing service (example provider)",
        actions: ACTIONS,
        settings: "TICKETS_URL, TICKETS_TOKEN; or [providers.tickets] with url, token",
        build: |config| Ok(Arc::new(Tickets::from_config(config)?)),
    }
}

/// A ticket, as the service returns it; unknown fields are kept.
#[derive(Debug, Deserialize, Serialize)]
pub struct Ticket {
    /// Id.
    pub id: Option<Value>,
    /// One line.
    pub title: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// Who should act.
    pub assignee: Option<String>,
    /// Anything else the service returns.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct TicketList {
    tickets: Vec<Ticket>,
}

/// The provider: one HTTP client (pool, retries, rate limit) and the token.
#[derive(Debug)]
pub struct Tickets {
    http: HttpClient,
    token: Secret<String>,
}

impl Tickets {
    /// Reads `url` and `token` from `[providers.tickets]`, or `TICKETS_URL` and `TICKETS_TOKEN`.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        config.deny_unknown(&["url", "token"])?;
        let url = config.string("url", "TICKETS_URL")?;
        let token = config.secret("token", "TICKETS_TOKEN")?;
        let (Some(url), Some(token)) = (url.clone(), token) else {
            let mut missing = Vec::new();
            if url.is_none() {
                missing.push(config.setting_name("url", "TICKETS_URL"));
            }
            missing.push(config.setting_name("token", "TICKETS_TOKEN"));
            return Err(config.missing(missing));
        };
        let http = HttpClient::builder("tickets", &url)
            .build()
            .map_err(|reason| config.invalid("url", "TICKETS_URL", reason))?;
        Ok(Tickets { http, token })
    }

    async fn send(&self, ctx: &CallContext, request: HttpRequest) -> Result<HttpResponse, ActionError> {
        let response = self.http.send(ctx, request.bearer(&self.token)?).await?;
        if !response.is_success() {
            return Err(ActionError::api(
                response.status,
                format!(
                    "the tickets service answered {}: {}",
                    response.status,
                    response.excerpt(200)
                ),
            ));
        }
        Ok(response)
    }

    async fn list_tickets(&self, ctx: &CallContext, args: ListTickets) -> Result<Vec<Ticket>, ActionError> {
        let mut request = HttpRequest::get("/tickets");
        if let Some(status) = &args.status {
            request = request.query("status", status);
        }
        let list: TicketList = parse(&self.send(ctx, request).await?)?;
        Ok(list.tickets)
    }

    async fn open_ticket(&self, ctx: &CallContext, args: OpenTicket) -> Result<Ticket, ActionError> {
        let request = HttpRequest::post("/tickets").json(&args)?;
        parse(&self.send(ctx, request).await?)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(response: &HttpResponse) -> Result<T, ActionError> {
    serde_json::from_slice(&response.body)
        .map_err(|e| ActionError::invalid_response(format!("the tickets service answered something else: {e}")))
}

#[async_trait]
impl Provider for Tickets {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        // The engine has already checked the arguments against the spec.
        self.dispatch(ctx, action, args).await
    }

    // In plan mode the ticket is not opened; the script still gets something shaped like one.
    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        match action.name {
            "open_ticket" => json!({"id": "(planned)", "title": args["title"], "status": "open"}),
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_action_type_takes_what_its_spec_declares() {
        super::Tickets::check_action_types().unwrap_or_else(|e| panic!("{e}"));
    }
}
