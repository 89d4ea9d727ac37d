//! Who may download artifacts: the bearer token of each request is checked with
//! a TokenReview for the artifact server's audience, and the ServiceAccount it
//! names must be one of the configured readers (the hosts', and the operator's
//! own for replicas mirroring each other).
//!
//! Answers are cached briefly by the token's SHA-256 (never the token itself),
//! so a fleet of hosts downloading a new version costs the API server one
//! review per host, not one per file.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use sha2::{Digest as _, Sha256};

/// How long an accepted token is trusted without asking again.
const ACCEPTED_FOR: Duration = Duration::from_secs(60);
/// How long a refused token is refused without asking again.
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// Most answers kept; the cache is emptied when full.
const MAX_CACHED: usize = 4096;

/// Why a request may not download.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer token: downloads need a ServiceAccount token for the audience {0:?}")]
    NoToken(String),
    #[error("the token was not accepted for the audience {audience:?}: {reason}")]
    NotAuthenticated { audience: String, reason: String },
    #[error("{user} may not download artifacts; the artifact readers are {readers}")]
    NotAllowed { user: String, readers: String },
    #[error("the token could not be checked now ({0}); try again")]
    Unavailable(String),
}

/// A ServiceAccount allowed to download, as `namespace:name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reader(String);

impl std::str::FromStr for Reader {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains(':') => {
                Ok(Reader(format!("system:serviceaccount:{namespace}:{name}")))
            }
            _ => Err(format!("{text:?} is not a ServiceAccount as namespace:name")),
        }
    }
}

/// Checks tokens with TokenReviews.
#[derive(Debug)]
pub struct Authenticator {
    reviews: Api<TokenReview>,
    audience: String,
    readers: HashSet<String>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

/// An answer for a token (by its SHA-256), and until when it stands.
type Cached = (Result<String, Refusal>, Instant);

impl Authenticator {
    pub fn new(client: kube::Client, audience: String, readers: impl IntoIterator<Item = Reader>) -> Self {
        Authenticator {
            reviews: Api::all(client),
            audience,
            readers: readers.into_iter().map(|reader| reader.0).collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The user a request's `Authorization` header identifies, if it may download.
    pub async fn check(&self, authorization: Option<&str>) -> Result<String, Refusal> {
        let token = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| Refusal::NoToken(self.audience.clone()))?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.cached(&key) {
            return answer;
        }
        let answer = self.review(token).await;
        if !matches!(answer, Err(Refusal::Unavailable(_))) {
            let ttl = if answer.is_ok() { ACCEPTED_FOR } else { REFUSED_FOR };
            let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(key, (answer.clone(), Instant::now() + ttl));
        }
        answer
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Result<String, Refusal>> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(key).filter(|(_, until)| Instant::now() < *until).map(|(answer, _)| answer.clone())
    }

    async fn review(&self, token: &str) -> Result<String, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec { audiences: Some(vec![self.audience.clone()]), token: Some(token.to_owned()) },
            ..TokenReview::default()
        };
        let reviewed = self
            .reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refusal::Unavailable(format!("TokenReview failed: {e}")))?;
        let status = reviewed.status.unwrap_or_default();
        let not_authenticated = |reason: String| Refusal::NotAuthenticated { audience: self.audience.clone(), reason };
        if status.authenticated != Some(true) {
            return Err(not_authenticated(status.error.unwrap_or_else(|| "not authenticated".to_owned())));
        }
        if status.audiences.as_ref().is_some_and(|audiences| !audiences.contains(&self.audience)) {
            return Err(not_authenticated("it is for another audience".to_owned()));
        }
        let user = status.user.and_then(|user| user.username).unwrap_or_default();
        if !self.readers.contains(&user) {
            let mut readers: Vec<&str> = self.readers.iter().map(String::as_str).collect();
            readers.sort_unstable();
            return Err(Refusal::NotAllowed { user, readers: readers.join(", ") });
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_service_accounts() {
        let reader: Reader = "wasmplug-system:wasmplug-host".parse().expect("valid");
        assert_eq!(reader.0, "system:serviceaccount:wasmplug-system:wasmplug-host");
        for text in ["", "host", ":host", "ns:", "a:b:c"] {
            assert!(text.parse::<Reader>().is_err(), "{text:?}");
        }
    }
}
