//! Reading a request body under its limits: the size limit, the read timeout,
//! and room in the host's budget for bodies in flight, reserved before the
//! bytes are read — the declared length up front, or, for a body without one,
//! as its bytes arrive. So an upload that sends little holds little, and a
//! body never sits in memory without its room.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};

use super::admission::{Admission, BodyRoom};
use super::error::ApiError;

/// The request's body, read, with the room it holds in the budget.
pub(super) async fn read<B>(
    request: Request<B>,
    limit: usize,
    timeout: Duration,
    admission: &Admission,
) -> Result<(Bytes, BodyRoom), ApiError>
where
    B: Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = declared_length(&request)?;
    let body = request.into_body();
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::body_too_large(limit));
    }
    let mut room = admission.body(declared.unwrap_or(0)).await?;
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut bytes = BytesMut::with_capacity(declared.unwrap_or(0));
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ApiError::bad_request(format!("failed to read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            let total = bytes.len() + data.len();
            if total > limit {
                return Err(ApiError::body_too_large(limit));
            }
            admission.grow(&mut room, total).await?;
            bytes.extend_from_slice(&data);
        }
        Ok(bytes.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(read) => read.map(|bytes| (bytes, room)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {timeout:?}; send it faster or in a smaller request"),
        )),
    }
}

/// The body length the request declares in Content-Length, if it declares one.
fn declared_length<B>(request: &Request<B>) -> Result<Option<usize>, ApiError> {
    let Some(value) = request.headers().get(CONTENT_LENGTH) else { return Ok(None) };
    let length = value.to_str().ok().and_then(|text| text.parse::<u64>().ok());
    let length = length.ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?;
    Ok(Some(usize::try_from(length).unwrap_or(usize::MAX)))
}
