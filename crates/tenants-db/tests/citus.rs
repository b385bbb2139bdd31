//! The router on a Citus cluster (a coordinator and two workers): pool tenants in a
//! table distributed by `tenant_id`, bridge tenants in distributed schemas, both
//! drivers. Part of the Citus suite, which runs on its own:
//!
//! ```sh
//! cargo test --workspace --all-features --test citus -- --ignored
//! ```
//!
//! Without Citus installed (or `TENANTS_TEST_CITUS_URL`), these tests fail with
//! instructions; the main test command lists them as ignored.
#![cfg(all(feature = "sqlx", feature = "deadpool"))]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{Probe, World, assert_own_rows, committed_rows, until_listening};
use tenants_db::{Deadpool, Driver, Error, Hazard, Sqlx, TenantRouter};
use tenants_test_support::citus;

/// Pool and bridge tenants on the cluster, with the application role's `SET LOCAL`s
/// forwarded to the workers.
fn world() -> World {
    let world = World::on_citus(citus(), 4, 4);
    world.admin(&format!(
        "ALTER ROLE {} SET citus.propagate_set_commands = 'local'",
        world.app
    ));
    world
}

/// Many concurrent workers over pools smaller than them: every row read is the
/// reader's tenant's, every committed row is found again (none lost to a shard
/// that did not see the tenant), on every shard the table has.
async fn leak_hunt<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = world();
    let router: TenantRouter<D> = world
        .router::<D>()
        .citus("main")
        .pool_connections(3)
        .bridge_connections(3)
        .bridge_statement_sharing(true)
        .build()
        .unwrap();
    router.verify().await.unwrap();
    // Bridge schemas of one shape share statements through the coordinator.
    until_listening(&router).await;
    let tenants = Arc::new(world.tenants());
    let mut workers = Vec::new();
    for worker in 0..12usize {
        let (router, tenants) = (router.clone(), tenants.clone());
        workers.push(tokio::spawn(async move {
            let mut committed: HashMap<String, usize> = HashMap::new();
            for round in 0..20usize {
                let tenant = &tenants[(worker * 7 + round * 13) % tenants.len()];
                let mine = format!("{}:", tenant.id);
                let mine_so_far = committed.get(tenant.id.as_str()).copied().unwrap_or(0);
                let seen = if round % 3 == 2 {
                    // A transaction that only reads: Citus opens no worker
                    // transaction for it unless told to, and the tenant rides on one.
                    let seen = router.read(tenant).await.unwrap();
                    assert!(seen.len() >= mine_so_far, "tenant {} lost rows", tenant.id);
                    seen
                } else {
                    let commit = round % 3 == 0;
                    let secret = format!("{mine}{worker}-{round}");
                    let seen = router.write_read(tenant, &secret, commit).await.unwrap();
                    assert!(seen.contains(&secret), "{secret} not read back");
                    if commit {
                        *committed.entry(tenant.id.to_string()).or_default() += 1;
                    }
                    seen
                };
                assert_own_rows(tenant, &seen);
            }
            committed
        }));
    }
    let committed = committed_rows(workers).await;
    for tenant in tenants.iter() {
        // One more row, rolled back: the count read beside it is the committed rows'.
        let probe = format!("{}:count", tenant.id);
        let rows = router.write_read(tenant, &probe, false).await.unwrap();
        let expected = committed.get(tenant.id.as_str()).copied().unwrap_or(0);
        assert_eq!(rows.len() - 1, expected, "tenant {}: its rows", tenant.id);
    }
    assert_tenants_spread(&world);
    router.close().await;
}

/// The pool tenants' rows sit on shards of both workers, so the hunt crossed them.
fn assert_tenants_spread(world: &World) {
    let nodes = world.admin(
        "SELECT count(DISTINCT nodeport) FROM citus_shards \
         WHERE table_name = 'notes'::regclass AND shard_size > 8192",
    );
    assert_eq!(nodes, "2", "pool rows on both workers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn leak_hunt_sqlx() {
    leak_hunt::<Sqlx>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn leak_hunt_deadpool() {
    leak_hunt::<Deadpool>().await;
}

/// A handler turns off, for the application role, both settings that carry the
/// tenant to the workers (any role may set its own defaults), and leaves its own
/// tenant at session level on Citus's cached worker connections (Citus runs the
/// whole text of a message holding a `SET LOCAL` on them, `set_config(.., false)`
/// included). The router's transactions on new connections still read exactly
/// their tenant's rows: never none, never the handler's.
async fn a_handler_cannot_turn_the_forwarding_off<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = world();
    let one_connection = || {
        let router = world.router::<D>().citus("main").pool_connections(1);
        router.build().unwrap()
    };
    let router: TenantRouter<D> = one_connection();
    for tenant in &world.pool {
        let secret = format!("{}:seed", tenant.id);
        router.write_read(tenant, &secret, true).await.unwrap();
    }
    let (handler, victim) = (&world.pool[0], &world.pool[1]);
    let off = "ALTER ROLE CURRENT_USER SET citus.select_opens_transaction_block = off; \
               ALTER ROLE CURRENT_USER SET citus.propagate_set_commands = 'none'";
    router.send(handler, &[off]).await.unwrap();
    router.close().await;
    // New connections, which start with the handler's defaults.
    let router: TenantRouter<D> = one_connection();
    let victims_rows = vec![format!("{}:seed", victim.id)];
    assert_eq!(router.read(victim).await.unwrap(), victims_rows);
    let leave = format!(
        "SET LOCAL statement_timeout = 0; SELECT set_config('tenants.tenant_id', '{}', false)",
        handler.id
    );
    let reach_every_worker = "UPDATE notes SET secret = secret";
    router
        .send(handler, &[&leave, reach_every_worker])
        .await
        .unwrap();
    assert_eq!(router.read(victim).await.unwrap(), victims_rows);
    router.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn a_handler_cannot_turn_the_forwarding_off_sqlx() {
    a_handler_cannot_turn_the_forwarding_off::<Sqlx>().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn a_handler_cannot_turn_the_forwarding_off_deadpool() {
    a_handler_cannot_turn_the_forwarding_off::<Deadpool>().await;
}

/// `verify` fails at start on the two ways a Citus deployment goes wrong silently:
/// a role whose `SET LOCAL`s stay on the coordinator (its transactions outside the
/// router then read no rows: shown here), and a coordinator not declared as one.
/// The router's own transactions set the forwarding for themselves.
async fn verify_reports_citus_misconfiguration<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = World::on_citus(citus(), 1, 0);
    let router: TenantRouter<D> = world.router::<D>().citus("main").build().unwrap();
    let role = world.app.clone();
    match router.verify().await {
        Err(Error::UnsafeRole(hazards)) => assert_eq!(
            hazards,
            vec![Hazard::CitusSettingsNotForwarded { role: role.clone() }]
        ),
        other => panic!("expected the unforwarded settings, got {other:?}"),
    }
    let tenant = &world.pool[0];
    let secret = format!("{}:x", tenant.id);
    let seen = router.write_read(tenant, &secret, true).await.unwrap();
    assert_eq!(seen, vec![secret.clone()], "the router forwards for itself");
    let by_hand = format!(
        "SET ROLE {role}; BEGIN; SET LOCAL tenants.tenant_id = '{}'; \
         SELECT count(*) FROM notes; COMMIT",
        tenant.id
    );
    let url = world.pg.url_for(&world.database);
    assert_eq!(
        world.pg.psql(&url, &by_hand),
        "0",
        "Citus's default hides the row"
    );
    world.admin(&format!(
        "ALTER ROLE {role} SET citus.propagate_set_commands = 'local'"
    ));
    let undeclared: TenantRouter<D> = world.router::<D>().build().unwrap();
    match undeclared.verify().await {
        Err(Error::UnsafeRole(hazards)) => assert_eq!(
            hazards,
            vec![Hazard::UndeclaredCitus {
                server: "main".into()
            }]
        ),
        other => panic!("expected the undeclared coordinator, got {other:?}"),
    }
    let declared: TenantRouter<D> = world.router::<D>().citus("main").build().unwrap();
    declared.verify().await.unwrap();
    router.close().await;
    undeclared.close().await;
    declared.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn verify_reports_citus_misconfiguration_sqlx() {
    verify_reports_citus_misconfiguration::<Sqlx>().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn verify_reports_citus_misconfiguration_deadpool() {
    verify_reports_citus_misconfiguration::<Deadpool>().await;
}

/// Citus forwards no session `SET`: session hand-outs of pool and bridge tenants
/// are refused with a typed error (the policies on the shards, of pool tables and
/// of a bridge tenant's copies of them, would see no tenant), and the tenant's
/// transactions still work.
async fn sessions_on_citus<D: Driver>()
where
    TenantRouter<D>: Probe,
{
    let world = world();
    let router: TenantRouter<D> = world.router::<D>().citus("main").build().unwrap();
    for tenant in [&world.pool[0], &world.bridge[0]] {
        match router.session_read(tenant).await {
            Err(message) => assert!(message.contains("Citus coordinator"), "{message}"),
            Ok(rows) => panic!(
                "a session of {} on Citus was handed out: {rows:?}",
                tenant.id
            ),
        }
        let secret = format!("{}:kept", tenant.id);
        let seen = router.write_read(tenant, &secret, true).await.unwrap();
        assert_eq!(seen, vec![secret]);
    }
    router.close().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn sessions_on_citus_sqlx() {
    sessions_on_citus::<Sqlx>().await;
}

#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn sessions_on_citus_deadpool() {
    sessions_on_citus::<Deadpool>().await;
}

/// The version of the coordinator's certificate: `v1`, `v3` (any with a version
/// field), or `plain` with TLS off. From the DER: a versioned certificate's
/// to-be-signed part opens with the `[0]` tag (0xA0) at byte 8.
const CERTIFICATE_SQL: &str = "\
SELECT CASE WHEN current_setting('ssl') = 'off' THEN 'plain'
            WHEN get_byte(decode(regexp_replace(pg_read_file(current_setting('ssl_cert_file')),
                                                '-----[^-]+-----|\\s', '', 'g'), 'base64'), 8) = 160
            THEN 'v3' ELSE 'v1' END";

/// Citus gives its nodes an X.509 v1 certificate on `CREATE EXTENSION citus`.
/// libpq's `prefer` (the default) takes it unchecked, and so does the deadpool
/// driver; sqlx checks handshake signatures through webpki, which cannot read v1,
/// so its failure is a typed TLS error that names the certificate and the remedies.
/// (On a cluster of `TENANTS_TEST_CITUS_URL` whose nodes have v3 certificates or no
/// TLS, sqlx connects.)
#[tokio::test]
#[ignore = "Citus suite: cargo test --workspace --all-features --test citus -- --ignored"]
async fn a_v1_certificate_is_read_by_deadpool_and_named_for_sqlx() {
    let world = World::on_citus(citus(), 1, 0);
    let url = world
        .pg
        .url_as(&world.app, common::PASSWORD, &world.database);
    let deadpool = TenantRouter::<Deadpool>::builder().server("main", &url);
    let deadpool = deadpool.citus("main").build().unwrap();
    let (tenant, secret) = (&world.pool[0], format!("{}:tls", world.pool[0].id));
    world.admin(&format!(
        "ALTER ROLE {} SET citus.propagate_set_commands = 'local'",
        world.app
    ));
    let seen = deadpool.write_read(tenant, &secret, false).await.unwrap();
    assert_eq!(seen, vec![secret.clone()]);
    let sqlx = TenantRouter::<Sqlx>::builder().server("main", &url);
    let sqlx = sqlx.citus("main").build().unwrap();
    let certificate = world.admin(CERTIFICATE_SQL);
    match (certificate.as_str(), sqlx.verify().await) {
        ("v1", Err(Error::Tls(message))) => assert!(message.contains("X.509 v1"), "{message}"),
        ("v3" | "plain", Ok(())) => {}
        (certificate, other) => panic!("a {certificate} certificate, and sqlx: {other:?}"),
    }
    deadpool.close().await;
    sqlx.close().await;
}
