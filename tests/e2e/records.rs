//! Strict records through the binary: a mistyped field of an action's record is named by
//! `check` when the script shows where the record comes from, and stops the run otherwise, before
//! any change is sent.

use crate::fixtures::{cf_id, tenant};
use crate::support::Sims;

/// One mistake: the script, and the message `check` (static) or the run (runtime only) gives.
struct Case {
    name: &'static str,
    script: String,
    message: &'static str,
    /// `check` sees it; otherwise only the run does.
    static_: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "a field typo inside a filter closure",
            script: "let stale = cloudflare::list_users().filter(|u| u.last_sucessful_login == ());\n\
                     for u in stale { cloudflare::delete_user(u.id); }\n"
                .to_owned(),
            message: "a User has no field last_sucessful_login (did you mean last_successful_login?)",
            static_: true,
        },
        Case {
            name: "a variable bound to an action's result",
            script: format!(
                "let u = cloudflare::get_user(\"{}\");\ncloudflare::revoke_user(u.emial);\n",
                cf_id(1)
            ),
            message: "a User has no field emial (did you mean email?)",
            static_: true,
        },
        Case {
            name: "a for loop over a list action's result",
            script: "for u in privx::search_users() {\n  if u.full_nmae != \"\" { privx::reset_mfa(u.id); }\n}\n"
                .to_owned(),
            message: "a User has no field full_nmae (did you mean full_name?)",
            static_: true,
        },
        Case {
            name: "a parallel over a list action's items",
            script: "parallel(cloudflare::list_users(), |u| cloudflare::update_user(u.idd, #{name: \"x\"}));\n"
                .to_owned(),
            message: "a User has no field idd (did you mean id?)",
            static_: true,
        },
        Case {
            name: "direct access on a call",
            script: format!(
                "let mail = cloudflare::get_user(\"{}\").emial;\ncloudflare::revoke_user(mail);\n",
                cf_id(2)
            ),
            message: "a User has no field emial (did you mean email?)",
            static_: true,
        },
        Case {
            name: "a record passed through a function",
            script: "fn stale(u) { u.last_sucessful_login == () }\n\
                     for u in cloudflare::list_users() { if stale(u) { cloudflare::delete_user(u.id); } }\n"
                .to_owned(),
            message: "a User has no field last_sucessful_login (did you mean last_successful_login?)",
            static_: false,
        },
    ]
}

#[tokio::test]
async fn a_mistyped_record_field_is_refused_and_nothing_is_changed() {
    for case in cases() {
        let sims = Sims::start(tenant(3, 2)).await;
        let ws = sims.workspace();
        let file = ws.file("typo.rhai", &case.script);
        let file = file.to_string_lossy();

        let check = ws.run(&["check", &file]).await;
        let requests = sims.cf().requests().len() + sims.px().requests().len();
        assert_eq!(requests, 0, "{}: check sent a request", case.name);
        if case.static_ {
            assert_eq!(check.code, Some(2), "{}: {check:?}", case.name);
            assert!(check.stderr.contains(case.message), "{}: {}", case.name, check.stderr);
        } else {
            assert_eq!(check.code, Some(0), "{}: {check:?}", case.name);
        }

        let run = ws.run(&["run", &file]).await;
        assert!(run.stderr.contains(case.message), "{}: {}", case.name, run.stderr);
        if case.static_ {
            // `run` checks first: a mistake the check sees stops the run before any request.
            assert_eq!(run.code, Some(2), "{}: {run:?}", case.name);
            let requests = sims.cf().requests().len() + sims.px().requests().len();
            assert_eq!(requests, 0, "{}: the run sent {requests} request(s)", case.name);
        } else {
            // Only the run sees it: it stops at the read, before the change that read was for.
            assert_eq!(run.code, Some(1), "{}: {run:?}", case.name);
        }
        assert_eq!(sims.changes(), 0, "{}: a change was sent", case.name);
        sims.shutdown().await;
    }
}
