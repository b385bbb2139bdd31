//! Roles: the names of the tenants' group roles.

use tenants_db::TenantRole;

/// `true` for the name of any tenant's group role (`tenant_{id}_{admin|developer|customer}`,
/// [`TenantRole::role_name`]).
pub(crate) fn is_tenant_role(name: &str) -> bool {
    name.starts_with("tenant_")
        && TenantRole::ALL
            .iter()
            .any(|r| name.ends_with(&format!("_{}", r.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_role_names_are_recognised() {
        assert!(is_tenant_role("tenant_a_b_developer"));
        assert!(!is_tenant_role("tenant_a_owner"));
        assert!(!is_tenant_role("app"));
    }
}
