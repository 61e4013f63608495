//! `notify = "https://..."`: a plain POST of a JSON summary when a run of the automation waits
//! for approval, needs a person, or its plan went stale.
//!
//! Best effort: each notice is sent from a task of its own with a short timeout, once; a
//! failure is logged (without the URL, which often holds a token) and never holds a worker.

use std::time::Duration;

use runbook_core::PlannedChange;
use runbook_core::plan::TargetRef;
use serde_json::{Value, json};

/// How long one notice may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Effects listed in a notice at most (the total is always given).
const LISTED: usize = 50;

/// Sends notices.
#[derive(Clone)]
pub(crate) struct Notifier {
    http: Option<reqwest::Client>,
}

impl Notifier {
    pub fn new() -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| tracing::error!(error = %e, "cannot make the HTTP client for notify: notices are not sent"))
            .ok();
        Notifier { http }
    }

    /// POSTs `notice` to `url` in the background.
    pub fn send(&self, automation: &str, url: &str, notice: Value) {
        let Some(http) = self.http.clone() else {
            return;
        };
        let (automation, url) = (automation.to_owned(), url.to_owned());
        let notice = crate::redact::redact_value(notice);
        tokio::spawn(async move {
            let what = notice["event"].as_str().unwrap_or("notice").to_owned();
            match http.post(&url).json(&notice).send().await {
                Ok(answer) if answer.status().is_success() => {
                    tracing::debug!(automation = %automation, event = %what, "notify sent");
                }
                Ok(answer) => {
                    tracing::warn!(automation = %automation, event = %what, status = answer.status().as_u16(), "the notify URL refused the notice");
                }
                Err(e) => {
                    let cause = if e.is_timeout() {
                        "it did not answer in time".to_owned()
                    } else if e.is_connect() {
                        "it could not be reached".to_owned()
                    } else {
                        "the request failed".to_owned()
                    };
                    tracing::warn!(automation = %automation, event = %what, "the notice was not delivered to the notify URL: {cause}");
                }
            }
        });
    }
}

/// The effects of a plan as a notice lists them: action, targets (labelled), step.
pub(crate) fn effects(effects: &[PlannedChange]) -> Value {
    let listed: Vec<Value> = effects
        .iter()
        .take(LISTED)
        .map(|e| {
            json!({
                "step": e.step,
                "action": e.action,
                "targets": e.labels.iter().map(TargetRef::display).collect::<Vec<_>>(),
            })
        })
        .collect();
    Value::Array(listed)
}
