//! The usual store, with a database per customer: `building-shop` and
//! `hardware-store` each live in a PostgreSQL database of their own, named as the
//! customer chose (`building_shop`, `hardware_store`), created and migrated by
//! `tenants apply` from `tenants.toml` together with admin, developer and customer
//! users.
//!
//! - `{tenant}.localhost` names the customer; the router opens a pool to that
//!   customer's database (the silo model).
//! - The request's role comes from a verified token: its `role` claim (admin,
//!   developer or customer), trusted only once the signature, expiry, issuer and
//!   audience check out, and only for the tenants its `tenants` claim lists (the
//!   layer's membership check answers 403 otherwise).
//! - Each transaction runs as the customer's database role for that claim
//!   (`begin_as`), so PostgreSQL's grants decide: an admin may delete an order, a
//!   developer may not (`permission denied`, SQLSTATE 42501, answered as a 403
//!   problem), and a customer may only read. No handler checks a role.
//!
//! Run it: provision the customers, then serve them. `DATABASE_URL` is an admin
//! connection for `tenants apply`; the store itself connects to the same server as
//! `store_app`, with `STORE_APP_PASSWORD`.
//!
//! ```sh
//! export DATABASE_URL=postgres://postgres@localhost/postgres STORE_APP_PASSWORD=app-secret
//! export BUILDING_ADMIN_PASSWORD=ba BUILDING_DEV_PASSWORD=bd BUILDING_CUSTOMER_PASSWORD=bc
//! export HARDWARE_ADMIN_PASSWORD=ha HARDWARE_DEV_PASSWORD=hd HARDWARE_CUSTOMER_PASSWORD=hc
//! cargo run -p tenants-cli -- apply -f examples/usual_store/tenants.toml
//! cargo run --example usual_store            # listens on 127.0.0.1:3000 (PORT overrides)
//! ```
//!
//! Then, in another terminal, with tokens from the example's stand-in identity
//! provider (`token <tenant> <role> [subject]`, signed with `STORE_JWT_SECRET`, or a
//! development key when that is unset):
//!
//! ```sh
//! ADMIN=$(cargo run -q --example usual_store -- token building-shop admin)
//! DEV=$(cargo run -q --example usual_store -- token building-shop developer)
//! shop() { curl -s -H 'Host: building-shop.localhost:3000' -H 'content-type: application/json' "$@"; }
//! shop -H "authorization: Bearer $ADMIN" -d '{"sku": "BRICK-1", "name": "Red brick", "price_cents": 95, "stock": 1000}' \
//!      http://127.0.0.1:3000/api/widgets                                          # 201
//! shop -H "authorization: Bearer $ADMIN" -d '{"name": "Ada", "email": "ada@example.com"}' \
//!      http://127.0.0.1:3000/api/customers                                        # 201
//! shop -H "authorization: Bearer $DEV" -d '{"customer_id": 1, "widget_id": 1, "quantity": 20}' \
//!      http://127.0.0.1:3000/api/orders                                           # 201
//! shop -i -X DELETE -H "authorization: Bearer $DEV" http://127.0.0.1:3000/api/orders/1    # 403 problem
//! shop -i -X DELETE -H "authorization: Bearer $ADMIN" http://127.0.0.1:3000/api/orders/1  # 204
//! ```

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tenants::db::{PgCatalog, Sqlx, TenantRole, TenantRouter};
use tenants::provision::{Environment, Format, TenantsFile};
use tenants::resolve::{Algorithm, JwtKeys, JwtResolver, SubdomainResolver, VerifiedToken};
use tenants::tower::{CurrentTenant, TenantLayer};
use tenants::{CachedCatalog, IdPolicy};

/// The tenants file `tenants apply` provisions; the store reads its application
/// role from it.
const TENANTS: &str = include_str!("tenants.toml");

/// Issuer and audience of the store's tokens.
const ISSUER: &str = "usual-store";

/// The signing key when `STORE_JWT_SECRET` is unset: for trying the example only.
const DEVELOPMENT_SECRET: &str = "usual-store development key, never use it in production";

/// How the store connects and what it trusts.
pub(crate) struct Settings {
    /// The server's URL, as `tenants apply` used it; the store swaps in the
    /// application role and its password from `tenants.toml`.
    pub(crate) database_url: String,
    /// The HMAC key tokens are signed with (32 bytes at least).
    pub(crate) jwt_secret: Vec<u8>,
    /// Where the application role's password (`app_password_env` of `tenants.toml`)
    /// is read: the process environment when run.
    pub(crate) env: Environment,
}

/// The store: the tenant from the subdomain, the role from the verified token, and
/// each customer's database through the router.
pub(crate) async fn app(settings: &Settings) -> Result<Router, Box<dyn std::error::Error>> {
    let file = TenantsFile::parse(TENANTS, Format::Toml, "tenants.toml")?;
    let server = file
        .servers
        .get(&file.default_server)
        .ok_or("tenants.toml declares no server")?;
    let role = server
        .app_role
        .as_ref()
        .ok_or("tenants.toml names no app_role")?;
    let password = match &server.app_password_env {
        Some(var) => settings
            .env
            .get(var)
            .ok_or_else(|| format!("{var} is not set: the store connects as {role} with it"))?,
        None => String::new(),
    };
    let mut served_url = url::Url::parse(&settings.database_url)?;
    served_url
        .set_username(role.as_str())
        .and_then(|()| served_url.set_password(Some(&password)))
        .map_err(|()| "DATABASE_URL cannot carry a user name")?;
    // Its sslmode read as libpq reads it, for the catalog's pool as for the router.
    let served_as = Sqlx::connect_options(served_url.as_str())?;
    let router = TenantRouter::<Sqlx>::builder()
        .server(&file.default_server, served_url.as_str())
        .build()?;
    // The catalog `tenants apply` fills, read as the application role, cached, and
    // told of changes (a customer added or suspended) through NOTIFY.
    let catalog_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(served_as);
    let catalog = Arc::new(CachedCatalog::new(PgCatalog::new(catalog_pool.clone())));
    PgCatalog::watch(&catalog_pool, &catalog).await?;

    let tokens = JwtResolver::new(JwtKeys::new().hmac(&settings.jwt_secret, Algorithm::HS256)?)
        .issuer(ISSUER)
        .audience(ISSUER)
        .members_claim("tenants");
    let tenant_layer = TenantLayer::new(
        SubdomainResolver::new(["localhost"]).id_policy(IdPolicy::new().reserve(["www"])),
        catalog,
    )
    .membership(move |parts: &Parts| tokens.verify(parts));
    Ok(Router::new()
        .route("/api/me", get(me))
        .route("/api/widgets", get(list_widgets).post(create_widget))
        .route("/api/customers", get(list_customers).post(create_customer))
        .route("/api/orders", get(list_orders).post(create_order))
        .route("/api/orders/{id}", patch(update_order).delete(delete_order))
        .with_state(router)
        .layer(tenant_layer))
}

/// Signs a token for `subject` acting as `role` of `tenant`, valid for `lifetime_secs`:
/// the example's stand-in for an identity provider.
pub(crate) fn token(
    secret: &[u8],
    tenant: &str,
    role: &str,
    subject: &str,
    lifetime_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = json!({
        "sub": subject, "iss": ISSUER, "aud": ISSUER, "iat": now, "exp": now + lifetime_secs,
        "tenants": [tenant], "role": role,
    });
    // jsonwebtoken needs a crypto provider when both of its backends are compiled in;
    // resolvers install it, and this may run before any resolver exists.
    tenants::resolve::install_crypto_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}

/// The request's role, from the `role` claim of its verified token.
#[derive(Debug, Clone, Copy)]
struct Role(TenantRole);

impl<S: Send + Sync> FromRequestParts<S> for Role {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        // The tenant layer verified the token and put it here; an unverified one
        // never gets this far.
        let Some(token) = parts.extensions.get::<Arc<VerifiedToken>>() else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "A bearer token is needed",
                "send Authorization: Bearer <token>".into(),
            ));
        };
        token
            .claim("role")
            .and_then(Value::as_str)
            .and_then(|role| role.parse().ok())
            .map(Role)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::FORBIDDEN,
                    "no-role",
                    "The token grants no role",
                    "the token's role claim must be admin, developer or customer".into(),
                )
            })
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Widget {
    id: i64,
    sku: String,
    name: String,
    price_cents: i32,
    stock: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWidget {
    sku: String,
    name: String,
    price_cents: i32,
    #[serde(default)]
    stock: i32,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Customer {
    id: i64,
    name: String,
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    name: String,
    email: String,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Order {
    id: i64,
    customer_id: i64,
    widget_id: i64,
    quantity: i32,
    status: String,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    customer_id: i64,
    widget_id: i64,
    quantity: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderUpdate {
    status: String,
}

/// An order's columns, timestamps in ISO 8601.
macro_rules! order_columns {
    () => {
        "id, customer_id, widget_id, quantity, status, \
         to_json(created_at) #>> '{}' AS created_at, to_json(updated_at) #>> '{}' AS updated_at"
    };
}

/// Who the request is: tenant, subject and role.
async fn me(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    token: Option<Extension<Arc<VerifiedToken>>>,
) -> Json<Value> {
    let subject = token.as_ref().and_then(|Extension(token)| token.subject());
    Json(
        json!({"tenant": tenant.id, "name": tenant.name, "subject": subject, "role": role.as_str()}),
    )
}

async fn list_widgets(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
) -> Result<Json<Vec<Widget>>, Problem> {
    let mut tx = router.begin_as(&tenant, role).await?;
    let widgets =
        sqlx::query_as("SELECT id, sku, name, price_cents, stock FROM widgets ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Json(widgets))
}

async fn create_widget(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
    body: Result<Json<NewWidget>, JsonRejection>,
) -> Result<(StatusCode, Json<Widget>), Problem> {
    let Json(new) = body?;
    let mut tx = router.begin_as(&tenant, role).await?;
    let widget = sqlx::query_as(
        "INSERT INTO widgets (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4) \
         RETURNING id, sku, name, price_cents, stock",
    )
    .bind(new.sku.trim())
    .bind(new.name.trim())
    .bind(new.price_cents)
    .bind(new.stock)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(widget)))
}

async fn list_customers(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
) -> Result<Json<Vec<Customer>>, Problem> {
    let mut tx = router.begin_as(&tenant, role).await?;
    let customers = sqlx::query_as("SELECT id, name, email FROM customers ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(customers))
}

async fn create_customer(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
    body: Result<Json<NewCustomer>, JsonRejection>,
) -> Result<(StatusCode, Json<Customer>), Problem> {
    let Json(new) = body?;
    let email = new.email.trim();
    if !email.contains('@') || email.len() > 254 {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is not acceptable",
            "email must be an address such as ada@example.com".into(),
        ));
    }
    let mut tx = router.begin_as(&tenant, role).await?;
    let customer = sqlx::query_as(
        "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id, name, email",
    )
    .bind(new.name.trim())
    .bind(email)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(customer)))
}

async fn list_orders(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
) -> Result<Json<Vec<Order>>, Problem> {
    let mut tx = router.begin_as(&tenant, role).await?;
    let orders = sqlx::query_as(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders ORDER BY id"
    ))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(orders))
}

async fn create_order(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Order>), Problem> {
    let Json(new) = body?;
    let mut tx = router.begin_as(&tenant, role).await?;
    let order = sqlx::query_as(concat!(
        "INSERT INTO orders (customer_id, widget_id, quantity) VALUES ($1, $2, $3) RETURNING ",
        order_columns!()
    ))
    .bind(new.customer_id)
    .bind(new.widget_id)
    .bind(new.quantity)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(order)))
}

async fn update_order(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<OrderUpdate>, JsonRejection>,
) -> Result<Json<Order>, Problem> {
    let (Path(id), Json(update)) = (id?, body?);
    let mut tx = router.begin_as(&tenant, role).await?;
    // The table's trigger sets updated_at.
    let order = sqlx::query_as(concat!(
        "UPDATE orders SET status = $2 WHERE id = $1 RETURNING ",
        order_columns!()
    ))
    .bind(id)
    .bind(update.status)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    order.map(Json).ok_or_else(|| Problem::no_order(id))
}

async fn delete_order(
    CurrentTenant(tenant): CurrentTenant,
    Role(role): Role,
    State(router): State<TenantRouter<Sqlx>>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path(id) = id?;
    let mut tx = router.begin_as(&tenant, role).await?;
    // No role is checked here: PostgreSQL refuses DELETE to a role without the
    // privilege (SQLSTATE 42501), which `Problem` answers with 403.
    let deleted = sqlx::query("DELETE FROM orders WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if deleted.rows_affected() == 0 {
        return Err(Problem::no_order(id));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// An RFC 9457 problem: the store's answer to whatever went wrong.
#[derive(Debug)]
struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: String) -> Self {
        Problem {
            status,
            kind,
            title,
            detail,
        }
    }

    fn no_order(id: i64) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such order",
            format!("order {id} does not exist"),
        )
    }

    /// A failure that is the store's, not the client's: logged, not shown.
    fn internal(error: &dyn std::fmt::Display) -> Self {
        eprintln!("internal error: {error}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "see the server logs".into(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:usual-store:problem:{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What the database refused, by SQLSTATE: its grants (42501) and its constraints
/// are the rules; anything else is the store's own failure.
impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        if let Some(db) = error.as_database_error() {
            let refused =
                |status, kind, title| Problem::new(status, kind, title, db.message().to_owned());
            match db.code().as_deref() {
                Some("42501") => {
                    return refused(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "Your role may not do this",
                    );
                }
                Some("23505") => {
                    return refused(StatusCode::CONFLICT, "conflict", "It exists already");
                }
                // Foreign key, check and not-null violations; values out of range.
                Some("23503" | "23514" | "23502" | "22003" | "22001") => {
                    return refused(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "rejected",
                        "The store's rules refuse this",
                    );
                }
                _ => {}
            }
        }
        Problem::internal(&error)
    }
}

/// Routing failures (beginning a transaction, switching roles) are the store's.
impl From<tenants::db::Error> for Problem {
    fn from(error: tenants::db::Error) -> Self {
        Problem::internal(&error)
    }
}

impl From<JsonRejection> for Problem {
    fn from(rejection: JsonRejection) -> Self {
        Problem::new(
            rejection.status(),
            "invalid-body",
            "The request body is not acceptable",
            rejection.body_text(),
        )
    }
}

impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Self {
        Problem::new(
            rejection.status(),
            "invalid-path",
            "The path is not acceptable",
            rejection.body_text(),
        )
    }
}

/// The token signing key: `STORE_JWT_SECRET`, or the development key.
fn jwt_secret() -> Vec<u8> {
    match std::env::var("STORE_JWT_SECRET") {
        Ok(secret) => secret.into_bytes(),
        Err(_) => {
            eprintln!("STORE_JWT_SECRET is unset: using the development key");
            DEVELOPMENT_SECRET.as_bytes().to_vec()
        }
    }
}

#[allow(dead_code)] // The end-to-end test includes this file and calls `app` and `token` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {}
        [command, tenant, role, subject @ ..] if command == "token" && subject.len() <= 1 => {
            let subject = subject.first().map_or("someone", String::as_str);
            println!("{}", token(&jwt_secret(), tenant, role, subject, 3600)?);
            return Ok(());
        }
        _ => return Err("usage: usual_store [token <tenant> <role> [subject]]".into()),
    }
    let database_url = std::env::var("DATABASE_URL").map_err(|_| {
        "set DATABASE_URL to the server `tenants apply -f examples/usual_store/tenants.toml` \
         provisioned, e.g. postgres://postgres@localhost/postgres"
    })?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 3000,
    };
    let settings = Settings {
        database_url,
        jwt_secret: jwt_secret(),
        env: Environment::process(),
    };
    let app = app(&settings).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "usual store on http://127.0.0.1:{port}: building-shop.localhost, hardware-store.localhost"
    );
    println!("  a token: cargo run -q --example usual_store -- token building-shop admin");
    axum::serve(listener, app).await?;
    Ok(())
}
