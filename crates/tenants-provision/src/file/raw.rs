//! The tenants file as written: the shapes serde reads, before any check.

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) servers: BTreeMap<String, RawServer>,
    #[serde(default)]
    pub(super) shared: Option<RawShared>,
    #[serde(default)]
    pub(super) profiles: BTreeMap<String, RawProfile>,
    #[serde(default)]
    pub(super) tenants: BTreeMap<String, RawTenant>,
}

/// `[profiles.<name>]`: where and how tenants that name this profile live, declared
/// once.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) model: Option<Model>,
    pub(super) server: Option<String>,
    pub(super) schema: Option<NameTemplate>,
    pub(super) database: Option<NameTemplate>,
    pub(super) plan: Option<String>,
    #[serde(default)]
    pub(super) options: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    pub(super) app_role: Option<SqlIdent>,
    pub(super) app_password_env: Option<String>,
    pub(super) template: Option<SqlIdent>,
    pub(super) connection: Option<String>,
    #[serde(default)]
    pub(super) citus: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShared {
    pub(super) migrations: Option<PathBuf>,
    #[serde(default)]
    pub(super) pool_tables: Vec<String>,
    #[serde(default)]
    pub(super) schemas: Vec<SqlIdent>,
    pub(super) server: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) uid: Option<Uid>,
    #[serde(default)]
    pub(super) name: String,
    pub(super) profile: Option<String>,
    pub(super) model: Option<Model>,
    pub(super) schema: Option<NameTemplate>,
    pub(super) database: Option<NameTemplate>,
    pub(super) server: Option<String>,
    pub(super) plan: Option<String>,
    #[serde(default)]
    pub(super) status: TenantStatus,
    pub(super) parent: Option<TenantId>,
    #[serde(default)]
    pub(super) domains: Vec<String>,
    #[serde(default)]
    pub(super) options: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub(super) users: Vec<RawUser>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Model {
    Pool,
    Bridge,
    Silo,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: NameTemplate,
    pub(super) role: Role,
    pub(super) password_env: String,
}

/// A name template whose syntax was checked while reading.
pub(super) struct NameTemplate(pub(super) String);

impl<'de> Deserialize<'de> for NameTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        template::check(&text).map_err(serde::de::Error::custom)?;
        Ok(NameTemplate(text))
    }
}

pub(super) struct Role(pub(super) TenantRole);

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map(Role).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown role {text:?}: expected admin, developer or customer"
            ))
        })
    }
}

/// A tenant's stable unique id: 1 to 64 characters of `A-Z`, `a-z`, `0-9` and `-`.
pub(super) struct Uid(pub(super) String);

impl<'de> Deserialize<'de> for Uid {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let valid = (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Uid(text))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid uid {text:?}: use 1 to 64 characters of A-Z, a-z, 0-9 and '-' (a UUID fits)"
            )))
        }
    }
}
