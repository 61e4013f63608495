//! Saved plans and applying exactly them.
//!
//! `runbook plan --out F.plan` saves a [`SavedPlan`]: the script's and params' digests, the engine
//! version, the ordered planned effects (step key, action, arguments shown and their digest,
//! targets with labels), the digest of those effects, and the values `now()` returned. Applying
//! it re-plans with fresh reads and compares the effects ([`SavedPlan::diff`]); when they match,
//! the run goes ahead with an [`Expectation`]: every change it is about to send must be the
//! approved effect at its step, or the run stops as `stale` before the change leaves.
//!
//! A planned create returns a placeholder (`"id": "(planned)"`); when the apply makes the real
//! object, its values **bind** to the placeholder, so a later approved effect that named
//! `(planned)` matches the real value — and only a value this apply itself created.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::journal::{JournalEntry, StepKind, digest};
use crate::run::PlannedChange;

/// The format of saved plans this engine writes; a plan of another format is refused.
pub const PLAN_VERSION: u32 = 1;

/// The engine's version, recorded in saved plans: a plan is applied by the engine that made it.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a planned create returns in place of a value the service will choose.
pub const PLACEHOLDER: &str = "(planned)";

/// One target of a change: its id and, where a read told, a label people know it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    /// The id (or value) the call names.
    pub id: String,
    /// An email, principal or name, when a read of the run showed one for this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl TargetRef {
    /// `alice@example.com (a4bf58e7-…)`, or the id alone.
    pub fn display(&self) -> String {
        match &self.label {
            Some(label) if label != &self.id => format!("{label} ({})", self.id),
            _ => self.id.clone(),
        }
    }
}

/// A value `now()` returned in a plan, at its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockReading {
    /// The step key of the `now()` call.
    pub step: String,
    /// What it returned (unix seconds).
    pub value: Value,
}

/// A plan saved for review and for `runbook apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// Always `runbook-plan`: what this file is.
    pub kind: String,
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// The engine that made it ([`ENGINE_VERSION`]).
    pub engine: String,
    /// When the plan was made (RFC 3339).
    pub created_at: String,
    /// The script's path as given.
    pub script: String,
    /// SHA-256 of the script's text.
    pub script_sha256: String,
    /// The params the script ran with.
    pub params: Map<String, Value>,
    /// SHA-256 of the params.
    pub params_sha256: String,
    /// The guard's cap the plan was made under.
    pub max_changes: u64,
    /// Targets all effects touch.
    pub total_targets: u64,
    /// The planned effects, in step order.
    pub effects: Vec<PlannedChange>,
    /// SHA-256 of `effects`: a plan whose effects were edited is refused.
    pub effects_sha256: String,
    /// What `now()` returned: a re-plan and the apply see the same values.
    #[serde(default)]
    pub clock: Vec<ClockReading>,
}

/// Why a saved plan cannot be applied as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanMismatch {
    /// The file is not a plan this engine can read, or it was edited.
    #[error("{0}")]
    Invalid(String),
    /// The script, params or engine changed since the plan was made.
    #[error("{0}")]
    Changed(String),
}

impl SavedPlan {
    /// A plan of `effects`, made by running `source` with `params`.
    pub fn new(
        script: impl Into<String>,
        source: &str,
        params: Map<String, Value>,
        max_changes: u64,
        effects: Vec<PlannedChange>,
        clock: Vec<ClockReading>,
    ) -> SavedPlan {
        let effects_sha256 = effects_digest(&effects);
        SavedPlan {
            kind: "runbook-plan".to_owned(),
            version: PLAN_VERSION,
            engine: ENGINE_VERSION.to_owned(),
            created_at: jiff::Timestamp::now().to_string(),
            script: script.into(),
            script_sha256: crate::journal::hex_digest(source.as_bytes()),
            params_sha256: digest(&Value::Object(params.clone())),
            params,
            max_changes,
            total_targets: effects.iter().map(|e| e.targets).sum(),
            effects,
            effects_sha256,
            clock,
        }
    }

    /// Reads a plan file's text, refusing one of another format or whose effects were edited.
    pub fn parse(text: &str) -> Result<SavedPlan, PlanMismatch> {
        let probe: Value = serde_json::from_str(text)
            .map_err(|e| PlanMismatch::Invalid(format!("it is not a plan runbook wrote (not JSON: {e})")))?;
        if probe.get("kind").and_then(Value::as_str) != Some("runbook-plan") {
            return Err(PlanMismatch::Invalid(
                "it is not a plan runbook wrote (no \"kind\": \"runbook-plan\")".to_owned(),
            ));
        }
        match probe.get("version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(PLAN_VERSION) => {}
            other => {
                return Err(PlanMismatch::Invalid(format!(
                    "it is a plan of format {}, and this runbook reads format {PLAN_VERSION}: make the plan again \
                     with this runbook",
                    other.map_or("(none)".to_owned(), |v| v.to_string())
                )));
            }
        }
        let plan: SavedPlan = serde_json::from_value(probe)
            .map_err(|e| PlanMismatch::Invalid(format!("it is not a plan runbook wrote: {e}")))?;
        if effects_digest(&plan.effects) != plan.effects_sha256 {
            return Err(PlanMismatch::Invalid(
                "its effects do not match their digest (effects_sha256): the file was edited after it was \
                 made; make the plan again"
                    .to_owned(),
            ));
        }
        if digest(&Value::Object(plan.params.clone())) != plan.params_sha256 {
            return Err(PlanMismatch::Invalid(
                "its params do not match their digest (params_sha256): the file was edited after it was made; \
                 make the plan again"
                    .to_owned(),
            ));
        }
        if plan.total_targets != plan.effects.iter().map(|e| e.targets).sum::<u64>() {
            return Err(PlanMismatch::Invalid(
                "its total_targets is not the sum of its effects' targets: the file was edited after it was made"
                    .to_owned(),
            ));
        }
        Ok(plan)
    }

    /// Refuses the plan when the script, params or engine are no longer those it was made with.
    pub fn verify(&self, source: &str, params: &Map<String, Value>) -> Result<(), PlanMismatch> {
        if self.engine != ENGINE_VERSION {
            return Err(PlanMismatch::Changed(format!(
                "the plan was made by runbook {}, and this is runbook {ENGINE_VERSION}: make the plan again",
                self.engine
            )));
        }
        if crate::journal::hex_digest(source.as_bytes()) != self.script_sha256 {
            return Err(PlanMismatch::Changed(format!(
                "the script {} changed since the plan was made (its SHA-256 is not the plan's script_sha256): \
                 review the change, then make the plan again",
                self.script
            )));
        }
        if digest(&Value::Object(params.clone())) != self.params_sha256 {
            return Err(PlanMismatch::Changed(
                "the params are not those the plan was made with: make the plan again with these params".to_owned(),
            ));
        }
        Ok(())
    }

    /// What changed between this plan's effects and a fresh plan's.
    pub fn diff(&self, fresh: &[PlannedChange]) -> PlanDiff {
        diff(&self.effects, fresh)
    }

    /// The journal entries that make a re-plan's `now()` return this plan's values.
    pub fn clock_entries(&self) -> Vec<JournalEntry> {
        SavedPlan::clock_entries_of(&self.clock)
    }

    /// The journal entries that make a plan's `now()` return `clock`'s values.
    pub fn clock_entries_of(clock: &[ClockReading]) -> Vec<JournalEntry> {
        clock
            .iter()
            .map(|reading| {
                let mut entry = JournalEntry::new(&reading.step, StepKind::Now, "", crate::action::Effect::Read);
                entry.status = crate::journal::StepStatus::Ok;
                entry.result = Some(reading.value.clone());
                entry.finished_at = Some(entry.started_at);
                entry
            })
            .collect()
    }
}

/// The SHA-256 of a list of effects.
pub fn effects_digest(effects: &[PlannedChange]) -> String {
    digest(&serde_json::to_value(effects).unwrap_or(Value::Null))
}

/// The `now()` readings of a plan's journal.
pub fn clock_of(entries: &[JournalEntry]) -> Vec<ClockReading> {
    let mut readings: Vec<ClockReading> = entries
        .iter()
        .filter(|e| e.kind == StepKind::Now)
        .filter_map(|e| {
            e.result.clone().map(|value| ClockReading {
                step: e.key.clone(),
                value,
            })
        })
        .collect();
    readings.sort_by(|a, b| crate::journal::compare_keys(&a.step, &b.step));
    readings
}

/// The steps of a plan's journal an apply replays instead of taking again: its reads, `now()`,
/// `state::get` and `parallel`, answered and not naming a planned create's placeholder (a read of
/// an object the apply creates is made for real).
pub fn replayable(entries: &[JournalEntry]) -> Vec<JournalEntry> {
    entries
        .iter()
        .filter(|e| !e.effect.is_mutating() && e.kind != StepKind::StateSet)
        .filter(|e| e.status == crate::journal::StepStatus::Ok)
        .filter(|e| !has_placeholder(&e.args))
        .cloned()
        .collect()
}

/// How a fresh plan differs from a saved one, by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanDiff {
    /// Effects the fresh plan has and the saved one does not.
    pub added: Vec<PlannedChange>,
    /// Effects the saved plan has and the fresh one does not.
    pub removed: Vec<PlannedChange>,
    /// Effects at the same step with another action or other arguments: (saved, fresh).
    pub changed: Vec<(PlannedChange, PlannedChange)>,
}

impl PlanDiff {
    /// Whether the plans have the same effects.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// The diff for people: `+ added`, `- removed`, `~ changed` lines.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for e in &self.removed {
            out.push_str(&format!("  - {}\n", effect_line(e)));
        }
        for e in &self.added {
            out.push_str(&format!("  + {}\n", effect_line(e)));
        }
        for (old, new) in &self.changed {
            out.push_str(&format!("  ~ {}\n    now {}\n", effect_line(old), effect_line(new)));
        }
        out
    }
}

/// One effect on one line: `step 3 privx.reset_mfa alice@example.com (id) {"ids":[...]}`.
pub fn effect_line(e: &PlannedChange) -> String {
    let targets: Vec<String> = e.labels.iter().map(TargetRef::display).collect();
    let args = serde_json::to_string(&e.args).unwrap_or_default();
    if targets.is_empty() {
        format!("step {} {} {args}", e.step, e.action)
    } else {
        format!("step {} {} {} {args}", e.step, e.action, targets.join(", "))
    }
}

/// How `fresh` effects differ from `saved` ones, by step.
pub fn diff(saved: &[PlannedChange], fresh: &[PlannedChange]) -> PlanDiff {
    let old: BTreeMap<&str, &PlannedChange> = saved.iter().map(|e| (e.step.as_str(), e)).collect();
    let new: BTreeMap<&str, &PlannedChange> = fresh.iter().map(|e| (e.step.as_str(), e)).collect();
    let mut out = PlanDiff::default();
    for e in saved {
        match new.get(e.step.as_str()) {
            None => out.removed.push(e.clone()),
            Some(f) if f.action != e.action || f.args_sha256 != e.args_sha256 || f.effect != e.effect => {
                out.changed.push((e.clone(), (*f).clone()));
            }
            Some(_) => {}
        }
    }
    for f in fresh {
        if !old.contains_key(f.step.as_str()) {
            out.added.push(f.clone());
        }
    }
    out
}

/// The approved effects an apply may send, by step: any other change is refused before it leaves.
#[derive(Debug, Default)]
pub struct Expectation {
    effects: HashMap<String, PlannedChange>,
    /// Real values planned creates turned into, where their plan said `(planned)`.
    bound: Mutex<HashSet<String>>,
    /// Steps whose approved effect was sent (or replayed).
    reached: Mutex<HashSet<String>>,
}

impl Expectation {
    /// An expectation of exactly `effects`.
    pub fn new(effects: Vec<PlannedChange>) -> Expectation {
        Expectation {
            effects: effects.into_iter().map(|e| (e.step.clone(), e)).collect(),
            bound: Mutex::new(HashSet::new()),
            reached: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the change at `step` is the approved one; `Err` says why not.
    pub(crate) fn admit(&self, step: &str, action: &str, args_sha256: &str, shown: &Value) -> Result<(), String> {
        let Some(approved) = self.effects.get(step) else {
            return Err(format!(
                "step {step} {action}({}) is not in the approved plan (it approved {} change(s), none at this step)",
                crate::journal::compact_json(shown),
                self.effects.len()
            ));
        };
        let same_args = approved.args_sha256 == args_sha256 || {
            let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
            has_placeholder(&approved.args) && matches_bound(&approved.args, shown, &bound)
        };
        if approved.action != action || !same_args {
            return Err(format!(
                "step {step} would send {action}({}), and the approved plan has {} there",
                crate::journal::compact_json(shown),
                effect_line(approved)
            ));
        }
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.to_owned());
        Ok(())
    }

    /// Marks the approved effect at `step` as made (a resumed apply replays it from the journal).
    pub(crate) fn mark(&self, step: &str) {
        self.reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(step.to_owned());
    }

    /// Binds what a planned create returned in plan mode (`planned`) to what it really returned.
    pub(crate) fn bind(&self, planned: &Value, real: &Value) {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bind(planned, real, &mut bound);
    }

    /// Approved effects not sent, in step order.
    pub fn unreached(&self) -> Vec<PlannedChange> {
        let reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<PlannedChange> = self
            .effects
            .values()
            .filter(|e| !reached.contains(&e.step))
            .cloned()
            .collect();
        out.sort_by(|a, b| crate::journal::compare_keys(&a.step, &b.step));
        out
    }
}

fn has_placeholder(value: &Value) -> bool {
    match value {
        Value::String(s) => s == PLACEHOLDER,
        Value::Array(items) => items.iter().any(has_placeholder),
        Value::Object(map) => map.values().any(has_placeholder),
        _ => false,
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn bind(planned: &Value, real: &Value, bound: &mut HashSet<String>) {
    match (planned, real) {
        (Value::String(p), r) if p == PLACEHOLDER => {
            if let Some(text) = scalar_text(r) {
                bound.insert(text);
            }
        }
        (Value::Array(p), Value::Array(r)) => {
            for (p, r) in p.iter().zip(r) {
                bind(p, r, bound);
            }
        }
        (Value::Object(p), Value::Object(r)) => {
            for (k, p) in p {
                if let Some(r) = r.get(k) {
                    bind(p, r, bound);
                }
            }
        }
        _ => {}
    }
}

/// Whether `actual` is `approved` with each `(planned)` standing for a value this apply created.
fn matches_bound(approved: &Value, actual: &Value, bound: &HashSet<String>) -> bool {
    match (approved, actual) {
        (Value::String(p), a) if p == PLACEHOLDER => scalar_text(a).is_some_and(|t| bound.contains(&t)),
        (Value::Array(p), Value::Array(a)) => {
            p.len() == a.len() && p.iter().zip(a).all(|(p, a)| matches_bound(p, a, bound))
        }
        (Value::Object(p), Value::Object(a)) => {
            p.len() == a.len()
                && p.iter()
                    .all(|(k, p)| a.get(k).is_some_and(|a| matches_bound(p, a, bound)))
        }
        (p, a) => p == a,
    }
}

/// What the run's reads told about the targets it may touch: a label per id, and the roles a
/// user holds where the service says. An id is known per provider: a read of one service never
/// labels another's objects.
#[derive(Debug, Default)]
pub struct Identities {
    known: Mutex<HashMap<(String, String), Identity>>,
}

/// What a read told about one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The email, principal, username or name.
    pub label: Option<String>,
    /// Every name it is known by (email, principal, username, name).
    pub names: Vec<String>,
    /// The names (and ids) of its roles, where the record lists them.
    pub roles: Vec<String>,
    /// Whether a record listed its roles (an empty list included): without one, `roles` tells
    /// nothing.
    pub roles_known: bool,
}

/// How a label that two reads disagree on begins.
const CONFLICT: &str = "conflicting labels: ";

/// `s` safe to print on a terminal: control and bidirectional-formatting characters escaped, so
/// a name a service returns cannot rewrite the lines of a plan or a prompt.
pub fn printable(s: &str) -> String {
    let bidi = |c: char| matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(|c| c.is_control() || bidi(c)) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() || bidi(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Fields that name an object for people, best first.
const LABEL_FIELDS: &[&str] = &["email", "principal", "username", "name", "title"];
/// How deep a read's answer is searched for objects with ids.
const LEARN_DEPTH: usize = 4;

impl Identities {
    /// Learns the objects a read of provider `namespace` answered with. Two reads that give one
    /// id different labels leave it labelled as conflicting, never as the first one seen.
    pub fn learn(&self, namespace: &str, value: &Value) {
        let mut found = Vec::new();
        collect(value, LEARN_DEPTH, &mut found);
        if found.is_empty() {
            return;
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for (id, identity) in found {
            merge(known.entry((namespace.to_owned(), id)).or_default(), identity);
        }
    }

    /// Learns what provider `namespace` told about `id` (its answer to
    /// [`crate::Provider::identify`]): the object itself, whatever id it carries, stands for `id`.
    pub fn learn_as(&self, namespace: &str, id: &str, value: &Value) {
        self.learn(namespace, value);
        if let Value::Object(map) = value {
            let identity = identity_of(map);
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            merge(
                known.entry((namespace.to_owned(), id.to_owned())).or_default(),
                identity,
            );
        }
    }

    /// What is known about `id` of provider `namespace`.
    pub fn get(&self, namespace: &str, id: &str) -> Option<Identity> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_owned(), id.to_owned()))
            .cloned()
    }

    /// `ids` of provider `namespace` with their labels.
    pub fn label(&self, namespace: &str, ids: Vec<String>) -> Vec<TargetRef> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        ids.into_iter()
            .map(|id| {
                let label = known
                    .get(&(namespace.to_owned(), id.clone()))
                    .and_then(|i| i.label.clone());
                TargetRef {
                    id: printable(&id),
                    label,
                }
            })
            .collect()
    }
}

fn merge(entry: &mut Identity, identity: Identity) {
    match (&entry.label, identity.label) {
        (None, label) => entry.label = label,
        (Some(old), Some(new)) if *old != new && !old.starts_with(CONFLICT) => {
            entry.label = Some(format!("{CONFLICT}{old} / {new}"));
        }
        _ => {}
    }
    for name in identity.names {
        if !entry.names.contains(&name) {
            entry.names.push(name);
        }
    }
    for role in identity.roles {
        if !entry.roles.contains(&role) {
            entry.roles.push(role);
        }
    }
    entry.roles_known |= identity.roles_known;
}

/// What one record tells about the object it describes.
fn identity_of(map: &Map<String, Value>) -> Identity {
    let names: Vec<String> = LABEL_FIELDS
        .iter()
        .filter_map(|f| map.get(*f).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(printable)
        .collect();
    let mut roles = Vec::new();
    let roles_known = matches!(map.get("roles"), Some(Value::Array(_)));
    if let Some(Value::Array(list)) = map.get("roles") {
        for role in list {
            match role {
                Value::String(s) => roles.push(printable(s)),
                Value::Object(r) => {
                    for f in ["name", "id"] {
                        if let Some(s) = r.get(f).and_then(Value::as_str) {
                            roles.push(printable(s));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Identity {
        label: names.first().cloned(),
        names,
        roles,
        roles_known,
    }
}

fn collect(value: &Value, depth: usize, out: &mut Vec<(String, Identity)>) {
    if depth == 0 {
        return;
    }
    match value {
        Value::Array(items) => {
            for item in items {
                collect(item, depth - 1, out);
            }
        }
        Value::Object(map) => {
            if let Some(id) = map.get("id").and_then(scalar_text) {
                let identity = identity_of(map);
                if !identity.names.is_empty() || identity.roles_known {
                    out.push((id, identity));
                }
            }
            for v in map.values() {
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    collect(v, depth - 1, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::action::Effect;

    fn change(step: &str, action: &str, args: Value) -> PlannedChange {
        PlannedChange {
            step: step.to_owned(),
            action: action.to_owned(),
            effect: Effect::Write,
            targets: 1,
            args_sha256: digest(&args),
            args,
            labels: vec![],
        }
    }

    #[test]
    fn an_edited_effect_is_refused_by_its_digest() {
        let plan = SavedPlan::new(
            "s.rhai",
            "x",
            Map::new(),
            100,
            vec![change("1", "p.a", json!({"id": "u1"}))],
            vec![],
        );
        let text = serde_json::to_string(&plan).unwrap();
        assert!(SavedPlan::parse(&text).is_ok());
        let edited = text.replace("u1", "u2");
        assert!(matches!(SavedPlan::parse(&edited), Err(PlanMismatch::Invalid(_))));
    }

    #[test]
    fn the_diff_names_added_removed_and_changed_steps() {
        let saved = vec![
            change("1", "p.a", json!({"id": "u1"})),
            change("2", "p.a", json!({"id": "u2"})),
        ];
        let fresh = vec![
            change("1", "p.a", json!({"id": "u9"})),
            change("3", "p.a", json!({"id": "u3"})),
        ];
        let changes = diff(&saved, &fresh);
        assert_eq!(changes.removed.len(), 1);
        assert_eq!(changes.added.len(), 1);
        assert_eq!(changes.changed.len(), 1);
        assert!(changes.text().contains("u9"));
        assert!(diff(&saved, &saved).is_empty());
    }

    #[test]
    fn a_placeholder_matches_only_a_value_this_apply_created() {
        let expect = Expectation::new(vec![
            change("1", "p.create", json!({"email": "a@x"})),
            change("2", "p.grant", json!({"user_id": PLACEHOLDER})),
        ]);
        let shown = json!({"user_id": "real-7"});
        assert!(expect.admit("2", "p.grant", &digest(&shown), &shown).is_err());
        expect.bind(
            &json!({"id": PLACEHOLDER, "email": "a@x"}),
            &json!({"id": "real-7", "email": "a@x"}),
        );
        assert!(expect.admit("2", "p.grant", &digest(&shown), &shown).is_ok());
        let other = json!({"user_id": "someone-else"});
        assert!(expect.admit("2", "p.grant", &digest(&other), &other).is_err());
        assert_eq!(expect.unreached().len(), 1);
    }

    #[test]
    fn reads_teach_labels_and_roles() {
        let ids = Identities::default();
        ids.learn(
            "p",
            &json!([{"id": "u1", "email": "a@x", "roles": [{"id": "r1", "name": "admins"}]}]),
        );
        assert_eq!(
            ids.label("p", vec!["u1".into(), "u2".into()])[0].label.as_deref(),
            Some("a@x")
        );
        assert_eq!(ids.get("p", "u1").unwrap().roles, vec!["admins", "r1"]);
        assert!(ids.get("p", "u2").is_none());
        // Another provider's objects label nothing here.
        assert!(ids.get("q", "u1").is_none());
    }

    #[test]
    fn a_label_cannot_be_forged_by_a_second_read_or_rewrite_the_terminal() {
        let ids = Identities::default();
        ids.learn("p", &json!({"id": "u1", "email": "victim@x"}));
        ids.learn("p", &json!({"id": "u1", "email": "temp@x"}));
        let label = ids.label("p", vec!["u1".into()])[0].label.clone().unwrap();
        assert!(label.starts_with("conflicting labels: victim@x / temp@x"), "{label}");
        ids.learn("p", &json!({"id": "u2", "title": "ok\u{1b}[1A\n  - alice\u{202e}"}));
        let label = ids.label("p", vec!["u2".into()])[0].label.clone().unwrap();
        assert!(!label.chars().any(char::is_control), "{label:?}");
        assert!(!label.contains('\u{202e}'), "{label:?}");
    }
}
