//! Values for people: reports, tables that fit the terminal, and one way to show "nothing".

use std::fmt::Write as _;
use std::io::IsTerminal;

use comfy_table::{ContentArrangement, Table};
use serde_json::{Map, Value};

/// How every empty value — `()`, `""`, `[]`, `#{}` — is shown, in results, reports, tables and
/// `runs list`/`runs show` alike.
pub const EMPTY: &str = "-";

/// Columns that say which record a row is and what state it is in: first, in this order.
const KEY_COLUMNS: &[&str] = &["id", "email", "name", "principal", "status"];

/// Each column is given up to this width (long cells wrap) when choosing how many fit; the
/// columns after the first that does not fit are left out.
const COMFORTABLE_COLUMN: usize = 20;

/// The width tables fit: the terminal's when stdout is one, else `COLUMNS`, else 100.
pub fn width() -> usize {
    let terminal = std::io::stdout()
        .is_terminal()
        .then(|| Table::new().width())
        .flatten()
        .map(usize::from);
    terminal
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .filter(|w| *w >= 20)
        .unwrap_or(100)
}

/// A value for people, fitted to `width` columns and ending with a newline: a report (a map) as
/// its scalars, then a table per list of records; a list of records as one table; anything else
/// as indented JSON.
pub fn value_text(value: &Value, width: usize) -> String {
    let text = match value {
        v if is_empty(v) => EMPTY.to_owned(),
        Value::String(s) => s.clone(),
        Value::Object(map) => report_text(map, 0, width),
        Value::Array(items) if is_records(items) => table(items, width),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    text.trim_end_matches('\n').to_owned() + "\n"
}

/// Whether a value shows as [`EMPTY`].
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

/// A non-empty list whose every item is a map.
pub fn is_records(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(Value::is_object)
}

fn is_scalar(value: &Value) -> bool {
    is_empty(value) || !matches!(value, Value::Array(_) | Value::Object(_))
}

fn report_text(map: &Map<String, Value>, depth: usize, width: usize) -> String {
    let indent = "  ".repeat(depth);
    let inner = width.saturating_sub(indent.len());
    let mut out = String::new();
    let key_width = map.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in map.iter().filter(|(_, v)| is_scalar(v)) {
        let _ = writeln!(out, "{indent}{key:<key_width$}  {}", cell(value));
    }
    for (key, value) in map.iter().filter(|(_, v)| !is_scalar(v)) {
        match value {
            Value::Array(items) if is_records(items) => {
                let _ = writeln!(out, "\n{indent}{key} ({}):", items.len());
                for line in table(items, inner).lines() {
                    let _ = writeln!(out, "{indent}{line}");
                }
            }
            Value::Array(items) if items.iter().all(is_scalar) => {
                let _ = writeln!(out, "\n{indent}{key} ({}):", items.len());
                for item in items {
                    let _ = writeln!(out, "{indent}  - {}", cell(item));
                }
            }
            Value::Object(inner_map) => {
                let _ = writeln!(out, "\n{indent}{key}:");
                out.push_str(&report_text(inner_map, depth + 1, width));
            }
            other => {
                let _ = writeln!(out, "{indent}{key:<key_width$}  {}", cell(other));
            }
        }
    }
    out.trim_end_matches('\n').to_owned() + "\n"
}

/// The columns of a list of records: the key columns that occur, then every other key in the
/// order the records give them.
pub fn columns(rows: &[Value]) -> Vec<&str> {
    let mut seen: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(map) = row {
            for key in map.keys() {
                if !seen.contains(&key.as_str()) {
                    seen.push(key);
                }
            }
        }
    }
    let mut ordered: Vec<&str> = KEY_COLUMNS.iter().copied().filter(|k| seen.contains(k)).collect();
    ordered.extend(seen.into_iter().filter(|k| !KEY_COLUMNS.contains(k)));
    ordered
}

/// One table for a list of records, `width` columns wide at most: long cells wrap, and columns
/// that would not fit at a readable width are left out and named below the table.
fn table(rows: &[Value], width: usize) -> String {
    let all = columns(rows);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            all.iter()
                .map(|c| row.get(*c).map(cell).unwrap_or_else(|| EMPTY.to_owned()))
                .collect()
        })
        .collect();
    // Two border characters, and each column its text plus a space either side.
    let mut used = 2;
    let mut shown = 0;
    for (i, name) in all.iter().enumerate() {
        let natural = cells
            .iter()
            .map(|r| text_width(&r[i]))
            .chain([text_width(name)])
            .max()
            .unwrap_or(0);
        let needed = natural.min(COMFORTABLE_COLUMN) + 2;
        if shown > 0 && used + needed > width {
            break;
        }
        used += needed;
        shown += 1;
    }
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(u16::try_from(width).unwrap_or(u16::MAX))
        .set_header(all.iter().take(shown).copied());
    for row in &cells {
        t.add_row(row.iter().take(shown));
    }
    let mut out = t.to_string();
    out.push('\n');
    if shown < all.len() {
        let left = &all[shown..];
        let note = format!(
            "{} more column(s) do not fit in {width} characters: {} (--output json shows every field)",
            left.len(),
            left.join(", ")
        );
        out.push_str(&wrap(&note, width));
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word stays whole).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

fn text_width(text: &str) -> usize {
    text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// One value in a cell: strings bare, empty values as [`EMPTY`], short lists joined, the rest
/// compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        v if is_empty(v) => EMPTY.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !matches!(i, Value::Array(_) | Value::Object(_))) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_columns_come_first_then_the_records_order() {
        let rows = vec![json!({"access_seat": true, "created_at": "x", "email": "a@b", "id": "1", "zone": 2})];
        assert_eq!(columns(&rows), vec!["id", "email", "access_seat", "created_at", "zone"]);
    }

    #[test]
    fn a_wide_table_fits_by_wrapping_and_leaving_columns_out() {
        let rows: Vec<Value> = (0..5)
            .map(|i| {
                json!({
                    "uid": format!("6f1c0a52-8d7e-4b1f-9a3c-{i:012}"),
                    "email": format!("someone.with.a.long.name{i}@example.com"),
                    "note": "a sentence long enough that it has to wrap inside its cell to fit at all",
                    "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10,
                })
            })
            .collect();
        for width in [40, 80, 120] {
            let text = value_text(&Value::Array(rows.clone()), width);
            for line in text.lines() {
                assert!(line.chars().count() <= width, "{width}: {line:?}\n{text}");
            }
            assert!(
                text.lines()
                    .nth(1)
                    .is_some_and(|l| l.trim_start_matches('│').trim_start().starts_with("email"))
            );
        }
    }

    #[test]
    fn every_empty_value_looks_the_same() {
        for empty in [json!(null), json!(""), json!([]), json!({})] {
            assert_eq!(value_text(&empty, 80), "-\n");
            assert_eq!(cell(&empty), "-");
            assert_eq!(value_text(&json!({"k": empty}), 80), "k  -\n");
        }
    }
}
