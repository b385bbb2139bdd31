//! Who may declare what: names declared twice, and the team directories that own tenant ids.

use super::*;

/// Everything declared so far, to find names declared twice.
#[derive(Default)]
pub(super) struct Claims {
    /// `(what, name)` → the origin that declared it.
    pub(super) names: HashMap<(&'static str, String), String>,
}

impl Claims {
    pub(super) fn claim(
        &mut self,
        what: &'static str,
        name: &str,
        origin: &str,
    ) -> Result<(), String> {
        match self.names.get(&(what, name.to_owned())) {
            Some(first) if first == origin => Err(format!("{what} {name:?} is declared twice")),
            Some(first) => Err(format!("{what} {name:?} is already declared in {first}")),
            None => {
                self.names
                    .insert((what, name.to_owned()), origin.to_owned());
                Ok(())
            }
        }
    }
}

/// What every tenant is checked against: the servers, the profiles and the team
/// directories.
pub(super) struct Context<'a> {
    pub(super) servers: &'a BTreeMap<String, ServerSpec>,
    pub(super) default_server: &'a str,
    pub(super) profiles: &'a BTreeMap<String, (&'a Source, &'a RawProfile)>,
    pub(super) teams: &'a BTreeSet<String>,
}

impl Context<'_> {
    /// The team directory a tenant id belongs to: of the teams whose name is the id
    /// or starts it followed by `-`, the longest (`acme-labs-eu` is team
    /// `acme-labs`'s when there is one, else `acme`'s).
    pub(super) fn owner(&self, id: &str) -> Option<&str> {
        self.teams
            .iter()
            .map(String::as_str)
            .filter(|team| owns(team, id))
            .max_by_key(|team| team.len())
    }
}

/// `true` when `id` is `team` or starts with `team-`.
pub(super) fn owns(team: &str, id: &str) -> bool {
    id == team
        || id
            .strip_prefix(team)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// `true` when `word` appears in `name` between `_`s or the name's ends.
pub(super) fn contains_word(name: &str, word: &str) -> bool {
    !word.is_empty()
        && name.match_indices(word).any(|(at, _)| {
            let before = name[..at].chars().next_back();
            let after = name[at + word.len()..].chars().next();
            before.is_none_or(|c| c == '_') && after.is_none_or(|c| c == '_')
        })
}
