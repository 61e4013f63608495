//! Access group membership by email: the group's `include` rules hold
//! `{"email": {"email": X}}`, and there is no member endpoint, so adding or removing an email is
//! a read, an edit of `include`, and a full replace.

use serde_json::{Value, json};

/// The include rule that admits `email`.
pub fn email_rule(email: &str) -> Value {
    json!({"email": {"email": email}})
}

/// Whether `rule` is the email rule for `email` (emails compare without regard to case).
fn is_email_rule(rule: &Value, email: &str) -> bool {
    rule.get("email")
        .and_then(|inner| inner.get("email"))
        .and_then(Value::as_str)
        .is_some_and(|e| e.eq_ignore_ascii_case(email))
}

/// `include` with the email rule for `email` added, or `None` when it is there already.
pub fn with_email(include: &[Value], email: &str) -> Option<Vec<Value>> {
    if include.iter().any(|r| is_email_rule(r, email)) {
        return None;
    }
    let mut rules = include.to_vec();
    rules.push(email_rule(email));
    Some(rules)
}

/// `include` without the email rule for `email`, or `None` when it has none.
pub fn without_email(include: &[Value], email: &str) -> Option<Vec<Value>> {
    let rules: Vec<Value> = include.iter().filter(|r| !is_email_rule(r, email)).cloned().collect();
    (rules.len() != include.len()).then_some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_added_once_and_removed_whatever_their_case() {
        let include = vec![json!({"everyone": {}}), email_rule("Ann@Example.com")];
        assert_eq!(with_email(&include, "ann@example.com"), None);
        let added = with_email(&include, "bob@example.com").unwrap();
        assert_eq!(added.last(), Some(&email_rule("bob@example.com")));
        assert_eq!(
            without_email(&include, "ann@example.com"),
            Some(vec![json!({"everyone": {}})])
        );
        assert_eq!(without_email(&include, "bob@example.com"), None);
    }
}
