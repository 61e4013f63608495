//! What an action is: its name, parameters, effect and how many targets a call touches.
//!
//! An [`ActionSpec`] is static data. The host uses it to register the action with Rhai (one
//! overload per accepted arity), to validate arguments, to decide what plan mode does with the
//! call, to count targets for the blast-radius guard, and to document the action
//! (`runbook actions NAME`).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ActionError;

/// What a call does to the service it talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Only reads. Runs for real in plan mode and touches no target.
    Read,
    /// Changes something. Not sent in plan mode; counted by the guard.
    Write,
    /// Removes something that cannot be brought back. Not sent in plan mode; counted by the guard.
    Destructive,
}

impl Effect {
    /// Whether calls with this effect change the service (and so are planned, not sent, in plan mode).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Effect::Read)
    }

    /// The lower-case name used in output and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Destructive => "destructive",
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The type a parameter accepts, checked before the provider sees the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A string.
    String,
    /// An integer.
    Integer,
    /// `true` or `false`.
    Bool,
    /// An object map (`#{...}`).
    Map,
    /// An array.
    Array,
    /// One string, or an array of strings (e.g. one user id or several).
    StringOrArray,
    /// Anything that converts to JSON.
    Any,
}

impl ParamType {
    /// The name shown in documentation and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "int",
            ParamType::Bool => "bool",
            ParamType::Map => "map",
            ParamType::Array => "array",
            ParamType::StringOrArray => "string or array",
            ParamType::Any => "any",
        }
    }

    /// Whether a JSON value has this type. `null` is never accepted: an absent optional
    /// parameter is simply left out.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Bool => value.is_boolean(),
            ParamType::Map => value.is_object(),
            ParamType::Array => value.is_array(),
            ParamType::StringOrArray => {
                value.is_string() || value.as_array().is_some_and(|items| items.iter().all(Value::is_string))
            }
            ParamType::Any => !value.is_null(),
        }
    }
}

/// One parameter of an action.
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct ParamSpec {
    /// Name, as used in the options map and in `call("ns.action", #{name: ...})`.
    pub name: &'static str,
    /// Accepted type.
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Required parameters are positional in scripts; optional ones go in the trailing options map.
    pub required: bool,
    /// Holds a secret: shown as `"***"` in audit records and plans.
    pub secret: bool,
    /// One line for the reference.
    pub doc: &'static str,
}

impl ParamSpec {
    /// A required (positional) parameter.
    pub const fn required(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        ParamSpec {
            name,
            ty,
            required: true,
            secret: false,
            doc,
        }
    }

    /// An optional parameter, passed in the trailing options map.
    pub const fn optional(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        ParamSpec {
            name,
            ty,
            required: false,
            secret: false,
            doc,
        }
    }

    /// Marks the parameter as holding a secret.
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

/// How many targets (users, records, ...) one call touches: what the blast-radius guard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "param")]
pub enum Targets {
    /// No target (reads).
    None,
    /// Exactly one target per call, named by the first required parameter.
    One,
    /// Exactly one target per call, named by this parameter (an array value, a path of
    /// segments, is one target: its items joined with `/`).
    OneOf(&'static str),
    /// As many targets as the named parameter holds: its length when it is an array, one when it
    /// is a single value, none when it is absent.
    CountOf(&'static str),
}

/// A record an action returns: a named object with known fields. Scripts see every field (one the
/// service left out reads `()`), and reading a field the record does not have is an error naming
/// the closest one, at run time and in `runbook check`. Fields the service returns beyond these
/// stay readable. Nested objects are plain maps.
///
/// At run time a map is taken for a record when it holds every field of that record, so a record
/// of one or two common field names would catch maps a script builds itself: give a record its
/// full field list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The name scripts' error messages use (`User`).
    pub name: &'static str,
    /// Every field, as the service names it.
    pub fields: &'static [&'static str],
}

impl Record {
    /// A record and its fields.
    pub const fn new(name: &'static str, fields: &'static [&'static str]) -> Self {
        Record { name, fields }
    }

    /// Whether the record has this field.
    pub fn has(&self, field: &str) -> bool {
        self.fields.contains(&field)
    }
}

/// How an action's result holds its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "shape", content = "record")]
pub enum Records {
    /// One record.
    One(&'static Record),
    /// One record, or `()` when there is none.
    Optional(&'static Record),
    /// An array of records.
    List(&'static Record),
}

impl Records {
    /// The record.
    pub fn record(self) -> &'static Record {
        match self {
            Records::One(r) | Records::Optional(r) | Records::List(r) => r,
        }
    }
}

/// Everything the engine knows about one action.
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct ActionSpec {
    /// Name inside the provider's namespace (`list_users`).
    pub name: &'static str,
    /// One line: what the action does.
    pub summary: &'static str,
    /// Parameters: required ones first, in positional order.
    pub params: &'static [ParamSpec],
    /// What the action returns, in words (`array of User (all pages)`).
    pub returns: &'static str,
    /// The record the result holds, when it holds one.
    pub records: Option<Records>,
    /// What a call does to the service.
    pub effect: Effect,
    /// Whether sending the call twice has the same effect as sending it once. Only idempotent
    /// requests are retried after an ambiguous failure.
    pub idempotent: bool,
    /// How the guard counts this call's targets.
    pub targets: Targets,
    /// A script line showing a typical call.
    pub example: &'static str,
    /// For a non-idempotent write: the read that tells whether a call in doubt (sent, never
    /// answered) took effect, in words (`a user with that email`). The provider answers it in
    /// [`crate::Provider::probe`]. Without one, a call in doubt waits for a person.
    pub probe: Option<&'static str>,
}

impl ActionSpec {
    /// A read-only action: idempotent, no targets.
    pub const fn read(name: &'static str, summary: &'static str) -> Self {
        ActionSpec {
            name,
            summary,
            params: &[],
            returns: "()",
            records: None,
            effect: Effect::Read,
            idempotent: true,
            targets: Targets::None,
            example: "",
            probe: None,
        }
    }

    /// A mutating action touching one target per call, idempotent unless said otherwise.
    pub const fn write(name: &'static str, summary: &'static str) -> Self {
        ActionSpec {
            name,
            summary,
            params: &[],
            returns: "()",
            records: None,
            effect: Effect::Write,
            idempotent: true,
            targets: Targets::One,
            example: "",
            probe: None,
        }
    }

    /// A destructive action touching one target per call.
    pub const fn destructive(name: &'static str, summary: &'static str) -> Self {
        ActionSpec {
            name,
            summary,
            params: &[],
            returns: "()",
            records: None,
            effect: Effect::Destructive,
            idempotent: true,
            targets: Targets::One,
            example: "",
            probe: None,
        }
    }

    /// Sets the parameters (required ones first).
    pub const fn params(mut self, params: &'static [ParamSpec]) -> Self {
        self.params = params;
        self
    }

    /// Describes the result.
    pub const fn returns(mut self, returns: &'static str) -> Self {
        self.returns = returns;
        self
    }

    /// Declares the record the result holds: its fields become strict in scripts.
    pub const fn records(mut self, records: Records) -> Self {
        self.records = Some(records);
        self
    }

    /// Declares whether the call may be resent after an ambiguous failure.
    pub const fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// Sets how targets are counted.
    pub const fn targets(mut self, targets: Targets) -> Self {
        self.targets = targets;
        self
    }

    /// A script line showing a typical call.
    pub const fn example(mut self, example: &'static str) -> Self {
        self.example = example;
        self
    }

    /// Declares the probe of a non-idempotent write, in words; the provider answers it in
    /// [`crate::Provider::probe`].
    pub const fn probe(mut self, probe: &'static str) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The required parameters, in positional order.
    pub fn required_params(&self) -> impl Iterator<Item = &ParamSpec> {
        self.params.iter().filter(|p| p.required)
    }

    /// Whether the action has any optional parameter.
    pub fn has_optional_params(&self) -> bool {
        self.params.iter().any(|p| !p.required)
    }

    /// The numbers of arguments a script may pass: the required parameters positionally, then an
    /// optional options map; or, when there are required parameters, all of them in one map.
    pub fn arities(&self) -> Vec<usize> {
        let required = self.required_params().count();
        let mut arities = vec![required];
        if self.has_optional_params() {
            arities.push(required + 1);
        }
        if required >= 2 {
            arities.push(1);
        }
        arities.sort_unstable();
        arities.dedup();
        arities
    }

    /// A signature for documentation: `update_user(user_id, #{email, name})`.
    pub fn signature(&self) -> String {
        let mut parts: Vec<String> = self.required_params().map(|p| p.name.to_owned()).collect();
        let optional: Vec<&str> = self.params.iter().filter(|p| !p.required).map(|p| p.name).collect();
        if !optional.is_empty() {
            parts.push(format!("#{{{}}}", optional.join(", ")));
        }
        format!("{}({})", self.name, parts.join(", "))
    }

    /// The targets a call with these (validated) arguments names: the values of the parameter
    /// [`Targets::CountOf`] names, the first required parameter's value for [`Targets::One`], or
    /// the value of the parameter [`Targets::OneOf`] names.
    pub fn target_ids(&self, args: &Value) -> Vec<String> {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let param = match self.targets {
            Targets::None => return Vec::new(),
            Targets::OneOf(param) => {
                return match args.get(param) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(items)) => vec![items.iter().map(text).collect::<Vec<_>>().join("/")],
                    Some(v) => vec![text(v)],
                };
            }
            Targets::One => match self.required_params().next() {
                Some(p) => p.name,
                None => return Vec::new(),
            },
            Targets::CountOf(param) => param,
        };
        match args.get(param) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().map(text).collect(),
            Some(v) => vec![text(v)],
        }
    }

    /// How many targets a call with these (validated) arguments touches.
    pub fn count_targets(&self, args: &Value) -> u64 {
        match self.targets {
            Targets::None => 0,
            Targets::One | Targets::OneOf(_) => 1,
            Targets::CountOf(param) => match args.get(param) {
                None | Some(Value::Null) => 0,
                Some(Value::Array(items)) => items.len() as u64,
                Some(_) => 1,
            },
        }
    }
}

/// An action's arguments as a type, tied to the action's spec: the struct a provider's handler
/// receives. Derive `Deserialize` with `#[serde(deny_unknown_fields)]`, one field per parameter
/// of the spec (optional parameters as `Option`), and list the type in [`actions!`](crate::actions).
///
/// ```
/// use runbook_core::{Action, ActionSpec, ParamSpec, ParamType};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct GetTicket {
///     id: String,
/// }
///
/// impl Action for GetTicket {
///     const SPEC: ActionSpec = ActionSpec::read("get_ticket", "Get one ticket")
///         .params(&[ParamSpec::required("id", ParamType::String, "the ticket's id")]);
/// }
///
/// let args = GetTicket::parse(serde_json::json!({"id": "T-1"})).unwrap();
/// assert_eq!(args.id, "T-1");
/// let err = GetTicket::parse(serde_json::json!({"id": "T-1", "idd": 2})).err().unwrap();
/// assert!(err.message.contains("unknown field `idd`"), "{}", err.message);
/// ```
pub trait Action: DeserializeOwned {
    /// The action's spec.
    const SPEC: ActionSpec;

    /// Reads a call's arguments (already checked against the spec by the engine).
    fn parse(args: Value) -> Result<Self, ActionError> {
        serde_json::from_value(args).map_err(|e| {
            ActionError::invalid_args(format!(
                "{}: the arguments do not fit the action's own type ({e}); this is a mistake in the provider",
                Self::SPEC.name
            ))
        })
    }

    /// Whether the type takes exactly what its spec declares: every parameter, each with a value
    /// of its declared type, and the required ones alone. For a provider's tests
    /// ([`actions!`](crate::actions) generates one check for all of a provider's actions): a
    /// parameter the type does not have, or a type it cannot take, would otherwise show only when
    /// a script first passes it.
    fn check_against_spec() -> Result<(), String> {
        let shapes = |value: fn(ParamType) -> Value, required_only: bool| {
            let args: serde_json::Map<String, Value> = Self::SPEC
                .params
                .iter()
                .filter(|p| p.required || !required_only)
                .map(|p| (p.name.to_owned(), value(p.ty)))
                .collect();
            Value::Object(args)
        };
        fn one(ty: ParamType) -> Value {
            match ty {
                ParamType::String | ParamType::StringOrArray | ParamType::Any => Value::String("x".to_owned()),
                ParamType::Integer => Value::from(1),
                ParamType::Bool => Value::Bool(true),
                ParamType::Map => Value::Object(serde_json::Map::new()),
                ParamType::Array => Value::Array(Vec::new()),
            }
        }
        fn several(ty: ParamType) -> Value {
            match ty {
                ParamType::StringOrArray => Value::Array(vec![Value::String("x".to_owned())]),
                other => one(other),
            }
        }
        for args in [shapes(one, false), shapes(several, false), shapes(one, true)] {
            Self::parse(args.clone()).map_err(|e| format!("{} with {args}: {}", Self::SPEC.name, e.message))?;
        }
        Ok(())
    }
}

/// Declares a provider's actions in one place: the list of specs, and the dispatch that hands
/// each call to its handler with its typed arguments. Each handler is an `async fn(&self,
/// &CallContext, Args) -> Result<T, ActionError>` where `T: Serialize`.
///
/// ```
/// use runbook_core::{Action, ActionError, ActionSpec, CallContext, ParamSpec, ParamType};
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// pub struct Ping {
///     text: Option<String>,
/// }
/// impl Action for Ping {
///     const SPEC: ActionSpec = ActionSpec::read("ping", "Echo")
///         .params(&[ParamSpec::optional("text", ParamType::String, "what to echo")]);
/// }
///
/// pub struct Echo;
///
/// impl Echo {
///     async fn ping(&self, _: &CallContext, args: Ping) -> Result<String, ActionError> {
///         Ok(args.text.unwrap_or_else(|| "pong".into()))
///     }
/// }
///
/// runbook_core::actions! {
///     /// Every action of `echo`.
///     pub const ACTIONS for Echo { Ping => ping }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let out = Echo.dispatch(&CallContext::detached("echo.ping"), &ACTIONS[0], serde_json::json!({})).await;
/// assert_eq!(out.unwrap(), serde_json::json!("pong"));
/// # });
/// ```
#[macro_export]
macro_rules! actions {
    ($(#[$meta:meta])* $vis:vis const $name:ident for $provider:ty { $($args:ty => $method:ident),+ $(,)? }) => {
        $(#[$meta])*
        $vis const $name: &[$crate::ActionSpec] = &[$(<$args as $crate::Action>::SPEC),+];

        impl $provider {
            /// Hands a call to its action's handler, with the arguments parsed into the action's type.
            pub async fn dispatch(
                &self,
                ctx: &$crate::CallContext,
                action: &$crate::ActionSpec,
                args: $crate::serde_json::Value,
            ) -> ::std::result::Result<$crate::serde_json::Value, $crate::ActionError> {
                $(
                    if action.name == <$args as $crate::Action>::SPEC.name {
                        let args = <$args as $crate::Action>::parse(args)?;
                        let out = self.$method(ctx, args).await?;
                        return $crate::serde_json::to_value(&out).map_err(|e| {
                            $crate::ActionError::invalid_response(format!("cannot convert the answer: {e}"))
                        });
                    }
                )+
                Err($crate::ActionError::invalid_args(format!("there is no action `{}` here", action.name)))
            }

            /// Checks every action's type against its spec (`Action::check_against_spec`): for a test.
            pub fn check_action_types() -> ::std::result::Result<(), ::std::string::String> {
                $( <$args as $crate::Action>::check_against_spec()?; )+
                Ok(())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDS: &[ParamSpec] = &[ParamSpec::required(
        "ids",
        ParamType::StringOrArray,
        "one id or several",
    )];

    #[test]
    fn targets_follow_the_counted_parameter() {
        let spec = ActionSpec::write("reset", "")
            .params(IDS)
            .targets(Targets::CountOf("ids"));
        assert_eq!(spec.count_targets(&json!({"ids": ["a", "b", "c"]})), 3);
        assert_eq!(spec.count_targets(&json!({"ids": "a"})), 1);
        assert_eq!(spec.count_targets(&json!({"ids": []})), 0);
    }

    #[test]
    fn one_of_names_its_parameter_as_the_one_target() {
        const PARAMS: &[ParamSpec] = &[
            ParamSpec::required("profile", ParamType::String, ""),
            ParamSpec::required("path", ParamType::Any, ""),
        ];
        let spec = ActionSpec::write("post", "")
            .params(PARAMS)
            .targets(Targets::OneOf("path"));
        let args = json!({"profile": "api", "path": ["users", "u1", 7]});
        assert_eq!(spec.count_targets(&args), 1, "an array path is one target");
        assert_eq!(spec.target_ids(&args), vec!["users/u1/7"]);
        assert_eq!(
            spec.target_ids(&json!({"profile": "api", "path": "users/u2"})),
            vec!["users/u2"]
        );
    }

    #[test]
    fn arities_allow_positional_options_and_named_forms() {
        const UPDATE: &[ParamSpec] = &[
            ParamSpec::required("user_id", ParamType::String, ""),
            ParamSpec::optional("name", ParamType::String, ""),
        ];
        const TWO: &[ParamSpec] = &[
            ParamSpec::required("user_id", ParamType::String, ""),
            ParamSpec::required("settings", ParamType::Map, ""),
        ];
        assert_eq!(ActionSpec::write("u", "").params(UPDATE).arities(), vec![1, 2]);
        assert_eq!(ActionSpec::write("s", "").params(TWO).arities(), vec![1, 2]);
        assert_eq!(ActionSpec::read("l", "").arities(), vec![0]);
        assert_eq!(
            ActionSpec::write("u", "").params(UPDATE).signature(),
            "u(user_id, #{name})"
        );
    }
}
