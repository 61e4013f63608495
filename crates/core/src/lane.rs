//! Lanes: where a script thread's action calls run.
//!
//! A script runs on a blocking thread (the run's own, and each `parallel` helper). Driving a
//! call's future on the engine's multi-threaded runtime from there costs two thread hand-offs
//! per HTTP exchange — the script thread wakes a runtime worker to write the request, and a
//! worker wakes the script thread with the answer — and on a small machine those wake-ups are
//! most of a call's cost (BENCHMARKS.md, figure 1). So each script thread works on a **lane**: a
//! single-threaded runtime that the thread drives itself while it waits for a call, with that
//! lane's own connection to each service. The whole exchange then happens on the script thread.
//!
//! Lanes belong to the engine, not to a run: a thread takes a free lane when it starts and gives it
//! back when it ends, so the next `parallel` call, and the next run, reuse its connections.
//! There are never more lanes than script threads were ever busy at once (the run-wide
//! concurrency bounds those).
//!
//! What lives on a lane progresses only while its thread waits for a call, so only the HTTP
//! exchange itself runs in the lane's context ([`LaneIo::exchange`]): the request's connection is
//! the lane's. The rest of a call — the provider's own code, anything it spawns, a rate budget
//! kept in PostgreSQL — runs in the engine runtime's context ([`LaneIo::call`]), as it would
//! without lanes: a provider keeps no promise about where its futures run.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};

/// How long a lane keeps an unused connection. A lane's connections are read only while its
/// thread makes calls, so a server's close of an idle connection is noticed late: keeping them
/// for less than the shortest keep-alive servers commonly use (5 s) leaves few to find closed.
pub(crate) const LANE_IDLE_CONNECTION: Duration = Duration::from_secs(4);

/// The engine's lanes that no thread holds.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    free: Mutex<Vec<Lane>>,
}

/// A single-threaded runtime and its connection pools, driven by one script thread at a time.
#[derive(Debug)]
struct Lane {
    runtime: Option<Runtime>,
    clients: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
}

/// What a call on a lane reaches: the lane's connection pools, its runtime, and the runtime of
/// the run the call belongs to.
#[derive(Debug)]
pub(crate) struct LaneIo {
    clients: Arc<Mutex<HashMap<u64, reqwest::Client>>>,
    lane: Handle,
    engine: Handle,
}

/// A lane taken by a thread for one run: given back when dropped.
pub(crate) struct LaneGuard {
    lanes: Arc<Lanes>,
    lane: Option<Lane>,
    io: Option<Arc<LaneIo>>,
    engine: Handle,
}

impl Lanes {
    /// A free lane, or a new one, for a thread of a run on `engine` (the runtime the run was
    /// started on, which may differ from one run to the next). When no runtime can be made, the
    /// guard holds none and calls run on `engine`.
    pub fn take(self: &Arc<Self>, engine: Handle) -> LaneGuard {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let lane = match reused {
            Some(lane) => {
                // Let its connections read what arrived while it was idle (a server's close, above
                // all), so that a closed one is not picked for the next request.
                if let Some(runtime) = &lane.runtime {
                    runtime.block_on(async {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                    });
                }
                Some(lane)
            }
            None => match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => Some(Lane {
                    runtime: Some(runtime),
                    clients: Arc::new(Mutex::new(HashMap::new())),
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "no lane runtime could be made; calls use the engine's runtime");
                    None
                }
            },
        };
        let io = lane.as_ref().and_then(|lane| {
            lane.runtime.as_ref().map(|runtime| {
                Arc::new(LaneIo {
                    clients: lane.clients.clone(),
                    lane: runtime.handle().clone(),
                    engine: engine.clone(),
                })
            })
        });
        LaneGuard {
            lanes: self.clone(),
            lane,
            io,
            engine,
        }
    }
}

impl LaneGuard {
    /// Runs `fut` to completion on this thread: on the lane when there is one, else on the
    /// engine's runtime. Must be called from a thread outside any runtime (a script thread).
    pub fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        match self.lane.as_ref().and_then(|l| l.runtime.as_ref()) {
            Some(runtime) => runtime.block_on(fut),
            None => self.engine.block_on(fut),
        }
    }

    /// The lane's I/O, for the calls made on it.
    pub fn io(&self) -> Option<&Arc<LaneIo>> {
        self.io.as_ref()
    }

    /// The run's runtime.
    pub fn engine(&self) -> &Handle {
        &self.engine
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            self.lanes.free.lock().unwrap_or_else(|p| p.into_inner()).push(lane);
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Without waiting: a DNS lookup left behind by a cancelled call may take many seconds,
        // and a lane may be dropped from within the engine's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl LaneIo {
    /// This lane's pool for the client `id`, made on first use.
    pub(crate) fn client(
        &self,
        id: u64,
        make: impl FnOnce() -> reqwest::Result<reqwest::Client>,
    ) -> reqwest::Result<reqwest::Client> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&id) {
            return Ok(client.clone());
        }
        let client = make()?;
        clients.insert(id, client.clone());
        Ok(client)
    }

    /// A call's future, in the engine runtime's context: what it spawns, its timers and its
    /// other connections belong to the engine's runtime.
    pub(crate) fn call<F: Future + Unpin>(&self, fut: F) -> InContext<F> {
        InContext {
            handle: self.engine.clone(),
            fut,
        }
    }

    /// An HTTP exchange's future, in the lane's context: its connection is the lane's.
    pub(crate) fn exchange<F: Future>(&self, fut: F) -> InContext<Pin<Box<F>>> {
        InContext {
            handle: self.lane.clone(),
            fut: Box::pin(fut),
        }
    }
}

/// A future polled with a runtime's context entered: `tokio::spawn`, timers and new sockets
/// inside it belong to that runtime, whichever thread polls it.
pub(crate) struct InContext<F> {
    handle: Handle,
    fut: F,
}

impl<F: Future + Unpin> Future for InContext<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.handle.enter();
        Pin::new(&mut this.fut).poll(cx)
    }
}
