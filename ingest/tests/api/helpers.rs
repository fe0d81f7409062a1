use clap::Parser;
use ingest::app::Application;
use ingest::config::{IngestArgs, IngestConfig};
use lapin::BasicProperties;
use queue_wire::batch::QueueMessage;
use queue_wire::envelope::CallbackEnvelope;
use std::time::Duration;
use testkit::{wait_for, TestBroker, TEST_TOKEN};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub broker: TestBroker,
    pub handle: actix_web::dev::ServerHandle,
    /// Callbacks taken off the main queue so far (see `queued`).
    taken: std::sync::atomic::AtomicUsize,
    /// This app's spool directory, removed with it (`None`: spool off).
    pub spool: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Options<'a> {
    pub public_base_url: Option<&'a str>,
    pub amqp_url: Option<String>,
    pub tokens: Option<&'a str>,
    pub extra_args: Vec<&'a str>,
    /// No spool: what RabbitMQ cannot confirm gets 503.
    pub without_spool: bool,
    /// A spool directory to use instead of a fresh temporary one.
    pub spool_dir: Option<std::path::PathBuf>,
    /// Changes the configuration in process (settings that are constants
    /// in production, such as the batch caps or the body timeout).
    pub tune: Option<fn(&mut IngestConfig)>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    /// Starts the app and, unless the broker URL is overridden, waits until it is ready.
    pub async fn spawn_with(options: Options<'_>) -> Self {
        let broker = TestBroker::new().await;
        let amqp_url = options.amqp_url.clone().unwrap_or_else(testkit::amqp_url);
        let mut argv = vec![
            "ingest".to_owned(),
            "--auth-token".to_owned(),
            options.tokens.unwrap_or(TEST_TOKEN).to_owned(),
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--amqp-url".to_owned(),
            amqp_url,
            "--topology-prefix".to_owned(),
            broker.topology.prefix().to_owned(),
            "--confirm-timeout-ms".to_owned(),
            "3000".to_owned(),
        ];
        let spool = (!options.without_spool && options.spool_dir.is_none())
            .then(|| tempfile::tempdir().unwrap());
        match (&spool, &options.spool_dir) {
            (Some(dir), _) => argv.extend(["--spool-dir".to_owned(), path_text(dir.path())]),
            (None, Some(dir)) => argv.extend(["--spool-dir".to_owned(), path_text(dir)]),
            (None, None) => argv.extend(["--spool-max-bytes".to_owned(), "0".to_owned()]),
        }
        argv.extend(options.extra_args.iter().map(|a| a.to_string()));
        if let Some(base) = options.public_base_url {
            argv.extend(["--public-base-url".to_owned(), base.to_owned()]);
        }
        let mut config = IngestConfig::try_from(IngestArgs::parse_from(argv)).unwrap();
        // Same names as the test broker declared, same retry queues.
        config.topology = broker.topology.clone();
        // Two HTTP workers, not one per core: many apps run side by side.
        config.workers = Some(2);
        if let Some(tune) = options.tune {
            tune(&mut config);
        }
        let app = Application::build(config).unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let test_app = Self {
            address,
            client: reqwest::Client::new(),
            broker,
            handle,
            taken: Default::default(),
            spool,
        };
        if options.amqp_url.is_none() {
            test_app.wait_broker_ready().await;
        }
        test_app
    }

    /// The body of a GET of `path`.
    async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The body of `/readyz`.
    pub async fn readyz_text(&self) -> String {
        self.get_text("/readyz").await
    }

    /// Waits until RabbitMQ itself could confirm (not only the spool take).
    pub async fn wait_broker_ready(&self) {
        wait_for(
            "ingest to reach RabbitMQ",
            Duration::from_secs(30),
            || async { (self.readyz_text().await == "ready").then_some(()) },
        )
        .await;
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.get_text("/metrics").await
    }

    pub async fn readyz(&self) -> u16 {
        self.client
            .get(format!("{}/readyz", self.address))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// POSTs a form body with the given signature to /twilio/status.
    pub async fn post_form(
        &self,
        path_and_query: &str,
        body: String,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path_and_query}", self.address))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        request.send().await.unwrap()
    }

    /// How many callbacks ingest has queued so far, however they were
    /// grouped into messages. (Takes them off the queue to count them.)
    pub async fn queued(&self) -> u32 {
        let now = self.queued_callbacks().await.len();
        let total = self
            .taken
            .fetch_add(now, std::sync::atomic::Ordering::SeqCst)
            + now;
        u32::try_from(total).unwrap()
    }

    /// Segment files in the spool directory.
    pub fn spool_segments(&self) -> usize {
        let dir = self.spool.as_ref().expect("a spool").path();
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".spool"))
            })
            .count()
    }

    /// Takes every message off the main queue and returns the callbacks they
    /// carry, each with the properties of the message it came in.
    pub async fn queued_callbacks(&self) -> Vec<(BasicProperties, CallbackEnvelope)> {
        let messages = self
            .broker
            .take_all(&self.broker.topology.main_queue())
            .await;
        let mut callbacks = Vec::new();
        for (properties, data) in messages {
            match QueueMessage::decode(&properties, data).unwrap() {
                QueueMessage::Single(envelope) => callbacks.push((properties, envelope)),
                QueueMessage::Batch(envelopes) => callbacks.extend(
                    envelopes
                        .into_iter()
                        .map(|envelope| (properties.clone(), envelope)),
                ),
            }
        }
        callbacks
    }
}

pub fn path_text(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_owned()
}

/// Sends signed callbacks for SIDs `sids` to `address`, `concurrency` at
/// a time; returns the statuses (in the order they came back).
pub async fn send_many(
    client: &reqwest::Client,
    address: &str,
    sids: impl Iterator<Item = u64>,
    status: &str,
    concurrency: usize,
) -> Vec<u16> {
    use futures_util::stream::{self, StreamExt};
    stream::iter(sids)
        .map(|n| {
            let params = testkit::status_params(&testkit::message_sid(n), status, None);
            let client = client.clone();
            let address = address.to_owned();
            async move {
                testkit::post_signed(&client, &address, &params)
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}
