//! Identity service with tenant routes: each tenant of a small identity service lives
//! under `/t/{tenant}/`, in a PostgreSQL schema of its own (the bridge model), and
//! signs up at runtime.
//!
//! - `POST /tenants` registers a tenant: the library's provisioning engine creates its
//!   schema, roles and tables and records it in the PostgreSQL catalog
//!   (`tenants.tenants`), and the very next request is served. No manual step.
//! - `/t/{tenant}/...` is the tenant's API. Tenant ids are DNS labels; a bad one gets
//!   a 400 problem naming the rule it broke.
//! - Per-tenant options (display name, token lifetime, allowed redirect URIs) are read
//!   with the typed `TenantOptions<SignIn>` extractor.
//! - `POST /t/{tenant}/apps` registers an application tenant, served at
//!   `/t/{tenant}/{app}/...`: a tenant record of its own (id `{tenant}--{app}`, with
//!   `parent = "{tenant}"`) and a schema of its own, so its users are isolated from its
//!   parent's and from its siblings'.
//!
//! Every tenant transaction runs as one of the tenant's own database roles
//! (`begin_as`), so even a schema-qualified query for another tenant's table is
//! refused by PostgreSQL, not just kept off the search path.
//!
//! Run it (`DATABASE_URL` is an admin connection: it creates schemas and roles):
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@localhost/postgres cargo run --example identity_routes
//! ```
//!
//! Then, in another terminal:
//!
//! ```sh
//! curl -i -H 'content-type: application/json' http://127.0.0.1:3000/tenants \
//!      -d '{"id": "acme", "name": "Acme", "sign_in": {"token_lifetime_secs": 900,
//!           "redirect_uris": ["https://app.acme.example/callback"]}}'   # 201
//! curl http://127.0.0.1:3000/t/acme/                                     # its profile and options
//! curl -H 'content-type: application/json' http://127.0.0.1:3000/t/acme/users \
//!      -d '{"email": "ada@acme.example", "name": "Ada"}'                 # 201
//! curl -H 'content-type: application/json' http://127.0.0.1:3000/t/acme/apps \
//!      -d '{"id": "mobile", "name": "Acme Mobile"}'                     # 201
//! curl http://127.0.0.1:3000/t/acme/mobile/users                         # [] — not acme's users
//! curl -i http://127.0.0.1:3000/t/Acme_Corp/users                        # 400 problem: the rule
//! ```
//!
//! and open <http://127.0.0.1:3000/t/acme/authorize?redirect_uri=https://app.acme.example/callback>
//! for Acme's sign-in page (any other `redirect_uri` gets a 400 problem).
//!
//! `PORT` changes the port (3000). Requests are served as the login role
//! `identity_app` (`IDENTITY_APP_ROLE`), which the service creates on first start,
//! with the password in `IDENTITY_APP_PASSWORD` when that is set (needed unless the
//! server trusts local connections); the admin connection only provisions.
//! Registration is open to anyone, as befits a demo: a real deployment puts
//! `POST /tenants` and `POST /t/{tenant}/apps` behind its own authentication.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tenants::db::{PgCatalog, Sqlx, TenantRole, TenantRouter};
use tenants::provision::{ApplyOptions, Format, Password, Provisioner, TenantSpec, TenantsFile};
use tenants::resolve::{PathResolver, Resolved, Resolver};
use tenants::tower::{CurrentTenant, TenantLayer, TenantOptions};
use tenants::{
    CachedCatalog, DataModel, IdPolicy, IdRule, OptionsSection, SqlIdent, Tenant, TenantCatalog,
    TenantId,
};
use tower::Layer;

/// How the service connects to PostgreSQL.
#[derive(Clone)]
pub(crate) struct Settings {
    /// An admin connection URL. It provisions tenants (schemas, roles, the catalog)
    /// and serves no request.
    pub(crate) admin_url: String,
    /// The login role requests are served as; created when missing.
    pub(crate) app_role: String,
    /// That role's password, if it has one.
    pub(crate) app_password: Option<String>,
}

/// What every handler shares.
#[derive(Clone)]
struct Identity {
    /// Hands out transactions confined to one tenant's schema.
    router: TenantRouter<Sqlx>,
    /// The PostgreSQL catalog behind a cache; the tenant layer reads the same one.
    catalog: Arc<CachedCatalog<PgCatalog>>,
    /// The provisioning engine, for tenants signing up.
    provisioner: Arc<Provisioner>,
    /// The admin connection, for the lock that serializes registrations of one id.
    admin: PgPool,
}

/// A tenant's own routes, which are therefore never names of application tenants.
const TENANT_ROUTES: [&str; 3] = ["users", "authorize", "apps"];

/// Ids no tenant may have: schemas PostgreSQL and the catalog keep, and service names.
fn tenant_policy() -> IdPolicy {
    IdPolicy::new().reserve([
        "public",
        "tenants",
        "information-schema",
        "admin",
        "api",
        "www",
    ])
}

/// Ids no application tenant may have: the tenant's own routes.
fn app_policy() -> IdPolicy {
    IdPolicy::new().reserve(TENANT_ROUTES)
}

/// The sign-in options of a tenant: the section `sign_in` of its record's options.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// The name shown on the sign-in page; the tenant's name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    /// How long the tenant's tokens live, in seconds.
    #[serde(default = "SignIn::default_lifetime")]
    token_lifetime_secs: u32,
    /// Where sign-in may send users back to, compared exactly (as OAuth requires).
    #[serde(default)]
    redirect_uris: Vec<String>,
}

impl OptionsSection for SignIn {
    const SECTION: &'static str = "sign_in";
}

impl Default for SignIn {
    fn default() -> Self {
        SignIn {
            display_name: None,
            token_lifetime_secs: SignIn::default_lifetime(),
            redirect_uris: Vec::new(),
        }
    }
}

impl SignIn {
    fn default_lifetime() -> u32 {
        3600
    }

    /// Checks options a tenant asks for when it registers.
    fn check(&self) -> Result<(), Problem> {
        if let Some(name) = &self.display_name {
            checked_name(name)?;
        }
        if !(60..=86_400).contains(&self.token_lifetime_secs) {
            return Err(Problem::invalid(
                "sign_in.token_lifetime_secs must be between 60 and 86400",
            ));
        }
        if self.redirect_uris.len() > 10 {
            return Err(Problem::invalid(
                "sign_in.redirect_uris holds at most 10 URIs",
            ));
        }
        for uri in &self.redirect_uris {
            let parsed = (uri.len() <= 2000)
                .then(|| uri.parse::<axum::http::Uri>().ok())
                .flatten();
            let acceptable = parsed.is_some_and(|uri| match (uri.scheme_str(), uri.host()) {
                (Some("https"), Some(_)) => true,
                (Some("http"), Some(host)) => host == "localhost" || host == "127.0.0.1",
                _ => false,
            });
            if !acceptable {
                return Err(Problem::invalid(
                    "each of sign_in.redirect_uris must be an absolute https URI \
                     (or http on localhost), at most 2000 characters",
                ));
            }
        }
        Ok(())
    }
}

/// The body of `POST /tenants` and `POST /t/{tenant}/apps`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    /// Checked here rather than by serde, so that a bad id is answered with its rule.
    id: String,
    name: String,
    #[serde(default)]
    sign_in: SignIn,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct User {
    id: i64,
    email: String,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    email: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Authorize {
    redirect_uri: String,
}

/// Finds the tenant in the path under `/t` (which `nest_service` takes off):
/// `/{tenant}/...` names a tenant, and `/{tenant}/{app}/...` its application tenant
/// `{tenant}--{app}`, unless `{app}` is one of the tenant's own routes.
#[derive(Debug, Clone)]
struct TenantPath {
    tenant: PathResolver,
    app: IdPolicy,
}

impl TenantPath {
    fn new() -> Result<Self, tenants::Error> {
        Ok(TenantPath {
            tenant: PathResolver::new("/{tenant}")?.id_policy(tenant_policy()),
            app: app_policy(),
        })
    }
}

impl Resolver for TenantPath {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, tenants::Error> {
        let Some(found) = self.tenant.resolve(parts)? else {
            return Ok(None);
        };
        let (Some(tenant), Some(prefix)) = (found.id(), found.path_prefix) else {
            return Ok(Some(found));
        };
        if tenant.as_str().contains("--") {
            // An application tenant has one path: under its parent's.
            return Err(tenants::Error::InvalidId {
                input: tenant.to_string(),
                rule: IdRule::Reserved,
            });
        }
        let rest = parts.uri.path().get(prefix..).unwrap_or_default();
        let segment = rest
            .strip_prefix('/')
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default();
        if segment.is_empty() || TENANT_ROUTES.contains(&segment) {
            return Ok(Some(found));
        }
        let app = self.app.parse(segment)?;
        let id = TenantId::parse(&format!("{tenant}--{app}"))?;
        Ok(Some(
            Resolved::from_id(id).with_path_prefix(prefix + 1 + segment.len()),
        ))
    }
}

/// The service: `POST /tenants`, and each tenant's routes under `/t/{tenant}/`.
///
/// Prepares the database first (the catalog table, the application role and its
/// right to read the catalog), as `tenants apply` would with the service's tenants
/// file, which declares the server and no tenant: tenants come at runtime.
pub(crate) async fn app(settings: &Settings) -> Result<Router, Box<dyn std::error::Error>> {
    let server = json!({"url": settings.admin_url, "app_role": settings.app_role});
    let file = json!({"servers": {"main": server}}).to_string();
    let mut file = TenantsFile::parse(&file, Format::Json, "identity_routes")?;
    if let Some(password) = &settings.app_password {
        let server = file.servers.get_mut("main").ok_or("no server \"main\"")?;
        server.app_password = Some(Password::Given(password.clone()));
    }
    let provisioner = Provisioner::connect(file)
        .await?
        .parallelism(2)
        .migrations(sqlx::migrate!("examples/identity_routes/migrations"));
    let report = provisioner
        .apply(&provisioner.plan().await?, &ApplyOptions::new())
        .await?;
    if !report.is_success() {
        return Err(format!("preparing the database: {report}").into());
    }

    // `connect_options` reads the URL's sslmode as libpq does (sqlx's own parser
    // does not verify certificates under `require`).
    let admin = Sqlx::connect_options(&settings.admin_url)?;
    // The application's connection: the admin's server, database and TLS settings,
    // its own role.
    let mut served_url = url::Url::parse(&settings.admin_url)?;
    served_url
        .set_username(&settings.app_role)
        .and_then(|()| served_url.set_password(settings.app_password.as_deref()))
        .map_err(|()| "the admin URL cannot carry a user name")?;
    let served_as = Sqlx::connect_options(served_url.as_str())?;
    let router = TenantRouter::<Sqlx>::builder()
        .server("main", served_url.as_str())
        .build()?;
    let catalog_pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_lazy_with(served_as);
    let catalog = Arc::new(CachedCatalog::new(PgCatalog::new(catalog_pool.clone())));
    // Other instances' registrations reach this one's cache through NOTIFY.
    PgCatalog::watch(&catalog_pool, &catalog).await?;

    let identity = Identity {
        router,
        catalog: catalog.clone(),
        provisioner: Arc::new(provisioner),
        admin: PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(admin),
    };
    let tenant_routes = Router::new()
        .route("/", get(profile))
        .route("/users", get(list_users).post(create_user))
        .route("/authorize", get(authorize))
        .route("/apps", post(register_app))
        .with_state(identity.clone());
    // The layer wraps the tenant router (rather than being added with
    // `Router::layer`) so that it takes the tenant off the path before routing.
    let tenant_layer = TenantLayer::new(TenantPath::new()?, catalog).strip_path_prefix(true);
    Ok(Router::new()
        .route("/tenants", post(register_tenant))
        .with_state(identity)
        .nest_service("/t", tenant_layer.layer(tenant_routes)))
}

impl Identity {
    /// Provisions a tenant and records it in the catalog; refuses a taken id.
    async fn register(
        &self,
        id: TenantId,
        parent: Option<TenantId>,
        new: &NewTenant,
    ) -> Result<Tenant, Problem> {
        let name = checked_name(&new.name)?;
        new.sign_in.check()?;
        let schema = SqlIdent::new(id.as_str().replace('-', "_"))
            .map_err(|e| Problem::invalid_id(e.to_string()))?;
        let mut tenant = Tenant::new(id, DataModel::Bridge { schema })
            .with_name(name)
            .with_options(&new.sign_in);
        if let Some(parent) = parent {
            tenant = tenant.with_parent(parent);
        }
        // One registration of an id at a time, across instances: a second one waits,
        // then finds the id taken.
        let mut lock = self.admin.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('identity_routes'), hashtext($1))")
            .bind(id.as_str())
            .execute(&mut *lock)
            .await?;
        if self.catalog.inner().get(id).await?.is_some() {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "tenant-exists",
                "The tenant id is taken",
                format!("tenant {id} exists already"),
            ));
        }
        self.provisioner
            .provision(&TenantSpec::new(tenant.clone()))
            .await?;
        // The record is in the catalog now. Forget the cache's "no such tenant" (kept
        // from any request made before), so the very next request finds it.
        self.catalog.invalidate(id);
        lock.commit().await?;
        Ok(tenant)
    }
}

async fn register_tenant(
    State(identity): State<Identity>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(new) = body?;
    let id = tenant_policy()
        .parse(&new.id)
        .map_err(|e| Problem::invalid_id(e.to_string()))?;
    if !id.as_str().starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(Problem::invalid_id(format!(
            "invalid tenant id {id:?}: a tenant id must start with a letter here (it names a schema)"
        )));
    }
    if id.as_str().contains("--") {
        return Err(Problem::invalid_id(format!(
            "invalid tenant id {id:?}: '--' is kept for application tenants ({{tenant}}--{{app}})"
        )));
    }
    let tenant = identity.register(id, None, &new).await?;
    Ok(created(&tenant))
}

async fn register_app(
    CurrentTenant(parent): CurrentTenant,
    State(identity): State<Identity>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<Response, Problem> {
    let Json(new) = body?;
    if parent.parent.is_some() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "nested-application",
            "Application tenants have no applications",
            format!(
                "{} is an application tenant: register applications on its parent",
                path_of(&parent)
            ),
        ));
    }
    let app = app_policy()
        .parse(&new.id)
        .map_err(|e| Problem::invalid_id(e.to_string()))?;
    if app.as_str().contains("--") {
        return Err(Problem::invalid_id(format!(
            "invalid application id {app:?}: it must not contain '--'"
        )));
    }
    let id = TenantId::parse(&format!("{}--{app}", parent.id))
        .map_err(|e| Problem::invalid_id(e.to_string()))?;
    let tenant = identity.register(id, Some(parent.id), &new).await?;
    Ok(created(&tenant))
}

/// `201 Created`, with the new tenant's path in `Location`.
fn created(tenant: &Tenant) -> Response {
    let path = format!("{}/", path_of(tenant));
    let location = HeaderValue::try_from(path.as_str()).ok();
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"id": tenant.id, "name": tenant.name, "parent": tenant.parent, "path": path})),
    )
        .into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Where a tenant's routes are: `/t/{tenant}`, or `/t/{tenant}/{app}`.
fn path_of(tenant: &Tenant) -> String {
    match tenant.parent {
        Some(parent) => {
            let id = tenant.id.as_str();
            let app = id
                .strip_prefix(parent.as_str())
                .and_then(|rest| rest.strip_prefix("--"))
                .unwrap_or(id);
            format!("/t/{parent}/{app}")
        }
        None => format!("/t/{}", tenant.id),
    }
}

/// The tenant's profile, options included.
async fn profile(
    CurrentTenant(tenant): CurrentTenant,
    TenantOptions(sign_in): TenantOptions<SignIn>,
) -> Json<Value> {
    Json(json!({
        "id": tenant.id,
        "name": tenant.name,
        "parent": tenant.parent,
        "path": path_of(&tenant),
        "display_name": sign_in.display_name.as_deref().unwrap_or(&tenant.name),
        "token_lifetime_secs": sign_in.token_lifetime_secs,
        "redirect_uris": sign_in.redirect_uris,
    }))
}

async fn list_users(
    CurrentTenant(tenant): CurrentTenant,
    State(identity): State<Identity>,
) -> Result<Json<Vec<User>>, Problem> {
    // Reading needs no more than the tenant's read-only role.
    let mut tx = identity
        .router
        .begin_as(&tenant, TenantRole::Customer)
        .await?;
    let users = sqlx::query_as("SELECT id, email, name FROM users ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(users))
}

async fn create_user(
    CurrentTenant(tenant): CurrentTenant,
    State(identity): State<Identity>,
    body: Result<Json<NewUser>, JsonRejection>,
) -> Result<(StatusCode, Json<User>), Problem> {
    let Json(new) = body?;
    let email = new.email.trim();
    let well_formed = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !well_formed {
        return Err(Problem::invalid(
            "email must be an address such as ada@example.com",
        ));
    }
    let name = checked_name(&new.name)?;
    let mut tx = identity
        .router
        .begin_as(&tenant, TenantRole::Developer)
        .await?;
    let user =
        sqlx::query_as("INSERT INTO users (email, name) VALUES ($1, $2) RETURNING id, email, name")
            .bind(email)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(db) if db.is_unique_violation() => Problem::new(
                    StatusCode::CONFLICT,
                    "user-exists",
                    "The email is taken",
                    format!("{} has a user with this email already", tenant.id),
                ),
                e => Problem::from(e),
            })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// The sign-in page, for a redirect URI the tenant registered.
async fn authorize(
    CurrentTenant(tenant): CurrentTenant,
    TenantOptions(sign_in): TenantOptions<SignIn>,
    query: Result<Query<Authorize>, QueryRejection>,
) -> Result<Html<String>, Problem> {
    let Query(request) = query?;
    if !sign_in.redirect_uris.contains(&request.redirect_uri) {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "redirect-uri-not-allowed",
            "The redirect URI is not registered",
            format!(
                "{} sends users back only to its registered redirect URIs",
                path_of(&tenant)
            ),
        ));
    }
    let name = sign_in.display_name.as_deref().unwrap_or(&tenant.name);
    Ok(Html(format!(
        "<!doctype html><meta charset=utf-8><title>Sign in to {name}</title>\
         <h1>Sign in to {name}</h1>\
         <p>After signing in you go back to <code>{uri}</code>, \
         signed in for {minutes} minutes.</p>\
         <p>(Signing in itself is beyond this example.)</p>",
        name = escape(name),
        uri = escape(&request.redirect_uri),
        minutes = sign_in.token_lifetime_secs / 60,
    )))
}

/// A display name: 1 to 100 characters, no control characters.
fn checked_name(name: &str) -> Result<&str, Problem> {
    let name = name.trim();
    let length = name.chars().count();
    if length == 0 || length > 100 || name.chars().any(char::is_control) {
        return Err(Problem::invalid(
            "names are 1 to 100 characters, without control characters",
        ));
    }
    Ok(name)
}

/// Escapes text for HTML: names and URIs are user input.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// An RFC 9457 problem: the service's answer to whatever went wrong.
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

    fn invalid_id(detail: String) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-tenant-id",
            "The tenant id is not acceptable",
            detail,
        )
    }

    fn invalid(detail: &str) -> Self {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is not acceptable",
            detail.to_owned(),
        )
    }

    /// A failure that is the service's, not the client's: logged, not shown.
    fn internal(error: &dyn std::fmt::Display) -> Self {
        eprintln!("internal error: {error}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "see the server logs".to_owned(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("urn:identity-routes:problem:{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
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

impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Self {
        Problem::new(
            rejection.status(),
            "invalid-query",
            "The query string is not acceptable",
            rejection.body_text(),
        )
    }
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        Problem::internal(&error)
    }
}

impl From<tenants::db::Error> for Problem {
    fn from(error: tenants::db::Error) -> Self {
        Problem::internal(&error)
    }
}

impl From<tenants::Error> for Problem {
    fn from(error: tenants::Error) -> Self {
        match error {
            tenants::Error::CatalogUnavailable(_) => {
                eprintln!("{error}");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "The tenant catalog is unavailable",
                    "try again shortly".to_owned(),
                )
            }
            error => Problem::internal(&error),
        }
    }
}

#[allow(dead_code)] // The end-to-end test includes this file and calls `app` only.
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let admin_url = std::env::var("DATABASE_URL").map_err(|_| {
        "set DATABASE_URL to an admin connection URL (one that may create schemas and \
         roles), e.g. postgres://postgres@localhost/postgres"
    })?;
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT={port:?} is not a port number"))?,
        Err(_) => 3000,
    };
    let settings = Settings {
        admin_url,
        app_role: std::env::var("IDENTITY_APP_ROLE").unwrap_or_else(|_| "identity_app".into()),
        app_password: std::env::var("IDENTITY_APP_PASSWORD").ok(),
    };
    let app = app(&settings).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("identity service on http://127.0.0.1:{port}");
    println!("  register a tenant: curl -H 'content-type: application/json' \\");
    println!("    -d '{{\"id\": \"acme\", \"name\": \"Acme\"}}' http://127.0.0.1:{port}/tenants");
    axum::serve(listener, app).await?;
    Ok(())
}
