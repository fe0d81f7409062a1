//! A real headless Chromium for end-to-end tests of the worker's console,
//! driven over WebDriver (fantoccini against Debian's `chromedriver`).
//!
//! Each `Browser` has a chromedriver of its own on a port the kernel picks, a
//! Chromium profile in a temporary directory, and its own process group, so
//! tests run in parallel and a test that panics leaves no browser behind:
//! `close()` ends the session the polite way, `Drop` kills the whole group
//! as the net (killing chromedriver alone would orphan Chromium).
//!
//! The helpers cover what a console test does as a person would (open a
//! page, read, click, fill, submit, look at cookies, take a screenshot);
//! anything else goes through [`Browser::client`].
//!
//! ```no_run
//! # async fn console(base: &str) -> Result<(), testkit::BrowserError> {
//! use testkit::{Browser, BrowserOptions};
//!
//! let browser = Browser::start(BrowserOptions::without_javascript()).await?;
//! browser.goto(&format!("{base}/console/")).await?;
//! browser.fill("input[name=token]", "secret").await?;
//! browser.submit("form#sign-in").await?; // waits for the page the server answers
//! assert_eq!(browser.text_of("h1").await?, "Messages");
//! let session = browser.cookie("session").await?.expect("signed in");
//! assert_eq!(session.http_only(), Some(true));
//! assert!(session.same_site().is_some_and(|s| s.is_strict()));
//! browser.screenshot("target/console.png").await?;
//! browser.close().await
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::error::{CmdError, NewSessionError};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use fantoccini::cookies::Cookie;
pub use fantoccini::Client;

/// Where Debian's `chromium` and `chromium-driver` packages put the
/// programs, for when they are not on `PATH`.
const CHROMIUM_FALLBACK: &str = "/usr/bin/chromium";
const CHROMEDRIVER_FALLBACK: &str = "/usr/bin/chromedriver";

/// What chromedriver prints once it listens; `--port=0` lets the kernel pick
/// a free port (no race between tests) and this line says which.
const DRIVER_LISTENING: &str = "started successfully on port ";

/// From spawning chromedriver to it answering `/status` ready: well under a
/// second here, generous for a loaded 2-core machine.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium's start and the new session: about a second here.
const SESSION_START_TIMEOUT: Duration = Duration::from_secs(60);

/// A page that does not load within this fails its test instead of hanging
/// it for WebDriver's default five minutes.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How often `follow` and `submit` look whether the next page has come.
const NAVIGATION_POLL: Duration = Duration::from_millis(20);

/// One size for every test, so screenshots and layouts compare. The page's
/// viewport (what a screenshot shows) is 1280x757 in it: headless Chromium
/// keeps room for the toolbars it does not draw.
const WINDOW_SIZE: (u32, u32) = (1280, 900);

/// Chrome's content setting value for "block".
const CONTENT_SETTING_BLOCK: u8 = 2;

/// How a browser starts.
#[derive(Debug, Clone, Copy)]
pub struct BrowserOptions {
    /// Whether pages may run JavaScript. The console must work without it,
    /// so its tests run both ways.
    pub javascript: bool,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self { javascript: true }
    }
}

impl BrowserOptions {
    /// A browser that runs no page script, as with JavaScript turned off.
    pub fn without_javascript() -> Self {
        Self { javascript: false }
    }
}

/// What can go wrong starting or driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{program} is not on PATH nor at {fallback}: install chromium and chromium-driver; .ci/run does")]
    NotInstalled {
        program: &'static str,
        fallback: &'static str,
    },
    #[error("cannot create a Chromium profile directory")]
    Profile(#[source] std::io::Error),
    #[error("cannot start {}", .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("chromedriver did not come up: {said}")]
    DriverNotReady { said: String },
    #[error("chromedriver could not start a headless Chromium session")]
    Session(#[source] NewSessionError),
    #[error("no headless Chromium session within {0:?}")]
    SessionTimeout(Duration),
    #[error("{action}")]
    Command {
        action: String,
        #[source]
        source: CmdError,
    },
    #[error("{action} led to no new page within {waited:?}")]
    NoNextPage { action: String, waited: Duration },
    #[error("cannot write the screenshot to {}", .path.display())]
    Screenshot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A headless Chromium driven by a chromedriver of its own.
pub struct Browser {
    client: Client,
    driver: DriverProcess,
    /// Declared after `driver`: removed once the processes that write into
    /// it are gone.
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, ready at
    /// `about:blank`.
    pub async fn start(options: BrowserOptions) -> Result<Self, BrowserError> {
        let search_path = std::env::var_os("PATH").unwrap_or_default();
        let chromedriver = find_program("chromedriver", &search_path, CHROMEDRIVER_FALLBACK)?;
        let chromium = find_program("chromium", &search_path, CHROMIUM_FALLBACK)?;
        let profile = tempfile::Builder::new()
            .prefix("testkit-chromium-")
            .tempdir()
            .map_err(BrowserError::Profile)?;

        let mut driver = Command::new(&chromedriver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Chromium inherits the group: one kill reaches every process.
            .process_group(0)
            .spawn()
            .map(DriverProcess)
            .map_err(|source| BrowserError::Spawn {
                program: chromedriver.clone(),
                source,
            })?;
        // From here on, an early return drops `driver`, which kills the group.
        let not_ready = |said| BrowserError::DriverNotReady { said };
        let port = tokio::time::timeout(DRIVER_START_TIMEOUT, driver.port())
            .await
            .map_err(|_| not_ready(format!("no port named within {DRIVER_START_TIMEOUT:?}")))?
            .map_err(not_ready)?;
        let webdriver_url = format!("http://127.0.0.1:{port}");
        wait_until_ready(&webdriver_url, DRIVER_START_TIMEOUT)
            .await
            .map_err(not_ready)?;

        let mut session = ClientBuilder::new(HttpConnector::new());
        session.capabilities(capabilities(&chromium, profile.path(), options));
        let client = tokio::time::timeout(SESSION_START_TIMEOUT, session.connect(&webdriver_url))
            .await
            .map_err(|_| BrowserError::SessionTimeout(SESSION_START_TIMEOUT))?
            .map_err(BrowserError::Session)?;
        Ok(Self {
            client,
            driver,
            profile,
        })
    }

    /// The WebDriver client, for anything the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.client
            .goto(url)
            .await
            .map_err(command(|| format!("open {url}")))
    }

    /// The rendered text of the first element matching `css` (what a person
    /// sees: hidden elements read as empty).
    pub async fn text_of(&self, css: &str) -> Result<String, BrowserError> {
        let element = self.find(css).await?;
        element
            .text()
            .await
            .map_err(command(|| format!("read the text of `{css}`")))
    }

    /// Clicks the first element matching `css`, for what changes the page
    /// in place. A click that leads to another page: [`Browser::follow`].
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        element
            .click()
            .await
            .map_err(command(|| format!("click `{css}`")))
    }

    /// Clicks the link or button matching `css` and waits for the page it
    /// leads to (a click can return before the navigation it starts).
    pub async fn follow(&self, css: &str) -> Result<(), BrowserError> {
        let action = format!("click `{css}`");
        self.to_next_page(&action, self.click(css)).await
    }

    /// Replaces the value of the input matching `css` by typing `value`.
    pub async fn fill(&self, css: &str, value: &str) -> Result<(), BrowserError> {
        let element = self.find(css).await?;
        element
            .clear()
            .await
            .map_err(command(|| format!("clear `{css}`")))?;
        element
            .send_keys(value)
            .await
            .map_err(command(|| format!("type into `{css}`")))
    }

    /// Submits the form matching `css` by clicking its submit button, as a
    /// person would (works with JavaScript off too), and waits for the page
    /// the server answers with, even one at the same address.
    pub async fn submit(&self, form_css: &str) -> Result<(), BrowserError> {
        let action = format!("submit `{form_css}` with its submit button");
        let form = self
            .client
            .form(Locator::Css(form_css))
            .await
            .map_err(command(|| format!("find the form `{form_css}`")))?;
        let click = async { form.submit().await.map_err(command(|| action.clone())) };
        self.to_next_page(&action, click).await
    }

    /// The address of the page shown now.
    pub async fn current_url(&self) -> Result<String, BrowserError> {
        let url = self
            .client
            .current_url()
            .await
            .map_err(command(|| "read the current URL".to_owned()))?;
        Ok(url.into())
    }

    /// The page's current DOM serialized as HTML (after any script ran).
    pub async fn page_source(&self) -> Result<String, BrowserError> {
        self.client
            .source()
            .await
            .map_err(command(|| "read the page source".to_owned()))
    }

    /// Saves a PNG of what the page shows in the window to `path`.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), BrowserError> {
        let path = path.as_ref();
        let png = self
            .client
            .screenshot()
            .await
            .map_err(command(|| "take a screenshot".to_owned()))?;
        tokio::fs::write(path, png)
            .await
            .map_err(|source| BrowserError::Screenshot {
                path: path.to_owned(),
                source,
            })
    }

    /// The cookies the browser holds for the current page, with their
    /// attributes (`http_only()`, `same_site()`, `secure()`, `path()`).
    pub async fn cookies(&self) -> Result<Vec<Cookie<'static>>, BrowserError> {
        self.client
            .get_all_cookies()
            .await
            .map_err(command(|| "read the cookies".to_owned()))
    }

    /// The cookie called `name` for the current page, if the browser has one.
    pub async fn cookie(&self, name: &str) -> Result<Option<Cookie<'static>>, BrowserError> {
        Ok(self
            .cookies()
            .await?
            .into_iter()
            .find(|cookie| cookie.name() == name))
    }

    /// Ends the session (chromedriver quits Chromium), stops chromedriver
    /// and removes the profile. Dropping a `Browser` also cleans up, by
    /// killing; this is the orderly way, and it reports a failed quit.
    pub async fn close(self) -> Result<(), BrowserError> {
        let Self {
            client,
            mut driver,
            profile,
        } = self;
        let quit = client
            .close()
            .await
            .map_err(command(|| "end the WebDriver session".to_owned()));
        driver.stop().await;
        let _ = profile.close();
        quit
    }

    /// Runs `action` and waits until the document it started from is gone:
    /// its root element then no longer exists for WebDriver. The next
    /// command waits for the new document to finish loading.
    async fn to_next_page(
        &self,
        action: &str,
        run: impl std::future::Future<Output = Result<(), BrowserError>>,
    ) -> Result<(), BrowserError> {
        let root = self.find(":root").await?;
        run.await?;
        let started = Instant::now();
        loop {
            match root.tag_name().await {
                Err(gone)
                    if gone.is_stale_element_reference()
                        || gone.is_no_such_element()
                        || left_mid_swap(&gone) =>
                {
                    return Ok(());
                }
                Err(source) => {
                    return Err(BrowserError::Command {
                        action: format!("wait for the page after: {action}"),
                        source,
                    })
                }
                Ok(_) if started.elapsed() > PAGE_LOAD_TIMEOUT => {
                    return Err(BrowserError::NoNextPage {
                        action: action.to_owned(),
                        waited: PAGE_LOAD_TIMEOUT,
                    })
                }
                Ok(_) => tokio::time::sleep(NAVIGATION_POLL).await,
            }
        }
    }

    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element, BrowserError> {
        self.client
            .find(Locator::Css(css))
            .await
            .map_err(command(|| format!("find `{css}`")))
    }
}

/// Caught in the middle of the swap, chromedriver (156) answers a question
/// about the old page's root not "stale" but "unknown error: unhandled
/// inspector error: Node with given id does not belong to the document":
/// the old page is gone all the same, and the next command waits for the
/// new one to load.
fn left_mid_swap(error: &fantoccini::error::CmdError) -> bool {
    error
        .to_string()
        .contains("does not belong to the document")
}

/// chromedriver, leader of the process group Chromium runs in. Dropping it
/// kills the group: killing chromedriver alone would orphan Chromium.
struct DriverProcess(Child);

impl DriverProcess {
    /// Reads chromedriver's output up to the line that names its port; on
    /// failure, what it said instead. The rest of its output is drained so a
    /// full pipe never blocks it.
    async fn port(&mut self) -> Result<u16, String> {
        let Some(stdout) = self.0.stdout.take() else {
            return Err("no output".into());
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut said = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let port = line
                .split_once(DRIVER_LISTENING)
                .and_then(|(_, rest)| rest.trim_end_matches('.').trim().parse::<u16>().ok());
            if let Some(port) = port {
                let mut rest = lines.into_inner();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
                });
                return Ok(port);
            }
            said.push(line);
        }
        Err(format!("it exited, saying: {}", said.join(" / ")))
    }

    /// Kills the group and reaps chromedriver.
    async fn stop(&mut self) {
        self.kill_group();
        let _ = self.0.wait().await;
    }

    /// SIGKILL to the group: chromedriver, Chromium and Chromium's helpers.
    /// Nothing to do once chromedriver has been reaped.
    fn kill_group(&self) {
        if let Some(group) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for DriverProcess {
    fn drop(&mut self) {
        self.kill_group();
    }
}

fn command(action: impl FnOnce() -> String) -> impl FnOnce(CmdError) -> BrowserError {
    move |source| BrowserError::Command {
        action: action(),
        source,
    }
}

/// `program` on the search path, else at `fallback`.
fn find_program(
    program: &'static str,
    search_path: &std::ffi::OsStr,
    fallback: &'static str,
) -> Result<PathBuf, BrowserError> {
    std::env::split_paths(search_path)
        .map(|dir| dir.join(program))
        .chain(std::iter::once(PathBuf::from(fallback)))
        .find(|candidate| candidate.is_file())
        .ok_or(BrowserError::NotInstalled { program, fallback })
}

/// Capabilities for a headless Chromium as root (`--no-sandbox`) with a
/// fresh profile.
fn capabilities(
    chromium: &Path,
    profile: &Path,
    options: BrowserOptions,
) -> serde_json::Map<String, serde_json::Value> {
    let (width, height) = WINDOW_SIZE;
    let mut chrome_options = json!({
        "binary": chromium.display().to_string(),
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if !options.javascript {
        chrome_options["prefs"] = json!({
            "profile.managed_default_content_settings.javascript": CONTENT_SETTING_BLOCK,
        });
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), chrome_options);
    capabilities.insert(
        "timeouts".into(),
        json!({ "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() }),
    );
    capabilities
}

/// Polls chromedriver's `/status` until it reports ready.
async fn wait_until_ready(webdriver_url: &str, timeout: Duration) -> Result<(), String> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut last = String::from("no answer");
    while started.elapsed() < timeout {
        match http.get(format!("{webdriver_url}/status")).send().await {
            Ok(response) => match response.json::<serde_json::Value>().await {
                Ok(status) if status["value"]["ready"] == true => return Ok(()),
                Ok(status) => last = status.to_string(),
                Err(error) => last = error.to_string(),
            },
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("not ready within {timeout:?}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let error = find_program(
            "chromedriver",
            std::ffi::OsStr::new(""),
            "/nonexistent/chromedriver",
        )
        .expect_err("nothing to find");
        let message = error.to_string();
        assert!(message.contains("chromedriver"), "{message}");
        assert!(
            message.contains("install chromium and chromium-driver; .ci/run does"),
            "{message}"
        );
    }

    #[test]
    fn javascript_off_blocks_page_scripts_only_when_asked() {
        let on = capabilities(Path::new("/c"), Path::new("/p"), BrowserOptions::default());
        assert!(on["goog:chromeOptions"].get("prefs").is_none());
        let off = capabilities(
            Path::new("/c"),
            Path::new("/p"),
            BrowserOptions::without_javascript(),
        );
        assert_eq!(
            off["goog:chromeOptions"]["prefs"]
                ["profile.managed_default_content_settings.javascript"],
            2
        );
        let args = on["goog:chromeOptions"]["args"].to_string();
        assert!(
            args.contains("--no-sandbox") && args.contains("--user-data-dir=/p"),
            "{args}"
        );
    }
}
