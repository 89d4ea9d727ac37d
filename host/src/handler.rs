//! The one interface every format handler implements, builtin or WebAssembly:
//! the HTTP layer and the registry cannot tell them apart, except in how a
//! call may run (see [`FormatHandler::cooperative`]).

use std::sync::Arc;

use crate::runtime::{CallError, HttpRequest, HttpResponse, LoadedPlugin, Metadata, RepoContext};

/// Index files a handler generates: (file name, contents).
pub type IndexFiles = Vec<(String, Vec<u8>)>;

/// One call of a handler, as the HTTP layer makes it.
#[derive(Clone, Copy, Debug)]
pub enum Call<'a> {
    Metadata {
        path: &'a str,
        data: &'a [u8],
    },
    Validate {
        path: &'a str,
        data: &'a [u8],
    },
    /// Validate, and if valid, metadata: one upload.
    Accept {
        path: &'a str,
        data: &'a [u8],
    },
    Index(&'a [Metadata]),
    Request {
        request: &'a HttpRequest,
        context: &'a RepoContext,
        artifacts: &'a [Metadata],
    },
}

impl Call<'_> {
    /// The bytes the caller uploaded for this call: an artifact, or a
    /// request's body.
    pub fn input_bytes(&self) -> usize {
        match self {
            Call::Metadata { data, .. } | Call::Validate { data, .. } | Call::Accept { data, .. } => data.len(),
            Call::Index(_) => 0,
            Call::Request { request, .. } => request.body.len(),
        }
    }
}

/// What a handler answered to a [`Call`].
#[derive(Debug)]
pub enum Answer {
    Metadata(Metadata),
    Valid,
    Index(Option<IndexFiles>),
    Response(HttpResponse),
}

/// Why a handler did not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandlerError {
    /// The handler looked at the input and refused it; the message says why.
    #[error("{0}")]
    Rejected(String),
    /// The call itself failed (crash, exceeded limit, unsupported function).
    #[error(transparent)]
    Failed(#[from] CallError),
}

/// A format handler. These calls are blocking and CPU-bound; run them off the
/// async executor, or, for a handler that is [`FormatHandler::cooperative`],
/// await its plugin's [`LoadedPlugin::answer`] instead.
pub trait FormatHandler: Send + Sync + std::fmt::Debug {
    fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError>;
    fn validate(&self, path: &str, data: &[u8]) -> Result<(), HandlerError>;
    /// What a registry asks once per uploaded artifact: is it valid, and if so,
    /// its metadata. One call, so a plugin answers both from one instance.
    fn accept(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError>;
    fn generate_index(&self, artifacts: &[Metadata]) -> Result<Option<IndexFiles>, HandlerError>;
    fn handle_request(
        &self,
        request: &HttpRequest,
        context: &RepoContext,
        artifacts: &[Metadata],
    ) -> Result<HttpResponse, HandlerError>;

    /// Answers `call` on this thread, blocking it until done.
    fn answer(&self, call: Call<'_>) -> Result<Answer, HandlerError> {
        match call {
            Call::Metadata { path, data } => self.parse_metadata(path, data).map(Answer::Metadata),
            Call::Validate { path, data } => self.validate(path, data).map(|()| Answer::Valid),
            Call::Accept { path, data } => self.accept(path, data).map(Answer::Metadata),
            Call::Index(artifacts) => self.generate_index(artifacts).map(Answer::Index),
            Call::Request { request, context, artifacts } => {
                self.handle_request(request, context, artifacts).map(Answer::Response)
            }
        }
    }

    /// The plugin behind this handler, whose calls can run as futures on the
    /// async workers (they yield while they compute) instead of each taking
    /// a blocking thread; `None` for handlers whose calls must block one.
    fn cooperative(&self) -> Option<&LoadedPlugin> {
        None
    }
}

/// A shareable handler.
pub type SharedHandler = Arc<dyn FormatHandler>;

/// `metadata` with the SHA-256 of `data` when the handler left it out (Artifact
/// Keeper's plugins do, and rely on the host for it): computed here, natively,
/// with the CPU's SHA instructions where it has them.
pub fn with_checksum(mut metadata: Metadata, data: &[u8]) -> Metadata {
    if metadata.checksum_sha256.as_deref().is_none_or(str::is_empty) {
        metadata.checksum_sha256 = Some(crate::plugin::Digest::of(data).hex());
    }
    metadata
}

fn flatten<T>(answer: Result<Result<T, String>, CallError>) -> Result<T, HandlerError> {
    answer?.map_err(HandlerError::Rejected)
}

impl FormatHandler for LoadedPlugin {
    fn parse_metadata(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError> {
        flatten(LoadedPlugin::parse_metadata(self, path, data))
    }

    fn validate(&self, path: &str, data: &[u8]) -> Result<(), HandlerError> {
        flatten(LoadedPlugin::validate(self, path, data))
    }

    fn accept(&self, path: &str, data: &[u8]) -> Result<Metadata, HandlerError> {
        flatten(LoadedPlugin::accept(self, path, data))
    }

    fn generate_index(&self, artifacts: &[Metadata]) -> Result<Option<IndexFiles>, HandlerError> {
        flatten(LoadedPlugin::generate_index(self, artifacts))
    }

    fn cooperative(&self) -> Option<&LoadedPlugin> {
        Some(self)
    }

    fn handle_request(
        &self,
        request: &HttpRequest,
        context: &RepoContext,
        artifacts: &[Metadata],
    ) -> Result<HttpResponse, HandlerError> {
        flatten(LoadedPlugin::handle_request(self, request, context, artifacts))
    }
}
