//! One tenant of a file: its id and team, its profile, its model and storage
//! names, its users and its record, checked against everything declared so far.

use super::*;

/// Reads and checks the tenant `key` of `source`.
pub(super) fn tenant_spec(
    source: &Source,
    key: &str,
    raw: &RawTenant,
    cx: &Context<'_>,
    claims: &mut Claims,
) -> Result<TenantSpec, Error> {
    let id = checked_id(source, key, raw, cx)?;
    claims
        .claim("tenant", key, &source.origin)
        .map_err(|m| source.error_at(&[Seg::Key("tenants"), Seg::Key(key)], m))?;
    let uid = raw.uid.as_ref().map(|u| u.0.clone());
    if let Some(uid) = &uid {
        claims.claim("uid", uid, &source.origin).map_err(|m| {
            source.error_at(&[Seg::Key("tenants"), Seg::Key(key), Seg::Key("uid")], m)
        })?;
    }
    let reader = Reader {
        source,
        key,
        raw,
        cx,
        id,
        profile: profile(source, key, raw, cx)?,
        uid,
    };
    let kind = reader.kind()?;
    let named_server = reader.named_server(kind);
    let server = reader.server(named_server)?;
    let model = reader.model(kind, &server, named_server.is_some(), claims)?;
    let users = reader.users(claims)?;
    let tenant = reader.record(model, claims)?;
    Ok(TenantSpec {
        tenant,
        uid: reader.uid,
        server,
        users,
        origin: source.origin.clone(),
    })
}

/// The tenant's id: valid, lowercase as written, and the team's when the file is
/// a team directory's (its parent too).
fn checked_id(
    source: &Source,
    key: &str,
    raw: &RawTenant,
    cx: &Context<'_>,
) -> Result<TenantId, Error> {
    let here = [Seg::Key("tenants"), Seg::Key(key)];
    let id = TenantId::parse(key).map_err(|e| source.error_at(&here, e.to_string()))?;
    if id.as_str() != key {
        return Err(source.error_at(
            &here,
            format!("tenant ids are lowercase: write {:?}", id.as_str()),
        ));
    }
    if let Some(team) = &source.team {
        check_team(source, key, raw, cx, team)?;
    }
    Ok(id)
}

/// A team directory's file declares only its team's tenants, with parents of its
/// team.
fn check_team(
    source: &Source,
    key: &str,
    raw: &RawTenant,
    cx: &Context<'_>,
    team: &str,
) -> Result<(), Error> {
    let here = [Seg::Key("tenants"), Seg::Key(key)];
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
        && cx.owner(parent.as_str()) != Some(team)
    {
        return Err(source.error_at(
            &[Seg::Key("tenants"), Seg::Key(key), Seg::Key("parent")],
            format!(
                "a file of team directory {team:?} may only name a parent of its own \
                 team, not {:?}",
                parent.as_str()
            ),
        ));
    }
    Ok(())
}

/// The profile the tenant names, which fills in what the tenant leaves unset.
fn profile<'a>(
    source: &Source,
    key: &str,
    raw: &'a RawTenant,
    cx: &Context<'a>,
) -> Result<Option<(&'a str, &'a RawProfile)>, Error> {
    let Some(name) = &raw.profile else {
        return Ok(None);
    };
    if let Some((_, profile)) = cx.profiles.get(name) {
        return Ok(Some((name.as_str(), *profile)));
    }
    let known: Vec<&str> = cx.profiles.keys().map(String::as_str).collect();
    let known = if known.is_empty() {
        "none is declared".to_owned()
    } else {
        format!("declared: {}", known.join(", "))
    };
    Err(source.error_at(
        &[Seg::Key("tenants"), Seg::Key(key), Seg::Key("profile")],
        format!("unknown profile {name:?} ({known}): declare [profiles.{name}] in a root file"),
    ))
}

/// What reading one tenant needs at hand.
struct Reader<'a> {
    source: &'a Source,
    key: &'a str,
    raw: &'a RawTenant,
    cx: &'a Context<'a>,
    id: TenantId,
    profile: Option<(&'a str, &'a RawProfile)>,
    uid: Option<String>,
}

impl<'a> Reader<'a> {
    /// The path of one of the tenant's fields.
    fn at(&self, field: &'static str) -> [Seg<'a>; 3] {
        [Seg::Key("tenants"), Seg::Key(self.key), Seg::Key(field)]
    }

    fn here(&self) -> [Seg<'a>; 2] {
        [Seg::Key("tenants"), Seg::Key(self.key)]
    }

    fn names(&self) -> Names<'_> {
        Names {
            id: &self.id,
            uid: self.uid.as_deref(),
        }
    }

    /// " (from profile "p")" after a message about a value the profile gave.
    fn from(&self, inherited: bool) -> String {
        match self.profile {
            Some((name, _)) if inherited => format!(" (from profile {name:?})"),
            _ => String::new(),
        }
    }

    /// The model, the tenant's or its profile's.
    fn kind(&self) -> Result<Model, Error> {
        match (self.raw.model, self.profile.and_then(|(_, p)| p.model)) {
            (Some(model), _) | (None, Some(model)) => Ok(model),
            (None, None) => Err(self.source.error_at(
                &self.here(),
                "missing field `model`: set model = \"pool\", \"bridge\" or \"silo\", or a \
                 profile that sets it",
            )),
        }
    }

    /// The server the tenant names, or its profile for a silo tenant.
    fn named_server(&self, kind: Model) -> Option<&'a String> {
        self.raw.server.as_ref().or_else(|| {
            self.profile
                .and_then(|(_, p)| p.server.as_ref())
                .filter(|_| kind == Model::Silo)
        })
    }

    /// The tenant's server: the named one, which must be declared, or the default.
    fn server(&self, named: Option<&String>) -> Result<String, Error> {
        match named {
            Some(name) if !self.cx.servers.contains_key(name) => Err(self.source.error_at(
                &self.at("server"),
                format!("unknown server {name:?}: declare [servers.{name}]"),
            )),
            Some(name) => Ok(name.clone()),
            None => Ok(self.cx.default_server.to_owned()),
        }
    }

    fn misplaced(&self, field: &'static str, model: &str) -> Error {
        self.source.error_at(
            &self.at(field),
            format!("a {model} tenant has no {field}: remove it"),
        )
    }

    /// The data model, with its schema or database named and claimed.
    fn model(
        &self,
        kind: Model,
        server: &str,
        named_server: bool,
        claims: &mut Claims,
    ) -> Result<DataModel, Error> {
        let default_server = self.cx.default_server;
        match kind {
            Model::Pool | Model::Bridge if server != default_server => Err(self.source.error_at(
                &self.at("server"),
                format!(
                    "pool and bridge tenants live in the shared database on server \
                     {default_server:?}; only silo tenants may name another server"
                ),
            )),
            Model::Pool => self.pool(),
            Model::Bridge => self.bridge(claims),
            Model::Silo => self.silo(server, named_server, claims),
        }
    }

    fn pool(&self) -> Result<DataModel, Error> {
        if self.raw.schema.is_some() {
            return Err(self.misplaced("schema", "pool"));
        }
        if self.raw.database.is_some() {
            return Err(self.misplaced("database", "pool"));
        }
        if !self.raw.users.is_empty() {
            return Err(self.source.error_at(
                &self.at("users"),
                "pool tenants cannot have login users: a user logged in to the \
                 shared database could set tenants.tenant_id and read other tenants' \
                 rows; use the bridge or silo model for tenants with database users",
            ));
        }
        Ok(DataModel::Pool)
    }

    fn bridge(&self, claims: &mut Claims) -> Result<DataModel, Error> {
        if self.raw.database.is_some() {
            return Err(self.misplaced("database", "bridge"));
        }
        // A profile's schema is for bridge tenants.
        let (schema, inherited) = match (&self.raw.schema, self.profile) {
            (Some(own), _) => (Some(own), false),
            (None, Some((_, p))) => (p.schema.as_ref(), p.schema.is_some()),
            (None, None) => (None, false),
        };
        let schema = self.storage_name("schema", schema, inherited)?;
        self.own_name("schema", &schema, &self.at("schema"), inherited)?;
        claims
            .claim("schema", schema.as_str(), &self.source.origin)
            .map_err(|m| {
                self.source
                    .error_at(&self.at("schema"), m + &self.from(inherited))
            })?;
        Ok(DataModel::Bridge { schema })
    }

    fn silo(
        &self,
        server: &str,
        named_server: bool,
        claims: &mut Claims,
    ) -> Result<DataModel, Error> {
        if self.raw.schema.is_some() {
            return Err(self.misplaced("schema", "silo"));
        }
        // A profile's database is for silo tenants.
        let (database, inherited) = match (&self.raw.database, self.profile) {
            (Some(own), _) => (Some(own), false),
            (None, Some((_, p))) => (p.database.as_ref(), p.database.is_some()),
            (None, None) => (None, false),
        };
        let database = self.storage_name("database", database, inherited)?;
        self.own_name("database", &database, &self.at("database"), inherited)?;
        claims
            .claim(
                "database",
                &format!("{server}/{database}"),
                &self.source.origin,
            )
            .map_err(|m| {
                let m = m.replacen(&format!("{server}/"), "", 1);
                self.source
                    .error_at(&self.at("database"), m + &self.from(inherited))
            })?;
        let server = (named_server || self.cx.servers.len() > 1).then(|| server.to_owned());
        Ok(DataModel::Silo { database, server })
    }

    /// A schema or database name from its template, or `{id}` when none is given.
    fn storage_name(
        &self,
        field: &'static str,
        template: Option<&NameTemplate>,
        inherited: bool,
    ) -> Result<SqlIdent, Error> {
        match template {
            Some(template) => template::expand(&template.0, self.names()).map_err(|m| {
                self.source
                    .error_at(&self.at(field), m + &self.from(inherited))
            }),
            None => template::expand("{id}", self.names())
                .map_err(|m| self.source.error_at(&self.here(), m)),
        }
    }

    /// In a team directory, every name must be the team's own: it names the team,
    /// or the tenant's uid or {hash}.
    fn own_name(
        &self,
        what: &str,
        name: &SqlIdent,
        at: &[Seg<'_>],
        inherited: bool,
    ) -> Result<(), Error> {
        let Some(team) = &self.source.team else {
            return Ok(());
        };
        let name = name.as_str();
        let own = contains_word(name, &team.replace('-', "_"))
            || self.uid.as_deref().is_some_and(|uid| {
                name.contains(&uid.to_ascii_lowercase().replace('-', "_"))
                    || name.contains(&template::uid_hash(uid))
            });
        if own {
            return Ok(());
        }
        let (from, key, team_) = (self.from(inherited), self.key, team.replace('-', "_"));
        Err(self.source.error_at(
            at,
            format!(
                "{what} {name:?}{from} is not named after tenant {key:?}: a file of team \
                 directory {team:?} may only name objects after its team or the tenant's uid, \
                 such as \"{team_}_...\" or \"tenant_{{hash}}\""
            ),
        ))
    }

    /// The tenant's login users, its group roles claimed first.
    fn users(&self, claims: &mut Claims) -> Result<Vec<UserSpec>, Error> {
        for role in TenantRole::ALL {
            claims
                .claim(
                    "role",
                    role.role_name(&self.id).as_str(),
                    &self.source.origin,
                )
                .map_err(|m| self.source.error_at(&self.here(), m))?;
        }
        let mut users = Vec::new();
        for (i, user) in self.raw.users.iter().enumerate() {
            let at = [
                Seg::Key("tenants"),
                Seg::Key(self.key),
                Seg::Key("users"),
                Seg::Index(i),
                Seg::Key("name"),
            ];
            let name = template::expand(&user.name.0, self.names())
                .map_err(|m| self.source.error_at(&at, m))?;
            self.own_name("user", &name, &at, false)?;
            claims
                .claim("role", name.as_str(), &self.source.origin)
                .map_err(|m| self.source.error_at(&at, m))?;
            if user.password_env.is_empty() {
                return Err(self
                    .source
                    .error_at(&at, "password_env must name a variable"));
            }
            users.push(UserSpec {
                name,
                role: user.role.0,
                password: Password::Env(user.password_env.clone()),
            });
        }
        Ok(users)
    }

    /// The tenant record: name, status, plan (the tenant's or its profile's),
    /// parent, claimed domains and options (the profile's, overridden by the
    /// tenant's).
    fn record(&self, model: DataModel, claims: &mut Claims) -> Result<Tenant, Error> {
        let raw = self.raw;
        let mut tenant = Tenant::new(self.id, model)
            .with_name(raw.name.clone())
            .with_status(raw.status);
        tenant.plan = raw
            .plan
            .clone()
            .or_else(|| self.profile.and_then(|(_, p)| p.plan.clone()));
        tenant.parent = raw.parent;
        for (i, domain) in raw.domains.iter().enumerate() {
            tenant = tenant.with_domain(domain);
            let at = [
                Seg::Key("tenants"),
                Seg::Key(self.key),
                Seg::Key("domains"),
                Seg::Index(i),
            ];
            let domain = tenant.domains.last().map_or("", String::as_str);
            claims
                .claim("domain", domain, &self.source.origin)
                .map_err(|m| self.source.error_at(&at, m))?;
        }
        let mut options = self
            .profile
            .map(|(_, p)| p.options.clone())
            .unwrap_or_default();
        options.extend(raw.options.clone());
        tenant.options = options;
        Ok(tenant)
    }
}
