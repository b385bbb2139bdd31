//! The [`Tenant`] record: who a tenant is, where its data lives, and its options.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, TenantId};

/// A tenant as the catalog knows it.
///
/// The record is plain data (serde), so it can come from a file, a `tenants` table or
/// code. Its [`model`](Tenant::model) says where the tenant's rows live, so moving a
/// tenant from the shared pool to its own database is a data copy plus a record change.
///
/// # Examples
///
/// ```
/// use tenants_core::{DataModel, Tenant, TenantId, TenantStatus};
///
/// let tenant: Tenant = serde_json::from_value(serde_json::json!({
///     "id": "acme",
///     "name": "Acme Corp",
///     "model": "bridge",
///     "schema": "acme",
///     "plan": "professional",
///     "domains": ["shop.acme.example"],
///     "options": { "branding": { "color": "#ff0000" } }
/// }))?;
/// assert_eq!(tenant.id, "acme");
/// assert_eq!(tenant.status, TenantStatus::Active);
/// assert!(matches!(tenant.model, DataModel::Bridge { .. }));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Tenant {
    /// The validated id.
    pub id: TenantId,
    /// Display name; empty when unset.
    #[serde(default)]
    pub name: String,
    /// Lifecycle status; [`TenantStatus::Active`] when unset.
    #[serde(default)]
    pub status: TenantStatus,
    /// Where the tenant's data lives. In serialized form this is the `model` key plus the
    /// model's own keys (`schema`, `database`, `server`) at the record's top level.
    #[serde(flatten)]
    pub model: DataModel,
    /// Commercial plan (e.g. `free`, `professional`), used for limits and tiering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The tenant this one belongs to, for sub-tenants (an application tenant under a
    /// customer tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TenantId>,
    /// Custom domains that resolve to this tenant (full host names, lowercase).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Per-tenant option sections, read with [`Tenant::options`].
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl Tenant {
    /// An active tenant with the given id and data model and nothing else set.
    pub fn new(id: TenantId, model: DataModel) -> Self {
        Tenant {
            id,
            name: String::new(),
            status: TenantStatus::Active,
            model,
            plan: None,
            parent: None,
            domains: Vec::new(),
            options: serde_json::Map::new(),
        }
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: TenantStatus) -> Self {
        self.status = status;
        self
    }

    /// Sets the plan.
    pub fn with_plan(mut self, plan: impl Into<String>) -> Self {
        self.plan = Some(plan.into());
        self
    }

    /// Sets the parent tenant.
    pub fn with_parent(mut self, parent: TenantId) -> Self {
        self.parent = Some(parent);
        self
    }

    /// Adds a custom domain (stored lowercase, without a trailing dot).
    pub fn with_domain(mut self, domain: impl AsRef<str>) -> Self {
        self.domains
            .push(domain.as_ref().trim_end_matches('.').to_ascii_lowercase());
        self
    }

    /// Sets an option section from any serializable value.
    pub fn with_options<T: OptionsSection + Serialize>(mut self, options: &T) -> Self {
        if let Ok(value) = serde_json::to_value(options) {
            self.options.insert(T::SECTION.to_owned(), value);
        }
        self
    }

    /// `true` when the tenant may serve requests.
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }

    /// Deserializes the tenant's options section `T::SECTION` into `T`.
    ///
    /// A missing section deserializes from an empty table, so a `T` whose fields all
    /// have serde defaults gets its defaults.
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::Deserialize;
    /// use tenants_core::{DataModel, OptionsSection, Tenant};
    ///
    /// #[derive(Deserialize)]
    /// struct Auth {
    ///     #[serde(default = "default_lifetime")]
    ///     token_lifetime_secs: u64,
    /// }
    /// fn default_lifetime() -> u64 { 3600 }
    /// impl OptionsSection for Auth {
    ///     const SECTION: &'static str = "auth";
    /// }
    ///
    /// let tenant = Tenant::new("acme".parse()?, DataModel::Pool);
    /// assert_eq!(tenant.options::<Auth>()?.token_lifetime_secs, 3600);
    /// # Ok::<(), tenants_core::Error>(())
    /// ```
    pub fn options<T: OptionsSection>(&self) -> Result<T, Error> {
        let invalid = |e: serde_json::Error| Error::InvalidOptions {
            tenant: self.id,
            section: T::SECTION,
            message: e.to_string(),
        };
        match self.options.get(T::SECTION) {
            Some(value) => T::deserialize(value).map_err(invalid),
            None => {
                T::deserialize(serde_json::Value::Object(serde_json::Map::new())).map_err(invalid)
            }
        }
    }
}

/// A typed section of a tenant's options, read with [`Tenant::options`].
pub trait OptionsSection: DeserializeOwned {
    /// The key of the section in the tenant's `options` table.
    const SECTION: &'static str;
}

/// Lifecycle status of a tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// Serves requests.
    #[default]
    Active,
    /// Known but refused (e.g. unpaid); the layer answers 403.
    Suspended,
    /// Removed; the layer answers as for an unknown tenant (404).
    Deleted,
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Deleted => "deleted",
        })
    }
}

/// Where a tenant's data lives (the names follow the AWS SaaS tenant-isolation guidance).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum DataModel {
    /// Shared tables with a `tenant_id` column, isolated by row-level security.
    Pool,
    /// A schema of its own in a shared database.
    Bridge {
        /// The tenant's schema.
        schema: SqlIdent,
    },
    /// A database of its own, possibly on another server.
    Silo {
        /// The tenant's database.
        database: SqlIdent,
        /// Name of the server holding the database; the router's default when unset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<String>,
    },
}

impl DataModel {
    /// The model's name as written in files: `pool`, `bridge` or `silo`.
    pub fn name(&self) -> &'static str {
        match self {
            DataModel::Pool => "pool",
            DataModel::Bridge { .. } => "bridge",
            DataModel::Silo { .. } => "silo",
        }
    }
}

/// A database, schema or role name that is safe to use as a PostgreSQL identifier.
///
/// Rules: 1 to 63 bytes, starting with `a-z` or `_`, then `a-z`, `0-9` or `_`, and not
/// starting with `pg_` (reserved by PostgreSQL). Such a name never needs quoting and
/// means the same thing quoted or not; SQL built from it still quotes it
/// ([`SqlIdent::quoted`]).
///
/// # Examples
///
/// ```
/// use tenants_core::SqlIdent;
///
/// let schema = SqlIdent::new("hardware_store")?;
/// assert_eq!(schema.quoted(), "\"hardware_store\"");
/// assert!(SqlIdent::new("x\"; drop table t; --").is_err());
/// # Ok::<(), tenants_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SqlIdent(String);

impl SqlIdent {
    /// Validates `name` as a safe identifier.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        match Self::check(&name) {
            Ok(()) => Ok(SqlIdent(name)),
            Err(reason) => Err(Error::Config(format!(
                "{name:?} is not a safe SQL identifier: {reason}"
            ))),
        }
    }

    fn check(name: &str) -> Result<(), &'static str> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 63 {
            return Err("it must be 1 to 63 bytes long");
        }
        if !matches!(bytes[0], b'a'..=b'z' | b'_') {
            return Err("it must start with a-z or '_'");
        }
        if !bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        {
            return Err("it may only contain a-z, 0-9 and '_'");
        }
        if name.starts_with("pg_") {
            return Err("names starting with 'pg_' are reserved by PostgreSQL");
        }
        Ok(())
    }

    /// The bare name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier, ready to splice into a statement.
    pub fn quoted(&self) -> String {
        // The rules above exclude '"', so no escaping is needed; quote anyway.
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for SqlIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SqlIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for SqlIdent {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for SqlIdent {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SqlIdent::new(s)
    }
}

impl<'de> Deserialize<'de> for SqlIdent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        SqlIdent::new(name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn silo_and_pool_records_deserialize() {
        let silo: Tenant = serde_json::from_value(json!({
            "id": "building-shop", "model": "silo", "database": "building_shop", "server": "eu"
        }))
        .unwrap();
        assert_eq!(
            silo.model,
            DataModel::Silo {
                database: SqlIdent::new("building_shop").unwrap(),
                server: Some("eu".into())
            }
        );
        let pool: Tenant =
            serde_json::from_value(json!({"id": "a", "model": "pool", "status": "suspended"}))
                .unwrap();
        assert_eq!(pool.model, DataModel::Pool);
        assert!(!pool.is_active());
        let back: Tenant = serde_json::from_value(serde_json::to_value(&silo).unwrap()).unwrap();
        assert_eq!(back, silo);
    }

    #[test]
    fn unsafe_schema_names_are_refused_when_loading() {
        for schema in [
            "Hardware",
            "a-b",
            "x\"y",
            "pg_catalog",
            "1abc",
            "",
            &"a".repeat(64),
        ] {
            let err = serde_json::from_value::<Tenant>(
                json!({"id": "a", "model": "bridge", "schema": schema}),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("not a safe SQL identifier"),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_ids_and_models_are_refused() {
        assert!(serde_json::from_value::<Tenant>(json!({"id": "A B", "model": "pool"})).is_err());
        assert!(serde_json::from_value::<Tenant>(json!({"id": "a", "model": "lake"})).is_err());
        assert!(serde_json::from_value::<Tenant>(json!({"id": "a"})).is_err());
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Limits {
        rps: u32,
    }
    impl OptionsSection for Limits {
        const SECTION: &'static str = "limits";
    }

    #[test]
    fn typed_options_round_trip_and_report_errors() {
        let tenant =
            Tenant::new("a".parse().unwrap(), DataModel::Pool).with_options(&Limits { rps: 7 });
        assert_eq!(tenant.options::<Limits>().unwrap(), Limits { rps: 7 });

        let mut broken = tenant.clone();
        broken
            .options
            .insert("limits".into(), json!({"rps": "many"}));
        let err = broken.options::<Limits>().unwrap_err().to_string();
        assert!(
            err.contains("[limits]") && err.contains("tenant a"),
            "{err}"
        );

        let missing = Tenant::new("b".parse().unwrap(), DataModel::Pool);
        assert!(missing.options::<Limits>().is_err(), "rps has no default");
    }
}
