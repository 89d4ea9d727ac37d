//! The validating admission webhook: `POST /validate` over TLS, called by the API
//! server before a FormatPlugin is created, changed or deleted, answering with the
//! verdict of [`crate::policy::review`].
//!
//! Every replica serves it, leader or not: it only reads. It lists the
//! FormatPlugins in scope for each review (consistent reads, no cache to warm),
//! which is cheap at the rate people and GitOps tools change them.

mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::api::{DynamicObject, ListParams};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use wasmplug_crds::FormatPlugin;
use wasmplug_host::server::connections::{Guarded, Handshake};
use wasmplug_host::server::{ConnectionLimits, serve_connections};

pub use tls::{CertificateFiles, ReloadingCertificate, TlsError};

use crate::policy::{self, Change, PublishingNamespaces, Rules, SourcePolicy};
use crate::verify::SignaturePolicy;

/// The path the API server posts AdmissionReviews to.
pub const PATH: &str = "/validate";

/// Largest AdmissionReview read (an old and a new object; FormatPlugins are small).
const MAX_REVIEW_BYTES: usize = 4 << 20;

/// Reviews changes to FormatPlugins.
pub struct Webhook {
    client: Client,
    /// The namespace the operator follows, or `None` for every namespace.
    scope: Option<String>,
    sources: SourcePolicy,
    namespaces: PublishingNamespaces,
    signatures: SignaturePolicy,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("scope", &self.scope)
            .field("sources", &self.sources)
            .field("namespaces", &self.namespaces)
            .field("signatures", &self.signatures)
            .finish()
    }
}

impl Webhook {
    pub fn new(
        client: Client,
        scope: Option<String>,
        sources: SourcePolicy,
        namespaces: PublishingNamespaces,
        signatures: SignaturePolicy,
    ) -> Self {
        Webhook { client, scope, sources, namespaces, signatures }
    }

    /// The verdict on one AdmissionReview, as the AdmissionReview to answer with.
    pub async fn admit(&self, review: AdmissionReview<DynamicObject>) -> AdmissionReview<DynamicObject> {
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => return AdmissionResponse::invalid("the AdmissionReview has no request").into_review(),
        };
        let response = AdmissionResponse::from(&request);
        let response = match self.verdict(&request).await {
            Ok(()) => {
                tracing::debug!(operation = ?request.operation, name = request.name, "allowed a FormatPlugin change");
                response
            }
            Err(reason) => {
                tracing::info!(
                    operation = ?request.operation,
                    namespace = request.namespace.as_deref().unwrap_or_default(),
                    name = request.name,
                    user = request.user_info.username.as_deref().unwrap_or_default(),
                    reason,
                    "refused a FormatPlugin change"
                );
                response.deny(reason)
            }
        };
        response.into_review()
    }

    async fn verdict(&self, request: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        // The API server checked the schema already, but its rules let some
        // objects through that cannot be read (a duration too long, say). What
        // cannot be read cannot be checked, so it is refused, except for what
        // keeps such an object removable: deleting it, and changes to its
        // metadata alone (finalizers).
        let read = |object: Option<&DynamicObject>| object.map(|o| o.clone().try_parse::<FormatPlugin>());
        let (new, old) = (read(request.object.as_ref()), read(request.old_object.as_ref()));
        let change = match (&request.operation, &new, &old) {
            (Operation::Delete, _, Some(Ok(old))) => Change::Delete(old),
            (Operation::Delete, _, _) => return Ok(()),
            (Operation::Create, Some(Ok(new)), _) => Change::Create(new),
            (Operation::Update, Some(Ok(new)), Some(Ok(old))) => Change::Update { old, new },
            // An old object that cannot be read offers nothing to compare with:
            // the change is checked as if the object were new.
            (Operation::Update, Some(Ok(new)), _) => Change::Create(new),
            (Operation::Update, Some(Err(_)), _) if only_metadata_changes(request) => return Ok(()),
            (_, Some(Err(error)), _) => {
                return Err(format!("the FormatPlugin cannot be read ({error}); correct its spec"));
            }
            _ => return Ok(()),
        };
        let others = self.plugins().await.map_err(|error| {
            format!("failed to list FormatPlugins to check this change against: {error}; retry in a moment")
        })?;
        let rules = Rules {
            sources: &self.sources,
            namespaces: &self.namespaces,
            signatures: &self.signatures,
            scope: self.scope.as_deref(),
        };
        policy::review(change, &others, &rules).map_err(|denial| denial.to_string())
    }

    /// Every readable FormatPlugin in scope.
    async fn plugins(&self) -> kube::Result<Vec<FormatPlugin>> {
        let api = wasmplug_host::watch::api(self.client.clone(), self.scope.as_deref());
        let list = api.list(&ListParams::default()).await?;
        Ok(list.items.into_iter().filter_map(|object| object.try_parse().ok()).collect())
    }
}

/// Serves the webhook over TLS under `limits` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    limits: ConnectionLimits,
    certificate: Arc<ReloadingCertificate>,
    webhook: Arc<Webhook>,
) {
    let config = match certificate.server_config() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(%error, "the webhook cannot serve");
            return;
        }
    };
    let tls = Tls(TlsAcceptor::from(Arc::new(config)));
    let body_timeout = limits.body_read_timeout;
    let service = move |request: Request<Incoming>| {
        let webhook = webhook.clone();
        async move { respond(&webhook, request, body_timeout).await }
    };
    serve_connections(listener, limits, tls, service, std::future::pending()).await;
}

/// The webhook's TLS handshake, in the shared connection loop.
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<Guarded>;

    async fn handshake(&self, stream: Guarded) -> std::io::Result<Self::Io> {
        self.0.accept(stream).await
    }
}

async fn respond(webhook: &Webhook, request: Request<Incoming>, body_timeout: Duration) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, format!("not found; the webhook is at POST {PATH}\n"));
    }
    if request.method() != Method::POST {
        return plain(StatusCode::METHOD_NOT_ALLOWED, format!("use POST {PATH}\n"));
    }
    let body =
        match tokio::time::timeout(body_timeout, Limited::new(request.into_body(), MAX_REVIEW_BYTES).collect()).await {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(error)) => {
                return plain(StatusCode::BAD_REQUEST, format!("failed to read the AdmissionReview: {error}\n"));
            }
            Err(_) => {
                return plain(StatusCode::REQUEST_TIMEOUT, format!("the AdmissionReview took over {body_timeout:?}\n"));
            }
        };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => return plain(StatusCode::BAD_REQUEST, format!("the body is not an AdmissionReview: {error}\n")),
    };
    let answer = webhook.admit(review).await;
    match serde_json::to_vec(&answer) {
        Ok(json) => {
            let mut response = Response::new(Full::new(Bytes::from(json)));
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("valid"));
            response
        }
        Err(error) => plain(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to encode the answer: {error}\n")),
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}

/// Whether `request` changes nothing but the object's metadata.
fn only_metadata_changes(request: &AdmissionRequest<DynamicObject>) -> bool {
    match (&request.object, &request.old_object) {
        (Some(new), Some(old)) => new.data == old.data,
        _ => false,
    }
}
