//! A `format-plugin-v2` component: npm packages (through `wasmplug-formats`) plus
//! the npm registry protocol, so npm clients can talk to a repository directly:
//!
//! - `GET /<name>` (scoped: `/@scope%2fname`): the packument, tarball URLs made
//!   absolute with the repository's download base URL;
//! - `GET /<name>/-/<file>.tgz`: a redirect to the stored tarball;
//! - anything else: a JSON 404 or 405, as the npm registry answers.

wit_bindgen::generate!({
    path: "../../wit",
    world: "format-plugin-v2",
});

use exports::artifact_keeper::format::handler::{Guest as Handler, Metadata};
use exports::artifact_keeper::format::request_handler::{
    Guest as RequestHandler, HttpRequest, HttpResponse, RepoContext,
};
use serde_json::{Value, json};
use wasmplug_formats::{Budget, Format, Limits, Npm};

struct NpmRegistry;

wasmplug_formats::metadata_conversions!(Metadata);

impl Handler for NpmRegistry {
    fn format_key() -> String {
        "npm-registry".to_owned()
    }

    fn parse_metadata(path: String, data: Vec<u8>) -> Result<Metadata, String> {
        Npm.parse_metadata(&path, &data, &budget()).map(to_abi).map_err(|e| e.to_string())
    }

    fn validate(path: String, data: Vec<u8>) -> Result<(), String> {
        Npm.validate(&path, &data, &budget()).map_err(|e| e.to_string())
    }

    fn generate_index(artifacts: Vec<Metadata>) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        Npm.generate_index(&artifacts.iter().map(from_abi).collect::<Vec<_>>(), &budget()).map_err(|e| e.to_string())
    }
}

fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: body.to_string().into_bytes(),
    }
}

/// `%2f` and `%40` are how npm clients escape scoped names in the path.
fn decode_name(path: &str) -> String {
    path.replace("%2f", "/").replace("%2F", "/").replace("%40", "@")
}

impl RequestHandler for NpmRegistry {
    fn handle_request(
        request: HttpRequest,
        context: RepoContext,
        artifacts: Vec<Metadata>,
    ) -> Result<HttpResponse, String> {
        if request.method != "GET" && request.method != "HEAD" {
            return Ok(json_response(405, &json!({ "error": format!("method {} not allowed", request.method) })));
        }
        let path = decode_name(request.path.trim_start_matches('/'));
        let base = context.download_base_url.trim_end_matches('/');
        if path.contains("/-/") {
            return Ok(match artifacts.iter().find(|a| a.path == path) {
                Some(artifact) => HttpResponse {
                    status: 302,
                    headers: vec![("location".to_owned(), format!("{base}/{}", artifact.path))],
                    body: Vec::new(),
                },
                None => json_response(404, &json!({ "error": "not found" })),
            });
        }
        let index = Npm
            .generate_index(&artifacts.iter().map(from_abi).collect::<Vec<_>>(), &budget())
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let Some((_, packument)) = index.into_iter().find(|(name, _)| *name == path) else {
            return Ok(json_response(404, &json!({ "error": "not found" })));
        };
        let mut packument: Value = serde_json::from_slice(&packument).map_err(|e| e.to_string())?;
        if let Some(versions) = packument["versions"].as_object_mut() {
            for version in versions.values_mut() {
                if let Some(tarball) = version["dist"]["tarball"].as_str() {
                    version["dist"]["tarball"] = Value::String(format!("{base}/{tarball}"));
                }
            }
        }
        Ok(json_response(200, &packument))
    }
}

/// What one call may spend inside the plugin; the host bounds its time.
fn budget() -> Budget {
    Budget::new(Limits::IN_PLUGIN)
}

export!(NpmRegistry);
