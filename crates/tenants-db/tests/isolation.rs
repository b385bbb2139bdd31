//! The router's security invariants against a real PostgreSQL, for both drivers and
//! all three models: no connection leaves the router carrying another tenant's
//! state (leak hunt, cancellation at every await point, killed backends, statement
//! caches under bridge), grants decide what a tenant role may do, and the
//! application role's hazards are reported.
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{CutAfter, Probe, Seen, World, assert_own_rows, committed_rows, until_listening};
use tenants_core::{DataModel, SqlIdent, Tenant, TenantStatus};
use tenants_db::{Deadpool, Driver, Error, Hazard, Sqlx, TenantRole, TenantRouter};

/// Many tenants of every model, many concurrent workers, pools far smaller than
/// the workers (connections are reused constantly, silo pools are closed and
/// reopened within a budget smaller than the silo tenants), bridge tenants sharing
/// statements: every row any worker sees must be its own tenant's.
async fn leak_hunt<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(6, 6, 6);
    let router: TenantRouter<D> = world
        .router::<D>()
        .pool_connections(2)
        .bridge_connections(2)
        .bridge_statement_sharing(true)
        .silo_connections_per_tenant(1)
        .silo_budget(3)
        .build()
        .unwrap();
    until_listening(&router).await;
    let tenants = Arc::new(world.tenants());
    let mut workers = Vec::new();
    for worker in 0..24usize {
        let router = router.clone();
        let tenants = tenants.clone();
        workers.push(tokio::spawn(async move {
            let mut committed: HashMap<String, usize> = HashMap::new();
            for round in 0..30usize {
                let tenant = &tenants[(worker * 7 + round * 13) % tenants.len()];
                let mine = format!("{}:", tenant.id);
                let seen = match round % 3 {
                    0 | 1 => {
                        let commit = round % 3 == 0;
                        let secret = format!("{mine}{worker}-{round}");
                        let seen = router.write_read(tenant, &secret, commit).await.unwrap();
                        assert!(seen.contains(&secret), "{secret} not read back");
                        if commit {
                            *committed.entry(tenant.id.to_string()).or_default() += 1;
                        }
                        seen
                    }
                    _ => router.session_read(tenant).await.unwrap(),
                };
                assert_own_rows(tenant, &seen);
            }
            committed
        }));
    }
    let committed = committed_rows(workers).await;
    for tenant in tenants.iter() {
        let rows = router.session_read(tenant).await.unwrap();
        assert_eq!(
            rows.len(),
            committed.get(tenant.id.as_str()).copied().unwrap_or(0),
            "tenant {}: exactly its committed rows survive",
            tenant.id
        );
    }
    let stats = router.stats();
    assert!(stats.silo_connections <= 3, "{stats:?}");
    router.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leak_hunt_sqlx() {
    leak_hunt::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leak_hunt_deadpool() {
    leak_hunt::<Deadpool>().await;
}

/// Sessions handed out outside a transaction carry their own tenant and nothing
/// else: shared pools set it on every hand-out; silo connections get it when they
/// connect, beside the `options` the server's URL asks for; two tenant records
/// naming one database get a pool each, so no connection serves both. Pools of one
/// connection and a silo budget below the silo tenants force reuse and reopening.
async fn sessions_carry_their_own_tenant<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(2, 2, 2);
    let twin = Tenant::new(
        format!("{}-twin", world.silo[0].id).parse().unwrap(),
        world.silo[0].model.clone(),
    );
    let mut tenants = world.tenants();
    tenants.push(twin);
    let url = world.app_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let router: TenantRouter<D> = TenantRouter::builder()
        .server(
            "main",
            format!("{url}{separator}options=-c%20statement_timeout%3D4321"),
        )
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .silo_budget(2)
        .build()
        .unwrap();
    for round in 0..3 {
        for tenant in &tenants {
            let (setting, timeout) = router.session_settings(tenant).await.unwrap();
            assert_eq!(setting, tenant.id.as_str(), "round {round}");
            assert_eq!(timeout, "4321ms", "round {round}, tenant {}", tenant.id);
        }
    }
    router.close().await;
}

#[tokio::test]
async fn sessions_carry_their_own_tenant_sqlx() {
    sessions_carry_their_own_tenant::<Sqlx>().await;
}

#[tokio::test]
async fn sessions_carry_their_own_tenant_deadpool() {
    sessions_carry_their_own_tenant::<Deadpool>().await;
}

/// A tenant transaction cut at every await point in turn, before and after its
/// settings are in place: on the single pooled connection, the next tenant's
/// transaction must carry only its own tenant setting, schema and role, in a
/// transaction of its own. The server's answers come through a slow proxy, so each
/// await on the server is really pending when the cut comes.
async fn cancellation<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(2, 2, 1);
    let router: TenantRouter<D> = TenantRouter::<D>::builder()
        .server("main", world.slow_app_url().await)
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .silo_budget(1)
        .build()
        .unwrap();
    let pairs = [
        (&world.pool[0], &world.pool[1]),
        (&world.bridge[0], &world.bridge[1]),
        (&world.silo[0], &world.silo[0]),
    ];
    let baseline = |tenant: &Tenant| {
        let router = router.clone();
        let tenant = tenant.clone();
        async move { router.seen(&tenant, None).await.unwrap() }
    };
    for (victim, next) in pairs {
        let expected = baseline(next).await;
        assert!(expected.fresh);
        let mut cut = 0;
        loop {
            let work = {
                let router = router.clone();
                let victim = victim.clone();
                async move {
                    // Run as a tenant role too, so a leaked role would show.
                    router
                        .seen(&victim, Some(TenantRole::Customer))
                        .await
                        .unwrap();
                    let secret = format!("{}:cut-{cut}", victim.id);
                    router.write_read(&victim, &secret, true).await.unwrap()
                }
            };
            let finished = CutAfter::new(work, cut).await.is_some();
            let seen = router.seen(next, None).await.unwrap();
            assert_eq!(seen, expected, "after a cut at poll {cut} of {}", victim.id);
            if finished {
                break;
            }
            cut += 1;
        }
        assert!(cut >= 2, "the work had several await points ({cut})");
    }
    router.close().await;
}

#[tokio::test]
async fn cancellation_sqlx() {
    cancellation::<Sqlx>().await;
}

#[tokio::test]
async fn cancellation_deadpool() {
    cancellation::<Deadpool>().await;
}

/// A handler that leaves session state behind, inside its transaction or on a
/// session hand-out, and commits: a BYPASSRLS role (`SET ROLE`), another tenant's
/// schema (`SET search_path`), another tenant's setting (`set_config(.., false)`),
/// a setting of its own and a temporary table holding its rows (temporary tables
/// come first on every search path). On the single pooled connection of each model, the
/// next tenant starts clean, in a transaction and in a session, and reads only its
/// own rows.
async fn handlers_leave_nothing_behind<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(2, 2, 1);
    // With sharing on, the next bridge tenant's first hand-out also reads its
    // schema's shape on the connection the hostile handler used.
    let router: TenantRouter<D> = world
        .router::<D>()
        .pool_connections(1)
        .bridge_connections(1)
        .bridge_statement_sharing(true)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap();
    until_listening(&router).await;
    let pairs = [
        (&world.pool[0], &world.pool[1]),
        (&world.bridge[0], &world.bridge[1]),
        (&world.silo[0], &world.silo[0]),
    ];
    for tenant in [&world.pool[0], &world.bridge[0], &world.silo[0]] {
        router
            .write_read(tenant, &format!("{}:secret", tenant.id), true)
            .await
            .unwrap();
    }
    for (victim, next) in pairs {
        let in_transaction = router.seen(next, None).await.unwrap();
        let in_session = router.session_seen(next).await.unwrap();
        let dirt = world.hostile_handler_sql(victim);
        // A role the next user takes for one transaction of its session: when that
        // transaction ends, the session's own role must come back, not the dirt's.
        let customer = TenantRole::Customer.role_name(&next.id);
        let local_role = format!("BEGIN; SET LOCAL ROLE {customer}; COMMIT");
        for dirty_in_transaction in [true, false] {
            router
                .leave_behind(victim, &dirt, dirty_in_transaction)
                .await
                .unwrap();
            let seen = router.seen(next, None).await.unwrap();
            // Dropping the leftover temporary table gives the transaction an id.
            let seen = Seen {
                fresh: in_transaction.fresh,
                ..seen
            };
            assert_eq!(seen, in_transaction, "{} after {}", next.id, victim.id);
            assert_eq!(seen.user, world.app);
            assert_eq!(seen.leftover, "");
            assert_eq!(seen.temp_table, "");
            router
                .leave_behind(victim, &dirt, dirty_in_transaction)
                .await
                .unwrap();
            assert_eq!(router.session_seen(next).await.unwrap(), in_session);
            router
                .leave_behind(victim, &dirt, dirty_in_transaction)
                .await
                .unwrap();
            assert_eq!(
                router.session_seen_after(next, &local_role).await.unwrap(),
                in_session,
                "{} after {}'s SET ROLE and its own SET LOCAL ROLE",
                next.id,
                victim.id
            );
            router
                .leave_behind(victim, &dirt, dirty_in_transaction)
                .await
                .unwrap();
            let mine = format!("{}:", next.id);
            for seen in [
                router
                    .write_read(next, &format!("{mine}x"), false)
                    .await
                    .unwrap(),
                router.session_read(next).await.unwrap(),
            ] {
                if let Some(foreign) = seen.iter().find(|s| !s.starts_with(&mine)) {
                    panic!("tenant {} saw {foreign:?} after {}", next.id, victim.id);
                }
            }
        }
    }
    router.close().await;
}

#[tokio::test]
async fn handlers_leave_nothing_behind_sqlx() {
    handlers_leave_nothing_behind::<Sqlx>().await;
}

#[tokio::test]
async fn handlers_leave_nothing_behind_deadpool() {
    handlers_leave_nothing_behind::<Deadpool>().await;
}

/// A handler that leaves, on a session hand-out, a temporary `notes` of its own
/// (temporary tables come first on every search path) and more temporary tables
/// than one transaction can lock (on a server whose lock table is small): the next
/// hand-out's `DISCARD TEMP` fails ("out of shared memory"). The next tenant's work
/// on that connection, in a transaction, in a session or as a tenant role, must
/// then fail, not run without its settings against the leftover `notes`; and the
/// connection must be closed by the next hand-out at the latest, so that the
/// tenant's next work (on the one-connection pool, a new connection) runs, sees its
/// own row and no other. Also with the router told the server is a Citus
/// coordinator (the opening in two messages; sessions refused).
async fn a_failed_reset_fails_the_next_tenants_work<D: Driver>(citus: bool)
where
    TenantRouter<D>: Probe,
{
    let world = World::on(tenants_test_support::postgres_with_few_locks(), 2, 2, 0);
    // A router per round: for a while after a failed opening, sqlx checks every
    // connection coming back, and would find the next round's hoard before its
    // victim does.
    let router = || {
        let router = world.router::<D>();
        let router = if citus { router.citus("main") } else { router };
        let router: TenantRouter<D> = router
            .pool_connections(1)
            .bridge_connections(1)
            .build()
            .unwrap();
        router
    };
    // The hoarding session marks itself, to be seen in `pg_stat_activity`: a failed
    // opening rolls back the reset of its `application_name` with the rest.
    let marker = "tenants-hoard";
    let hoard = format!(
        "SET application_name = '{marker}'; {}",
        World::temp_table_hoard(2000)
    );
    let victims: &[&str] = if citus {
        &["transaction", "transaction as a role"]
    } else {
        &["transaction", "session", "transaction as a role"]
    };
    for (hostile, next) in [
        (&world.pool[0], &world.pool[1]),
        (&world.bridge[0], &world.bridge[1]),
    ] {
        for &victim in victims {
            let router = router();
            if citus {
                // Sessions are refused: a transaction that ends its own and goes on.
                router.leave_behind(hostile, &hoard, true).await.unwrap();
            } else {
                router.leave_behind(hostile, &hoard, false).await.unwrap();
            }
            let attempt = format!("{}:attempt", next.id);
            let work = match victim {
                "transaction" => router.write_read(next, &attempt, true).await,
                "session" => router.session_read(next).await,
                _ => {
                    let insert = format!("INSERT INTO notes (secret) VALUES ('{attempt}')");
                    let done = router.run_as(next, TenantRole::Developer, &insert).await;
                    done.map(|rows| vec![rows.to_string()])
                }
            };
            assert!(
                work.is_err(),
                "{}'s {victim} ran after a failed reset: {work:?}",
                next.id
            );
            // A connection given back before the router heard of the failure is
            // closed at its next hand-out. Its outcome does not matter: a backend
            // leaving with a hoard takes the lock table's free entries for a
            // moment, and any statement may fail for want of one.
            let _ = router.write_read(next, &attempt, false).await;
            assert!(
                world.until_gone(marker).await,
                "the connection whose reset failed ({victim}) was not closed"
            );
            let secret = format!("{}:after-{victim}", next.id);
            let after = router.write_read(next, &secret, true).await;
            let seen = after.unwrap_or_else(|e| {
                panic!(
                    "{}'s next transaction, after a failed reset ({victim}): {e}",
                    next.id
                )
            });
            assert_own_rows(next, &seen);
            assert!(
                seen.contains(&secret) && !seen.contains(&attempt),
                "{seen:?}"
            );
            if !citus {
                let seen = router.session_read(next).await.unwrap_or_else(|e| {
                    panic!(
                        "{}'s next session, after a failed reset ({victim}): {e}",
                        next.id
                    )
                });
                assert_own_rows(next, &seen);
                assert!(seen.contains(&secret), "{seen:?}");
            }
            router.close().await;
            // The closed connection's backend left its hoard behind.
            world.drop_orphaned_temp_tables();
        }
    }
}

// Both drivers in one test, one after the other: at once, one's hoard could take
// the lock table's last entries while the other's creates its own. On worker
// threads, where a connection can go back to its pool before the router hears that
// its opening failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reset_fails_the_next_tenants_work_sqlx_and_deadpool() {
    a_failed_reset_fails_the_next_tenants_work::<Sqlx>(false).await;
    a_failed_reset_fails_the_next_tenants_work::<Deadpool>(false).await;
    a_failed_reset_fails_the_next_tenants_work::<Sqlx>(true).await;
    // On deadpool a hoard left in a transaction never reaches the next tenant.
    a_hoard_left_in_a_transaction_goes_with_its_connection().await;
}

/// deadpool ends every transaction with a check (`DISCARD TEMP`): a handler that
/// hoards temporary tables in its transaction takes its connection with it, and
/// the next tenant's work runs on another.
async fn a_hoard_left_in_a_transaction_goes_with_its_connection() {
    let world = World::on(tenants_test_support::postgres_with_few_locks(), 2, 0, 0);
    let router: TenantRouter<Deadpool> = world
        .router::<Deadpool>()
        .citus("main")
        .pool_connections(1)
        .build()
        .unwrap();
    let marker = "tenants-hoard";
    let hoard = format!(
        "SET application_name = '{marker}'; {}",
        World::temp_table_hoard(2000)
    );
    let (hostile, next) = (&world.pool[0], &world.pool[1]);
    router.leave_behind(hostile, &hoard, true).await.unwrap();
    assert!(
        world.until_gone(marker).await,
        "the connection the hoard was left on was not closed"
    );
    let secret = format!("{}:after", next.id);
    let after = router.write_read(next, &secret, true).await;
    assert_eq!(after, Ok(vec![secret]));
    router.close().await;
    world.drop_orphaned_temp_tables();
}

/// A session handler that returns its connection inside an open transaction (a
/// `BEGIN`, a write, then an early return): the next tenant's session hand-out on
/// that connection must not commit the write (its opening runs no `COMMIT`).
async fn an_abandoned_transaction_is_not_committed_by_the_next_session<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(2, 0, 0);
    let router: TenantRouter<D> = world.router::<D>().pool_connections(1).build().unwrap();
    let (abandoning, next) = (&world.pool[0], &world.pool[1]);
    let abandoned = format!("{}:abandoned", abandoning.id);
    let sql = format!("BEGIN; INSERT INTO notes (secret) VALUES ('{abandoned}')");
    router.leave_behind(abandoning, &sql, false).await.unwrap();
    let _ = router.session_read(next).await;
    // Closing the router ends the connection: only what was committed survives.
    router.close().await;
    let fresh: TenantRouter<D> = world.router::<D>().build().unwrap();
    let seen = fresh.read(abandoning).await.unwrap();
    fresh.close().await;
    assert!(
        !seen.contains(&abandoned),
        "{}'s session committed {}'s abandoned write: {seen:?}",
        next.id,
        abandoning.id
    );
}

#[tokio::test]
async fn an_abandoned_transaction_is_not_committed_by_the_next_session_sqlx() {
    an_abandoned_transaction_is_not_committed_by_the_next_session::<Sqlx>().await;
}

#[tokio::test]
async fn an_abandoned_transaction_is_not_committed_by_the_next_session_deadpool() {
    an_abandoned_transaction_is_not_committed_by_the_next_session::<Deadpool>().await;
}

/// A backend killed in the middle of a tenant transaction: the caller gets an
/// error promptly (no hang), and the next transaction on the same one-connection
/// pool gets a working connection at once.
async fn killed_backends<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(1, 1, 1);
    let router: TenantRouter<D> = world
        .router::<D>()
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap();
    for tenant in world.tenants() {
        let kill = |pid: i32| {
            world.admin(&format!("SELECT pg_terminate_backend({pid})"));
        };
        let error = tokio::time::timeout(
            Duration::from_secs(10),
            router.killed_mid_transaction(&tenant, kill),
        )
        .await
        .expect("a killed backend must not hang the caller")
        .unwrap();
        assert!(!error.is_empty());
        let secret = format!("{}:after-kill", tenant.id);
        // The one connection of each pool was the killed one: the next transaction
        // must get a working connection, not the broken one.
        let seen = tokio::time::timeout(
            Duration::from_secs(10),
            router.write_read(&tenant, &secret, true),
        )
        .await
        .expect("no hang after a kill")
        .unwrap_or_else(|e| panic!("{}: first use after a kill: {e}", tenant.id));
        assert_eq!(seen, [secret]);
    }
    router.close().await;
}

#[tokio::test]
async fn killed_backends_sqlx() {
    killed_backends::<Sqlx>().await;
}

#[tokio::test]
async fn killed_backends_deadpool() {
    killed_backends::<Deadpool>().await;
}

/// A pooled connection whose backend was terminated while it sat idle (a server
/// restart, an idle timeout on the server or a proxy): the next tenant
/// transaction, and the next session, on the one-connection pools are served on a
/// new connection, with no error for the caller and no silo back-off.
async fn idle_connections_killed_are_replaced<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(1, 1, 1);
    let router: TenantRouter<D> = world
        .router::<D>()
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .build()
        .unwrap();
    let kill_idle = || async {
        world.admin(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = '{}' AND state = 'idle' AND query NOT ILIKE 'LISTEN%'",
            world.app
        ));
        // Let the terminated backends' goodbyes reach the client sockets.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for tenant in world.tenants() {
        let first = format!("{}:before", tenant.id);
        router.write_read(&tenant, &first, true).await.unwrap();
        kill_idle().await;
        let second = format!("{}:after", tenant.id);
        let seen = router
            .write_read(&tenant, &second, true)
            .await
            .unwrap_or_else(|e| panic!("{}: first use after an idle kill: {e}", tenant.id));
        assert_eq!(seen, [first, second]);
        // A session hand-out too (the shared pools send no ping before it).
        kill_idle().await;
        router
            .session_seen(&tenant)
            .await
            .unwrap_or_else(|e| panic!("{}: first session after an idle kill: {e}", tenant.id));
    }
    router.close().await;
}

#[tokio::test]
async fn idle_connections_killed_are_replaced_sqlx() {
    idle_connections_killed_are_replaced::<Sqlx>().await;
}

#[tokio::test]
async fn idle_connections_killed_are_replaced_deadpool() {
    idle_connections_killed_are_replaced::<Deadpool>().await;
}

/// A bridge connection serving many transactions of different tenants does not
/// pile up prepared statements on the server (each holds its plan's memory for
/// the backend's life): schemas of one shape share one statement per SQL text,
/// and a schema of another shape gets its own in place of theirs (deadpool clears
/// the connection's cache; sqlx's second bridge pool closes them when the
/// connection comes back).
async fn bridge_connections_do_not_pile_up_prepared_statements<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 3, 0);
    world.admin(&format!(
        "ALTER TABLE {}.notes ADD COLUMN done boolean NOT NULL DEFAULT false",
        schema_of(&world.bridge[2])
    ));
    let router: TenantRouter<D> = sharing_router(&world).await;
    let tenants = world.tenants();
    for round in 0..20 {
        for tenant in &tenants {
            router
                .write_read(tenant, &format!("{}:{round}", tenant.id), true)
                .await
                .unwrap();
        }
    }
    for tenant in &tenants {
        let held = router.prepared_statements(tenant).await.unwrap();
        // The statements of one shape at most (write_read prepares two).
        assert!(
            held <= 2,
            "{held} prepared statements after 60 transactions"
        );
    }
    router.close().await;
}

#[tokio::test]
async fn bridge_connections_do_not_pile_up_prepared_statements_sqlx() {
    bridge_connections_do_not_pile_up_prepared_statements::<Sqlx>().await;
}

#[tokio::test]
async fn bridge_connections_do_not_pile_up_prepared_statements_deadpool() {
    bridge_connections_do_not_pile_up_prepared_statements::<Deadpool>().await;
}

/// A hostile handler that deallocates the statements sqlx keeps for its hand-out
/// (`DEALLOCATE ALL`) on sqlx's bridge pool whose statements last one hand-out
/// (for schemas not of the common shape): the connection still comes back and
/// serves the next tenant (closing a statement that is gone is no error in
/// PostgreSQL's protocol).
#[tokio::test]
async fn a_handler_deallocating_its_statements_leaves_the_bridge_connection_usable_sqlx() {
    let world = World::new(0, 3, 0);
    // Three shapes: the first tenant's is the common one, the others share a
    // connection of the second pool.
    for (tenant, column) in world.bridge[1..].iter().zip(["x", "y"]) {
        world.admin(&format!(
            "ALTER TABLE {}.notes ADD COLUMN {column} int",
            schema_of(tenant)
        ));
    }
    let router: TenantRouter<Sqlx> = sharing_router(&world).await;
    router.read(&world.bridge[0]).await.unwrap();
    let (first, next) = (&world.bridge[1], &world.bridge[2]);
    let backend = router.backend(first).await.unwrap();
    let mut tx = router.begin(first).await.unwrap();
    sqlx::query("SELECT count(*) FROM notes")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql("DEALLOCATE ALL")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let secret = format!("{}:after", next.id);
    assert_eq!(
        router.write_read(next, &secret, true).await.unwrap(),
        [secret]
    );
    assert_eq!(
        router.backend(next).await.unwrap(),
        backend,
        "the connection was kept"
    );
    router.close().await;
}

/// A bridge tenant's own type (an enum of its schema, named as in every other
/// schema), bound by a statement sqlx does not keep (`persistent(false)`, as behind
/// a pooler): the next tenant on the connection gets its own type, not the type id
/// sqlx looked up for the previous one. sqlx forgets those ids only when its
/// statement cache is emptied, which its bridge pool for schemas not of the common
/// shape (all but one here: each has a type of its own) does at every return.
#[tokio::test]
async fn a_bridge_tenants_own_types_are_its_own_sqlx() {
    let world = World::new(0, 3, 0);
    for tenant in &world.bridge {
        let DataModel::Bridge { schema } = &tenant.model else {
            unreachable!()
        };
        world.admin(&format!(
            "CREATE TYPE {schema}.mood AS ENUM ('happy', 'sad');
             CREATE TABLE {schema}.feelings (m {schema}.mood);
             GRANT SELECT, INSERT ON {schema}.feelings TO {app};
             GRANT USAGE ON TYPE {schema}.mood TO {app};",
            app = world.app
        ));
    }
    let router: TenantRouter<Sqlx> = sharing_router(&world).await;
    // The second and third tenants take turns on one connection.
    for tenant in world.bridge.iter().chain(&world.bridge[1..]) {
        let mut tx = router.begin(tenant).await.unwrap();
        sqlx::query("INSERT INTO feelings (m) VALUES ($1)")
            .bind(Mood("happy"))
            .persistent(false)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", tenant.id));
        tx.commit().await.unwrap();
    }
    assert_eq!(
        router.backend(&world.bridge[1]).await.unwrap(),
        router.backend(&world.bridge[2]).await.unwrap(),
        "one connection"
    );
    router.close().await;
}

/// A value of a type sqlx looks up by name: `mood`, whichever schema is first on
/// the search path.
struct Mood(&'static str);

impl sqlx::Type<sqlx::Postgres> for Mood {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_name("mood")
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Mood {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// Connections older than the router's `connection_lifetime` are closed instead of
/// handed out (what bounds the catalog memory a backend builds up), on every model:
/// after the lifetime, every tenant's next transaction runs on a new backend.
async fn connections_are_replaced_after_their_lifetime<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(1, 1, 1);
    let router: TenantRouter<D> = world
        .router::<D>()
        .pool_connections(1)
        .bridge_connections(1)
        .silo_connections_per_tenant(1)
        .connection_lifetime(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut before = Vec::new();
    for tenant in world.tenants() {
        before.push(router.backend(&tenant).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (tenant, before) in world.tenants().iter().zip(before) {
        let after = router.backend(tenant).await.unwrap();
        assert_ne!(
            before, after,
            "{}: served by the same backend past its lifetime",
            tenant.id
        );
    }
    router.close().await;
}

#[tokio::test]
async fn connections_are_replaced_after_their_lifetime_sqlx() {
    connections_are_replaced_after_their_lifetime::<Sqlx>().await;
}

#[tokio::test]
async fn connections_are_replaced_after_their_lifetime_deadpool() {
    connections_are_replaced_after_their_lifetime::<Deadpool>().await;
}

/// The migration listener's connection killed: the router listens again on a new
/// one, counts the gap as a possible missed migration (retiring what may be
/// stale), and hears the next announcement.
async fn the_migration_listener_comes_back<D: Driver>() {
    let world = World::new(1, 0, 0);
    let router: TenantRouter<D> = world.router::<D>().build().unwrap();
    let listening = || {
        world.admin(&format!(
            "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_activity \
             WHERE usename = '{}' AND query ILIKE 'LISTEN%'",
            world.app
        ))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let wait = |what: &str| {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
    };
    let first = loop {
        let pid = listening();
        if !pid.is_empty() {
            break pid;
        }
        wait("the first LISTEN");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    world.admin(&format!("SELECT pg_terminate_backend({first})"));
    while router.stats().migrations_heard < 1 {
        wait("the reconnection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = listening();
    assert!(!second.is_empty() && second != first, "{first} -> {second}");
    world.admin("SELECT pg_notify('tenants_migrated', '')");
    while router.stats().migrations_heard < 2 {
        wait("the announcement after reconnecting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(router.stats().listening);
    router.close().await;
}

#[tokio::test]
async fn the_migration_listener_comes_back_sqlx() {
    the_migration_listener_comes_back::<Sqlx>().await;
}

#[tokio::test]
async fn the_migration_listener_comes_back_deadpool() {
    the_migration_listener_comes_back::<Deadpool>().await;
}

/// Two bridge tenants whose schemas differ (one migrated further) through the same
/// pooled connection, alternating: each reads its own columns, with no "cached
/// plan must not change result type" error.
async fn bridge_statement_cache<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 2, 0);
    let (old, new) = (&world.bridge[0], &world.bridge[1]);
    world.admin(&format!(
        "ALTER TABLE {}.notes ADD COLUMN done boolean NOT NULL DEFAULT false",
        schema_of(new)
    ));
    let router: TenantRouter<D> = world.router::<D>().bridge_connections(1).build().unwrap();
    each_reads_its_own_columns(&router, old, new).await;
    router.close().await;
}

/// Gives `old` (columns `id`, `secret`) and `new` (also `done`) a row each, then
/// reads `SELECT * FROM notes` for them in turn: each sees its own columns.
async fn each_reads_its_own_columns<D: Driver>(router: &TenantRouter<D>, old: &Tenant, new: &Tenant)
where
    TenantRouter<D>: Probe,
{
    for tenant in [old, new] {
        let secret = format!("{}:row", tenant.id);
        router.write_read(tenant, &secret, true).await.unwrap();
    }
    for _ in 0..3 {
        assert_eq!(router.columns(old).await.unwrap(), ["id", "secret"]);
        assert_eq!(router.columns(new).await.unwrap(), ["id", "secret", "done"]);
    }
}

#[tokio::test]
async fn bridge_statement_cache_sqlx() {
    bridge_statement_cache::<Sqlx>().await;
}

#[tokio::test]
async fn bridge_statement_cache_deadpool() {
    bridge_statement_cache::<Deadpool>().await;
}

/// The schema of a bridge tenant.
fn schema_of(tenant: &Tenant) -> SqlIdent {
    match &tenant.model {
        DataModel::Bridge { schema } => schema.clone(),
        _ => unreachable!("a bridge tenant"),
    }
}

/// A router whose bridge tenants of one shape share statements, on one bridge
/// connection (on sqlx, one per bridge pool), once it listens for migration
/// announcements (schemas share only from then on).
async fn sharing_router<D: Driver>(world: &World) -> TenantRouter<D> {
    let router = world
        .router::<D>()
        .bridge_connections(1)
        .bridge_statement_sharing(true)
        .build()
        .unwrap();
    until_listening(&router).await;
    router
}

/// When the connection's backend last prepared a statement, in microseconds.
const LAST_PREPARED: &str = "SELECT coalesce((extract(epoch FROM max(prepare_time)) * 1000000)::bigint, 0) \
     FROM pg_prepared_statements";

/// Bridge tenants whose schemas have the same shape share a connection's prepared
/// statements: after each has been served once, alternating them through one
/// connection prepares nothing more, and each still reads its own rows.
async fn bridge_tenants_of_one_shape_share_statements<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 3, 0);
    let router: TenantRouter<D> = sharing_router(&world).await;
    let tenants = world.tenants();
    for tenant in &tenants {
        router
            .write_read(tenant, &format!("{}:first", tenant.id), true)
            .await
            .unwrap();
    }
    let prepared = router.count(&tenants[0], LAST_PREPARED).await.unwrap();
    assert!(prepared > 0, "no statement was prepared");
    for round in 0..5 {
        for tenant in &tenants {
            let seen = router
                .write_read(tenant, &format!("{}:{round}", tenant.id), true)
                .await
                .unwrap();
            assert_eq!(seen.len(), round + 2, "{}: {seen:?}", tenant.id);
            assert_own_rows(tenant, &seen);
        }
    }
    let last = router.count(&tenants[1], LAST_PREPARED).await.unwrap();
    assert_eq!(last, prepared, "statements were prepared again");
    router.close().await;
}

#[tokio::test]
async fn bridge_tenants_of_one_shape_share_statements_sqlx() {
    bridge_tenants_of_one_shape_share_statements::<Sqlx>().await;
}

#[tokio::test]
async fn bridge_tenants_of_one_shape_share_statements_deadpool() {
    bridge_tenants_of_one_shape_share_statements::<Deadpool>().await;
}

/// Two of three bridge schemas migrated while the router runs, each announced on
/// `tenants_migrated` with `payload` (the schema's own announcement, or the empty
/// one that stands for any migration): the migrated ones read their new columns
/// and the other its old ones, through one connection, with no "cached plan must
/// not change result type" error (the migrated schemas' shape is read again; on
/// sqlx it becomes the common shape, and the pool holding the old one's
/// statements is replaced).
async fn announced_bridge_migrations_change_the_shared_statements<D: Driver>(
    payload: fn(&SqlIdent) -> String,
) where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 3, 0);
    let router: TenantRouter<D> = sharing_router(&world).await;
    let tenants = world.tenants();
    for tenant in &tenants {
        router.write_read(tenant, "row", true).await.unwrap();
        assert_eq!(router.columns(tenant).await.unwrap(), ["id", "secret"]);
    }
    let heard = router.stats().migrations_heard;
    for tenant in &tenants[1..] {
        let schema = schema_of(tenant);
        world.admin(&format!(
            "ALTER TABLE {schema}.notes ADD COLUMN done boolean NOT NULL DEFAULT false; \
             SELECT pg_notify('tenants_migrated', '{}')",
            payload(&schema)
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while router.stats().migrations_heard < heard + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "announcements not heard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        for (i, tenant) in tenants.iter().enumerate() {
            let expected: &[&str] = if i == 0 {
                &["id", "secret"]
            } else {
                &["id", "secret", "done"]
            };
            assert_eq!(
                router.columns(tenant).await.unwrap(),
                expected,
                "{}",
                tenant.id
            );
        }
    }
    router.close().await;
}

/// The application role's own default `search_path` puts a schema with empty
/// tables named `pg_class`, `pg_type` and `pg_proc` before the catalogs, which any role may do for itself
/// (`ALTER ROLE CURRENT_USER SET search_path = ..`): the shapes the router reads
/// still come from the catalogs, so two bridge schemas of different shapes do not
/// share statements (they would fail with "cached plan must not change result
/// type").
async fn schema_shapes_are_read_from_the_catalogs<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 2, 0);
    let (old, new) = (&world.bridge[0], &world.bridge[1]);
    let decoy = format!("{}_decoy", schema_of(old));
    world.admin(&format!(
        "ALTER TABLE {}.notes ADD COLUMN done boolean NOT NULL DEFAULT false;
         CREATE SCHEMA {decoy};
         CREATE TABLE {decoy}.pg_class (LIKE pg_catalog.pg_class);
         CREATE TABLE {decoy}.pg_type (LIKE pg_catalog.pg_type);
         CREATE TABLE {decoy}.pg_proc (LIKE pg_catalog.pg_proc);
         GRANT USAGE ON SCHEMA {decoy} TO {app};
         GRANT SELECT ON ALL TABLES IN SCHEMA {decoy} TO {app};
         ALTER ROLE {app} SET search_path = {decoy}, pg_catalog;",
        schema_of(new),
        app = world.app
    ));
    let router: TenantRouter<D> = sharing_router(&world).await;
    each_reads_its_own_columns(&router, old, new).await;
    router.close().await;
}

#[tokio::test]
async fn schema_shapes_are_read_from_the_catalogs_sqlx() {
    schema_shapes_are_read_from_the_catalogs::<Sqlx>().await;
}

#[tokio::test]
async fn schema_shapes_are_read_from_the_catalogs_deadpool() {
    schema_shapes_are_read_from_the_catalogs::<Deadpool>().await;
}

/// A bridge schema migrated, and served a statement new to the connection
/// before its migration is announced: the statement, prepared in the new shape
/// under the old shape's key, does not reach the schemas still of the old shape
/// once the announcement is heard.
async fn statements_prepared_before_an_announcement_are_dropped<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 3, 0);
    let router: TenantRouter<D> = sharing_router(&world).await;
    let tenants = world.tenants();
    for tenant in &tenants {
        let secret = format!("{}:row", tenant.id);
        router.write_read(tenant, &secret, true).await.unwrap();
    }
    let (migrated, schema) = (&tenants[2], schema_of(&tenants[2]));
    world.admin(&format!(
        "ALTER TABLE {schema}.notes ADD COLUMN done boolean NOT NULL DEFAULT false"
    ));
    const NEW_TEXT: &str = "SELECT * FROM notes WHERE true";
    assert_eq!(
        router.columns_of(migrated, NEW_TEXT).await.unwrap(),
        ["id", "secret", "done"]
    );
    let heard = router.stats().migrations_heard;
    world.admin(&format!(
        "SELECT pg_notify('tenants_migrated', 'schema:{schema}')"
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while router.stats().migrations_heard <= heard {
        assert!(
            tokio::time::Instant::now() < deadline,
            "announcement not heard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for tenant in &tenants[..2] {
        assert_eq!(
            router.columns_of(tenant, NEW_TEXT).await.unwrap(),
            ["id", "secret"],
            "{}",
            tenant.id
        );
    }
    router.close().await;
}

// Several threads: see `announced_bridge_migrations_change_the_shared_statements_sqlx`.
#[tokio::test(flavor = "multi_thread")]
async fn statements_prepared_before_an_announcement_are_dropped_sqlx() {
    statements_prepared_before_an_announcement_are_dropped::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_prepared_before_an_announcement_are_dropped_deadpool() {
    statements_prepared_before_an_announcement_are_dropped::<Deadpool>().await;
}

/// Each bridge schema has an enum `mood` of its own that no column uses: its
/// type id alone tells the schemas apart, so a statement comparing a value with
/// it never runs with the other schema's type.
#[tokio::test]
async fn a_bridge_tenants_own_type_in_no_column_is_its_own_sqlx() {
    let world = World::new(0, 2, 0);
    for tenant in &world.bridge {
        world.admin(&format!(
            "CREATE TYPE {schema}.mood AS ENUM ('happy', 'sad');
             GRANT USAGE ON TYPE {schema}.mood TO {app};",
            schema = schema_of(tenant),
            app = world.app
        ));
    }
    let router: TenantRouter<Sqlx> = sharing_router(&world).await;
    for _ in 0..2 {
        for tenant in &world.bridge {
            let mut tx = router.begin(tenant).await.unwrap();
            let happy: bool = sqlx::query_scalar("SELECT $1 = 'happy'::mood")
                .bind(Mood("happy"))
                .fetch_one(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", tenant.id));
            assert!(happy);
        }
    }
    router.close().await;
}

/// Without statement sharing, one bridge tenant served twice in a row on one
/// connection, its schema migrated and announced in between: the statement the
/// connection kept for the schema is dropped, and the next read sees the new
/// columns.
async fn an_announced_migration_drops_the_schemas_own_statements<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(0, 1, 0);
    let router: TenantRouter<D> = world.router::<D>().bridge_connections(1).build().unwrap();
    until_listening(&router).await;
    let tenant = &world.bridge[0];
    let secret = format!("{}:row", tenant.id);
    router.write_read(tenant, &secret, true).await.unwrap();
    assert_eq!(router.columns(tenant).await.unwrap(), ["id", "secret"]);
    let heard = router.stats().migrations_heard;
    let schema = schema_of(tenant);
    world.admin(&format!(
        "ALTER TABLE {schema}.notes ADD COLUMN done boolean NOT NULL DEFAULT false; \
         SELECT pg_notify('tenants_migrated', 'schema:{schema}')"
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while router.stats().migrations_heard <= heard {
        assert!(
            tokio::time::Instant::now() < deadline,
            "announcement not heard"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        router.columns(tenant).await.unwrap(),
        ["id", "secret", "done"]
    );
    router.close().await;
}

// Several threads: see `announced_bridge_migrations_change_the_shared_statements_sqlx`.
#[tokio::test(flavor = "multi_thread")]
async fn an_announced_migration_drops_the_schemas_own_statements_sqlx() {
    an_announced_migration_drops_the_schemas_own_statements::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_announced_migration_drops_the_schemas_own_statements_deadpool() {
    an_announced_migration_drops_the_schemas_own_statements::<Deadpool>().await;
}

fn schema_payload(schema: &SqlIdent) -> String {
    format!("schema:{schema}")
}

fn empty_payload(_: &SqlIdent) -> String {
    String::new()
}

// Several threads: `World::admin` blocks its thread while the rollbacks of the
// probes' dropped transactions, which hold locks it waits for, run.
#[tokio::test(flavor = "multi_thread")]
async fn announced_bridge_migrations_change_the_shared_statements_sqlx() {
    announced_bridge_migrations_change_the_shared_statements::<Sqlx>(schema_payload).await;
    announced_bridge_migrations_change_the_shared_statements::<Sqlx>(empty_payload).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn announced_bridge_migrations_change_the_shared_statements_deadpool() {
    announced_bridge_migrations_change_the_shared_statements::<Deadpool>(schema_payload).await;
    announced_bridge_migrations_change_the_shared_statements::<Deadpool>(empty_payload).await;
}

/// The tenant roles' grants, not application code, decide: an admin deletes, a
/// developer inserts but cannot delete, a customer only reads. The role ends with
/// the transaction.
async fn roles_are_enforced_by_grants<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::new(1, 1, 1);
    let router: TenantRouter<D> = world.router::<D>().build().unwrap();
    const DENIED: &str = "42501";
    for tenant in world.tenants() {
        let insert = format!("INSERT INTO notes (secret) VALUES ('{}:x')", tenant.id);
        assert_eq!(
            router.run_as(&tenant, TenantRole::Developer, &insert).await,
            Ok(1)
        );
        assert_eq!(
            router
                .run_as(&tenant, TenantRole::Developer, "DELETE FROM notes")
                .await,
            Err(DENIED.into()),
            "{}",
            tenant.id
        );
        assert_eq!(
            router.run_as(&tenant, TenantRole::Customer, &insert).await,
            Err(DENIED.into())
        );
        assert_eq!(
            router
                .run_as(&tenant, TenantRole::Customer, "SELECT * FROM notes")
                .await,
            Ok(1)
        );
        assert_eq!(
            router
                .run_as(&tenant, TenantRole::Admin, "DELETE FROM notes")
                .await,
            Ok(1)
        );
        let seen = router
            .seen(&tenant, Some(TenantRole::Customer))
            .await
            .unwrap();
        assert_eq!(
            seen.user,
            TenantRole::Customer.role_name(&tenant.id).as_str()
        );
        assert_eq!(router.seen(&tenant, None).await.unwrap().user, world.app);
    }
    // A role the application may not take is refused, and the connection stays
    // usable: the refusal happens before the transaction opens.
    world.admin(&format!(
        "REVOKE {} FROM {}",
        TenantRole::Admin.role_name(&world.pool[0].id),
        world.app
    ));
    let router: TenantRouter<D> = world.router::<D>().pool_connections(1).build().unwrap();
    let connection = router.backend(&world.pool[0]).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            router
                .run_as(&world.pool[0], TenantRole::Admin, "SELECT 1")
                .await,
            Err(DENIED.into())
        );
        assert!(router.seen(&world.pool[0], None).await.unwrap().fresh);
        // Not closed as a connection whose opening failed.
        assert_eq!(router.backend(&world.pool[0]).await, Ok(connection));
    }
    router.close().await;
}

#[tokio::test]
async fn roles_are_enforced_by_grants_sqlx() {
    roles_are_enforced_by_grants::<Sqlx>().await;
}

#[tokio::test]
async fn roles_are_enforced_by_grants_deadpool() {
    roles_are_enforced_by_grants::<Deadpool>().await;
}

/// `verify` lists each hazard of the application role, for both drivers.
#[tokio::test]
async fn verify_reports_the_application_roles_hazards() {
    let world = World::new(1, 0, 0);
    let sqlx: TenantRouter<Sqlx> = world.router::<Sqlx>().build().unwrap();
    let deadpool: TenantRouter<Deadpool> = world.router::<Deadpool>().build().unwrap();
    sqlx.verify().await.unwrap();
    deadpool.verify().await.unwrap();

    let hazards = |result: Result<(), Error>| match result {
        Err(Error::UnsafeRole(hazards)) => hazards,
        other => panic!("expected hazards, got {other:?}"),
    };
    world.admin(&format!("ALTER ROLE {} BYPASSRLS", world.app));
    world.admin("ALTER TABLE notes NO FORCE ROW LEVEL SECURITY");
    let expected = vec![
        Hazard::BypassRls {
            role: world.app.clone(),
        },
        Hazard::RlsNotForced {
            table: "public.notes".into(),
        },
    ];
    assert_eq!(hazards(sqlx.verify().await), expected);
    assert_eq!(hazards(deadpool.verify().await), expected);

    world.admin(&format!(
        "ALTER ROLE {app} NOBYPASSRLS; ALTER TABLE notes FORCE ROW LEVEL SECURITY; \
         ALTER TABLE notes DISABLE ROW LEVEL SECURITY; ALTER TABLE notes OWNER TO {app}",
        app = world.app
    ));
    let found = hazards(sqlx.verify().await);
    assert!(found.contains(&Hazard::OwnsPoolTable {
        table: "public.notes".into()
    }));
    assert!(found.contains(&Hazard::RlsDisabled {
        table: "public.notes".into()
    }));

    world.admin(&format!("ALTER ROLE {} SUPERUSER", world.app));
    assert!(
        hazards(deadpool.verify().await).contains(&Hazard::Superuser {
            role: world.app.clone()
        })
    );
    world.admin(&format!("ALTER ROLE {} NOSUPERUSER", world.app));
    sqlx.close().await;
    deadpool.close().await;
}

/// Built inside a runtime, the router checks its role at once and logs a warning.
#[tokio::test]
async fn the_router_warns_at_start_about_a_superuser() {
    let pg = tenants_test_support::postgres();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let writer = {
        let lines = lines.clone();
        move || Capture(lines.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let router: TenantRouter<Sqlx> = TenantRouter::builder()
        .server("main", pg.admin_url())
        .build()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logged = String::from_utf8_lossy(&lines.lock().unwrap()).into_owned();
        if logged.contains("WARN") && logged.contains("superuser") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no warning: {logged:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    router.close().await;
}

struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Suspended and deleted tenants, and silos on unknown servers, are refused before
/// any connection is taken; unsafe schema and database names cannot even be loaded.
#[tokio::test]
async fn refusals_come_before_any_sql() {
    let router: TenantRouter<Sqlx> = TenantRouter::builder()
        // Nothing listens here: any attempt to connect would fail differently.
        .server("main", "postgres://app@127.0.0.1:9/app")
        .build()
        .unwrap();
    let acme = Tenant::new("acme".parse().unwrap(), DataModel::Pool);
    for status in [TenantStatus::Suspended, TenantStatus::Deleted] {
        let err = router
            .begin(&acme.clone().with_status(status))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Inactive { .. }), "{err}");
    }
    let elsewhere = Tenant::new(
        "acme".parse().unwrap(),
        DataModel::Silo {
            database: SqlIdent::new("acme").unwrap(),
            server: Some("moon".into()),
        },
    );
    let err = router.begin(&elsewhere).await.unwrap_err();
    assert!(matches!(err, Error::UnknownServer { .. }), "{err}");
    assert!(err.to_string().contains("moon"));

    for (key, name) in [
        ("schema", "acme\"; DROP TABLE notes; --"),
        ("database", "Acme"),
        ("schema", "pg_catalog"),
    ] {
        let record = serde_json::json!({
            "id": "acme",
            "model": if key == "schema" { "bridge" } else { "silo" },
            key: name,
        });
        let err = serde_json::from_value::<Tenant>(record).unwrap_err();
        assert!(
            err.to_string().contains("not a safe SQL identifier"),
            "{err}"
        );
    }
    let err = TenantRouter::<Sqlx>::builder()
        .server("main", "postgres://app@127.0.0.1:9/app")
        .shared_schemas(["public", "x y"])
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}
