//! The command line without any service: check, actions, usage and configuration errors.

use crate::support::Workspace;

#[tokio::test]
async fn check_reports_a_syntax_error_with_line_and_column() {
    let ws = Workspace::new();
    ws.file(
        "broken.rhai",
        "let users = cloudflare::list_users();\nlet n = (users.len() + ;\n",
    );
    let out = ws.run(&["check", "broken.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("broken.rhai:2:"), "{}", out.stderr);
}

#[tokio::test]
async fn check_reports_an_unknown_action_and_a_wrong_arity() {
    let ws = Workspace::new();
    ws.file(
        "typo.rhai",
        "let users = cloudflare::lst_users();\nfor u in users { privx::reset_mfa(u.id, 2, 3); }\n",
    );
    let out = ws.run(&["check", "typo.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("typo.rhai:1:13: unknown action cloudflare::lst_users (did you mean cloudflare::list_users?)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("typo.rhai:2:")
            && out
                .stderr
                .contains("privx::reset_mfa takes 1 argument (ids), got 3: privx::reset_mfa(ids)"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn check_passes_a_sound_script_without_any_provider_configured() {
    let ws = Workspace::new();
    ws.file(
        "ok.rhai",
        "let users = cloudflare::list_users(#{search: \"x\"});\nprivx::find_user(\"a@b.c\")\n",
    );
    let out = ws.run(&["check", "ok.rhai"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "ok.rhai: ok");
}

#[tokio::test]
async fn actions_describes_one_action() {
    let ws = Workspace::new();
    let out = ws.run(&["actions", "cloudflare.list_users"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for expected in [
        "cloudflare::list_users(#{email, name, search})",
        "effect:      read",
        "returns:     array of User",
        "search",
    ] {
        assert!(out.stdout.contains(expected), "missing {expected:?} in\n{}", out.stdout);
    }
    let out = ws.run(&["actions", "privx.reset_mfa", "--json"]).await;
    let spec = out.json();
    assert_eq!(spec["effect"], "write");
    assert_eq!(spec["targets"], serde_json::json!({"kind": "count_of", "param": "ids"}));
    let out = ws.run(&["actions", "cloudflare.nope"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("unknown action cloudflare::nope"), "{}", out.stderr);
}

#[tokio::test]
async fn an_unconfigured_provider_names_the_variables_to_set() {
    let ws = Workspace::new();
    ws.file("list.rhai", "cloudflare::list_users().len()");
    let out = ws.run(&["run", "list.rhai"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("cloudflare is not configured: set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN (or CLOUDFLARE_EMAIL + CLOUDFLARE_API_KEY)"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.trim().is_empty(), "stdout: {}", out.stdout);
    assert!(
        out.stderr
            .contains("hint: to try the script without any tenant, run it against the built-in simulators: runbook run list.rhai --simulate"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_text_param_given_digits_or_true_gets_the_text() {
    let ws = Workspace::new();
    ws.file(
        "ids.rhai",
        r#"
        let id = required_param("employee_id", "string", "the employee's id");
        let tag = param("tag", "none", "a tag");
        [id, type_of(id), tag, type_of(tag)]
        "#,
    );
    let out = ws
        .run(&[
            "run",
            "ids.rhai",
            "-p",
            "employee_id=12345",
            "-p",
            "tag=true",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.json()["result"],
        serde_json::json!(["12345", "string", "true", "string"])
    );
}

#[tokio::test]
async fn bad_params_are_usage_errors() {
    let ws = Workspace::new();
    ws.file("p.rhai", "params");
    let out = ws.run(&["run", "p.rhai", "--param", "novalue"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--param \"novalue\" has no `=`"), "{}", out.stderr);
    ws.file("params.json", "{\"a\": 1,\n \"b\": }\n");
    let out = ws.run(&["run", "p.rhai", "--params-file", "params.json"]).await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("params.json: line 2"), "{}", out.stderr);
    let out = ws
        .run(&["run", "p.rhai", "--params-file", "params.json", "--timeout", "soon"])
        .await;
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("\"soon\""), "{}", out.stderr);
}

#[tokio::test]
async fn params_reach_the_script_as_json_values() {
    let ws = Workspace::new();
    ws.file(
        "p.rhai",
        "#{t: params.threshold + 1, allowed: params.allowed, email: params.email}",
    );
    ws.file("base.json", "{\"threshold\": 1, \"email\": \"x@example.com\"}");
    let out = ws
        .run(&[
            "run",
            "p.rhai",
            "--params-file",
            "base.json",
            "-p",
            "threshold=3",
            "-p",
            "allowed=[\"FI\",\"SE\"]",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let doc = out.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(
        doc["result"],
        serde_json::json!({"t": 4, "allowed": ["FI", "SE"], "email": "x@example.com"})
    );
    assert_eq!(doc["calls"], 0);
}

#[tokio::test]
async fn configuration_errors_name_the_file_line_and_fix() {
    let ws = Workspace::new();
    ws.file("s.rhai", "1");
    ws.file(
        "runbook.toml",
        "[providers.cloudflare]\naccount_id = \"abc\"\napi_token = \"${NOT_SET_ANYWHERE}\"\n",
    );
    let out = ws.run(&["run", "s.rhai"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("runbook.toml:3: ${NOT_SET_ANYWHERE} is not set in the environment"),
        "{}",
        out.stderr
    );

    ws.file("runbook.toml", "[providers.cloudfare]\naccount_id = \"abc\"\n");
    let out = ws.run(&["run", "s.rhai"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("unknown provider [providers.cloudfare]; known providers: cloudflare, http, privx"),
        "{}",
        out.stderr
    );

    ws.file("runbook.toml", "[providers.cloudflare]\naccount_id = \"abc\"\n");
    let out = ws.run(&["run", "s.rhai"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("api_token in [providers.cloudflare]"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_timeout() {
    let ws = Workspace::new();
    ws.file("spin.rhai", "let n = 0;\nwhile n >= 0 { n += 1; }\n");
    let out = ws.run(&["run", "spin.rhai", "--timeout", "1s"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("the run was stopped after its timeout of 1s"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn completions_are_printed() {
    let ws = Workspace::new();
    let out = ws.run(&["completions", "bash"]).await;
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.contains("runbook"));
}

#[tokio::test]
async fn the_checked_in_action_reference_is_current() {
    let ws = Workspace::new();
    let out = ws.run(&["actions", "--markdown"]).await;
    assert_eq!(out.code, Some(0));
    let path = format!("{}/docs/actions.md", env!("CARGO_MANIFEST_DIR"));
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        checked_in == out.stdout,
        "docs/actions.md is out of date: run `cargo run -- actions --markdown > docs/actions.md`"
    );
}

#[test]
fn every_action_is_documented_reachable_and_its_example_checks() {
    use runbook_core::{Engine, ProviderConfig};
    let mut builder = Engine::builder();
    let descriptors = runbook_core::registered_providers();
    let namespaces: Vec<&str> = descriptors.iter().map(|d| d.namespace).collect();
    assert_eq!(namespaces, vec!["cloudflare", "http", "privx"]);
    for d in &descriptors {
        builder = builder.descriptor(d, &ProviderConfig::from_vars(d.namespace, [("UNSET", "")]));
    }
    let engine = builder.build().unwrap();
    for d in &descriptors {
        assert!(!d.summary.is_empty() && !d.settings.is_empty(), "{}", d.namespace);
        for spec in d.actions {
            let name = format!("{}::{}", d.namespace, spec.name);
            assert!(
                !spec.summary.is_empty() && !spec.returns.is_empty(),
                "{name} lacks docs"
            );
            assert!(
                spec.params.iter().all(|p| !p.doc.is_empty()),
                "{name} has an undocumented parameter"
            );
            assert!(
                spec.example.contains(&name),
                "{name}'s example does not call it: {}",
                spec.example
            );
            // Examples use a few common variables; give them as parameters so the example compiles as written.
            let wrapped = format!("fn example(u, a, b, sessions, flagged) {{\n{}\n}}", spec.example);
            let problems = engine.check(&wrapped);
            assert!(problems.is_empty(), "{name}'s example does not check: {problems:?}");
            for arity in spec.arities() {
                let args = vec!["()"; arity].join(", ");
                let problems = engine.check(&format!("{name}({args})"));
                assert!(
                    problems.is_empty(),
                    "{name} is not reachable with {arity} argument(s): {problems:?}"
                );
            }
        }
    }
}

/// A workspace whose tables are fitted to `columns` characters.
fn narrow(columns: usize) -> Workspace {
    let mut ws = Workspace::new();
    ws.set_env("COLUMNS", &columns.to_string());
    ws
}

#[tokio::test]
async fn a_report_with_a_long_table_fits_80_columns_with_the_key_columns_first() {
    let ws = narrow(80);
    ws.file(
        "report.rhai",
        "let users = cloudflare::list_users();\n#{total: users.len(), users: users.extract(0, 6)}\n",
    );
    let out = ws.run(&["run", "report.rhai", "--simulate"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for line in out.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} characters: {line:?}\n{}",
            line.chars().count(),
            out.stdout
        );
    }
    assert!(out.stdout.starts_with("total  500\n"), "{}", out.stdout);
    // Records come back with their fields in alphabetical order (access_seat, created_at, ...);
    // the columns that say which user a row is come first all the same.
    let header = out.stdout.lines().find(|l| l.contains("email")).unwrap_or_default();
    let words: Vec<&str> = header
        .trim_matches(|c: char| c == '│' || c.is_whitespace())
        .split_whitespace()
        .collect();
    assert_eq!(words[..3], ["id", "email", "name"], "{}", out.stdout);
    assert!(out.stdout.contains("maria.virtanen@"), "{}", out.stdout);
    assert!(
        out.stdout.contains("more column(s) do not fit in 80 characters: "),
        "the columns left out are named:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn every_kind_of_empty_value_renders_the_same() {
    let ws = narrow(100);
    for empty in ["()", "\"\"", "[]", "#{}"] {
        ws.file("empty.rhai", empty);
        let out = ws.run(&["run", "empty.rhai"]).await;
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "-\n"), "{empty}: {out:?}");
    }
    ws.file("report.rhai", "#{a: (), b: \"\", c: [], d: #{}, e: 0}");
    let out = ws.run(&["run", "report.rhai"]).await;
    assert_eq!(out.stdout, "a  -\nb  -\nc  -\nd  -\ne  0\n", "{out:?}");
    ws.file(
        "table.rhai",
        "[#{id: \"1\", x: ()}, #{id: \"2\", x: \"\"}, #{id: \"3\", x: []}, #{id: \"4\", x: #{}}, #{id: \"5\"}]",
    );
    let out = ws.run(&["run", "table.rhai"]).await;
    let cells: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()).split_once(' '))
        .filter(|(id, _)| id.parse::<u8>().is_ok())
        .map(|(_, x)| x.trim())
        .collect();
    assert_eq!(cells, ["-"; 5], "{}", out.stdout);
}

#[tokio::test]
async fn csv_prints_a_list_of_records_and_refuses_other_shapes() {
    let ws = narrow(100);
    ws.file(
        "users.rhai",
        "[#{name: \"Doe, Jane\", id: \"u1\", note: \"says \\\"hi\\\"\"}, #{id: \"u2\", name: \"Roe\", note: ()}]",
    );
    let out = ws.run(&["run", "users.rhai", "--output", "csv"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "id,name,note\r\nu1,\"Doe, Jane\",\"says \"\"hi\"\"\"\r\nu2,Roe,\r\n"
    );
    ws.file("report.rhai", "#{total: 2, users: [#{id: \"u1\"}, #{id: \"u2\"}]}");
    let out = ws.run(&["run", "report.rhai", "-o", "csv"]).await;
    assert_eq!(
        out.stdout, "id\r\nu1\r\nu2\r\n",
        "a report's one list of records: {out:?}"
    );
    ws.file("count.rhai", "42");
    let out = ws.run(&["run", "count.rhai", "-o", "csv"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains(
            "--output csv prints a list of records (or a map holding exactly one); this result is a single value"
        ),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn every_output_ends_with_a_newline() {
    let ws = narrow(100);
    ws.file("runbook.toml", "[serve]\nstore = \"sqlite://runs.db\"\n");
    let store = runbook_serve::store::SqliteStore::open(&ws.path().join("runs.db"))
        .await
        .unwrap();
    let queued = runbook_serve::store::Store::enqueue(
        &store,
        runbook_serve::store::NewRun {
            automation: "report".into(),
            trigger: "webhook".into(),
            idem_key: None,
            dedup: Vec::new(),
            scheduled_for: None,
            params: serde_json::Map::new(),
            event: None,
            max_retries: 0,
            retry_of: None,
            script: String::new(),
            started_by: "webhook".into(),
        },
    )
    .await
    .unwrap();
    drop(store);
    for (name, script) in [
        ("text", "\"done\""),
        ("number", "3"),
        ("report", "#{n: 1, users: [#{id: \"u1\", email: \"a@b.c\"}]}"),
        ("table", "[#{id: \"u1\"}]"),
        ("list", "[1, 2]"),
        ("empty", "()"),
    ] {
        ws.file("s.rhai", script);
        for format in ["pretty", "json"] {
            let out = ws.run(&["run", "s.rhai", "-o", format]).await;
            assert!(out.stdout.ends_with('\n'), "{name} as {format}: {:?}", out.stdout);
        }
    }
    for args in [
        &["actions"][..],
        &["actions", "privx"],
        &["actions", "privx.reset_mfa"],
        &["actions", "--json"],
        &["runs", "list"],
        &["runs", "list", "-o", "json"],
        &["runs", "list", "-o", "csv"],
        &["runs", "show", &queued.run_id],
        &["runs", "show", &queued.run_id, "-o", "json"],
    ] {
        let out = ws.run(args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
        assert!(out.stdout.ends_with('\n'), "{args:?}: {:?}", out.stdout);
    }
    let shown = ws.run(&["runs", "show", &queued.run_id]).await;
    assert!(shown.stdout.contains("started     -\n"), "{}", shown.stdout);
}

#[tokio::test]
async fn init_writes_a_project_whose_sample_checks_and_runs_and_never_overwrites() {
    let ws = narrow(100);
    let out = ws.run(&["init", "project"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let toml = std::fs::read_to_string(ws.path().join("project/runbook.toml")).unwrap();
    for setting in [
        "account_id",
        "api_token",
        "api_email",
        "api_key",
        "base_url",
        "rate_limit",
        "timeout",
        "api_client_id",
        "api_client_secret",
        "oauth_client_id",
        "oauth_client_secret",
        "ca_cert",
    ] {
        assert!(
            toml.contains(&format!("# {setting} ")),
            "{setting} is not explained:\n{toml}"
        );
    }
    assert!(toml.contains("\"${CLOUDFLARE_API_TOKEN}\"") && toml.contains("\"${PRIVX_API_CLIENT_SECRET}\""));

    let project = Workspace {
        dir: tempfile::TempDir::new_in(ws.path()).unwrap(),
        env: Vec::new(),
    };
    let out = project.run(&["init"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = project.run(&["check", "inactive_users.rhai"]).await;
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "inactive_users.rhai: ok\n"),
        "{out:?}"
    );
    // The file as written loads (every ${VAR} is commented out), and the sample runs.
    let out = project
        .run(&["run", "inactive_users.rhai", "--simulate", "-o", "json"])
        .await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.json()["result"]["users"], 500);

    std::fs::write(project.path().join("inactive_users.rhai"), "// mine").unwrap();
    let out = project.run(&["init"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("runbook.toml and inactive_users.rhai already exist; runbook init overwrites nothing"),
        "{}",
        out.stderr
    );
    let kept = std::fs::read_to_string(project.path().join("inactive_users.rhai")).unwrap();
    assert_eq!(kept, "// mine");
}
