//! The crate's error type.

use tenants_core::TenantId;

/// Everything that can go wrong routing a tenant to its data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tenant lives in a data model this router does not serve.
    #[error("tenant {tenant} uses the {model} model, which this router does not serve")]
    ModelNotServed {
        /// The tenant.
        tenant: TenantId,
        /// Its data model.
        model: &'static str,
    },
    /// The tenant is not active; routing it would serve a suspended or deleted tenant.
    #[error("tenant {tenant} is {status}, not active")]
    Inactive {
        /// The tenant.
        tenant: TenantId,
        /// Its status.
        status: tenants_core::TenantStatus,
    },
    /// A silo tenant names a server the router was not given.
    #[error(
        "tenant {tenant} lives on server {server:?}, which the router does not know: add it with .server({server:?}, url)"
    )]
    UnknownServer {
        /// The tenant.
        tenant: TenantId,
        /// The server its record names.
        server: String,
    },
    /// A session hand-out (`acquire`, `client`) for a tenant whose server is
    /// declared a transaction pooler, where a session's settings do not reach its
    /// next statement.
    #[error(
        "tenant {tenant} is on server {server:?}, declared a transaction pooler, where no \
         session state survives a statement: a session scoped to the tenant could run its \
         statements as another tenant. Use begin(), which carries the tenant inside the \
         transaction"
    )]
    SessionBehindPooler {
        /// The tenant.
        tenant: TenantId,
        /// The server, by the router's name for it.
        server: String,
    },
    /// A session hand-out (`acquire`, `client`) for a pool or bridge tenant on a
    /// server declared a Citus coordinator: Citus forwards a transaction's `SET
    /// LOCAL` to its workers, never a session's `SET`, so the shards' policies would
    /// see no tenant.
    #[error(
        "tenant {tenant} is on server {server:?}, declared a Citus coordinator, which \
         forwards no session setting to its workers: the policies on the shards would see no \
         tenant, and the tenant's rows there would stay out of reach. Use begin(), whose SET \
         LOCAL Citus forwards"
    )]
    SessionOnCitus {
        /// The tenant.
        tenant: TenantId,
        /// The server, by the router's name for it.
        server: String,
    },
    /// A new silo connection reached another database than the tenant's, or does not
    /// carry the tenant setting it was opened with. It was closed, never handed out.
    #[error("{0}")]
    SiloIdentity(Box<SiloMismatch>),
    /// A silo tenant's database could not be connected to. Hand-outs are refused with
    /// this error for a while before the next attempt (a back-off that doubles with
    /// each failure in a row, from 250 ms to 30 s).
    #[error(
        "silo tenant {tenant}: cannot connect to database {database:?} on server {server:?}: \
         {source}. If the server is a transaction pooler (pgbouncer, Supavisor, PgDog), which \
         refuses or drops startup parameters, declare it with .connection_mode({server:?}, \
         ConnectionMode::TransactionPooler) (connection = \"transaction_pooler\" in a tenants \
         file); otherwise check that the database exists and the server is reachable"
    )]
    SiloUnavailable {
        /// The tenant.
        tenant: TenantId,
        /// The server, by the router's name for it.
        server: std::sync::Arc<str>,
        /// The tenant's database.
        database: String,
        /// What the driver reported.
        source: Box<Error>,
    },
    /// The router or a pool was configured with values that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A connection URL's TLS settings cannot be honoured: an unknown or unsupported
    /// parameter, a combination libpq refuses, or a certificate file that cannot be
    /// read (see [`tls`](crate::tls)). The message names the parameter.
    #[error("TLS settings: {0}")]
    Tls(String),
    /// No silo connection budget came free in time: every silo pool was busy.
    #[error(
        "no silo connection came free within {waited:?} (budget {budget} connections, all busy): \
         raise silo_budget, lower silo_connections_per_tenant, or hold connections for less time"
    )]
    BudgetExhausted {
        /// The configured budget.
        budget: u32,
        /// How long the caller waited.
        waited: std::time::Duration,
    },
    /// The application role can see past tenant isolation.
    #[error("unsafe application role: {}", list(.0))]
    UnsafeRole(Vec<crate::Hazard>),
    /// sqlx reported an error.
    #[cfg(any(feature = "sqlx", feature = "sqlite"))]
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// tokio-postgres reported an error.
    #[cfg(feature = "deadpool")]
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// deadpool could not hand out a connection.
    #[cfg(feature = "deadpool")]
    #[error("connection pool: {}", pool_message(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Migrations failed for a tenant.
    #[cfg(any(feature = "sqlx", feature = "sqlite"))]
    #[error("migrating tenant {tenant}: {source}")]
    Migrate {
        /// The tenant.
        tenant: TenantId,
        /// What failed.
        source: sqlx::migrate::MigrateError,
    },
    /// Opening a tenant's database failed (the error is shared by every request that
    /// waited for the same open).
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
    /// A tenants file is invalid: unknown keys, bad ids or names, duplicates, or a
    /// team file declaring what it does not own.
    #[cfg(feature = "sqlx")]
    #[error("{origin}{}: {message}", position(*.line, *.column))]
    TenantsFile {
        /// The file (or `<inline toml>`).
        origin: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Environment variables the tenants file names are not set; nothing was changed.
    #[error("environment variables not set (nothing was changed): {}", .0.join(", "))]
    MissingEnv(Vec<String>),
    /// The plan drops tenants that are no longer declared, and dropping was not
    /// allowed.
    #[error(
        "the plan drops tenant(s) {} with their data; nothing was changed: \
         pass --allow-destroy (ApplyOptions::allow_destroy) to drop them",
        ids(.0)
    )]
    DestroyRefused(Vec<TenantId>),
    /// A tenant of the tenants file has no schema or database yet: `migrate` does
    /// not create storage, `apply` does.
    #[error("tenant {tenant} is not provisioned ({missing} does not exist): run apply")]
    NotProvisioned {
        /// The tenant.
        tenant: TenantId,
        /// The missing object, as the plan prints it (`schema acme`).
        missing: String,
    },
    /// Keys of pool tables that do not lead with `tenant_id`: a unique key answers
    /// one tenant's insert with another tenant's conflict (revealing that the
    /// value exists), and a foreign key accepts a reference to another tenant's
    /// row.
    #[error(
        "pool-table keys that do not lead with tenant_id: {why}\n  {}",
        .problems.join("\n  ")
    )]
    TenantScopedKeys {
        /// One line per key: `table: kind name (columns)`.
        problems: Vec<String>,
        /// How to fix them.
        why: &'static str,
    },
    /// Shared migrations that bridge tenants cannot run inside their own schema;
    /// nothing was changed.
    #[error(
        "migrations a bridge tenant cannot run in its own schema (nothing was changed): {why}\n  {}",
        .problems.join("\n  ")
    )]
    BridgeMigrations {
        /// One line per offence: `file:line: reason`.
        problems: Vec<String>,
        /// What bridge migrations must do instead.
        why: &'static str,
    },
    /// A tenants file's server URL (the provisioning engine's own connection)
    /// goes through a transaction pooler: session state does not survive from one
    /// statement to the next there.
    #[error(
        "server {server:?}: its URL in the tenants file goes through a transaction pooler \
         (session state is lost between statements), and plan, apply and migrate need a \
         direct connection (session advisory locks, a search_path given at connection start): \
         point url / url_env at PostgreSQL itself; the application may still use the pooler \
         (connection = \"transaction_pooler\")"
    )]
    AdminBehindPooler {
        /// The server, by the file's name for it.
        server: String,
    },
    /// A migration file of several statements failed on a Citus coordinator, where
    /// DDL on a distributed table (or in a distributed schema) reaches the shards as
    /// the text of the message that held it, and sqlx runs a file as one message.
    #[cfg(feature = "sqlx")]
    #[error(
        "migrating {target} on Citus: {source}. Citus sends a DDL statement on a distributed \
         table to its shards as the text of the message that held it, and a migration file \
         runs as one message: give each statement on a distributed table (pool tables, and \
         every table of a bridge tenant's schema) a migration file of its own"
    )]
    CitusMigration {
        /// What was migrated: `shared`, `tenant acme`.
        target: String,
        /// What failed.
        source: sqlx::migrate::MigrateError,
    },
    /// Reading the migrations directory failed.
    #[cfg(feature = "sqlx")]
    #[error("migrations {path}: {source}")]
    Migrations {
        /// The directory.
        path: String,
        /// What failed.
        source: sqlx::migrate::MigrateError,
    },
    /// Creating a tenant's storage failed (a directory, a file).
    #[error("storage for tenant {tenant}: {source}")]
    Storage {
        /// The tenant.
        tenant: TenantId,
        /// What failed.
        source: std::io::Error,
    },
}

/// What a new silo connection showed instead of its tenant's identity
/// ([`Error::SiloIdentity`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "silo tenant {tenant} on server {server:?}: a new connection reached database \
     {found_database:?}{} (expected {expected_database:?}{}); it was closed unused. {}",
    found_setting_text(*.expected_setting, .found_setting.as_deref()),
    expected_setting_text(*.expected_setting, tenant),
    identity_remedy(.expected_database, .found_database)
)]
pub struct SiloMismatch {
    /// The tenant.
    pub tenant: TenantId,
    /// The server, by the router's name for it.
    pub server: String,
    /// The tenant's database.
    pub expected_database: String,
    /// The database the connection reached (`current_database()`).
    pub found_database: String,
    /// Whether the connection had to carry the tenant setting from its start
    /// (direct servers; behind a pooler each transaction sets it).
    pub expected_setting: bool,
    /// The connection's `tenants.tenant_id`.
    pub found_setting: Option<String>,
}

/// tokio-postgres' message with its cause: it displays a server error as "db
/// error" and a refused certificate as "error performing TLS handshake"; the
/// server's message and code, or the TLS error, are what a reader needs.
#[cfg(feature = "deadpool")]
fn postgres_message(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        message = format!("{message}: {inner}");
        cause = inner.source();
    }
    message
}

/// deadpool's message, with tokio-postgres' cause when opening a connection failed.
#[cfg(feature = "deadpool")]
fn pool_message(error: &deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match error {
        PoolError::Backend(postgres) => {
            format!("opening a connection: {}", postgres_message(postgres))
        }
        other => other.to_string(),
    }
}

fn found_setting_text(expected: bool, found: Option<&str>) -> String {
    match (expected, found) {
        (false, _) => String::new(),
        (true, Some(found)) if !found.is_empty() => format!(" with tenants.tenant_id = {found:?}"),
        (true, _) => " without tenants.tenant_id".to_owned(),
    }
}

fn expected_setting_text(expected: bool, tenant: &TenantId) -> String {
    if expected {
        format!(" with tenants.tenant_id = \"{tenant}\"")
    } else {
        String::new()
    }
}

fn identity_remedy(expected: &str, found: &str) -> &'static str {
    if expected != found {
        "The server or a pooler alias maps the database name to another database: fix the \
         server URL or the pooler's [databases] entry"
    } else {
        "The tenant setting, sent as a startup parameter, did not arrive, as behind a pooler \
         that drops startup parameters (pgbouncer's ignore_startup_parameters = options): \
         declare the server with .connection_mode(server, ConnectionMode::TransactionPooler) \
         (connection = \"transaction_pooler\" in a tenants file), so each transaction carries \
         the tenant"
    }
}

fn list(hazards: &[crate::Hazard]) -> String {
    hazards
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(feature = "sqlx")]
fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

#[cfg(any(feature = "sqlx", feature = "sqlite"))]
impl From<sqlx::Error> for Error {
    /// [`Error::Database`], or [`Error::Tls`] with the remedies for a server
    /// certificate sqlx cannot read.
    fn from(error: sqlx::Error) -> Self {
        Error::unreadable_certificate(&error).unwrap_or(Error::Database(error))
    }
}

fn ids(tenants: &[TenantId]) -> String {
    tenants
        .iter()
        .map(TenantId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// The error of a pool opening that several callers may have waited for: the
    /// error itself when this caller is its only holder or it is a plain budget
    /// error, else [`Error::Shared`].
    #[cfg(any(feature = "sqlx", feature = "deadpool", feature = "sqlite"))]
    pub(crate) fn unshare(error: std::sync::Arc<Error>) -> Error {
        match std::sync::Arc::try_unwrap(error) {
            Ok(error) => error,
            Err(shared) => match *shared {
                Error::BudgetExhausted { budget, waited } => {
                    Error::BudgetExhausted { budget, waited }
                }
                _ => Error::Shared(shared),
            },
        }
    }

    /// The TLS error of a server certificate sqlx cannot read, with the remedies.
    #[cfg(any(feature = "sqlx", feature = "sqlite"))]
    fn unreadable_certificate(error: &sqlx::Error) -> Option<Error> {
        // sqlx checks handshake signatures through webpki even when sslmode checks no
        // certificate, and webpki reads X.509 v3 only (rustls-webpki's
        // UnsupportedCertVersion, which reaches here only as text).
        let tls = matches!(error, sqlx::Error::Io(_) | sqlx::Error::Tls(_));
        (tls && format!("{error:?}").contains("UnsupportedCertVersion")).then(|| {
            Error::Tls(
                "the server presents an X.509 v1 certificate (Citus makes one on CREATE \
                 EXTENSION citus), which sqlx's TLS cannot read even when sslmode checks no \
                 certificate: give the server a v3 certificate, use the deadpool driver, or \
                 sslmode=disable on a network you trust"
                    .into(),
            )
        })
    }

    /// This error, about server `name`: a [`Tls`](Error::Tls) or
    /// [`Config`](Error::Config) message gets the server's name in front (other
    /// errors are returned as they are). For the router's servers and the
    /// provisioning engine's alike.
    pub fn in_server(self, name: &str) -> Error {
        match self {
            Error::Tls(why) => Error::Tls(format!("server {name:?}: {why}")),
            Error::Config(why) => Error::Config(format!("server {name:?}: {why}")),
            other => other,
        }
    }
}
