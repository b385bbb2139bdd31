//! A fixed set of tenants, from code or a file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

use super::TenantCatalog;
use super::file;
use crate::{Error, Tenant, TenantId};

/// A catalog holding a fixed set of tenants in memory.
///
/// Build it in code with [`StaticCatalog::new`], or load it from a file whose
/// `[tenants.<id>]` tables are tenant records (TOML, JSON or YAML, by extension).
///
/// # Examples
///
/// ```
/// use tenants_core::{StaticCatalog, TenantCatalog};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tenants_core::Error> {
/// let catalog = StaticCatalog::from_toml_str(r#"
///     [tenants.acme]
///     name = "Acme"
///     model = "pool"
///     domains = ["shop.acme.test"]
///
///     [tenants.globex]
///     name = "Globex"
///     model = "silo"
///     database = "globex"
///     status = "suspended"
/// "#)?;
/// assert_eq!(catalog.get("acme".parse()?).await?.unwrap().name, "Acme");
/// assert_eq!(catalog.get_by_domain("shop.acme.test").await?.unwrap().id, "acme");
/// assert!(catalog.get("initech".parse()?).await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticCatalog {
    by_id: HashMap<TenantId, Arc<Tenant>>,
    by_domain: HashMap<String, Arc<Tenant>>,
}

impl StaticCatalog {
    /// A catalog of these tenants. Two tenants with the same id, or claiming the same
    /// domain, are an error.
    pub fn new(tenants: impl IntoIterator<Item = Tenant>) -> Result<Self, Error> {
        let mut catalog = StaticCatalog::default();
        for tenant in tenants {
            catalog.insert(tenant)?;
        }
        Ok(catalog)
    }

    fn insert(&mut self, mut tenant: Tenant) -> Result<(), Error> {
        let duplicate = |what: String| Error::InvalidCatalog {
            origin: "<static>".into(),
            message: what,
        };
        for domain in &mut tenant.domains {
            *domain = domain.trim_end_matches('.').to_ascii_lowercase();
        }
        let tenant = Arc::new(tenant);
        for domain in &tenant.domains {
            if let Some(other) = self.by_domain.insert(domain.clone(), tenant.clone()) {
                return Err(duplicate(format!(
                    "domain {domain:?} is claimed by tenants {} and {}",
                    other.id, tenant.id
                )));
            }
        }
        if self.by_id.insert(tenant.id, tenant.clone()).is_some() {
            return Err(duplicate(format!("tenant {} is listed twice", tenant.id)));
        }
        Ok(())
    }

    /// Loads a catalog from a file; the format follows the extension (`.toml`, `.json`,
    /// `.yaml`/`.yml`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        Self::new(file::load_path(path)?).map_err(|e| file::with_origin(e, path))
    }

    /// Parses a catalog from TOML text.
    #[cfg(feature = "toml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "toml")))]
    pub fn from_toml_str(text: &str) -> Result<Self, Error> {
        Self::new(file::parse(text, file::Format::Toml, "<inline toml>")?)
    }

    /// Parses a catalog from JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, Error> {
        Self::new(file::parse(text, file::Format::Json, "<inline json>")?)
    }

    /// Parses a catalog from YAML text.
    #[cfg(feature = "yaml")]
    #[cfg_attr(docsrs, doc(cfg(feature = "yaml")))]
    pub fn from_yaml_str(text: &str) -> Result<Self, Error> {
        Self::new(file::parse(text, file::Format::Yaml, "<inline yaml>")?)
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// `true` when the catalog holds no tenant.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The tenants, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.by_id.values()
    }
}

#[async_trait]
impl TenantCatalog for StaticCatalog {
    async fn get(&self, id: TenantId) -> Result<Option<Arc<Tenant>>, Error> {
        Ok(self.by_id.get(&id).cloned())
    }

    fn get_now(&self, id: TenantId) -> Option<Option<Arc<Tenant>>> {
        Some(self.by_id.get(&id).cloned())
    }

    async fn get_by_domain(&self, domain: &str) -> Result<Option<Arc<Tenant>>, Error> {
        Ok(self.by_domain.get(domain).cloned())
    }

    fn get_now_by_domain(&self, domain: &str) -> Option<Option<Arc<Tenant>>> {
        Some(self.by_domain.get(domain).cloned())
    }

    async fn list(&self) -> Result<Vec<Arc<Tenant>>, Error> {
        let mut all: Vec<_> = self.by_id.values().cloned().collect();
        all.sort_by_key(|t| t.id);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DataModel;

    fn tenant(id: &str) -> Tenant {
        Tenant::new(id.parse().unwrap(), DataModel::Pool)
    }

    #[tokio::test]
    async fn lookups_by_id_domain_and_list() {
        let catalog =
            StaticCatalog::new([tenant("b").with_domain("Shop.B.test."), tenant("a")]).unwrap();
        assert_eq!(catalog.len(), 2);
        assert_eq!(
            catalog
                .get_by_domain("shop.b.test")
                .await
                .unwrap()
                .unwrap()
                .id,
            "b"
        );
        let ids: Vec<_> = catalog.list().await.unwrap().iter().map(|t| t.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(catalog.get("c".parse().unwrap()).await.unwrap().is_none());
    }

    #[test]
    fn duplicates_are_errors() {
        assert!(StaticCatalog::new([tenant("a"), tenant("a")]).is_err());
        let err = StaticCatalog::new([
            tenant("a").with_domain("x.test"),
            tenant("b").with_domain("X.test"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("x.test"), "{err}");
    }
}
