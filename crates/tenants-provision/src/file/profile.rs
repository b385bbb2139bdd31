//! Profiles: settings declared once in the root files and referenced by tenants.

use super::*;

/// Checks a profile on its own: its server exists, and its schema or database
/// suits its model.
pub(super) fn check_profile(
    source: &Source,
    name: &str,
    raw: &RawProfile,
    servers: &BTreeMap<String, ServerSpec>,
) -> Result<(), Error> {
    let at = |field: &'static str| [Seg::Key("profiles"), Seg::Key(name), Seg::Key(field)];
    if let Some(server) = &raw.server
        && !servers.contains_key(server)
    {
        return Err(source.error_at(
            &at("server"),
            format!("unknown server {server:?}: declare [servers.{server}]"),
        ));
    }
    let misplaced = match raw.model {
        Some(Model::Pool) if raw.schema.is_some() => Some(("schema", "pool")),
        Some(Model::Pool) if raw.database.is_some() => Some(("database", "pool")),
        Some(Model::Bridge) if raw.database.is_some() => Some(("database", "bridge")),
        Some(Model::Silo) if raw.schema.is_some() => Some(("schema", "silo")),
        _ => None,
    };
    if let Some((field, model)) = misplaced {
        return Err(source.error_at(
            &at(field),
            format!("a {model} tenant has no {field}: remove it from profile {name:?}"),
        ));
    }
    Ok(())
}
