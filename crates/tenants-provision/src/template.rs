//! Name templates: `{id}`, `{uid}` and `{hash}` in database, schema and user names.

use md5::{Digest, Md5};
use tenants_core::{SqlIdent, TenantId};

/// What a template's placeholders expand to for one tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names<'a> {
    pub(crate) id: &'a TenantId,
    pub(crate) uid: Option<&'a str>,
}

/// The last 6 hex digits of the MD5 of `uid`: a short, stable suffix for names.
///
/// ```
/// assert_eq!(tenants_provision::uid_hash("4783eb5d-956e-4b58-a214-790fe7ef61ba"), "af5042");
/// ```
pub fn uid_hash(uid: &str) -> String {
    let digest = Md5::digest(uid.as_bytes());
    digest[13..].iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a template's syntax: only `{id}`, `{uid}` and `{hash}` placeholders, and
/// literal text from `a-z`, `0-9` and `_`.
pub(crate) fn check(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        check_literal(&rest[..open])?;
        if rest[open..].starts_with('}') {
            return Err(format!("unmatched '}}' in {template:?}"));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("unclosed '{{' in {template:?}"));
        };
        let name = &rest[open + 1..open + close];
        if !matches!(name, "id" | "uid" | "hash") {
            return Err(format!(
                "unknown placeholder {{{name}}} in {template:?}: use {{id}}, {{uid}} or {{hash}}"
            ));
        }
        rest = &rest[open + close + 1..];
    }
    check_literal(rest)
}

fn check_literal(text: &str) -> Result<(), String> {
    match text
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_'))
    {
        Some(c) => Err(format!(
            "{c:?} may not appear in a name: use a-z, 0-9, '_' and {{id}}, {{uid}}, {{hash}}"
        )),
        None => Ok(()),
    }
}

/// Expands a [checked](check) template into a safe identifier.
pub(crate) fn expand(template: &str, names: Names<'_>) -> Result<SqlIdent, String> {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        let uid = || {
            names.uid.ok_or_else(|| {
                format!("{template:?} uses {{uid}} or {{hash}}, but the tenant has no uid")
            })
        };
        match &rest[open + 1..open + close] {
            "id" => out.push_str(&names.id.as_str().replace('-', "_")),
            "uid" => out.push_str(&uid()?.to_ascii_lowercase().replace('-', "_")),
            "hash" => out.push_str(&uid_hash(uid()?)),
            other => return Err(format!("unknown placeholder {{{other}}}")),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    SqlIdent::new(&out).map_err(|e| format!("{template:?} expands to {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_last_six_hex_digits_of_the_uid_md5() {
        assert_eq!(uid_hash("4783eb5d-956e-4b58-a214-790fe7ef61ba"), "af5042");
        assert_eq!(uid_hash("a79a8c37-9d0b-4b1d-a051-ba339eea6f21"), "f09faf");
        assert_eq!(uid_hash("a869f326-7d83-4d1f-8af1-aef8fb11e57f"), "430e00");
    }

    #[test]
    fn templates_expand_every_placeholder() {
        let id: TenantId = "tenant-a".parse().unwrap();
        let names = Names {
            id: &id,
            uid: Some("4783eb5d-956e-4b58-a214-790fe7ef61ba"),
        };
        let expand = |t: &str| expand(t, names).map(|i| i.as_str().to_owned());
        assert_eq!(expand("tenant_{hash}").unwrap(), "tenant_af5042");
        assert_eq!(expand("{id}_db").unwrap(), "tenant_a_db");
        assert_eq!(
            expand("t_{uid}").unwrap(),
            "t_4783eb5d_956e_4b58_a214_790fe7ef61ba"
        );
        assert_eq!(expand("plain").unwrap(), "plain");
        // A hash may start with a digit, which no identifier may.
        let digit_first = Names {
            id: &id,
            uid: Some("a869f326-7d83-4d1f-8af1-aef8fb11e57f"),
        };
        assert!(
            super::expand("{hash}", digit_first)
                .unwrap_err()
                .contains("must start with")
        );
        let no_uid = Names { id: &id, uid: None };
        assert!(
            super::expand("{hash}_x", no_uid)
                .unwrap_err()
                .contains("no uid")
        );
    }

    #[test]
    fn template_syntax_is_checked() {
        assert!(check("tenant_{hash}").is_ok());
        assert!(check("{id}{uid}").is_ok());
        assert!(
            check("a{nope}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(check("a{id").unwrap_err().contains("unclosed"));
        assert!(check("a}").unwrap_err().contains("unmatched"));
        assert!(check("A_{id}").unwrap_err().contains("'A'"));
        assert!(check("x\"; drop").is_err());
    }
}
