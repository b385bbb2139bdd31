//! One file's text, and the positions (line, column) of what errors point at.

use super::*;

/// One file's text, kept to put line numbers on errors found after parsing.
pub(super) struct Source {
    pub(super) origin: String,
    pub(super) text: String,
    pub(super) format: Format,
    /// For a file of a team directory, the team: the tenant id its tenants must
    /// equal or start with (`<team>-...`).
    pub(super) team: Option<String>,
    pub(super) dir: PathBuf,
}

/// A step of a path into a file: a key or an array index.
#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl Source {
    pub(super) fn error(
        &self,
        line: Option<usize>,
        column: Option<usize>,
        message: impl Into<String>,
    ) -> Error {
        Error::TenantsFile {
            origin: self.origin.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An error about the value at `path`, located as well as the format allows.
    pub(super) fn error_at(&self, path: &[Seg<'_>], message: impl Into<String>) -> Error {
        let offset = match self.format {
            Format::Toml => toml_offset(&self.text, path),
            Format::Json | Format::Yaml => scan_offset(&self.text, path),
        };
        match offset {
            Some(offset) => {
                let (line, column) = line_col(&self.text, offset);
                self.error(Some(line), Some(column), message)
            }
            None => self.error(None, None, message),
        }
    }

    pub(super) fn parse(&self) -> Result<RawFile, Error> {
        match self.format {
            Format::Toml => toml::from_str(&self.text).map_err(|e| {
                let (line, column) = match e.span() {
                    Some(span) => {
                        let (l, c) = line_col(&self.text, span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                self.error(line, column, e.message().trim_end())
            }),
            Format::Json => serde_json::from_str(&self.text).map_err(|e| {
                let message = strip_position(&e.to_string());
                self.error(Some(e.line()), Some(e.column()), message)
            }),
            Format::Yaml => {
                if self.text.trim().is_empty() {
                    return Ok(RawFile::default());
                }
                serde_norway::from_str(&self.text).map_err(|e| {
                    let location = e.location();
                    let message = strip_position(&e.to_string());
                    self.error(
                        location.as_ref().map(|l| l.line()),
                        location.as_ref().map(|l| l.column()),
                        message,
                    )
                })
            }
        }
    }
}

/// Removes the " at line X column Y" a format appends, since the error shows it.
pub(super) fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

pub(super) fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The exact offset of the key at `path` in a TOML document; for a key the
/// document does not hold (a value inherited from a profile), the offset of the
/// deepest key it does hold.
pub(super) fn toml_offset(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut value: Option<&DeValue<'_>> = None;
    let mut span: Range<usize> = root.span();
    for seg in path {
        match (seg, value) {
            (Seg::Key(key), None) | (Seg::Key(key), Some(DeValue::Table(_))) => {
                if let Some(DeValue::Table(t)) = value {
                    table = t;
                }
                let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key) else {
                    return value.is_some().then_some(span.start);
                };
                span = k.span();
                value = Some(v.get_ref());
            }
            (Seg::Index(i), Some(DeValue::Array(items))) => {
                let item = items.get(*i)?;
                span = item.span();
                value = Some(item.get_ref());
            }
            _ => return Some(span.start),
        }
    }
    Some(span.start)
}

/// The offset of the key at `path` in JSON or YAML text, found by scanning for each
/// key in turn (`"key"` or `key:`); good enough for files written by people. A
/// key not found leaves the offset of the deepest key found.
pub(super) fn scan_offset(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    let mut at = 0;
    let mut found = None;
    let mut skip = 0;
    for seg in path {
        match seg {
            Seg::Index(i) => skip = *i,
            Seg::Key(key) => {
                for _ in 0..=skip {
                    let quoted = format!("\"{key}\"");
                    let bare = format!("{key}:");
                    let Some(hit) = [text[at..].find(&quoted), text[at..].find(&bare)]
                        .into_iter()
                        .flatten()
                        .min()
                    else {
                        return found;
                    };
                    found = Some(at + hit);
                    at += hit + key.len();
                }
                skip = 0;
            }
        }
    }
    found
}
