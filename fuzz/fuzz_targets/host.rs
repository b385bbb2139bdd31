//! Subdomain and custom-domain resolution of arbitrary Host headers: never panics; a
//! found tenant is the first label of a host under the base domain.
#![no_main]

use http::{HeaderValue, Request};
use libfuzzer_sys::fuzz_target;
use tenants_core::TenantKey;
use tenants_core::resolve::{CustomDomainResolver, Resolver, SubdomainResolver};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Ok(request) = Request::get("/").header("host", value).body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let host = String::from_utf8_lossy(data).to_ascii_lowercase();

    let subdomain = SubdomainResolver::new(["example.com", "eu.example.com"]);
    if let Ok(Some(found)) = subdomain.resolve(&parts) {
        let id = found.id().expect("subdomains name tenants by id");
        let rest = host
            .strip_prefix(id.as_str())
            .expect("the id is the first label");
        assert!(rest.starts_with(".example.com") || rest.starts_with(".eu.example.com"));
    }
    if let Ok(Some(found)) = CustomDomainResolver::new().resolve(&parts) {
        let TenantKey::Domain(domain) = found.key else {
            panic!("custom domains name tenants by domain")
        };
        assert!(host.starts_with(&*domain));
        assert!(!domain.is_empty() && domain.len() <= 253);
    }
});
