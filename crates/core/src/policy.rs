//! The policy: targets no automation may touch, and a budget of changes over time.
//!
//! A [`Policy`] holds `protect` rules. Before a mutating call is sent — or recorded by a plan —
//! the pipeline names its targets (the ids [`crate::ActionSpec::target_ids`] gives, and the
//! `email` and `user_id` it names) and checks each against the rules:
//!
//! - an **id rule** (a UUID) matches a target with that id;
//! - a **name rule** (anything else: an email, a principal, a name) matches a target with that
//!   id, or one a read showed under that name (case does not matter);
//! - a **role rule** (`role:NAME`, or `NS-role:NAME` for the provider `NS` alone) matches a
//!   target whose record lists a role with that name or id.
//!
//! Names and roles come from what the run's reads showed; a target no read showed is identified
//! by its provider ([`crate::Provider::identify`]). A target that cannot be identified while a
//! rule could match is refused: the policy fails closed.
//!
//! A [`Budget`] caps the targets changed over a window (a day) across runs: the caller counts
//! what earlier runs changed, and the pipeline refuses the call that would pass the cap.

use std::fmt;
use std::sync::Arc;

use crate::plan::Identity;

/// Where protect rules come from, for messages.
pub const DEFAULT_ORIGIN: &str = "[policy] protect in runbook.toml";

/// One `protect` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule as written.
    pub text: String,
    /// What it matches.
    pub kind: RuleKind,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// A target with this id.
    Id(String),
    /// A target with this id, email, principal or name.
    Name(String),
    /// A target holding this role (by name or id), at the provider `namespace` (any when `None`).
    Role {
        /// The provider whose targets it applies to.
        namespace: Option<String>,
        /// The role's name or id.
        role: String,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.text)
    }
}

impl Rule {
    /// Parses one rule: `role:NAME`, `NS-role:NAME`, a UUID (an id rule), or a name.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("a protect rule is empty: write an id, an email or name, or role:NAME".to_owned());
        }
        if trimmed != text {
            return Err(format!(
                "protect rule \"{text}\" has spaces around it: write \"{trimmed}\""
            ));
        }
        if let Some((prefix, role)) = text.split_once(':')
            && (prefix == "role" || prefix.ends_with("-role"))
        {
            let namespace = prefix.strip_suffix("-role").map(str::to_owned);
            if let Some(ns) = &namespace
                && (ns.is_empty()
                    || !ns
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            {
                return Err(format!(
                    "protect rule \"{text}\": \"{prefix}:\" is not a role prefix; write role:NAME (any provider) or \
                     PROVIDER-role:NAME (privx-role:NAME)"
                ));
            }
            if role.trim().is_empty() {
                return Err(format!(
                    "protect rule \"{text}\" names no role: write {prefix}:NAME with the role's name or id"
                ));
            }
            return Ok(Rule {
                text: text.to_owned(),
                kind: RuleKind::Role {
                    namespace,
                    role: role.to_owned(),
                },
            });
        }
        let kind = if is_uuid(text) {
            RuleKind::Id(text.to_owned())
        } else {
            RuleKind::Name(text.to_owned())
        };
        Ok(Rule {
            text: text.to_owned(),
            kind,
        })
    }

    /// The provider namespace a role rule is limited to, if any.
    pub fn namespace(&self) -> Option<&str> {
        match &self.kind {
            RuleKind::Role { namespace, .. } => namespace.as_deref(),
            _ => None,
        }
    }

    /// Whether the rule applies to targets of provider `namespace`.
    fn applies_to(&self, namespace: &str) -> bool {
        self.namespace().is_none_or(|ns| ns == namespace)
    }

    /// Whether telling if the rule matches a target needs to know more than its id.
    fn needs_identity(&self) -> bool {
        !matches!(self.kind, RuleKind::Id(_))
    }

    /// Whether the rule matches the target's id (or value) itself.
    fn matches_id(&self, id: &str) -> bool {
        match &self.kind {
            RuleKind::Id(r) | RuleKind::Name(r) => r.eq_ignore_ascii_case(id),
            RuleKind::Role { .. } => false,
        }
    }

    /// Why the rule matches a target known as `identity`, if it does.
    fn matches_identity(&self, identity: &Identity) -> Option<String> {
        match &self.kind {
            RuleKind::Id(_) => None,
            RuleKind::Name(r) => identity
                .names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(r))
                .map(|_| String::new()),
            RuleKind::Role { role, .. } => identity
                .roles
                .iter()
                .find(|n| n.eq_ignore_ascii_case(role))
                .map(|n| format!("holds role {n}")),
        }
    }

    /// Whether the rule could match a target known as `identity` (`None`: nothing known):
    /// whether what it looks at is unknown.
    fn could_match(&self, identity: Option<&Identity>) -> bool {
        match (&self.kind, identity) {
            (RuleKind::Id(_), _) => false,
            (_, None) => true,
            (RuleKind::Name(_), Some(i)) => i.names.is_empty(),
            (RuleKind::Role { .. }, Some(i)) => !i.roles_known,
        }
    }
}

/// Whether `text` is a UUID (8-4-4-4-12 hex digits).
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Targets no call may touch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    origin: String,
}

/// Why the policy refused a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The target may be touched.
    Allowed,
    /// A rule matches it; `how`, when the rule looks at roles: `holds role NAME`.
    Protected { rule: Rule, how: String },
    /// What rules look at is unknown for this target.
    Unknown { rules: Vec<Rule> },
}

impl Policy {
    /// A policy of these rules; `origin` says where they are written, for messages
    /// ([`DEFAULT_ORIGIN`] when empty). Fails naming the first rule that does not parse.
    pub fn new<S: AsRef<str>>(protect: &[S], origin: impl Into<String>) -> Result<Policy, String> {
        let rules = protect
            .iter()
            .map(|r| Rule::parse(r.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut origin = origin.into();
        if origin.is_empty() {
            DEFAULT_ORIGIN.clone_into(&mut origin);
        }
        Ok(Policy { rules, origin })
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Where the rules are written.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a target of provider `namespace` must be identified before it is judged: some
    /// rule that applies to it looks at more than the id.
    pub(crate) fn needs_identity(&self, namespace: &str) -> bool {
        self.rules.iter().any(|r| r.applies_to(namespace) && r.needs_identity())
    }

    /// Judges target `id` of provider `namespace`, known as `identity` (or not known).
    pub(crate) fn judge(&self, namespace: &str, id: &str, identity: Option<&Identity>) -> Verdict {
        let rules = self.rules.iter().filter(|r| r.applies_to(namespace));
        for rule in rules.clone() {
            if rule.matches_id(id) {
                return Verdict::Protected {
                    rule: rule.clone(),
                    how: String::new(),
                };
            }
            if let Some(how) = identity.and_then(|i| rule.matches_identity(i)) {
                return Verdict::Protected {
                    rule: rule.clone(),
                    how,
                };
            }
        }
        let unknown: Vec<Rule> = rules.filter(|r| r.could_match(identity)).cloned().collect();
        if unknown.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Unknown { rules: unknown }
        }
    }
}

/// Counts, at the moment it is asked, the targets every run changed (or may have) in a budget's
/// window — this run's journaled changes included. A budget with one is counted again before each
/// change, so that runs going at the same time see each other's changes.
#[async_trait::async_trait]
pub trait ChangeCount: Send + Sync {
    /// The count; `Err` says why there is none (the change is then refused).
    async fn count(&self) -> Result<u64, String>;
}

/// A cap on the targets changed over a window, across runs.
#[derive(Clone)]
pub struct Budget {
    /// The most targets all runs together may change in the window.
    pub cap: u64,
    /// Targets earlier runs changed (or may have) in the window.
    pub used: u64,
    /// What the budget covers, for messages: `today's budget`, `today's budget of automation
    /// "offboard"`.
    pub label: String,
    /// The setting that raises it: `max_changes_per_day in [policy] of runbook.toml`.
    pub setting: String,
    /// Counts again before each change (`used` is then the count when the run started).
    pub(crate) recount: Option<Arc<dyn ChangeCount>>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("cap", &self.cap)
            .field("used", &self.used)
            .field("label", &self.label)
            .field("recounted", &self.recount.is_some())
            .finish()
    }
}

impl Budget {
    /// A budget of `cap` with `used` already taken by earlier runs.
    pub fn new(cap: u64, used: u64, label: impl Into<String>, setting: impl Into<String>) -> Budget {
        Budget {
            cap,
            used,
            label: label.into(),
            setting: setting.into(),
            recount: None,
        }
    }

    /// Counts with `counter` again before each change: runs going at the same time see each
    /// other's journaled changes. Without it the budget holds `used` for the whole run.
    pub fn recounted(mut self, counter: Arc<dyn ChangeCount>) -> Budget {
        self.recount = Some(counter);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(names: &[&str], roles: Option<&[&str]>) -> Identity {
        Identity {
            label: names.first().map(|s| (*s).to_owned()),
            names: names.iter().map(|s| (*s).to_owned()).collect(),
            roles: roles.unwrap_or_default().iter().map(|s| (*s).to_owned()).collect(),
            roles_known: roles.is_some(),
        }
    }

    #[test]
    fn rules_parse_by_their_shape() {
        let id = "a4bf58e7-0000-4000-8000-000000000001";
        assert!(matches!(Rule::parse(id).unwrap().kind, RuleKind::Id(_)));
        assert!(matches!(
            Rule::parse("breakglass@corp.example").unwrap().kind,
            RuleKind::Name(_)
        ));
        let role = Rule::parse("privx-role:privx-admin").unwrap();
        assert_eq!(role.namespace(), Some("privx"));
        assert!(matches!(
            Rule::parse("role:admins").unwrap().kind,
            RuleKind::Role { namespace: None, .. }
        ));
        assert!(Rule::parse("role:").unwrap_err().contains("names no role"));
        assert!(Rule::parse("Bad-role:x").unwrap_err().contains("not a role prefix"));
        assert!(Rule::parse(" a@b").unwrap_err().contains("spaces"));
        assert!(Rule::parse("").is_err());
    }

    #[test]
    fn names_and_roles_match_and_unknown_targets_fail_closed() {
        let policy = Policy::new(&["breakglass@corp.example", "privx-role:privx-admin"], "").unwrap();
        assert!(policy.needs_identity("privx"));
        let bg = known(&["BreakGlass@corp.example"], Some(&[]));
        assert!(matches!(
            policy.judge("privx", "u1", Some(&bg)),
            Verdict::Protected { .. }
        ));
        let admin = known(&["root"], Some(&["privx-admin"]));
        assert!(matches!(
            policy.judge("privx", "u2", Some(&admin)),
            Verdict::Protected { .. }
        ));
        // A Cloudflare target is not subject to a PrivX role rule.
        assert_eq!(policy.judge("cloudflare", "u2", Some(&admin)), Verdict::Allowed);
        // Roles not known: the role rule could match.
        let unsure = known(&["alice"], None);
        assert!(matches!(policy.judge("privx", "u3", Some(&unsure)), Verdict::Unknown { rules } if rules.len() == 1));
        assert!(matches!(policy.judge("privx", "u4", None), Verdict::Unknown { rules } if rules.len() == 2));
        // The target's own value matches a name rule without any read (a create's email).
        assert!(matches!(
            policy.judge("cloudflare", "breakglass@corp.example", None),
            Verdict::Protected { .. }
        ));
    }

    #[test]
    fn an_id_rule_alone_needs_no_identity() {
        let policy = Policy::new(&["a4bf58e7-0000-4000-8000-000000000001"], "").unwrap();
        assert!(!policy.needs_identity("privx"));
        assert_eq!(policy.judge("privx", "someone", None), Verdict::Allowed);
        assert!(matches!(
            policy.judge("privx", "A4BF58E7-0000-4000-8000-000000000001", None),
            Verdict::Protected { .. }
        ));
    }
}
