//! `check`: problems found without running anything.

use serde_json::json;

use crate::setup;

#[tokio::test]
async fn a_syntax_error_is_reported_with_its_position() {
    let (dir, engine) = setup(1).await;
    let found = engine.check("let a = 1;\nlet b = (a + ;\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, Some(2));
    assert!(found[0].column.is_some());
    assert!(dir.log().is_empty());
}

#[tokio::test]
async fn unknown_actions_and_wrong_arities_are_found_everywhere() {
    let (dir, engine) = setup(1).await;
    let script = r#"
fn helper(x) {
    dir::get_usr(x)
}
let all = dir::list_users();
parallel(all, |u| dir::disable_user(u.id, "extra", 3));
state::get("k", 2);
invoke("dir.missing", #{});
state::set("k");
"#;
    let found = engine.check(script);
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 5, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 3, column 5: unknown action dir::get_usr (did you mean dir::get_user?)")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 6") && m.contains("dir::disable_user takes 1 argument (id), got 3")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 7") && m.contains("state::get takes 1 argument (key), got 2")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 8") && m.contains("unknown action dir::missing")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 9") && m.contains("state::set takes 2 arguments (key, value), got 1")),
        "{messages:#?}"
    );
    assert!(dir.log().is_empty(), "check ran something");
}

#[tokio::test]
async fn an_unknown_namespace_is_a_compile_error_naming_the_known_ones() {
    let (_dir, engine) = setup(1).await;
    let found = engine.check("let a = 1;\nnothere::thing();\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, Some(2));
    assert_eq!(
        found[0].message,
        "unknown namespace `nothere`; known namespaces: dir, state"
    );
}

#[tokio::test]
async fn a_sound_script_passes() {
    let (_dir, engine) = setup(1).await;
    let found = engine.check(r#"let u = dir::get_user("u1"); dir::create_user(#{email: "a@b.c"}); dir::create_user("a@b.c", #{note: "x"}); invoke("dir.list_users", #{})"#);
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test]
async fn literal_arguments_are_checked_against_the_actions_params() {
    let (dir, engine) = setup(1).await;
    let script = r#"
let u = dir::get_user(42);
dir::create_user("a@b.c", #{nte: "x"});
dir::create_user(#{note: "x"});
dir::create_user("a@b.c", #{email: "b@c.d"});
invoke("dir.create_user", #{email: "a@b.c", note: 5});
"#;
    let messages: Vec<String> = engine.check(script).iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "line 2, column 23: dir::get_user: `id` must be string, got int",
            "line 3, column 27: dir::create_user: unknown option `nte` (did you mean `note`?); valid keys: email, note",
            "line 4, column 18: dir::create_user: missing required argument `email`: dir::create_user(email, #{note})",
            "line 5, column 27: dir::create_user: `email` is a positional argument: dir::create_user(email, #{note})",
            "line 6, column 27: dir::create_user: `note` must be string, got int",
        ]
    );
    assert!(dir.log().is_empty());
}

#[tokio::test]
async fn a_loop_nothing_can_leave_is_found() {
    let (_dir, engine) = setup(1).await;
    let found = engine.check("let n = 0;\nloop {\n  n += 1;\n  for i in 0..3 { if i > n { break; } }\n}\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].line, Some(2));
    assert!(
        found[0].message.starts_with("this loop never ends"),
        "{}",
        found[0].message
    );
    for fine in [
        "let n = 0; loop { n += 1; if n > 3 { break; } }",
        "fn f() { loop { return 1; } } f()",
        "loop { for i in 0..3 { throw \"stop\"; } }",
        "let going = true; while going { going = false; }",
    ] {
        assert!(engine.check(fine).is_empty(), "{fine}: {:?}", engine.check(fine));
    }
}

#[tokio::test]
async fn declared_params_are_read_without_running_the_script() {
    let (dir, engine) = setup(1).await;
    let script = r#"
let threshold = param("threshold", 3, "failed logins that flag a user");
let allowed = required_param("allowed", "array", "country codes that are fine");
let ratio = param("ratio", 0.5);
let who = param("who");
fn again() { param("threshold", 3) }
"#;
    let params = engine.params(script).unwrap();
    let listed: Vec<_> = params
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.ty.as_str(),
                p.default.clone(),
                p.required,
                p.doc.as_str(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (
                "threshold",
                "int",
                Some(json!(3)),
                false,
                "failed logins that flag a user"
            ),
            ("allowed", "array", None, true, "country codes that are fine"),
            ("ratio", "number", Some(json!(0.5)), false, ""),
            ("who", "any", None, true, ""),
        ]
    );
    assert!(dir.log().is_empty());
}

#[tokio::test]
async fn a_declaration_that_cannot_be_read_is_a_check_error() {
    let (_dir, engine) = setup(1).await;
    let script = r#"
let name = "threshold";
let a = param(name, 3);
let b = required_param("allowed", "list");
let c = param("limit", 3);
let d = param("limit", "3");
"#;
    let messages: Vec<String> = engine.check(script).iter().map(|d| d.message.clone()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages[0].starts_with("the name in param(...) must be a literal string"),
        "{messages:#?}"
    );
    assert!(
        messages[1].starts_with("the type of param `allowed` must be one of \"string\", \"int\""),
        "{messages:#?}"
    );
    assert!(
        messages[2].starts_with("param `limit` is declared again differently (first on line 5)"),
        "{messages:#?}"
    );
}

#[tokio::test]
async fn check_run_lists_every_problem_with_the_params_given() {
    let (dir, engine) = setup(1).await;
    let script = r#"let t = param("threshold", 3); let a = required_param("allowed", "array"); dir::list_users()"#;
    let mut given = serde_json::Map::new();
    given.insert("thresold".into(), json!(4));
    let names = runbook_core::SettingNames::new("--max-changes", "--timeout", "--param {name}=VALUE");
    let messages: Vec<String> = engine
        .check_run(script, &given, &names)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        messages,
        [
            "unknown parameter `thresold` (did you mean `threshold`?); the script takes: threshold, allowed",
            "missing required parameter `allowed` (array): set it with --param allowed=VALUE",
        ]
    );
    // A script that reads the `params` map itself may take any name.
    assert!(engine.check_run("params.anything", &given, &names).is_empty());
    assert!(dir.log().is_empty());
}
