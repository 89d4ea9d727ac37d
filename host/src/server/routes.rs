//! The HTTP API of PRODUCT.md, request by request. Routing and the mapping of
//! answers to JSON live here; what a format does is the handler's business.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::error::ApiError;
use super::wire::{IndexFiles, RequestCall, WireResponse, list_formats, path_param};
use super::{App, body};
use crate::handler::{HandlerError, SharedHandler, with_checksum};
use crate::registry::breaker::Transition;
use crate::registry::{Format, Origin};
use crate::runtime::{HttpRequest, HttpResponse, Metadata, RepoContext};

type Answer = Result<Response<Full<Bytes>>, ApiError>;

/// The operations a format handler offers over HTTP.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Metadata,
    Validate,
    Index,
    Request,
    /// Validate and metadata in one call: `POST …/artifacts`.
    Accept,
}

impl Operation {
    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "metadata" => Some(Operation::Metadata),
            "validate" => Some(Operation::Validate),
            "index" => Some(Operation::Index),
            "request" => Some(Operation::Request),
            "artifacts" => Some(Operation::Accept),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Metadata => "metadata",
            Operation::Validate => "validate",
            Operation::Index => "index",
            Operation::Request => "request",
            Operation::Accept => "artifacts",
        }
    }
}

pub(super) async fn route<B>(app: Arc<App>, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let answer = match (request.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "ok\n")),
        (&Method::GET, ["readyz"]) if app.is_ready() => Ok(text(StatusCode::OK, "ok\n")),
        (&Method::GET, ["readyz"]) => Ok(text(StatusCode::SERVICE_UNAVAILABLE, "not ready: first sync not done\n")),
        (&Method::GET, ["metrics"]) => Ok(metrics(&app)),
        (&Method::GET, ["v1", "formats"]) => Ok(json(StatusCode::OK, &list_formats(&app.registry.snapshot()))),
        (&Method::POST, ["v1", "formats", key, operation]) => match Operation::from_segment(operation) {
            Some(operation) => call(&app, key, operation, request).await,
            None => Err(ApiError::not_found(format!(
                "unknown operation {operation:?}; use artifacts, metadata, validate, index or request"
            ))),
        },
        (_, ["v1", "formats", ..] | ["healthz" | "readyz" | "metrics"]) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {path}", request.method()),
        )),
        _ => Err(ApiError::not_found(format!("no such endpoint {path}; see GET /v1/formats"))),
    };
    answer.unwrap_or_else(|error| json(error.status, &error))
}

async fn call<B>(app: &App, key: &str, operation: Operation, request: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    app.registry.check(key)?;
    let artifact_path = path_param(request.uri().query())?;
    let (limit, timeout) = (app.config.max_body_bytes, app.config.connections.body_read_timeout);
    let (body, body_room) = body::read(request, limit, timeout, &app.admission).await?;
    let input_bytes = body.len();
    let missing_path = || ApiError::bad_request("missing ?path= (the artifact's path in its repository)");
    let input = match operation {
        Operation::Metadata => Input::Metadata { path: artifact_path.ok_or_else(missing_path)?, data: body },
        Operation::Validate => Input::Validate { path: artifact_path.ok_or_else(missing_path)?, data: body },
        Operation::Accept => Input::Accept { path: artifact_path.ok_or_else(missing_path)?, data: body },
        Operation::Index => Input::Index(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body must be a JSON list of metadata objects: {e}")))?,
        ),
        Operation::Request => Input::Request(Box::new(RequestCall::parse(&body)?)),
    };

    let slot = app.admission.call(key).await?;
    // The version serving now: a call that waited for its slot runs on the
    // newest, calls already running finish on theirs.
    let serving = app.registry.serving(key)?;
    let handler = serving.handler().clone();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        let _held = (slot, body_room);
        run(&handler, input)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "crashed", format!("the handler call panicked: {e}")))?;
    let took = started.elapsed();

    match app.registry.report(&serving, &output, input_bytes) {
        Transition::Quarantined { reason } => tracing::warn!(format = key, reason, "format quarantined"),
        Transition::Recovered => tracing::info!(format = key, "quarantine over: the trial call succeeded"),
        Transition::None => {}
    }
    let output = output.map_err(ApiError::from);
    let outcome = output.as_ref().map_or_else(|error| error.code, |_| "ok");
    app.metrics.observe_call(key, operation.name(), outcome, took);
    let served_by = served_by(&serving.format);
    // The handler answered, with a result or a refusal: either way the header
    // says which version did.
    let mut response = match output {
        Ok(Output::Metadata(metadata)) => json(StatusCode::OK, &metadata),
        Ok(Output::Valid) => empty(StatusCode::NO_CONTENT),
        Ok(Output::Index(None)) => empty(StatusCode::NO_CONTENT),
        Ok(Output::Index(Some(files))) => json(StatusCode::OK, &IndexFiles::new(files)),
        Ok(Output::Response(response)) => json(StatusCode::OK, &WireResponse::from(response)),
        Err(error) => json(error.status, &error),
    };
    if let Ok(value) = HeaderValue::from_str(&served_by) {
        response.headers_mut().insert(SERVED_BY, value);
    }
    Ok(response)
}

/// Response header naming the handler version that answered: `builtin` or
/// `<plugin name>@<version>`, plus the digest for plugins.
pub const SERVED_BY: &str = "wasmplug-served-by";

fn served_by(format: &Format) -> String {
    match (&format.origin, format.digest) {
        (Origin::Builtin, _) => "builtin".to_owned(),
        (Origin::Plugin { name, version }, Some(digest)) => format!("{name}@{version} {digest}"),
        (Origin::Plugin { name, version }, None) => format!("{name}@{version}"),
    }
}

enum Input {
    Metadata { path: String, data: Bytes },
    Validate { path: String, data: Bytes },
    Accept { path: String, data: Bytes },
    Index(Vec<Metadata>),
    Request(Box<(HttpRequest, RepoContext, Vec<Metadata>)>),
}

enum Output {
    Metadata(Metadata),
    Valid,
    Index(Option<Vec<(String, Vec<u8>)>>),
    Response(HttpResponse),
}

fn run(handler: &SharedHandler, input: Input) -> Result<Output, HandlerError> {
    match input {
        Input::Metadata { path, data } => {
            handler.parse_metadata(&path, &data).map(|metadata| Output::Metadata(with_checksum(metadata, &data)))
        }
        Input::Validate { path, data } => handler.validate(&path, &data).map(|()| Output::Valid),
        Input::Accept { path, data } => {
            handler.accept(&path, &data).map(|metadata| Output::Metadata(with_checksum(metadata, &data)))
        }
        Input::Index(artifacts) => handler.generate_index(&artifacts).map(Output::Index),
        Input::Request(call) => {
            let (request, context, artifacts) = *call;
            handler.handle_request(&request, &context, &artifacts).map(Output::Response)
        }
    }
}

fn metrics(app: &App) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::OK, app.metrics.render(&app.registry));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    response
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value)
        .unwrap_or_else(|e| format!("{{\"code\":\"internal\",\"message\":\"{e}\"}}").into_bytes());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
