//! The request path allocates nothing on a warm cache: resolving the tenant from a
//! header, subdomain or path and reading it from a `CachedCatalog` hit only clones an
//! `Arc`.

use http::Request;
use tenants::resolve::{
    CustomDomainResolver, HeaderResolver, PathResolver, Resolver, SubdomainResolver,
};
use tenants::{CachedCatalog, DataModel, StaticCatalog, Tenant, TenantCatalog};

fn allocations_during(f: impl FnOnce()) -> u64 {
    allocation_counter::measure(f).count_total
}

#[test]
fn warm_hit_path_allocates_nothing() {
    let catalog = CachedCatalog::new(
        StaticCatalog::new([Tenant::new("acme".parse().unwrap(), DataModel::Pool)]).unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(catalog.get("acme".parse().unwrap())).unwrap();

    let header = HeaderResolver::new("x-tenant-id");
    let subdomain = SubdomainResolver::new(["example.com"]);
    let path = PathResolver::new("/t/{tenant}").unwrap();
    let request = Request::get("/t/acme/todos")
        .header("host", "acme.example.com:443")
        .header("x-tenant-id", "acme")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();

    for resolver in [&header as &dyn Resolver, &subdomain, &path] {
        let mut found = None;
        let count = allocations_during(|| {
            let id = resolver.resolve(&parts).unwrap().unwrap().id().unwrap();
            found = catalog.get_now(id).unwrap();
        });
        assert_eq!(found.unwrap().id, "acme");
        assert_eq!(count, 0, "{resolver:p} allocated on the hit path");
    }

    // The counter does see allocations: a custom-domain lookup copies the host.
    let custom = CustomDomainResolver::new();
    assert!(allocations_during(|| drop(custom.resolve(&parts))) > 0);
}
