//! A script thread's own I/O.
//!
//! Scripts run on blocking threads. Driving an action's future on the engine's multi-threaded
//! runtime from there costs two thread hand-offs per HTTP exchange: the script thread wakes a
//! runtime worker to write the request, and the worker wakes the script thread with the answer.
//! On a loaded machine those wake-ups are most of an action call's cost. So each script thread
//! (the run's own, and every `parallel` worker) gets a single-threaded runtime of its own, and
//! [`HttpClient`](crate::http::HttpClient) keeps a connection pool per such thread: the whole
//! exchange then happens on the script thread.
//!
//! Only providers that say so ([`Provider::thread_local_calls`](crate::Provider::thread_local_calls))
//! run there: a future that spawns a long-lived task (a database pool's connection, say) must run
//! on the engine's runtime, which outlives the script thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

struct LocalIo {
    runtime: tokio::runtime::Runtime,
    /// Connection pools by client: a pool's connections are tasks of the runtime that made them.
    clients: RefCell<HashMap<u64, reqwest::Client>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Rc<LocalIo>>> = const { RefCell::new(None) };
    /// True while this thread's own runtime is driving a future.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's own runtime installed; the runtime and its connections are gone
/// when `f` returns. Without a runtime (it could not be made), calls fall back to the engine's.
pub(crate) fn with_local_io<R>(f: impl FnOnce() -> R) -> R {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let installed = match runtime {
        Ok(runtime) => {
            let io = Rc::new(LocalIo {
                runtime,
                clients: RefCell::new(HashMap::new()),
            });
            LOCAL.with(|slot| slot.replace(Some(io)))
        }
        Err(e) => {
            tracing::debug!(error = %e, "no runtime of the script thread's own; calls use the engine's");
            return f();
        }
    };
    struct Restore(Option<Rc<LocalIo>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            // Ended here, on a blocking thread, rather than in a thread-local destructor; and
            // without waiting for its blocking tasks (a DNS lookup left behind by a cancelled
            // call may take many seconds).
            let mine = LOCAL.with(|slot| slot.replace(self.0.take()));
            if let Some(io) = mine.and_then(|io| Rc::try_unwrap(io).ok()) {
                drop(io.clients);
                io.runtime.shutdown_background();
            }
        }
    }
    let _restore = Restore(installed);
    f()
}

/// Runs `fut` on this thread's own runtime; `Err(fut)` when the thread has none.
pub(crate) fn block_on<F: Future>(fut: F) -> Result<F::Output, F> {
    let Some(io) = LOCAL.with(|slot| slot.borrow().clone()) else {
        return Err(fut);
    };
    struct Leave(bool);
    impl Drop for Leave {
        fn drop(&mut self) {
            INSIDE.with(|inside| inside.set(self.0));
        }
    }
    let _leave = Leave(INSIDE.with(|inside| inside.replace(true)));
    Ok(io.runtime.block_on(fut))
}

/// This thread's pool for the client `id` when the thread has a runtime of its own and is
/// inside it; `None` means: use the shared pool.
pub(crate) fn client(
    id: u64,
    make: impl FnOnce() -> reqwest::Result<reqwest::Client>,
) -> Option<reqwest::Result<reqwest::Client>> {
    // A future on the engine's runtime may be polled on this thread too (it was handed to
    // `Handle::block_on`); its connections must then be the engine's.
    if !INSIDE.with(Cell::get) {
        return None;
    }
    let io = LOCAL.with(|slot| slot.borrow().clone())?;
    if let Some(client) = io.clients.borrow().get(&id) {
        return Some(Ok(client.clone()));
    }
    let client = make();
    if let Ok(client) = &client {
        io.clients.borrow_mut().insert(id, client.clone());
    }
    Some(client)
}
