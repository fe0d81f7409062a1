use clap::Parser;
use ingest::app::Application;
use ingest::config::{IngestArgs, IngestConfig};
use std::time::Duration;
use testkit::{wait_for, TestBroker, TEST_TOKEN};

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub broker: TestBroker,
    pub handle: actix_web::dev::ServerHandle,
}

#[derive(Default)]
pub struct Options<'a> {
    pub public_base_url: Option<&'a str>,
    pub amqp_url: Option<String>,
    pub tokens: Option<&'a str>,
    pub extra_args: Vec<&'a str>,
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
            "--workers".to_owned(),
            "2".to_owned(),
        ];
        argv.extend(options.extra_args.iter().map(|a| a.to_string()));
        if let Some(base) = options.public_base_url {
            argv.extend(["--public-base-url".to_owned(), base.to_owned()]);
        }
        let mut config = IngestConfig::try_from(IngestArgs::parse_from(argv)).unwrap();
        // Same names as the test broker declared, same retry queues.
        config.topology = broker.topology.clone();
        let app = Application::build(config).unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let test_app = Self {
            address,
            client: reqwest::Client::new(),
            broker,
            handle,
        };
        if options.amqp_url.is_none() {
            test_app.wait_ready().await;
        }
        test_app
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

    pub async fn wait_ready(&self) {
        wait_for("ingest to be ready", Duration::from_secs(30), || async {
            (self.readyz().await == 200).then_some(())
        })
        .await;
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

    pub async fn queued(&self) -> u32 {
        self.broker
            .ready_count(&self.broker.topology.main_queue())
            .await
    }
}
