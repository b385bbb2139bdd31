//! Keys fetched from an issuer: its JWKS URL, or its OpenID Connect discovery
//! document; refreshed on a schedule and when a token names a key not seen yet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::jwt::{JwtKeys, parse_jwks};
use crate::Error;

/// Largest JWKS or discovery document read (identity providers publish a few KiB).
const MAX_DOCUMENT: usize = 1024 * 1024;

/// The shortest time between two fetches of one key set, whatever
/// [`Refresh::min_interval`] says: a flood of unknown `kid`s never makes the
/// refresher spin.
pub const MIN_INTERVAL_FLOOR: Duration = Duration::from_millis(100);

/// When a [`RemoteJwks`] fetches its keys again.
///
/// | field | default | what it bounds |
/// |---|---|---|
/// | `every` | 1 h | the refresh period when the response has no `Cache-Control: max-age` |
/// | `min_interval` | 30 s | the time between two fetches, whatever asks for them: a flood of tokens with unknown `kid`s costs one fetch per interval |
/// | `max_age` | 24 h | the longest `max-age` honoured |
/// | `timeout` | 10 s | one request, connection included |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refresh {
    /// Refresh period without `Cache-Control: max-age`.
    pub every: Duration,
    /// Shortest time between two fetches.
    pub min_interval: Duration,
    /// Longest `max-age` honoured.
    pub max_age: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Refresh {
            every: Duration::from_secs(3600),
            min_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Refresh {
    /// The defaults with another shortest time between two fetches (at least
    /// [`MIN_INTERVAL_FLOOR`]).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The shortest time between two fetches as used: never under
    /// [`MIN_INTERVAL_FLOOR`], whatever the field says.
    fn floor(&self) -> Duration {
        self.min_interval.max(MIN_INTERVAL_FLOOR)
    }

    /// The defaults with another refresh period.
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }
}

/// A key set an issuer publishes at a JWKS URL ([RFC 7517]), kept current: fetched
/// when built, refreshed on a schedule (the response's `Cache-Control: max-age`,
/// else [`Refresh::every`]), and fetched again when a token names a `kid` the set
/// does not hold, at most once per [`Refresh::min_interval`] whatever the number
/// of such tokens.
///
/// Verification never waits for a fetch: a token whose key is not known yet is
/// refused ([`TokenError::UnknownKey`](crate::TokenError::UnknownKey)) and
/// wakes one refresh, after which the same token verifies. A failed fetch, an
/// answer that is not a JWKS or a set with no usable key leaves the last good keys
/// in use. Keys come only from the URL given here (or the issuer's discovery
/// document), never from a token's `jku`, `x5u` or `iss`; each key's algorithm comes
/// from the key (`alg`, else its `kty` / `crv`), never from a token's header. Keys
/// for encryption (`"use": "enc"`) and of unsupported types are skipped.
///
/// The URL must be `https`; plain `http` is accepted for loopback hosts only
/// (`localhost`, `127.0.0.1`, `[::1]`), for local identity providers and tests.
///
/// Needs a tokio runtime: the refresher is a task of it, which ends when the last
/// clone of the key set is dropped.
///
/// [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
///
/// # Examples
///
/// ```no_run
/// # async fn example() -> Result<(), tenants_core::Error> {
/// use tenants_core::resolve::{JwtResolver, RemoteJwks};
///
/// // From the issuer's discovery document (`{issuer}/.well-known/openid-configuration`).
/// let keys = RemoteJwks::discover("https://id.example.com/realms/acme").await?;
/// let resolver = JwtResolver::new(keys)
///     .issuer("https://id.example.com/realms/acme")
///     .audience("api");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RemoteJwks {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    keys: RwLock<Arc<JwtKeys>>,
    refresh: Refresh,
    client: reqwest::Client,
    /// Wakes the refresher: an unknown `kid`, or the key set being dropped.
    wake: Arc<Notify>,
    fetches: AtomicU64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The refresher finds no key set left and ends.
        self.wake.notify_one();
    }
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &self.shared.url)
            .field("keys", &*self.keys())
            .field("refresh", &self.shared.refresh)
            .finish()
    }
}

impl RemoteJwks {
    /// Fetches the key set at `url` now, and keeps it current with the default
    /// [`Refresh`].
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the URL is not `https` (nor loopback `http`), the
    /// server cannot be reached or answers anything but `200` with a JWKS holding
    /// at least one usable key.
    pub async fn fetch(url: &str) -> Result<Self, Error> {
        Self::fetch_with(url, Refresh::default()).await
    }

    /// [`fetch`](Self::fetch) with another refresh schedule.
    ///
    /// # Errors
    ///
    /// As [`fetch`](Self::fetch).
    pub async fn fetch_with(url: &str, refresh: Refresh) -> Result<Self, Error> {
        let client = client(url, refresh)?;
        let shared = Arc::new(Shared {
            url: url.to_owned(),
            keys: RwLock::new(Arc::new(JwtKeys::new())),
            refresh,
            client,
            wake: Arc::new(Notify::new()),
            fetches: AtomicU64::new(0),
        });
        let next = shared.fetch_now().await?;
        tokio::spawn(refresher(
            Arc::downgrade(&shared),
            shared.wake.clone(),
            next,
        ));
        Ok(RemoteJwks { shared })
    }

    /// Reads the issuer's OpenID Connect discovery document
    /// (`{issuer}/.well-known/openid-configuration`, [OpenID Connect Discovery 1.0
    /// §4](https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig)),
    /// checks that it names the same `issuer`, and [fetches](Self::fetch) its
    /// `jwks_uri`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the document cannot be had, names another issuer or
    /// no `jwks_uri`, and the errors of [`fetch`](Self::fetch).
    pub async fn discover(issuer: &str) -> Result<Self, Error> {
        Self::discover_with(issuer, Refresh::default()).await
    }

    /// [`discover`](Self::discover) with another refresh schedule.
    ///
    /// # Errors
    ///
    /// As [`discover`](Self::discover).
    pub async fn discover_with(issuer: &str, refresh: Refresh) -> Result<Self, Error> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let client = client(&url, refresh)?;
        let (body, _) = get(&client, &url).await?;
        let document: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| remote_error(&url, format!("not a discovery document: {e}")))?;
        let named = document.get("issuer").and_then(|v| v.as_str());
        if named != Some(issuer) {
            return Err(remote_error(
                &url,
                format!("the document names issuer {named:?}, not {issuer:?}"),
            ));
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| remote_error(&url, "the document has no jwks_uri".into()))?;
        Self::fetch_with(jwks_uri, refresh).await
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<JwtKeys> {
        match self.shared.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// How many fetches were made, successful or not, the first included.
    pub fn fetches(&self) -> u64 {
        self.shared.fetches.load(Ordering::Relaxed)
    }

    /// A token named a key the set does not hold: wake the refresher (once, however
    /// many tokens do; it keeps to the minimum interval).
    pub(crate) fn missed(&self) {
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// Fetches and installs the key set; the time until the next scheduled fetch.
    async fn fetch_now(&self) -> Result<Duration, Error> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (body, max_age) = get(&self.client, &self.url).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| remote_error(&self.url, "the JWKS is not UTF-8".into()))?;
        let keys = parse_jwks(text, false)
            .map_err(|e| remote_error(&self.url, format!("not a usable JWKS: {e}")))?;
        if keys.is_empty() {
            return Err(remote_error(
                &self.url,
                "the JWKS holds no usable key".into(),
            ));
        }
        let keys = Arc::new(keys);
        match self.keys.write() {
            Ok(mut current) => *current = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        let refresh = &self.refresh;
        Ok(max_age
            .map_or(refresh.every, |age| age.min(refresh.max_age))
            .max(refresh.floor()))
    }
}

/// Refreshes on schedule and when woken, never twice within the minimum interval;
/// ends when the key set is gone.
async fn refresher(shared: Weak<Shared>, wake: Arc<Notify>, mut next: Duration) {
    let mut last = Instant::now();
    loop {
        let min_interval = match shared.upgrade() {
            Some(shared) => shared.refresh.floor(),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = wake.notified() => {}
        }
        let since = last.elapsed();
        if since < min_interval {
            tokio::time::sleep(min_interval - since).await;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        last = Instant::now();
        // A failed fetch keeps the last good keys, and tries again after the
        // minimum interval.
        next = shared.fetch_now().await.unwrap_or(min_interval);
    }
}

fn remote_error(url: &str, message: String) -> Error {
    Error::Config(format!("remote keys {url}: {message}"))
}

/// An HTTP client for `url`: `https` only, unless the host is loopback.
fn client(url: &str, refresh: Refresh) -> Result<reqwest::Client, Error> {
    let parsed = reqwest::Url::parse(url).map_err(|e| remote_error(url, e.to_string()))?;
    let loopback = matches!(parsed.host(), Some(url::Host::Domain("localhost")))
        || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        scheme => {
            return Err(remote_error(
                url,
                format!("keys are fetched over https, not {scheme}"),
            ));
        }
    }
    // A redirect stays on https; a loopback http URL is not redirected at all.
    let redirect = if loopback {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::limited(3)
    };
    reqwest::Client::builder()
        .timeout(refresh.timeout)
        .https_only(!loopback)
        .redirect(redirect)
        .build()
        .map_err(|e| remote_error(url, e.to_string()))
}

/// GETs `url`: the body (at most [`MAX_DOCUMENT`] bytes) and the response's
/// `Cache-Control: max-age`.
async fn get(client: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Option<Duration>), Error> {
    let mut response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| remote_error(url, e.to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(remote_error(url, format!("status {}", response.status())));
    }
    let max_age = response
        .headers()
        .get_all(reqwest::header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(max_age);
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT as u64)
    {
        return Err(remote_error(url, "the document is too large".into()));
    }
    // Read in chunks: a chunked answer has no length to check first.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| remote_error(url, e.to_string()))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(remote_error(url, "the document is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// The `max-age` of a `Cache-Control` value ([RFC 9111 §5.2.2.1]); `no-cache` and
/// `no-store` count as 0 (the minimum interval then applies).
///
/// [RFC 9111 §5.2.2.1]: https://www.rfc-editor.org/rfc/rfc9111#section-5.2.2.1
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        seconds
            .trim()
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("Max-Age = \"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=-1"), None);
        assert_eq!(max_age("max-age=99999999999999999999999"), None);
    }

    #[test]
    fn keys_are_fetched_over_https_or_from_loopback() {
        let refresh = Refresh::default();
        assert!(client("https://id.example.com/jwks", refresh).is_ok());
        assert!(client("http://127.0.0.1:9/jwks", refresh).is_ok());
        assert!(client("http://localhost:9/jwks", refresh).is_ok());
        assert!(client("http://[::1]:9/jwks", refresh).is_ok());
        for refused in [
            "http://id.example.com/jwks",
            "http://10.0.0.1/jwks",
            "ftp://id.example.com/jwks",
            "not a url",
        ] {
            assert!(
                matches!(client(refused, refresh), Err(Error::Config(_))),
                "{refused}"
            );
        }
    }
}
