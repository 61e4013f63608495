//! `--output csv`: a list of records as comma-separated values (RFC 4180).

use serde_json::Value;

use super::table::{cell, columns, is_empty, is_records};

/// The records of a result as CSV: a list of records, or a report (a map) holding exactly one
/// list of records — its other values are not part of the CSV. One header line with the columns
/// (key columns first, like the tables), one line per record; an empty value is an empty field;
/// a nested value is compact JSON. An empty list gives no output at all. Any other shape is an
/// error saying what the result is instead.
pub fn csv(result: &Value) -> Result<String, String> {
    let rows = records(result)?;
    if rows.is_empty() {
        return Ok(String::new());
    }
    let columns = columns(rows);
    let mut out = line(columns.iter().map(|c| (*c).to_owned()));
    for row in rows {
        out.push_str(&line(columns.iter().map(|c| match row.get(*c) {
            Some(v) if !is_empty(v) => cell(v),
            _ => String::new(),
        })));
    }
    Ok(out)
}

fn records(result: &Value) -> Result<&[Value], String> {
    let shape = match result {
        Value::Array(items) if items.is_empty() || is_records(items) => return Ok(items),
        Value::Array(_) => "a list of values that are not all maps",
        Value::Object(map) => {
            let lists: Vec<&Vec<Value>> = map
                .values()
                .filter_map(|v| match v {
                    Value::Array(items) if is_records(items) => Some(items),
                    _ => None,
                })
                .collect();
            match lists.as_slice() {
                [one] => return Ok(one),
                [] => "a map with no list of records",
                _ => "a map with several lists of records",
            }
        }
        Value::Null => "empty",
        _ => "a single value",
    };
    Err(format!(
        "--output csv prints a list of records (or a map holding exactly one); this result is {shape}: use \
         --output json or pretty"
    ))
}

fn line(fields: impl Iterator<Item = String>) -> String {
    let mut out = fields.map(|f| field(&f)).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

fn field(text: &str) -> String {
    // A spreadsheet runs a cell that starts with one of these as a formula: a name a service
    // returned (`=HYPERLINK(...)`) must stay text. Numbers (`-5`) are left as they are.
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) && text.parse::<f64>().is_err() {
        return field(&format!("'{text}"));
    }
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_quoted_when_they_must_be() {
        let rows = json!([{"name": "Doe, Jane", "id": "1", "note": "say \"hi\"", "gone": null}]);
        assert_eq!(
            csv(&rows).unwrap(),
            "id,name,note,gone\r\n1,\"Doe, Jane\",\"say \"\"hi\"\"\",\r\n"
        );
    }

    #[test]
    fn a_cell_a_spreadsheet_would_run_as_a_formula_stays_text() {
        let rows = json!([{"name": "=HYPERLINK(\"http://x\")", "id": "@sum", "delta": -5}]);
        assert_eq!(
            csv(&rows).unwrap(),
            "id,name,delta\r\n'@sum,\"'=HYPERLINK(\"\"http://x\"\")\",-5\r\n"
        );
    }

    #[test]
    fn a_report_with_one_list_gives_that_list_and_other_shapes_are_refused() {
        let report = json!({"total": 1, "users": [{"id": "u1"}]});
        assert_eq!(csv(&report).unwrap(), "id\r\nu1\r\n");
        assert!(csv(&json!(3)).unwrap_err().contains("this result is a single value"));
        assert!(
            csv(&json!({"a": [{"x": 1}], "b": [{"y": 2}]}))
                .unwrap_err()
                .contains("several lists")
        );
    }
}
