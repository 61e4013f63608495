//! Mistakes in scripts and their params cost nothing: each is refused before any request reaches
//! a service, with a message that names the fix. One line of the table per mistake.

use crate::support::Sims;

/// A mistaken script, how it is run, and what the user must be told.
struct Mistake {
    /// The script's text.
    script: &'static str,
    /// Arguments after `runbook run SCRIPT`.
    args: &'static [&'static str],
    /// The exit code.
    code: i32,
    /// The useful part of the message on stderr.
    says: &'static str,
}

const fn mistake(script: &'static str, args: &'static [&'static str], code: i32, says: &'static str) -> Mistake {
    Mistake {
        script,
        args,
        code,
        says,
    }
}

const MISTAKES: &[Mistake] = &[
    // An action typo after a change: the change is not made either.
    mistake(
        "privx::disable_mfa([\"u1\"]);\ncloudflare::delet_user(\"u1\");",
        &[],
        2,
        "mistake.rhai:2:1: unknown action cloudflare::delet_user (did you mean cloudflare::delete_user?)",
    ),
    mistake(
        "cloudflare::list_users(#{emial: \"ann@example.com\"})",
        &[],
        2,
        "cloudflare::list_users: unknown option `emial` (did you mean `email`?); valid keys: email, name, search",
    ),
    mistake(
        "let u = privx::get_user();",
        &[],
        2,
        "privx::get_user takes 1 argument (user_id), got 0: privx::get_user(user_id)",
    ),
    mistake(
        "privx::get_user(42)",
        &[],
        2,
        "privx::get_user: `user_id` must be string, got int",
    ),
    mistake(
        "cloudflare::create_user(\"ann@example.com\", #{email: \"ann@example.com\"})",
        &[],
        2,
        "cloudflare::create_user: `email` is a positional argument: cloudflare::create_user(email, #{name})",
    ),
    mistake(
        "cloudfare::list_users()",
        &[],
        2,
        "unknown namespace `cloudfare` (did you mean `cloudflare`?)",
    ),
    mistake(
        "invoke(\"cloudflare.list_user\", #{})",
        &[],
        2,
        "invoke: unknown action cloudflare::list_user (did you mean cloudflare::list_users?)",
    ),
    mistake(
        "let v = state::get();",
        &[],
        2,
        "state::get takes 1 argument (key), got 0",
    ),
    mistake(
        "let n = 0;\nloop { n += cloudflare::list_users().len(); }",
        &[],
        2,
        "mistake.rhai:2:1: this loop never ends",
    ),
    mistake(
        "let t = param(\"threshold\", 3, \"failed logins\");\ncloudflare::list_users()",
        &["-p", "thresold=5"],
        2,
        "unknown parameter `thresold` (did you mean `threshold`?); the script takes: threshold",
    ),
    mistake(
        "let t = param(\"threshold\", 3, \"failed logins\");\ncloudflare::list_users()",
        &["-p", "threshold=3x"],
        2,
        "parameter `threshold` must be an int (like its default 3), got the string \"3x\"",
    ),
    mistake(
        "let a = required_param(\"allowed\", \"array\", \"country codes that are fine\");\ncloudflare::list_users()",
        &[],
        2,
        "missing required parameter `allowed` (array: country codes that are fine): set it with --param allowed=VALUE",
    ),
    mistake(
        "let a = required_param(\"allowed\", \"array\");\ncloudflare::list_users()",
        &["-p", "allowed=[\"FI\",\"SE\""],
        2,
        "--param allowed: the value [\"FI\",\"SE\" starts like JSON but is not valid JSON (EOF while parsing a list",
    ),
    mistake(
        "let a = required_param(\"allowed\", \"array\");\ncloudflare::list_users()",
        &["-p", "allowed=FI"],
        2,
        "parameter `allowed` must be an array, got the string \"FI\"",
    ),
    mistake(
        "cloudflare::list_users()",
        &["-p", "revoke=true"],
        2,
        "unknown parameter `revoke`: the script declares no parameters",
    ),
    mistake(
        "let name = \"threshold\";\nlet t = param(name, 3);",
        &[],
        2,
        "mistake.rhai:2:15: the name in param(...) must be a literal string",
    ),
    mistake(
        "let a = required_param(\"allowed\", \"strng\");",
        &[],
        2,
        "(did you mean \"string\"?)",
    ),
    mistake(
        "let u = #{};\nlet email = u.email;\nemail.to_lower()",
        &[],
        1,
        "mistake.rhai:3:7: `to_lower` was called on (): the value is empty (())",
    ),
];

#[tokio::test]
async fn every_mistake_is_refused_before_a_request_naming_the_fix() {
    let sims = Sims::start(crate::fixtures::tenant(3, 3)).await;
    let ws = sims.workspace();
    ws.file("mistake.rhai", "");
    for (i, m) in MISTAKES.iter().enumerate() {
        ws.file("mistake.rhai", m.script);
        let mut args = vec!["run", "mistake.rhai"];
        args.extend(m.args);
        let out = ws.run(&args).await;
        assert_eq!(out.code, Some(m.code), "mistake {i}:\n{}\n{out:?}", m.script);
        assert!(
            out.stderr.contains(m.says),
            "mistake {i}:\n{}\nwanted: {}\nstderr: {}",
            m.script,
            m.says,
            out.stderr
        );
        for leak in ["ImmutableString", "i64", "Function not found", "(line "] {
            assert!(!out.stderr.contains(leak), "mistake {i} leaks {leak}: {}", out.stderr);
        }
        let sent = sims.cf().requests().len() + sims.px().requests().len();
        assert_eq!(sent, 0, "mistake {i} reached a simulator:\n{}", m.script);
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn check_finds_the_same_mistakes_as_run() {
    let ws = crate::support::Workspace::new();
    // Params are given to `run`, not to `check`: a missing one is a mistake only `run` sees.
    let in_the_script = |m: &Mistake| m.args.is_empty() && m.code == 2 && !m.says.contains("parameter `");
    for (i, m) in MISTAKES.iter().enumerate().filter(|(_, m)| in_the_script(m)) {
        ws.file("mistake.rhai", m.script);
        let out = ws.run(&["check", "mistake.rhai"]).await;
        assert_eq!(out.code, Some(2), "mistake {i}: {out:?}");
        assert!(out.stderr.contains(m.says), "mistake {i}: {}", out.stderr);
    }
}

#[tokio::test]
async fn every_shipped_script_declares_the_params_its_header_lists() {
    let ws = crate::support::Workspace::new();
    let dir = format!("{}/scripts", env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .collect();
    scripts.sort();
    assert!(scripts.len() >= 5, "{scripts:?}");
    for path in scripts {
        let shown = path.display().to_string();
        let out = ws.run(&["check", "--params", "-o", "json", &shown]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        let mut declared: Vec<String> = out.json()[&shown]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                assert!(!p["doc"].as_str().unwrap().is_empty(), "{shown}: {p} has no doc");
                p["name"].as_str().unwrap().to_owned()
            })
            .collect();
        declared.sort();
        let mut listed = header_params(&std::fs::read_to_string(&path).unwrap());
        listed.sort();
        assert_eq!(
            declared, listed,
            "{shown}: the header's Params and the declarations differ"
        );
    }
}

/// The names a script's header lists under `// Params`: `//   name   what it is`.
fn header_params(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| !l.starts_with("// Params"))
        .skip(1)
        .take_while(|l| l.trim_end() != "//" && l.starts_with("//"))
        .filter_map(|l| {
            let rest = l.strip_prefix("//   ")?;
            let name = rest.split_whitespace().next()?;
            (!rest.starts_with(' ') && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn serve_refuses_an_automation_whose_params_do_not_fit_its_script() {
    let ws = crate::support::Workspace::new();
    ws.file(
        "watch.rhai",
        "let t = param(\"threshold\", 3, \"failed logins that flag a user\");\nt",
    );
    ws.file(
        "runbook.toml",
        "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[automation]]\nname = \"watch\"\nscript = \"watch.rhai\"\n\
         params = { treshold = 5 }\ntrigger = { every = \"5m\" }\n",
    );
    let out = ws.run(&["serve"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("automation \"watch\"")
            && out
                .stderr
                .contains("unknown parameter `treshold` (did you mean `threshold`?); the script takes: threshold"),
        "{}",
        out.stderr
    );
}
