//! The artifact server: every replica serves the packages in its store over
//! HTTP, to hosts and to other replicas mirroring it (PRODUCT.md, "Store and
//! distribution"; docs/architecture.md).
//!
//! It answers one kind of request, `GET /artifacts/sha256/<hex>/<file>`, where
//! `<file>` is a package file name ([`crate::store::is_package_file`]); there
//! is no listing and nothing is written. Every request must carry a bearer
//! token of a configured reader ([`auth`]). Files are streamed, never held
//! whole in memory. The bytes are not trusted by their readers: each checks
//! them against the digests in status.

pub mod auth;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use wasmplug_crds::Artifact;
use wasmplug_host::plugin::Digest;
use wasmplug_host::server::connections::Plain;
use wasmplug_host::server::{ConnectionLimits, serve_connections};

use crate::metrics::{ArtifactRequest, Metrics};
use crate::store::Store;
use auth::{Authenticator, Refusal};

/// A response body: a short message or a streamed file.
type Body = BoxBody<Bytes, std::io::Error>;

/// What the artifact server needs.
#[derive(Debug)]
pub struct ArtifactServer {
    pub store: Store,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
}

/// Serves under `limits` until the task is dropped.
pub async fn serve(listener: TcpListener, limits: ConnectionLimits, server: Arc<ArtifactServer>) {
    let service = move |request: Request<Incoming>| {
        let server = server.clone();
        async move { server.respond(&request).await }
    };
    serve_connections(listener, limits, Plain, service, std::future::pending()).await;
}

impl ArtifactServer {
    async fn respond<B>(&self, request: &Request<B>) -> Response<Body> {
        let (result, response) = self.answer(request).await;
        self.metrics.artifact_request(result);
        response
    }

    async fn answer<B>(&self, request: &Request<B>) -> (ArtifactRequest, Response<Body>) {
        if request.method() != Method::GET {
            return (ArtifactRequest::BadRequest, message(StatusCode::METHOD_NOT_ALLOWED, "only GET is served"));
        }
        let Some((digest, name)) = parse_path(request.uri().path()) else {
            let text = "not found: artifacts are served at /artifacts/sha256/<hex>/<package file>";
            return (ArtifactRequest::NotFound, message(StatusCode::NOT_FOUND, text));
        };
        let authorization = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
        let user = match self.auth.check(authorization).await {
            Ok(user) => user,
            Err(refusal) => {
                tracing::info!(path = request.uri().path(), %refusal, "artifact download refused");
                return refused(&refusal);
            }
        };
        let file = match self.store.open_published(&digest, name) {
            Ok(file) => file,
            Err(error) => {
                tracing::debug!(%digest, file = name, user, %error, "artifact not in this replica's store");
                let text = format!("not found: {digest} has no {name} in this replica's store");
                return (ArtifactRequest::NotFound, message(StatusCode::NOT_FOUND, &text));
            }
        };
        let length = match file.metadata() {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                return (ArtifactRequest::Error, message(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()));
            }
        };
        tracing::debug!(%digest, file = name, user, bytes = length, "serving an artifact");
        let metrics = self.metrics.clone();
        let chunks = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file))
            .inspect_ok(move |chunk| metrics.artifact_bytes_served(chunk.len()))
            .map_ok(Frame::data);
        let mut response = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_LENGTH, length.into());
        headers.insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/octet-stream"));
        // Content-addressed: the bytes at a path never change.
        headers.insert(CACHE_CONTROL, hyper::header::HeaderValue::from_static("private, max-age=31536000, immutable"));
        (ArtifactRequest::Served, response)
    }
}

/// The digest and file name of `/artifacts/sha256/<hex>/<file>`, if the path is one.
fn parse_path(path: &str) -> Option<(Digest, &str)> {
    let rest = path.strip_prefix('/')?.strip_prefix(Artifact::PACKAGES_DIR)?.strip_prefix('/')?;
    let (hex, name) = rest.split_once('/')?;
    let digest = format!("sha256:{hex}").parse().ok()?;
    crate::store::is_package_file(name).then_some((digest, name))
}

fn refused(refusal: &Refusal) -> (ArtifactRequest, Response<Body>) {
    let (result, status) = match refusal {
        Refusal::NoToken(_) | Refusal::NotAuthenticated { .. } => {
            (ArtifactRequest::Unauthenticated, StatusCode::UNAUTHORIZED)
        }
        Refusal::NotAllowed { .. } => (ArtifactRequest::Forbidden, StatusCode::FORBIDDEN),
        Refusal::Unavailable(_) => (ArtifactRequest::Error, StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut response = message(status, &refusal.to_string());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
    }
    (result, response)
}

fn message(status: StatusCode, text: &str) -> Response<Body> {
    let body = Full::new(Bytes::from(format!("{text}\n"))).map_err(|never: Infallible| match never {});
    let mut response = Response::new(BodyExt::boxed(body));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_package_files_at_their_content_address_are_paths() {
        let hex = "ab".repeat(32);
        let wasm = format!("/artifacts/sha256/{hex}/plugin.wasm");
        assert_eq!(parse_path(&wasm).map(|(d, n)| (d.hex(), n)), Some((hex.clone(), "plugin.wasm")));
        let cwasm = format!("/artifacts/sha256/{hex}/wasmtime-x86_64-0123456789abcdef.cwasm");
        assert!(parse_path(&cwasm).is_some());
        for path in [
            "/".to_owned(),
            "/artifacts/sha256/".to_owned(),
            format!("/artifacts/sha256/{hex}"),
            format!("/artifacts/sha256/{hex}/"),
            format!("/artifacts/sha256/{hex}/../../etc/passwd"),
            format!("/artifacts/sha256/{hex}/sub/plugin.wasm"),
            format!("/artifacts/sha256/{}/plugin.wasm", "AB".repeat(32)),
            format!("/artifacts/sha256/{hex}/.staging"),
            format!("/store/artifacts/sha256/{hex}/plugin.wasm"),
        ] {
            assert!(parse_path(&path).is_none(), "{path}");
        }
    }
}
