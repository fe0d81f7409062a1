//! Reading a callback request off the wire: its head within limits, a
//! content type we can verify, and the raw body, bounded in size and time.
//! The bytes are kept exactly as sent: the signature covers them.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use queue_wire::envelope::BodyKind;
use std::time::Duration;

use crate::rejection::Rejection;
use crate::state::BodyLimits;

/// Twilio's headers are a few hundred bytes; actix's own cap is 128 KiB.
const HEADER_LIMIT_BYTES: usize = 64 * 1024;

/// Longest a client may take to send the body: Twilio sends a few hundred
/// bytes at once, and waits 15 s at most for the answer, so a body still
/// arriving after 10 s is a slow client holding a connection, not Twilio.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request body as received, with how it is encoded.
pub(crate) struct RawBody {
    pub bytes: web::BytesMut,
    pub kind: BodyKind,
}

pub(crate) async fn read(
    request: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<RawBody, Rejection> {
    // actix refuses most oversized heads itself, but not one that arrives in
    // a single read after a partial one; this makes the limit exact.
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > HEADER_LIMIT_BYTES {
        return Err(Rejection::HeadersTooLarge {
            limit: HEADER_LIMIT_BYTES,
        });
    }
    let kind = header(request, CONTENT_TYPE.as_str())
        .and_then(BodyKind::from_content_type)
        .ok_or(Rejection::UnsupportedMediaType)?;
    let bytes = tokio::time::timeout(
        limits.timeout,
        read_bounded(request, payload, limits.max_bytes),
    )
    .await
    .map_err(|_| Rejection::BodyTimeout(limits.timeout))??;
    Ok(RawBody { bytes, kind })
}

/// A request header as text, if present and visible ASCII.
pub(crate) fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads the whole body, refusing it as soon as it passes `limit`.
async fn read_bounded(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, Rejection> {
    let declared = header(request, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Rejection::TooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Rejection::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(Rejection::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
