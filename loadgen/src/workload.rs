//! Realistic status-callback traffic: messages that live through Twilio's
//! lifecycles (`lifecycle`), interleaved, signed exactly as Twilio signs
//! them. On top of that, on demand: exact re-sends (duplicates), requests
//! signed with the wrong token, and messages whose callbacks arrive out of
//! order.
//!
//! Every message SID of a run starts with `SM` + the run id, so runs never
//! collide and the database check can count a run's rows alone.

use bytes::Bytes;
use std::sync::Arc;
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

use crate::lifecycle::{Account, MessagePlan};

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
    account: Account,
}

impl Workload {
    pub fn new(url: String, token: AuthToken, mix: Mix, run: RunId) -> Self {
        Self {
            url,
            token,
            wrong_token: AuthToken::new(format!("wrong-{}", run.as_hex())),
            duplicate_ratio: mix.duplicate_ratio,
            bad_signature_ratio: mix.bad_signature_ratio,
            out_of_order_ratio: mix.out_of_order_ratio,
            account: Account::from_seed(u64::from(run.0)),
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
        let (position, params) = plan.next_callback(&self.workload.account);
        let message_id = plan.id;
        if plan.is_done() {
            self.active.swap_remove(slot);
        }
        let event_id = message_id * EVENTS_PER_MESSAGE + u64::from(position);
        (event_id, message_id, params)
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
        let sid = self.workload.run.message_sid(id);
        MessagePlan::draw(&mut self.rng, id, sid, self.workload.out_of_order_ratio)
    }
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
