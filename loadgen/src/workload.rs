//! Realistic status-callback traffic: messages that live through Twilio's
//! lifecycles (queued → sent → delivered, some undelivered or failed with
//! their error codes, some WhatsApp messages read), with the parameter sets
//! Twilio sends, signed exactly as Twilio signs them. On top of that, on
//! demand: exact re-sends (duplicates), requests signed with the wrong token,
//! and messages whose callbacks arrive out of order.
//!
//! Every message SID of a run starts with `SM` + the run id, so runs never
//! collide and the database check can count a run's rows alone.

use bytes::Bytes;
use std::sync::Arc;
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

/// What a run sends and how it is mixed.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The URL Twilio would call, exactly as signed.
    pub url: String,
    pub token: AuthToken,
    /// Signs the bad-signature requests: any other token.
    pub wrong_token: AuthToken,
    pub duplicate_ratio: f64,
    pub bad_signature_ratio: f64,
    pub out_of_order_ratio: f64,
    pub run: RunId,
    account_sid: String,
    messaging_service_sid: String,
    channel_install_sid: String,
}

impl Workload {
    pub fn new(url: String, token: AuthToken, mix: Mix, run: RunId) -> Self {
        let mut rng = fastrand::Rng::with_seed(u64::from(run.0));
        Self {
            url,
            token,
            wrong_token: AuthToken::new(format!("wrong-{}", run.as_hex())),
            duplicate_ratio: mix.duplicate_ratio,
            bad_signature_ratio: mix.bad_signature_ratio,
            out_of_order_ratio: mix.out_of_order_ratio,
            account_sid: format!("AC{}", hex32(&mut rng)),
            messaging_service_sid: format!("MG{}", hex32(&mut rng)),
            channel_install_sid: format!("XE{}", hex32(&mut rng)),
            run,
        }
    }
}

/// The share of each kind of abnormal request, each in `0.0..=1.0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mix {
    pub duplicate_ratio: f64,
    pub bad_signature_ratio: f64,
    pub out_of_order_ratio: f64,
}

/// A run's identity: 8 hex digits that prefix every message SID it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunId(pub u32);

impl RunId {
    pub fn random() -> Self {
        Self(fastrand::u32(..))
    }

    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 8)
            .then(|| u32::from_str_radix(hex, 16).ok())
            .flatten()
            .map(Self)
    }

    pub fn as_hex(self) -> String {
        format!("{:08x}", self.0)
    }

    /// The SID of message number `n` of this run (34 characters, as Twilio's).
    pub fn message_sid(self, n: u64) -> String {
        format!("SM{:08x}{:024x}", self.0, n)
    }

    /// A SQL `LIKE` pattern matching this run's message SIDs.
    pub fn sid_pattern(self) -> String {
        format!("SM{:08x}%", self.0)
    }
}

/// Why a request is sent, which decides the answer it should get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    /// A status event sent for the first time.
    Genuine,
    /// An exact re-send of an event already sent (a Twilio retry).
    Duplicate,
    /// An event signed with the wrong token: must be refused with 403.
    BadSignature,
}

impl RequestKind {
    pub fn expected_status(self) -> u16 {
        match self {
            Self::Genuine | Self::Duplicate => 200,
            Self::BadSignature => 403,
        }
    }
}

/// One request ready to send.
#[derive(Clone, Debug)]
pub struct SignedCallback {
    pub kind: RequestKind,
    /// Identifies the status event (message and position in its lifecycle):
    /// duplicates and bad-signature copies carry the id of the event they copy.
    pub event_id: u64,
    pub message_id: u64,
    pub body: Bytes,
    pub signature: String,
}

/// The lifecycle a message goes through.
#[derive(Clone, Copy, Debug)]
enum Lifecycle {
    Delivered,
    Undelivered(u32),
    Failed(u32),
    WhatsAppRead,
}

impl Lifecycle {
    fn pick(rng: &mut fastrand::Rng) -> Self {
        match rng.u32(0..100) {
            0..68 => Self::Delivered,
            68..80 => Self::Undelivered([30003, 30005, 30006][rng.usize(0..3)]),
            80..85 => Self::Failed(30007),
            _ => Self::WhatsAppRead,
        }
    }

    fn statuses(self) -> &'static [&'static str] {
        match self {
            Self::Delivered => &["queued", "sent", "delivered"],
            Self::Undelivered(_) => &["queued", "sent", "undelivered"],
            Self::Failed(_) => &["queued", "failed"],
            Self::WhatsAppRead => &["queued", "sent", "delivered", "read"],
        }
    }

    fn error_code(self) -> Option<u32> {
        match self {
            Self::Undelivered(code) | Self::Failed(code) => Some(code),
            _ => None,
        }
    }
}

/// Events of one message still to be sent.
struct MessagePlan {
    id: u64,
    sid: String,
    lifecycle: Lifecycle,
    from: String,
    to: String,
    via_messaging_service: bool,
    /// Positions in `lifecycle.statuses()`, in the order they will be sent.
    order: Vec<u8>,
    next: usize,
}

/// How many messages a generator interleaves at once.
const ACTIVE_MESSAGES: usize = 8;
/// How many recent requests a duplicate or bad-signature copy is drawn from.
const RECENT_REQUESTS: usize = 128;
/// Events per message id: event id = message id × this + position.
const EVENTS_PER_MESSAGE: u64 = 8;

/// Produces the requests of one lane of a run. Lanes number messages
/// `lane, lane + lanes, ...`, so several generators never share a message.
pub struct Generator {
    workload: Arc<Workload>,
    rng: fastrand::Rng,
    next_message: u64,
    lanes: u64,
    active: Vec<MessagePlan>,
    recent: Vec<SignedCallback>,
    recent_next: usize,
}

impl Generator {
    pub fn new(workload: Arc<Workload>, lane: u64, lanes: u64) -> Self {
        let seed = u64::from(workload.run.0) << 32 ^ lane;
        Self {
            workload,
            rng: fastrand::Rng::with_seed(seed),
            next_message: lane,
            lanes: lanes.max(1),
            active: Vec::with_capacity(ACTIVE_MESSAGES),
            recent: Vec::with_capacity(RECENT_REQUESTS),
            recent_next: 0,
        }
    }

    /// The next request: a genuine event, or (per the ratios, once something
    /// was sent) a duplicate or a bad-signature copy of a recent one.
    pub fn next_request(&mut self) -> SignedCallback {
        let draw = self.rng.f64();
        let duplicate = self.workload.duplicate_ratio;
        let bad = duplicate + self.workload.bad_signature_ratio;
        if !self.recent.is_empty() && draw < bad {
            let mut copy = self.recent[self.rng.usize(0..self.recent.len())].clone();
            if draw < duplicate {
                copy.kind = RequestKind::Duplicate;
            } else {
                copy.kind = RequestKind::BadSignature;
                let params = FormParams::parse(&copy.body).unwrap_or_default();
                copy.signature =
                    compute_signature(&self.workload.wrong_token, &self.workload.url, &params);
            }
            return copy;
        }
        let (event_id, message_id, params) = self.next_event();
        let signature = compute_signature(&self.workload.token, &self.workload.url, &params);
        let request = SignedCallback {
            kind: RequestKind::Genuine,
            event_id,
            message_id,
            body: Bytes::from(params.encode()),
            signature,
        };
        self.remember(request.clone());
        request
    }

    /// The next genuine status event: (event id, message id, parameters).
    pub fn next_event(&mut self) -> (u64, u64, FormParams) {
        while self.active.len() < ACTIVE_MESSAGES {
            let plan = self.new_message();
            self.active.push(plan);
        }
        let slot = self.rng.usize(0..self.active.len());
        let plan = &mut self.active[slot];
        let position = plan.order[plan.next];
        plan.next += 1;
        let params = self.params(&self.active[slot], usize::from(position));
        let plan = &self.active[slot];
        let ids = (plan.id * EVENTS_PER_MESSAGE + u64::from(position), plan.id);
        if plan.next == plan.order.len() {
            self.active.swap_remove(slot);
        }
        (ids.0, ids.1, params)
    }

    fn remember(&mut self, request: SignedCallback) {
        if self.recent.len() < RECENT_REQUESTS {
            self.recent.push(request);
        } else {
            self.recent[self.recent_next] = request;
            self.recent_next = (self.recent_next + 1) % RECENT_REQUESTS;
        }
    }

    fn new_message(&mut self) -> MessagePlan {
        let id = self.next_message;
        self.next_message += self.lanes;
        let lifecycle = Lifecycle::pick(&mut self.rng);
        let (from, to) = match lifecycle {
            Lifecycle::WhatsAppRead => (
                format!("whatsapp:+1415523{:04}", self.rng.u32(0..10_000)),
                format!(
                    "whatsapp:+44{:010}",
                    self.rng.u64(7_000_000_000..8_000_000_000)
                ),
            ),
            _ => (
                format!("+1501712{:04}", self.rng.u32(0..10_000)),
                format!("+1{:010}", self.rng.u64(2_000_000_000..9_999_999_999)),
            ),
        };
        let events = lifecycle.statuses().len() as u8;
        let mut order: Vec<u8> = (0..events).collect();
        if self.rng.f64() < self.workload.out_of_order_ratio {
            // Anything but the natural order.
            while order.windows(2).all(|pair| pair[0] < pair[1]) {
                self.rng.shuffle(&mut order);
            }
        }
        MessagePlan {
            id,
            sid: self.workload.run.message_sid(id),
            lifecycle,
            from,
            to,
            via_messaging_service: self.rng.bool(),
            order,
            next: 0,
        }
    }

    /// The parameters Twilio sends for one status of `plan`, in the order
    /// Twilio usually sends them (not sorted: the signer sorts).
    fn params(&self, plan: &MessagePlan, position: usize) -> FormParams {
        let workload = &self.workload;
        let status = plan.lifecycle.statuses()[position];
        let terminal = matches!(status, "delivered" | "undelivered" | "failed");
        let whatsapp = matches!(plan.lifecycle, Lifecycle::WhatsAppRead);
        let mut pairs: Vec<(&str, String)> = Vec::with_capacity(16);
        if matches!(status, "undelivered" | "failed") {
            if let Some(code) = plan.lifecycle.error_code() {
                pairs.push(("ErrorCode", code.to_string()));
            }
        }
        pairs.push(("SmsSid", plan.sid.clone()));
        pairs.push(("SmsStatus", status.to_owned()));
        pairs.push(("MessageStatus", status.to_owned()));
        if whatsapp {
            let address = plan.to.trim_start_matches("whatsapp:").to_owned();
            pairs.push(("ChannelToAddress", address));
        }
        pairs.push(("To", plan.to.clone()));
        if whatsapp {
            pairs.push(("ChannelPrefix", "whatsapp".to_owned()));
        }
        if plan.via_messaging_service {
            pairs.push((
                "MessagingServiceSid",
                workload.messaging_service_sid.clone(),
            ));
        }
        pairs.push(("MessageSid", plan.sid.clone()));
        pairs.push(("AccountSid", workload.account_sid.clone()));
        if whatsapp {
            pairs.push(("StructuredMessage", "false".to_owned()));
        }
        pairs.push(("From", plan.from.clone()));
        pairs.push(("ApiVersion", "2010-04-01".to_owned()));
        if whatsapp {
            pairs.push(("ChannelInstallSid", workload.channel_install_sid.clone()));
            match status {
                "delivered" => pairs.push(("EventType", "DELIVERED".to_owned())),
                "read" => pairs.push(("EventType", "READ".to_owned())),
                _ => {}
            }
        } else if terminal && status != "failed" {
            // Carrier delivery receipt time, YYMMDDhhmm.
            let done = chrono::Utc::now().format("%y%m%d%H%M").to_string();
            pairs.push(("RawDlrDoneDate", done));
        }
        FormParams::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
    }
}

fn hex32(rng: &mut fastrand::Rng) -> String {
    format!("{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use twilio_protocol::callback::StatusCallback;
    use twilio_protocol::signature::SignatureVerifier;

    fn workload(mix: Mix) -> Arc<Workload> {
        Arc::new(Workload::new(
            "http://127.0.0.1:8080/twilio/status".into(),
            AuthToken::new("12345"),
            mix,
            RunId(0xdeadbeef),
        ))
    }

    #[test]
    fn genuine_requests_verify_and_parse_as_twilio_callbacks() {
        let workload = workload(Mix::default());
        let verifier = SignatureVerifier::new(vec![workload.token.clone()]);
        let mut generator = Generator::new(workload.clone(), 0, 1);
        for _ in 0..500 {
            let request = generator.next_request();
            assert_eq!(request.kind, RequestKind::Genuine);
            let params = FormParams::parse(&request.body).unwrap();
            assert!(verifier.verify_form(&workload.url, &params, &request.signature));
            let callback = StatusCallback::from_params(params).unwrap();
            assert!(callback.message_sid.as_str().starts_with("SMdeadbeef"));
        }
    }

    #[test]
    fn every_event_is_sent_once_and_lanes_do_not_share_messages() {
        let workload = workload(Mix {
            out_of_order_ratio: 0.5,
            ..Mix::default()
        });
        let mut seen = HashSet::new();
        for lane in 0..3 {
            let mut generator = Generator::new(workload.clone(), lane, 3);
            for _ in 0..1000 {
                let (event, message, _) = generator.next_event();
                assert_eq!(message % 3, lane);
                assert!(seen.insert(event), "event {event} sent twice");
            }
        }
    }

    #[test]
    fn copies_keep_the_body_and_bad_ones_fail_verification() {
        let workload = workload(Mix {
            duplicate_ratio: 0.2,
            bad_signature_ratio: 0.2,
            out_of_order_ratio: 0.0,
        });
        let verifier = SignatureVerifier::new(vec![workload.token.clone()]);
        let mut generator = Generator::new(workload.clone(), 0, 1);
        let mut kinds = [0usize; 3];
        for _ in 0..2000 {
            let request = generator.next_request();
            let params = FormParams::parse(&request.body).unwrap();
            let valid = verifier.verify_form(&workload.url, &params, &request.signature);
            let index = match request.kind {
                RequestKind::Genuine => 0,
                RequestKind::Duplicate => 1,
                RequestKind::BadSignature => 2,
            };
            kinds[index] += 1;
            assert_eq!(valid, request.kind != RequestKind::BadSignature);
        }
        assert!(kinds[1] > 250 && kinds[2] > 250, "{kinds:?}");
    }

    #[test]
    fn run_ids_round_trip() {
        let run = RunId(0x0badf00d);
        assert_eq!(RunId::parse(&run.as_hex()), Some(run));
        assert_eq!(run.message_sid(1).len(), 34);
        assert!(run.message_sid(1).starts_with("SM0badf00d"));
    }
}
