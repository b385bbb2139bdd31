//! The throwaway cluster starts, answers, hands out distinct databases, and is shared
//! by the tests of one process.

use tenants_test_support::postgres;

#[test]
fn answers_queries() {
    let pg = postgres();
    assert_eq!(pg.psql(pg.admin_url(), "SELECT 40 + 2"), "42");
    // Not a superuser-less surprise: tests create roles and databases.
    assert_eq!(
        pg.psql(
            pg.admin_url(),
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ),
        "t"
    );
}

#[test]
fn fresh_databases_are_distinct_and_usable() {
    let pg = postgres();
    let a = pg.fresh_database();
    let b = pg.fresh_database();
    assert_ne!(a, b);
    pg.psql(&a, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    assert_eq!(pg.psql(&a, "SELECT count(*) FROM t"), "1");
    assert_eq!(
        pg.psql(&b, "SELECT count(*) FROM pg_tables WHERE tablename = 't'"),
        "0"
    );
}

#[test]
fn one_cluster_per_process() {
    let first = postgres() as *const _;
    let handles: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| postgres() as *const _ as usize))
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), first as usize);
    }
}
