//! Path resolution of arbitrary request targets: never panics; the reported prefix
//! ends on a segment boundary.
#![no_main]

use http::Request;
use libfuzzer_sys::fuzz_target;
use tenants_core::resolve::{PathResolver, Resolver};

fuzz_target!(|data: &[u8]| {
    let Ok(uri) = http::Uri::try_from(data) else {
        return;
    };
    let Ok(request) = Request::get(uri).body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    for template in ["/t/{tenant}", "/{tenant}", "/{tenant}/api"] {
        let resolver = PathResolver::new(template).expect("valid template");
        if let Ok(Some(found)) = resolver.resolve(&parts) {
            let path = parts.uri.path();
            let len = found
                .path_prefix
                .expect("path resolvers report their prefix");
            assert!(path.is_char_boundary(len));
            assert!(path[len..].is_empty() || path[len..].starts_with('/'));
            let id = found.id().expect("by id");
            let matched = path[..len].to_ascii_lowercase();
            assert!(matched.ends_with(id.as_str()) || template.ends_with("/api"));
        }
    }
});
