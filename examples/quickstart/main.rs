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
//! system's temporary directory. With `DATABASE_URL` set, the same app runs on
//! PostgreSQL instead: each tenant gets a schema of its own (the bridge model),
//! created and migrated at start, and the router scopes every transaction to it:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@localhost/postgres cargo run --example quickstart
//! ```

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tenants::db::sqlite::SqliteSilo;
use tenants::db::{Sqlx, TenantRouter};
use tenants::resolve::SubdomainResolver;
use tenants::tower::{CurrentTenant, TenantLayer};
use tenants::{IdPolicy, StaticCatalog, Tenant, TenantCatalog};

/// The tenants, as a deployment without a master database would list them: each in
/// a SQLite file of its own.
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

/// The same tenants on PostgreSQL: a schema each.
const TENANTS_ON_POSTGRES: &str = r#"
[tenants.tenant-a]
name = "Tenant A"
model = "bridge"
schema = "tenant_a"

[tenants.tenant-b]
name = "Tenant B"
model = "bridge"
schema = "tenant_b"

[tenants.tenant-c]
name = "Tenant C"
model = "bridge"
schema = "tenant_c"
"#;

/// Where the todos live.
#[derive(Clone)]
enum Todos {
    /// A SQLite file per tenant (the default).
    Sqlite(SqliteSilo),
    /// A PostgreSQL schema per tenant.
    Postgres(TenantRouter<Sqlx>),
}

impl Todos {
    async fn list(&self, tenant: &Tenant) -> Result<Vec<Todo>, AppError> {
        const SQL: &str = "SELECT id, title FROM todos ORDER BY id";
        Ok(match self {
            Todos::Sqlite(silo) => {
                let mut tx = silo.begin(tenant).await?;
                let todos = sqlx::query_as(SQL).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                todos
            }
            Todos::Postgres(router) => {
                let mut tx = router.begin(tenant).await?;
                let todos = sqlx::query_as(SQL).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                todos
            }
        })
    }

    async fn create(&self, tenant: &Tenant, title: &str) -> Result<Todo, AppError> {
        Ok(match self {
            Todos::Sqlite(silo) => {
                let mut tx = silo.begin(tenant).await?;
                let todo =
                    sqlx::query_as("INSERT INTO todos (title) VALUES (?) RETURNING id, title")
                        .bind(title)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                todo
            }
            Todos::Postgres(router) => {
                let mut tx = router.begin(tenant).await?;
                let todo =
                    sqlx::query_as("INSERT INTO todos (title) VALUES ($1) RETURNING id, title")
                        .bind(title)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.commit().await?;
                todo
            }
        })
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct Todo {
    id: i64,
    title: String,
}

#[derive(Debug, Deserialize)]
struct NewTodo {
    title: String,
}

/// The application on SQLite files in `data_dir`: routes, the tenant layer, and the
/// silo router to each tenant's database.
pub(crate) async fn app(data_dir: &Path) -> Result<Router, Box<dyn std::error::Error>> {
    let catalog = StaticCatalog::from_toml_str(TENANTS)?;
    let silo =
        SqliteSilo::new(data_dir).migrations(sqlx::migrate!("examples/quickstart/migrations"));
    Ok(routes(catalog, Todos::Sqlite(silo)))
}

/// The same application on PostgreSQL: creates and migrates each tenant's schema,
/// then serves it through a [`TenantRouter`].
pub(crate) async fn app_on_postgres(url: &str) -> Result<Router, Box<dyn std::error::Error>> {
    let catalog = StaticCatalog::from_toml_str(TENANTS_ON_POSTGRES)?;
    // `connect_options` reads the URL's sslmode as libpq does: a production URL
    // with `sslmode=verify-full&sslrootcert=...` verifies the server.
    let admin = sqlx::PgPool::connect_with(Sqlx::connect_options(url)?).await?;
    for tenant in catalog.list().await? {
        let tenants::DataModel::Bridge { schema } = &tenant.model else {
            continue;
        };
        // Each tenant's migrations run inside its schema, and are recorded there.
        let mut connection = admin.acquire().await?;
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}",
            schema = schema.quoted()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&mut *connection)
            .await?;
        sqlx::migrate!("examples/quickstart/migrations-postgres")
            .run(&mut *connection)
            .await?;
        sqlx::raw_sql("RESET search_path")
            .execute(&mut *connection)
            .await?;
    }
    admin.close().await;
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", url)
        .build()?;
    Ok(routes(catalog, Todos::Postgres(router)))
}

fn routes(catalog: StaticCatalog, todos: Todos) -> Router {
    let resolver =
        SubdomainResolver::new(["localhost"]).id_policy(IdPolicy::new().reserve(["www"]));
    Router::new()
        .route("/", get(page))
        .route("/todos", get(list).post(create))
        .with_state(todos)
        .layer(TenantLayer::new(resolver, catalog))
}

async fn list(
    tenant: CurrentTenant,
    State(todos): State<Todos>,
) -> Result<Json<Vec<Todo>>, AppError> {
    Ok(Json(todos.list(&tenant).await?))
}

async fn create(
    tenant: CurrentTenant,
    State(todos): State<Todos>,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Todo>), AppError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > 500 {
        return Err(AppError::Invalid("title must be 1 to 500 characters"));
    }
    Ok((
        StatusCode::CREATED,
        Json(todos.create(&tenant, title).await?),
    ))
}

async fn page(tenant: CurrentTenant, State(todos): State<Todos>) -> Result<Html<String>, AppError> {
    let todos = todos.list(&tenant).await?;
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
    let (app, storage) = match std::env::var("DATABASE_URL") {
        Ok(url) => (
            app_on_postgres(&url).await?,
            "a PostgreSQL schema per tenant".into(),
        ),
        Err(_) => {
            let data_dir = std::env::var_os("TENANTS_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| std::env::temp_dir().join("tenants-quickstart"));
            let storage = format!("SQLite databases in {}", data_dir.display());
            (app(&data_dir).await?, storage)
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("tenants quickstart on http://127.0.0.1:{port} ({storage})");
    println!("  open http://tenant-a.localhost:{port}/ or:");
    println!("  curl -H 'Host: tenant-a.localhost:{port}' http://127.0.0.1:{port}/todos");
    axum::serve(listener, app).await?;
    Ok(())
}
