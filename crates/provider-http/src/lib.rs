//! # runbook-provider-http
//!
//! The `http` namespace: any HTTP API a script needs beside the built-in providers (a chat
//! webhook, a ticketing API, an in-house service), reached through **named profiles** in
//! `runbook.toml` — `[providers.http.profiles.NAME]` with a `base_url`, one auth (bearer, basic,
//! a header, or an HMAC-SHA256 signature of the body), default headers, a rate budget, a
//! timeout and an extra CA.
//!
//! - `http::get(profile, path, #{query, headers})` reads; `post`, `put`, `patch` and `delete`
//!   (with `#{json, body, query, headers}`) change one target each: they are planned, not sent,
//!   in plan mode, and counted by the blast-radius guard. `http::request(profile, #{method,
//!   path, ...})` is always a change, whatever its method (an action's effect is static data).
//! - **Allow-list** (`target`): `path` is relative to the profile's `base_url`; an absolute URL,
//!   a `//host`, a backslash, `..` segments that climb out of the base, and any redirect are
//!   refused, the first four before any connection is made. An array path has each element
//!   percent-encoded as one segment.
//! - **Retries**: GET, PUT and DELETE are resent after an ambiguous failure (a 503, a reset
//!   connection); POST and PATCH are not — unless the profile names an `idempotency_header`:
//!   then each POST carries a key made of the run id and the step key (the same on a resumed
//!   run) and is resent like an idempotent call.
//! - **Answers**: `#{status, headers, body}`, the body parsed when the content-type is JSON;
//!   a 4xx or 5xx is an error the script can catch, with `status` and `body` (an excerpt).
//!   Credentials are [`runbook_core::Secret`]s, scrubbed from every output.

mod actions;
mod answer;
mod auth;
mod profile;
mod target;

use std::collections::BTreeMap;
use std::sync::Arc;

use runbook_core::http::header::{self, HeaderName, HeaderValue};
use runbook_core::http::{HttpRequest, Method};
use runbook_core::{
    ActionError, ActionSpec, CallContext, ConfigError, Provider, ProviderConfig, ProviderDescriptor, async_trait,
};
use serde_json::{Value, json};

pub use actions::{Call, Delete, Get, Patch, Post, Put, RESPONSE, Request};
pub use answer::EXCERPT;
use profile::Profile;

/// The namespace scripts use: `http::...`.
pub const NAMESPACE: &str = "http";

runbook_core::actions! {
    /// Every action of the `http` namespace.
    pub const ACTIONS for HttpProvider {
        Get => get,
        Post => post,
        Put => put,
        Patch => patch,
        Delete => delete,
        Request => request,
    }
}

const SETTINGS: &str = "[providers.http.profiles.NAME] in runbook.toml, one per API: base_url (https; http only for \
loopback or with allow_http = true), one of bearer, basic = { user, password }, header = { name, value }, \
hmac = { header, secret }; headers, rate_limit (\"10/1s\"), timeout, max_body (\"8MiB\", the largest answer \
read), ca_cert (PEM file), idempotency_header, secret_url (the URL is the credential)";

runbook_core::inventory::submit! {
    ProviderDescriptor {
        namespace: NAMESPACE,
        summary: "Any HTTP API, through named profiles: an allow-list of base URLs, their auth and budgets",
        actions: ACTIONS,
        settings: SETTINGS,
        build,
    }
}

fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(HttpProvider::from_config(config)?))
}

/// Headers a script cannot set: they would change where the request goes or how it is framed.
const FORBIDDEN_HEADERS: &[HeaderName] = &[header::HOST, header::CONTENT_LENGTH, header::TRANSFER_ENCODING];

/// The http provider: its profiles.
#[derive(Debug)]
pub struct HttpProvider {
    profiles: BTreeMap<String, Profile>,
}

impl HttpProvider {
    /// Builds the provider from `[providers.http]`.
    pub fn from_config(config: &ProviderConfig) -> Result<Self, ConfigError> {
        Ok(HttpProvider {
            profiles: profile::profiles(config)?,
        })
    }

    fn profile(&self, name: &str) -> Result<&Profile, ActionError> {
        self.profiles.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            ActionError::invalid_args(format!(
                "there is no http profile \"{name}\"; the configured ones are {} ([providers.http.profiles.NAME] in runbook.toml)",
                known.join(", ")
            ))
        })
    }

    async fn get(&self, ctx: &CallContext, args: Get) -> Result<Value, ActionError> {
        self.send(ctx, args.into()).await
    }

    async fn post(&self, ctx: &CallContext, args: Post) -> Result<Value, ActionError> {
        self.send(ctx, args.into()).await
    }

    async fn put(&self, ctx: &CallContext, args: Put) -> Result<Value, ActionError> {
        self.send(ctx, args.into()).await
    }

    async fn patch(&self, ctx: &CallContext, args: Patch) -> Result<Value, ActionError> {
        self.send(ctx, args.into()).await
    }

    async fn delete(&self, ctx: &CallContext, args: Delete) -> Result<Value, ActionError> {
        self.send(ctx, args.into()).await
    }

    async fn request(&self, ctx: &CallContext, args: Request) -> Result<Value, ActionError> {
        self.send(ctx, args.into_call()?).await
    }

    /// Checks the call against its profile, builds the request and reads the answer.
    async fn send(&self, ctx: &CallContext, call: Call) -> Result<Value, ActionError> {
        let profile = self.profile(&call.profile)?;
        let path = target::relative_path(&call.path).map_err(|reason| refused(profile, &reason))?;
        target::within(&profile.base, &format!("{}{path}", profile.http.base_url()))
            .map_err(|reason| refused(profile, &format!("{reason}; nothing was sent")))?;

        let mut request = HttpRequest::new(call.method.clone(), path.clone());
        for (key, value) in call.query.iter().flatten() {
            request = query(request, key, value)?;
        }
        for (name, value) in &profile.headers {
            request = request.header(name.clone(), value.clone());
        }
        let (body, content_type) = match (&call.json, &call.body) {
            (Some(_), Some(_)) => {
                return Err(ActionError::invalid_args("give either `json` or `body`, not both"));
            }
            (Some(json), None) => (
                serde_json::to_vec(json)
                    .map_err(|e| ActionError::invalid_args(format!("`json` cannot be written as JSON: {e}")))?,
                Some("application/json"),
            ),
            (None, Some(text)) => (text.clone().into_bytes(), Some("text/plain; charset=utf-8")),
            (None, None) => (Vec::new(), None),
        };
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        for (key, value) in call.headers.iter().flatten() {
            let (name, value) = script_header(profile, key, value)?;
            request = request.header(name, value);
        }
        if content_type.is_some() {
            request = request.raw_body(body.clone());
        }
        if let Some(auth) = &profile.auth {
            request = auth.apply(request, &body)?;
        }
        let mut resendable = call.dynamic.then_some(matches!(
            call.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
        ));
        if call.method == Method::POST
            && let Some(name) = &profile.idempotency_header
        {
            let key = idempotency_key(ctx);
            let value = HeaderValue::from_str(&key)
                .map_err(|_| ActionError::invalid_args("the idempotency key cannot be sent in a header"))?;
            request = request.header(name.clone(), value);
            resendable = Some(true);
        }
        if let Some(resendable) = resendable {
            request = request.idempotent(resendable);
        }
        let response = profile.http.send(ctx, request).await?;
        answer::read(&profile.name, &call.method, &path, response)
    }
}

fn refused(profile: &Profile, reason: &str) -> ActionError {
    ActionError::new(
        runbook_core::ActionErrorKind::Refused,
        format!(
            "refused for profile \"{}\": {reason}. A script reaches only the APIs its profiles name",
            profile.name
        ),
    )
    .with_code("outside_profile")
}

/// The key a POST carries: the same for the same step of the same run, so a resumed run's
/// resend is recognised by the API as the call it already has.
fn idempotency_key(ctx: &CallContext) -> String {
    match ctx.step() {
        Some(step) => format!("runbook-{}-{}", ctx.run_id(), step.replace('/', ".")),
        None => format!("runbook-{}", uuid::Uuid::new_v4()),
    }
}

fn query(request: HttpRequest, key: &str, value: &Value) -> Result<HttpRequest, ActionError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(ActionError::invalid_args(format!(
            "query parameter `{key}` is {other}; give a string, a number, a bool or an array of them"
        ))),
    };
    match value {
        Value::Array(items) => items
            .iter()
            .try_fold(request, |request, item| Ok(request.query(key, scalar(item)?))),
        other => Ok(request.query(key, scalar(other)?)),
    }
}

fn script_header(profile: &Profile, key: &str, value: &Value) -> Result<(HeaderName, HeaderValue), ActionError> {
    let name = HeaderName::from_bytes(key.as_bytes())
        .map_err(|_| ActionError::invalid_args(format!("\"{key}\" is not a header name")))?;
    if FORBIDDEN_HEADERS.contains(&name) {
        return Err(ActionError::invalid_args(format!(
            "the header {name} is set by runbook, not by scripts"
        )));
    }
    if profile.auth.as_ref().is_some_and(|auth| auth.header() == name) {
        return Err(ActionError::invalid_args(format!(
            "the header {name} carries profile \"{}\"'s credential and cannot be set by the script",
            profile.name
        )));
    }
    let Value::String(text) = value else {
        return Err(ActionError::invalid_args(format!(
            "header {name} must be a string, got {value}"
        )));
    };
    let value = HeaderValue::from_str(text)
        .map_err(|_| ActionError::invalid_args(format!("the value of header {name} cannot be sent in a header")))?;
    Ok((name, value))
}

#[async_trait]
impl Provider for HttpProvider {
    fn namespace(&self) -> &str {
        NAMESPACE
    }

    fn actions(&self) -> &[ActionSpec] {
        ACTIONS
    }

    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        self.dispatch(ctx, action, args).await
    }

    /// A change in plan mode is not sent: the record has no status, headers or body.
    fn planned_result(&self, _action: &ActionSpec, _args: &Value) -> Value {
        json!({"status": null, "headers": {}, "body": null})
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_action_type_takes_what_its_spec_declares() {
        super::HttpProvider::check_action_types().unwrap_or_else(|e| panic!("{e}"));
    }
}
