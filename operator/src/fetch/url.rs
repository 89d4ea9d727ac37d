//! URL sources: a ZIP package downloaded over HTTP(S), with optional basic or
//! bearer credentials. The body is read in chunks and abandoned as soon as it
//! passes the size limit, so a large or endless download cannot exhaust memory.
//!
//! Every redirect hop is read and checked like the source's own URL, every
//! address a host name resolves to is checked before a connection is made
//! (trust invariant 4), and credentials are sent only to the source's own
//! origin: reqwest drops the `Authorization` header when a redirect leaves it.

use std::sync::Arc;

use futures::StreamExt;
use wasmplug_host::plugin::Digest;

use super::{Credentials, FetchError, FetchLimits, Fetched, archive};
use crate::policy::{DestinationDenied, SourcePolicy};
use crate::source_url::{SourceKind, SourceUrl};

/// Most redirects one download follows.
const MAX_REDIRECTS: usize = 5;

/// The HTTP client of URL sources: redirect hops are held to `policy`.
pub fn client(policy: Arc<SourcePolicy>) -> reqwest::Result<reqwest::Client> {
    let resolver = Arc::new(CheckedResolver { policy: policy.clone() });
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("it redirected more than {MAX_REDIRECTS} times"));
        }
        match policy.url(attempt.url().as_str(), SourceKind::Url) {
            Ok(_) => attempt.follow(),
            Err(denied) => {
                let to = attempt.url().to_string();
                attempt.error(format!("it redirected to {to}, which sources may not reach: {denied}"))
            }
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("wasmplug-operator/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        .dns_resolver(resolver)
        .build()
}

/// Resolves host names with the system resolver and keeps only the addresses
/// the source policy lets a fetch reach. (Hosts written as addresses are not
/// resolved; [`SourcePolicy::url`] checks those, for redirects too.)
struct CheckedResolver {
    policy: Arc<SourcePolicy>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let reachable: Vec<std::net::SocketAddr> =
                resolved.filter(|address| policy.destinations.permits(address.ip())).collect();
            if reachable.is_empty() {
                return Err(Box::new(DestinationDenied { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(reachable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Downloads and unpacks the ZIP package at `url`.
pub async fn fetch(
    client: &reqwest::Client,
    url: &SourceUrl,
    credentials: Option<&Credentials>,
    limits: &FetchLimits,
) -> Result<Fetched, FetchError> {
    let download = download(client, url, credentials, limits.max_download_bytes);
    let url = url.as_fetched();
    let bytes = tokio::time::timeout(limits.timeout, download)
        .await
        .map_err(|_| FetchError::TimedOut { url: url.to_owned(), timeout: limits.timeout })??;
    if !archive::is_zip(&bytes) {
        return Err(FetchError::Archive {
            at: url.to_owned(),
            reason: "the download is not a ZIP archive; a URL source names a ZIP holding plugin.toml and plugin.wasm"
                .into(),
        });
    }
    let revision = format!("{url}@{}", Digest::of(&bytes));
    archive::unpack(url, revision, &bytes, &limits.archive)
}

async fn download(
    client: &reqwest::Client,
    source: &SourceUrl,
    credentials: Option<&Credentials>,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    let url = source.as_fetched();
    let unreachable = |error: reqwest::Error| FetchError::Unreachable { url: url.to_owned(), reason: describe(&error) };
    let mut request = client.get(source.url().clone());
    if let Some(credentials) = credentials {
        request = match (&credentials.token, &credentials.username) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(username)) => request.basic_auth(username, credentials.password.as_deref()),
            (None, None) => request,
        };
    }
    let response = request.send().await.map_err(|error| {
        if let Some(denied) = cause::<DestinationDenied>(&error) {
            return FetchError::NotAllowed { url: url.to_owned(), reason: denied.to_string() };
        }
        match error.is_redirect() {
            true => FetchError::NotAllowed { url: url.to_owned(), reason: describe(&error) },
            false => unreachable(error),
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 | 403 => "; check the credentials in spec.source.url.secretRef",
            404 | 410 => "; check spec.source.url",
            _ => "",
        };
        return Err(FetchError::Status { url: url.to_owned(), status: status.as_u16(), hint });
    }
    let too_large = || FetchError::TooLarge { url: url.to_owned(), max: max_bytes };
    if response.content_length().is_some_and(|length| length > max_bytes) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreachable)?;
        if body.len() as u64 + chunk.len() as u64 > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first cause of `error` that is an `E`.
fn cause<E: std::error::Error + 'static>(error: &reqwest::Error) -> Option<&E> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

/// The error and its causes on one line: reqwest's own message alone rarely says
/// what went wrong ("error sending request").
pub(super) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
