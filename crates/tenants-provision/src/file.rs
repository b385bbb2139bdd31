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
}

impl fmt::Debug for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("app_role", &self.app_role)
            .field("template", &self.template)
            .field("connection", &self.connection)
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

// ---- the file as written ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    shared: Option<RawShared>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
}

/// `[profiles.<name>]`: where and how tenants that name this profile live, declared
/// once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    model: Option<Model>,
    server: Option<String>,
    schema: Option<NameTemplate>,
    database: Option<NameTemplate>,
    plan: Option<String>,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: Option<String>,
    url_env: Option<String>,
    app_role: Option<SqlIdent>,
    app_password_env: Option<String>,
    template: Option<SqlIdent>,
    connection: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShared {
    migrations: Option<PathBuf>,
    #[serde(default)]
    pool_tables: Vec<String>,
    #[serde(default)]
    schemas: Vec<SqlIdent>,
    server: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    uid: Option<Uid>,
    #[serde(default)]
    name: String,
    profile: Option<String>,
    model: Option<Model>,
    schema: Option<NameTemplate>,
    database: Option<NameTemplate>,
    server: Option<String>,
    plan: Option<String>,
    #[serde(default)]
    status: TenantStatus,
    parent: Option<TenantId>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Model {
    Pool,
    Bridge,
    Silo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: NameTemplate,
    role: Role,
    password_env: String,
}

/// A name template whose syntax was checked while reading.
struct NameTemplate(String);

impl<'de> Deserialize<'de> for NameTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        template::check(&text).map_err(serde::de::Error::custom)?;
        Ok(NameTemplate(text))
    }
}

struct Role(TenantRole);

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Role).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown role {text:?}: expected admin, developer or customer"
            ))
        })
    }
}

/// A tenant's stable unique id: 1 to 64 characters of `A-Z`, `a-z`, `0-9` and `-`.
struct Uid(String);

impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let valid = (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Uid(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid uid {text:?}: use 1 to 64 characters of A-Z, a-z, 0-9 and '-' (a UUID fits)"
            )))
        }
    }
}

// ---- sources and locations ----

/// One file's text, kept to put line numbers on errors found after parsing.
struct Source {
    origin: String,
    text: String,
    format: Format,
    /// For a file of a team directory, the team: the tenant id its tenants must
    /// equal or start with (`<team>-...`).
    team: Option<String>,
    dir: PathBuf,
}

/// A step of a path into a file: a key or an array index.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Source {
    fn error(
        &self,
        line: Option<usize>,
        column: Option<usize>,
        message: impl Into<String>,
    ) -> Error {
        Error::TenantsFile {
            origin: self.origin.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the value at `path`, located as well as the format allows.
    fn error_at(&self, path: &[Seg<'_>], message: impl Into<String>) -> Error {
        let offset = match self.format {
            Format::Toml => toml_offset(&self.text, path),
            Format::Json | Format::Yaml => scan_offset(&self.text, path),
        };
        match offset {
            Some(offset) => {
                let (line, column) = line_col(&self.text, offset);
                self.error(Some(line), Some(column), message)
            }
            None => self.error(None, None, message),
        }
    }

    fn parse(&self) -> Result<RawFile, Error> {
        match self.format {
            Format::Toml => toml::from_str(&self.text).map_err(|e| {
                let (line, column) = match e.span() {
                    Some(span) => {
                        let (l, c) = line_col(&self.text, span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                self.error(line, column, e.message().trim_end())
            }),
            Format::Json => serde_json::from_str(&self.text).map_err(|e| {
                let message = strip_position(&e.to_string());
                self.error(Some(e.line()), Some(e.column()), message)
            }),
            Format::Yaml => {
                if self.text.trim().is_empty() {
                    return Ok(RawFile::default());
                }
                serde_norway::from_str(&self.text).map_err(|e| {
                    let location = e.location();
                    let message = strip_position(&e.to_string());
                    self.error(
                        location.as_ref().map(|l| l.line()),
                        location.as_ref().map(|l| l.column()),
                        message,
                    )
                })
            }
        }
    }
}

/// Removes the " at line X column Y" a format appends, since the error shows it.
fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The exact offset of the key at `path` in a TOML document; for a key the
/// document does not hold (a value inherited from a profile), the offset of the
/// deepest key it does hold.
fn toml_offset(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut value: Option<&DeValue<'_>> = None;
    let mut span: Range<usize> = root.span();
    for seg in path {
        match (seg, value) {
            (Seg::Key(key), None) | (Seg::Key(key), Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(t)) = value {
                    table = t;
                }
                let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key) else {
                    return value.is_some().then_some(span.start);
                };
                span = k.span();
                value = Some(v.get_ref());
            }
            (Seg::Index(i), Some(DeValue::Array(items))) => {
                let item = items.get(*i)?;
                span = item.span();
                value = Some(item.get_ref());
            }
            _ => return Some(span.start),
        }
    }
    Some(span.start)
}

/// The offset of the key at `path` in JSON or YAML text, found by scanning for each
/// key in turn (`"key"` or `key:`); good enough for files written by people. A
/// key not found leaves the offset of the deepest key found.
fn scan_offset(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    let mut at = 0;
    let mut found = None;
    let mut skip = 0;
    for seg in path {
        match seg {
            Seg::Index(i) => skip = *i,
            Seg::Key(key) => {
                for _ in 0..=skip {
                    let quoted = format!("\"{key}\"");
                    let bare = format!("{key}:");
                    let Some(hit) = [text[at..].find(&quoted), text[at..].find(&bare)]
                        .into_iter()
                        .flatten()
                        .min()
                    else {
                        return found;
                    };
                    found = Some(at + hit);
                    at += hit + key.len();
                }
                skip = 0;
            }
        }
    }
    found
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

/// Everything declared so far, to find names declared twice.
#[derive(Default)]
struct Claims {
    /// `(what, name)` → the origin that declared it.
    names: HashMap<(&'static str, String), String>,
}

impl Claims {
    fn claim(&mut self, what: &'static str, name: &str, origin: &str) -> Result<(), String> {
        match self.names.get(&(what, name.to_owned())) {
            Some(first) if first == origin => Err(format!("{what} {name:?} is declared twice")),
            Some(first) => Err(format!("{what} {name:?} is already declared in {first}")),
            None => {
                self.names
                    .insert((what, name.to_owned()), origin.to_owned());
                Ok(())
            }
        }
    }
}

fn build(sources: &[Source]) -> Result<TenantsFile, Error> {
    let raws = sources
        .iter()
        .map(Source::parse)
        .collect::<Result<Vec<_>, _>>()?;

    // Servers and [shared]: root files only, each declared once.
    let mut servers = BTreeMap::new();
    let mut shared: Option<(&Source, &RawShared)> = None;
    let mut profiles = BTreeMap::new();
    let mut claims = Claims::default();
    for (source, raw) in sources.iter().zip(&raws) {
        if let Some(team) = &source.team {
            if let Some(name) = raw.servers.keys().next() {
                return Err(source.error_at(
                    &[Seg::Key("servers"), Seg::Key(name)],
                    format!(
                        "a file of team directory {team:?} may not declare servers: \
                         declare them once, in a file at the top of the directory"
                    ),
                ));
            }
            if raw.shared.is_some() {
                return Err(source.error_at(
                    &[Seg::Key("shared")],
                    format!(
                        "a file of team directory {team:?} may not declare [shared]: \
                         declare it once, in a file at the top of the directory"
                    ),
                ));
            }
            if let Some(name) = raw.profiles.keys().next() {
                return Err(source.error_at(
                    &[Seg::Key("profiles"), Seg::Key(name)],
                    format!(
                        "a file of team directory {team:?} may not declare profiles: \
                         declare them once, in a file at the top of the directory, and \
                         name one with profile = \"...\""
                    ),
                ));
            }
        }
        for (name, profile) in &raw.profiles {
            let at = [Seg::Key("profiles"), Seg::Key(name)];
            claims
                .claim("profile", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            profiles.insert(name.clone(), (source, profile));
        }
        for (name, server) in &raw.servers {
            let at = [Seg::Key("servers"), Seg::Key(name)];
            claims
                .claim("server", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            servers.insert(name.clone(), server_spec(source, name, server)?);
        }
        if let Some(this) = &raw.shared {
            if let Some((first, _)) = shared {
                return Err(source.error_at(
                    &[Seg::Key("shared")],
                    format!("[shared] is already declared in {}", first.origin),
                ));
            }
            shared = Some((source, this));
        }
    }

    let (shared_spec, default_server) = match shared {
        Some((source, raw)) => shared_spec(source, raw, &servers)?,
        None => (SharedSpec::default(), only_server(&servers)),
    };

    // Names that tenants may not take.
    for server in servers.values() {
        claims
            .claim(
                "database",
                &format!("{}/{}", server.name, server.template),
                "[servers]",
            )
            .ok();
        if let Some(app) = &server.app_role {
            claims.claim("role", app.as_str(), "[servers]").ok();
        }
    }
    for schema in ["public", "tenants"]
        .into_iter()
        .map(str::to_owned)
        .chain(shared_spec.schemas.iter().map(|s| s.to_string()))
    {
        claims.claim("schema", &schema, "[shared]").ok();
    }

    for (name, (source, profile)) in &profiles {
        check_profile(source, name, profile, &servers)?;
    }
    let teams = sources.iter().filter_map(|s| s.team.clone()).collect();
    let context = Context {
        servers: &servers,
        default_server: &default_server,
        profiles: &profiles,
        teams: &teams,
    };
    let mut tenants = Vec::new();
    for (source, raw) in sources.iter().zip(&raws) {
        for (key, tenant) in &raw.tenants {
            tenants.push(tenant_spec(source, key, tenant, &context, &mut claims)?);
        }
    }
    tenants.sort_by_key(|t| t.tenant.id);
    if servers.is_empty() {
        return Err(sources[0].error(
            None,
            None,
            "no servers declared: add [servers.<name>] with url_env = \"DATABASE_URL\"",
        ));
    }
    Ok(TenantsFile {
        servers,
        default_server,
        shared: shared_spec,
        tenants,
    })
}

fn only_server(servers: &BTreeMap<String, ServerSpec>) -> String {
    servers.keys().next().cloned().unwrap_or_default()
}

fn server_spec(source: &Source, name: &str, raw: &RawServer) -> Result<ServerSpec, Error> {
    let at = |key| [Seg::Key("servers"), Seg::Key(name), Seg::Key(key)];
    let url = match (&raw.url, &raw.url_env) {
        (Some(url), None) => UrlSource::Inline(url.clone()),
        (None, Some(var)) => UrlSource::Env(var.clone()),
        (Some(_), Some(_)) => {
            return Err(source.error_at(&at("url"), "give url or url_env, not both"));
        }
        (None, None) => {
            return Err(source.error_at(
                &[Seg::Key("servers"), Seg::Key(name)],
                format!(
                    "server {name:?} needs url_env = \"VARIABLE\" (or url = \"postgres://...\")"
                ),
            ));
        }
    };
    let template = match &raw.template {
        Some(t) => t.clone(),
        None => SqlIdent::new(DEFAULT_TEMPLATE).map_err(|e| Error::Config(e.to_string()))?,
    };
    let connection = match &raw.connection {
        Some(mode) => mode.parse().map_err(|e: UnknownConnectionMode| {
            source.error_at(&at("connection"), e.to_string())
        })?,
        None => ConnectionMode::Direct,
    };
    Ok(ServerSpec {
        name: name.to_owned(),
        url,
        app_role: raw.app_role.clone(),
        app_password_env: raw.app_password_env.clone(),
        app_password: None,
        template,
        connection,
    })
}

fn shared_spec(
    source: &Source,
    raw: &RawShared,
    servers: &BTreeMap<String, ServerSpec>,
) -> Result<(SharedSpec, String), Error> {
    let mut pool_tables = Vec::new();
    for (i, name) in raw.pool_tables.iter().enumerate() {
        let table = TableName::parse(name).map_err(|e| {
            source.error_at(
                &[Seg::Key("shared"), Seg::Key("pool_tables"), Seg::Index(i)],
                format!("pool table {name:?}: {e}"),
            )
        })?;
        if pool_tables.contains(&table) {
            return Err(source.error_at(
                &[Seg::Key("shared"), Seg::Key("pool_tables"), Seg::Index(i)],
                format!("pool table {table} is listed twice"),
            ));
        }
        pool_tables.push(table);
    }
    let default_server = match &raw.server {
        Some(name) if !servers.contains_key(name) => {
            return Err(source.error_at(
                &[Seg::Key("shared"), Seg::Key("server")],
                format!("unknown server {name:?}: declare [servers.{name}]"),
            ));
        }
        Some(name) => name.clone(),
        None if servers.len() > 1 => {
            return Err(source.error_at(
                &[Seg::Key("shared")],
                "several servers are declared: name the one holding the shared database \
                 with server = \"<name>\"",
            ));
        }
        None => only_server(servers),
    };
    let spec = SharedSpec {
        migrations: raw.migrations.as_ref().map(|dir| source.dir.join(dir)),
        pool_tables,
        schemas: raw.schemas.clone(),
    };
    Ok((spec, default_server))
}

/// What every tenant is checked against: the servers, the profiles and the team
/// directories.
struct Context<'a> {
    servers: &'a BTreeMap<String, ServerSpec>,
    default_server: &'a str,
    profiles: &'a BTreeMap<String, (&'a Source, &'a RawProfile)>,
    teams: &'a BTreeSet<String>,
}

impl Context<'_> {
    /// The team directory a tenant id belongs to: of the teams whose name is the id
    /// or starts it followed by `-`, the longest (`acme-labs-eu` is team
    /// `acme-labs`'s when there is one, else `acme`'s).
    fn owner(&self, id: &str) -> Option<&str> {
        self.teams
            .iter()
            .map(String::as_str)
            .filter(|team| owns(team, id))
            .max_by_key(|team| team.len())
    }
}

/// `true` when `id` is `team` or starts with `team-`.
fn owns(team: &str, id: &str) -> bool {
    id == team
        || id
            .strip_prefix(team)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// `true` when `word` appears in `name` between `_`s or the name's ends.
fn contains_word(name: &str, word: &str) -> bool {
    !word.is_empty()
        && name.match_indices(word).any(|(at, _)| {
            let before = name[..at].chars().next_back();
            let after = name[at + word.len()..].chars().next();
            before.is_none_or(|c| c == '_') && after.is_none_or(|c| c == '_')
        })
}

/// Checks a profile on its own: its server exists, and its schema or database
/// suits its model.
fn check_profile(
    source: &Source,
    name: &str,
    raw: &RawProfile,
    servers: &BTreeMap<String, ServerSpec>,
) -> Result<(), Error> {
    let at = |field: &'static str| [Seg::Key("profiles"), Seg::Key(name), Seg::Key(field)];
    if let Some(server) = &raw.server
        && !servers.contains_key(server)
    {
        return Err(source.error_at(
            &at("server"),
            format!("unknown server {server:?}: declare [servers.{server}]"),
        ));
    }
    let misplaced = match raw.model {
        Some(Model::Pool) if raw.schema.is_some() => Some(("schema", "pool")),
        Some(Model::Pool) if raw.database.is_some() => Some(("database", "pool")),
        Some(Model::Bridge) if raw.database.is_some() => Some(("database", "bridge")),
        Some(Model::Silo) if raw.schema.is_some() => Some(("schema", "silo")),
        _ => None,
    };
    if let Some((field, model)) = misplaced {
        return Err(source.error_at(
            &at(field),
            format!("a {model} tenant has no {field}: remove it from profile {name:?}"),
        ));
    }
    Ok(())
}

fn tenant_spec(
    source: &Source,
    key: &str,
    raw: &RawTenant,
    cx: &Context<'_>,
    claims: &mut Claims,
) -> Result<TenantSpec, Error> {
    let here = [Seg::Key("tenants"), Seg::Key(key)];
    let at = |field: &'static str| [Seg::Key("tenants"), Seg::Key(key), Seg::Key(field)];
    let id = TenantId::parse(key).map_err(|e| source.error_at(&here, e.to_string()))?;
    if id.as_str() != key {
        return Err(source.error_at(
            &here,
            format!("tenant ids are lowercase: write {:?}", id.as_str()),
        ));
    }
    if let Some(team) = &source.team {
        match cx.owner(key) {
            Some(owner) if owner == team => {}
            Some(owner) if owns(team, key) => {
                return Err(source.error_at(
                    &here,
                    format!(
                        "tenant {key:?} belongs to team directory {owner:?}: a file of team \
                         directory {team:?} may not declare it"
                    ),
                ));
            }
            _ => {
                return Err(source.error_at(
                    &here,
                    format!(
                        "a file of team directory {team:?} may only declare tenant {team:?} or \
                         tenants named \"{team}-...\", not {key:?}"
                    ),
                ));
            }
        }
        if let Some(parent) = &raw.parent
            && cx.owner(parent.as_str()) != Some(team.as_str())
        {
            return Err(source.error_at(
                &at("parent"),
                format!(
                    "a file of team directory {team:?} may only name a parent of its own \
                     team, not {:?}",
                    parent.as_str()
                ),
            ));
        }
    }
    claims
        .claim("tenant", key, &source.origin)
        .map_err(|m| source.error_at(&here, m))?;
    let uid = raw.uid.as_ref().map(|u| u.0.clone());
    if let Some(uid) = &uid {
        claims
            .claim("uid", uid, &source.origin)
            .map_err(|m| source.error_at(&at("uid"), m))?;
    }
    let names = Names {
        id: &id,
        uid: uid.as_deref(),
    };

    // The profile fills in what the tenant leaves unset.
    let profile = match &raw.profile {
        None => None,
        Some(name) => match cx.profiles.get(name) {
            Some((_, profile)) => Some((name.as_str(), *profile)),
            None => {
                let known: Vec<&str> = cx.profiles.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none is declared".to_owned()
                } else {
                    format!("declared: {}", known.join(", "))
                };
                return Err(source.error_at(
                    &at("profile"),
                    format!("unknown profile {name:?} ({known}): declare [profiles.{name}] in a root file"),
                ));
            }
        },
    };
    // " (from profile "p")" after a message about a value the profile gave.
    let from = |inherited: bool| match profile {
        Some((name, _)) if inherited => format!(" (from profile {name:?})"),
        _ => String::new(),
    };
    let kind = match (raw.model, profile.and_then(|(_, p)| p.model)) {
        (Some(model), _) | (None, Some(model)) => model,
        (None, None) => {
            return Err(source.error_at(
                &here,
                "missing field `model`: set model = \"pool\", \"bridge\" or \"silo\", or a \
                 profile that sets it",
            ));
        }
    };
    // A profile's schema is for bridge tenants, its database and server for silo ones.
    let schema = match (&raw.schema, profile) {
        (Some(own), _) => Some((own, false)),
        (None, Some((_, p))) if kind == Model::Bridge => p.schema.as_ref().map(|t| (t, true)),
        _ => None,
    };
    let database = match (&raw.database, profile) {
        (Some(own), _) => Some((own, false)),
        (None, Some((_, p))) if kind == Model::Silo => p.database.as_ref().map(|t| (t, true)),
        _ => None,
    };
    let inherited_schema = schema.is_some_and(|(_, inherited)| inherited);
    let inherited_database = database.is_some_and(|(_, inherited)| inherited);
    let named_server = raw.server.as_ref().or_else(|| {
        profile
            .and_then(|(_, p)| p.server.as_ref())
            .filter(|_| kind == Model::Silo)
    });
    let expand = |field: &'static str, (template, inherited_from): (&NameTemplate, bool)| {
        template::expand(&template.0, names)
            .map_err(|m| source.error_at(&at(field), m + &from(inherited_from)))
    };
    // In a team directory, every name must be the team's own: it names the team,
    // or the tenant's uid or {hash}.
    let own_name = |what: &str, name: &SqlIdent, at: &[Seg<'_>], inherited_from: bool| {
        let Some(team) = &source.team else {
            return Ok(());
        };
        let name = name.as_str();
        let own = contains_word(name, &team.replace('-', "_"))
            || uid.as_deref().is_some_and(|uid| {
                name.contains(&uid.to_ascii_lowercase().replace('-', "_"))
                    || name.contains(&template::uid_hash(uid))
            });
        if own {
            return Ok::<(), Error>(());
        }
        let from = from(inherited_from);
        let team_ = team.replace('-', "_");
        Err(source.error_at(
            at,
            format!(
                "{what} {name:?}{from} is not named after tenant {key:?}: a file of team \
                 directory {team:?} may only name objects after its team or the tenant's uid, \
                 such as \"{team_}_...\" or \"tenant_{{hash}}\""
            ),
        ))
    };

    let server = match named_server {
        Some(name) if !cx.servers.contains_key(name) => {
            return Err(source.error_at(
                &at("server"),
                format!("unknown server {name:?}: declare [servers.{name}]"),
            ));
        }
        Some(name) => name.clone(),
        None => cx.default_server.to_owned(),
    };
    let misplaced = |field: &'static str, model: &str| {
        source.error_at(
            &at(field),
            format!("a {model} tenant has no {field}: remove it"),
        )
    };
    let default_server = cx.default_server;
    let model = match kind {
        Model::Pool | Model::Bridge if server != default_server => {
            return Err(source.error_at(
                &at("server"),
                format!(
                    "pool and bridge tenants live in the shared database on server \
                     {default_server:?}; only silo tenants may name another server"
                ),
            ));
        }
        Model::Pool => {
            if raw.schema.is_some() {
                return Err(misplaced("schema", "pool"));
            }
            if raw.database.is_some() {
                return Err(misplaced("database", "pool"));
            }
            if !raw.users.is_empty() {
                return Err(source.error_at(
                    &at("users"),
                    "pool tenants cannot have login users: a user logged in to the \
                     shared database could set tenants.tenant_id and read other tenants' \
                     rows; use the bridge or silo model for tenants with database users",
                ));
            }
            DataModel::Pool
        }
        Model::Bridge => {
            if raw.database.is_some() {
                return Err(misplaced("database", "bridge"));
            }
            let schema = match schema {
                Some(t) => expand("schema", t)?,
                None => template::expand("{id}", names).map_err(|m| source.error_at(&here, m))?,
            };
            own_name("schema", &schema, &at("schema"), inherited_schema)?;
            claims
                .claim("schema", schema.as_str(), &source.origin)
                .map_err(|m| source.error_at(&at("schema"), m + &from(inherited_schema)))?;
            DataModel::Bridge { schema }
        }
        Model::Silo => {
            if raw.schema.is_some() {
                return Err(misplaced("schema", "silo"));
            }
            let database = match database {
                Some(t) => expand("database", t)?,
                None => template::expand("{id}", names).map_err(|m| source.error_at(&here, m))?,
            };
            own_name("database", &database, &at("database"), inherited_database)?;
            claims
                .claim("database", &format!("{server}/{database}"), &source.origin)
                .map_err(|m| {
                    let m = m.replacen(&format!("{server}/"), "", 1);
                    source.error_at(&at("database"), m + &from(inherited_database))
                })?;
            let server = (named_server.is_some() || cx.servers.len() > 1).then(|| server.clone());
            DataModel::Silo { database, server }
        }
    };

    let mut users = Vec::new();
    for role in TenantRole::ALL {
        claims
            .claim("role", role.role_name(&id).as_str(), &source.origin)
            .map_err(|m| source.error_at(&here, m))?;
    }
    for (i, user) in raw.users.iter().enumerate() {
        let at = [
            Seg::Key("tenants"),
            Seg::Key(key),
            Seg::Key("users"),
            Seg::Index(i),
            Seg::Key("name"),
        ];
        let name = template::expand(&user.name.0, names).map_err(|m| source.error_at(&at, m))?;
        own_name("user", &name, &at, false)?;
        claims
            .claim("role", name.as_str(), &source.origin)
            .map_err(|m| source.error_at(&at, m))?;
        if user.password_env.is_empty() {
            return Err(source.error_at(&at, "password_env must name a variable"));
        }
        users.push(UserSpec {
            name,
            role: user.role.0,
            password: Password::Env(user.password_env.clone()),
        });
    }

    let mut tenant = Tenant::new(id, model)
        .with_name(raw.name.clone())
        .with_status(raw.status);
    tenant.plan = raw
        .plan
        .clone()
        .or_else(|| profile.and_then(|(_, p)| p.plan.clone()));
    tenant.parent = raw.parent;
    for (i, domain) in raw.domains.iter().enumerate() {
        tenant = tenant.with_domain(domain);
        let at = [
            Seg::Key("tenants"),
            Seg::Key(key),
            Seg::Key("domains"),
            Seg::Index(i),
        ];
        let domain = tenant.domains.last().map_or("", String::as_str);
        claims
            .claim("domain", domain, &source.origin)
            .map_err(|m| source.error_at(&at, m))?;
    }
    let mut options = profile.map(|(_, p)| p.options.clone()).unwrap_or_default();
    options.extend(raw.options.clone());
    tenant.options = options;
    Ok(TenantSpec {
        tenant,
        uid,
        server,
        users,
        origin: source.origin.clone(),
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

    #[test]
    fn every_error_names_the_file_line_and_reason() {
        // (body after the 2-line head, expected "t.toml:LINE:COL: ..." prefix, reason)
        let cases: &[(&str, &str, &str)] = &[
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
            (
                "[tenants.a]\nuid = \"not a uid!\"\nmodel = \"pool\"\n",
                "t.toml:4:7:",
                "invalid uid",
            ),
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
            (
                "[tenants.a]\nmodel = \n",
                "t.toml:4:",
                "string values must be quoted",
            ),
        ];
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

    #[test]
    fn a_team_file_may_only_describe_its_own_tenants() {
        // (the acme team's file, the reason, where in it; "" when the conflict is
        // with another team's file, whichever comes first in path order names the
        // other)
        let cases: &[(&str, &str, &str)] = &[
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
            // Another tenant's objects, declared or not (yet).
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
        ];
        for (text, reason, location) in cases {
            let err = fleet(&[
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
            .to_string();
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
        // Names after the team, its uid or {hash}, and a parent of the team, are
        // the team's own.
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

        let cases: &[(&str, &str, &str)] = &[
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
        ];
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
