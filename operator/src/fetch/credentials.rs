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
