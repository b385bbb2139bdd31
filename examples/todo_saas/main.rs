//! Todo SaaS, pool then silo: users sign up and keep todo lists they can share, every
//! list is a tenant, all lists share one table under row-level security, and one
//! command moves a list into a database of its own while the app keeps serving it
//! with the same handlers.
//!
//! What it shows:
//!
//! - **Sign-up and sign-in** with Argon2id password hashes; the app issues its own
//!   HS256 tokens with a development key (a stand-in identity provider), verified on
//!   every request by the library's `JwtResolver`.
//! - **A list is a tenant**, resolved from the path `/api/lists/{list}/...`. The token's
//!   `lists` claim names the lists its user may use, and the layer's membership check
//!   refuses any other list with 403, before a handler runs.
//! - **Pool model**: every list's todos live in one `todos` table whose row-level
//!   security the provisioner set up; handlers get a transaction from the
//!   `TenantRouter` that sees one list's rows.
//! - **Sharing**: the owner shares a list with another user by email. Tokens carry the
//!   lists of their user at the time they were issued, so a share reaches the other
//!   user with their next token: the page asks for one (`GET /api/me`) when it loads,
//!   on "Refresh", and once when a list answers 403. A token lives 15 minutes, which
//!   also bounds how long a removed membership would go on working. Listing every
//!   list in the token bounds a user to a few hundred lists (the resolver reads
//!   tokens up to 16 KiB); an app with more would check membership in its database.
//! - **Metering**: per-list request counts, latencies and bytes at `/metrics`
//!   (Prometheus); the first 1,000 lists get a label each, later ones count as
//!   `other`.
//! - **Pool, then silo**: `tenants move` copies a list's rows into its own database,
//!   switches its catalog record (every instance's cache hears of it through
//!   `NOTIFY`) and removes the rows from the shared table; the same handlers serve it
//!   from there.
//! - **Lifecycle events**: created, shared, suspended, resumed and moved reach the
//!   subscriber `main` registers (it prints them); all but "shared" come from the
//!   catalog table, so a move made by another process is heard too.
//!
//! Run it against a PostgreSQL database it may administer (it creates the role
//! `todo_app`, per-list roles, and later databases):
//!
//! ```sh
//! createdb todo_saas
//! DATABASE_URL=postgres://postgres@localhost/todo_saas cargo run --example todo_saas --features metrics
//! ```
//!
//! then open <http://localhost:3002/>: sign up, make a list, add todos, share it; sign
//! up as someone else in a private window. Move a list (its id is in the page's
//! address after `#list=`) to its own database, while the app runs:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@localhost/todo_saas \
//!   cargo run -p tenants-cli -- move -f examples/todo_saas/tenants.toml list-xxxxxxxxxxxx --to silo
//! ```
//!
//! Environment: `DATABASE_URL` (required, an admin URL), `PORT` (default 3002),
//! `TODO_APP_PASSWORD` (the password `todo_app` is created with; default a
//! development value), `TODO_TOKEN_KEY` (the HS256 key, 32 bytes at least; default a
//! development key). The app provisions lists itself, so it holds the admin URL;
//! requests are served through `todo_app`, which is neither a superuser nor the owner
//! of any table.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::{FromRequestParts, Path as UrlPath, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use tenants::db::{PgCatalog, Sqlx, TenantEvent, TenantRole, TenantRouter};
use tenants::provision::{ApplyOptions, Password, Provisioner, TenantSpec, TenantsFile, UrlSource};
use tenants::resolve::{Algorithm, JwtKeys, JwtResolver, PathResolver, VerifiedToken};
use tenants::tower::metering::MeteringLayer;
use tenants::tower::{CurrentTenant, TenantLayer};
use tenants::{CachedCatalog, DataModel, SqlIdent, Tenant, TenantCatalog, TenantId, TenantStatus};

/// Any error of setting the app up.
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// The development token key: anyone who reads this file can forge tokens with it.
const DEV_TOKEN_KEY: &str = "todo-saas development key: never use it in production";
/// The development password of the application role.
const DEV_APP_PASSWORD: &str = "todo-app-development-password";
/// The issuer and audience of the tokens the app issues.
const ISSUER: &str = "todo-saas";
const AUDIENCE: &str = "todo-saas";

/// What the app needs to run; `main` reads it from the environment.
pub(crate) struct Config {
    /// The admin URL: applies the tenants file, provisions lists, changes their status.
    pub(crate) database_url: String,
    /// The password the application role is created with.
    pub(crate) app_password: String,
    /// The HS256 key of the tokens (32 bytes at least).
    pub(crate) token_key: Vec<u8>,
    /// How long a token is valid.
    pub(crate) token_lifetime: Duration,
    /// Another application role than the tenants file's (tests use one each).
    pub(crate) app_role: Option<String>,
    /// Another template database than the tenants file's.
    pub(crate) template: Option<String>,
}

impl Config {
    /// `DATABASE_URL`, `TODO_APP_PASSWORD` and `TODO_TOKEN_KEY`.
    fn from_env() -> Result<Self, BoxError> {
        let database_url = std::env::var("DATABASE_URL").map_err(|_| {
            "set DATABASE_URL to the admin URL of an existing database, such as \
             postgres://postgres@localhost/todo_saas"
        })?;
        Ok(Config {
            database_url,
            app_password: std::env::var("TODO_APP_PASSWORD")
                .unwrap_or_else(|_| DEV_APP_PASSWORD.into()),
            token_key: std::env::var("TODO_TOKEN_KEY")
                .unwrap_or_else(|_| DEV_TOKEN_KEY.into())
                .into_bytes(),
            token_lifetime: Duration::from_secs(15 * 60),
            app_role: None,
            template: None,
        })
    }
}

/// A lifecycle event of a list, as the app's subscriber receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A list was made.
    Created { list: TenantId },
    /// Its owner shared a list with the user of this email.
    Shared { list: TenantId, with: String },
    /// A list was suspended: its routes answer 403.
    Suspended { list: TenantId },
    /// A suspended list was made active again.
    Resumed { list: TenantId },
    /// A list's data moved (out of the pool, into its own database).
    Moved { list: TenantId, to: DataModel },
}

impl Event {
    /// The app's reading of a catalog event; `None` for those it does not announce.
    fn from_catalog(event: TenantEvent) -> Option<Event> {
        Some(match event {
            TenantEvent::Created { tenant, .. } => Event::Created { list: tenant },
            TenantEvent::Moved { tenant, to, .. } => Event::Moved { list: tenant, to },
            TenantEvent::StatusChanged {
                tenant,
                to: TenantStatus::Suspended,
                ..
            } => Event::Suspended { list: tenant },
            TenantEvent::StatusChanged {
                tenant,
                from: TenantStatus::Suspended,
                to: TenantStatus::Active,
            } => Event::Resumed { list: tenant },
            _ => return None,
        })
    }
}

/// Where lifecycle events go: registered when the app starts.
pub(crate) type Subscriber = Arc<dyn Fn(Event) + Send + Sync>;

/// The example's tenants file, with what `config` overrides.
pub(crate) fn tenants_file(config: &Config) -> Result<TenantsFile, BoxError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/todo_saas/tenants.toml");
    let mut file = TenantsFile::load(path)?;
    let server = file
        .servers
        .get_mut("main")
        .ok_or("the tenants file declares no server \"main\"")?;
    server.url = UrlSource::Inline(config.database_url.clone());
    server.app_password = Some(Password::Given(config.app_password.clone()));
    if let Some(role) = &config.app_role {
        server.app_role = Some(SqlIdent::new(role.as_str())?);
    }
    if let Some(template) = &config.template {
        server.template = SqlIdent::new(template.as_str())?;
    }
    Ok(file)
}

/// Issues and verifies the app's tokens.
struct Tokens {
    key: jsonwebtoken::EncodingKey,
    jwt: JwtResolver,
    lifetime: Duration,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    lists: &'a [String],
    iss: &'static str,
    aud: &'static str,
    iat: u64,
    exp: u64,
}

impl Tokens {
    fn new(key: &[u8], lifetime: Duration) -> Result<Self, BoxError> {
        let jwt = JwtResolver::new(JwtKeys::new().hmac(key, Algorithm::HS256)?)
            .members_claim("lists")
            .issuer(ISSUER)
            .audience(AUDIENCE);
        Ok(Tokens {
            key: jsonwebtoken::EncodingKey::from_secret(key),
            jwt,
            lifetime,
        })
    }

    /// A token for `user`, naming the lists they belong to now.
    fn issue(&self, user: i64, lists: &[String]) -> Result<String, AppError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| AppError::Internal(e.to_string()))?
            .as_secs();
        let claims = Claims {
            sub: user.to_string(),
            lists,
            iss: ISSUER,
            aud: AUDIENCE,
            iat: now,
            exp: now + self.lifetime.as_secs(),
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )
        .map_err(|e| AppError::Internal(e.to_string()))
    }
}

/// The app's state, shared by every handler.
#[derive(Clone)]
struct Saas(Arc<Inner>);

struct Inner {
    /// The application role's connections, for the central `accounts` tables.
    accounts: PgPool,
    /// Hands out transactions that see one list's todos, wherever the list lives.
    router: TenantRouter<Sqlx>,
    /// The lists' records, cached, kept fresh by `NOTIFY`.
    catalog: Arc<CachedCatalog<PgCatalog>>,
    /// The catalog through the admin connection, to change a list's status.
    admin: PgCatalog,
    /// Creates a list's roles, grants and record.
    provisioner: Provisioner,
    tokens: Tokens,
    events: Subscriber,
    prometheus: PrometheusHandle,
    /// The catalog's listeners, stopped with the app.
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// Sets up the shared infrastructure (idempotently: every start, and every
/// instance, runs it) and returns the app.
pub(crate) async fn app(
    config: Config,
    prometheus: PrometheusHandle,
    events: Subscriber,
) -> Result<Router, BoxError> {
    // The shared infrastructure, as the tenants file declares it: the catalog, the
    // application role, the `todos` table with its row-level security.
    let file = tenants_file(&config)?;
    let app_role = file
        .servers
        .get("main")
        .and_then(|s| s.app_role.clone())
        .ok_or("the tenants file names no app_role")?;
    let provisioner = Provisioner::connect(file).await?;
    let plan = provisioner.plan().await?;
    let report = provisioner.apply(&plan, &ApplyOptions::new()).await?;
    if !report.is_success() {
        return Err(report.to_string().into());
    }
    migrate_accounts(&config.database_url, &app_role).await?;

    // Requests are served through the application role.
    let mut url = url::Url::parse(&config.database_url)?;
    url.set_username(app_role.as_str())
        .and_then(|()| url.set_password(Some(&config.app_password)))
        .map_err(|()| "DATABASE_URL cannot carry a user name")?;
    // `connect_options` reads the URL's sslmode as libpq does.
    let accounts = PgPoolOptions::new()
        .max_connections(10)
        .connect_lazy_with(Sqlx::connect_options(url.as_str())?);
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", url.as_str())
        .build()?;
    // Refuses to start when the role could see past row-level security.
    router.verify().await?;
    let admin = PgCatalog::new(
        PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(Sqlx::connect_options(&config.database_url)?),
    );

    let catalog = Arc::new(CachedCatalog::new(PgCatalog::new(accounts.clone())));
    let mut listeners = vec![PgCatalog::watch(&accounts, &catalog).await?];
    let subscriber = {
        let catalog = catalog.clone();
        let events = events.clone();
        move |event: TenantEvent| {
            // The cache forgets the list before the subscriber hears of the change,
            // so what the subscriber does next sees the new record.
            catalog.invalidate(event.tenant());
            if let Some(event) = Event::from_catalog(event) {
                events(event);
            }
        }
    };
    listeners.push(PgCatalog::subscribe(&accounts, subscriber).await?);

    let saas = Saas(Arc::new(Inner {
        accounts,
        router,
        catalog: catalog.clone(),
        admin,
        provisioner,
        tokens: Tokens::new(&config.token_key, config.token_lifetime)?,
        events,
        prometheus,
        listeners,
    }));

    // A list's routes: the layer resolves the list from the path, refuses unknown,
    // suspended and other users' lists, and meters each list's requests.
    let jwt = saas.0.tokens.jwt.clone();
    let lists = Router::new()
        .route("/api/lists/{list}/todos", get(todos).post(add_todo))
        .route("/api/lists/{list}/todos/{todo}", patch(update_todo))
        .route("/api/lists/{list}/shares", post(share))
        .layer(MeteringLayer::new())
        .layer(
            TenantLayer::new(PathResolver::new("/api/lists/{tenant}")?, catalog)
                .membership(move |parts: &Parts| jwt.verify(parts)),
        );
    // Central routes: no list, so outside the tenant layer.
    let central = Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/api/signup", post(sign_up))
        .route("/api/signin", post(sign_in))
        .route("/api/me", get(me))
        .route("/api/lists", post(create_list))
        .route("/api/lists/{list}/status", put(set_status));
    Ok(central.merge(lists).with_state(saas))
}

/// Creates and migrates the central `accounts` schema, and lets the application role
/// use its tables.
async fn migrate_accounts(admin_url: &str, app_role: &SqlIdent) -> Result<(), BoxError> {
    let mut conn = PgConnection::connect_with(&Sqlx::connect_options(admin_url)?).await?;
    sqlx::raw_sql("CREATE SCHEMA IF NOT EXISTS accounts; SET search_path TO accounts")
        .execute(&mut conn)
        .await?;
    // Recorded in accounts._sqlx_migrations, apart from the lists' migrations.
    sqlx::migrate!("examples/todo_saas/accounts")
        .run(&mut conn)
        .await?;
    let role = app_role.quoted();
    let grants = format!(
        "GRANT USAGE ON SCHEMA accounts TO {role}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON accounts.users, accounts.lists, accounts.members TO {role}; \
         GRANT USAGE ON SEQUENCE accounts.users_id_seq TO {role}"
    );
    sqlx::raw_sql(AssertSqlSafe(grants))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

// ---- accounts ----

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

/// What the page keeps after signing in: a fresh token and the user's lists.
#[derive(Serialize)]
struct Session {
    token: String,
    email: String,
    lists: Vec<ListView>,
}

#[derive(Serialize)]
struct ListView {
    id: String,
    name: String,
    /// `true` for the list's owner, `false` for a user it was shared with.
    owner: bool,
    status: TenantStatus,
    /// `pool`, or `silo` once moved to its own database.
    model: &'static str,
}

/// The signed-in user, from a verified token.
struct User {
    id: i64,
}

impl FromRequestParts<Saas> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, saas: &Saas) -> Result<Self, AppError> {
        // The tenant layer leaves the token it verified; central routes verify here.
        let token = match parts.extensions.get::<Arc<VerifiedToken>>() {
            Some(token) => token.clone(),
            None => saas
                .0
                .tokens
                .jwt
                .verify(parts)
                .map_err(|e| AppError::Unauthorized(e.to_string()))?
                .ok_or_else(|| AppError::Unauthorized("sign in first".into()))?,
        };
        let id = token
            .subject()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| AppError::Unauthorized("the token names no user".into()))?;
        Ok(User { id })
    }
}

impl Saas {
    /// A new token for `user`, and their lists.
    async fn session(&self, user: i64) -> Result<Session, AppError> {
        let email: Option<String> =
            sqlx::query_scalar("SELECT email FROM accounts.users WHERE id = $1")
                .bind(user)
                .fetch_optional(&self.0.accounts)
                .await?;
        let email = email.ok_or_else(|| AppError::Unauthorized("no such user".into()))?;
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            "SELECT l.id, l.name, m.role = 'owner' FROM accounts.members m \
             JOIN accounts.lists l ON l.id = m.list_id \
             WHERE m.user_id = $1 ORDER BY l.created_at, l.id",
        )
        .bind(user)
        .fetch_all(&self.0.accounts)
        .await?;
        let mut lists = Vec::with_capacity(rows.len());
        for (id, name, owner) in rows {
            let Ok(tenant_id) = id.parse::<TenantId>() else {
                continue;
            };
            let Some(record) = self
                .0
                .catalog
                .get(tenant_id)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?
            else {
                continue;
            };
            lists.push(ListView {
                id,
                name,
                owner,
                status: record.status,
                model: record.model.name(),
            });
        }
        let ids: Vec<String> = lists.iter().map(|l| l.id.clone()).collect();
        Ok(Session {
            token: self.0.tokens.issue(user, &ids)?,
            email,
            lists,
        })
    }
}

async fn sign_up(
    State(saas): State<Saas>,
    Json(credentials): Json<Credentials>,
) -> Result<(StatusCode, Json<Session>), AppError> {
    let email = normalize_email(&credentials.email)?;
    let password = credentials.password;
    if !(8..=128).contains(&password.chars().count()) {
        return Err(AppError::Invalid("a password is 8 to 128 characters"));
    }
    let hash = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?
    .map_err(|e| AppError::Internal(e.to_string()))?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO accounts.users (email, password_hash) VALUES ($1, $2) \
         ON CONFLICT (email) DO NOTHING RETURNING id",
    )
    .bind(&email)
    .bind(hash)
    .fetch_optional(&saas.0.accounts)
    .await?;
    let id = id.ok_or(AppError::Conflict(
        "an account with this email exists: sign in",
    ))?;
    Ok((StatusCode::CREATED, Json(saas.session(id).await?)))
}

async fn sign_in(
    State(saas): State<Saas>,
    Json(credentials): Json<Credentials>,
) -> Result<Json<Session>, AppError> {
    let refused = || AppError::Unauthorized("wrong email or password".into());
    let email = normalize_email(&credentials.email).map_err(|_| refused())?;
    let found: Option<(i64, String)> =
        sqlx::query_as("SELECT id, password_hash FROM accounts.users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&saas.0.accounts)
            .await?;
    let (id, stored) = found.ok_or_else(refused)?;
    let password = credentials.password;
    let verified = tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
    })
    .await
    .map_err(|e| AppError::Internal(e.to_string()))?;
    if !verified {
        return Err(refused());
    }
    Ok(Json(saas.session(id).await?))
}

/// A new token naming the user's lists now: how a share reaches the user it was
/// shared with.
async fn me(user: User, State(saas): State<Saas>) -> Result<Json<Session>, AppError> {
    Ok(Json(saas.session(user.id).await?))
}

fn normalize_email(email: &str) -> Result<String, AppError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(AppError::Invalid("that is not an email address"))
    }
}

// ---- lists ----

#[derive(Deserialize)]
struct NewList {
    name: String,
}

#[derive(Serialize)]
struct CreatedList {
    id: TenantId,
    session: Session,
}

/// A fresh list id: `list-` and 12 random letters and digits. Ids name the list's
/// roles, which are global to the server, so they must not repeat anywhere.
fn new_list_id() -> Result<TenantId, AppError> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("list-{suffix}")
        .parse()
        .map_err(|e: tenants::Error| AppError::Internal(e.to_string()))
}

/// Makes a list: its tenant (roles, grants, catalog record) and its owner.
async fn create_list(
    user: User,
    State(saas): State<Saas>,
    Json(new): Json<NewList>,
) -> Result<(StatusCode, Json<CreatedList>), AppError> {
    let name = checked(&new.name, 100, "a list name is 1 to 100 characters")?;
    let id = new_list_id()?;
    // The list becomes someone's only once its tenant exists.
    let mut tx = saas.0.accounts.begin().await?;
    sqlx::query("INSERT INTO accounts.lists (id, name, owner_id) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(name)
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO accounts.members (list_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(id.as_str())
        .bind(user.id)
        .execute(&mut *tx)
        .await?;
    let tenant = Tenant::new(id, DataModel::Pool).with_name(name);
    saas.0
        .provisioner
        .provision(&TenantSpec::new(tenant))
        .await?;
    tx.commit().await?;
    let session = saas.session(user.id).await?;
    Ok((StatusCode::CREATED, Json(CreatedList { id, session })))
}

#[derive(Deserialize)]
struct NewShare {
    email: String,
}

/// Shares a list with another user (the owner only).
async fn share(
    CurrentTenant(list): CurrentTenant,
    user: User,
    State(saas): State<Saas>,
    Json(new): Json<NewShare>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    saas.check_owner(list.id, user.id).await?;
    let email = normalize_email(&new.email)?;
    let other: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts.users WHERE email = $1")
        .bind(&email)
        .fetch_optional(&saas.0.accounts)
        .await?;
    let other = other.ok_or(AppError::NotFound("no account has this email"))?;
    sqlx::query(
        "INSERT INTO accounts.members (list_id, user_id, role) VALUES ($1, $2, 'member') \
         ON CONFLICT DO NOTHING",
    )
    .bind(list.id.as_str())
    .bind(other)
    .execute(&saas.0.accounts)
    .await?;
    (saas.0.events)(Event::Shared {
        list: list.id,
        with: email.clone(),
    });
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "shared_with": email })),
    ))
}

#[derive(Deserialize)]
struct NewStatus {
    status: TenantStatus,
}

/// Suspends or resumes a list (the owner only). Not a route of the tenant layer,
/// which refuses suspended lists, so that a suspended list can be resumed.
async fn set_status(
    user: User,
    UrlPath(list): UrlPath<String>,
    State(saas): State<Saas>,
    Json(new): Json<NewStatus>,
) -> Result<StatusCode, AppError> {
    if new.status == TenantStatus::Deleted {
        return Err(AppError::Invalid("a list is active or suspended"));
    }
    let id: TenantId = list
        .parse()
        .map_err(|_| AppError::Invalid("that is not a list id"))?;
    saas.check_owner(id, user.id).await?;
    let record = saas
        .0
        .admin
        .get(id)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .ok_or(AppError::NotFound("no such list"))?;
    if record.status != new.status {
        saas.0
            .admin
            .put(&(*record).clone().with_status(new.status))
            .await?;
        // Every instance's cache hears of it through NOTIFY; this one at once.
        saas.0.catalog.invalidate(id);
    }
    Ok(StatusCode::NO_CONTENT)
}

impl Saas {
    async fn check_owner(&self, list: TenantId, user: i64) -> Result<(), AppError> {
        let owner: Option<i64> =
            sqlx::query_scalar("SELECT owner_id FROM accounts.lists WHERE id = $1")
                .bind(list.as_str())
                .fetch_optional(&self.0.accounts)
                .await?;
        match owner {
            Some(owner) if owner == user => Ok(()),
            Some(_) => Err(AppError::Forbidden("only the list's owner may do this")),
            None => Err(AppError::NotFound("no such list")),
        }
    }
}

// ---- todos: the same handlers whether the list lives in the pool or a silo ----

#[derive(Serialize, sqlx::FromRow)]
struct Todo {
    id: i64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

#[derive(Deserialize)]
struct TodoChange {
    done: bool,
}

async fn todos(
    CurrentTenant(list): CurrentTenant,
    _user: User,
    State(saas): State<Saas>,
) -> Result<Json<Vec<Todo>>, AppError> {
    let mut tx = saas.0.router.begin_as(&list, TenantRole::Admin).await?;
    let todos = sqlx::query_as("SELECT id, title, done FROM todos ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(todos))
}

async fn add_todo(
    CurrentTenant(list): CurrentTenant,
    _user: User,
    State(saas): State<Saas>,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Todo>), AppError> {
    let title = checked(&new.title, 500, "a todo is 1 to 500 characters")?;
    let mut tx = saas.0.router.begin_as(&list, TenantRole::Admin).await?;
    // tenant_id defaults to the transaction's list.
    let todo = sqlx::query_as("INSERT INTO todos (title) VALUES ($1) RETURNING id, title, done")
        .bind(title)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(todo)))
}

async fn update_todo(
    CurrentTenant(list): CurrentTenant,
    _user: User,
    UrlPath((_, todo)): UrlPath<(String, i64)>,
    State(saas): State<Saas>,
    Json(change): Json<TodoChange>,
) -> Result<Json<Todo>, AppError> {
    let mut tx = saas.0.router.begin_as(&list, TenantRole::Admin).await?;
    let todo: Option<Todo> =
        sqlx::query_as("UPDATE todos SET done = $2 WHERE id = $1 RETURNING id, title, done")
            .bind(todo)
            .bind(change.done)
            .fetch_optional(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Json(todo.ok_or(AppError::NotFound("no such todo"))?))
}

/// `text` trimmed, when it is 1 to `max` characters.
fn checked<'a>(text: &'a str, max: usize, rule: &'static str) -> Result<&'a str, AppError> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(AppError::Invalid(rule));
    }
    Ok(text)
}

// ---- page and metrics ----

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn metrics(State(saas): State<Saas>) -> String {
    saas.0.prometheus.render()
}

// ---- errors ----

/// What a request can fail with, answered as problem details like the layer's.
#[derive(Debug)]
enum AppError {
    Invalid(&'static str),
    Unauthorized(String),
    Forbidden(&'static str),
    NotFound(&'static str),
    Conflict(&'static str),
    Internal(String),
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl From<tenants::db::Error> for AppError {
    fn from(e: tenants::db::Error) -> Self {
        AppError::Internal(e.to_string())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, kind, detail) = match self {
            AppError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", why.into()),
            AppError::Unauthorized(why) => (StatusCode::UNAUTHORIZED, "unauthorized", why),
            AppError::Forbidden(why) => (StatusCode::FORBIDDEN, "forbidden", why.into()),
            AppError::NotFound(why) => (StatusCode::NOT_FOUND, "not-found", why.into()),
            AppError::Conflict(why) => (StatusCode::CONFLICT, "conflict", why.into()),
            AppError::Internal(error) => {
                eprintln!("internal error: {error}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on our side".to_owned(),
                )
            }
        };
        let body = serde_json::json!({
            "type": format!("urn:todo-saas:problem:{kind}"),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

#[allow(dead_code)] // The end-to-end tests include this file and call `app` only.
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 3002,
    };
    let config = Config::from_env()?;
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let events: Subscriber = Arc::new(|event| println!("event: {event:?}"));
    let app = app(config, prometheus, events).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("todo_saas on http://localhost:{port}/ (metrics at /metrics)");
    axum::serve(listener, app).await?;
    Ok(())
}
