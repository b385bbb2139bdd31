//! The per-tenant database roles: admin, developer and customer.

use std::fmt;

use md5::{Digest, Md5};
use tenants_core::{SqlIdent, TenantId};

/// What a request may do to a tenant's tables, enforced by PostgreSQL grants.
///
/// Provisioning creates one group role per tenant and kind (see
/// [`role_name`](Self::role_name)) with exactly [`privileges`](Self::privileges) on the
/// tenant's tables; the router switches to it for a transaction with
/// `begin_as(&tenant, role)`, so what a role may not do is refused by the database,
/// not by an `if` in a handler.
///
/// # Examples
///
/// ```
/// use tenants_db::TenantRole;
///
/// let id = "building-shop".parse()?;
/// assert_eq!(TenantRole::Developer.role_name(&id).as_str(), "tenant_building_shop_developer");
/// assert_eq!(TenantRole::Customer.privileges(), ["SELECT"]);
/// assert_eq!("admin".parse::<TenantRole>()?, TenantRole::Admin);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TenantRole {
    /// Reads and writes everything: `SELECT`, `INSERT`, `UPDATE`, `DELETE`.
    Admin,
    /// Reads and writes but never deletes: `SELECT`, `INSERT`, `UPDATE`.
    Developer,
    /// Reads only: `SELECT`.
    Customer,
}

impl TenantRole {
    /// Every role, most privileged first.
    pub const ALL: [TenantRole; 3] = [
        TenantRole::Admin,
        TenantRole::Developer,
        TenantRole::Customer,
    ];

    /// The role's name as written in tenants files: `admin`, `developer`, `customer`.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantRole::Admin => "admin",
            TenantRole::Developer => "developer",
            TenantRole::Customer => "customer",
        }
    }

    /// The table privileges the role is granted, and no others.
    pub fn privileges(self) -> &'static [&'static str] {
        match self {
            TenantRole::Admin => &["SELECT", "INSERT", "UPDATE", "DELETE"],
            TenantRole::Developer => &["SELECT", "INSERT", "UPDATE"],
            TenantRole::Customer => &["SELECT"],
        }
    }

    /// The group role of this kind for `tenant`: `tenant_{id}_{role}`, with `-` written
    /// as `_`. Ids too long for PostgreSQL's 63-byte names keep their start and gain a
    /// hash of the whole id, so the name stays unique.
    pub fn role_name(self, tenant: &TenantId) -> SqlIdent {
        const PREFIX: &str = "tenant_";
        let id = tenant.as_str().replace('-', "_");
        let suffix = self.as_str();
        let fits = PREFIX.len() + id.len() + 1 + suffix.len() <= 63;
        let name = if fits {
            format!("{PREFIX}{id}_{suffix}")
        } else {
            let hash = Md5::digest(tenant.as_str().as_bytes());
            let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
            let keep = 63 - PREFIX.len() - 1 - hash.len() - 1 - suffix.len();
            format!("{PREFIX}{}_{hash}_{suffix}", &id[..keep])
        };
        // Tenant ids are a-z, 0-9 and '-', so the name is always a safe identifier.
        SqlIdent::new(name).unwrap_or_else(|e| unreachable!("{e}"))
    }

    /// `true` for a name [`role_name`](Self::role_name) gives some tenant's role:
    /// `tenant_…_admin`, `_developer` or `_customer`.
    ///
    /// ```
    /// use tenants_db::TenantRole;
    ///
    /// assert!(TenantRole::is_role_name("tenant_acme_eu_developer"));
    /// assert!(!TenantRole::is_role_name("tenant_acme_owner"));
    /// assert!(!TenantRole::is_role_name("app"));
    /// ```
    pub fn is_role_name(name: &str) -> bool {
        name.starts_with("tenant_")
            && TenantRole::ALL
                .iter()
                .any(|r| name.ends_with(&format!("_{}", r.as_str())))
    }
}

impl fmt::Display for TenantRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TenantRole {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantRole::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| {
                crate::Error::Config(format!(
                    "unknown role {s:?}: expected admin, developer or customer"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_get_distinct_valid_names() {
        let a: TenantId = format!("{}a", "x".repeat(62)).parse().unwrap();
        let b: TenantId = format!("{}b", "x".repeat(62)).parse().unwrap();
        for role in TenantRole::ALL {
            let (na, nb) = (role.role_name(&a), role.role_name(&b));
            assert!(na.as_str().len() <= 63, "{na}");
            assert!(na.as_str().ends_with(role.as_str()));
            assert_ne!(na, nb);
        }
    }

    #[test]
    fn roles_of_different_tenants_and_kinds_differ() {
        let a: TenantId = "a-b".parse().unwrap();
        let names: std::collections::HashSet<_> =
            TenantRole::ALL.iter().map(|r| r.role_name(&a)).collect();
        assert_eq!(names.len(), 3);
        assert!("owner".parse::<TenantRole>().is_err());
    }
}
