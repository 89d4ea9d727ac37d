//! The wire formats of the HTTP API that are not plain handler types: the
//! `path` query parameter, the format list, index files, and the `request` call
//! of format-plugin-v2 handlers. Binary contents travel as base64. The parsers
//! here read anonymous input; they are public for the fuzz targets.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::plugin::Digest;
use crate::registry::{Format, Origin, Snapshot};
use crate::runtime::{Compilation, HttpRequest, HttpResponse, Metadata, RepoContext};

/// The body of `POST /v1/formats/{key}/request`: the client's request as the
/// registry received it, the repository, and the artifacts it holds.
#[derive(Debug, Deserialize)]
pub struct RequestCall {
    request: WireRequest,
    context: RepoContext,
    #[serde(default)]
    artifacts: Vec<Metadata>,
}

#[derive(Debug, Deserialize)]
struct WireRequest {
    method: String,
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body_base64: String,
}

/// The handler's answer, for the registry to send to its client.
#[derive(Debug, Serialize)]
pub struct WireResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body_base64: String,
}

impl RequestCall {
    /// Reads the body of a `request` call.
    pub fn parse(body: &[u8]) -> Result<(HttpRequest, RepoContext, Vec<Metadata>), ApiError> {
        let call: RequestCall = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body must be JSON {{\"request\": {{method, path, query, headers, body_base64}}, \"context\": {{repo_key, base_url, download_base_url}}, \"artifacts\": [...]}}: {e}"
            ))
        })?;
        let body = base64::engine::general_purpose::STANDARD
            .decode(&call.request.body_base64)
            .map_err(|e| ApiError::bad_request(format!("request.body_base64 is not base64: {e}")))?;
        let request = HttpRequest {
            method: call.request.method,
            path: call.request.path,
            query: call.request.query,
            headers: call.request.headers,
            body,
        };
        require_checksums(&call.artifacts)?;
        Ok((request, call.context, call.artifacts))
    }
}

/// Reads the body of an `index` call: a JSON list of metadata.
pub fn parse_index(body: &[u8]) -> Result<Vec<Metadata>, ApiError> {
    let artifacts: Vec<Metadata> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body must be a JSON list of metadata objects: {e}")))?;
    require_checksums(&artifacts)?;
    Ok(artifacts)
}

/// Metadata passed back to `index` or `request` must carry the checksum the
/// host answered: it has no bytes here to compute one from, and an index
/// without checksums is refused by the format's clients.
fn require_checksums(artifacts: &[Metadata]) -> Result<(), ApiError> {
    for (i, artifact) in artifacts.iter().enumerate() {
        let problem = match artifact.checksum_sha256.as_deref() {
            None | Some("") => "has no checksum_sha256",
            Some(sum) if !Digest::is_hex(sum) => "has a checksum_sha256 that is not a lowercase hex SHA-256",
            Some(_) => continue,
        };
        return Err(ApiError::bad_request(format!(
            "artifacts[{i}] ({}) {problem}: send each artifact's metadata as …/metadata or …/artifacts answered it, checksum included (the host has no bytes here to compute it from)",
            artifact.path
        )));
    }
    Ok(())
}

impl From<HttpResponse> for WireResponse {
    fn from(response: HttpResponse) -> Self {
        WireResponse {
            status: response.status,
            headers: response.headers,
            body_base64: base64::engine::general_purpose::STANDARD.encode(response.body),
        }
    }
}

/// Index files as the API answers them (also `wasmplug call … index`).
#[derive(Debug, Serialize)]
pub struct IndexFiles {
    files: Vec<IndexFile>,
}

#[derive(Debug, Serialize)]
struct IndexFile {
    name: String,
    content_base64: String,
}

impl IndexFiles {
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        let files = files
            .into_iter()
            .map(|(name, content)| IndexFile {
                name,
                content_base64: base64::engine::general_purpose::STANDARD.encode(content),
            })
            .collect();
        IndexFiles { files }
    }
}

#[derive(Serialize)]
struct FormatView<'a> {
    key: &'a str,
    origin: OriginView<'a>,
    state: &'static str,
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<LimitsView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compilation: Option<CompilationView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// Where a plugin's native code came from: the operator's verified precompiled
/// file, or plugin.wasm compiled on this host (and why).
#[derive(Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
enum CompilationView<'a> {
    Precompiled,
    #[serde(rename = "plugin.wasm")]
    Wasm {
        reason: &'a str,
    },
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum OriginView<'a> {
    Builtin,
    Plugin { name: &'a str, version: &'a str },
}

#[derive(Serialize)]
struct LimitsView {
    memory_bytes: u64,
    timeout_ms: u128,
    /// The fuel each call gets, when this host meters fuel.
    #[serde(skip_serializing_if = "Option::is_none")]
    fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fuel_not_enforced: Option<IgnoredFuel>,
}

/// A fuel limit the plugin asked for that this host does not enforce, and why.
#[derive(Serialize)]
struct IgnoredFuel {
    requested: u64,
    reason: &'static str,
}

const UNMETERED: &str = "this host runs without fuel metering; set --max-fuel (the chart's limits.maxFuel) \
                         to meter every call, see docs/operations.md";

/// The body of `GET /v1/formats`.
pub(super) fn list_formats(snapshot: &Snapshot) -> serde_json::Value {
    let formats: Vec<FormatView> = snapshot.formats().map(|format| view(format)).collect();
    serde_json::json!({ "formats": formats })
}

fn view(format: &Format) -> FormatView<'_> {
    FormatView {
        key: &format.key,
        origin: match &format.origin {
            Origin::Builtin => OriginView::Builtin,
            Origin::Plugin { name, version } => OriginView::Plugin { name, version },
        },
        state: format.state().as_str(),
        enabled: format.enabled,
        digest: format.digest.map(|d| d.to_string()),
        limits: format.limits.map(|l| LimitsView {
            memory_bytes: l.memory_bytes,
            timeout_ms: l.timeout.as_millis(),
            fuel: l.fuel,
            fuel_not_enforced: l.ignored_fuel.map(|requested| IgnoredFuel { requested, reason: UNMETERED }),
        }),
        compilation: format.compilation.as_ref().map(|compilation| match compilation {
            Compilation::Precompiled => CompilationView::Precompiled,
            Compilation::Compiled { reason } => CompilationView::Wasm { reason },
        }),
        last_error: format.problem(),
        warnings: &format.warnings,
    }
}

/// The `path` query parameter: absent, or given once and valid UTF-8 once
/// decoded. An ambiguous request is refused rather than guessed at, so that a
/// registry cannot validate one path and store another.
pub fn path_param(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(name)? != "path" {
            continue;
        }
        if found.is_some() {
            return Err(ApiError::bad_request("?path= is given more than once; give the artifact's path once"));
        }
        found = Some(decode_component(value)?);
    }
    Ok(found)
}

/// One percent-encoded query component (`+` is a space), as UTF-8.
fn decode_component(text: &str) -> Result<String, ApiError> {
    let spaced = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8().map_err(|_| {
        ApiError::bad_request(format!("the query component {text:?} is not UTF-8 once percent-decoded"))
    })?;
    Ok(decoded.into_owned())
}
