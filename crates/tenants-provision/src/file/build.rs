//! From the files as written to the checked [`TenantsFile`]: servers, `[shared]` and tenants.

use super::*;

pub(super) fn build(sources: &[Source]) -> Result<TenantsFile, Error> {
    let raws = sources
        .iter()
        .map(Source::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut claims = Claims::default();
    let roots = roots(sources, &raws, &mut claims)?;
    let (shared_spec, default_server) = match roots.shared {
        Some((source, raw)) => shared_spec(source, raw, &roots.servers)?,
        None => (SharedSpec::default(), only_server(&roots.servers)),
    };
    reserve_names(&roots.servers, &shared_spec, &mut claims);
    for (name, (source, profile)) in &roots.profiles {
        check_profile(source, name, profile, &roots.servers)?;
    }
    let teams = sources.iter().filter_map(|s| s.team.clone()).collect();
    let context = Context {
        servers: &roots.servers,
        default_server: &default_server,
        profiles: &roots.profiles,
        teams: &teams,
    };
    let mut tenants = Vec::new();
    for (source, raw) in sources.iter().zip(&raws) {
        for (key, tenant) in &raw.tenants {
            tenants.push(tenant_spec(source, key, tenant, &context, &mut claims)?);
        }
    }
    tenants.sort_by_key(|t| t.tenant.id);
    if roots.servers.is_empty() {
        return Err(sources[0].error(
            None,
            None,
            "no servers declared: add [servers.<name>] with url_env = \"DATABASE_URL\"",
        ));
    }
    Ok(TenantsFile {
        servers: roots.servers,
        default_server,
        shared: shared_spec,
        tenants,
    })
}

/// What the root files declare once for every tenant.
struct Roots<'a> {
    servers: BTreeMap<String, ServerSpec>,
    shared: Option<(&'a Source, &'a RawShared)>,
    profiles: BTreeMap<String, (&'a Source, &'a RawProfile)>,
}

/// Servers, `[shared]` and profiles: from root files only, each declared once.
fn roots<'a>(
    sources: &'a [Source],
    raws: &'a [RawFile],
    claims: &mut Claims,
) -> Result<Roots<'a>, Error> {
    let mut roots = Roots {
        servers: BTreeMap::new(),
        shared: None,
        profiles: BTreeMap::new(),
    };
    for (source, raw) in sources.iter().zip(raws) {
        if let Some(team) = &source.team {
            refuse_in_team(source, raw, team)?;
        }
        for (name, profile) in &raw.profiles {
            let at = [Seg::Key("profiles"), Seg::Key(name)];
            claims
                .claim("profile", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            roots.profiles.insert(name.clone(), (source, profile));
        }
        for (name, server) in &raw.servers {
            let at = [Seg::Key("servers"), Seg::Key(name)];
            claims
                .claim("server", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            roots
                .servers
                .insert(name.clone(), server_spec(source, name, server)?);
        }
        if let Some(this) = &raw.shared {
            if let Some((first, _)) = roots.shared {
                return Err(source.error_at(
                    &[Seg::Key("shared")],
                    format!("[shared] is already declared in {}", first.origin),
                ));
            }
            roots.shared = Some((source, this));
        }
    }
    Ok(roots)
}

/// A team directory's file declares no servers, `[shared]` nor profiles.
fn refuse_in_team(source: &Source, raw: &RawFile, team: &str) -> Result<(), Error> {
    if let Some(name) = raw.servers.keys().next() {
        return Err(source.error_at(
            &[Seg::Key("servers"), Seg::Key(name)],
            format!(
                "a file of team directory {team:?} may not declare servers: \
                 declare them once, in a file at the top of the directory"
            ),
        ));
    }
    if raw.shared.is_some() {
        return Err(source.error_at(
            &[Seg::Key("shared")],
            format!(
                "a file of team directory {team:?} may not declare [shared]: \
                 declare it once, in a file at the top of the directory"
            ),
        ));
    }
    if let Some(name) = raw.profiles.keys().next() {
        return Err(source.error_at(
            &[Seg::Key("profiles"), Seg::Key(name)],
            format!(
                "a file of team directory {team:?} may not declare profiles: \
                 declare them once, in a file at the top of the directory, and \
                 name one with profile = \"...\""
            ),
        ));
    }
    Ok(())
}

/// Names that tenants may not take: the template databases, the application
/// roles, `public`, `tenants` and the shared schemas.
fn reserve_names(servers: &BTreeMap<String, ServerSpec>, shared: &SharedSpec, claims: &mut Claims) {
    for server in servers.values() {
        claims
            .claim(
                "database",
                &format!("{}/{}", server.name, server.template),
                "[servers]",
            )
            .ok();
        if let Some(app) = &server.app_role {
            claims.claim("role", app.as_str(), "[servers]").ok();
        }
    }
    for schema in ["public", "tenants"]
        .into_iter()
        .map(str::to_owned)
        .chain(shared.schemas.iter().map(|s| s.to_string()))
    {
        claims.claim("schema", &schema, "[shared]").ok();
    }
}

pub(super) fn only_server(servers: &BTreeMap<String, ServerSpec>) -> String {
    servers.keys().next().cloned().unwrap_or_default()
}

pub(super) fn server_spec(
    source: &Source,
    name: &str,
    raw: &RawServer,
) -> Result<ServerSpec, Error> {
    let at = |key| [Seg::Key("servers"), Seg::Key(name), Seg::Key(key)];
    let url = match (&raw.url, &raw.url_env) {
        (Some(url), None) => UrlSource::Inline(url.clone()),
        (None, Some(var)) => UrlSource::Env(var.clone()),
        (Some(_), Some(_)) => {
            return Err(source.error_at(&at("url"), "give url or url_env, not both"));
        }
        (None, None) => {
            return Err(source.error_at(
                &[Seg::Key("servers"), Seg::Key(name)],
                format!(
                    "server {name:?} needs url_env = \"VARIABLE\" (or url = \"postgres://...\")"
                ),
            ));
        }
    };
    let template = match &raw.template {
        Some(t) => t.clone(),
        None => SqlIdent::new(DEFAULT_TEMPLATE).map_err(|e| Error::Config(e.to_string()))?,
    };
    let connection = match &raw.connection {
        Some(mode) => mode.parse().map_err(|e: UnknownConnectionMode| {
            source.error_at(&at("connection"), e.to_string())
        })?,
        None => ConnectionMode::Direct,
    };
    Ok(ServerSpec {
        name: name.to_owned(),
        url,
        app_role: raw.app_role.clone(),
        app_password_env: raw.app_password_env.clone(),
        app_password: None,
        template,
        connection,
        citus: raw.citus,
    })
}

pub(super) fn shared_spec(
    source: &Source,
    raw: &RawShared,
    servers: &BTreeMap<String, ServerSpec>,
) -> Result<(SharedSpec, String), Error> {
    let mut pool_tables = Vec::new();
    for (i, name) in raw.pool_tables.iter().enumerate() {
        let table = TableName::parse(name).map_err(|e| {
            source.error_at(
                &[Seg::Key("shared"), Seg::Key("pool_tables"), Seg::Index(i)],
                format!("pool table {name:?}: {e}"),
            )
        })?;
        if pool_tables.contains(&table) {
            return Err(source.error_at(
                &[Seg::Key("shared"), Seg::Key("pool_tables"), Seg::Index(i)],
                format!("pool table {table} is listed twice"),
            ));
        }
        pool_tables.push(table);
    }
    let default_server = match &raw.server {
        Some(name) if !servers.contains_key(name) => {
            return Err(source.error_at(
                &[Seg::Key("shared"), Seg::Key("server")],
                format!("unknown server {name:?}: declare [servers.{name}]"),
            ));
        }
        Some(name) => name.clone(),
        None if servers.len() > 1 => {
            return Err(source.error_at(
                &[Seg::Key("shared")],
                "several servers are declared: name the one holding the shared database \
                 with server = \"<name>\"",
            ));
        }
        None => only_server(servers),
    };
    let spec = SharedSpec {
        migrations: raw.migrations.as_ref().map(|dir| source.dir.join(dir)),
        pool_tables,
        schemas: raw.schemas.clone(),
    };
    Ok((spec, default_server))
}
