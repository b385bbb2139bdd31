//! What the database benches share: concurrent clients, and a spread of units
//! over tenants and rows.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `iters` rounds of one unit of work per client (`clients` of them,
/// concurrent), unit `n` being `round * clients + client`; the wall time.
pub(crate) fn run<F, Fut>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    clients: u64,
    unit: F,
) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let unit = unit.clone();
                tokio::spawn(async move {
                    for i in 0..iters {
                        unit(i * clients + client).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

/// The tenant (of `tenants`) and row (1 to `rows`) of unit `n`: spread evenly,
/// the same sequence every run.
pub(crate) fn pick(n: u64, tenants: usize, rows: i32) -> (usize, i32) {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (
        (h >> 40) as usize % tenants,
        ((h >> 20) % rows as u64) as i32 + 1,
    )
}

/// The benches' Tokio runtime: two worker threads, as the machine the figures come
/// from has two cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The raw deadpool-postgres pool the router is measured against: `max`
/// connections to `config`, recycled the fast way (no query of its own).
#[cfg(feature = "deadpool")]
pub(crate) fn raw_deadpool<T>(
    config: tenants::db::tokio_postgres::Config,
    tls: T,
    max: usize,
) -> tenants::db::deadpool_postgres::Pool
where
    T: tenants::db::tokio_postgres::tls::MakeTlsConnect<tenants::db::tokio_postgres::Socket>
        + Clone
        + Sync
        + Send
        + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as tenants::db::tokio_postgres::tls::TlsConnect<
        tenants::db::tokio_postgres::Socket,
    >>::Future: Send,
{
    use tenants::db::deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max)
        .runtime(Runtime::Tokio1)
        .build()
        .unwrap()
}
