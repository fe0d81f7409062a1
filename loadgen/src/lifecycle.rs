//! One message's life as Twilio reports it: the statuses it goes through
//! (delivered, undelivered or failed with their error codes, WhatsApp
//! read), the order its callbacks are sent in, and the parameters of each.

use twilio_protocol::form::FormParams;

/// The account a run's traffic comes from: made up, the same for the same seed.
#[derive(Clone, Debug)]
pub struct Account {
    account_sid: String,
    messaging_service_sid: String,
    channel_install_sid: String,
}

impl Account {
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        Self {
            account_sid: format!("AC{}", hex32(&mut rng)),
            messaging_service_sid: format!("MG{}", hex32(&mut rng)),
            channel_install_sid: format!("XE{}", hex32(&mut rng)),
        }
    }
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
pub struct MessagePlan {
    pub id: u64,
    sid: String,
    lifecycle: Lifecycle,
    from: String,
    to: String,
    via_messaging_service: bool,
    /// Positions in `lifecycle.statuses()`, in the order they will be sent.
    order: Vec<u8>,
    next: usize,
}

impl MessagePlan {
    /// Message `id`, SID `sid`: a lifecycle and addresses drawn from `rng`,
    /// its callbacks out of order with probability `out_of_order_ratio`.
    pub fn draw(rng: &mut fastrand::Rng, id: u64, sid: String, out_of_order_ratio: f64) -> Self {
        let lifecycle = Lifecycle::pick(rng);
        let (from, to) = match lifecycle {
            Lifecycle::WhatsAppRead => (
                format!("whatsapp:+1415523{:04}", rng.u32(0..10_000)),
                format!("whatsapp:+44{:010}", rng.u64(7_000_000_000..8_000_000_000)),
            ),
            _ => (
                format!("+1501712{:04}", rng.u32(0..10_000)),
                format!("+1{:010}", rng.u64(2_000_000_000..9_999_999_999)),
            ),
        };
        let events = lifecycle.statuses().len() as u8;
        let mut order: Vec<u8> = (0..events).collect();
        if rng.f64() < out_of_order_ratio {
            // Anything but the natural order.
            while order.windows(2).all(|pair| pair[0] < pair[1]) {
                rng.shuffle(&mut order);
            }
        }
        Self {
            id,
            sid,
            lifecycle,
            from,
            to,
            via_messaging_service: rng.bool(),
            order,
            next: 0,
        }
    }

    /// The next callback to send: its position in the lifecycle and its
    /// parameters. Only while `!is_done()`.
    pub fn next_callback(&mut self, account: &Account) -> (u8, FormParams) {
        let position = self.order[self.next];
        self.next += 1;
        (position, self.params(account, usize::from(position)))
    }

    /// Whether every callback was sent.
    pub fn is_done(&self) -> bool {
        self.next == self.order.len()
    }

    /// The parameters Twilio sends for one status of this message, in the
    /// order Twilio usually sends them (not sorted: the signer sorts).
    fn params(&self, account: &Account, position: usize) -> FormParams {
        let status = self.lifecycle.statuses()[position];
        let terminal = matches!(status, "delivered" | "undelivered" | "failed");
        let whatsapp = matches!(self.lifecycle, Lifecycle::WhatsAppRead);
        let mut pairs: Vec<(&str, String)> = Vec::with_capacity(16);
        if matches!(status, "undelivered" | "failed") {
            if let Some(code) = self.lifecycle.error_code() {
                pairs.push(("ErrorCode", code.to_string()));
            }
        }
        pairs.push(("SmsSid", self.sid.clone()));
        pairs.push(("SmsStatus", status.to_owned()));
        pairs.push(("MessageStatus", status.to_owned()));
        if whatsapp {
            let address = self.to.trim_start_matches("whatsapp:").to_owned();
            pairs.push(("ChannelToAddress", address));
        }
        pairs.push(("To", self.to.clone()));
        if whatsapp {
            pairs.push(("ChannelPrefix", "whatsapp".to_owned()));
        }
        if self.via_messaging_service {
            pairs.push(("MessagingServiceSid", account.messaging_service_sid.clone()));
        }
        pairs.push(("MessageSid", self.sid.clone()));
        pairs.push(("AccountSid", account.account_sid.clone()));
        if whatsapp {
            pairs.push(("StructuredMessage", "false".to_owned()));
        }
        pairs.push(("From", self.from.clone()));
        pairs.push(("ApiVersion", "2010-04-01".to_owned()));
        if whatsapp {
            pairs.push(("ChannelInstallSid", account.channel_install_sid.clone()));
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
