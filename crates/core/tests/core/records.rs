//! Strict records: a field an action's record does not have is an error, at run time and in
//! `check`; maps a script builds itself are ordinary maps.

use runbook_core::{RunErrorKind, RunOptions};
use serde_json::json;

use crate::{run, setup};

fn messages(found: &[runbook_core::Diagnostic]) -> Vec<String> {
    found.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn reading_a_field_a_record_lacks_fails_naming_the_closest_field_and_where() {
    let (_dir, engine) = setup(2).await;
    // Through a function, which `check` cannot follow: the run itself catches it.
    let script = "fn mail(u) {\n  u.emial\n}\nmail(dir::get_user(\"u1\"))\n";
    assert!(engine.check(script).is_empty());
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert_eq!(err.kind, RunErrorKind::Script);
    assert!(
        err.message
            .starts_with("script error: a User has no field emial (did you mean email?)"),
        "{}",
        err.message
    );
    assert_eq!(err.position, Some((2, 5)), "the position of the field");
}

#[tokio::test]
async fn every_item_of_a_list_is_strict() {
    let (_dir, engine) = setup(3).await;
    let script =
        "fn stale(users) {\n  users.filter(|u| u.last_sucessful_login == ())\n}\nstale(dir::list_users()).len()\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert!(
        err.message
            .contains("a User has no field last_sucessful_login; its fields: id, email, disabled, last_login, manager"),
        "{}",
        err.message
    );
    assert_eq!(err.position, Some((2, 22)));
}

#[tokio::test]
async fn absent_fields_read_unit_and_optional_access_keeps_working() {
    let (_dir, engine) = setup(1).await;
    let script = r#"
        let u = dir::get_user("u1");
        [u.manager == (), u.manager?.name, u.last_login ?? "never", u["big"] != (), "last_login" in u, u.email]
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    // `big` is not declared: what the service returns beyond the record stays readable by index
    // (`u.big` is a check error, since the check only knows the declared fields). A declared field
    // the service left out reads `()` but is not "in" the record: sent back to a service, the
    // record carries no field the service did not give.
    assert_eq!(
        outcome.result,
        json!([true, null, "never", true, false, "user1@example.com"])
    );
}

#[tokio::test]
async fn optional_access_on_a_record_still_names_a_mistyped_field() {
    let (_dir, engine) = setup(1).await;
    let script = "fn f(u) { u?.emial ?? \"none\" }\nf(dir::get_user(\"u1\"))\n";
    let err = run(&engine, script, RunOptions::new()).await.unwrap_err();
    assert!(err.message.contains("a User has no field emial"), "{}", err.message);
}

#[tokio::test]
async fn maps_a_script_builds_are_ordinary_maps() {
    let (_dir, engine) = setup(1).await;
    let script = r#"
        let u = dir::get_user("u1");
        let summary = #{id: u.id, deleted: 0};
        let nested = #{inner: #{a: 1}};
        let copy = u + #{note: "kept"};
        [summary.missing, nested.inner.b, copy.note, copy.email]
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(outcome.result, json!([null, null, "kept", "user1@example.com"]));
}

#[tokio::test]
async fn reading_a_missing_key_leaves_nothing_a_script_can_see() {
    let (_dir, engine) = setup(1).await;
    // The script writes keys through an index, so a read of a missing key must leave a place a
    // later write can fill; nothing of it shows.
    let script = r#"
        let seen = #{};
        let before = seen["ann"] ?? 0;
        seen["bob"] = 1;
        let counts = #{};
        for k in ["x", "y", "x"] { counts[k] = (counts[k] ?? 0) + 1; }
        [before, seen.len(), seen.keys(), seen.values(), "ann" in seen, `${seen}`, seen, counts]
    "#;
    let outcome = run(&engine, script, RunOptions::new()).await.unwrap();
    assert_eq!(
        outcome.result,
        json!([0, 1, ["bob"], [1], false, "#{\"bob\": 1}", {"bob": 1}, {"x": 2, "y": 1}])
    );
}

#[tokio::test]
async fn check_follows_a_records_origin_through_the_script() {
    let (dir, engine) = setup(1).await;
    let script = r#"
let u = dir::get_user("u1");
print(u.emial);
for x in dir::list_users() { print(x.mail); }
let stale = dir::list_users().filter(|v| v.last_sucessful_login == ());
let ids = dir::list_users().map(|w| w.idd);
parallel(dir::list_users(), |p| dir::disable_user(p.iid));
print(dir::get_user("u1").emial);
let all = invoke("dir.list_users", #{});
let kept = all.filter(|a| a.id != u.emial);
"#;
    let found = engine.check(script);
    assert_eq!(
        messages(&found),
        [
            "line 3, column 9: a User has no field emial (did you mean email?)",
            "line 4, column 38: a User has no field mail (did you mean email?)",
            "line 5, column 44: a User has no field last_sucessful_login; its fields: id, email, disabled, last_login, manager",
            "line 6, column 39: a User has no field idd (did you mean id?)",
            "line 7, column 53: a User has no field iid (did you mean id?)",
            "line 8, column 27: a User has no field emial (did you mean email?)",
            "line 10, column 37: a User has no field emial (did you mean email?)",
        ]
    );
    assert!(dir.log().is_empty(), "check ran something");
}

#[tokio::test]
async fn check_passes_what_it_cannot_follow_and_sound_reads() {
    let (_dir, engine) = setup(1).await;
    let script = r#"
fn mail(u) { u.emial }
let u = dir::get_user("u1");
let box = #{user: u};
let again = dir::get_user("u1");
again = #{emial: "x"};
print(again.emial);
print(box.user.emial);
print(u.email + u.manager?.name + u["big"]);
let u2 = #{emial: 1};
u2.emial
"#;
    let found = engine.check(script);
    assert!(found.is_empty(), "{:#?}", messages(&found));
}
