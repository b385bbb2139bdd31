//! Silo routing at scale: a global connection budget across every tenant database,
//! idle pools closed, databases on several servers, and an error (not a hang) when
//! the budget stays spent.
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{PASSWORD, Probe, World, silo_database};
use tenants_core::{DataModel, Tenant};
use tenants_db::{Deadpool, Driver, Error, Sqlx, TenantRouter};

/// The databases other than `except` that `role` holds connections to, one entry
/// per connection, as PostgreSQL lists them.
async fn listed(admin: &sqlx::PgPool, role: &str, except: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT datname::text FROM pg_stat_activity WHERE usename = $1 AND datname <> $2",
    )
    .bind(role)
    .bind(except)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Open connections of `role` to databases other than `except`, as PostgreSQL
/// counts them.
async fn connections(admin: &sqlx::PgPool, role: &str, except: &str) -> usize {
    listed(admin, role, except).await.len()
}

async fn budget_bounds_connections<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 0, 12);
    let router: TenantRouter<D> = world
        .router::<D>()
        .silo_connections_per_tenant(1)
        .silo_budget(4)
        .acquire_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let admin = sqlx::PgPool::connect(world.pg.admin_url()).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let (held, listed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let monitor = tokio::spawn({
        let (done, held, listed, router) =
            (done.clone(), held.clone(), listed.clone(), router.clone());
        let (app, shared) = (world.app.clone(), world.database.clone());
        async move {
            while !done.load(Ordering::SeqCst) {
                held.fetch_max(router.stats().silo_connections, Ordering::SeqCst);
                listed.fetch_max(connections(&admin, &app, &shared).await, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let tenants = Arc::new(world.silo.clone());
    let workers: Vec<_> = (0..24usize)
        .map(|worker| {
            let (router, tenants) = (router.clone(), tenants.clone());
            tokio::spawn(async move {
                for round in 0..10usize {
                    let tenant = &tenants[(worker * 5 + round * 7) % tenants.len()];
                    let secret = format!("{}:{worker}-{round}", tenant.id);
                    let seen = router.write_read(tenant, &secret, true).await.unwrap();
                    assert!(
                        seen.iter()
                            .all(|s| s.starts_with(&format!("{}:", tenant.id)))
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    monitor.await.unwrap();
    let (held, listed) = (held.load(Ordering::SeqCst), listed.load(Ordering::SeqCst));
    assert!(
        (1..=4).contains(&held),
        "the router held {held} silo connections at once, budget 4"
    );
    // PostgreSQL lists a server process until it has exited, a few milliseconds
    // after its connection closed; pools closed for the budget overlap with the
    // ones opened in their place by at most that much.
    assert!(
        listed <= 4 + 2,
        "PostgreSQL saw {listed} silo connections at once, budget 4"
    );
    router.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_bounds_connections_sqlx() {
    budget_bounds_connections::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_bounds_connections_deadpool() {
    budget_bounds_connections::<Deadpool>().await;
}

/// The databases other than `except` that `role` holds connections to, as
/// PostgreSQL lists them, once at most `most` are listed (a closed connection's
/// server process is listed until it has exited).
async fn connected(admin: &sqlx::PgPool, role: &str, except: &str, most: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut listed = listed(admin, role, except).await;
        if listed.len() <= most || tokio::time::Instant::now() > deadline {
            listed.sort();
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// When the budget is spent, a tenant seen once makes room before a busy one, even
/// a busy one less recently used; a tenant that stops being busy makes room after a
/// bounded number of others.
async fn the_budget_keeps_busy_tenants<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 0, 12);
    let router: TenantRouter<D> = world
        .router::<D>()
        .silo_connections_per_tenant(1)
        .silo_budget(2)
        .build()
        .unwrap();
    let admin = sqlx::PgPool::connect(world.pg.admin_url()).await.unwrap();
    let [busy, once, next, rest @ ..] = world.silo.as_slice() else {
        unreachable!("twelve silo tenants")
    };
    // sqlx gives a connection back to its pool in a task of its own, and only a
    // pool with nothing checked out can make room: each hand-out waits for that.
    let use_once = async |tenant: &Tenant| {
        router.session_read(tenant).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for _ in 0..10 {
        use_once(busy).await;
    }
    use_once(once).await;
    use_once(next).await;
    let mut kept = vec![silo_database(busy), silo_database(next)];
    kept.sort();
    assert_eq!(
        connected(&admin, &world.app, &world.database, 2).await,
        kept,
        "the tenant seen once makes room, not the busy one"
    );
    // Each newcomer is worth one more than the last closed: the ninth after `next`
    // is worth as much as ten hand-outs, and the busy tenant, older, goes first.
    for tenant in rest {
        use_once(tenant).await;
        let listed = connected(&admin, &world.app, &world.database, 2).await;
        assert!(listed.contains(&silo_database(tenant)), "{listed:?}");
    }
    let listed = connected(&admin, &world.app, &world.database, 2).await;
    assert!(
        !listed.contains(&silo_database(busy)),
        "a tenant no longer busy keeps its connection forever: {listed:?}"
    );
    router.close().await;
}

#[tokio::test]
async fn the_budget_keeps_busy_tenants_sqlx() {
    the_budget_keeps_busy_tenants::<Sqlx>().await;
}

#[tokio::test]
async fn the_budget_keeps_busy_tenants_deadpool() {
    the_budget_keeps_busy_tenants::<Deadpool>().await;
}

async fn idle_silos_close<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 0, 3);
    let router: TenantRouter<D> = world
        .router::<D>()
        .silo_idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    for tenant in &world.silo {
        router.session_read(tenant).await.unwrap();
    }
    assert_eq!(router.stats().open_silos, 3);
    let admin = sqlx::PgPool::connect(world.pg.admin_url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while router.stats().open_silos > 0
        || connections(&admin, &world.app, &world.database).await > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle silo pools stayed open: {:?}",
            router.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And they reopen on demand.
    assert_eq!(router.session_read(&world.silo[0]).await.unwrap().len(), 0);
    router.close().await;
}

#[tokio::test]
async fn idle_silos_close_sqlx() {
    idle_silos_close::<Sqlx>().await;
}

#[tokio::test]
async fn idle_silos_close_deadpool() {
    idle_silos_close::<Deadpool>().await;
}

/// Connections unused for the connection idle timeout close, in the shared pools
/// too (deadpool has no idle timeout of its own; the router's sweeper closes them).
async fn idle_connections_close<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(1, 1, 0);
    let router: TenantRouter<D> = world
        .router::<D>()
        .connection_idle_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    for tenant in world.tenants() {
        router.session_read(&tenant).await.unwrap();
    }
    let admin = sqlx::PgPool::connect(world.pg.admin_url()).await.unwrap();
    let open = || async {
        // The migration listener's one connection stays open for the router's life.
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE usename = $1 AND query NOT ILIKE 'LISTEN%'",
        )
        .bind(&world.app)
        .fetch_one(&admin)
        .await
        .unwrap();
        n
    };
    assert!(open().await > 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle connections stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.close().await;
}

#[tokio::test]
async fn idle_connections_close_sqlx() {
    idle_connections_close::<Sqlx>().await;
}

#[tokio::test]
async fn idle_connections_close_deadpool() {
    idle_connections_close::<Deadpool>().await;
}

/// A tenant record names its server; the router connects there (here: the same
/// cluster under another role, which the transaction reports as its user).
async fn silos_on_several_servers<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let mut world = World::new(0, 0, 2);
    let eu_role = tenants_test_support::unique_name("eu");
    let DataModel::Silo { database, .. } = world.silo[1].model.clone() else {
        unreachable!()
    };
    world.pg.psql(
        world.pg.admin_url(),
        &format!("CREATE ROLE {eu_role} LOGIN PASSWORD '{PASSWORD}'"),
    );
    world.pg.psql(
        &world.pg.url_for(database.as_str()),
        &format!("GRANT SELECT, INSERT ON notes TO {eu_role}"),
    );
    let moved = Tenant::new(
        world.silo[1].id,
        DataModel::Silo {
            database: database.clone(),
            server: Some("eu".into()),
        },
    );
    world.silo[1] = moved.clone();
    let router: TenantRouter<D> = world
        .router::<D>()
        .server("eu", world.pg.url_as(&eu_role, PASSWORD, "postgres"))
        .build()
        .unwrap();
    assert_eq!(
        router.seen(&world.silo[0], None).await.unwrap().user,
        world.app
    );
    assert_eq!(router.seen(&moved, None).await.unwrap().user, eu_role);
    router.close().await;
}

#[tokio::test]
async fn silos_on_several_servers_sqlx() {
    silos_on_several_servers::<Sqlx>().await;
}

#[tokio::test]
async fn silos_on_several_servers_deadpool() {
    silos_on_several_servers::<Deadpool>().await;
}

/// With the whole budget held by a busy tenant, another tenant gets
/// `BudgetExhausted` after the acquire timeout rather than waiting forever.
#[tokio::test]
async fn a_spent_budget_is_an_error_not_a_hang() {
    let world = World::new(0, 0, 2);
    let router: TenantRouter<Sqlx> = world
        .router::<Sqlx>()
        .silo_connections_per_tenant(1)
        .silo_budget(1)
        .acquire_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let held = router.begin(&world.silo[0]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), router.begin(&world.silo[1]))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(err, Error::BudgetExhausted { budget: 1, .. }),
        "{err}"
    );
    drop(held);
    router
        .begin(&world.silo[1])
        .await
        .unwrap()
        .commit()
        .await
        .unwrap();
    router.close().await;
}
