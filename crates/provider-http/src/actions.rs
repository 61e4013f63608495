//! The `http` actions: one per method, and `request` for a method chosen at run time.
//!
//! Effects are static data, so each method is its own action: `get` reads (it runs in plan
//! mode and touches no target), every other one changes one target, the URL. `request` cannot
//! know its method before the call, so it is always a change: a `request` with `method: "GET"`
//! is planned, not sent, in plan mode, and counted by the guard. Use `http::get` for reads.

use runbook_core::http::Method;
use runbook_core::{Action, ActionError, ActionSpec, ParamSpec, ParamType, Record, Records, Targets};
use serde::Deserialize;
use serde_json::{Map, Value};

/// What every call returns.
pub const RESPONSE: Record = Record::new("Response", &["status", "headers", "body"]);

const RETURNS: &str = "Response #{status, headers, body}: body is parsed JSON when the answer's content-type is JSON, \
else its text (() when empty); headers lower-cased";

const PROFILE: ParamSpec = ParamSpec::required(
    "profile",
    ParamType::String,
    "the profile's name: [providers.http.profiles.NAME] in runbook.toml",
);
const PATH: ParamSpec = ParamSpec::required(
    "path",
    ParamType::Any,
    "relative to the profile's base_url: an array of segments, each percent-encoded as one segment \
     ([\"users\", id]), or a string taken as written (no scheme, //host, backslash or climbing ..)",
);
const JSON: ParamSpec = ParamSpec::optional(
    "json",
    ParamType::Any,
    "a body sent as JSON (content-type application/json)",
);
const BODY: ParamSpec = ParamSpec::optional(
    "body",
    ParamType::String,
    "a text body sent as it is (content-type text/plain unless headers set one)",
);
const QUERY: ParamSpec = ParamSpec::optional(
    "query",
    ParamType::Map,
    "query parameters: strings, numbers, bools, or arrays of them (the key repeated)",
);
const HEADERS: ParamSpec = ParamSpec::optional(
    "headers",
    ParamType::Map,
    "request headers (string values), after the profile's own",
);
const METHOD: ParamSpec = ParamSpec::optional(
    "method",
    ParamType::String,
    "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (required)",
);
const REQUEST_PATH: ParamSpec = ParamSpec::optional(
    "path",
    ParamType::Any,
    "as for http::get (required): an array of segments or a checked string",
);

const PARAMS: &[ParamSpec] = &[PROFILE, PATH, JSON, BODY, QUERY, HEADERS];
const REQUEST_PARAMS: &[ParamSpec] = &[PROFILE, METHOD, REQUEST_PATH, JSON, BODY, QUERY, HEADERS];

/// One call, whatever action made it.
#[derive(Debug)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The profile's name.
    pub profile: String,
    /// The path as the script gave it.
    pub path: Value,
    /// A JSON body.
    pub json: Option<Value>,
    /// A text body.
    pub body: Option<String>,
    /// Query parameters.
    pub query: Option<Map<String, Value>>,
    /// Request headers.
    pub headers: Option<Map<String, Value>>,
    /// Whether the call came through `request` (whose spec cannot say whether it is idempotent).
    pub dynamic: bool,
}

macro_rules! method_action {
    ($(#[$doc:meta])* $name:ident, $method:expr, $spec:expr) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            profile: String,
            path: Value,
            json: Option<Value>,
            body: Option<String>,
            query: Option<Map<String, Value>>,
            headers: Option<Map<String, Value>>,
        }

        impl Action for $name {
            const SPEC: ActionSpec = $spec;
        }

        impl From<$name> for Call {
            fn from(args: $name) -> Call {
                Call {
                    method: $method,
                    profile: args.profile,
                    path: args.path,
                    json: args.json,
                    body: args.body,
                    query: args.query,
                    headers: args.headers,
                    dynamic: false,
                }
            }
        }
    };
}

method_action!(
    /// `http::get(profile, path, #{query, headers})`.
    Get,
    Method::GET,
    ActionSpec::read("get", "GET a path of a profile's API (a read: runs in plan mode)")
        .params(PARAMS)
        .returns(RETURNS)
        .records(Records::One(&RESPONSE))
        .example(r#"let user = http::get("directory", ["users", u.id]).body;"#)
);

method_action!(
    /// `http::post(profile, path, #{json, ...})`.
    Post,
    Method::POST,
    ActionSpec::write(
        "post",
        "POST to a path of a profile's API (a change; resent after an ambiguous failure only when the profile names an idempotency_header)"
    )
    .params(PARAMS)
    .targets(Targets::OneOf("path"))
    .returns(RETURNS)
    .records(Records::One(&RESPONSE))
    .idempotent(false)
    .example(r#"http::post("slack", "", #{json: #{text: "MFA reset for 3 users"}});"#)
);

method_action!(
    /// `http::put(profile, path, #{json, ...})`.
    Put,
    Method::PUT,
    ActionSpec::write("put", "PUT to a path of a profile's API (a change; idempotent)")
        .params(PARAMS)
        .targets(Targets::OneOf("path"))
        .returns(RETURNS)
        .records(Records::One(&RESPONSE))
        .example(r#"http::put("tickets", ["tickets", a, "status"], #{json: #{status: "closed"}});"#)
);

method_action!(
    /// `http::patch(profile, path, #{json, ...})`.
    Patch,
    Method::PATCH,
    ActionSpec::write("patch", "PATCH a path of a profile's API (a change; never resent)")
        .params(PARAMS)
        .targets(Targets::OneOf("path"))
        .returns(RETURNS)
        .records(Records::One(&RESPONSE))
        .idempotent(false)
        .example(r#"http::patch("tickets", ["tickets", a], #{json: #{assignee: "oncall"}});"#)
);

method_action!(
    /// `http::delete(profile, path, #{...})`.
    Delete,
    Method::DELETE,
    ActionSpec::write("delete", "DELETE a path of a profile's API (a change; idempotent)")
        .params(PARAMS)
        .targets(Targets::OneOf("path"))
        .returns(RETURNS)
        .records(Records::One(&RESPONSE))
        .example(r#"http::delete("directory", ["sessions", b]);"#)
);

/// `http::request(profile, #{method, path, ...})`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    profile: String,
    method: Option<String>,
    path: Option<Value>,
    json: Option<Value>,
    body: Option<String>,
    query: Option<Map<String, Value>>,
    headers: Option<Map<String, Value>>,
}

impl Action for Request {
    const SPEC: ActionSpec = ActionSpec::write(
        "request",
        "Any method to a path of a profile's API; always a change, even a GET (planned, not sent, in plan mode; counted by the guard): use http::get for reads",
    )
    .params(REQUEST_PARAMS)
    .targets(Targets::OneOf("path"))
    .returns(RETURNS)
    .records(Records::One(&RESPONSE))
    .idempotent(false)
    .example(r#"http::request("tickets", #{method: "POST", path: ["tickets"], json: #{title: "MFA reset"}});"#);
}

impl Request {
    /// The call, once method and path are known to be there and the method is one of HTTP's.
    pub fn into_call(self) -> Result<Call, ActionError> {
        let method = self.method.ok_or_else(|| {
            ActionError::invalid_args("http::request needs `method` (e.g. #{method: \"POST\", path: ...})")
        })?;
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            "OPTIONS" => Method::OPTIONS,
            _ => {
                return Err(ActionError::invalid_args(format!(
                    "`method` \"{method}\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
                )));
            }
        };
        let path = self.path.ok_or_else(|| {
            ActionError::invalid_args("http::request needs `path` (an array of segments or a string)")
        })?;
        Ok(Call {
            method,
            profile: self.profile,
            path,
            json: self.json,
            body: self.body,
            query: self.query,
            headers: self.headers,
            dynamic: true,
        })
    }
}
