//! Access groups: `{id, name, include, exclude, require}`, each rule an object with exactly one
//! key (`{"email": {"email": "a@example.com"}}`, `{"everyone": {}}`, ...).

use serde_json::{Map, Value};

use super::envelope::CfError;

/// The account's groups, in creation order.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    groups: Vec<Map<String, Value>>,
}

/// A create or update body, validated.
#[derive(Debug)]
pub(crate) struct GroupBody {
    name: String,
    include: Vec<Value>,
    exclude: Vec<Value>,
    require: Vec<Value>,
    /// The request field is a boolean, false when absent: a full replace that leaves it out
    /// makes the group no longer the default one.
    is_default: bool,
}

impl GroupBody {
    /// Checks a create or update body: `name` and `include` required (an update replaces the
    /// whole group), `exclude` and `require` optional, every rule one-keyed.
    pub(crate) fn parse(body: &Map<String, Value>) -> Result<GroupBody, CfError> {
        let name = match body.get("name") {
            Some(Value::String(name)) if !name.trim().is_empty() => name.clone(),
            Some(Value::String(_)) => return Err(CfError::invalid_field("name", "name must not be empty")),
            Some(_) => return Err(CfError::invalid_field("name", "name must be a string")),
            None => return Err(CfError::invalid_field("name", "name is required")),
        };
        let include =
            rules(body, "include")?.ok_or_else(|| CfError::invalid_field("include", "include is required"))?;
        let is_default = match body.get("is_default") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(CfError::invalid_field("is_default", "is_default must be a boolean")),
        };
        Ok(GroupBody {
            name,
            include,
            exclude: rules(body, "exclude")?.unwrap_or_default(),
            require: rules(body, "require")?.unwrap_or_default(),
            is_default,
        })
    }
}

impl Groups {
    pub(crate) fn new(fixture: &[Value]) -> Groups {
        Groups {
            groups: fixture.iter().filter_map(|g| g.as_object().cloned()).collect(),
        }
    }

    /// Every group whose name is `name` (case-insensitive) and contains `search`.
    pub(crate) fn filtered(&self, name: Option<&str>, search: Option<&str>) -> Vec<Value> {
        let name = name.map(str::to_lowercase);
        let search = search.map(str::to_lowercase);
        self.groups
            .iter()
            .filter(|g| {
                let group_name = g.get("name").and_then(Value::as_str).unwrap_or("").to_lowercase();
                name.as_ref().is_none_or(|n| *n == group_name)
                    && search.as_ref().is_none_or(|s| group_name.contains(s.as_str()))
            })
            .cloned()
            .map(Value::Object)
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Result<Value, CfError> {
        self.position(id).map(|i| Value::Object(self.groups[i].clone()))
    }

    pub(crate) fn create(&mut self, body: GroupBody, now: &str) -> Value {
        let mut group = Map::new();
        group.insert("id".to_owned(), Value::from(uuid::Uuid::new_v4().to_string()));
        group.insert("created_at".to_owned(), Value::from(now));
        fill(&mut group, body, now);
        self.groups.push(group.clone());
        Value::Object(group)
    }

    pub(crate) fn replace(&mut self, id: &str, body: GroupBody, now: &str) -> Result<Value, CfError> {
        let i = self.position(id)?;
        let group = &mut self.groups[i];
        fill(group, body, now);
        Ok(Value::Object(group.clone()))
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<(), CfError> {
        let i = self.position(id)?;
        self.groups.remove(i);
        Ok(())
    }

    fn position(&self, id: &str) -> Result<usize, CfError> {
        self.groups
            .iter()
            .position(|g| g.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| CfError::not_found(format!("access group {id} not found")))
    }
}

fn fill(group: &mut Map<String, Value>, body: GroupBody, now: &str) {
    group.insert("name".to_owned(), Value::from(body.name));
    group.insert("include".to_owned(), Value::Array(body.include));
    group.insert("exclude".to_owned(), Value::Array(body.exclude));
    group.insert("require".to_owned(), Value::Array(body.require));
    group.insert("is_default".to_owned(), Value::Bool(body.is_default));
    group.insert("updated_at".to_owned(), Value::from(now));
}

/// An optional array of rules; each rule one key whose value is an object, and an email rule
/// `{"email": {"email": "..."}}` with its address inside.
fn rules(body: &Map<String, Value>, field: &str) -> Result<Option<Vec<Value>>, CfError> {
    let rules = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(rules)) => rules,
        Some(_) => {
            return Err(CfError::invalid_field(
                field,
                format!("{field} must be an array of rules"),
            ));
        }
    };
    for (i, rule) in rules.iter().enumerate() {
        let pointer = format!("{field}/{i}");
        let Some((kind, inner)) = rule.as_object().filter(|r| r.len() == 1).and_then(|r| r.iter().next()) else {
            return Err(CfError::invalid_field(
                &pointer,
                "a rule must be an object with exactly one key, such as {\"email\": {\"email\": \"a@example.com\"}}",
            ));
        };
        if !inner.is_object() {
            return Err(CfError::invalid_field(
                &pointer,
                format!("the {kind} rule's value must be an object"),
            ));
        }
        if kind == "email" && !inner.get("email").is_some_and(Value::is_string) {
            return Err(CfError::invalid_field(
                &pointer,
                "an email rule is {\"email\": {\"email\": \"a@example.com\"}}",
            ));
        }
    }
    Ok(Some(rules.clone()))
}
