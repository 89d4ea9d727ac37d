//! The HTTP API of PRODUCT.md, request by request. Routing and the mapping of
//! answers to JSON live here; what a format does is the handler's business.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::admission::{BodyRoom, CallSlot};
use super::error::ApiError;
use super::wire::{IndexFiles, RequestCall, WireResponse, list_formats, parse_index, path_param};
use super::{App, body};
use crate::handler::{Answer, Call, HandlerError, with_checksum};
use crate::registry::breaker::Transition;
use crate::registry::{Format, Origin};
use crate::runtime::{CallError, HttpRequest, LoadedPlugin, Metadata, RepoContext};

type Reply = Result<Response<Full<Bytes>>, ApiError>;

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

async fn call<B>(app: &App, key: &str, operation: Operation, request: Request<B>) -> Reply
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
        Operation::Index => Input::Index(parse_index(&body)?),
        Operation::Request => Input::Request(Box::new(RequestCall::parse(&body)?)),
    };

    let slot = app.admission.call(key).await?;
    // The version serving now: a call that waited for its slot runs on the
    // newest, calls already running finish on theirs.
    let serving = app.registry.serving(key)?;
    let handler = serving.handler().clone();
    let (output, took) = match handler.cooperative() {
        Some(plugin) => answer_here(plugin, input, slot, body_room).await,
        // Builtins compute without yielding: each call takes a blocking thread.
        None => {
            let started = Instant::now();
            let output = tokio::task::spawn_blocking(move || {
                let _held = (slot, body_room);
                handler.answer(input.call()).map(|answer| input.with_checksum(answer))
            })
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_GATEWAY, "crashed", format!("the handler call panicked: {e}"))
            })?;
            (output, started.elapsed())
        }
    };

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
        Ok(Answer::Metadata(metadata)) => json(StatusCode::OK, &metadata),
        Ok(Answer::Valid) => empty(StatusCode::NO_CONTENT),
        Ok(Answer::Index(None)) => empty(StatusCode::NO_CONTENT),
        Ok(Answer::Index(Some(files))) => json(StatusCode::OK, &IndexFiles::new(files)),
        Ok(Answer::Response(response)) => json(StatusCode::OK, &WireResponse::from(response)),
        Err(error) => json(error.status, &error),
    };
    if let Ok(value) = HeaderValue::from_str(&served_by) {
        response.headers_mut().insert(SERVED_BY, value);
    }
    Ok(response)
}

/// A plugin call on this task, yielding at every epoch tick while it computes
/// (no hand-off to another thread and back), and the time it took, hashing
/// included.
///
/// The call's slots are given up as soon as the guest is done, and this task
/// then yields once: the caller waiting for that slot was woken onto this
/// worker, and runs before this response is finished (which the other
/// workers may take on meanwhile), so a format allowed one call at a time is
/// never idle while a response is written. The body's room is kept until its
/// checksum is computed.
async fn answer_here(
    plugin: &LoadedPlugin,
    input: Input,
    slot: CallSlot,
    body_room: BodyRoom,
) -> (Result<Answer, HandlerError>, Duration) {
    let started = Instant::now();
    let answer = plugin.answer(input.call()).await;
    let guest_time = started.elapsed();
    drop(slot);
    tokio::task::yield_now().await;
    let hashing = Instant::now();
    let _room = body_room;
    let output = match answer {
        Ok(Ok(answer @ Answer::Metadata(_))) if input.artifact().is_some_and(|data| data.len() > HASH_HERE) => {
            // Hashing a large artifact takes milliseconds: not on a worker.
            tokio::task::spawn_blocking(move || Ok(input.with_checksum(answer)))
                .await
                .unwrap_or_else(|e| Err(CallError::Crashed { message: format!("hashing panicked: {e}") }.into()))
        }
        Ok(Ok(answer)) => Ok(input.with_checksum(answer)),
        Ok(Err(refusal)) => Err(HandlerError::Rejected(refusal)),
        Err(error) => Err(error.into()),
    };
    (output, guest_time + hashing.elapsed())
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

/// The largest artifact whose SHA-256 is computed on an async worker (well
/// under a tick); larger ones are hashed on the blocking pool.
const HASH_HERE: usize = 256 << 10;

impl Input {
    /// The artifact uploaded with the call, if it has one.
    fn artifact(&self) -> Option<&Bytes> {
        match self {
            Input::Metadata { data, .. } | Input::Validate { data, .. } | Input::Accept { data, .. } => Some(data),
            Input::Index(_) | Input::Request(_) => None,
        }
    }

    /// `answer` with the artifact's SHA-256 filled into its metadata, if the
    /// handler left it out.
    fn with_checksum(&self, answer: Answer) -> Answer {
        match (answer, self.artifact()) {
            (Answer::Metadata(metadata), Some(data)) => Answer::Metadata(with_checksum(metadata, data)),
            (answer, _) => answer,
        }
    }

    fn call(&self) -> Call<'_> {
        match self {
            Input::Metadata { path, data } => Call::Metadata { path, data },
            Input::Validate { path, data } => Call::Validate { path, data },
            Input::Accept { path, data } => Call::Accept { path, data },
            Input::Index(artifacts) => Call::Index(artifacts),
            Input::Request(call) => {
                let (request, context, artifacts) = &**call;
                Call::Request { request, context, artifacts }
            }
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
