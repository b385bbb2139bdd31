//! Reading tenants files: one file, or a directory of them merged under an ownership
//! rule, checked before anything touches a database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tenants_core::{DataModel, SqlIdent, Tenant, TenantId, TenantStatus};

use super::environment::Environment;
use super::template::{self, Names};

mod build;
mod profile;
mod raw;
mod source;
mod team;
mod tenant;

use build::*;
use profile::*;
use raw::*;
use source::*;
use team::*;
use tenant::*;
use tenants_db::{ConnectionMode, Error, TenantRole, UnknownConnectionMode};

/// The template database silo databases are copied from, unless a server names its own.
pub const DEFAULT_TEMPLATE: &str = "tenants_template";

/// The syntax of a tenants file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML (`.toml`), the documented format.
    Toml,
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl Format {
    /// The format a file's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// The desired state of every tenant: what `plan` compares with the live servers and
/// `apply` makes true.
///
/// Load it from a file or a directory of files with [`TenantsFile::load`], or from
/// text with [`TenantsFile::parse`]. Loading checks everything that can be checked
/// without a database: unknown keys, tenant ids, safe identifiers, name templates,
/// duplicate database, schema and user names, references to servers, and, for a
/// directory, which file may declare what. Every error names the file, the line and
/// the reason.
///
/// # The format
///
/// ```toml
/// [servers.main]
/// url_env = "DATABASE_URL"    # admin URL from the environment (or `url = "..."`)
/// app_role = "app"            # the role the application connects as
///
/// [shared]
/// migrations = "migrations"   # sqlx migrations, relative to this file
/// pool_tables = ["todos"]     # pool-model tables: tenant_id + row-level security
///
/// [tenants.building-shop]
/// name = "Building Shop Inc."
/// model = "silo"              # pool | bridge | silo
/// database = "building_shop"
///   [[tenants.building-shop.users]]
///   name = "building_admin"
///   role = "admin"            # admin | developer | customer
///   password_env = "BUILDING_ADMIN_PASSWORD"
///
/// [tenants.tenant-b]
/// uid = "a79a8c37-9d0b-4b1d-a051-ba339eea6f21"
/// model = "bridge"
/// schema = "tenant_{hash}"    # {id}, {uid} and {hash} expand per tenant
///
/// [profiles.dedicated]        # declared once ...
/// model = "silo"
/// server = "main"
/// database = "tenant_{hash}"
///
/// [tenants.tenant-c]
/// uid = "a869f326-7d83-4d1f-8af1-aef8fb11e57f"
/// profile = "dedicated"       # ... referenced by each tenant: database tenant_430e00
/// ```
///
/// # Profiles
///
/// A profile (`[profiles.<name>]`, in a root file) declares once where and how
/// tenants live: `model`, `server`, `schema`, `database` (name templates,
/// expanded per tenant), `plan` and `options`. A tenant naming it with
/// `profile = "<name>"` takes every one of those keys it leaves unset (`options`
/// sections merge, the tenant's winning); a profile's `schema` applies to bridge
/// tenants only, its `database` and `server` to silo tenants only. A fleet's
/// naming rules and placement so live in one place, and a tenant is its id, its
/// uid and a profile.
///
/// # Examples
///
/// ```
/// use tenants_provision::{Format, TenantsFile};
///
/// let file = TenantsFile::parse(r#"
///     [servers.main]
///     url = "postgres://postgres@localhost/app"
///
///     [tenants.tenant-a]
///     uid = "4783eb5d-956e-4b58-a214-790fe7ef61ba"
///     model = "silo"
///     database = "tenant_{hash}"
/// "#, Format::Toml, "tenants.toml")?;
/// let tenant = &file.tenants[0].tenant;
/// assert_eq!(tenant.id, "tenant-a");
/// assert!(matches!(&tenant.model,
///     tenants_core::DataModel::Silo { database, .. } if database.as_str() == "tenant_af5042"));
///
/// let err = TenantsFile::parse("[tenants.a]\nmodel = \"pool\"\ncolour = 1\n",
///     Format::Toml, "tenants.toml").unwrap_err();
/// assert!(err.to_string().starts_with("tenants.toml:3:1: unknown field `colour`"), "{err}");
/// # Ok::<(), tenants_db::Error>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantsFile {
    /// The servers, by name.
    pub servers: BTreeMap<String, ServerSpec>,
    /// The server pool and bridge tenants live on, and silo tenants without a
    /// `server`: `[shared] server`, or the only server.
    pub default_server: String,
    /// Infrastructure shared by every tenant.
    pub shared: SharedSpec,
    /// The tenants, in id order.
    pub tenants: Vec<TenantSpec>,
}

/// A database server, as `[servers.<name>]` declares it.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerSpec {
    /// The name tenants refer to it by.
    pub name: String,
    /// Where the admin connection URL comes from.
    pub url: UrlSource,
    /// The login role the application connects as: it joins every tenant's group
    /// roles, and is never made a superuser or an owner.
    pub app_role: Option<SqlIdent>,
    /// The environment variable holding the application role's password, set when
    /// the role is created.
    pub app_password_env: Option<String>,
    /// The application role's password given by code (an application that
    /// provisions itself at start); it takes precedence over `app_password_env`.
    /// Never read from a file.
    pub app_password: Option<Password>,
    /// The template database silo databases on this server are copied from.
    pub template: SqlIdent,
    /// How the application reaches this server (`connection = "direct"`, the
    /// default, or `"transaction_pooler"`): give it to
    /// [`RouterBuilder::connection_mode`](tenants_db::RouterBuilder::connection_mode).
    /// The engine itself connects with the admin URL, which must be direct: it
    /// holds session advisory locks and gives migrations their `search_path` at
    /// connection start.
    pub connection: ConnectionMode,
    /// The server is a Citus coordinator (`citus = true`): apply distributes the
    /// pool tables by `tenant_id` (co-located), makes the tables of the shared
    /// schemas reference tables and the bridge schemas distributed schemas, and
    /// gives the application role `citus.propagate_set_commands = 'local'`. Give it
    /// to [`RouterBuilder::citus`](tenants_db::RouterBuilder::citus).
    pub citus: bool,
}

impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("app_role", &self.app_role)
            .field("template", &self.template)
            .field("connection", &self.connection)
            .field("citus", &self.citus)
            .finish_non_exhaustive()
    }
}

/// Where a server's admin URL comes from.
#[derive(Clone)]
#[non_exhaustive]
pub enum UrlSource {
    /// Written in the file (`url = "..."`), for local development.
    Inline(String),
    /// Read from this environment variable (`url_env = "..."`).
    Env(String),
}

impl fmt::Debug for UrlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A URL may carry a password.
        match self {
            UrlSource::Inline(_) => f.write_str("Inline(..)"),
            UrlSource::Env(var) => f.debug_tuple("Env").field(var).finish(),
        }
    }
}

/// `[shared]`: what every tenant uses.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SharedSpec {
    /// The sqlx migrations directory applied to every tenant (resolved against the
    /// file's directory).
    pub migrations: Option<PathBuf>,
    /// The pool-model tables of the shared database, each given row-level security.
    pub pool_tables: Vec<TableName>,
    /// Schemas of the shared database every tenant may read (bridge tenants find
    /// them after their own schema).
    pub schemas: Vec<SqlIdent>,
}

/// A table name, `schema.table` or `table` (in `public`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The schema.
    pub schema: SqlIdent,
    /// The table.
    pub table: SqlIdent,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let (schema, table) = name.split_once('.').unwrap_or(("public", name));
        Ok(TableName {
            schema: SqlIdent::new(schema).map_err(|e| Error::Config(e.to_string()))?,
            table: SqlIdent::new(table).map_err(|e| Error::Config(e.to_string()))?,
        })
    }

    /// The name as quoted SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// One tenant: its catalog record, where it lives and its login users.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TenantSpec {
    /// The record registered in the catalog (`tenants.tenants`).
    pub tenant: Tenant,
    /// A stable unique id (such as a UUID) behind `{uid}` and `{hash}`.
    pub uid: Option<String>,
    /// The server holding the tenant's data.
    pub server: String,
    /// Login users, each a member of one of the tenant's group roles.
    pub users: Vec<UserSpec>,
    /// The file that declared the tenant.
    pub origin: String,
}

impl TenantSpec {
    /// A tenant with no users, on the default server: what an application onboards
    /// at runtime with [`Provisioner::provision`](super::Provisioner::provision).
    pub fn new(tenant: Tenant) -> Self {
        let server = match &tenant.model {
            DataModel::Silo {
                server: Some(server),
                ..
            } => server.clone(),
            _ => String::new(),
        };
        TenantSpec {
            tenant,
            uid: None,
            server,
            users: Vec::new(),
            origin: "<runtime>".into(),
        }
    }

    /// Adds a login user.
    pub fn with_user(mut self, user: UserSpec) -> Self {
        self.users.push(user);
        self
    }
}

/// A login user of a tenant (`[[tenants.<id>.users]]`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UserSpec {
    /// The login role's name.
    pub name: SqlIdent,
    /// The tenant role it is a member of.
    pub role: TenantRole,
    /// Where its password comes from.
    pub password: Password,
}

impl UserSpec {
    /// A login user `name`, a member of the tenant's `role`, whose password comes
    /// from `password`.
    pub fn new(name: SqlIdent, role: TenantRole, password: Password) -> Self {
        UserSpec {
            name,
            role,
            password,
        }
    }
}

/// Where a user's password comes from; never from the tenants file itself.
#[derive(Clone)]
#[non_exhaustive]
pub enum Password {
    /// This environment variable (`password_env = "..."`).
    Env(String),
    /// This value, given by application code.
    Given(String),
}

impl Password {
    /// The password, or the name of the missing environment variable.
    pub(crate) fn resolve(&self, env: &Environment) -> Result<String, String> {
        match self {
            Password::Env(var) => env.get(var).ok_or_else(|| var.clone()),
            Password::Given(value) => Ok(value.clone()),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Env(var) => f.debug_tuple("Env").field(var).finish(),
            Password::Given(_) => f.write_str("Given(<redacted>)"),
        }
    }
}

// ---- loading ----

impl TenantsFile {
    /// Loads a tenants file, or every tenants file (`.toml`, `.json`, `.yaml`,
    /// `.yml`) under a directory, merged.
    ///
    /// # Directories: who may declare what
    ///
    /// Files directly in the directory are root files: they declare the servers,
    /// `[shared]`, the profiles and any tenant. A file in a subdirectory belongs to
    /// the team named by that subdirectory (`fleet/acme/tenants.toml` belongs to
    /// team `acme`), and describes only that team's tenants:
    ///
    /// - it declares neither servers, `[shared]` nor profiles (it names a server or
    ///   a profile of the root files);
    /// - it declares only tenants whose id is the team's name or starts with it and
    ///   a `-` (`acme`, `acme-eu`), unless a longer team directory owns the id
    ///   (`acme-labs-x` belongs to team `acme-labs` when there is one);
    /// - every schema, database and user name it gives a tenant, written or from a
    ///   profile, names the team (`acme_eu`, `acme_reports`) or holds the tenant's
    ///   uid or `{hash}` (`tenant_{hash}`), so it cannot take another team's names,
    ///   even those of a tenant not onboarded yet;
    /// - a tenant's `parent` is a tenant of the same team.
    ///
    /// Across all files, no tenant, uid, server, profile, database, schema, user or
    /// domain may be declared twice. Root files are read first, so when a team file
    /// takes a name a root file declares, the error names the team file. So
    /// onboarding a tenant is one new file, and a team's file cannot touch another
    /// team's tenants or their objects.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let metadata = std::fs::metadata(path).map_err(|e| Error::TenantsFile {
            origin: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut sources = if metadata.is_dir() {
            let mut files = Vec::new();
            collect_files(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(Error::TenantsFile {
                    origin: path.display().to_string(),
                    line: None,
                    column: None,
                    message: "no tenants files (.toml, .json, .yaml) in this directory".into(),
                });
            }
            files
                .iter()
                .map(|file| {
                    let relative = file.strip_prefix(path).unwrap_or(file);
                    let team = (relative.components().count() > 1)
                        .then(|| relative.components().next())
                        .flatten()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned());
                    read_source(file, team)
                })
                .collect::<Result<Vec<_>, _>>()?
        } else {
            vec![read_source(path, None)?]
        };
        // Root files first: what they declare is the platform's, so a team file
        // that takes the same name is the one at fault, whatever the paths' order.
        sources.sort_by_key(|source| source.team.is_some());
        build(&sources)
    }

    /// Parses one tenants file from text; `origin` names it in errors, and relative
    /// paths in it are resolved against the current directory.
    pub fn parse(text: &str, format: Format, origin: &str) -> Result<Self, Error> {
        build(&[Source {
            origin: origin.to_owned(),
            text: text.to_owned(),
            format,
            team: None,
            dir: PathBuf::from("."),
        }])
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: &TenantId) -> Option<&TenantSpec> {
        self.tenants.iter().find(|t| t.tenant.id == *id)
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let unreadable = |e: std::io::Error| Error::TenantsFile {
        origin: dir.display().to_string(),
        line: None,
        column: None,
        message: format!("cannot read: {e}"),
    };
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if Format::from_path(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

fn read_source(path: &Path, team: Option<String>) -> Result<Source, Error> {
    let origin = path.display().to_string();
    let error = |message: String| Error::TenantsFile {
        origin: origin.clone(),
        line: None,
        column: None,
        message,
    };
    let format = Format::from_path(path)
        .ok_or_else(|| error("unknown extension: use .toml, .json, .yaml or .yml".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok(Source {
        origin,
        text,
        format,
        team,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEAD: &str = "[servers.main]\nurl = \"postgres://localhost/app\"\n";

    fn toml_err(body: &str) -> String {
        let text = format!("{HEAD}{body}");
        TenantsFile::parse(&text, Format::Toml, "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_issue_file_loads_verbatim() {
        let text = r#"
[servers.main]
url_env = "DATABASE_URL"          # admin connection string, read from the environment

[shared]
migrations = "migrations"         # sqlx-style migrations applied to every tenant
pool_tables = ["todos"]           # tables of the pool model that get tenant_id + RLS

[tenants.building-shop]
name = "Building Shop Inc."
model = "silo"                    # pool | bridge | silo
database = "building_shop"        # the customer's chosen name
plan = "professional"
  [[tenants.building-shop.users]]
  name = "building_admin"
  role = "admin"                  # admin: select/insert/update/delete
  password_env = "BUILDING_ADMIN_PASSWORD"
  [[tenants.building-shop.users]]
  name = "building_dev"
  role = "developer"              # select/insert/update, no delete
  password_env = "BUILDING_DEV_PASSWORD"
  [[tenants.building-shop.users]]
  name = "building_customer"
  role = "customer"               # select only
  password_env = "BUILDING_CUSTOMER_PASSWORD"

[tenants.hardware-store]
name = "Hardware Store"
model = "bridge"
schema = "hardware_store"

[tenants.tenant-a]
name = "Tenant A"
model = "pool"
"#;
        let file = TenantsFile::parse(text, Format::Toml, "tenants.toml").unwrap();
        assert_eq!(file.default_server, "main");
        assert!(matches!(&file.servers["main"].url, UrlSource::Env(v) if v == "DATABASE_URL"));
        assert_eq!(file.shared.pool_tables[0].to_string(), "public.todos");
        let ids: Vec<_> = file.tenants.iter().map(|t| t.tenant.id.as_str()).collect();
        assert_eq!(ids, ["building-shop", "hardware-store", "tenant-a"]);
        let shop = &file.tenants[0];
        assert_eq!(shop.tenant.plan.as_deref(), Some("professional"));
        assert_eq!(shop.users.len(), 3);
        assert_eq!(shop.users[1].role, TenantRole::Developer);
        assert!(
            matches!(&shop.users[2].password, Password::Env(v) if v == "BUILDING_CUSTOMER_PASSWORD")
        );
        assert!(matches!(
            &shop.tenant.model,
            DataModel::Silo { database, server: None } if database.as_str() == "building_shop"
        ));
    }

    #[test]
    fn servers_declare_how_the_application_reaches_them() {
        let text = "[servers.main]\nurl = \"postgres://h/db\"\n\
                    [servers.pooled]\nurl = \"postgres://h/db\"\nconnection = \"transaction_pooler\"\n\
                    [shared]\nserver = \"main\"\n";
        let file = TenantsFile::parse(text, Format::Toml, "t.toml").unwrap();
        assert_eq!(file.servers["main"].connection, ConnectionMode::Direct);
        assert_eq!(
            file.servers["pooled"].connection,
            ConnectionMode::TransactionPooler
        );
        let err = toml_err("connection = \"pgbouncer\"\n");
        assert!(
            err.starts_with("t.toml:3:") && err.contains("transaction_pooler"),
            "{err}"
        );
    }

    #[test]
    fn json_and_yaml_describe_the_same_file() {
        let json = r#"{"servers": {"main": {"url": "postgres://h/db"}},
            "tenants": {"a": {"model": "bridge", "schema": "a_{id}"}}}"#;
        let yaml = "servers:\n  main:\n    url: postgres://h/db\ntenants:\n  a:\n    model: bridge\n    schema: a_{id}\n";
        for (text, format) in [(json, Format::Json), (yaml, Format::Yaml)] {
            let file = TenantsFile::parse(text, format, "t").unwrap();
            assert!(matches!(
                &file.tenants[0].tenant.model,
                DataModel::Bridge { schema } if schema.as_str() == "a_a"
            ));
        }
    }

    #[test]
    fn templates_expand_with_the_uid_hash() {
        let mut body = String::new();
        for (id, uid) in [
            ("tenant-a", "4783eb5d-956e-4b58-a214-790fe7ef61ba"),
            ("tenant-b", "a79a8c37-9d0b-4b1d-a051-ba339eea6f21"),
            ("tenant-c", "a869f326-7d83-4d1f-8af1-aef8fb11e57f"),
        ] {
            body.push_str(&format!(
                "[tenants.{id}]\nuid = \"{uid}\"\nmodel = \"silo\"\ndatabase = \"tenant_{{hash}}\"\n\
                 [[tenants.{id}.users]]\nname = \"{{id}}_admin\"\nrole = \"admin\"\npassword_env = \"P\"\n"
            ));
        }
        let file = TenantsFile::parse(&format!("{HEAD}{body}"), Format::Toml, "t.toml").unwrap();
        let databases: Vec<String> = file
            .tenants
            .iter()
            .map(|t| match &t.tenant.model {
                DataModel::Silo { database, .. } => database.to_string(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            databases,
            ["tenant_af5042", "tenant_f09faf", "tenant_430e00"]
        );
        assert_eq!(file.tenants[1].users[0].name.as_str(), "tenant_b_admin");
    }

    /// Parses each case, (body after the 2-line head, expected "t.toml:LINE:COL: ..."
    /// prefix, reason), and expects its error to start there and give the reason.
    fn assert_each_error_names_line_and_reason(cases: &[(&str, &str, &str)]) {
        for (body, location, reason) in cases {
            let err = toml_err(body);
            assert!(
                err.starts_with(location),
                "{body:?}: expected {location} in {err}"
            );
            assert!(
                err.contains(reason),
                "{body:?}: expected {reason:?} in {err}"
            );
        }
    }

    #[test]
    fn every_unknown_or_malformed_field_names_the_file_line_and_reason() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.a]\nmodel = \"pool\"\ncolour = 1\n",
                "t.toml:5:1:",
                "unknown field `colour`",
            ),
            (
                "[tenant.a]\nmodel = \"pool\"\n",
                "t.toml:3:",
                "unknown field `tenant`",
            ),
            (
                "[tenants.a]\nmodel = \"lake\"\n",
                "t.toml:4:9:",
                "unknown variant `lake`",
            ),
            (
                "[tenants.a]\nuid = \"not a uid!\"\nmodel = \"pool\"\n",
                "t.toml:4:7:",
                "invalid uid",
            ),
            (
                "[tenants.a]\nmodel = \n",
                "t.toml:4:",
                "string values must be quoted",
            ),
        ]);
    }

    #[test]
    fn every_bad_tenant_id_or_object_name_names_the_file_line_and_reason() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.\"Bad_Id\"]\nmodel = \"pool\"\n",
                "t.toml:3:",
                "invalid tenant id",
            ),
            (
                "[tenants.Acme]\nmodel = \"pool\"\n",
                "t.toml:3:10:",
                "write \"acme\"",
            ),
            (
                "[tenants.a]\nmodel = \"bridge\"\nschema = \"Bad-Name\"\n",
                "t.toml:5:10:",
                "'B' may not appear",
            ),
            (
                "[tenants.a]\nmodel = \"bridge\"\nschema = \"x_{nope}\"\n",
                "t.toml:5:10:",
                "unknown placeholder {nope}",
            ),
            (
                "[tenants.a]\nmodel = \"silo\"\ndatabase = \"{hash}_x\"\n",
                "t.toml:5:1:",
                "has no uid",
            ),
            (
                "[tenants.a]\nmodel = \"silo\"\ndatabase = \"pg_x\"\n",
                "t.toml:5:1:",
                "reserved by PostgreSQL",
            ),
        ]);
    }

    #[test]
    fn a_name_declared_twice_is_an_error_where_it_repeats() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.a]\nmodel = \"silo\"\ndatabase = \"d\"\n[tenants.b]\nmodel = \"silo\"\ndatabase = \"d\"\n",
                "t.toml:8:1:",
                "database \"d\" is declared twice",
            ),
            (
                "[tenants.a]\nmodel = \"bridge\"\nschema = \"s\"\n[tenants.b]\nmodel = \"bridge\"\nschema = \"s\"\n",
                "t.toml:8:1:",
                "schema \"s\" is declared twice",
            ),
            (
                "[tenants.a]\nmodel = \"bridge\"\nschema = \"public\"\n",
                "t.toml:5:1:",
                "schema \"public\" is already declared",
            ),
            (
                "[tenants.a]\nmodel = \"silo\"\n[[tenants.a.users]]\nname = \"u\"\nrole = \"admin\"\npassword_env = \"P\"\n\
                 [[tenants.a.users]]\nname = \"u\"\nrole = \"customer\"\npassword_env = \"P\"\n",
                "t.toml:10:1:",
                "role \"u\" is declared twice",
            ),
        ]);
    }

    #[test]
    fn every_error_in_a_user_names_the_file_line_and_reason() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.a]\nmodel = \"silo\"\n[[tenants.a.users]]\nname = \"u\"\nrole = \"owner\"\npassword_env = \"P\"\n",
                "t.toml:7:8:",
                "unknown role \"owner\"",
            ),
            (
                "[tenants.a]\nmodel = \"silo\"\n[[tenants.a.users]]\nname = \"u\"\nrole = \"admin\"\npassword = \"hunter2\"\n",
                "t.toml:8:1:",
                "unknown field `password`",
            ),
            (
                "[tenants.a]\nmodel = \"pool\"\n[[tenants.a.users]]\nname = \"u\"\nrole = \"admin\"\npassword_env = \"P\"\n",
                "t.toml:5:13:",
                "pool tenants cannot have login users",
            ),
        ]);
    }

    #[test]
    fn every_error_in_a_model_server_or_shared_names_the_file_line_and_reason() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.a]\nmodel = \"bridge\"\ndatabase = \"d\"\n",
                "t.toml:5:1:",
                "a bridge tenant has no database",
            ),
            (
                "[tenants.a]\nmodel = \"silo\"\nserver = \"eu\"\n",
                "t.toml:5:1:",
                "unknown server \"eu\"",
            ),
            (
                "[shared]\npool_tables = [\"a.b.c\"]\n",
                "t.toml:4:",
                "pool table \"a.b.c\"",
            ),
            (
                "[shared]\nserver = \"eu\"\n",
                "t.toml:4:1:",
                "unknown server \"eu\"",
            ),
        ]);
    }

    #[test]
    fn a_server_needs_exactly_one_url_and_a_file_a_server() {
        let both = TenantsFile::parse(
            "[servers.main]\nurl = \"x\"\nurl_env = \"Y\"\n",
            Format::Toml,
            "t.toml",
        )
        .unwrap_err();
        assert!(
            both.to_string()
                .starts_with("t.toml:2:1: give url or url_env"),
            "{both}"
        );
        let none = TenantsFile::parse("[servers.main]\n", Format::Toml, "t.toml").unwrap_err();
        assert!(none.to_string().contains("needs url_env"), "{none}");
        let no_server =
            TenantsFile::parse("[tenants.a]\nmodel = \"pool\"\n", Format::Toml, "t.toml")
                .unwrap_err();
        assert!(
            no_server.to_string().contains("no servers declared"),
            "{no_server}"
        );
    }

    #[test]
    fn json_and_yaml_errors_carry_lines_too() {
        let json = "{\"servers\": {\"main\": {\"url\": \"x\"}},\n \"tenants\": {\"a\": {\"model\": \"pool\",\n \"colour\": 1}}}";
        let err = TenantsFile::parse(json, Format::Json, "t.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.json:3:") && err.contains("unknown field `colour`"),
            "{err}"
        );
        let yaml = "servers:\n  main:\n    url: x\ntenants:\n  a:\n    model: bridge\n    schema: s\n  b:\n    model: bridge\n    schema: s\n";
        let err = TenantsFile::parse(yaml, Format::Yaml, "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("t.yaml:10:") && err.contains("declared twice"),
            "{err}"
        );
    }

    fn fleet(files: &[(&str, &str)]) -> Result<TenantsFile, Error> {
        let root = std::env::temp_dir().join(format!(
            "tenants-fleet-{}-{}",
            std::process::id(),
            files.iter().map(|(p, _)| p.len()).sum::<usize>() * 1000 + files.len() + rand_suffix()
        ));
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let loaded = TenantsFile::load(&root);
        std::fs::remove_dir_all(&root).unwrap();
        loaded
    }

    fn rand_suffix() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    const ROOT: &str =
        "[servers.main]\nurl = \"postgres://h/db\"\n[shared]\nmigrations = \"migrations\"\n";

    #[test]
    fn a_directory_merges_root_and_team_files() {
        let file = fleet(&[
            ("shared.toml", ROOT),
            (
                "acme/tenants.toml",
                "[tenants.acme]\nmodel = \"bridge\"\n[tenants.acme-eu]\nmodel = \"silo\"\n",
            ),
            (
                "globex/globex.yaml",
                "tenants:\n  globex:\n    model: pool\n",
            ),
            ("notes/.hidden.toml", "not toml"),
        ])
        .unwrap();
        let ids: Vec<_> = file.tenants.iter().map(|t| t.tenant.id.as_str()).collect();
        assert_eq!(ids, ["acme", "acme-eu", "globex"]);
        assert!(file.tenants[0].origin.ends_with("acme/tenants.toml"));
        // Relative to the file that declares [shared]: the directory's root.
        let migrations = file.shared.migrations.unwrap();
        let root = migrations.parent().unwrap().file_name().unwrap();
        assert!(
            root.to_string_lossy().starts_with("tenants-fleet-"),
            "{migrations:?}"
        );
    }

    /// The error of a directory whose acme team file is `text`, beside a root, a
    /// platform file and the globex and acme-labs teams.
    fn acme_team_error(text: &str) -> String {
        fleet(&[
            (
                "root.toml",
                "[servers.main]\nurl = \"postgres://h/db\"\n\
                 [profiles.shared_db]\nmodel = \"silo\"\ndatabase = \"legacy\"\n",
            ),
            // Sorted after the team directories, read before them: its names
            // are the platform's, and the team file is the one at fault.
            (
                "zz-platform.toml",
                "[tenants.ledger]\nmodel = \"silo\"\ndatabase = \"acme_ledger\"\n",
            ),
            (
                "globex/g.toml",
                "[tenants.globex]\nuid = \"u-1\"\nmodel = \"silo\"\ndomains = [\"shop.globex.example\"]\n",
            ),
            ("acme-labs/l.toml", "[tenants.acme-labs]\nmodel = \"pool\"\n"),
            ("acme/t.toml", text),
        ])
        .unwrap_err()
        .to_string()
    }

    /// Expects each case, (the acme team's file, the reason, where in it; "" when
    /// the conflict is with another team's file, whichever comes first in path order
    /// names the other), refused for that reason.
    fn assert_each_acme_team_file_refused(cases: &[(&str, &str, &str)]) {
        for &(text, reason, location) in cases {
            let err = acme_team_error(text);
            assert!(
                err.contains(reason),
                "{text:?}: expected {reason:?} in {err}"
            );
            // The error names the team's file, where it went wrong, first.
            let (origin, _) = err.split_once(": ").unwrap();
            if location.is_empty() {
                assert!(origin.contains("globex/g.toml:"), "{err}");
                assert!(err.ends_with("acme/t.toml"), "{err}");
            } else {
                assert!(
                    origin.ends_with(&format!("acme/t.toml:{location}")),
                    "{text:?}: expected acme/t.toml:{location} in {err}"
                );
            }
        }
    }

    #[test]
    fn a_team_file_may_only_describe_its_own_tenants() {
        assert_each_acme_team_file_refused(&[
            (
                "[tenants.globex]\nmodel = \"pool\"\n",
                "may only declare tenant \"acme\" or tenants named \"acme-...\", not \"globex\"",
                "1:10",
            ),
            (
                "[tenants.acmex]\nmodel = \"pool\"\n",
                "not \"acmex\"",
                "1:10",
            ),
            (
                "[tenants.acme-labs-x]\nmodel = \"pool\"\n",
                "tenant \"acme-labs-x\" belongs to team directory \"acme-labs\"",
                "1:10",
            ),
            (
                "[servers.other]\nurl = \"x\"\n",
                "may not declare servers",
                "1:10",
            ),
            (
                "[shared]\npool_tables = [\"x\"]\n",
                "may not declare [shared]",
                "1:2",
            ),
            (
                "[profiles.mine]\nmodel = \"pool\"\n",
                "may not declare profiles",
                "1:11",
            ),
        ]);
    }

    /// Another tenant's objects, declared or not (yet).
    #[test]
    fn a_team_file_may_not_name_another_tenants_objects() {
        assert_each_acme_team_file_refused(&[
            (
                "[tenants.acme]\nmodel = \"silo\"\ndatabase = \"globex\"\n",
                "database \"globex\" is not named after tenant \"acme\"",
                "3:1",
            ),
            (
                "[tenants.acme]\nmodel = \"bridge\"\nschema = \"initech\"\n",
                "schema \"initech\" is not named after tenant \"acme\"",
                "3:1",
            ),
            (
                "[tenants.acme]\nmodel = \"bridge\"\nschema = \"acmeglobex\"\n",
                "schema \"acmeglobex\" is not named after",
                "3:1",
            ),
            (
                "[tenants.acme]\nmodel = \"bridge\"\n[[tenants.acme.users]]\nname = \"globex_reader\"\nrole = \"customer\"\npassword_env = \"P\"\n",
                "user \"globex_reader\" is not named after tenant \"acme\"",
                "4:1",
            ),
            (
                "[tenants.acme]\nmodel = \"bridge\"\n[[tenants.acme.users]]\nname = \"tenant_globex_admin\"\nrole = \"admin\"\npassword_env = \"P\"\n",
                "user \"tenant_globex_admin\" is not named after tenant \"acme\"",
                "4:1",
            ),
            (
                "[tenants.acme]\nmodel = \"silo\"\nprofile = \"shared_db\"\n",
                "database \"legacy\" (from profile \"shared_db\") is not named after tenant \"acme\"",
                "1:10",
            ),
            (
                "[tenants.acme]\nmodel = \"pool\"\nparent = \"globex\"\n",
                "may only name a parent of its own team, not \"globex\"",
                "3:1",
            ),
            (
                "[tenants.acme]\nmodel = \"pool\"\ndomains = [\"Shop.Globex.example\"]\n",
                "domain \"shop.globex.example\" is already declared in",
                "",
            ),
            (
                "[tenants.acme]\nuid = \"u-1\"\nmodel = \"pool\"\n",
                "uid \"u-1\" is already declared in",
                "",
            ),
            (
                "[tenants.acme]\nmodel = \"silo\"\ndatabase = \"acme_ledger\"\n",
                "database \"acme_ledger\" is already declared in",
                "3:1",
            ),
        ]);
    }

    /// Names after the team, its uid or {hash}, and a parent of the team, are the
    /// team's own.
    #[test]
    fn a_team_file_may_name_objects_after_its_team() {
        let own = fleet(&[
            ("root.toml", ROOT),
            (
                "acme/t.toml",
                "[tenants.acme]\nuid = \"4783eb5d-956e-4b58-a214-790fe7ef61ba\"\nmodel = \"bridge\"\n\
                 schema = \"tenant_{hash}\"\n[[tenants.acme.users]]\nname = \"acme_reader\"\n\
                 role = \"customer\"\npassword_env = \"P\"\n\
                 [tenants.acme-eu]\nmodel = \"silo\"\nparent = \"acme\"\n\
                 [tenants.acme-labs]\nmodel = \"silo\"\ndatabase = \"reports_acme\"\n",
            ),
        ])
        .unwrap();
        let names: Vec<String> = own
            .tenants
            .iter()
            .map(|t| match &t.tenant.model {
                DataModel::Bridge { schema } => schema.to_string(),
                DataModel::Silo { database, .. } => database.to_string(),
                DataModel::Pool => String::new(),
            })
            .collect();
        assert_eq!(names, ["tenant_af5042", "acme_eu", "reports_acme"]);
    }

    #[test]
    fn a_directory_refuses_a_tenant_or_shared_declared_in_two_files() {
        let twice = fleet(&[
            ("root.toml", ROOT),
            ("a.toml", "[tenants.x]\nmodel = \"pool\"\n"),
            ("b.toml", "[tenants.x]\nmodel = \"pool\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            twice.contains("b.toml:1:10: tenant \"x\" is already declared in"),
            "{twice}"
        );
        let shared_twice = fleet(&[("root.toml", ROOT), ("more.toml", "[shared]\n")])
            .unwrap_err()
            .to_string();
        assert!(
            shared_twice.contains("[shared] is already declared"),
            "{shared_twice}"
        );
    }

    #[test]
    fn profiles_are_declared_once_and_referenced_by_each_tenant() {
        let text = format!(
            "{HEAD}[servers.eu]\nurl = \"postgres://eu/app\"\n[shared]\nserver = \"main\"\n\
             [profiles.dedicated]\nmodel = \"silo\"\nserver = \"eu\"\ndatabase = \"tenant_{{hash}}\"\n\
             plan = \"enterprise\"\noptions.auth = {{ token_lifetime_secs = 900 }}\noptions.ui = {{ theme = \"dark\" }}\n\
             [profiles.standard]\nmodel = \"bridge\"\nschema = \"t_{{id}}\"\n\
             [tenants.tenant-a]\nuid = \"4783eb5d-956e-4b58-a214-790fe7ef61ba\"\nprofile = \"dedicated\"\n\
             [tenants.tenant-b]\nuid = \"a79a8c37-9d0b-4b1d-a051-ba339eea6f21\"\nprofile = \"dedicated\"\n\
             plan = \"custom\"\ndatabase = \"b_{{hash}}\"\noptions.ui = {{ theme = \"light\" }}\n\
             [tenants.tenant-c]\nprofile = \"dedicated\"\nmodel = \"bridge\"\n\
             [tenants.tenant-d]\nprofile = \"standard\"\n"
        );
        let file = TenantsFile::parse(&text, Format::Toml, "t.toml").unwrap();
        let [a, b, c, d] = &file.tenants[..] else {
            panic!("{:?}", file.tenants)
        };
        assert!(matches!(&a.tenant.model,
            DataModel::Silo { database, server: Some(s) } if database.as_str() == "tenant_af5042" && s == "eu"));
        assert_eq!(a.server, "eu");
        assert_eq!(a.tenant.plan.as_deref(), Some("enterprise"));
        assert_eq!(a.tenant.options["ui"]["theme"], "dark");
        assert_eq!(a.tenant.options["auth"]["token_lifetime_secs"], 900);
        // What the tenant sets wins; options merge section by section.
        assert!(matches!(&b.tenant.model,
            DataModel::Silo { database, .. } if database.as_str() == "b_f09faf"));
        assert_eq!(b.tenant.plan.as_deref(), Some("custom"));
        assert_eq!(b.tenant.options["ui"]["theme"], "light");
        assert_eq!(b.tenant.options["auth"]["token_lifetime_secs"], 900);
        // A profile's database and server are for silo tenants only.
        assert!(matches!(&c.tenant.model,
            DataModel::Bridge { schema } if schema.as_str() == "tenant_c"));
        assert_eq!(c.server, "main");
        assert!(matches!(&d.tenant.model,
            DataModel::Bridge { schema } if schema.as_str() == "t_tenant_d"));
    }

    #[test]
    fn every_error_in_a_profile_or_its_use_names_the_file_line_and_reason() {
        assert_each_error_names_line_and_reason(&[
            (
                "[tenants.a]\nprofile = \"nope\"\n",
                "t.toml:4:1:",
                "unknown profile \"nope\" (none is declared)",
            ),
            (
                "[profiles.p]\nmodel = \"pool\"\n[tenants.a]\nprofile = \"q\"\n",
                "t.toml:6:1:",
                "unknown profile \"q\" (declared: p)",
            ),
            (
                "[tenants.a]\nname = \"A\"\n",
                "t.toml:3:10:",
                "missing field `model`",
            ),
            (
                "[profiles.p]\nmodel = \"silo\"\nschema = \"x\"\n",
                "t.toml:5:1:",
                "a silo tenant has no schema: remove it from profile \"p\"",
            ),
            (
                "[profiles.p]\nmodel = \"silo\"\nserver = \"eu\"\n",
                "t.toml:5:1:",
                "unknown server \"eu\"",
            ),
            (
                "[profiles.p]\nmodel = \"silo\"\ncolour = 1\n",
                "t.toml:5:1:",
                "unknown field `colour`",
            ),
            (
                "[profiles.p]\nmodel = \"silo\"\ndatabase = \"tenant_{hash}\"\n[tenants.a]\nprofile = \"p\"\n",
                "t.toml:6:10:",
                "but the tenant has no uid (from profile \"p\")",
            ),
            (
                "[profiles.p]\nmodel = \"silo\"\ndatabase = \"same\"\n[tenants.a]\nprofile = \"p\"\n[tenants.b]\nprofile = \"p\"\n",
                "t.toml:8:10:",
                "database \"same\" is declared twice (from profile \"p\")",
            ),
        ]);
    }

    #[test]
    fn a_profile_declared_in_two_files_is_refused() {
        let twice = fleet(&[
            (
                "root.toml",
                &format!("{ROOT}[profiles.p]\nmodel = \"pool\"\n"),
            ),
            ("more.toml", "[profiles.p]\nmodel = \"bridge\"\n"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            twice.contains("root.toml:5:11: profile \"p\" is already declared in"),
            "{twice}"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics_the_parser(text in any::<String>()) {
            for format in [Format::Toml, Format::Json, Format::Yaml] {
                let _ = TenantsFile::parse(&text, format, "fuzz");
            }
        }

        #[test]
        fn mutated_files_never_panic_the_parser(
            cut in 0usize..400,
            insert in "[\\[\\]{}=\".a-z_\n -]{0,12}",
        ) {
            let base = format!(
                "{HEAD}[shared]\npool_tables = [\"todos\"]\n[tenants.a-b]\nuid = \"u-1\"\nmodel = \"silo\"\n\
                 database = \"db_{{hash}}\"\n[[tenants.a-b.users]]\nname = \"{{id}}_x\"\nrole = \"admin\"\npassword_env = \"P\"\n"
            );
            let mut at = cut.min(base.len());
            while !base.is_char_boundary(at) {
                at -= 1;
            }
            let text = format!("{}{insert}{}", &base[..at], &base[at..]);
            for format in [Format::Toml, Format::Json, Format::Yaml] {
                let _ = TenantsFile::parse(&text, format, "fuzz");
            }
        }
    }
}
