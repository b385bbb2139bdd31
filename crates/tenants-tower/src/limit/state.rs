//! Limits and the per-tenant counters that enforce them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tenants_core::{OptionsSection, Tenant};

use crate::TenantRejection;

/// A tenant's limits. Unset means unlimited.
///
/// As a tenant options section (`[tenants.acme.options.limits]`):
/// `concurrency = 8`, `rate_per_second = 20.0`, `burst = 40`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Most requests of the tenant in flight at once.
    pub concurrency: Option<usize>,
    /// Sustained requests per second.
    pub rate_per_second: Option<f64>,
    /// Requests allowed in a burst above the rate (default: one second's worth).
    pub burst: Option<u32>,
}

impl OptionsSection for Limits {
    const SECTION: &'static str = "limits";
}

impl Limits {
    /// No limit.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Caps requests in flight.
    pub fn concurrency(mut self, max: usize) -> Self {
        self.concurrency = Some(max);
        self
    }

    /// Caps the request rate: `per_second` sustained, `burst` at once.
    pub fn rate(mut self, per_second: f64, burst: u32) -> Self {
        self.rate_per_second = Some(per_second);
        self.burst = Some(burst);
        self
    }

    fn capacity(&self) -> f64 {
        match (self.burst, self.rate_per_second) {
            (Some(burst), _) => f64::from(burst.max(1)),
            (None, Some(rate)) => rate.max(1.0),
            (None, None) => f64::INFINITY,
        }
    }
}

/// The token bucket and the record the limits were read from.
struct Bucket {
    limits: Limits,
    source: Arc<Tenant>,
    tokens: f64,
    refilled: Instant,
}

/// One tenant's counters.
pub(crate) struct TenantState {
    in_flight: AtomicUsize,
    bucket: Mutex<Bucket>,
}

impl TenantState {
    pub(crate) fn new(tenant: Arc<Tenant>, limits: Limits) -> Self {
        TenantState {
            in_flight: AtomicUsize::new(0),
            bucket: Mutex::new(Bucket {
                tokens: limits.capacity(),
                limits,
                source: tenant,
                refilled: Instant::now(),
            }),
        }
    }

    /// Admits one request or says which limit it hits. `limits_of` re-reads the limits
    /// when the tenant record changed since they were read.
    pub(crate) fn admit(
        self: &Arc<Self>,
        tenant: &Arc<Tenant>,
        limits_of: impl FnOnce(&Tenant) -> Limits,
    ) -> Result<InFlight, TenantRejection> {
        let concurrency = {
            let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
            if !Arc::ptr_eq(&bucket.source, tenant) {
                bucket.limits = limits_of(tenant);
                bucket.source = tenant.clone();
                bucket.tokens = bucket.tokens.min(bucket.limits.capacity());
            }
            if let Some(rate) = bucket.limits.rate_per_second.filter(|r| *r > 0.0) {
                let now = Instant::now();
                let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * rate).min(bucket.limits.capacity());
                bucket.refilled = now;
                if bucket.tokens < 1.0 {
                    return Err(TenantRejection::LimitExceeded {
                        tenant: tenant.id,
                        limit: "rate",
                        // A tiny configured rate makes the wait overflow a Duration.
                        retry_after: Duration::try_from_secs_f64((1.0 - bucket.tokens) / rate)
                            .unwrap_or(Duration::MAX),
                    });
                }
                bucket.tokens -= 1.0;
            }
            bucket.limits.concurrency
        };
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.clone());
        if concurrency.is_some_and(|max| before >= max) {
            return Err(TenantRejection::LimitExceeded {
                tenant: tenant.id,
                limit: "concurrency",
                retry_after: Duration::from_secs(1),
            });
        }
        Ok(guard)
    }
}

/// One admitted request; dropping it (response done, or the request cancelled) frees
/// its concurrency slot.
pub(crate) struct InFlight(Arc<TenantState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenants_core::DataModel;

    fn tenant() -> Arc<Tenant> {
        Arc::new(Tenant::new("a".parse().unwrap(), DataModel::Pool))
    }

    #[test]
    fn concurrency_slots_free_on_drop() {
        let t = tenant();
        let state = Arc::new(TenantState::new(
            t.clone(),
            Limits::unlimited().concurrency(2),
        ));
        let a = state.admit(&t, |_| unreachable!()).unwrap();
        let b = state.admit(&t, |_| unreachable!()).unwrap();
        assert!(matches!(
            state.admit(&t, |_| unreachable!()),
            Err(TenantRejection::LimitExceeded {
                limit: "concurrency",
                ..
            })
        ));
        drop(a);
        let _c = state.admit(&t, |_| unreachable!()).unwrap();
        drop(b);
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let t = tenant();
        let state = Arc::new(TenantState::new(
            t.clone(),
            Limits::unlimited().rate(1.0, 3),
        ));
        for _ in 0..3 {
            drop(state.admit(&t, |_| unreachable!()).unwrap());
        }
        match state.admit(&t, |_| unreachable!()) {
            Err(TenantRejection::LimitExceeded {
                limit: "rate",
                retry_after,
                ..
            }) => {
                assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::ZERO);
            }
            _ => panic!("the fourth request is over the rate"),
        }
    }

    #[test]
    fn a_vanishing_rate_caps_the_wait_instead_of_panicking() {
        let t = tenant();
        let state = Arc::new(TenantState::new(
            t.clone(),
            Limits::unlimited().rate(1e-300, 1),
        ));
        drop(state.admit(&t, |_| unreachable!()).unwrap());
        match state.admit(&t, |_| unreachable!()) {
            Err(rejection @ TenantRejection::LimitExceeded { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::MAX);
                let response = rejection.problem_response();
                assert_eq!(response.headers()["retry-after"], u64::MAX.to_string());
            }
            _ => panic!("the second request is over the rate"),
        }
    }

    #[test]
    fn a_changed_record_rereads_the_limits() {
        let t = tenant();
        let state = Arc::new(TenantState::new(
            t.clone(),
            Limits::unlimited().concurrency(0),
        ));
        assert!(state.admit(&t, |_| unreachable!()).is_err());
        let refreshed = Arc::new((*t).clone());
        assert!(state.admit(&refreshed, |_| Limits::unlimited()).is_ok());
    }
}
