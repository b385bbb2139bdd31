//! The current tenant of a task: for code that has no request at hand.
//!
//! The [`TenantLayer`](crate::TenantLayer) puts the tenant into the request
//! extensions. Code further away from the request (a repository, a job queued by a
//! handler) can read it from a tokio task-local instead:
//!
//! - [`scope`] runs a future with a tenant as the current one, and [`sync_scope`] a
//!   closure;
//! - [`current`] reads it (`None` outside every scope: never a default tenant);
//! - [`spawn_with_tenant`] spawns a task that keeps the caller's tenant, so
//!   background work cannot lose it or pick up another request's;
//! - [`without_tenant`] runs a future with no tenant, even inside a tenant's scope
//!   (a worker loop started with one tenant, running a job of none), and
//!   [`sync_without_tenant`] a closure.
//!
//! Scopes nest: inside an inner scope its tenant is current, and when the inner scope
//! ends (or its future is dropped) the outer tenant is current again. Nothing lives
//! in a global, so one request's tenant can never leak into another task.
//!
//! [`TenantLayer::task_scope`](crate::TenantLayer::task_scope) runs every admitted
//! request's inner service inside a scope of its tenant.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use tenants_core::{DataModel, Tenant};
//! use tenants_tower::task;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let acme = Arc::new(Tenant::new("acme".parse().unwrap(), DataModel::Pool));
//! assert!(task::current().is_none());
//! task::scope(acme, async {
//!     assert_eq!(task::current().unwrap().id, "acme");
//!     // The spawned task keeps the tenant, whatever this task does next.
//!     let job = task::spawn_with_tenant(async { task::current().map(|t| t.id) });
//!     assert_eq!(job.await.unwrap().unwrap(), "acme");
//! })
//! .await;
//! assert!(task::current().is_none());
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use tenants_core::Tenant;
use tokio::task::JoinHandle;
use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    /// `None` inside a [`without_tenant`] scope.
    static CURRENT: Option<Arc<Tenant>>;
}

/// A future running in a tenant scope (or a scope with none): what [`scope`] and
/// [`without_tenant`] return.
pub type Scoped<F> = TaskLocalFuture<Option<Arc<Tenant>>, F>;

/// The tenant of the current scope, or `None` outside every scope and inside a
/// [`without_tenant`] scope.
pub fn current() -> Option<Arc<Tenant>> {
    CURRENT.try_with(Option::clone).ok().flatten()
}

/// Runs `future` with `tenant` as the current tenant; the previous one (if any) is
/// current again once the future completes or is dropped.
pub fn scope<F: Future>(tenant: Arc<Tenant>, future: F) -> Scoped<F> {
    CURRENT.scope(Some(tenant), future)
}

/// Runs `future` with no current tenant, inside any scope: [`current`] answers
/// `None` in it, and what it spawns with [`spawn_with_tenant`] has no tenant either.
/// The previous tenant is current again once the future completes or is dropped.
pub fn without_tenant<F: Future>(future: F) -> Scoped<F> {
    CURRENT.scope(None, future)
}

/// Runs `f` with `tenant` as the current tenant; the previous one (if any) is current
/// again when `f` returns or panics. For synchronous code, such as the closure of
/// `tokio::task::spawn_blocking`.
pub fn sync_scope<T>(tenant: Arc<Tenant>, f: impl FnOnce() -> T) -> T {
    CURRENT.sync_scope(Some(tenant), f)
}

/// Runs `f` with no current tenant, as [`without_tenant`] does for a future.
pub fn sync_without_tenant<T>(f: impl FnOnce() -> T) -> T {
    CURRENT.sync_scope(None, f)
}

/// Spawns `future` on the tokio runtime with the caller's current tenant as its own.
///
/// Outside every scope the task is spawned without a tenant, so whatever it calls
/// sees `None` from [`current`] and must refuse tenant work: no tenant never turns
/// into some tenant.
///
/// # Panics
///
/// Panics when called outside a tokio runtime, as [`tokio::spawn`] does.
pub fn spawn_with_tenant<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(tenant) => tokio::spawn(scope(tenant, future)),
        None => tokio::spawn(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenants_core::DataModel;

    fn tenant(id: &str) -> Arc<Tenant> {
        Arc::new(Tenant::new(id.parse().unwrap(), DataModel::Pool))
    }

    fn current_id() -> Option<String> {
        current().map(|t| t.id.to_string())
    }

    #[tokio::test]
    async fn scopes_nest_and_restore_the_outer_tenant() {
        assert_eq!(current_id(), None);
        scope(tenant("outer"), async {
            assert_eq!(current_id().as_deref(), Some("outer"));
            scope(tenant("inner"), async {
                assert_eq!(current_id().as_deref(), Some("inner"));
                tokio::task::yield_now().await;
                assert_eq!(current_id().as_deref(), Some("inner"), "across awaits");
            })
            .await;
            assert_eq!(current_id().as_deref(), Some("outer"), "restored");
            sync_scope(tenant("sync"), || {
                assert_eq!(current_id().as_deref(), Some("sync"));
            });
            assert_eq!(
                current_id().as_deref(),
                Some("outer"),
                "restored after sync"
            );
        })
        .await;
        assert_eq!(current_id(), None);
    }

    #[tokio::test]
    async fn a_dropped_inner_scope_restores_the_outer_tenant() {
        scope(tenant("outer"), async {
            let inner = scope(tenant("inner"), std::future::pending::<()>());
            let timed_out = tokio::time::timeout(std::time::Duration::ZERO, inner).await;
            assert!(timed_out.is_err());
            assert_eq!(current_id().as_deref(), Some("outer"));
        })
        .await;
    }

    #[tokio::test]
    async fn a_tenant_task_runs_a_job_of_no_tenant() {
        scope(tenant("worker"), async {
            without_tenant(async {
                assert_eq!(current_id(), None);
                // What it spawns has no tenant either.
                let spawned = spawn_with_tenant(async { current_id() });
                assert_eq!(spawned.await.unwrap(), None);
                scope(tenant("job"), async {
                    assert_eq!(current_id().as_deref(), Some("job"));
                })
                .await;
                assert_eq!(current_id(), None);
            })
            .await;
            assert_eq!(current_id().as_deref(), Some("worker"), "restored");
            sync_without_tenant(|| assert_eq!(current_id(), None));
            assert_eq!(current_id().as_deref(), Some("worker"));
        })
        .await;
    }

    #[test]
    fn a_panicking_sync_scope_restores_the_outer_tenant() {
        sync_scope(tenant("outer"), || {
            let result = std::panic::catch_unwind(|| {
                sync_scope(tenant("inner"), || panic!("job failed"));
            });
            assert!(result.is_err());
            assert_eq!(current_id().as_deref(), Some("outer"));
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spawned_tasks_keep_the_spawning_tenant() {
        // Spawned from two tenants' scopes; both tasks run after the scopes ended.
        let a = sync_scope(tenant("a"), || {
            spawn_with_tenant(async {
                tokio::task::yield_now().await;
                current_id()
            })
        });
        let b = sync_scope(tenant("b"), || spawn_with_tenant(async { current_id() }));
        assert_eq!(a.await.unwrap().as_deref(), Some("a"));
        assert_eq!(b.await.unwrap().as_deref(), Some("b"));
        let plain = spawn_with_tenant(async { current_id() });
        assert_eq!(plain.await.unwrap(), None, "no tenant stays none");
        let other = tokio::spawn(async { current_id() });
        assert_eq!(other.await.unwrap(), None, "plain tasks see no tenant");
    }
}
