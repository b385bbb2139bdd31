//! Resolve the tenant from a request header.

use http::HeaderName;
use http::request::Parts;

use super::{Resolved, Resolver};
use crate::{Error, IdPolicy};

/// Resolves the tenant from a header such as `X-Tenant-Id`.
///
/// A header is only as trustworthy as whatever sets it: use it behind a proxy that
/// overwrites it, or combine it with a verified token through
/// [`ResolverExt::agree`](super::ResolverExt::agree). A repeated header is refused.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use tenants_core::resolve::{HeaderResolver, Resolver};
///
/// let resolver = HeaderResolver::new("x-tenant-id");
/// let (parts, ()) = Request::get("/").header("X-Tenant-Id", "Acme").body(())?.into_parts();
/// assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HeaderResolver {
    name: HeaderName,
    policy: IdPolicy,
}

impl HeaderResolver {
    /// A resolver reading the header `name` (any case).
    ///
    /// # Panics
    ///
    /// Panics when `name` is not a valid header name. The name is program text, not
    /// request input; use [`HeaderResolver::from_name`] to pass a checked name.
    pub fn new(name: &str) -> Self {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Self::from_name(name),
            Err(_) => panic!("HeaderResolver::new: {name:?} is not a valid header name"),
        }
    }

    /// A resolver reading the header `name`.
    pub fn from_name(name: HeaderName) -> Self {
        HeaderResolver {
            name,
            policy: IdPolicy::default(),
        }
    }

    /// Sets the id policy (reserved ids).
    pub fn id_policy(mut self, policy: IdPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The header this resolver reads.
    pub fn header_name(&self) -> &HeaderName {
        &self.name
    }
}

impl Resolver for HeaderResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let mut values = parts.headers.get_all(&self.name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Error::Ambiguous("tenant header"));
        }
        self.policy
            .parse_bytes(value.as_bytes())
            .map(|id| Some(Resolved::from_id(id)))
            .map_err(|rule| Error::invalid_id(&String::from_utf8_lossy(value.as_bytes()), rule))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Request};
    use proptest::prelude::*;

    fn resolve(values: &[&[u8]]) -> Result<Option<Resolved>, Error> {
        let mut builder = Request::get("/");
        for v in values {
            builder = builder.header("x-tenant-id", HeaderValue::from_bytes(v).unwrap());
        }
        let parts = builder.body(()).unwrap().into_parts().0;
        HeaderResolver::new("x-tenant-id").resolve(&parts)
    }

    #[test]
    fn reads_validates_and_refuses_repeats() {
        assert_eq!(resolve(&[b"ACME"]).unwrap().unwrap().id().unwrap(), "acme");
        assert_eq!(resolve(&[]).unwrap(), None);
        assert!(matches!(resolve(&[b""]), Err(Error::InvalidId { .. })));
        assert!(matches!(resolve(&[b"a b"]), Err(Error::InvalidId { .. })));
        assert!(matches!(
            resolve(&[b"\xff\xfe"]),
            Err(Error::InvalidId { .. })
        ));
        assert!(matches!(resolve(&[b"a", b"b"]), Err(Error::Ambiguous(_))));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if HeaderValue::from_bytes(&bytes).is_ok() {
                let _ = resolve(&[&bytes]);
            }
        }
    }
}
