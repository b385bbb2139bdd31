//! The todo_saas example end to end on PostgreSQL: accounts, lists as tenants,
//! isolation between users' lists, sharing, per-list metering, suspension, the move
//! of a list to its own database by `tenants move`, and the lifecycle events.

#[path = "../examples/todo_saas/main.rs"]
#[allow(dead_code)]
mod todo_saas;

#[allow(dead_code)] // Only `tenants` is used here.
mod common;
// `Saas::call` reads an answer's status and body only.
#[path = "common/http.rs"]
#[allow(dead_code)]
mod http;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use common::tenants;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tenants::provision::Environment;
use tenants::{DataModel, SqlIdent, TenantId};
use tenants_test_support::{postgres, unique_name};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use todo_saas::{Config, Event};

/// The process's Prometheus recorder: one per process, shared by the tests (each
/// counts its own lists, whose ids are unique).
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

struct Saas {
    app: axum::Router,
    events: UnboundedReceiver<Event>,
    url: String,
    tag: String,
}

/// The app on a fresh database, with an application role and template of its own
/// (roles and databases are global to the test server).
async fn start() -> Saas {
    let url = postgres().fresh_database();
    let tag = unique_name("saas");
    let config = Config {
        database_url: url.clone(),
        app_password: "app-password".into(),
        token_key: b"a test key of the todo_saas tests, 32+ bytes".to_vec(),
        token_lifetime: Duration::from_secs(900),
        app_role: Some(format!("todo_app_{tag}")),
        template: Some(format!("todo_template_{tag}")),
    };
    let (sender, events) = unbounded_channel();
    let subscriber = Arc::new(move |event| {
        let _ = sender.send(event);
    });
    let app = todo_saas::app(config, prometheus(), subscriber)
        .await
        .unwrap();
    Saas {
        app,
        events,
        url,
        tag,
    }
}

impl Saas {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let answer = http::send(&self.app, http::with_json(request, body)).await;
        let value = serde_json::from_str(&answer.body).unwrap_or(Value::String(answer.body));
        (answer.status, value)
    }

    /// Signs a new user up; their token.
    async fn sign_up(&self, name: &str) -> String {
        let email = self.email(name);
        let (status, session) = self
            .call(
                "POST",
                "/api/signup",
                None,
                Some(json!({"email": email, "password": "correct horse"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{session}");
        session["token"].as_str().unwrap().to_owned()
    }

    fn email(&self, name: &str) -> String {
        format!("{name}@{}.test", self.tag.replace('_', "-"))
    }

    /// Makes a list; its id and the owner's new token.
    async fn create_list(&self, token: &str, name: &str) -> (String, String) {
        let (status, created) = self
            .call(
                "POST",
                "/api/lists",
                Some(token),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        (
            created["id"].as_str().unwrap().to_owned(),
            created["session"]["token"].as_str().unwrap().to_owned(),
        )
    }

    async fn add(&self, token: &str, list: &str, title: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/lists/{list}/todos"),
            Some(token),
            Some(json!({"title": title})),
        )
        .await
    }

    /// The titles of a list's todos, or the refusal.
    async fn titles(&self, token: &str, list: &str) -> Result<Vec<String>, (StatusCode, Value)> {
        let (status, todos) = self
            .call(
                "GET",
                &format!("/api/lists/{list}/todos"),
                Some(token),
                None,
            )
            .await;
        if status != StatusCode::OK {
            return Err((status, todos));
        }
        Ok(todos
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_owned())
            .collect())
    }

    async fn share(&self, token: &str, list: &str, email: &str) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/lists/{list}/shares"),
            Some(token),
            Some(json!({"email": email})),
        )
        .await
    }

    async fn set_status(&self, token: &str, list: &str, status: &str) -> StatusCode {
        self.call(
            "PUT",
            &format!("/api/lists/{list}/status"),
            Some(token),
            Some(json!({"status": status})),
        )
        .await
        .0
    }

    /// A fresh token and the lists it names, from `/api/me`.
    async fn me(&self, token: &str) -> (String, Vec<Value>) {
        let (status, session) = self.call("GET", "/api/me", Some(token), None).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        (
            session["token"].as_str().unwrap().to_owned(),
            session["lists"].as_array().unwrap().clone(),
        )
    }

    /// Waits for `wanted` among the events (a bounded wait: events arrive through
    /// PostgreSQL's NOTIFY).
    async fn expect_event(&mut self, wanted: Event) {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(20), self.events.recv()).await {
                Ok(Some(event)) if event == wanted => return,
                Ok(Some(event)) => seen.push(event),
                _ => panic!("no {wanted:?} among {seen:?}"),
            }
        }
    }

    fn sql(&self, sql: &str) -> String {
        postgres().psql(&self.url, sql)
    }
}

fn problem_type(problem: &Value) -> &str {
    problem["type"].as_str().unwrap_or_default()
}

/// The count of `tenants_requests_total` for one list and status class.
fn requests(metrics: &str, list: &str, class: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("tenants_requests_total")
                && l.contains(&format!("tenant=\"{list}\""))
                && l.contains(&format!("status=\"{class}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_their_own_and_shared_lists_only() {
    let mut s = start().await;

    // Accounts.
    let alice = s.sign_up("alice").await;
    let again = s
        .call(
            "POST",
            "/api/signup",
            None,
            Some(json!({"email": s.email("ALICE"), "password": "another one"})),
        )
        .await;
    assert_eq!(again.0, StatusCode::CONFLICT, "emails are case-insensitive");
    for bad in [
        json!({"email": "not-an-email", "password": "long enough"}),
        json!({"email": s.email("dave"), "password": "short"}),
    ] {
        let (status, _) = s.call("POST", "/api/signup", None, Some(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let wrong = s
        .call(
            "POST",
            "/api/signin",
            None,
            Some(json!({"email": s.email("alice"), "password": "wrong horse"})),
        )
        .await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    let (status, session) = s
        .call(
            "POST",
            "/api/signin",
            None,
            Some(json!({"email": s.email("alice"), "password": "correct horse"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(session["lists"], json!([]));
    let bob = s.sign_up("bob").await;
    let carol = s.sign_up("carol").await;

    // Lists are tenants, in the pool.
    let (groceries, alice) = s.create_list(&alice, "Groceries").await;
    s.expect_event(Event::Created {
        list: groceries.parse().unwrap(),
    })
    .await;
    assert_eq!(
        s.add(&alice, &groceries, "milk").await.0,
        StatusCode::CREATED
    );
    let (status, todo) = s.add(&alice, &groceries, "<script>alert(1)</script>").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        todo["title"], "<script>alert(1)</script>",
        "stored as typed"
    );
    let (bobs, bob) = s.create_list(&bob, "Bob's plans").await;
    assert_eq!(
        s.add(&bob, &bobs, "bob's secret").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        s.titles(&alice, &groceries).await.unwrap(),
        ["milk", "<script>alert(1)</script>"]
    );
    assert_eq!(s.titles(&bob, &bobs).await.unwrap(), ["bob's secret"]);
    assert_eq!(
        s.sql(&format!(
            "SELECT count(DISTINCT tenant_id) FROM todos WHERE tenant_id IN ('{groceries}', '{bobs}')"
        )),
        "2",
        "both lists share one table"
    );

    // Isolation: another user's list is refused by the layer, before any handler.
    for (token, list) in [(&bob, &groceries), (&carol, &groceries), (&alice, &bobs)] {
        let (status, problem) = s.titles(token, list).await.unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(problem_type(&problem), "urn:tenants:problem:not-a-member");
        let (status, _) = s.add(token, list, "intrusion").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = s
        .call("GET", &format!("/api/lists/{groceries}/todos"), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    let (status, problem) = s
        .call(
            "GET",
            &format!("/api/lists/{groceries}/todos"),
            Some("not.a.token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(problem_type(&problem), "urn:tenants:problem:invalid-token");
    let (status, _) = s
        .call(
            "GET",
            "/api/lists/list-nosuchlist00/todos",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .call("GET", "/api/lists/Not_A_List/todos", Some(&alice), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Sharing: the owner shares; the share reaches bob with his next token.
    let (status, _) = s.share(&alice, &groceries, &s.email("nobody")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, shared) = s.share(&alice, &groceries, &s.email("Bob")).await;
    assert_eq!(status, StatusCode::CREATED, "{shared}");
    s.expect_event(Event::Shared {
        list: groceries.parse().unwrap(),
        with: s.email("bob"),
    })
    .await;
    assert_eq!(
        s.titles(&bob, &groceries).await.unwrap_err().0,
        StatusCode::FORBIDDEN,
        "bob's token predates the share"
    );
    let (bob, bob_lists) = s.me(&bob).await;
    let names: Vec<(&str, bool)> = bob_lists
        .iter()
        .map(|l| (l["name"].as_str().unwrap(), l["owner"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("Groceries", false), ("Bob's plans", true)]);
    assert_eq!(
        s.titles(&bob, &groceries).await.unwrap(),
        ["milk", "<script>alert(1)</script>"]
    );
    assert_eq!(
        s.add(&bob, &groceries, "bread").await.0,
        StatusCode::CREATED
    );
    assert_eq!(s.titles(&alice, &groceries).await.unwrap().len(), 3);
    // Bob may use the list, not share it further; carol stays out.
    let (status, problem) = s.share(&bob, &groceries, &s.email("carol")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    let (carol, carol_lists) = s.me(&carol).await;
    assert!(carol_lists.is_empty());
    assert_eq!(
        s.titles(&carol, &groceries).await.unwrap_err().0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.titles(&alice, &bobs).await.unwrap_err().0,
        StatusCode::FORBIDDEN
    );

    // Metering, per list: the requests that reached each list's handlers.
    let (status, metrics) = s.call("GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_owned();
    // Groceries: 2 adds and 2 reads by alice, her share, a read and an add by bob;
    // refused by the handlers: the read without a token (401), the share with
    // nobody (404) and bob's share (403). The layer's refusals reach no list.
    assert_eq!(requests(&metrics, &groceries, "2xx"), Some(7), "{metrics}");
    assert_eq!(requests(&metrics, &groceries, "4xx"), Some(3), "{metrics}");
    assert_eq!(requests(&metrics, &bobs, "2xx"), Some(2), "{metrics}");
    assert!(metrics.contains(&format!(
        "tenants_request_duration_seconds_count{{tenant=\"{groceries}\"}}"
    )));

    // The page escapes nothing itself: it never writes user text as HTML.
    let (status, page) = s.call("GET", "/", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let page = page.as_str().unwrap();
    assert!(page.contains("textContent") && !page.contains("innerHTML"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_moves_to_its_own_database_and_is_served_the_same() {
    let mut s = start().await;
    let alice = s.sign_up("alice").await;
    let bob = s.sign_up("bob").await;
    let (big, alice) = s.create_list(&alice, "Big list").await;
    let (small, alice) = s.create_list(&alice, "Small list").await;
    for title in ["one", "two"] {
        assert_eq!(s.add(&alice, &big, title).await.0, StatusCode::CREATED);
    }
    assert_eq!(s.add(&alice, &small, "stays").await.0, StatusCode::CREATED);
    let (status, _) = s
        .call(
            "POST",
            &format!("/api/lists/{big}/shares"),
            Some(&alice),
            Some(json!({"email": s.email("bob")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (bob, _) = s.me(&bob).await;

    // One command moves the list, as an operator would run it.
    let dir = std::env::temp_dir().join(format!("todo-saas-{}", s.tag));
    std::fs::create_dir_all(&dir).unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/todo_saas");
    let file = std::fs::read_to_string(format!("{example}/tenants.toml"))
        .unwrap()
        .replace(
            "url_env = \"DATABASE_URL\"",
            &format!("url = \"{}\"", s.url),
        )
        .replace("\"todo_app\"", &format!("\"todo_app_{}\"", s.tag))
        .replace("\"todo_template\"", &format!("\"todo_template_{}\"", s.tag))
        .replace(
            "migrations = \"migrations\"",
            &format!("migrations = \"{example}/migrations\""),
        );
    let path = dir.join("tenants.toml");
    std::fs::write(&path, file).unwrap();
    // The file names no variable: its URL is written in.
    let args = ["move", "-f", path.to_str().unwrap(), &big, "--to", "silo"];
    let run = tenants(&Environment::empty(), &args).await;
    assert_eq!(run.code, 0, "{run}");
    let database = big.replace('-', "_");
    assert!(
        run.stdout
            .contains(&format!("lives in database {database}")),
        "{run}"
    );
    s.expect_event(Event::Moved {
        list: big.parse().unwrap(),
        to: DataModel::Silo {
            database: SqlIdent::new(database.as_str()).unwrap(),
            server: None,
        },
    })
    .await;

    // The same handlers serve it from its own database, to both its users.
    assert_eq!(s.titles(&alice, &big).await.unwrap(), ["one", "two"]);
    assert_eq!(s.add(&bob, &big, "three").await.0, StatusCode::CREATED);
    assert_eq!(
        s.titles(&alice, &big).await.unwrap(),
        ["one", "two", "three"]
    );
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM todos WHERE tenant_id = '{big}'"
        )),
        "0",
        "the shared table no longer holds the list's rows"
    );
    assert_eq!(
        postgres().psql(
            &postgres().url_for(&database),
            "SELECT string_agg(title, ',' ORDER BY id) FROM todos"
        ),
        "one,two,three"
    );
    // The other list stays in the pool, untouched.
    assert_eq!(s.titles(&alice, &small).await.unwrap(), ["stays"]);
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM todos WHERE tenant_id = '{small}'"
        )),
        "1"
    );
    let (_, lists) = s.me(&alice).await;
    let models: Vec<&str> = lists.iter().map(|l| l["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["silo", "pool"]);
    assert_eq!(
        s.titles(&bob, &small).await.unwrap_err().0,
        StatusCode::FORBIDDEN
    );

    // Suspended, the list is refused; resumed, it is served again. Only its owner
    // may do either.
    assert_eq!(
        s.set_status(&bob, &big, "suspended").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.set_status(&alice, &big, "deleted").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        s.set_status(&alice, &big, "suspended").await,
        StatusCode::NO_CONTENT
    );
    let (status, problem) = s.titles(&bob, &big).await.unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        problem_type(&problem),
        "urn:tenants:problem:suspended-tenant"
    );
    assert_eq!(s.add(&alice, &big, "four").await.0, StatusCode::FORBIDDEN);
    let list: TenantId = big.parse().unwrap();
    s.expect_event(Event::Suspended { list }).await;
    assert_eq!(
        s.set_status(&alice, &big, "active").await,
        StatusCode::NO_CONTENT
    );
    s.expect_event(Event::Resumed { list }).await;
    assert_eq!(s.titles(&bob, &big).await.unwrap().len(), 3);
}
