//! The usual store end to end on PostgreSQL: `tenants apply` provisions both
//! customers from the example's own tenants file, each customer's requests reach its
//! own database only, and what a role may do is decided by the database's grants —
//! an admin deletes an order, a developer is refused with a 403 problem, a customer
//! only reads.
//!
//! `tenants apply` reads the admin URL and the users' passwords from the variables
//! the tenants file names, as it does in a shell; the store reads its application
//! role's password the same way. A test may not set its own environment
//! (`std::env::set_var` is `unsafe` since edition 2024, and racy between test
//! threads), so both are given an `Environment` of exactly those variables: the
//! very command a user runs, in-process (`tenants_cli::execute_with_env`), then the
//! store.

#[path = "../examples/usual_store/main.rs"]
#[allow(dead_code)]
mod usual_store;

#[allow(dead_code)] // Only `tenants` is used here.
mod common;
#[path = "common/http.rs"]
mod http;

use axum::http::{Request, StatusCode};
use common::tenants;
use http::Answer;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tenants::provision::Environment;
use tenants_test_support::{TestServer, postgres};

const TENANTS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/usual_store/tenants.toml"
);

/// The passwords the tenants file names, as a user would export them.
const PASSWORDS: [(&str, &str); 7] = [
    ("STORE_APP_PASSWORD", "app-secret"),
    ("BUILDING_ADMIN_PASSWORD", "building-admin-secret"),
    ("BUILDING_DEV_PASSWORD", "building-dev-secret"),
    ("BUILDING_CUSTOMER_PASSWORD", "building-customer-secret"),
    ("HARDWARE_ADMIN_PASSWORD", "hardware-admin-secret"),
    ("HARDWARE_DEV_PASSWORD", "hardware-dev-secret"),
    ("HARDWARE_CUSTOMER_PASSWORD", "hardware-customer-secret"),
];

const SECRET: &[u8] = b"the test's signing key, thirty-two bytes at least";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_end_to_end() {
    let pg = postgres();
    let database_url = pg.fresh_database();
    let env = PASSWORDS
        .iter()
        .fold(Environment::empty(), |env, (var, value)| {
            env.var(*var, *value)
        })
        .var("DATABASE_URL", &database_url);
    provisioned_by_tenants_apply(pg, &env, &database_url).await;
    let settings = usual_store::Settings {
        database_url,
        jwt_secret: SECRET.to_vec(),
        env: env.clone(),
    };
    let store = Store {
        app: usual_store::app(&settings).await.unwrap(),
    };
    roles_are_enforced_by_the_database(&store).await;
    customers_see_only_their_own_database(&store, pg).await;
    tokens_are_verified_and_bound_to_their_tenant(&store).await;
    bad_requests_are_problems(&store).await;
    destroyed_by_tenants_destroy(pg, &env).await;
}

async fn provisioned_by_tenants_apply(pg: &TestServer, env: &Environment, url: &str) {
    let plan = tenants(env, &["plan", "-f", TENANTS_FILE]).await;
    assert_eq!(plan.code, 2, "changes pending:\n{plan}");
    let plan = plan.stdout;
    for line in [
        "+ database building_shop",
        "+ database hardware_store",
        "+ user building_admin",
        "+ user building_dev",
        "+ user hardware_customer",
        "+ role store_app",
    ] {
        assert!(plan.contains(line), "{line:?} in:\n{plan}");
    }
    let applied = tenants(env, &["apply", "-f", TENANTS_FILE]).await;
    assert_eq!(applied.code, 0, "{applied}");
    let plan = tenants(env, &["plan", "-f", TENANTS_FILE]).await;
    assert_eq!(plan.code, 0, "a second plan has nothing to do:\n{plan}");

    assert_eq!(
        pg.psql(
            url,
            "SELECT string_agg(id || ':' || (record->>'database'), ' ' ORDER BY id) FROM tenants.tenants"
        ),
        "building-shop:building_shop hardware-store:hardware_store"
    );
    for database in ["building_shop", "hardware_store"] {
        let db = pg.url_for(database);
        assert_eq!(
            pg.psql(
                &db,
                "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables \
                 WHERE schemaname = 'public' AND tablename NOT LIKE '\\_%'"
            ),
            "customers orders widgets",
            "{database}"
        );
        assert_eq!(
            pg.psql(
                &db,
                "SELECT string_agg(indexname, ' ' ORDER BY indexname) FROM pg_indexes \
                 WHERE schemaname = 'public' AND indexname NOT LIKE '%pkey' \
                 AND indexname NOT LIKE '\\_%'"
            ),
            "customers_email orders_customer orders_status orders_widget widgets_name widgets_sku_key",
            "{database}"
        );
        assert_eq!(
            pg.psql(
                &db,
                "SELECT string_agg(tgname, ' ' ORDER BY tgname) FROM pg_trigger WHERE NOT tgisinternal"
            ),
            "customers_updated_at orders_updated_at widgets_updated_at",
            "{database}"
        );
    }
    // Each customer's users log in with their password, to their own database only.
    let url_as = |user: &str, database: &str| {
        let var = format!("{}_PASSWORD", user.to_uppercase());
        let password = PASSWORDS
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, password)| *password)
            .unwrap();
        pg.url_as(user, password, database)
    };
    for (user, own, other) in [
        ("building_customer", "building_shop", "hardware_store"),
        ("hardware_admin", "hardware_store", "building_shop"),
    ] {
        let mut conn = PgConnection::connect(&url_as(user, own)).await.unwrap();
        let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(orders, 0);
        conn.close().await.unwrap();
        let refused = PgConnection::connect(&url_as(user, other))
            .await
            .unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("permission denied for database"),
            "{user} on {other}: {refused}"
        );
    }
}

/// The store as an HTTP client sees it.
struct Store {
    app: axum::Router,
}

/// A token for `role` of `tenant`.
fn token(tenant: &str, role: &str) -> String {
    usual_store::token(SECRET, tenant, role, &format!("{role}@{tenant}"), 600).unwrap()
}

impl Store {
    async fn call(
        &self,
        method: &str,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        http::send(&self.app, http::with_json(request, body)).await
    }

    /// A request to `tenant`'s subdomain as `role`.
    async fn as_role(
        &self,
        tenant: &str,
        role: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let host = format!("{tenant}.localhost:3000");
        self.call(method, &host, path, Some(&token(tenant, role)), body)
            .await
    }
}

async fn roles_are_enforced_by_the_database(store: &Store) {
    let shop = "building-shop";
    let forbidden = "urn:usual-store:problem:forbidden";
    let answer = store.as_role(shop, "admin", "GET", "/api/me", None).await;
    assert_eq!(
        answer.json(),
        json!({"tenant": shop, "name": "Building Shop Inc.", "subject": "admin@building-shop", "role": "admin"})
    );

    // An admin sets up the catalogue; a developer may add to it too.
    let widget = store
        .as_role(
            shop,
            "admin",
            "POST",
            "/api/widgets",
            Some(json!({"sku": "BRICK-1", "name": "Red brick", "price_cents": 95, "stock": 1000})),
        )
        .await;
    assert_eq!(widget.status, StatusCode::CREATED, "{}", widget.body);
    let widget_id = widget.json()["id"].as_i64().unwrap();
    let customer = store
        .as_role(
            shop,
            "developer",
            "POST",
            "/api/customers",
            Some(json!({"name": "Ada", "email": "ada@example.com"})),
        )
        .await;
    assert_eq!(customer.status, StatusCode::CREATED, "{}", customer.body);
    let customer_id = customer.json()["id"].as_i64().unwrap();
    let new_order = json!({"customer_id": customer_id, "widget_id": widget_id, "quantity": 20});

    // Admin: create, update (the trigger moves updated_at), delete.
    let order = store
        .as_role(
            shop,
            "admin",
            "POST",
            "/api/orders",
            Some(new_order.clone()),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let order = order.json();
    let id = order["id"].as_i64().unwrap();
    assert_eq!(order["status"], "open");
    assert_eq!(order["created_at"], order["updated_at"]);
    let paid = store
        .as_role(
            shop,
            "admin",
            "PATCH",
            &format!("/api/orders/{id}"),
            Some(json!({"status": "paid"})),
        )
        .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    let paid = paid.json();
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["created_at"], order["created_at"]);
    assert!(
        paid["updated_at"].as_str() > order["updated_at"].as_str(),
        "updated_at moves on update: {paid} after {order}"
    );
    let path = format!("/api/orders/{id}");
    let answer = store.as_role(shop, "admin", "DELETE", &path, None).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    store
        .as_role(shop, "admin", "DELETE", &path, None)
        .await
        .problem(StatusCode::NOT_FOUND, "urn:usual-store:problem:not-found");

    // Developer: create and update, but the database refuses the delete.
    let order = store
        .as_role(
            shop,
            "developer",
            "POST",
            "/api/orders",
            Some(new_order.clone()),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{}", order.body);
    let id = order.json()["id"].as_i64().unwrap();
    let path = format!("/api/orders/{id}");
    let answer = store
        .as_role(
            shop,
            "developer",
            "PATCH",
            &path,
            Some(json!({"status": "shipped"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let detail = store
        .as_role(shop, "developer", "DELETE", &path, None)
        .await
        .problem(StatusCode::FORBIDDEN, forbidden);
    assert_eq!(detail, "permission denied for table orders");
    // Refused for a missing order too: the privilege is checked, not the row.
    let detail = store
        .as_role(shop, "developer", "DELETE", "/api/orders/999999", None)
        .await
        .problem(StatusCode::FORBIDDEN, forbidden);
    assert_eq!(detail, "permission denied for table orders");

    // Customer: reads everything, writes nothing.
    let orders = store
        .as_role(shop, "customer", "GET", "/api/orders", None)
        .await;
    assert_eq!(orders.status, StatusCode::OK, "{}", orders.body);
    let ids: Vec<i64> = orders
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id], "the developer's order survived its delete");
    for path in ["/api/widgets", "/api/customers"] {
        let answer = store.as_role(shop, "customer", "GET", path, None).await;
        assert_eq!(answer.json().as_array().unwrap().len(), 1, "{path}");
    }
    for (method, path, body, table) in [
        (
            "POST",
            "/api/orders".to_owned(),
            Some(new_order.clone()),
            "orders",
        ),
        (
            "PATCH",
            format!("/api/orders/{id}"),
            Some(json!({"status": "cancelled"})),
            "orders",
        ),
        ("DELETE", format!("/api/orders/{id}"), None, "orders"),
        (
            "POST",
            "/api/customers".to_owned(),
            Some(json!({"name": "Bob", "email": "bob@example.com"})),
            "customers",
        ),
    ] {
        let detail = store
            .as_role(shop, "customer", method, &path, body)
            .await
            .problem(StatusCode::FORBIDDEN, forbidden);
        assert_eq!(
            detail,
            format!("permission denied for table {table}"),
            "{method} {path}"
        );
    }
    let orders = store
        .as_role(shop, "admin", "GET", "/api/orders", None)
        .await
        .json();
    assert_eq!(
        orders[0]["status"], "shipped",
        "the customer changed nothing"
    );
}

async fn customers_see_only_their_own_database(store: &Store, pg: &TestServer) {
    let hardware = "hardware-store";
    for path in ["/api/widgets", "/api/customers", "/api/orders"] {
        let answer = store.as_role(hardware, "admin", "GET", path, None).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "[]"),
            "{path}: building-shop's rows are not here"
        );
    }
    let widget = store
        .as_role(
            hardware,
            "developer",
            "POST",
            "/api/widgets",
            Some(json!({"sku": "NAIL-50", "name": "Nails, 50 mm", "price_cents": 3})),
        )
        .await;
    assert_eq!(widget.status, StatusCode::CREATED, "{}", widget.body);
    // The same SKU is free in the other database: nothing is shared.
    let widget = store
        .as_role(
            "building-shop",
            "developer",
            "POST",
            "/api/widgets",
            Some(json!({"sku": "NAIL-50", "name": "Nails", "price_cents": 4})),
        )
        .await;
    assert_eq!(widget.status, StatusCode::CREATED, "{}", widget.body);
    let skus = |database: &str| {
        pg.psql(
            &pg.url_for(database),
            "SELECT string_agg(sku, ' ' ORDER BY sku) FROM widgets",
        )
    };
    assert_eq!(skus("building_shop"), "BRICK-1 NAIL-50");
    assert_eq!(skus("hardware_store"), "NAIL-50");
    // Within one database the SKU is unique: the constraint answers, as a 409.
    store
        .as_role(
            hardware,
            "admin",
            "POST",
            "/api/widgets",
            Some(json!({"sku": "NAIL-50", "name": "Again", "price_cents": 3})),
        )
        .await
        .problem(StatusCode::CONFLICT, "urn:usual-store:problem:conflict");
}

async fn tokens_are_verified_and_bound_to_their_tenant(store: &Store) {
    let host = "hardware-store.localhost";
    // No token: the store needs one.
    let answer = store.call("GET", host, "/api/orders", None, None).await;
    answer.problem(
        StatusCode::UNAUTHORIZED,
        "urn:usual-store:problem:unauthenticated",
    );
    assert_eq!(answer.headers["www-authenticate"], "Bearer");
    // A building-shop admin is nobody at the hardware store.
    let theirs = token("building-shop", "admin");
    store
        .call("DELETE", host, "/api/orders/1", Some(&theirs), None)
        .await
        .problem(StatusCode::FORBIDDEN, "urn:tenants:problem:not-a-member");
    // Forged, expired, or for another audience: the layer refuses before any handler.
    let mine = token("hardware-store", "admin");
    let (head, _) = mine.rsplit_once('.').unwrap();
    let forged = format!("{head}.c2lnbmF0dXJl");
    let other_key = usual_store::token(
        b"someone else's key, thirty-two bytes long",
        "hardware-store",
        "admin",
        "x",
        600,
    )
    .unwrap();
    tenants::resolve::install_crypto_provider();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "iss": "usual-store", "aud": "usual-store", "exp": 1_000_000_000,
                "tenants": ["hardware-store"], "role": "admin"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let wrong_audience = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": "x", "iss": "usual-store", "aud": "elsewhere", "exp": 4_000_000_000u64,
                "tenants": ["hardware-store"], "role": "admin"}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    for bad in [&forged, &other_key, &expired, &wrong_audience] {
        let answer = store
            .call("GET", host, "/api/orders", Some(bad), None)
            .await;
        answer.problem(
            StatusCode::UNAUTHORIZED,
            "urn:tenants:problem:invalid-token",
        );
    }
    // A verified token whose role is none of the three grants nothing.
    let owner = token("hardware-store", "owner");
    store
        .call("GET", host, "/api/orders", Some(&owner), None)
        .await
        .problem(StatusCode::FORBIDDEN, "urn:usual-store:problem:no-role");
    // An unknown customer is a 404, whatever the token.
    store
        .call("GET", "nobody.localhost", "/api/orders", Some(&mine), None)
        .await
        .problem(StatusCode::NOT_FOUND, "urn:tenants:problem:unknown-tenant");
    store
        .call(
            "GET",
            "Bad_Shop.localhost",
            "/api/orders",
            Some(&mine),
            None,
        )
        .await
        .problem(
            StatusCode::BAD_REQUEST,
            "urn:tenants:problem:malformed-tenant",
        );
}

async fn bad_requests_are_problems(store: &Store) {
    let shop = "building-shop";
    let rejected = "urn:usual-store:problem:rejected";
    let orders = store
        .as_role(shop, "admin", "GET", "/api/orders", None)
        .await;
    let order = &orders.json()[0];
    let order_path = format!("/api/orders/{}", order["id"]);
    let (customer, widget) = (&order["customer_id"], &order["widget_id"]);
    for (method, path, body, status, kind) in [
        (
            "POST",
            "/api/orders",
            json!({"customer_id": 424242, "widget_id": widget, "quantity": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            rejected,
        ),
        (
            "POST",
            "/api/orders",
            json!({"customer_id": customer, "widget_id": widget, "quantity": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            rejected,
        ),
        (
            "PATCH",
            order_path.as_str(),
            json!({"status": "lost"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            rejected,
        ),
        (
            "POST",
            "/api/widgets",
            json!({"sku": "X", "name": "X", "price_cents": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            rejected,
        ),
        (
            "POST",
            "/api/widgets",
            json!({"sku": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "urn:usual-store:problem:invalid-body",
        ),
    ] {
        store
            .as_role(shop, "admin", method, path, Some(body))
            .await
            .problem(status, kind);
    }
    store
        .as_role(shop, "admin", "DELETE", "/api/orders/not-a-number", None)
        .await
        .problem(
            StatusCode::BAD_REQUEST,
            "urn:usual-store:problem:invalid-path",
        );
}

async fn destroyed_by_tenants_destroy(pg: &TestServer, env: &Environment) {
    for tenant in ["building-shop", "hardware-store"] {
        let run = tenants(
            env,
            &["destroy", "-f", TENANTS_FILE, tenant, "--confirm", tenant],
        )
        .await;
        assert_eq!(run.code, 0, "{run}");
    }
    assert_eq!(
        pg.psql(
            pg.admin_url(),
            "SELECT count(*) FROM pg_database WHERE datname IN ('building_shop', 'hardware_store')"
        ),
        "0"
    );
}
