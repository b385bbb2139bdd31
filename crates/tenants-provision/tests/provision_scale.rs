//! How long provisioning takes at scale: 1,000 bridge tenants and 200 silo
//! databases, each migrated with a 5-table schema. Not a timed test: it prints the
//! figures. Run it by hand:
//!
//! ```sh
//! cargo test -p tenants-db --features sqlx --release --test provision_scale -- --ignored --nocapture
//! ```

use std::fmt::Write;
use std::time::Instant;

use tenants_provision::{ApplyOptions, Provisioner, TenantsFile};
use tenants_test_support::{postgres, tenants_dir, unique_name};

const SCHEMA: &str = "
CREATE TABLE customers (id bigserial PRIMARY KEY, name text NOT NULL, email text UNIQUE);
CREATE TABLE products (id bigserial PRIMARY KEY, sku text UNIQUE NOT NULL, price numeric(12, 2));
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint REFERENCES customers,
                     created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_lines (order_id bigint REFERENCES orders, product_id bigint REFERENCES products,
                          quantity int NOT NULL, PRIMARY KEY (order_id, product_id));
CREATE TABLE invoices (id bigserial PRIMARY KEY, order_id bigint REFERENCES orders, total numeric(12, 2));
CREATE INDEX orders_customer ON orders (customer_id);
";

async fn measure(model: &str, count: usize, parallel: usize) {
    let pg = postgres();
    let url = pg.fresh_database();
    let tag = unique_name("s").replace('_', "x");
    let dir = tenants_dir("tenants-scale", &tag, ("0001_shop.sql", SCHEMA));
    let mut text = format!(
        "[servers.main]\nurl = \"{url}\"\napp_role = \"app_{tag}\"\ntemplate = \"template_{tag}\"\n\
         [shared]\nmigrations = \"migrations\"\n"
    );
    for n in 0..count {
        let key = match model {
            "bridge" => "schema",
            _ => "database",
        };
        writeln!(
            text,
            "[tenants.{model}-{n}-{tag}]\nmodel = \"{model}\"\n{key} = \"{model}_{n}_{tag}\""
        )
        .unwrap();
    }
    let path = dir.join("tenants.toml");
    std::fs::write(&path, &text).unwrap();

    let started = Instant::now();
    let file = TenantsFile::load(&path).unwrap();
    let provisioner = Provisioner::connect(file)
        .await
        .unwrap()
        .parallelism(parallel);
    let plan = provisioner.plan().await.unwrap();
    let planned = started.elapsed();
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    let applied = started.elapsed();
    assert!(report.is_success(), "{report}");
    let again = Instant::now();
    assert!(provisioner.plan().await.unwrap().is_empty());
    let replanned = again.elapsed();
    println!(
        "{count} {model} tenants (5 tables each, parallelism {parallel}): plan {:.2?}, \
         plan + apply (provision + migrate) {:.2?}, {} changes; second plan {:.2?}",
        planned, applied, report.applied, replanned
    );
    provisioner.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand (see the file's docs)"]
async fn provision_1000_bridge_and_200_silo_tenants() {
    measure("bridge", 1000, 8).await;
    measure("silo", 200, 8).await;
}
