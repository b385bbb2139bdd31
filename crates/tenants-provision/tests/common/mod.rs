//! What the provisioning tests share.

use tenants_provision::{ApplyOptions, Plan, Provisioner};

/// Plans what `provisioner`'s file declares and applies all of it with the
/// default options; panics, with the report, unless every step succeeded.
pub(crate) async fn apply_all(provisioner: &Provisioner) -> Plan {
    let plan = provisioner.plan().await.unwrap();
    let report = provisioner
        .apply(&plan, &ApplyOptions::new())
        .await
        .unwrap();
    assert!(report.is_success(), "{report}");
    plan
}
