//! Rejections: why the layer refused a request, as RFC 9457 problem details.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};
use tenants_core::{Error, TenantId};

/// Why the tenant layer refused a request.
///
/// Each variant has a stable problem `type` (a URN such as
/// `urn:tenants:problem:unknown-tenant`), an HTTP status and a human-readable detail.
/// [`problem_response`](Self::problem_response) renders it as an
/// `application/problem+json` response; plug in your own rendering with
/// [`TenantLayer::responder`](crate::TenantLayer::responder).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TenantRejection {
    /// The request names a tenant badly: a malformed id or host, a repeated header, or
    /// two resolvers that disagree (400).
    Malformed(Error),
    /// The route needs a tenant and the request names none (400).
    Missing,
    /// The bearer token could not be trusted (401, with `WWW-Authenticate`).
    Unauthenticated(Error),
    /// The tenant exists but is suspended (403 unless configured otherwise).
    Suspended {
        /// The suspended tenant.
        tenant: TenantId,
        /// The status to answer with.
        status: StatusCode,
    },
    /// The token's subject does not belong to the tenant the request names (403).
    NotMember {
        /// The tenant the request names.
        tenant: TenantId,
    },
    /// No such tenant, or a deleted one (404; the two are not told apart).
    Unknown {
        /// How the request named it (`tenant acme`, `domain shop.example`).
        named: String,
    },
    /// The tenant catalog is unavailable (503, with `Retry-After`).
    Unavailable {
        /// The catalog's error.
        error: Error,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
    /// The layer or the tenant record is misconfigured (500).
    Misconfigured(Error),
    /// The tenant is over one of its limits (429, with `Retry-After`).
    LimitExceeded {
        /// The tenant.
        tenant: TenantId,
        /// Which limit: `concurrency` or `rate`.
        limit: &'static str,
        /// Suggested wait before retrying.
        retry_after: Duration,
    },
}

impl TenantRejection {
    /// Classifies a resolver or catalog error.
    pub fn from_error(error: Error, retry_after: Duration) -> Self {
        match error {
            Error::Token(_) => TenantRejection::Unauthenticated(error),
            Error::CatalogUnavailable(_) => TenantRejection::Unavailable { error, retry_after },
            e if e.is_client_error() => TenantRejection::Malformed(e),
            e => TenantRejection::Misconfigured(e),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            TenantRejection::Malformed(_) | TenantRejection::Missing => StatusCode::BAD_REQUEST,
            TenantRejection::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            TenantRejection::Suspended { status, .. } => *status,
            TenantRejection::NotMember { .. } => StatusCode::FORBIDDEN,
            TenantRejection::Unknown { .. } => StatusCode::NOT_FOUND,
            TenantRejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            TenantRejection::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            TenantRejection::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The stable problem type, a URN.
    pub fn problem_type(&self) -> &'static str {
        match self {
            TenantRejection::Malformed(_) => "urn:tenants:problem:malformed-tenant",
            TenantRejection::Missing => "urn:tenants:problem:missing-tenant",
            TenantRejection::Unauthenticated(_) => "urn:tenants:problem:invalid-token",
            TenantRejection::Suspended { .. } => "urn:tenants:problem:suspended-tenant",
            TenantRejection::NotMember { .. } => "urn:tenants:problem:not-a-member",
            TenantRejection::Unknown { .. } => "urn:tenants:problem:unknown-tenant",
            TenantRejection::Unavailable { .. } => "urn:tenants:problem:catalog-unavailable",
            TenantRejection::Misconfigured(_) => "urn:tenants:problem:misconfigured",
            TenantRejection::LimitExceeded { .. } => "urn:tenants:problem:limit-exceeded",
        }
    }

    /// A short, fixed summary of the problem type.
    pub fn title(&self) -> &'static str {
        match self {
            TenantRejection::Malformed(_) => "The request names its tenant badly",
            TenantRejection::Missing => "This route needs a tenant",
            TenantRejection::Unauthenticated(_) => "The bearer token is not valid",
            TenantRejection::Suspended { .. } => "The tenant is suspended",
            TenantRejection::NotMember { .. } => "Not a member of this tenant",
            TenantRejection::Unknown { .. } => "No such tenant",
            TenantRejection::Unavailable { .. } => "The tenant catalog is unavailable",
            TenantRejection::Misconfigured(_) => "Tenant configuration error",
            TenantRejection::LimitExceeded { .. } => "The tenant is over its limit",
        }
    }

    /// What went wrong for this request, safe to show to the client.
    pub fn detail(&self) -> String {
        match self {
            TenantRejection::Malformed(e) | TenantRejection::Unauthenticated(e) => e.to_string(),
            TenantRejection::Missing => {
                "name the tenant as this service expects (subdomain, header, path or token)".into()
            }
            TenantRejection::Suspended { tenant, .. } => format!("tenant {tenant} is suspended"),
            TenantRejection::NotMember { tenant } => {
                format!("the token's subject does not belong to tenant {tenant}")
            }
            TenantRejection::Unknown { named } => format!("{named} does not exist"),
            TenantRejection::Unavailable { .. } => "try again shortly".into(),
            // Configuration details are for the logs, not for clients.
            TenantRejection::Misconfigured(_) => "see the server logs".into(),
            TenantRejection::LimitExceeded { tenant, limit, .. } => {
                format!("tenant {tenant} is over its {limit} limit")
            }
        }
    }

    /// Renders the rejection as an `application/problem+json` response.
    pub fn problem_response(&self) -> Response<String> {
        let body = serde_json::json!({
            "type": self.problem_type(),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": self.detail(),
        });
        let mut response = Response::new(body.to_string());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            TenantRejection::Unauthenticated(_) => {
                headers.insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            TenantRejection::Unavailable { retry_after, .. }
            | TenantRejection::LimitExceeded { retry_after, .. } => {
                let secs = retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
                headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        response
    }
}

impl fmt::Display for TenantRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.title(), self.detail())
    }
}

impl std::error::Error for TenantRejection {}

/// Turns a rejection into a response. The default renders problem details; implement
/// it (or pass a closure) to answer in your own format.
pub trait Responder: Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: &TenantRejection) -> Response<String>;
}

impl<F> Responder for F
where
    F: Fn(&TenantRejection) -> Response<String> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &TenantRejection) -> Response<String> {
        self(rejection)
    }
}

/// The default [`Responder`]: RFC 9457 problem details.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemResponder;

impl Responder for ProblemResponder {
    fn respond(&self, rejection: &TenantRejection) -> Response<String> {
        rejection.problem_response()
    }
}

pub(crate) type SharedResponder = Arc<dyn Responder>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_never_overflows() {
        let unavailable = |retry_after| TenantRejection::Unavailable {
            error: Error::Config("down".into()),
            retry_after,
        };
        for (wait, header) in [
            (Duration::ZERO, "1".to_owned()),
            (Duration::from_millis(1500), "2".to_owned()),
            (Duration::from_secs(7), "7".to_owned()),
            (Duration::MAX, u64::MAX.to_string()),
        ] {
            let response = unavailable(wait).problem_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[RETRY_AFTER], header.as_str(), "{wait:?}");
        }
    }
}
