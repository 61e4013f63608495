//! The provider interface, and how providers register themselves.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::action::ActionSpec;
use crate::config::ProviderConfig;
use crate::context::CallContext;
use crate::error::{ActionError, ConfigError};

/// A plugin wrapping one service's API: a namespace of actions.
///
/// The engine validates arguments against the [`ActionSpec`] before `call` sees them (required
/// parameters present, types right, no unknown keys), handles plan mode and the blast-radius
/// guard, and records the call in the audit trail. The provider parses the arguments into the
/// action's own type ([`crate::Action::parse`]; [`crate::actions!`] writes that dispatch), talks
/// to the service through [`crate::http::HttpClient`], and returns JSON. Calls run in the
/// engine's Tokio runtime context, many at once: a provider keeps one `HttpClient` for all of
/// them (which keeps a connection on each lane its calls run on).
#[async_trait]
pub trait Provider: Send + Sync {
    /// The namespace scripts use (`cloudflare` for `cloudflare::list_users()`).
    fn namespace(&self) -> &str;

    /// Every action the provider offers.
    fn actions(&self) -> &[ActionSpec];

    /// Performs one call. `args` is a JSON object keyed by parameter name.
    async fn call(&self, ctx: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError>;

    /// What a mutating call returns in plan mode, where it is not sent: `()` by default; a
    /// create returns the would-be object with `"id": "(planned)"`.
    fn planned_result(&self, action: &ActionSpec, args: &Value) -> Value {
        let _ = (action, args);
        Value::Null
    }

    /// For an action whose spec declares a [`ActionSpec::probe`]: whether a call with these
    /// arguments, sent but never answered, took effect — by reading the service (a user with that
    /// email exists). `Found` carries what the call would have returned. Called only on resume,
    /// for a call in doubt; the default finds nothing to say.
    async fn probe(&self, ctx: &CallContext, action: &ActionSpec, args: &Value) -> Result<Probed, ActionError> {
        let _ = (ctx, args);
        Err(ActionError::invalid_args(format!(
            "{}.{} declares a probe the provider does not answer; this is a mistake in the provider",
            self.namespace(),
            action.name
        )))
    }

    /// Who target `id` of a call to `action` is, for the policy (`[policy] protect`): the object
    /// as a read would show it — with `email`, `principal` or `name`, and `roles` (a list,
    /// empty when the service has no roles) — or `None` when the service does not know it.
    /// Asked only for a target no read of the run showed, when a rule looks at names or roles;
    /// without an answer the call is refused (the policy fails closed). The default knows
    /// nobody.
    async fn identify(&self, ctx: &CallContext, action: &ActionSpec, id: &str) -> Result<Option<Value>, ActionError> {
        let _ = (ctx, action, id);
        Ok(None)
    }
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum Probed {
    /// The call took effect: this is its result.
    Found(Value),
    /// The call did not take effect: it may be sent.
    NotFound,
}

/// A provider crate's registration, collected with [`inventory`]:
///
/// ```
/// use std::sync::Arc;
/// use runbook_core::{ActionError, ActionSpec, CallContext, Provider, ProviderDescriptor, async_trait};
///
/// const ACTIONS: &[ActionSpec] = &[ActionSpec::read("ping", "Check the service").example("tickets::ping()")];
///
/// struct Tickets;
///
/// #[async_trait]
/// impl Provider for Tickets {
///     fn namespace(&self) -> &str { "tickets" }
///     fn actions(&self) -> &[ActionSpec] { ACTIONS }
///     async fn call(&self, _: &CallContext, _: &ActionSpec, _: serde_json::Value) -> Result<serde_json::Value, ActionError> {
///         Ok(serde_json::json!("pong"))
///     }
/// }
///
/// runbook_core::inventory::submit! {
///     ProviderDescriptor {
///         namespace: "tickets",
///         summary: "A ticketing API",
///         actions: ACTIONS,
///         settings: "TICKETS_URL, TICKETS_TOKEN",
///         build: |_config| Ok(Arc::new(Tickets)),
///     }
/// }
///
/// assert!(runbook_core::registered_providers().iter().any(|d| d.namespace == "tickets"));
/// ```
///
/// A binary must link the crate for its descriptor to be collected (`use my_provider as _;`);
/// `examples/custom-provider` is a complete one.
pub struct ProviderDescriptor {
    /// The namespace.
    pub namespace: &'static str,
    /// One line about the service.
    pub summary: &'static str,
    /// The actions (the same as the built provider's).
    pub actions: &'static [ActionSpec],
    /// How to configure it, in words, for `runbook actions`.
    pub settings: &'static str,
    /// Builds the provider from its settings; fails naming what is missing or wrong.
    pub build: fn(&ProviderConfig) -> Result<Arc<dyn Provider>, ConfigError>,
}

inventory::collect!(ProviderDescriptor);

/// Every provider linked into this program, sorted by namespace.
pub fn registered_providers() -> Vec<&'static ProviderDescriptor> {
    let mut all: Vec<&'static ProviderDescriptor> = inventory::iter::<ProviderDescriptor>.into_iter().collect();
    all.sort_by_key(|d| d.namespace);
    all
}
