//! The identity service end to end on PostgreSQL: bad tenant ids get a problem naming
//! the rule, a tenant registered at runtime serves the very next request, per-tenant
//! options shape the answers, and users stay with their tenant and application
//! tenant, down to the database's grants.

#[path = "../examples/identity_routes/main.rs"]
#[allow(dead_code)]
mod identity_routes;

#[path = "common/http.rs"]
mod http;

use axum::http::{Request, StatusCode};
use http::Answer;
use serde_json::{Value, json};
use tenants::db::{Sqlx, TenantRole, TenantRouter};
use tenants::{DataModel, SqlIdent, Tenant};
use tenants_test_support::{postgres, unique_name};

/// A service on a fresh database, with names unique to one test (roles are shared by
/// every database of the cluster).
struct Service {
    app: axum::Router,
    url: String,
    tag: String,
    app_role: String,
}

impl Service {
    async fn start() -> Self {
        let url = postgres().fresh_database();
        let tag = unique_name("i").replace('_', "x");
        let app_role = format!("identity_app_{tag}");
        let settings = identity_routes::Settings {
            admin_url: url.clone(),
            app_role: app_role.clone(),
            app_password: None,
        };
        let app = identity_routes::app(&settings).await.unwrap();
        Service {
            app,
            url,
            tag,
            app_role,
        }
    }

    /// A tenant id unique to this test.
    fn id(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Answer {
        let request = Request::builder().method(method).uri(uri);
        http::send(&self.app, http::with_json(request, body)).await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call("GET", uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Answer {
        self.call("POST", uri, Some(body)).await
    }

    /// Registers a tenant and checks it was created.
    async fn register(&self, id: &str, name: &str, sign_in: Option<Value>) {
        let mut body = json!({"id": id, "name": name});
        if let Some(sign_in) = sign_in {
            body["sign_in"] = sign_in;
        }
        let answer = self.post("/tenants", body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }

    fn psql(&self, sql: &str) -> String {
        postgres().psql(&self.url, sql)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tenant_ids_get_a_400_problem_naming_the_rule() {
    let s = Service::start().await;
    let malformed = "urn:tenants:problem:malformed-tenant";
    for (uri, rule) in [
        ("/t/Acme_Corp/users", "may only contain a-z, 0-9 and '-'"),
        ("/t/-acme/users", "must not start with '-'"),
        ("/t/acme-/", "must not end with '-'"),
        ("/t/", "must not be empty"),
        ("/t/tenants/users", "reserved"),
        (
            &format!("/t/{}/users", "a".repeat(64)),
            "at most 63 characters",
        ),
        // Application tenants: a bad segment, a reserved one, and the composed id.
        ("/t/acme/mo%20bile/users", "may only contain"),
        (
            &format!("/t/{}/{}/", "a".repeat(40), "b".repeat(30)),
            "at most 63",
        ),
        // An application tenant is reached under its parent only.
        ("/t/acme--mobile/users", "reserved"),
    ] {
        let detail = s.get(uri).await.problem(StatusCode::BAD_REQUEST, malformed);
        assert!(detail.contains(rule), "{uri}: {detail}");
    }
    // Well-formed but unknown: 404, never some other tenant.
    s.get("/t/nobody/users")
        .await
        .problem(StatusCode::NOT_FOUND, "urn:tenants:problem:unknown-tenant");

    let invalid = "urn:identity-routes:problem:invalid-tenant-id";
    for (id, rule) in [
        ("Bad_Id", "may only contain a-z, 0-9 and '-'"),
        ("-acme", "must not start with '-'"),
        ("", "must not be empty"),
        ("tenants", "reserved"),
        ("public", "reserved"),
        ("1shop", "must start with a letter"),
        ("acme--x", "'--' is kept for application tenants"),
        ("pg-shop", "reserved by PostgreSQL"),
    ] {
        let answer = s.post("/tenants", json!({"id": id, "name": "X"})).await;
        let detail = answer.problem(StatusCode::BAD_REQUEST, invalid);
        assert!(detail.contains(rule), "{id:?}: {detail}");
    }
    // Nothing was registered by any of them.
    assert_eq!(s.psql("SELECT count(*) FROM tenants.tenants"), "0");

    // Other bad bodies are problems too, not plain text.
    let answer = s.post("/tenants", json!({"id": s.id("x")})).await;
    answer.problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:identity-routes:problem:invalid-body",
    );
    let answer = s
        .post(
            "/tenants",
            json!({"id": s.id("x"), "name": "X", "sign_in": {"token_lifetime_secs": 5}}),
        )
        .await;
    let detail = answer.problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:identity-routes:problem:invalid-request",
    );
    assert!(detail.contains("token_lifetime_secs"), "{detail}");
    let answer = s
        .post(
            "/tenants",
            json!({"id": s.id("x"), "name": "X", "sign_in": {"redirect_uris": ["http://evil.example/cb"]}}),
        )
        .await;
    answer.problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:identity-routes:problem:invalid-request",
    );
    assert_eq!(s.get("/elsewhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_registered_at_runtime_serves_the_very_next_request() {
    let s = Service::start().await;
    let acme = s.id("acme");

    // Asked for before it exists: 404, and the cache now remembers "no such tenant".
    s.get(&format!("/t/{acme}/"))
        .await
        .problem(StatusCode::NOT_FOUND, "urn:tenants:problem:unknown-tenant");

    let answer = s
        .post(
            "/tenants",
            json!({"id": acme.to_uppercase(), "name": "Acme"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.headers["location"], format!("/t/{acme}/"));
    assert_eq!(answer.json()["id"], acme, "ids are folded to lowercase");

    // The very next request is served.
    let answer = s.get(&format!("/t/{acme}/")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["name"], "Acme");
    let answer = s.get(&format!("/t/{acme}/users")).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (StatusCode::OK, "[]")
    );

    // Provisioned by the engine: a bridge record in the catalog, a migrated schema,
    // the tenant's roles, and the application role a member of them.
    let schema = acme.replace('-', "_");
    assert_eq!(
        s.psql(&format!(
            "SELECT record->>'model' || ' ' || (record->>'schema') FROM tenants.tenants WHERE id = '{acme}'"
        )),
        format!("bridge {schema}")
    );
    assert_eq!(
        s.psql(&format!("SELECT count(*) FROM {schema}._sqlx_migrations")),
        "1"
    );
    assert_eq!(
        s.psql(&format!(
            "SELECT pg_has_role('{}', 'tenant_{schema}_admin', 'MEMBER')",
            s.app_role
        )),
        "t"
    );

    // The id is taken now, whatever its case.
    let answer = s
        .post("/tenants", json!({"id": acme, "name": "Again"}))
        .await;
    answer.problem(
        StatusCode::CONFLICT,
        "urn:identity-routes:problem:tenant-exists",
    );
    assert_eq!(
        s.psql(&format!(
            "SELECT record->>'name' FROM tenants.tenants WHERE id = '{acme}'"
        )),
        "Acme"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registrations_of_one_id_at_once_create_it_once() {
    let s = Service::start().await;
    let id = s.id("race");
    let (a, b) = tokio::join!(
        s.post("/tenants", json!({"id": id, "name": "First"})),
        s.post("/tenants", json!({"id": id, "name": "Second"})),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::CONFLICT],
        "{} / {}",
        a.body,
        b.body
    );
    let winner = if a.status == StatusCode::CREATED {
        "First"
    } else {
        "Second"
    };
    assert_eq!(
        s.get(&format!("/t/{id}/")).await.json()["name"],
        winner,
        "the loser did not overwrite the winner's record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_options_shape_sign_in() {
    let s = Service::start().await;
    let (acme, globex) = (s.id("acme"), s.id("globex"));
    s.register(
        &acme,
        "Acme",
        Some(json!({
            "display_name": "<Acme & Co>",
            "token_lifetime_secs": 900,
            "redirect_uris": ["https://app.acme.example/callback", "http://localhost:8080/cb"]
        })),
    )
    .await;
    s.register(&globex, "Globex", None).await;

    let profile = s.get(&format!("/t/{acme}/")).await.json();
    assert_eq!(profile["display_name"], "<Acme & Co>");
    assert_eq!(profile["token_lifetime_secs"], 900);
    assert_eq!(profile["redirect_uris"][1], "http://localhost:8080/cb");
    // A tenant that chose nothing gets the defaults.
    let profile = s.get(&format!("/t/{globex}/")).await.json();
    assert_eq!(profile["display_name"], "Globex");
    assert_eq!(profile["token_lifetime_secs"], 3600);
    assert_eq!(profile["redirect_uris"], json!([]));

    // Acme's registered redirect URI gets its sign-in page, escaped.
    let answer = s
        .get(&format!(
            "/t/{acme}/authorize?redirect_uri=https%3A%2F%2Fapp.acme.example%2Fcallback"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(
        answer.body.contains("Sign in to &lt;Acme &amp; Co&gt;") && !answer.body.contains("<Acme"),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("for 15 minutes"), "{}", answer.body);
    // Any other redirect URI is refused; Globex registered none at all.
    for uri in [
        format!("/t/{acme}/authorize?redirect_uri=https%3A%2F%2Fevil.example%2Fcallback"),
        format!("/t/{globex}/authorize?redirect_uri=https%3A%2F%2Fapp.acme.example%2Fcallback"),
    ] {
        s.get(&uri).await.problem(
            StatusCode::BAD_REQUEST,
            "urn:identity-routes:problem:redirect-uri-not-allowed",
        );
    }
    s.get(&format!("/t/{acme}/authorize")).await.problem(
        StatusCode::BAD_REQUEST,
        "urn:identity-routes:problem:invalid-query",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_stay_with_their_tenant_and_application_tenant() {
    let s = Service::start().await;
    let (acme, globex) = (s.id("acme"), s.id("globex"));
    s.register(&acme, "Acme", None).await;
    s.register(&globex, "Globex", None).await;
    for app in ["mobile", "web"] {
        let answer = s
            .post(
                &format!("/t/{acme}/apps"),
                json!({"id": app, "name": format!("Acme {app}"),
                       "sign_in": {"token_lifetime_secs": 300}}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        assert_eq!(answer.headers["location"], format!("/t/{acme}/{app}/"));
    }

    // An application tenant is a tenant of its own, with its parent and options.
    let profile = s.get(&format!("/t/{acme}/mobile/")).await.json();
    assert_eq!(profile["id"], format!("{acme}--mobile"));
    assert_eq!(profile["parent"], acme);
    assert_eq!(profile["path"], format!("/t/{acme}/mobile"));
    assert_eq!(profile["token_lifetime_secs"], 300);

    // The same email in four places is four users; each list shows its own only.
    let places = [
        format!("/t/{acme}"),
        format!("/t/{acme}/mobile"),
        format!("/t/{acme}/web"),
        format!("/t/{globex}"),
    ];
    for place in &places {
        let answer = s
            .post(
                &format!("{place}/users"),
                json!({"email": "ada@example.com", "name": format!("Ada of {place}")}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{place}: {}",
            answer.body
        );
    }
    for place in &places {
        let users = s.get(&format!("{place}/users")).await.json();
        let names: Vec<&str> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [format!("Ada of {place}")], "{place}");
    }
    // Within one tenant an email names one user, whatever its case.
    let answer = s
        .post(
            &format!("/t/{acme}/mobile/users"),
            json!({"email": "ADA@example.com", "name": "Ada again"}),
        )
        .await;
    answer.problem(
        StatusCode::CONFLICT,
        "urn:identity-routes:problem:user-exists",
    );
    let answer = s
        .post(
            &format!("/t/{acme}/users"),
            json!({"email": "not an address", "name": "X"}),
        )
        .await;
    answer.problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:identity-routes:problem:invalid-request",
    );

    // One level of applications; unknown ones and unknown parents are 404s.
    let answer = s
        .post(
            &format!("/t/{acme}/mobile/apps"),
            json!({"id": "deeper", "name": "Deeper"}),
        )
        .await;
    answer.problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "urn:identity-routes:problem:nested-application",
    );
    let answer = s
        .post(
            &format!("/t/{acme}/apps"),
            json!({"id": "users", "name": "X"}),
        )
        .await;
    let detail = answer.problem(
        StatusCode::BAD_REQUEST,
        "urn:identity-routes:problem:invalid-tenant-id",
    );
    assert!(detail.contains("reserved"), "{detail}");
    for uri in [
        format!("/t/{acme}/desktop/users"),
        format!("/t/{globex}/mobile/users"),
    ] {
        s.get(&uri)
            .await
            .problem(StatusCode::NOT_FOUND, "urn:tenants:problem:unknown-tenant");
    }
    let answer = s
        .post(
            &format!("/t/{acme}/apps"),
            json!({"id": "mobile", "name": "Again"}),
        )
        .await;
    answer.problem(
        StatusCode::CONFLICT,
        "urn:identity-routes:problem:tenant-exists",
    );

    // The rows are where the models say: each tenant's schema holds its own user.
    for schema in [
        acme.replace('-', "_"),
        format!("{}__mobile", acme.replace('-', "_")),
        globex.replace('-', "_"),
    ] {
        assert_eq!(
            s.psql(&format!("SELECT count(*) FROM {schema}.users")),
            "1",
            "{schema}"
        );
    }

    // And the database refuses a tenant's transaction another tenant's table, even
    // named with its schema: the transaction runs as the tenant's own role.
    let served_as = postgres().url_as(&s.app_role, "unused", s.url.rsplit('/').next().unwrap());
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", served_as)
        .build()
        .unwrap();
    let mobile = Tenant::new(
        format!("{acme}--mobile").parse().unwrap(),
        DataModel::Bridge {
            schema: SqlIdent::new(format!("{}__mobile", acme.replace('-', "_"))).unwrap(),
        },
    );
    for table in [
        format!("{}.users", acme.replace('-', "_")),
        format!("{}__web.users", acme.replace('-', "_")),
    ] {
        let mut tx = router.begin_as(&mobile, TenantRole::Admin).await.unwrap();
        let refused = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(&mut *tx)
            .await
            .unwrap_err();
        let code = refused.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("42501"), "{table}: {refused}");
    }
    router.close().await;
}
