//! `check`: problems found without running anything.

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
            .any(|m| m.starts_with("line 6") && m.contains("dir::disable_user takes 1 argument(s), got 3")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("line 7") && m.contains("state::get takes 1 argument(s), got 2")),
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
            .any(|m| m.starts_with("line 9") && m.contains("state::set takes 2 argument(s), got 1")),
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
