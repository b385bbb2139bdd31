//! Talking to an axum `Router` in-process, as an HTTP client would: a test builds its
//! request, [`send`] collects the answer.
//!
//! Included by the tests that need it with `#[path = "common/http.rs"] mod http;`
//! rather than from `common/mod.rs`, so the tests that do not need it include none
//! of it.

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, request};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An answer, its body read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    /// The body as JSON; panics, showing the body, if it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts a problem+json answer of this status and type; returns its detail.
    pub(crate) fn problem(&self, status: StatusCode, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.body
        );
        let problem = self.json();
        assert_eq!(problem["type"], kind, "{}", self.body);
        assert_eq!(problem["status"], status.as_u16(), "{}", self.body);
        problem["detail"].as_str().unwrap().to_owned()
    }
}

/// Finishes `request` with `body` as its JSON body, or with none.
pub(crate) fn with_json(request: request::Builder, body: Option<Value>) -> Request<Body> {
    match body {
        Some(json) => request
            .header("content-type", "application/json")
            .body(Body::from(json.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap()
}

/// Sends `request` to `app`; the answer, body and all.
pub(crate) async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}
