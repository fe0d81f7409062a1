//! `POST /messages`: sends a message through Twilio's API with our
//! StatusCallback, and records it so its callbacks find it.

use actix_web::{web, HttpResponse};
use service_kit::telemetry::trace_headers;
use twilio_protocol::status::MessageStatus;

use super::error::ApiError;
use super::state::HttpState;
use crate::store;
use crate::store::projection::SentMessage;
use crate::twilio_api::SendRequest;

/// Sends a message through Twilio with our StatusCallback and records it.
pub(super) async fn send_message(
    body: web::Bytes,
    state: web::Data<HttpState>,
) -> Result<HttpResponse, ApiError> {
    let sender = state
        .twilio
        .as_ref()
        .filter(|client| client.can_send())
        .ok_or(ApiError::SendingOff)?;
    let send: SendRequest = serde_json::from_slice(&body).map_err(ApiError::InvalidJson)?;
    send.validate()
        .map_err(|problem| ApiError::BadRequest(problem.to_owned()))?;
    let created = sender.send(&send).await.map_err(|error| {
        tracing::warn!(%error, "sending failed");
        ApiError::Sending(error)
    })?;
    let recorded = match created.status.parse::<MessageStatus>() {
        Ok(status) => {
            let message = SentMessage {
                message_sid: &created.sid,
                status,
                account_sid: created.account_sid.clone().or(send.account_sid.clone()),
                from_address: created.from.clone().or(send.from.clone()),
                to_address: created.to.clone().or(Some(send.to.clone())),
                seen_at: chrono::Utc::now(),
                traceparent: trace_headers(&tracing::Span::current())
                    .into_iter()
                    .find(|(name, _)| name == "traceparent")
                    .map(|(_, value)| value),
            };
            let result = store::record_sent_message(&state.db, message, state.feed).await;
            // Sent is sent: a recording failure is logged, the callbacks will fill the row.
            if let Err(error) = &result {
                tracing::error!(message_sid = %created.sid, %error, "sent, but not recorded");
            }
            result.is_ok()
        }
        Err(_) => false,
    };
    tracing::info!(message_sid = %created.sid, status = %created.status, "message sent");
    Ok(HttpResponse::Created().json(serde_json::json!({
        "sid": created.sid,
        "status": created.status,
        "recorded": recorded,
    })))
}
