//! [`Environment`]: where the variables a tenants file names are read.

use std::collections::BTreeMap;
use std::fmt;

/// Where the variables a tenants file names (`url_env`, `app_password_env`,
/// `password_env`) are read: the process environment, with values given here
/// taking precedence, or only the values given here.
///
/// [`Provisioner::connect`](super::Provisioner::connect) reads the process
/// environment. Give an `Environment` to
/// [`Provisioner::connect_with_env`](super::Provisioner::connect_with_env) to
/// supply secrets from elsewhere (a vault, a test) without changing the process
/// environment, which other threads may be reading.
///
/// # Examples
///
/// ```
/// use tenants_provision::Environment;
///
/// let env = Environment::empty().var("DATABASE_URL", "postgres://localhost/app");
/// assert_eq!(env.get("DATABASE_URL").as_deref(), Some("postgres://localhost/app"));
/// assert_eq!(env.get("APP_PASSWORD"), None);
/// // Values never show in debug output: they are often passwords.
/// assert!(!format!("{env:?}").contains("localhost"));
/// ```
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    process: bool,
}

impl Environment {
    /// The process environment.
    pub fn process() -> Self {
        Environment {
            vars: BTreeMap::new(),
            process: true,
        }
    }

    /// No variables at all, until [`var`](Self::var) adds some.
    pub fn empty() -> Self {
        Environment::default()
    }

    /// Sets `name` to `value`, over the process environment's value if any.
    pub fn var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// The value of `name`: given here, or else (for [`process`](Self::process))
    /// from the process environment.
    pub fn get(&self, name: &str) -> Option<String> {
        match self.vars.get(name) {
            Some(value) => Some(value.clone()),
            None if self.process => std::env::var(name).ok(),
            None => None,
        }
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("process", &self.process)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_values_win_over_the_process_environment() {
        // PATH is set in every test environment.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(Environment::process().get("PATH"), Some(path));
        let env = Environment::process().var("PATH", "/given");
        assert_eq!(env.get("PATH").as_deref(), Some("/given"));
        assert_eq!(Environment::empty().get("PATH"), None);
    }
}
