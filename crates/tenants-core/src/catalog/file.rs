//! Reading `[tenants.<id>]` files in TOML, JSON or YAML.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Tenant};

/// Keys a tenant record may have; anything else is a typo worth reporting.
const KNOWN_KEYS: &[&str] = &[
    "id", "name", "status", "model", "schema", "database", "server", "plan", "parent", "domains",
    "options",
];

#[derive(Debug, Clone, Copy)]
pub(crate) enum Format {
    #[cfg(feature = "toml")]
    Toml,
    Json,
    #[cfg(feature = "yaml")]
    Yaml,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    tenants: BTreeMap<String, serde_json::Value>,
}

pub(crate) fn load_path(path: &Path) -> Result<Vec<Tenant>, Error> {
    let origin = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        #[cfg(feature = "toml")]
        Some("toml") => Format::Toml,
        Some("json") => Format::Json,
        #[cfg(feature = "yaml")]
        Some("yaml" | "yml") => Format::Yaml,
        other => {
            return Err(Error::InvalidCatalog {
                origin,
                message: format!(
                    "unsupported extension {other:?}: use .json{}{}",
                    if cfg!(feature = "toml") {
                        ", .toml"
                    } else {
                        ""
                    },
                    if cfg!(feature = "yaml") {
                        ", .yaml"
                    } else {
                        ""
                    },
                ),
            });
        }
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidCatalog {
        origin: origin.clone(),
        message: e.to_string(),
    })?;
    parse(&text, format, &origin)
}

pub(crate) fn with_origin(error: Error, path: &Path) -> Error {
    match error {
        Error::InvalidCatalog { message, .. } => Error::InvalidCatalog {
            origin: path.display().to_string(),
            message,
        },
        other => other,
    }
}

pub(crate) fn parse(text: &str, format: Format, origin: &str) -> Result<Vec<Tenant>, Error> {
    let invalid = |message: String| Error::InvalidCatalog {
        origin: origin.to_owned(),
        message,
    };
    let file: CatalogFile = match format {
        #[cfg(feature = "toml")]
        Format::Toml => toml::from_str(text).map_err(|e| invalid(e.to_string()))?,
        Format::Json => serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?,
        #[cfg(feature = "yaml")]
        Format::Yaml => serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?,
    };
    file.tenants
        .into_iter()
        .map(|(key, value)| {
            let serde_json::Value::Object(mut record) = value else {
                return Err(invalid(format!("[tenants.{key}] must be a table")));
            };
            if let Some(unknown) = record.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
                return Err(invalid(format!("[tenants.{key}]: unknown key {unknown:?}")));
            }
            match record.get("id") {
                Some(id) if id.as_str() != Some(key.as_str()) => {
                    return Err(invalid(format!(
                        "[tenants.{key}]: id {id} differs from the table name"
                    )));
                }
                _ => {}
            }
            record.insert("id".into(), serde_json::Value::String(key.clone()));
            serde_json::from_value(serde_json::Value::Object(record))
                .map_err(|e| invalid(format!("[tenants.{key}]: {e}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "toml")]
    #[test]
    fn toml_errors_name_the_tenant_or_the_line() {
        let err = |text: &str| parse(text, Format::Toml, "t.toml").unwrap_err().to_string();
        assert!(
            err("[tenants.a]\nmodel = \"pool\"\nstauts = \"active\"")
                .contains("unknown key \"stauts\"")
        );
        assert!(err("[tenants.\"A B\"]\nmodel = \"pool\"").contains("[tenants.A B]"));
        assert!(
            err("[tenants.a]\nmodel = \"bridge\"\nschema = \"Bad-Name\"")
                .contains("safe SQL identifier")
        );
        assert!(err("[tenants.a]\nmodel = ").contains("line 2"));
        assert!(err("[tenant.a]\nmodel = \"pool\"").contains("unknown field"));
        assert!(err("[tenants.a]\nid = \"b\"\nmodel = \"pool\"").contains("differs"));
    }

    #[test]
    fn json_files_load_from_disk_by_extension() {
        let dir = std::env::temp_dir().join(format!("tenants-core-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("catalog.json");
        std::fs::write(
            &path,
            r#"{"tenants": {"a": {"model": "pool", "plan": "free"}}}"#,
        )
        .unwrap();
        let tenants = load_path(&path).unwrap();
        assert_eq!(tenants[0].plan.as_deref(), Some("free"));
        let bad = dir.join("catalog.ini");
        std::fs::write(&bad, "").unwrap();
        assert!(
            load_path(&bad)
                .unwrap_err()
                .to_string()
                .contains("unsupported extension")
        );
        assert!(load_path(&dir.join("missing.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "yaml")]
    #[test]
    fn yaml_is_accepted() {
        let tenants = parse(
            "tenants:\n  a:\n    model: silo\n    database: a_db\n",
            Format::Yaml,
            "y",
        )
        .unwrap();
        assert_eq!(tenants[0].model.name(), "silo");
    }
}
