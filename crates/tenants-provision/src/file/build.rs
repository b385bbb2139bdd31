//! From the files as written to the checked [`TenantsFile`]: servers, `[shared]` and tenants.

use super::*;

pub(super) fn build(sources: &[Source]) -> Result<TenantsFile, Error> {
    let raws = sources
        .iter()
        .map(Source::parse)
        .collect::<Result<Vec<_>, _>>()?;

    // Servers and [shared]: root files only, each declared once.
    let mut servers = BTreeMap::new();
    let mut shared: Option<(&Source, &RawShared)> = None;
    let mut profiles = BTreeMap::new();
    let mut claims = Claims::default();
    for (source, raw) in sources.iter().zip(&raws) {
        if let Some(team) = &source.team {
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
        }
        for (name, profile) in &raw.profiles {
            let at = [Seg::Key("profiles"), Seg::Key(name)];
            claims
                .claim("profile", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            profiles.insert(name.clone(), (source, profile));
        }
        for (name, server) in &raw.servers {
            let at = [Seg::Key("servers"), Seg::Key(name)];
            claims
                .claim("server", name, &source.origin)
                .map_err(|m| source.error_at(&at, m))?;
            servers.insert(name.clone(), server_spec(source, name, server)?);
        }
        if let Some(this) = &raw.shared {
            if let Some((first, _)) = shared {
                return Err(source.error_at(
                    &[Seg::Key("shared")],
                    format!("[shared] is already declared in {}", first.origin),
                ));
            }
            shared = Some((source, this));
        }
    }

    let (shared_spec, default_server) = match shared {
        Some((source, raw)) => shared_spec(source, raw, &servers)?,
        None => (SharedSpec::default(), only_server(&servers)),
    };

    // Names that tenants may not take.
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
        .chain(shared_spec.schemas.iter().map(|s| s.to_string()))
    {
        claims.claim("schema", &schema, "[shared]").ok();
    }

    for (name, (source, profile)) in &profiles {
        check_profile(source, name, profile, &servers)?;
    }
    let teams = sources.iter().filter_map(|s| s.team.clone()).collect();
    let context = Context {
        servers: &servers,
        default_server: &default_server,
        profiles: &profiles,
        teams: &teams,
    };
    let mut tenants = Vec::new();
    for (source, raw) in sources.iter().zip(&raws) {
        for (key, tenant) in &raw.tenants {
            tenants.push(tenant_spec(source, key, tenant, &context, &mut claims)?);
        }
    }
    tenants.sort_by_key(|t| t.tenant.id);
    if servers.is_empty() {
        return Err(sources[0].error(
            None,
            None,
            "no servers declared: add [servers.<name>] with url_env = \"DATABASE_URL\"",
        ));
    }
    Ok(TenantsFile {
        servers,
        default_server,
        shared: shared_spec,
        tenants,
    })
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

pub(super) fn tenant_spec(
    source: &Source,
    key: &str,
    raw: &RawTenant,
    cx: &Context<'_>,
    claims: &mut Claims,
) -> Result<TenantSpec, Error> {
    let here = [Seg::Key("tenants"), Seg::Key(key)];
    let at = |field: &'static str| [Seg::Key("tenants"), Seg::Key(key), Seg::Key(field)];
    let id = TenantId::parse(key).map_err(|e| source.error_at(&here, e.to_string()))?;
    if id.as_str() != key {
        return Err(source.error_at(
            &here,
            format!("tenant ids are lowercase: write {:?}", id.as_str()),
        ));
    }
    if let Some(team) = &source.team {
        match cx.owner(key) {
            Some(owner) if owner == team => {}
            Some(owner) if owns(team, key) => {
                return Err(source.error_at(
                    &here,
                    format!(
                        "tenant {key:?} belongs to team directory {owner:?}: a file of team \
                         directory {team:?} may not declare it"
                    ),
                ));
            }
            _ => {
                return Err(source.error_at(
                    &here,
                    format!(
                        "a file of team directory {team:?} may only declare tenant {team:?} or \
                         tenants named \"{team}-...\", not {key:?}"
                    ),
                ));
            }
        }
        if let Some(parent) = &raw.parent
            && cx.owner(parent.as_str()) != Some(team.as_str())
        {
            return Err(source.error_at(
                &at("parent"),
                format!(
                    "a file of team directory {team:?} may only name a parent of its own \
                     team, not {:?}",
                    parent.as_str()
                ),
            ));
        }
    }
    claims
        .claim("tenant", key, &source.origin)
        .map_err(|m| source.error_at(&here, m))?;
    let uid = raw.uid.as_ref().map(|u| u.0.clone());
    if let Some(uid) = &uid {
        claims
            .claim("uid", uid, &source.origin)
            .map_err(|m| source.error_at(&at("uid"), m))?;
    }
    let names = Names {
        id: &id,
        uid: uid.as_deref(),
    };

    // The profile fills in what the tenant leaves unset.
    let profile = match &raw.profile {
        None => None,
        Some(name) => match cx.profiles.get(name) {
            Some((_, profile)) => Some((name.as_str(), *profile)),
            None => {
                let known: Vec<&str> = cx.profiles.keys().map(String::as_str).collect();
                let known = if known.is_empty() {
                    "none is declared".to_owned()
                } else {
                    format!("declared: {}", known.join(", "))
                };
                return Err(source.error_at(
                    &at("profile"),
                    format!("unknown profile {name:?} ({known}): declare [profiles.{name}] in a root file"),
                ));
            }
        },
    };
    // " (from profile "p")" after a message about a value the profile gave.
    let from = |inherited: bool| match profile {
        Some((name, _)) if inherited => format!(" (from profile {name:?})"),
        _ => String::new(),
    };
    let kind = match (raw.model, profile.and_then(|(_, p)| p.model)) {
        (Some(model), _) | (None, Some(model)) => model,
        (None, None) => {
            return Err(source.error_at(
                &here,
                "missing field `model`: set model = \"pool\", \"bridge\" or \"silo\", or a \
                 profile that sets it",
            ));
        }
    };
    // A profile's schema is for bridge tenants, its database and server for silo ones.
    let schema = match (&raw.schema, profile) {
        (Some(own), _) => Some((own, false)),
        (None, Some((_, p))) if kind == Model::Bridge => p.schema.as_ref().map(|t| (t, true)),
        _ => None,
    };
    let database = match (&raw.database, profile) {
        (Some(own), _) => Some((own, false)),
        (None, Some((_, p))) if kind == Model::Silo => p.database.as_ref().map(|t| (t, true)),
        _ => None,
    };
    let inherited_schema = schema.is_some_and(|(_, inherited)| inherited);
    let inherited_database = database.is_some_and(|(_, inherited)| inherited);
    let named_server = raw.server.as_ref().or_else(|| {
        profile
            .and_then(|(_, p)| p.server.as_ref())
            .filter(|_| kind == Model::Silo)
    });
    let expand = |field: &'static str, (template, inherited_from): (&NameTemplate, bool)| {
        template::expand(&template.0, names)
            .map_err(|m| source.error_at(&at(field), m + &from(inherited_from)))
    };
    // In a team directory, every name must be the team's own: it names the team,
    // or the tenant's uid or {hash}.
    let own_name = |what: &str, name: &SqlIdent, at: &[Seg<'_>], inherited_from: bool| {
        let Some(team) = &source.team else {
            return Ok(());
        };
        let name = name.as_str();
        let own = contains_word(name, &team.replace('-', "_"))
            || uid.as_deref().is_some_and(|uid| {
                name.contains(&uid.to_ascii_lowercase().replace('-', "_"))
                    || name.contains(&template::uid_hash(uid))
            });
        if own {
            return Ok::<(), Error>(());
        }
        let from = from(inherited_from);
        let team_ = team.replace('-', "_");
        Err(source.error_at(
            at,
            format!(
                "{what} {name:?}{from} is not named after tenant {key:?}: a file of team \
                 directory {team:?} may only name objects after its team or the tenant's uid, \
                 such as \"{team_}_...\" or \"tenant_{{hash}}\""
            ),
        ))
    };

    let server = match named_server {
        Some(name) if !cx.servers.contains_key(name) => {
            return Err(source.error_at(
                &at("server"),
                format!("unknown server {name:?}: declare [servers.{name}]"),
            ));
        }
        Some(name) => name.clone(),
        None => cx.default_server.to_owned(),
    };
    let misplaced = |field: &'static str, model: &str| {
        source.error_at(
            &at(field),
            format!("a {model} tenant has no {field}: remove it"),
        )
    };
    let default_server = cx.default_server;
    let model = match kind {
        Model::Pool | Model::Bridge if server != default_server => {
            return Err(source.error_at(
                &at("server"),
                format!(
                    "pool and bridge tenants live in the shared database on server \
                     {default_server:?}; only silo tenants may name another server"
                ),
            ));
        }
        Model::Pool => {
            if raw.schema.is_some() {
                return Err(misplaced("schema", "pool"));
            }
            if raw.database.is_some() {
                return Err(misplaced("database", "pool"));
            }
            if !raw.users.is_empty() {
                return Err(source.error_at(
                    &at("users"),
                    "pool tenants cannot have login users: a user logged in to the \
                     shared database could set tenants.tenant_id and read other tenants' \
                     rows; use the bridge or silo model for tenants with database users",
                ));
            }
            DataModel::Pool
        }
        Model::Bridge => {
            if raw.database.is_some() {
                return Err(misplaced("database", "bridge"));
            }
            let schema = match schema {
                Some(t) => expand("schema", t)?,
                None => template::expand("{id}", names).map_err(|m| source.error_at(&here, m))?,
            };
            own_name("schema", &schema, &at("schema"), inherited_schema)?;
            claims
                .claim("schema", schema.as_str(), &source.origin)
                .map_err(|m| source.error_at(&at("schema"), m + &from(inherited_schema)))?;
            DataModel::Bridge { schema }
        }
        Model::Silo => {
            if raw.schema.is_some() {
                return Err(misplaced("schema", "silo"));
            }
            let database = match database {
                Some(t) => expand("database", t)?,
                None => template::expand("{id}", names).map_err(|m| source.error_at(&here, m))?,
            };
            own_name("database", &database, &at("database"), inherited_database)?;
            claims
                .claim("database", &format!("{server}/{database}"), &source.origin)
                .map_err(|m| {
                    let m = m.replacen(&format!("{server}/"), "", 1);
                    source.error_at(&at("database"), m + &from(inherited_database))
                })?;
            let server = (named_server.is_some() || cx.servers.len() > 1).then(|| server.clone());
            DataModel::Silo { database, server }
        }
    };

    let mut users = Vec::new();
    for role in TenantRole::ALL {
        claims
            .claim("role", role.role_name(&id).as_str(), &source.origin)
            .map_err(|m| source.error_at(&here, m))?;
    }
    for (i, user) in raw.users.iter().enumerate() {
        let at = [
            Seg::Key("tenants"),
            Seg::Key(key),
            Seg::Key("users"),
            Seg::Index(i),
            Seg::Key("name"),
        ];
        let name = template::expand(&user.name.0, names).map_err(|m| source.error_at(&at, m))?;
        own_name("user", &name, &at, false)?;
        claims
            .claim("role", name.as_str(), &source.origin)
            .map_err(|m| source.error_at(&at, m))?;
        if user.password_env.is_empty() {
            return Err(source.error_at(&at, "password_env must name a variable"));
        }
        users.push(UserSpec {
            name,
            role: user.role.0,
            password: Password::Env(user.password_env.clone()),
        });
    }

    let mut tenant = Tenant::new(id, model)
        .with_name(raw.name.clone())
        .with_status(raw.status);
    tenant.plan = raw
        .plan
        .clone()
        .or_else(|| profile.and_then(|(_, p)| p.plan.clone()));
    tenant.parent = raw.parent;
    for (i, domain) in raw.domains.iter().enumerate() {
        tenant = tenant.with_domain(domain);
        let at = [
            Seg::Key("tenants"),
            Seg::Key(key),
            Seg::Key("domains"),
            Seg::Index(i),
        ];
        let domain = tenant.domains.last().map_or("", String::as_str);
        claims
            .claim("domain", domain, &source.origin)
            .map_err(|m| source.error_at(&at, m))?;
    }
    let mut options = profile.map(|(_, p)| p.options.clone()).unwrap_or_default();
    options.extend(raw.options.clone());
    tenant.options = options;
    Ok(TenantSpec {
        tenant,
        uid,
        server,
        users,
        origin: source.origin.clone(),
    })
}
