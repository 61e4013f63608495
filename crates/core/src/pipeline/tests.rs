//! The call pipeline on its own: no script engine, a provider that records what reaches it.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::action::{ParamSpec, ParamType};
use crate::audit::AuditError;
use crate::state::MemoryState;

const ID: &[ParamSpec] = &[ParamSpec::required("id", ParamType::String, "")];
const LOGIN: &[ParamSpec] = &[
    ParamSpec::required("user", ParamType::String, ""),
    ParamSpec::required("password", ParamType::String, "").secret(),
];
const READ: ActionSpec = ActionSpec::read("get", "").params(ID);
const WRITE: ActionSpec = ActionSpec::write("disable", "").params(ID);
const SLOW_WRITE: ActionSpec = ActionSpec::write("slow_disable", "").params(ID);
const SET_PASSWORD: ActionSpec = ActionSpec::write("set_password", "").params(LOGIN);

/// Records every call that reaches it and the most calls it saw at once.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Value)>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

#[async_trait]
impl Provider for Recorder {
    fn namespace(&self) -> &str {
        "rec"
    }

    fn actions(&self) -> &[ActionSpec] {
        &[READ, WRITE, SLOW_WRITE, SET_PASSWORD]
    }

    async fn call(&self, _: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let wait = if action.name == "slow_disable" { 200 } else { 10 };
        tokio::time::sleep(Duration::from_millis(wait)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push((action.name.to_owned(), args.clone()));
        Ok(json!({"done": args["id"]}))
    }

    fn planned_result(&self, _: &ActionSpec, _: &Value) -> Value {
        json!("(planned)")
    }
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(a, _)| a.clone()).collect()
    }
}

/// A sink that keeps records, and fails from the `fail_from`-th on.
struct Sink {
    kept: Mutex<Vec<AuditRecord>>,
    fail_from: usize,
}

impl AuditSink for Sink {
    fn record(&self, record: &AuditRecord) -> Result<(), AuditError> {
        let mut kept = self.kept.lock().unwrap();
        if kept.len() + 1 >= self.fail_from {
            return Err(AuditError::new("disk full"));
        }
        kept.push(record.clone());
        Ok(())
    }
}

fn pipeline(plan: bool, max_changes: u64, concurrency: usize, sink: Option<Arc<dyn AuditSink>>) -> Arc<Pipeline> {
    Arc::new(Pipeline::new(PipelineSetup {
        run_id: "r1".into(),
        plan,
        max_changes,
        concurrency,
        names: SettingNames::new("--max-changes", "--timeout", "--param {name}=VALUE"),
        cancel: CancellationToken::new(),
        sink,
        state: Arc::new(MemoryState::new()),
        durable: None,
        fence: None,
        expect: None,
        policy: None,
        budgets: Vec::new(),
    }))
}

fn provider() -> (Arc<Recorder>, Arc<dyn Provider>) {
    let recorder = Arc::new(Recorder::default());
    (recorder.clone(), recorder)
}

#[tokio::test(start_paused = true)]
async fn the_guard_refuses_the_call_past_the_cap_before_it_is_sent() {
    let (recorder, provider) = provider();
    let run = pipeline(false, 2, 4, None);
    for id in ["a", "b"] {
        run.call(&provider, &WRITE, json!({"id": id}), None, "1").await.unwrap();
    }
    let refused = run.call(&provider, &WRITE, json!({"id": "c"}), None, "1").await;
    assert!(matches!(refused, Err(CallFailure::Stopped)));
    assert_eq!(
        recorder.seen(),
        ["disable", "disable"],
        "the third never reached the provider"
    );
    let Some(Abort::Guard(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(
        message.contains("cap for this run is 2 (raise --max-changes"),
        "{message}"
    );
    // Reads still count nothing, but the run has stopped: nothing more is sent.
    assert!(matches!(
        run.call(&provider, &READ, json!({"id": "a"}), None, "1").await,
        Err(CallFailure::Stopped)
    ));
    let records = run.take_records();
    let outcomes: Vec<CallOutcome> = records.audit.iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, [CallOutcome::Ok, CallOutcome::Ok, CallOutcome::Refused]);
}

#[tokio::test(start_paused = true)]
async fn plan_mode_records_changes_and_sends_only_reads() {
    let (recorder, provider) = provider();
    let run = pipeline(true, 100, 4, None);
    run.call(&provider, &READ, json!({"id": "a"}), None, "1").await.unwrap();
    let planned = run
        .call(
            &provider,
            &SET_PASSWORD,
            json!({"user": "ann", "password": "hunter2-secret"}),
            None,
            "2",
        )
        .await
        .unwrap();
    assert_eq!(planned, json!("(planned)"));
    assert_eq!(recorder.seen(), ["get"]);
    let records = run.take_records();
    assert_eq!(records.planned_changes.len(), 1);
    assert_eq!(records.planned_changes[0].action, "rec.set_password");
    assert_eq!(
        records.planned_changes[0].args,
        json!({"user": "ann", "password": "***"})
    );
    assert_eq!(records.audit[1].outcome, CallOutcome::Planned);
    assert_eq!(records.audit[1].args["password"], json!("***"));
}

#[tokio::test(start_paused = true)]
async fn a_plan_past_the_cap_lists_every_change_and_reports_the_full_total() {
    let (recorder, provider) = provider();
    let run = pipeline(true, 1, 4, None);
    for (key, id) in [("1", "a"), ("2", "b"), ("3", "c")] {
        run.call(&provider, &WRITE, json!({ "id": id }), None, key)
            .await
            .unwrap();
    }
    assert!(recorder.seen().is_empty(), "a plan sends no change");
    assert_eq!(run.take_records().planned_changes.len(), 3);
    let (_, refusal) = run.plan_refusal().expect("the real run would be refused");
    assert!(refusal.contains("would touch 3 target(s); the cap is 1"), "{refusal}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_audit_trail_stops_the_run_after_the_call_it_could_not_record() {
    let (recorder, provider) = provider();
    let sink = Arc::new(Sink {
        kept: Mutex::new(Vec::new()),
        fail_from: 2,
    });
    let run = pipeline(false, 100, 4, Some(sink.clone()));
    run.call(&provider, &WRITE, json!({"id": "a"}), None, "1")
        .await
        .unwrap();
    let second = run.call(&provider, &WRITE, json!({"id": "b"}), None, "1").await;
    assert!(
        matches!(second, Err(CallFailure::Stopped)),
        "the unrecorded call's value is not handed on"
    );
    let third = run.call(&provider, &WRITE, json!({"id": "c"}), None, "1").await;
    assert!(matches!(third, Err(CallFailure::Stopped)));
    assert_eq!(
        recorder.seen(),
        ["disable", "disable"],
        "nothing is sent once the trail fails"
    );
    let Some(Abort::Audit(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(
        message.contains("disk full") && message.contains("after call 2 (rec.disable)"),
        "{message}"
    );
    // The run's own record keeps every call, also the one the sink lost.
    assert_eq!(run.take_records().audit.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn calls_in_flight_are_bounded_for_the_whole_run() {
    let (recorder, provider) = provider();
    let run = pipeline(false, 1000, 3, None);
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let (run, provider) = (run.clone(), provider.clone());
            tokio::spawn(async move {
                run.call(&provider, &READ, json!({"id": i.to_string()}), None, "1")
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(recorder.seen().len(), 20);
    assert_eq!(recorder.most_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_lets_a_write_in_flight_finish_and_reports_it() {
    let (recorder, provider) = provider();
    let run = pipeline(false, 1, 4, None);
    let slow = {
        let (run, provider) = (run.clone(), provider.clone());
        tokio::spawn(async move { run.call(&provider, &SLOW_WRITE, json!({"id": "a"}), None, "1").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The cap is taken by the slow write: this one is refused while the first is in flight.
    let refused = run.call(&provider, &WRITE, json!({"id": "b"}), None, "1").await;
    assert!(matches!(refused, Err(CallFailure::Stopped)));
    let slow = slow.await.unwrap();
    assert!(slow.is_ok(), "the write in flight finished: {slow:?}");
    assert_eq!(recorder.seen(), ["slow_disable"]);
    let records = run.take_records();
    let slow_record = records.audit.iter().find(|r| r.action == "rec.slow_disable").unwrap();
    assert_eq!(slow_record.outcome, CallOutcome::Ok, "reported as applied");
}

#[tokio::test(start_paused = true)]
async fn a_change_still_waiting_for_its_turn_is_not_sent_once_the_run_stops() {
    let (recorder, provider) = provider();
    // One call at a time; the cap is taken by the two first writes.
    let run = pipeline(false, 2, 1, None);
    let spawn = |spec: &'static ActionSpec, id: &'static str| {
        let (run, provider) = (run.clone(), provider.clone());
        tokio::spawn(async move { run.call(&provider, spec, json!({"id": id}), None, "1").await })
    };
    let slow = spawn(&SLOW_WRITE, "a");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiting = spawn(&WRITE, "b");
    tokio::time::sleep(Duration::from_millis(10)).await;
    // A third write passes the cap: the run stops while "b" still waits for the permit.
    assert!(matches!(
        run.call(&provider, &WRITE, json!({"id": "c"}), None, "1").await,
        Err(CallFailure::Stopped)
    ));
    assert!(slow.await.unwrap().is_ok(), "the write in flight finishes");
    assert!(matches!(waiting.await.unwrap(), Err(CallFailure::Stopped)));
    assert_eq!(recorder.seen(), ["slow_disable"], "the waiting write was never sent");
    let outcomes: Vec<(String, CallOutcome)> = run
        .take_records()
        .audit
        .iter()
        .map(|r| (r.action.clone(), r.outcome))
        .collect();
    assert!(
        outcomes.contains(&("rec.disable".to_owned(), CallOutcome::Refused)),
        "{outcomes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancellation_abandons_calls_in_flight() {
    let (recorder, provider) = provider();
    let run = pipeline(false, 10, 4, None);
    let slow = {
        let (run, provider) = (run.clone(), provider.clone());
        tokio::spawn(async move { run.call(&provider, &SLOW_WRITE, json!({"id": "a"}), None, "1").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    run.stop(Abort::Cancelled);
    assert!(matches!(slow.await.unwrap(), Err(CallFailure::Stopped)));
    assert!(recorder.seen().is_empty());
    assert_eq!(run.take_records().audit[0].outcome, CallOutcome::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn arguments_the_action_does_not_take_stop_the_run_before_sending() {
    let (recorder, provider) = provider();
    let run = pipeline(false, 10, 4, None);
    let wrong = run
        .call(&provider, &WRITE, json!({"id": "a", "reason": "x"}), None, "1")
        .await;
    assert!(matches!(wrong, Err(CallFailure::Stopped)));
    assert_eq!(
        run.abort_reason(),
        Some(Abort::InvalidArgs(
            "rec::disable: unknown option `reason`; valid keys: id".to_owned()
        ))
    );
    assert!(recorder.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_plans_state_writes_stay_with_the_plan() {
    let state = Arc::new(MemoryState::new());
    let setup = |plan| PipelineSetup {
        run_id: "r".into(),
        plan,
        max_changes: 10,
        concurrency: 1,
        names: SettingNames::default(),
        cancel: CancellationToken::new(),
        sink: None,
        state: state.clone(),
        durable: None,
        fence: None,
        expect: None,
        policy: None,
        budgets: Vec::new(),
    };
    let plan = Pipeline::new(setup(true));
    plan.state_set("1", "cursor", json!(5)).await.unwrap();
    assert_eq!(plan.state_get("cursor").await.unwrap(), Some(json!(5)));
    assert_eq!(state.get("cursor").await.unwrap(), None, "a plan stores nothing");
    let real = Pipeline::new(setup(false));
    real.state_set("1", "cursor", json!(6)).await.unwrap();
    assert_eq!(state.get("cursor").await.unwrap(), Some(json!(6)));
}

/// A directory of users: reads answer with their records; it identifies the users it knows.
#[derive(Default)]
struct Directory {
    sent: Mutex<Vec<Value>>,
    asked: AtomicUsize,
}

fn directory_user(id: &str) -> Option<Value> {
    match id {
        "u-boss" => Some(json!({"id": "u-boss", "email": "Boss@corp.example", "roles": []})),
        "u-root" => {
            Some(json!({"id": "u-root", "email": "root@corp.example", "roles": [{"id": "r1", "name": "admins"}]}))
        }
        "u-ann" => Some(json!({"id": "u-ann", "email": "ann@corp.example", "roles": []})),
        _ => None,
    }
}

#[async_trait]
impl Provider for Directory {
    fn namespace(&self) -> &str {
        "dir"
    }

    fn actions(&self) -> &[ActionSpec] {
        &[READ, WRITE]
    }

    async fn call(&self, _: &CallContext, action: &ActionSpec, args: Value) -> Result<Value, ActionError> {
        if action.effect.is_mutating() {
            self.sent.lock().unwrap().push(args);
            return Ok(Value::Null);
        }
        let id = args["id"].as_str().unwrap_or_default();
        Ok(directory_user(id).unwrap_or(Value::Null))
    }

    async fn identify(&self, _: &CallContext, _: &ActionSpec, id: &str) -> Result<Option<Value>, ActionError> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        Ok(if id == "u-ghost" { None } else { directory_user(id) })
    }
}

fn governed(plan: bool, protect: &[&str], budgets: Vec<Budget>) -> Pipeline {
    Pipeline::new(PipelineSetup {
        run_id: "r".into(),
        plan,
        max_changes: 100,
        concurrency: 4,
        names: SettingNames::default(),
        cancel: CancellationToken::new(),
        sink: None,
        state: Arc::new(MemoryState::new()),
        durable: None,
        fence: None,
        expect: None,
        policy: Some(Arc::new(Policy::new(protect, "").unwrap())),
        budgets,
    })
}

#[tokio::test]
async fn a_protected_target_is_refused_before_it_is_sent_or_planned() {
    for plan in [false, true] {
        let directory = Arc::new(Directory::default());
        let provider: Arc<dyn Provider> = directory.clone();
        let run = governed(plan, &["boss@corp.example"], Vec::new());
        run.call(&provider, &READ, json!({"id": "u-boss"}), None, "1")
            .await
            .unwrap();
        run.call(&provider, &WRITE, json!({"id": "u-ann"}), None, "2")
            .await
            .unwrap();
        let refused = run.call(&provider, &WRITE, json!({"id": "u-boss"}), None, "3").await;
        assert!(matches!(refused, Err(CallFailure::Stopped)));
        let Some(Abort::Policy(message)) = run.abort_reason() else {
            panic!("{:?}", run.abort_reason());
        };
        assert!(
            message.contains("target Boss@corp.example (id u-boss) is protected by rule \"boss@corp.example\""),
            "{message}"
        );
        let sent = directory.sent.lock().unwrap().len();
        let planned = run.take_records().planned_changes.len();
        assert_eq!(sent + planned, 1, "only ann's change went on (plan: {plan})");
        assert_eq!(
            directory.asked.load(Ordering::SeqCst),
            1,
            "ann, whom no read showed, was identified; the boss was known from the read"
        );
    }
}

#[tokio::test]
async fn role_rules_look_at_roles_and_unknown_targets_fail_closed() {
    let directory = Arc::new(Directory::default());
    let provider: Arc<dyn Provider> = directory.clone();
    let run = governed(false, &["dir-role:admins"], Vec::new());
    run.call(&provider, &WRITE, json!({"id": "u-root"}), None, "1")
        .await
        .unwrap_err();
    let Some(Abort::Policy(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(message.contains("holds role admins"), "{message}");

    let run = governed(false, &["role:admins"], Vec::new());
    run.call(&provider, &WRITE, json!({"id": "u-ghost"}), None, "1")
        .await
        .unwrap_err();
    let Some(Abort::Policy(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(message.contains("cannot tell who target u-ghost is"), "{message}");
    assert!(message.contains("fail closed"), "{message}");

    // An id rule needs nobody identified.
    let asked = directory.asked.load(Ordering::SeqCst);
    let run = governed(false, &["a4bf58e7-0000-4000-8000-000000000001"], Vec::new());
    run.call(&provider, &WRITE, json!({"id": "u-ghost"}), None, "1")
        .await
        .unwrap();
    assert_eq!(directory.asked.load(Ordering::SeqCst), asked);
    assert!(directory.sent.lock().unwrap().len() == 1);
}

#[tokio::test]
async fn the_budget_refuses_the_change_that_would_pass_it() {
    let directory = Arc::new(Directory::default());
    let provider: Arc<dyn Provider> = directory.clone();
    let budget = Budget::new(5, 3, "today's budget", "max_changes_per_day");
    let run = governed(false, &[], vec![budget.clone()]);
    for (i, id) in ["a", "b"].iter().enumerate() {
        run.call(&provider, &WRITE, json!({"id": id}), None, &i.to_string())
            .await
            .unwrap();
    }
    run.call(&provider, &WRITE, json!({"id": "c"}), None, "3")
        .await
        .unwrap_err();
    let Some(Abort::Budget(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(
        message.contains("today's budget: 5 changes, 3 used in the last 24 h by earlier runs and 2 by this run"),
        "{message}"
    );
    assert_eq!(directory.sent.lock().unwrap().len(), 2);

    // A plan plans every change and ends refused, with the total.
    let plan = governed(true, &[], vec![budget]);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        plan.call(&provider, &WRITE, json!({"id": id}), None, &i.to_string())
            .await
            .unwrap();
    }
    let (kind, message) = plan.plan_refusal().unwrap();
    assert_eq!(kind, crate::run::RunErrorKind::Budget);
    assert!(message.contains("the plan would touch 3 target(s)"), "{message}");
}

/// A count another run's changes move while this run goes on.
struct Shared(Arc<AtomicU64>);

#[async_trait]
impl crate::policy::ChangeCount for Shared {
    async fn count(&self) -> Result<u64, String> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn a_recounted_budget_sees_the_changes_of_runs_going_at_the_same_time() {
    let directory = Arc::new(Directory::default());
    let provider: Arc<dyn Provider> = directory.clone();
    let elsewhere = Arc::new(AtomicU64::new(1));
    let budget =
        Budget::new(4, 1, "today's budget", "max_changes_per_day").recounted(Arc::new(Shared(elsewhere.clone())));
    let run = governed(false, &[], vec![budget]);
    // No journal here: the count never holds this run's own changes, which it adds itself.
    run.call(&provider, &WRITE, json!({"id": "a"}), None, "1")
        .await
        .unwrap();
    // Another run makes two changes meanwhile: 1 + 2 elsewhere and 1 here fill the budget.
    elsewhere.store(3, Ordering::SeqCst);
    run.call(&provider, &WRITE, json!({"id": "b"}), None, "2")
        .await
        .unwrap_err();
    let Some(Abort::Budget(message)) = run.abort_reason() else {
        panic!("{:?}", run.abort_reason());
    };
    assert!(
        message.contains("today's budget: 4 changes, 3 used in the last 24 h by earlier runs and 1 by this run"),
        "{message}"
    );
    assert_eq!(directory.sent.lock().unwrap().len(), 1);
}
