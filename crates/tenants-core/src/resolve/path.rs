//! Resolve the tenant from a path segment.

use std::sync::Arc;

use http::request::Parts;

use super::{Resolved, Resolver};
use crate::{Error, IdPolicy};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Tenant,
}

/// Resolves the tenant from a path segment, following a template such as
/// `/t/{tenant}` or `/{tenant}`.
///
/// The template is matched against the start of the path, segment by segment. A path
/// that does not start with the template's literal segments names no tenant; a path
/// that does, but whose tenant segment is not a valid id, is refused. The
/// [`Resolved::path_prefix`] reports the matched prefix (`/t/acme`) so the layer can
/// strip it for a nested router. A dot segment after the tenant
/// (`/t/acme/x/../../other`, also percent-encoded) is refused with
/// [`Error::InvalidPath`]: once normalized it would reach another tenant's prefix.
///
/// # Examples
///
/// ```
/// use http::Request;
/// use tenants_core::resolve::{PathResolver, Resolver};
///
/// let resolver = PathResolver::new("/t/{tenant}")?;
/// let (parts, ()) = Request::get("/t/acme/todos?page=2").body(())?.into_parts();
/// let found = resolver.resolve(&parts)?.unwrap();
/// assert_eq!(found.id().unwrap(), "acme");
/// assert_eq!(found.path_prefix, Some("/t/acme".len()));
///
/// let (parts, ()) = Request::get("/health").body(())?.into_parts();
/// assert!(resolver.resolve(&parts)?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct PathResolver {
    segments: Arc<[Segment]>,
    policy: IdPolicy,
}

impl PathResolver {
    /// Parses a template: `/`-separated literal segments and exactly one `{tenant}`.
    pub fn new(template: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Config(format!("path template {template:?}: {why}"));
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| bad("it must start with '/'"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let mut segments = Vec::new();
        for segment in rest.split('/') {
            segments.push(match segment {
                "{tenant}" => Segment::Tenant,
                "" => return Err(bad("it has an empty segment")),
                s if s.contains(['{', '}', '?', '#']) => {
                    return Err(bad("segments are literals or {tenant}"));
                }
                s => Segment::Literal(s.to_owned()),
            });
        }
        match segments.iter().filter(|s| **s == Segment::Tenant).count() {
            1 => Ok(PathResolver {
                segments: segments.into(),
                policy: IdPolicy::default(),
            }),
            _ => Err(bad("it must contain {tenant} exactly once")),
        }
    }

    /// Sets the id policy (reserved ids).
    pub fn id_policy(mut self, policy: IdPolicy) -> Self {
        self.policy = policy;
        self
    }
}

impl Resolver for PathResolver {
    fn resolve(&self, parts: &Parts) -> Result<Option<Resolved>, Error> {
        let path = parts.uri.path();
        let mut offset = 0;
        let mut found = None;
        for segment in self.segments.iter() {
            let Some(rest) = path[offset..].strip_prefix('/') else {
                return Ok(None);
            };
            // A byte scan: segments are short, and `str::find`'s searcher costs more
            // than the scan itself (this runs on every request).
            let len = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
            let value = &rest[..len];
            match segment {
                Segment::Literal(literal) if value == literal => {}
                Segment::Literal(_) => return Ok(None),
                Segment::Tenant => {
                    found = Some(
                        self.policy
                            .parse_bytes(value.as_bytes())
                            .map_err(|rule| Error::invalid_id(value, rule))?,
                    );
                }
            }
            offset += 1 + len;
        }
        let Some(id) = found else {
            return Ok(None);
        };
        let rest = &path[offset..];
        if rest.split('/').any(is_dot_segment) {
            return Err(Error::invalid_path(
                path,
                "a dot segment after the tenant would leave its prefix",
            ));
        }
        if rest.contains('\\') || contains_folded(rest, "%5c") {
            return Err(Error::invalid_path(
                path,
                "a backslash after the tenant may be read as a separator",
            ));
        }
        Ok(Some(Resolved::from_id(id).with_path_prefix(offset)))
    }
}

/// `haystack` contains `needle` (lowercase ASCII), ignoring ASCII case.
fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `.` or `..`, also percent-encoded (`%2e`, `.%2E`, ...): a segment that climbs
/// the path when a server or proxy normalizes it ([RFC 3986 §5.2.4]).
///
/// [RFC 3986 §5.2.4]: https://www.rfc-editor.org/rfc/rfc3986#section-5.2.4
fn is_dot_segment(segment: &str) -> bool {
    // At most two dots, each one byte or three: longer segments are not dots.
    if segment.is_empty() || segment.len() > 6 || !segment.starts_with(['.', '%']) {
        return false;
    }
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use proptest::prelude::*;

    fn run(template: &str, uri: &str) -> Result<Option<(String, usize)>, Error> {
        let parts = Request::get(uri).body(()).unwrap().into_parts().0;
        let found = PathResolver::new(template).unwrap().resolve(&parts)?;
        Ok(found.map(|r| (r.id().unwrap().to_string(), r.path_prefix.unwrap())))
    }

    #[test]
    fn templates_match_prefixes() {
        assert_eq!(
            run("/t/{tenant}", "/t/acme").unwrap(),
            Some(("acme".into(), 7))
        );
        assert_eq!(
            run("/t/{tenant}", "/t/acme/").unwrap(),
            Some(("acme".into(), 7))
        );
        assert_eq!(
            run("/t/{tenant}/", "/t/Acme/x/y").unwrap(),
            Some(("acme".into(), 7))
        );
        assert_eq!(
            run("/{tenant}", "/acme/todos").unwrap(),
            Some(("acme".into(), 5))
        );
        assert_eq!(
            run("/{tenant}/api", "/acme/api/x").unwrap(),
            Some(("acme".into(), 9))
        );
        assert_eq!(run("/t/{tenant}", "/x/acme").unwrap(), None);
        assert_eq!(run("/t/{tenant}", "/t").unwrap(), None);
        assert_eq!(run("/t/{tenant}", "/").unwrap(), None);
        assert_eq!(run("/{tenant}/api", "/acme/web").unwrap(), None);
    }

    #[test]
    fn bad_segments_are_errors_not_misses() {
        for uri in ["/t//todos", "/t/a_b", "/t/%41cme", "/t/-a/x", "/t/a.b"] {
            assert!(
                matches!(run("/t/{tenant}", uri), Err(Error::InvalidId { .. })),
                "{uri}"
            );
        }
    }

    #[test]
    fn dot_segments_after_the_tenant_are_refused() {
        for uri in [
            "/t/acme/x/../../other/todos",
            "/t/acme/..",
            "/t/acme/./todos",
            "/t/acme/%2e%2e/other",
            "/t/acme/.%2E/other",
            "/t/acme/%2E/x",
            "/t/acme/x/..?q=1",
            "/t/acme/..%5c..%5cother",
            "/t/acme/x\\..\\other",
        ] {
            assert!(
                matches!(run("/t/{tenant}", uri), Err(Error::InvalidPath { .. })),
                "{uri}"
            );
        }
        for fine in [
            "/t/acme/.well-known/x",
            "/t/acme/...",
            "/t/acme/a..b",
            "/t/acme/%2e%2ex",
        ] {
            assert!(run("/t/{tenant}", fine).unwrap().is_some(), "{fine}");
        }
        // Before the tenant, dots are no tenant's business.
        assert_eq!(run("/t/{tenant}", "/x/../t/acme").unwrap(), None);
    }

    #[test]
    fn bad_templates_are_config_errors() {
        for t in [
            "t/{tenant}",
            "/t",
            "/{tenant}/{tenant}",
            "/a//{tenant}",
            "/x{tenant}",
        ] {
            assert!(matches!(PathResolver::new(t), Err(Error::Config(_))), "{t}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_prefix_is_a_boundary(path in "(/[a-zA-Z0-9%._~-]{0,12}){0,5}") {
            let uri = if path.is_empty() { "/".to_owned() } else { path.clone() };
            if let Ok(req) = Request::get(uri.as_str()).body(()) {
                let parts = req.into_parts().0;
                if let Ok(Some(found)) = PathResolver::new("/t/{tenant}").unwrap().resolve(&parts) {
                    let p = parts.uri.path();
                    let len = found.path_prefix.unwrap();
                    prop_assert!(p.is_char_boundary(len));
                    prop_assert!(p[len..].is_empty() || p[len..].starts_with('/'));
                }
            }
        }
    }
}
