//! The format's own client protocol (the format-plugin-v2 world): the host
//! passes requests under the repository's URL here, with the repository's
//! artifacts. `GET /index.json` answers the index, `GET /<name>/<version>`
//! redirects to the artifact's download URL, anything else is a 404.

use crate::exports::artifact_keeper::format::handler::Metadata;
use crate::exports::artifact_keeper::format::request_handler::{Guest, HttpRequest, HttpResponse, RepoContext};

impl Guest for crate::Plugin {
    fn handle_request(
        request: HttpRequest,
        context: RepoContext,
        artifacts: Vec<Metadata>,
    ) -> Result<HttpResponse, String> {
        if request.method != "GET" {
            return Ok(text(405, "only GET is served"));
        }
        let path = request.path.trim_start_matches('/');
        if path == "index.json" {
            let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
            return Ok(HttpResponse { status: 200, headers, body: crate::index(&artifacts) });
        }
        let Some((name, version)) = path.split_once('/') else {
            return Ok(text(404, "not found"));
        };
        let file = format!("{name}-{version}{}", crate::EXTENSION);
        match artifacts.iter().find(|artifact| artifact.path.rsplit('/').next() == Some(file.as_str())) {
            Some(artifact) => {
                let base = context.download_base_url.trim_end_matches('/');
                let location = format!("{base}/{}", artifact.path.trim_start_matches('/'));
                Ok(HttpResponse { status: 302, headers: vec![("location".to_owned(), location)], body: Vec::new() })
            }
            None => Ok(text(404, &format!("no {file} in {}", context.repo_key))),
        }
    }
}

fn text(status: u16, message: &str) -> HttpResponse {
    let headers = vec![("content-type".to_owned(), "text/plain".to_owned())];
    HttpResponse { status, headers, body: message.as_bytes().to_vec() }
}
