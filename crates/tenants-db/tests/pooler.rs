//! Deployments behind a transaction-mode pooler, on a real pgbouncer
//! (`pool_mode = transaction`) started by the test support code: tenants stay
//! isolated when consecutive transactions run on different server connections,
//! sessions are refused where they cannot keep a tenant, an undeclared pooler is
//! found by `verify`, and silo connections that reach the wrong database or lose
//! their tenant are closed and reported, with a back-off instead of a reconnect storm.
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Probe, Seen, World, assert_own_rows, committed_rows, silo_database};
use tenants_core::{DataModel, Tenant};
use tenants_db::{ConnectionMode, Deadpool, Driver, Error, Hazard, Sqlx, TenantRouter};
use tenants_test_support::{Pgbouncer, PgbouncerConfig};

/// A pgbouncer in transaction mode that lets the world's application role in.
fn pgbouncer(world: &World, configure: impl FnOnce(&mut PgbouncerConfig)) -> Pgbouncer {
    let mut config = PgbouncerConfig {
        users: vec![world.app.clone()],
        ..PgbouncerConfig::default()
    };
    configure(&mut config);
    world.pg.pgbouncer(&config)
}

/// The error under any [`Error::Shared`] wrapping.
fn root(error: &Error) -> &Error {
    match error {
        Error::Shared(inner) => root(inner),
        error => error,
    }
}

/// The leak hunt of `isolation.rs` through pgbouncer: 8 pool tenants, bridge and
/// silo tenants, 16 workers on pools of 8 client connections that pgbouncer runs
/// on 3 server connections per database, so consecutive transactions of one client
/// connection land on different server connections all the time. Every row any
/// worker sees is its own tenant's, and exactly the committed rows survive. Session
/// hand-outs are refused with a typed error naming the server.
async fn leak_hunt_behind_pgbouncer<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(8, 4, 4);
    let bouncer = pgbouncer(&world, |config| config.pool_size = 3);
    let router: TenantRouter<D> = TenantRouter::<D>::builder()
        .server("main", bouncer.url(&world.app_url()))
        .connection_mode("main", ConnectionMode::TransactionPooler)
        .pool_connections(8)
        .bridge_connections(8)
        .bridge_statement_sharing(true)
        .silo_connections_per_tenant(2)
        .silo_budget(6)
        .build()
        .unwrap();
    router.verify().await.unwrap();
    let tenants = Arc::new(world.tenants());
    for tenant in tenants.iter() {
        let refused = router.session_read(tenant).await.unwrap_err();
        assert!(
            refused.contains("declared a transaction pooler") && refused.contains("\"main\""),
            "{refused}"
        );
    }
    let mut workers = Vec::new();
    for worker in 0..16usize {
        let router = router.clone();
        let tenants = tenants.clone();
        workers.push(tokio::spawn(async move {
            let mut committed: HashMap<String, usize> = HashMap::new();
            for round in 0..40usize {
                let tenant = &tenants[(worker * 7 + round * 13) % tenants.len()];
                let mine = format!("{}:", tenant.id);
                let secret = format!("{mine}{worker}-{round}");
                let seen = router.write_read_unprepared(tenant, &secret).await.unwrap();
                assert!(seen.contains(&secret), "{secret} not read back");
                assert_own_rows(tenant, &seen);
                *committed.entry(tenant.id.to_string()).or_default() += 1;
            }
            committed
        }));
    }
    let committed = committed_rows(workers).await;
    for tenant in tenants.iter() {
        let probe = format!("{}:last", tenant.id);
        let rows = router.write_read_unprepared(tenant, &probe).await.unwrap();
        assert_eq!(
            rows.len(),
            committed.get(tenant.id.as_str()).copied().unwrap_or(0) + 1,
            "tenant {}: exactly its committed rows survive",
            tenant.id
        );
    }
    // Sharing asked for, but no announcement can be heard behind the pooler: none.
    assert!(!router.stats().listening);
    router.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leak_hunt_behind_pgbouncer_sqlx() {
    leak_hunt_behind_pgbouncer::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leak_hunt_behind_pgbouncer_deadpool() {
    leak_hunt_behind_pgbouncer::<Deadpool>().await;
}

/// A hostile handler behind a transaction pooler: its transaction leaves a
/// BYPASSRLS role, another tenant's schema, another tenant's setting, a setting of
/// its own and a temporary table of its rows on the *server* connection, which
/// pgbouncer (one server connection per database here) then gives to every other
/// client's next transaction. That transaction starts clean and reads only its
/// own tenant's rows.
async fn hostile_handlers_behind_pgbouncer<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(2, 2, 0);
    let bouncer = pgbouncer(&world, |config| config.pool_size = 1);
    let router: TenantRouter<D> = TenantRouter::<D>::builder()
        .server("main", bouncer.url(&world.app_url()))
        .connection_mode("main", ConnectionMode::TransactionPooler)
        .pool_connections(2)
        .bridge_connections(2)
        .build()
        .unwrap();
    for tenant in world.tenants() {
        let secret = format!("{}:secret", tenant.id);
        router
            .write_read_unprepared(&tenant, &secret)
            .await
            .unwrap();
    }
    for (victim, next) in [
        (&world.pool[0], &world.pool[1]),
        (&world.bridge[0], &world.bridge[1]),
        (&world.bridge[0], &world.pool[1]),
    ] {
        let clean = router.seen(next, None).await.unwrap();
        let dirt = world.hostile_handler_sql(victim);
        router.leave_behind(victim, &dirt, true).await.unwrap();
        let seen = router.seen(next, None).await.unwrap();
        assert_eq!(
            Seen {
                fresh: clean.fresh,
                ..seen
            },
            clean,
            "{} after {}",
            next.id,
            victim.id
        );
        router.leave_behind(victim, &dirt, true).await.unwrap();
        let mine = format!("{}:", next.id);
        let rows = router
            .write_read_unprepared(next, &format!("{mine}after"))
            .await
            .unwrap();
        if let Some(foreign) = rows.iter().find(|s| !s.starts_with(&mine)) {
            panic!("tenant {} saw {foreign:?} after {}", next.id, victim.id);
        }
    }
    router.close().await;
}

#[tokio::test]
async fn hostile_handlers_behind_pgbouncer_sqlx() {
    hostile_handlers_behind_pgbouncer::<Sqlx>().await;
}

#[tokio::test]
async fn hostile_handlers_behind_pgbouncer_deadpool() {
    hostile_handlers_behind_pgbouncer::<Deadpool>().await;
}

/// The failed reset of `isolation.rs` behind pgbouncer (one server connection): a
/// handler ends its transaction early and hoards more temporary tables than the
/// server can lock at once, a `notes` of its own among them, on the server
/// connection every next transaction gets. The next tenant's transaction, whose
/// `DISCARD TEMP` then fails, must fail, not run against the leftover `notes`. (On
/// deadpool the end of the hostile transaction meets the hoard first and closes
/// its connection to pgbouncer, which may then close the server connection: the
/// next tenant then runs on a clean one, and sees its own row only.)
async fn a_failed_reset_behind_pgbouncer<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    // One pool and one bridge tenant of one database: pgbouncer's one server
    // connection serves both.
    let world = World::on(tenants_test_support::postgres_with_few_locks(), 1, 1, 0);
    let bouncer = pgbouncer(&world, |config| config.pool_size = 1);
    let router: TenantRouter<D> = TenantRouter::<D>::builder()
        .server("main", bouncer.url(&world.app_url()))
        .connection_mode("main", ConnectionMode::TransactionPooler)
        .build()
        .unwrap();
    let (hostile, next) = (&world.pool[0], &world.bridge[0]);
    let hoard = World::temp_table_hoard(2000);
    router.leave_behind(hostile, &hoard, true).await.unwrap();
    let secret = format!("{}:x", next.id);
    let seen = router.write_read_unprepared(next, &secret).await;
    assert!(
        seen.as_ref().is_err()
            || seen
                .as_ref()
                .is_ok_and(|seen| seen == std::slice::from_ref(&secret)),
        "{}'s transaction ran after a failed reset: {seen:?}",
        next.id
    );
    router.close().await;
}

// One driver after the other: at once, one's hoard could take the lock table's
// last entries while the other's creates its own.
#[tokio::test]
async fn a_failed_reset_behind_pgbouncer_sqlx_and_deadpool() {
    a_failed_reset_behind_pgbouncer::<Sqlx>().await;
    a_failed_reset_behind_pgbouncer::<Deadpool>().await;
}

/// `verify` checks every server, and finds a transaction pooler behind a server
/// declared direct (here the second one); declared, it is no hazard.
async fn verify_finds_an_undeclared_pooler<D: Driver>() {
    let world = World::new(1, 0, 0);
    let bouncer = pgbouncer(&world, |_| {});
    let behind = bouncer.url(&world.app_url());
    let undeclared: TenantRouter<D> = world
        .router::<D>()
        .server("eu", behind.clone())
        .build()
        .unwrap();
    match undeclared.verify().await {
        Err(Error::UnsafeRole(hazards)) => assert_eq!(
            hazards,
            [Hazard::UndeclaredTransactionPooler {
                server: "eu".into()
            }]
        ),
        other => panic!("expected the undeclared pooler, got {other:?}"),
    }
    let declared: TenantRouter<D> = world
        .router::<D>()
        .server("eu", behind)
        .connection_mode("eu", ConnectionMode::TransactionPooler)
        .build()
        .unwrap();
    declared.verify().await.unwrap();
    let direct: TenantRouter<D> = world.router::<D>().build().unwrap();
    direct.verify().await.unwrap();
}

#[tokio::test]
async fn verify_finds_an_undeclared_pooler_sqlx() {
    verify_finds_an_undeclared_pooler::<Sqlx>().await;
}

#[tokio::test]
async fn verify_finds_an_undeclared_pooler_deadpool() {
    verify_finds_an_undeclared_pooler::<Deadpool>().await;
}

/// Every new silo connection is checked before its first hand-out: behind a
/// pooler that refuses the tenant's startup parameter, one that drops it, and one
/// whose alias for a tenant's database points at another tenant's, each begin
/// fails with a typed error naming the server, what was expected and what was
/// found, never with the other tenant's rows; after a failure, hand-outs are
/// refused at once for a while instead of connecting again each time.
async fn silo_connections_are_checked<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 0, 2);
    let (victim, other) = (&world.silo[0], &world.silo[1]);
    let router_to = |bouncer: &Pgbouncer, mode| -> TenantRouter<D> {
        TenantRouter::<D>::builder()
            .server("main", bouncer.url(&world.app_url()))
            .connection_mode("main", mode)
            .silo_connections_per_tenant(1)
            // sqlx retries a connection that fails its check until this runs out.
            .acquire_timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    TenantRouter::<D>::builder()
        .server("main", world.app_url())
        .build()
        .unwrap()
        .write_read(other, &format!("{}:secret", other.id), true)
        .await
        .unwrap();

    // Refused: pgbouncer does not accept the `options` startup parameter.
    let refusing = pgbouncer(&world, |_| {});
    let router = router_to(&refusing, ConnectionMode::Direct);
    let started = Instant::now();
    for _ in 0..20 {
        let error = router.begin_error(victim).await.expect("begin must fail");
        match root(&error) {
            Error::SiloUnavailable {
                server,
                database: d,
                ..
            } => {
                assert_eq!(&**server, "main");
                assert_eq!(*d, silo_database(victim));
            }
            other => panic!("expected SiloUnavailable, got {other:?}"),
        }
        assert!(error.to_string().contains("TransactionPooler"), "{error}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // pgbouncer logs each refused connection once as "closing because: ...".
    let attempts = refusing
        .log()
        .matches("closing because: unsupported startup parameter")
        .count();
    assert!(
        (1..=2).contains(&attempts),
        "20 refused begins made {attempts} connection attempts"
    );
    router.close().await;

    // Dropped: pgbouncer accepts `options` and drops it.
    let dropping = pgbouncer(&world, |config| {
        config.ignore_startup_parameters.push("options".into());
    });
    let router = router_to(&dropping, ConnectionMode::Direct);
    let error = router.begin_error(victim).await.expect("begin must fail");
    match root(&error) {
        Error::SiloIdentity(mismatch) => {
            assert_eq!(mismatch.server, "main");
            assert_eq!(mismatch.expected_database, mismatch.found_database);
            assert_eq!(mismatch.found_setting.as_deref().unwrap_or(""), "");
        }
        other => panic!("expected SiloIdentity, got {other:?}"),
    }
    assert!(
        error.to_string().contains("ignore_startup_parameters"),
        "{error}"
    );
    router.close().await;

    // Misrouted: the victim's database name leads to the other tenant's database.
    let misrouted = pgbouncer(&world, |config| {
        config
            .aliases
            .push((silo_database(victim), silo_database(other)));
    });
    let router = router_to(&misrouted, ConnectionMode::TransactionPooler);
    let error = router.begin_error(victim).await.expect("begin must fail");
    match root(&error) {
        Error::SiloIdentity(mismatch) => {
            assert_eq!(mismatch.expected_database, silo_database(victim));
            assert_eq!(mismatch.found_database, silo_database(other));
        }
        other => panic!("expected SiloIdentity, got {other:?}"),
    }
    for _ in 0..5 {
        assert!(router.write_read(victim, "never", true).await.is_err());
    }
    // The correctly routed tenant is served, through the same pooler.
    let rows = router
        .write_read(other, &format!("{}:via", other.id), true)
        .await;
    assert_eq!(rows.unwrap().len(), 2);
    router.close().await;
}

/// A silo server that refuses connections: the first begin waits for its
/// connection as long as the acquire timeout allows, then the silo is refused at
/// once, with the same typed error, instead of every request waiting again.
async fn an_unreachable_silo_is_refused_at_once_after_the_first_wait<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 0, 0);
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = nowhere.local_addr().unwrap().port();
    drop(nowhere);
    let router: TenantRouter<D> = world
        .router::<D>()
        .server(
            "down",
            format!("postgres://{}@127.0.0.1:{port}/x", world.app),
        )
        .acquire_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let tenant = Tenant::new(
        "far-away".parse().unwrap(),
        DataModel::Silo {
            database: tenants_core::SqlIdent::new("far_away").unwrap(),
            server: Some("down".into()),
        },
    );
    let error = router.begin_error(&tenant).await.expect("begin must fail");
    assert!(
        matches!(root(&error), Error::SiloUnavailable { server, .. } if &**server == "down"),
        "{error}"
    );
    let started = Instant::now();
    for _ in 0..10 {
        let again = router.begin_error(&tenant).await.expect("begin must fail");
        assert!(
            matches!(root(&again), Error::SiloUnavailable { .. }),
            "{again}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "refused at once: {:?}",
        started.elapsed()
    );
    router.close().await;
}

#[tokio::test]
async fn an_unreachable_silo_is_refused_at_once_after_the_first_wait_sqlx() {
    an_unreachable_silo_is_refused_at_once_after_the_first_wait::<Sqlx>().await;
}

#[tokio::test]
async fn an_unreachable_silo_is_refused_at_once_after_the_first_wait_deadpool() {
    an_unreachable_silo_is_refused_at_once_after_the_first_wait::<Deadpool>().await;
}

#[tokio::test]
async fn silo_connections_are_checked_sqlx() {
    silo_connections_are_checked::<Sqlx>().await;
}

#[tokio::test]
async fn silo_connections_are_checked_deadpool() {
    silo_connections_are_checked::<Deadpool>().await;
}
