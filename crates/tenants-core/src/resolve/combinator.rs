//! Resolver combinators: first match, agreement, fixed tenant, closures.

use std::fmt;

use http::request::Parts;

use super::{Resolved, Resolver};
use crate::{Error, TenantId};

/// Combinators for every [`Resolver`].
pub trait ResolverExt: Resolver + Sized {
    /// Tries `self`, then `next` when `self` finds no tenant. An error from `self` is
    /// returned as is: a malformed tenant is never replaced by another resolver's answer.
    fn or<R: Resolver>(self, next: R) -> FirstMatch<Self, R> {
        FirstMatch {
            first: self,
            second: next,
        }
    }

    /// Runs both resolvers; when both find a tenant, they must find the same one, or the
    /// request is refused with [`Error::Disagree`]. When only one finds a tenant, its
    /// answer stands. Use it to check a header against a verified token.
    ///
    /// Path prefixes and tokens found by either side are kept.
    fn agree<R: Resolver>(self, other: R) -> Agree<Self, R> {
        Agree {
            first: self,
            second: other,
        }
    }
}

impl<R: Resolver> ResolverExt for R {}

/// First-match chain built by [`ResolverExt::or`].
#[derive(Debug, Clone)]
pub struct FirstMatch<A, B> {
    first: A,
    second: B,
}

impl<A: Resolver, B: Resolver> Resolver for FirstMatch<A, B> {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        match self.first.resolve(parts)? {
            Some(found) => Ok(Some(found)),
            None => self.second.resolve(parts),
        }
    }
}

/// Agreement check built by [`ResolverExt::agree`].
#[derive(Debug, Clone)]
pub struct Agree<A, B> {
    first: A,
    second: B,
}

impl<A: Resolver, B: Resolver> Resolver for Agree<A, B> {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let first = self.first.resolve(parts)?;
        let second = self.second.resolve(parts)?;
        match (first, second) {
            (Some(a), Some(b)) => {
                if a.key != b.key {
                    return Err(Error::Disagree {
                        first: a.key.to_string(),
                        second: b.key.to_string(),
                    });
                }
                Ok(Some(Resolved {
                    key: a.key,
                    path_prefix: a.path_prefix.or(b.path_prefix),
                    token: a.token.or(b.token),
                }))
            }
            (found, None) | (None, found) => Ok(found),
        }
    }
}

/// Always resolves to the same tenant: single-tenant deployments, tests, and central
/// routes that act for one tenant.
///
/// # Examples
///
/// ```
/// use tenants_core::resolve::{Fixed, Resolver};
///
/// let resolver = Fixed::new("acme".parse()?);
/// let (parts, ()) = http::Request::get("/").body(())?.into_parts();
/// assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fixed(TenantId);

impl Fixed {
    /// A resolver that always answers `id`.
    pub fn new(id: TenantId) -> Self {
        Fixed(id)
    }
}

impl Resolver for Fixed {
    fn resolve(&self, _: &Parts) -> Result<Option<Resolved>, Error> {
        Ok(Some(Resolved::from_id(self.0)))
    }
}

/// A resolver made from a closure, built by [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

/// Makes a resolver from a closure over the request head.
///
/// # Examples
///
/// ```
/// use tenants_core::{TenantId, resolve::{Resolved, Resolver, from_fn}};
///
/// // The tenant is the first query parameter `tenant=`.
/// let resolver = from_fn(|parts: &http::request::Parts| {
///     let Some(query) = parts.uri.query() else { return Ok(None) };
///     match query.split('&').find_map(|kv| kv.strip_prefix("tenant=")) {
///         Some(value) => Ok(Some(Resolved::from_id(TenantId::parse(value)?))),
///         None => Ok(None),
///     }
/// });
/// let (parts, ()) = http::Request::get("/?tenant=acme").body(())?.into_parts();
/// assert_eq!(resolver.resolve(&parts)?.unwrap().id().unwrap(), "acme");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_fn<F>(f: F) -> FromFn<F>
where
    F: Fn(&Parts) -> Result<Option<Resolved>, Error> + Send + Sync,
{
    FromFn(f)
}

impl<F> Resolver for FromFn<F>
where
    F: Fn(&Parts) -> Result<Option<Resolved>, Error> + Send + Sync,
{
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        (self.0)(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::{HeaderResolver, PathResolver};
    use http::Request;

    fn parts(uri: &str, header: Option<&str>) -> Parts {
        let mut b = Request::get(uri);
        if let Some(h) = header {
            b = b.header("x-tenant-id", h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn first_match_falls_through_only_on_no_tenant() {
        let chain =
            HeaderResolver::new("x-tenant-id").or(PathResolver::new("/t/{tenant}").unwrap());
        let found = chain.resolve(&parts("/t/b", Some("a"))).unwrap().unwrap();
        assert_eq!(found.id().unwrap(), "a");
        let found = chain.resolve(&parts("/t/b", None)).unwrap().unwrap();
        assert_eq!(found.id().unwrap(), "b");
        assert_eq!(found.path_prefix, Some(4));
        assert!(chain.resolve(&parts("/t/b", Some("bad id"))).is_err());
        assert_eq!(chain.resolve(&parts("/", None)).unwrap(), None);
    }

    #[test]
    fn agree_refuses_two_different_tenants() {
        let both =
            HeaderResolver::new("x-tenant-id").agree(PathResolver::new("/t/{tenant}").unwrap());
        let found = both.resolve(&parts("/t/a/x", Some("a"))).unwrap().unwrap();
        assert_eq!(
            (found.id().unwrap().as_str(), found.path_prefix),
            ("a", Some(4))
        );
        assert!(matches!(
            both.resolve(&parts("/t/a/x", Some("b"))),
            Err(Error::Disagree { .. })
        ));
        assert_eq!(
            both.resolve(&parts("/t/a", None))
                .unwrap()
                .unwrap()
                .id()
                .unwrap(),
            "a"
        );
        assert_eq!(
            both.resolve(&parts("/", Some("b")))
                .unwrap()
                .unwrap()
                .id()
                .unwrap(),
            "b"
        );
        assert_eq!(both.resolve(&parts("/", None)).unwrap(), None);
    }

    #[test]
    fn fixed_and_closures() {
        let fixed = Fixed::new("a".parse().unwrap());
        assert_eq!(
            fixed
                .resolve(&parts("/", None))
                .unwrap()
                .unwrap()
                .id()
                .unwrap(),
            "a"
        );
        let never = from_fn(|_: &Parts| Ok(None));
        let chain = never.or(fixed);
        assert_eq!(
            chain
                .resolve(&parts("/", None))
                .unwrap()
                .unwrap()
                .id()
                .unwrap(),
            "a"
        );
        let boxed: Box<dyn Resolver> = Box::new(chain);
        assert!(boxed.resolve(&parts("/", None)).unwrap().is_some());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A tenant id, or none, or a malformed one.
        fn named() -> impl Strategy<Value = Option<String>> {
            prop_oneof![
                Just(None),
                "[a-c]".prop_map(Some),
                Just(Some("bad_id".to_owned())),
            ]
        }

        fn request(header: &Option<String>, path: &Option<String>) -> Parts {
            let uri = match path {
                Some(p) => format!("/t/{p}/x"),
                None => "/x".to_owned(),
            };
            parts(&uri, header.as_deref())
        }

        fn valid(s: &Option<String>) -> bool {
            s.as_deref().is_some_and(|s| s != "bad_id")
        }

        proptest! {
            #[test]
            fn or_takes_the_first_answer_and_never_hides_an_error(header in named(), path in named()) {
                let chain = HeaderResolver::new("x-tenant-id").or(PathResolver::new("/t/{tenant}").unwrap());
                let got = chain.resolve(&request(&header, &path));
                match (&header, &path) {
                    (Some(h), _) if valid(&header) => prop_assert_eq!(got.unwrap().unwrap().id().unwrap(), h.as_str()),
                    (Some(_), _) => prop_assert!(got.is_err(), "a malformed first answer is an error"),
                    (None, Some(p)) if valid(&path) => prop_assert_eq!(got.unwrap().unwrap().id().unwrap(), p.as_str()),
                    (None, Some(_)) => prop_assert!(got.is_err()),
                    (None, None) => prop_assert_eq!(got.unwrap(), None),
                }
            }

            #[test]
            fn agree_answers_only_when_no_side_contradicts(header in named(), path in named()) {
                let both = HeaderResolver::new("x-tenant-id").agree(PathResolver::new("/t/{tenant}").unwrap());
                let got = both.resolve(&request(&header, &path));
                let malformed = (header.is_some() && !valid(&header)) || (path.is_some() && !valid(&path));
                match (&header, &path) {
                    _ if malformed => prop_assert!(got.is_err()),
                    (Some(h), Some(p)) if h != p => prop_assert!(matches!(got, Err(Error::Disagree { .. })), "{:?}", got),
                    (Some(id), _) | (None, Some(id)) => prop_assert_eq!(got.unwrap().unwrap().id().unwrap(), id.as_str()),
                    (None, None) => prop_assert_eq!(got.unwrap(), None),
                }
            }
        }
    }
}
