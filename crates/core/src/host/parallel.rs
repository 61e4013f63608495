//! `parallel(items, |item| ...)`: items on several threads, calls bounded for the whole run.
//!
//! The bound is the run's: its pipeline holds one permit per action call in flight, so nested
//! `parallel`s together never have more than `concurrency` calls in flight. Threads are bounded
//! the same way: the run owns `concurrency - 1` thread slots besides its own thread, and a
//! `parallel` works on its items on the calling thread plus as many helper threads as free slots
//! allow, taking more whenever slots come free. A caller always works on its own items itself, so
//! an inner `parallel` that finds no free slot runs on its caller's thread: nesting cannot
//! deadlock, and an item waiting on an inner `parallel` holds no permit.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, INT, NativeCallContext, Position};

use super::run::{Cursor, RunHandle};

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// A run's budget of extra threads.
#[derive(Debug)]
pub(crate) struct Slots {
    free: AtomicUsize,
}

/// One thread slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.free.fetch_add(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(free: usize) -> Self {
        Slots {
            free: AtomicUsize::new(free),
        }
    }

    fn try_take(&self) -> Option<Slot<'_>> {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()
            .map(|_| Slot(self))
    }
}

/// The items of one `parallel` call and what became of them.
struct Work<'a> {
    items: &'a Array,
    next: AtomicUsize,
    failed: AtomicBool,
    helpers: AtomicUsize,
    results: Vec<Mutex<Option<RhaiResult>>>,
}

impl Work<'_> {
    fn take(&self) -> Option<usize> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.items.len()).then_some(i)
    }

    fn unstarted(&self) -> usize {
        self.items.len().saturating_sub(self.next.load(Ordering::Relaxed))
    }
}

/// `parallel(items, |item| ...)`: results in input order. The first failing item stops the
/// others from starting and fails the call with its index; items already running finish.
pub(crate) fn parallel(ctx: NativeCallContext, items: Array, f: FnPtr) -> Result<Array, Box<EvalAltResult>> {
    let pos = ctx.call_position();
    let run = RunHandle::from_ctx(&ctx)?;
    let total = items.len();
    if total == 0 {
        return Ok(Array::new());
    }
    // The `parallel` is a step: which items it was given.
    let key = run.next_step();
    let shown: Vec<serde_json::Value> = items
        .iter()
        .map(|item| {
            super::convert::dynamic_to_json(item).unwrap_or_else(|_| serde_json::Value::String(format!("{item:?}")))
        })
        .collect();
    let digest = crate::journal::digest(&serde_json::Value::Array(shown));
    let count = total as u64;
    run.step_at(
        &key,
        crate::journal::StepKind::Parallel,
        "",
        serde_json::json!({ "items": count, "digest": digest }),
        async move { Ok(serde_json::json!({ "items": count })) },
        pos,
    )?;
    let engine = ctx.engine();
    let ast = run.run.ast.clone();
    let observer = run.run.observer.clone();
    if let Some(o) = &observer {
        o.parallel_started(total);
    }
    let work = Work {
        items: &items,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        helpers: AtomicUsize::new(0),
        results: (0..total).map(|_| Mutex::new(None)).collect(),
    };
    // Each thread calls with its own engine, whose tag carries that thread's lane.
    let one = |engine: &rhai::Engine, i: usize| {
        let outcome = f.call::<Dynamic>(engine, &ast, (work.items[i].clone(),));
        if outcome.is_err() {
            work.failed.store(true, Ordering::Relaxed);
        }
        if let Some(o) = &observer {
            o.parallel_item_done();
        }
        *work.results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
    };

    std::thread::scope(|scope| {
        while let Some(i) = work.take() {
            // Every item not yet started beyond this one could use a thread of its own.
            let wanted = work.unstarted();
            while work.helpers.load(Ordering::Relaxed) < wanted {
                let Some(slot) = run.run.slots.try_take() else {
                    break;
                };
                work.helpers.fetch_add(1, Ordering::Relaxed);
                let (work, one, state, key) = (&work, &one, &run.run, key.as_str());
                scope.spawn(move || {
                    let _slot = slot;
                    let here = state.on_this_thread();
                    let engine = state.host.engine(Some(&here));
                    while let Some(i) = work.take() {
                        here.within(Cursor::item(key, i), || one(&engine, i));
                    }
                    work.helpers.fetch_sub(1, Ordering::Relaxed);
                });
            }
            run.within(Cursor::item(&key, i), || one(engine, i));
        }
    });
    if let Some(o) = &observer {
        o.parallel_finished();
    }

    let mut out = Array::with_capacity(total);
    let mut first_error: Option<(usize, Box<EvalAltResult>)> = None;
    for (i, slot) in work.results.into_iter().enumerate() {
        match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => {
                // A guard refusal, timeout or interrupt wins over an ordinary failure.
                let replace = match &first_error {
                    None => true,
                    Some((_, prev)) => !is_abort(prev) && is_abort(&e),
                };
                if replace {
                    first_error = Some((i, e));
                }
            }
            None => {}
        }
    }
    match first_error {
        None => Ok(out),
        Some((i, e)) => Err(item_error(i, e, pos)),
    }
}

fn is_abort(e: &EvalAltResult) -> bool {
    matches!(innermost(e), EvalAltResult::ErrorTerminated(..))
}

fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    match e {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => innermost(inner),
        other => other,
    }
}

/// Names the failing item: an action's error map keeps its fields (still catchable) with the
/// index added; any other error becomes a message naming the index.
fn item_error(index: usize, error: Box<EvalAltResult>, pos: Position) -> Box<EvalAltResult> {
    let inner = innermost(&error);
    match inner {
        EvalAltResult::ErrorTerminated(..) => error,
        EvalAltResult::ErrorRuntime(value, inner_pos) if value.is_map() => {
            let mut map = value.read_lock::<rhai::Map>().map(|m| m.clone()).unwrap_or_default();
            let message = map.get("message").map(ToString::to_string).unwrap_or_default();
            map.insert(
                "message".into(),
                Dynamic::from(format!("parallel item {index}: {message}")),
            );
            map.insert("index".into(), Dynamic::from_int(index as INT));
            let at = if inner_pos.is_none() { pos } else { *inner_pos };
            EvalAltResult::ErrorRuntime(Dynamic::from_map(map), at).into()
        }
        other => {
            let at = if other.position().is_none() {
                pos
            } else {
                other.position()
            };
            let text = match other {
                EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
                _ => other.to_string(),
            };
            EvalAltResult::ErrorRuntime(format!("parallel item {index}: {text}").into(), at).into()
        }
    }
}
