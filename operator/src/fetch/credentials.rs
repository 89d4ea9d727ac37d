//! Credentials for a source, read from the Secret a FormatPlugin references.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;

use super::FetchError;

/// The keys a source Secret may hold. Which ones apply depends on the source:
/// username + password or token for HTTP(S), identity (+ known_hosts) for SSH.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub identity: Option<String>,
    pub known_hosts: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secret values; say which keys are present.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("identity", &self.identity.as_ref().map(|_| "<set>"))
            .field("known_hosts", &self.known_hosts.is_some())
            .finish()
    }
}

impl Credentials {
    /// Reads the known keys of Secret `name`'s `data`; at least one must be set.
    pub fn from_secret(name: &str, data: &BTreeMap<String, ByteString>) -> Result<Self, FetchError> {
        let text = |key: &str| -> Result<Option<String>, FetchError> {
            data.get(key)
                .map(|value| {
                    String::from_utf8(value.0.clone()).map_err(|_| FetchError::Credentials {
                        secret: name.to_owned(),
                        reason: format!("key {key} is not UTF-8 text"),
                    })
                })
                .transpose()
        };
        let credentials = Credentials {
            username: text("username")?,
            password: text("password")?,
            token: text("token")?,
            identity: text("identity")?,
            known_hosts: text("known_hosts")?,
        };
        if credentials.password.is_none() && credentials.token.is_none() && credentials.identity.is_none() {
            return Err(FetchError::Credentials {
                secret: name.to_owned(),
                reason: "it has none of the keys password, token or identity".into(),
            });
        }
        Ok(credentials)
    }
}

/// A registry login from a `kubernetes.io/dockerconfigjson` Secret: the entry of
/// its `auths` for one registry.
#[derive(Clone)]
pub struct RegistryLogin {
    /// The Secret it came from, for messages.
    pub secret: String,
    pub username: String,
    pub password: String,
    /// The other hosts (`host[:port]`) the same Secret gives this same login:
    /// a registry's token service on another origin may be sent it only when
    /// its host is one of these.
    pub also_for: Vec<String>,
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLogin")
            .field("secret", &self.secret)
            .field("username", &self.username)
            .field("also_for", &self.also_for)
            .finish()
    }
}

/// The key of a dockerconfigjson Secret, as image pull secrets have it.
pub const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerLogin>,
}

#[derive(serde::Deserialize)]
struct DockerLogin {
    username: Option<String>,
    password: Option<String>,
    /// base64 of `username:password`.
    auth: Option<String>,
}

impl DockerLogin {
    /// The user and password, or what is wrong with the entry.
    fn credentials(&self) -> Result<(String, String), &'static str> {
        use base64::Engine;
        if let (Some(username), Some(password)) = (&self.username, &self.password) {
            return Ok((username.clone(), password.clone()));
        }
        let auth = self.auth.as_ref().ok_or("has no username and password or auth")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or("has an auth that is not base64 text")?;
        let (username, password) = decoded.split_once(':').ok_or("has an auth that is not username:password")?;
        Ok((username.to_owned(), password.to_owned()))
    }
}

impl RegistryLogin {
    /// The login for `registry` (`host[:port]`) in Secret `name`'s data. An
    /// `auths` key matches when it names the same host and port, with or
    /// without a scheme and path (`https://host:5000/v1/`), ignoring case.
    pub fn from_docker_config(
        name: &str,
        data: &BTreeMap<String, ByteString>,
        registry: &str,
    ) -> Result<Self, FetchError> {
        let refused = |reason: String| FetchError::Credentials { secret: name.to_owned(), reason };
        let Some(json) = data.get(DOCKER_CONFIG_KEY) else {
            return Err(refused(format!(
                "it has no key {DOCKER_CONFIG_KEY}; an OCI source takes a Secret of type \
                 kubernetes.io/dockerconfigjson (kubectl create secret docker-registry)"
            )));
        };
        let config: DockerConfig = serde_json::from_slice(&json.0)
            .map_err(|error| refused(format!("its {DOCKER_CONFIG_KEY} is not a Docker config: {error}")))?;
        let registry = registry.to_ascii_lowercase();
        let Some(login) = config.auths.iter().find(|(key, _)| auths_key_registry(key) == registry).map(|(_, l)| l)
        else {
            let names: Vec<&str> = config.auths.keys().map(String::as_str).collect();
            return Err(refused(format!(
                "its auths have no entry for registry {registry} (entries: {}); add one for it",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )));
        };
        let login =
            login.credentials().map_err(|problem| refused(format!("the entry for registry {registry} {problem}")))?;
        let also_for = config
            .auths
            .iter()
            .filter(|(key, other)| {
                auths_key_registry(key) != registry && other.credentials().is_ok_and(|same| same == login)
            })
            .map(|(key, _)| auths_key_registry(key))
            .collect();
        let (username, password) = login;
        Ok(RegistryLogin { secret: name.to_owned(), username, password, also_for })
    }
}

/// `host[:port]` of a dockerconfigjson `auths` key, lowercased.
fn auths_key_registry(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    without_scheme.split('/').next().unwrap_or_default().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker_config(json: &str) -> BTreeMap<String, ByteString> {
        BTreeMap::from([(DOCKER_CONFIG_KEY.to_owned(), ByteString(json.as_bytes().to_vec()))])
    }

    #[test]
    fn a_docker_config_login_is_found_by_its_registry() {
        let data = docker_config(
            r#"{"auths":{"https://Registry.example.com:5000/v1/":{"auth":"YWxpY2U6czNjcmV0"},"other.example.com":{"username":"bob","password":"pw"}}}"#,
        );
        let login = RegistryLogin::from_docker_config("pull", &data, "registry.example.com:5000").unwrap();
        assert_eq!((login.username.as_str(), login.password.as_str()), ("alice", "s3cret"));
        let other = RegistryLogin::from_docker_config("pull", &data, "other.example.com").unwrap();
        assert_eq!(other.username, "bob");
        assert!(login.also_for.is_empty() && other.also_for.is_empty(), "different logins are not shared");
        let missing = RegistryLogin::from_docker_config("pull", &data, "registry.example.com").unwrap_err().to_string();
        assert!(
            missing.contains("Secret pull") && missing.contains("no entry for registry registry.example.com"),
            "{missing}"
        );
        assert!(!format!("{login:?}").contains("s3cret"));
    }

    #[test]
    fn a_login_is_also_for_the_other_hosts_the_secret_gives_it() {
        let data = docker_config(
            r#"{"auths":{"registry.example.com":{"auth":"YWxpY2U6czNjcmV0"},"https://auth.example.com":{"username":"alice","password":"s3cret"},"other.example.com":{"username":"alice","password":"else"}}}"#,
        );
        let login = RegistryLogin::from_docker_config("pull", &data, "registry.example.com").unwrap();
        assert_eq!(login.also_for, ["auth.example.com"]);
    }

    #[test]
    fn a_secret_that_is_not_a_docker_config_says_so() {
        let error = RegistryLogin::from_docker_config("pull", &BTreeMap::new(), "r").unwrap_err().to_string();
        assert!(error.contains(".dockerconfigjson") && error.contains("docker-registry"), "{error}");
    }
}
