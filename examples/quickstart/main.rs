//! Quickstart: a todo app for three tenants, each in its own SQLite database, with the
//! tenant taken from the subdomain of `localhost`. No server to install.
//!
//! Run it:
//!
//! ```sh
//! cargo run --example quickstart            # listens on 127.0.0.1:3000 (PORT overrides)
//! ```
//!
//! Then, in another terminal (or a browser at http://tenant-a.localhost:3000/):
//!
//! ```sh
//! curl -H 'Host: tenant-a.localhost:3000' -H 'content-type: application/json' \
//!      -d '{"title": "write the docs"}' http://127.0.0.1:3000/todos
//! curl -H 'Host: tenant-a.localhost:3000' http://127.0.0.1:3000/todos   # tenant-a's todo
//! curl -H 'Host: tenant-b.localhost:3000' http://127.0.0.1:3000/todos   # [] — tenant-b sees none
//! curl -i -H 'Host: nobody.localhost:3000' http://127.0.0.1:3000/todos  # 404 problem+json
//! ```
//!
//! The databases live in `$TENANTS_DATA_DIR`, by default `tenants-quickstart` in the
//! system's temporary directory.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tenants::db::sqlite::SqliteSilo;
use tenants::resolve::SubdomainResolver;
use tenants::tower::{CurrentTenant, TenantLayer};
use tenants::{IdPolicy, StaticCatalog};

/// The tenants, as a deployment without a master database would list them.
const TENANTS: &str = r#"
[tenants.tenant-a]
name = "Tenant A"
model = "silo"
database = "tenant_a"

[tenants.tenant-b]
name = "Tenant B"
model = "silo"
database = "tenant_b"

[tenants.tenant-c]
name = "Tenant C"
model = "silo"
database = "tenant_c"
"#;

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Todo {
    id: i64,
    title: String,
}

#[derive(Debug, Deserialize)]
struct NewTodo {
    title: String,
}

/// The application: routes, the tenant layer, and the router to each tenant's database.
pub(crate) async fn app(data_dir: &Path) -> Result<Router, Box<dyn std::error::Error>> {
    let catalog = StaticCatalog::from_toml_str(TENANTS)?;
    let resolver =
        SubdomainResolver::new(["localhost"]).id_policy(IdPolicy::new().reserve(["www"]));
    let silo =
        SqliteSilo::new(data_dir).migrations(sqlx::migrate!("examples/quickstart/migrations"));
    Ok(Router::new()
        .route("/", get(page))
        .route("/todos", get(list).post(create))
        .with_state(silo)
        .layer(TenantLayer::new(resolver, catalog)))
}

async fn list(
    tenant: CurrentTenant,
    State(silo): State<SqliteSilo>,
) -> Result<Json<Vec<Todo>>, AppError> {
    let mut tx = silo.begin(&tenant).await?;
    let todos = sqlx::query_as("SELECT id, title FROM todos ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(todos))
}

async fn create(
    tenant: CurrentTenant,
    State(silo): State<SqliteSilo>,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Todo>), AppError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 500 {
        return Err(AppError::Invalid("title must be 1 to 500 characters"));
    }
    let mut tx = silo.begin(&tenant).await?;
    let todo = sqlx::query_as("INSERT INTO todos (title) VALUES (?) RETURNING id, title")
        .bind(title)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(todo)))
}

async fn page(
    tenant: CurrentTenant,
    State(silo): State<SqliteSilo>,
) -> Result<Html<String>, AppError> {
    let Json(todos) = list(tenant.clone(), State(silo)).await?;
    let items: String = todos
        .iter()
        .map(|t| format!("<li>{}</li>", escape(&t.title)))
        .collect();
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>{name}</title>\
         <h1>{name}'s todos</h1><ul>{items}</ul>\
         <p>Add one: <code>curl -H 'content-type: application/json' -d '{{\"title\": \"…\"}}' this-host/todos</code></p>",
        name = escape(&tenant.name),
    )))
}

/// Escapes text for HTML: todo titles are user input.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// What a handler can fail with.
#[derive(Debug)]
enum AppError {
    Invalid(&'static str),
    Database(String),
}

impl From<tenants::db::Error> for AppError {
    fn from(e: tenants::db::Error) -> Self {
        AppError::Database(e.to_string())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Database(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, why).into_response(),
            AppError::Database(error) => {
                eprintln!("database error: {error}");
                (StatusCode::INTERNAL_SERVER_ERROR, "database error").into_response()
            }
        }
    }
}

#[allow(dead_code)] // The end-to-end test includes this file and calls `app` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 3000,
    };
    let data_dir = std::env::var_os("TENANTS_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tenants-quickstart"));
    let app = app(&data_dir).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "tenants quickstart on http://127.0.0.1:{port} (databases in {})",
        data_dir.display()
    );
    println!("  open http://tenant-a.localhost:{port}/ or:");
    println!("  curl -H 'Host: tenant-a.localhost:{port}' http://127.0.0.1:{port}/todos");
    axum::serve(listener, app).await?;
    Ok(())
}
