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

/// Behind `TenantLayer`, a warm hit allocates only what `http::Extensions` needs for its
/// first entry (its map): resolving, the catalog hit, the checks, the span decision
/// and the response future allocate nothing, with or without the task scope.
#[cfg(feature = "tower")]
#[test]
fn the_layer_adds_only_the_extension_map() {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use http::Response;
    use tenants::tower::TenantLayer;
    use tower::{Layer, Service, service_fn};

    fn ready<F: Future>(future: F) -> F::Output {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("a warm hit must not wait"),
        }
    }

    let catalog = Arc::new(CachedCatalog::new(
        StaticCatalog::new([Tenant::new("acme".parse().unwrap(), DataModel::Pool)]).unwrap(),
    ));
    let mut bare = service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    });
    let layer = TenantLayer::new(HeaderResolver::new("x-tenant-id"), catalog);
    let mut layered = layer.clone().layer(bare);
    let mut scoped = layer.task_scope(true).layer(bare);
    let request = || {
        Request::get("/todos")
            .header("x-tenant-id", "acme")
            .body(String::new())
            .unwrap()
    };
    // Warm the cache (the first lookup is a miss).
    assert_eq!(ready(layered.call(request())).unwrap().status(), 200);

    let count = |service: &mut dyn FnMut(Request<String>) -> u16| {
        let request = request();
        let mut status = 0;
        let allocations = allocations_during(|| status = service(request));
        assert_eq!(status, 200);
        allocations
    };
    let bare_count = count(&mut |r| ready(bare.call(r)).unwrap().status().as_u16());
    let layered_count = count(&mut |r| ready(layered.call(r)).unwrap().status().as_u16());
    let scoped_count = count(&mut |r| ready(scoped.call(r)).unwrap().status().as_u16());

    let tenant = Arc::new(Tenant::new("acme".parse().unwrap(), DataModel::Pool));
    let mut extensions = http::Extensions::new();
    let extension_map = allocations_during(|| drop(extensions.insert(tenant)));
    assert!(extension_map > 0, "the counter sees the map's allocations");

    assert_eq!(layered_count, bare_count + extension_map);
    assert_eq!(scoped_count, bare_count + extension_map);
}
