//! A small directory service on loopback, for the test provider: users that can be listed,
//! read, disabled, deleted and created; slow answers; queued faults; a request log and an
//! in-flight counter.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

/// A canned answer for the next request.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<&'static str>,
    /// More headers on the answer.
    pub headers: &'static [(&'static str, &'static str)],
}

#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub at: Instant,
    /// The `Cookie` header the request carried.
    pub cookie: Option<String>,
}

#[derive(Default)]
pub struct Inner {
    users: Mutex<BTreeMap<String, Value>>,
    faults: Mutex<VecDeque<Fault>>,
    log: Mutex<Vec<Logged>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long a change's answer is held back after the change is applied.
    write_delay_ms: AtomicUsize,
    pub token: String,
}

#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
    pub url: String,
}

impl Directory {
    pub async fn start(token: &str, users: usize) -> Directory {
        let inner = Arc::new(Inner {
            token: token.to_owned(),
            ..Inner::default()
        });
        {
            let mut map = inner.users.lock().unwrap();
            for i in 1..=users {
                let id = format!("u{i}");
                map.insert(
                    id.clone(),
                    json!({"id": id, "email": format!("user{i}@example.com"), "disabled": false, "big": u64::MAX}),
                );
            }
        }
        let app = Router::new()
            .route("/users", get(list).post(create))
            .route("/users/{id}", get(fetch).delete(remove))
            .route("/users/{id}/disabled", put(disable))
            .route("/slow", get(slow))
            .layer(middleware::from_fn_with_state(inner.clone(), gate))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Directory { inner, url }
    }

    pub fn fail_next(&self, faults: &[Fault]) {
        self.inner.faults.lock().unwrap().extend(faults.iter().cloned());
    }

    pub fn log(&self) -> Vec<Logged> {
        self.inner.log.lock().unwrap().clone()
    }

    pub fn mutating_requests(&self) -> usize {
        self.log().iter().filter(|r| r.method != "GET").count()
    }

    /// Holds every change's answer back by `delay`, after the change has been applied: a client
    /// that gives up waiting has still changed the directory.
    pub fn delay_write_answers(&self, delay: Duration) {
        self.inner
            .write_delay_ms
            .store(usize::try_from(delay.as_millis()).unwrap(), Ordering::SeqCst);
    }

    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn user(&self, id: &str) -> Option<Value> {
        self.inner.users.lock().unwrap().get(id).cloned()
    }
}

async fn gate(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let at = Instant::now();
    let cookie = request
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", inner.token));
    let fault = inner.faults.lock().unwrap().pop_front();
    let response = if let Some(fault) = fault {
        let mut r = (
            StatusCode::from_u16(fault.status).unwrap(),
            axum::Json(json!({"error": "injected"})),
        )
            .into_response();
        if let Some(ra) = fault.retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        for (name, value) in fault.headers {
            r.headers_mut().insert(*name, value.parse().unwrap());
        }
        r
    } else if !authorized {
        // Echoes what it was sent, as some services do: the client must not print it.
        let sent = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": format!("bad credentials: {sent}")})),
        )
            .into_response()
    } else {
        let write = request.method() != Method::GET;
        let response = next.run(request).await;
        let delay = inner.write_delay_ms.load(Ordering::SeqCst);
        if write && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay as u64)).await;
        }
        response
    };
    inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    // Node affinity, as a load balancer in front of an HA deployment pins a client.
    let mut response = response;
    if cookie.is_none() {
        response
            .headers_mut()
            .insert("set-cookie", "node=dir-1; Path=/".parse().unwrap());
    }
    inner.log.lock().unwrap().push(Logged {
        method,
        path,
        status: response.status().as_u16(),
        at,
        cookie,
    });
    response
}

async fn list(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    let users: Vec<Value> = inner.users.lock().unwrap().values().cloned().collect();
    axum::Json(json!({"users": users}))
}

async fn fetch(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    match inner.users.lock().unwrap().get(&id) {
        Some(u) => axum::Json(u.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no user {id}")})),
        )
            .into_response(),
    }
}

async fn disable(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    match inner.users.lock().unwrap().get_mut(&id) {
        Some(u) => {
            u["disabled"] = json!(true);
            axum::Json(u.clone()).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("no user {id}")})),
        )
            .into_response(),
    }
}

async fn remove(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> StatusCode {
    match inner.users.lock().unwrap().remove(&id) {
        Some(_) => StatusCode::NO_CONTENT,
        None => StatusCode::NOT_FOUND,
    }
}

async fn create(
    State(inner): State<Arc<Inner>>,
    _m: Method,
    _h: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut users = inner.users.lock().unwrap();
    let id = format!("u{}", users.len() + 1000);
    let user = json!({"id": id, "email": body["email"], "disabled": false});
    users.insert(id, user.clone());
    (StatusCode::CREATED, axum::Json(user)).into_response()
}

async fn slow(Query(q): Query<BTreeMap<String, u64>>) -> impl IntoResponse {
    tokio::time::sleep(Duration::from_millis(q.get("ms").copied().unwrap_or(100))).await;
    axum::Json(json!({"slept": true}))
}
