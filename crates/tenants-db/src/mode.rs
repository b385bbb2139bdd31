//! How the application reaches a server: directly, or through a transaction pooler.

use std::fmt;
use std::str::FromStr;

/// How connections to a server reach PostgreSQL, declared per server
/// ([`RouterBuilder::connection_mode`](crate::RouterBuilder::connection_mode), or
/// `connection = "transaction_pooler"` in a tenants file).
///
/// Behind a transaction-mode pooler (pgbouncer, Supavisor, PgDog and RDS Proxy in
/// their transaction modes) consecutive transactions of one client connection may
/// run on different server connections, so no session state survives a
/// transaction. The router then:
///
/// - refuses session hand-outs (`acquire`, `client`) with
///   [`Error::SessionBehindPooler`](crate::Error::SessionBehindPooler): a tenant set
///   for a session would scope another client's statements;
/// - opens silo connections without the tenant as a startup parameter (poolers
///   refuse or drop those) and sets it in each transaction instead;
/// - does not listen for migrations ([`MIGRATED_CHANNEL`](crate::MIGRATED_CHANNEL)):
///   no session survives there to listen. Restart the application after a
///   migration that changes what cached statements return.
///
/// Prepared statements are the driver's and the pooler's business: the router's own
/// statements are simple queries, which any pooler runs whole. The drivers name the
/// statements they prepare, and a named statement lives on one server connection, so
/// the pooler must track them (pgbouncer 1.21 and later with
/// `max_prepared_statements` > 0; Supavisor and PgDog do by default), or the
/// handler's queries must not outlive their transaction: sqlx's
/// `query(..).persistent(false)` prepares an unnamed statement, and tokio-postgres's
/// `query(&str, ..)` closes its statement before returning (`prepare_cached` keeps
/// it: avoid it there).
///
/// [`TenantRouter::verify`](crate::TenantRouter::verify) reports a server declared
/// `Direct` that behaves like a transaction pooler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionMode {
    /// Each client connection is one PostgreSQL session (also behind a pooler in
    /// session mode). The default.
    #[default]
    Direct,
    /// A pooler hands each transaction whichever server connection is free.
    TransactionPooler,
}

impl ConnectionMode {
    /// The name used in tenants files: `direct` or `transaction_pooler`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionMode::Direct => "direct",
            ConnectionMode::TransactionPooler => "transaction_pooler",
        }
    }
}

impl fmt::Display for ConnectionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`ConnectionMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown connection mode {0:?}: expected \"direct\" or \"transaction_pooler\"")]
pub struct UnknownConnectionMode(pub String);

impl FromStr for ConnectionMode {
    type Err = UnknownConnectionMode;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "direct" => Ok(ConnectionMode::Direct),
            "transaction_pooler" => Ok(ConnectionMode::TransactionPooler),
            other => Err(UnknownConnectionMode(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for mode in [ConnectionMode::Direct, ConnectionMode::TransactionPooler] {
            assert_eq!(mode.as_str().parse::<ConnectionMode>(), Ok(mode));
        }
        let error = "transaction".parse::<ConnectionMode>().unwrap_err();
        assert!(error.to_string().contains("transaction_pooler"), "{error}");
        assert_eq!(ConnectionMode::default(), ConnectionMode::Direct);
    }
}
