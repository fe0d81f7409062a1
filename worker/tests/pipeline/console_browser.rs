//! The web console in a real headless Chromium with JavaScript off, used as
//! a person uses it: signing in, searching by address and paging, opening a
//! message and its raw parameters, the outcome charts, filtering and
//! replaying dead letters. Each test has its own worker, topology,
//! database and browser. (Access rules, headers and CSRF over plain HTTP:
//! `console.rs`.)
//!
//! With `CONSOLE_SCREENSHOTS=<dir>` the tests also save the README's
//! pictures of the pages there (`sign-in.png`, `search.png`, `message.png`,
//! `outcomes.png`, `dead-letters.png`).

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use testkit::{Browser, BrowserOptions};
use twilio_protocol::form::FormParams;

use crate::dead_letters::{failed, hour, put_letter};
use crate::helpers::{
    dead_letters, event_rows, message_row, wait_for_dead_letters, wait_for_event_rows, TestPipeline,
};

const FULL: &str = "console-browser-full-token";
const READER: &str = "console-browser-read-token";

const ACCOUNT: &str = "ACf2c1d7b4e8a94c3e9b5d0a6c7e8f9012";
/// The two senders: a long code and a second number.
const LONG_CODE: &str = "+15017122661";
const SECOND_NUMBER: &str = "+14155550100";

const SIGN_IN_FORM: &str = "form[action='/console/sign-in']";
const SEARCH_FORM: &str = "form[role=search]";

/// One message's life as Twilio reports it: `queued`, `sent` a second
/// later, then (unless `last` is `sent`) its final status.
struct Message {
    sid: String,
    to: &'static str,
    from: &'static str,
    first_seen: DateTime<Utc>,
    last: &'static str,
    error_code: Option<i32>,
    /// Seconds from `queued` to the last status.
    settled_after: i64,
}

impl Message {
    fn new(n: u64, to: &'static str, first_seen: DateTime<Utc>) -> Self {
        Self {
            sid: sid(n),
            to,
            from: LONG_CODE,
            first_seen,
            last: "delivered",
            error_code: None,
            settled_after: 4,
        }
    }

    fn ending(mut self, last: &'static str, error_code: Option<i32>, after: i64) -> Self {
        self.last = last;
        self.error_code = error_code;
        self.settled_after = after;
        self
    }

    fn from(mut self, from: &'static str) -> Self {
        self.from = from;
        self
    }

    fn callbacks(&self) -> Vec<(FormParams, DateTime<Utc>)> {
        let mut callbacks = vec![
            (self.params("queued", None), self.first_seen),
            (
                self.params("sent", None),
                self.first_seen + Duration::seconds(1),
            ),
        ];
        if self.last != "sent" {
            callbacks.push((
                self.params(self.last, self.error_code),
                self.first_seen + Duration::seconds(self.settled_after),
            ));
        }
        callbacks
    }

    /// The parameters Twilio posts for `status`.
    fn params(&self, status: &str, error_code: Option<i32>) -> FormParams {
        let mut pairs = vec![
            ("AccountSid", ACCOUNT.to_owned()),
            ("ApiVersion", "2010-04-01".to_owned()),
        ];
        if let Some(code) = error_code {
            pairs.push(("ErrorCode", code.to_string()));
        }
        pairs.extend([
            ("From", self.from.to_owned()),
            ("MessageSid", self.sid.clone()),
            ("MessageStatus", status.to_owned()),
            ("SmsSid", self.sid.clone()),
            ("SmsStatus", status.to_owned()),
            ("To", self.to.to_owned()),
        ]);
        FormParams::from_pairs(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value)),
        )
    }
}

/// A message SID that looks like Twilio's (32 hex digits that vary).
fn sid(n: u64) -> String {
    let mixed = u128::from(n + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!("SM{mixed:032x}")
}

/// Now, to the second (the console shows milliseconds: whole seconds read
/// better in the screenshots).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

/// Publishes every callback of `messages` in batches, as ingest's group
/// commit does, and waits until the worker has stored them all.
async fn store(pipeline: &TestPipeline, messages: &[Message]) {
    let before = event_rows(&pipeline.db).await;
    let callbacks: Vec<_> = messages.iter().flat_map(Message::callbacks).collect();
    for batch in callbacks.chunks(50) {
        pipeline.broker.publish_batch(batch).await;
    }
    wait_for_event_rows(&pipeline.db, before + callbacks.len() as u64).await;
}

/// The SIDs of `messages` matching `keep`, newest first (as the console
/// lists them).
fn newest_first(messages: &[Message], keep: impl Fn(&Message) -> bool) -> Vec<String> {
    let mut kept: Vec<&Message> = messages.iter().filter(|m| keep(m)).collect();
    kept.sort_by(|a, b| (b.first_seen, &b.sid).cmp(&(a.first_seen, &a.sid)));
    kept.into_iter().map(|m| m.sid.clone()).collect()
}

async fn browser() -> Browser {
    Browser::start(BrowserOptions::without_javascript())
        .await
        .unwrap()
}

/// The harness's window (1280x900, a 757 px high page).
const WINDOW: (u32, u32) = (1280, 900);

/// Saves a picture of the page as `name` in `$CONSOLE_SCREENSHOTS`, when
/// set, in a window `height` pixels high (the page shows 143 fewer), so a
/// page longer than the usual window is pictured whole; the window is put
/// back to its usual size after.
async fn screenshot(browser: &Browser, name: &str, height: u32) {
    let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client = browser.client();
    client.set_window_size(WINDOW.0, height).await.unwrap();
    browser.screenshot(dir.join(name)).await.unwrap();
    client.set_window_size(WINDOW.0, WINDOW.1).await.unwrap();
}

/// Submits `form` and waits for the page the server answers.
async fn submit(browser: &Browser, form: &str) {
    browser.submit(form).await.unwrap();
}

/// Follows the link or button `css` and waits for the page it leads to.
async fn follow(browser: &Browser, css: &str) {
    browser.follow(css).await.unwrap();
}

/// One row of `table#results` as a person reads it.
#[derive(Debug)]
struct Row {
    sid: String,
    status: String,
    to: String,
    from: String,
}

/// The rows of the results table; none when the page shows no table.
async fn results(browser: &Browser) -> Vec<Row> {
    if !browser
        .page_source()
        .await
        .unwrap()
        .contains("id=\"results\"")
    {
        return Vec::new();
    }
    let text = browser.text_of("table#results tbody").await.unwrap();
    text.lines()
        .map(|line| {
            // Message, status, error (a dash, or a code and its title),
            // To, From, first seen, last seen.
            let words: Vec<&str> = line.split_whitespace().collect();
            let error_words = if words[2] == "—" {
                1
            } else {
                1 + title_words(&words[3..])
            };
            let to_at = 2 + error_words;
            Row {
                sid: words[0].to_owned(),
                status: words[1].to_owned(),
                to: words[to_at].to_owned(),
                from: words[to_at + 1].to_owned(),
            }
        })
        .collect()
}

/// How many words an error title takes, ahead of the To address (which
/// starts with `+`).
fn title_words(rest: &[&str]) -> usize {
    rest.iter()
        .position(|word| word.starts_with('+'))
        .expect("a To address after the error title")
}

fn sids(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|row| row.sid.clone()).collect()
}

/// Whether the first element carrying `attribute` (`id="replay-all"`) is
/// disabled, from the DOM.
async fn is_disabled(browser: &Browser, attribute: &str) -> bool {
    let source = browser.page_source().await.unwrap();
    let at = source
        .find(attribute)
        .unwrap_or_else(|| panic!("no {attribute} in the page"));
    let start = source[..at].rfind('<').unwrap();
    let end = at + source[at..].find('>').unwrap();
    source[start..end].contains(" disabled")
}

/// How many letters `table#letters`'s text shows: each row ends with its
/// replay button.
fn letter_rows(text: &str) -> usize {
    text.lines().filter(|line| line.trim() == "Replay").count()
}

#[tokio::test]
async fn signing_in_lands_on_the_page_asked_for_with_a_strict_http_only_cookie() {
    let pipeline =
        TestPipeline::start_with(&["--api-token", FULL, "--api-read-tokens", READER]).await;
    let message = Message::new(1, "+15550000001", now() - Duration::minutes(12)).ending(
        "undelivered",
        Some(30003),
        75,
    );
    store(&pipeline, std::slice::from_ref(&message)).await;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    // The console without a credential: the sign-in form, nothing stored.
    browser.goto(&format!("{base}/console/")).await.unwrap();
    assert_eq!(browser.text_of("h1").await.unwrap(), "Sign in");
    let source = browser.page_source().await.unwrap();
    assert!(source.contains("name=\"token\""), "{source}");
    for personal in [message.sid.as_str(), "+1555", "undelivered", "results"] {
        assert!(!source.contains(personal), "{personal} leaked: {source}");
    }
    screenshot(&browser, "sign-in.png", WINDOW.1).await;

    // A message's page asks for the sign-in too, and comes back after it.
    let asked_for = format!("{base}/console/messages/{}", message.sid);
    browser.goto(&asked_for).await.unwrap();
    browser
        .fill("input[name=token]", "not-the-token")
        .await
        .unwrap();
    submit(&browser, SIGN_IN_FORM).await;
    assert_eq!(
        browser.text_of("[role=alert]").await.unwrap(),
        "That token is not one this worker accepts."
    );
    assert!(browser.cookie("console_session").await.unwrap().is_none());
    // The form only echoes the path asked for (to come back to it).
    let source = browser.page_source().await.unwrap();
    assert!(
        !source.contains("+1555") && !source.contains("undelivered"),
        "{source}"
    );

    browser.fill("input[name=token]", FULL).await.unwrap();
    submit(&browser, SIGN_IN_FORM).await;
    assert_eq!(browser.current_url().await.unwrap(), asked_for);
    assert_eq!(
        browser.text_of("#current-status").await.unwrap(),
        "undelivered"
    );
    let session = browser
        .cookie("console_session")
        .await
        .unwrap()
        .expect("signed in");
    assert_eq!(session.http_only(), Some(true));
    assert!(
        session.same_site().is_some_and(|s| s.is_strict()),
        "{session:?}"
    );
    assert_eq!(session.path(), Some("/console"));
    assert!(!session.value().contains(FULL), "{session:?}");

    // Signed in, the other pages open without asking again.
    follow(&browser, "nav a[href='/console/outcomes']").await;
    assert_eq!(browser.text_of("h1").await.unwrap(), "Outcomes");

    // Signing out ends the session: the console asks again.
    submit(&browser, "form[action='/console/sign-out']").await;
    assert!(browser.cookie("console_session").await.unwrap().is_none());
    browser.goto(&asked_for).await.unwrap();
    assert_eq!(browser.text_of("h1").await.unwrap(), "Sign in");

    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_read_token_sees_the_dead_letters_but_its_replay_buttons_are_disabled() {
    let pipeline =
        TestPipeline::start_with(&["--api-token", FULL, "--api-read-tokens", READER]).await;
    let doomed = sid(7);
    put_letter(
        &pipeline.broker,
        Some(&doomed),
        "sent",
        failed(
            "retries exhausted after 3 attempts: database error: deadlock detected",
            hour(1),
        ),
    )
    .await;
    wait_for_dead_letters(&pipeline.broker, 1).await;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser
        .goto(&format!("{base}/console/dead-letters"))
        .await
        .unwrap();
    browser.fill("input[name=token]", READER).await.unwrap();
    submit(&browser, SIGN_IN_FORM).await;
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("{base}/console/dead-letters")
    );
    let letters = browser.text_of("table#letters tbody").await.unwrap();
    assert!(
        letters.contains(&doomed) && letters.contains("deadlock detected"),
        "{letters}"
    );
    assert!(is_disabled(&browser, "id=\"replay-all\"").await);
    assert!(is_disabled(&browser, "class=\"action\"").await);
    assert!(browser
        .text_of("main")
        .await
        .unwrap()
        .contains("(a read token cannot replay)"));
    // Looking took nothing out of the queue.
    wait_for_dead_letters(&pipeline.broker, 1).await;

    browser.close().await.unwrap();
}

/// Recipient of most messages, and how a person types it.
const RECIPIENT: &str = "+15550000001";
const RECIPIENT_AS_TYPED: &str = "+1 555 000 0001";

/// 56 messages to `RECIPIENT` (more than a page), one every seven minutes, mostly delivered, some undelivered (30003, 30005) or failed
/// (30007), a few recent ones not final yet; 8 to another US number and 5
/// from the second number to a UK one, in between.
fn mailbox(now: DateTime<Utc>) -> Vec<Message> {
    let mut messages: Vec<Message> = (0..56)
        .map(|i| {
            let message = Message::new(i, RECIPIENT, now - Duration::minutes(i as i64 * 7 + 3));
            let settle = 3 + (i as i64 * 5) % 11;
            match i % 9 {
                3 => message.ending("undelivered", Some(30003), 40 + settle),
                6 => message.ending("failed", Some(30007), settle),
                8 => message.ending("undelivered", Some(30005), 20 + settle),
                1 if i < 18 => message.ending("sent", None, 1),
                _ => message.ending("delivered", None, settle),
            }
        })
        .collect();
    messages.extend((100..108).map(|i| {
        Message::new(
            i,
            "+15550000002",
            now - Duration::minutes((i as i64 - 100) * 23 + 5),
        )
    }));
    messages.extend((200..205).map(|i| {
        Message::new(
            i,
            "+447700900123",
            now - Duration::minutes((i as i64 - 200) * 31 + 9),
        )
        .from(SECOND_NUMBER)
    }));
    messages
}

#[tokio::test]
async fn searching_an_address_as_people_write_it_lists_its_messages_newest_first_page_by_page() {
    let pipeline = TestPipeline::start().await;
    let messages = mailbox(now());
    store(&pipeline, &messages).await;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser.goto(&format!("{base}/console/")).await.unwrap();
    browser
        .fill("input[name=q]", RECIPIENT_AS_TYPED)
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    let want = newest_first(&messages, |m| m.to == RECIPIENT);
    assert_eq!(want.len(), 56);
    let first_page = results(&browser).await;
    assert_eq!(sids(&first_page), want[..50]);
    assert!(first_page
        .iter()
        .all(|row| row.to == RECIPIENT && row.from == LONG_CODE));
    assert_eq!(first_page[1].status, "sent");
    assert_eq!(first_page[3].status, "undelivered");
    screenshot(&browser, "search.png", WINDOW.1).await;

    // The next page holds the older ones, none of the first page again.
    follow(&browser, "a#next-page").await;
    assert!(browser.current_url().await.unwrap().contains("cursor="));
    let second_page = results(&browser).await;
    assert_eq!(sids(&second_page), want[50..]);
    let seen: HashSet<String> = sids(&first_page)
        .into_iter()
        .chain(sids(&second_page))
        .collect();
    assert_eq!(seen.len(), want.len());
    assert!(!browser.page_source().await.unwrap().contains("next-page"));

    // Filters: the search form keeps the address; a new search starts from
    // the newest again.
    browser
        .click("select[name=status] option[value=undelivered]")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    let undelivered = newest_first(&messages, |m| m.to == RECIPIENT && m.last == "undelivered");
    assert_eq!(undelivered.len(), 12);
    assert_eq!(sids(&results(&browser).await), undelivered);

    browser
        .fill("input[name=error_code]", "30003")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    let unreachable = newest_first(&messages, |m| {
        m.to == RECIPIENT && m.last == "undelivered" && m.error_code == Some(30003)
    });
    assert_eq!(unreachable.len(), 6);
    assert_eq!(sids(&results(&browser).await), unreachable);

    browser
        .click("select[name=status] option[value='']")
        .await
        .unwrap();
    browser
        .fill("input[name=error_code]", "30007")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    let filtered = newest_first(&messages, |m| {
        m.to == RECIPIENT && m.error_code == Some(30007)
    });
    let rows = results(&browser).await;
    assert_eq!(sids(&rows), filtered);
    assert!(rows.iter().all(|row| row.status == "failed"), "{rows:?}");

    // Delivered with error 30007: no such message; said so, no table.
    browser
        .click("select[name=status] option[value=delivered]")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    assert_eq!(
        browser.text_of("#no-results").await.unwrap(),
        "No message matches."
    );

    // By sender, in a fresh search.
    browser.goto(&format!("{base}/console/")).await.unwrap();
    browser
        .fill("input[name=q]", "+1 (415) 555-0100")
        .await
        .unwrap();
    browser
        .click("select[name=by] option[value=from]")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    let rows = results(&browser).await;
    assert_eq!(
        sids(&rows),
        newest_first(&messages, |m| m.from == SECOND_NUMBER)
    );
    assert!(rows.iter().all(|row| row.from == SECOND_NUMBER));

    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_message_opened_from_the_results_shows_its_status_error_timeline_and_raw_parameters() {
    let pipeline = TestPipeline::start().await;
    let now = now();
    let to = "+447700900123";
    let messages = [
        Message::new(1, to, now - Duration::minutes(48)),
        Message::new(2, to, now - Duration::minutes(26)).ending("undelivered", Some(30003), 72),
        Message::new(3, to, now - Duration::minutes(9)),
    ];
    store(&pipeline, &messages).await;
    let unreachable = &messages[1].sid;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser.goto(&format!("{base}/console/")).await.unwrap();
    browser
        .fill("input[name=q]", "+44 7700 900123")
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    assert_eq!(
        sids(&results(&browser).await),
        newest_first(&messages, |_| true)
    );
    follow(
        &browser,
        &format!("table#results a[href='/console/messages/{unreachable}']"),
    )
    .await;
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("{base}/console/messages/{unreachable}")
    );
    assert_eq!(
        browser.text_of("#current-status").await.unwrap(),
        "undelivered"
    );
    let current = browser.text_of("#current").await.unwrap();
    assert!(
        current.contains("30003 Unreachable destination handset"),
        "{current}"
    );
    assert!(
        current.contains(to) && current.contains(LONG_CODE),
        "{current}"
    );
    assert!(browser
        .text_of("#reconciliation")
        .await
        .unwrap()
        .contains("never"));

    // The timeline: each event in the order received.
    let timeline = browser.text_of("ol#timeline").await.unwrap();
    let statuses: Vec<&str> = timeline
        .lines()
        .filter(|line| line.contains(" via "))
        // The time, then the status badge.
        .map(|line| {
            line.split(" UTC")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, ["queued", "sent", "undelivered"], "{timeline}");

    // Raw parameters: closed until its summary is clicked, no script needed.
    let raw = "ol#timeline > li:nth-child(3) details table";
    assert_eq!(browser.text_of(raw).await.unwrap(), "");
    browser
        .click("ol#timeline > li:nth-child(3) details summary")
        .await
        .unwrap();
    let parameters = browser.text_of(raw).await.unwrap();
    assert!(parameters.contains("ErrorCode 30003"), "{parameters}");
    assert!(
        parameters.contains(&format!("MessageSid {unreachable}")),
        "{parameters}"
    );
    // Only that one opened.
    assert_eq!(
        browser
            .text_of("ol#timeline > li:nth-child(1) details table")
            .await
            .unwrap(),
        ""
    );
    screenshot(&browser, "message.png", 1300).await;

    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_sid_typed_in_the_search_box_goes_straight_to_its_page() {
    let pipeline = TestPipeline::start().await;
    let message = Message::new(4, "+15550000001", now() - Duration::minutes(3));
    store(&pipeline, std::slice::from_ref(&message)).await;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser.goto(&format!("{base}/console/")).await.unwrap();
    // Pasted with the spaces around it that a copy often brings.
    browser
        .fill("input[name=q]", &format!(" {} ", message.sid))
        .await
        .unwrap();
    submit(&browser, SEARCH_FORM).await;
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("{base}/console/messages/{}", message.sid)
    );
    assert_eq!(
        browser.text_of("h1").await.unwrap(),
        format!("Message {}", message.sid)
    );
    assert_eq!(
        browser.text_of("#current-status").await.unwrap(),
        "delivered"
    );

    browser.close().await.unwrap();
}

/// 60 messages first seen over the last 17 hours: 42 delivered within
/// seconds, 10 undelivered (30003, 30005, 30008), 4 failed (30007), 4 not
/// final yet.
fn a_day_of_messages(now: DateTime<Utc>) -> Vec<Message> {
    const RECIPIENTS: [&str; 6] = [
        "+15550000001",
        "+15550000002",
        "+15550000003",
        "+447700900123",
        "+447700900456",
        "+61491570156",
    ];
    let mut rng = fastrand::Rng::with_seed(2027);
    (0..60)
        .map(|i| {
            let first_seen =
                now - Duration::minutes(17 * i as i64 + 4) - Duration::seconds(rng.i64(0..50));
            let to = RECIPIENTS[rng.usize(..RECIPIENTS.len())];
            let message = Message::new(i, to, first_seen);
            let message = if i % 4 == 0 {
                message.from(SECOND_NUMBER)
            } else {
                message
            };
            match i {
                _ if i % 15 == 7 => message.ending("sent", None, 1),
                _ if i % 10 == 3 => message.ending("undelivered", Some(30003), rng.i64(30..400)),
                _ if i % 20 == 9 => message.ending("undelivered", Some(30005), rng.i64(10..90)),
                _ if i % 15 == 11 => message.ending("failed", Some(30007), rng.i64(2..8)),
                _ if i % 30 == 19 => message.ending("undelivered", Some(30008), rng.i64(60..900)),
                _ => message.ending("delivered", None, rng.i64(2..25)),
            }
        })
        .collect()
}

#[tokio::test]
async fn the_outcomes_page_draws_the_status_mix_time_to_final_and_error_codes() {
    let pipeline = TestPipeline::start().await;
    let messages = a_day_of_messages(now());
    store(&pipeline, &messages).await;
    let count = |last: &str| messages.iter().filter(|m| m.last == last).count();
    let with_code = |code: i32| {
        messages
            .iter()
            .filter(|m| m.error_code == Some(code))
            .count()
    };
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser
        .goto(&format!("{base}/console/outcomes"))
        .await
        .unwrap();
    assert_eq!(browser.text_of("#messages-total").await.unwrap(), "60");
    let source = browser.page_source().await.unwrap();
    for chart in ["status-mix", "time-to-final", "error-codes"] {
        let at = source
            .find(&format!("id=\"{chart}\""))
            .unwrap_or_else(|| panic!("no #{chart}"));
        assert!(source[at..].contains("<svg"), "#{chart} has no chart");
    }
    // Each bar: its label, then its value.
    let mix = browser.text_of("#status-mix svg").await.unwrap();
    let mix: Vec<&str> = mix.lines().collect();
    for status in ["delivered", "undelivered", "failed", "sent"] {
        let at = mix
            .iter()
            .position(|line| *line == status)
            .unwrap_or_else(|| panic!("no {status} bar: {mix:?}"));
        let share = count(status) as f64 / messages.len() as f64 * 100.0;
        assert_eq!(mix[at + 1], format!("{} ({share:.1}%)", count(status)));
    }
    let errors = browser.text_of("#error-codes svg").await.unwrap();
    let errors: Vec<&str> = errors.lines().collect();
    let mut drawn = Vec::new();
    for (code, title) in [
        (30003, "Unreachable destination"),
        (30005, "Unknown destination"),
        (30007, "Message filtered"),
        (30008, "Unknown error"),
    ] {
        let at = errors
            .iter()
            .position(|line| line.starts_with(&format!("{code} {title}")))
            .unwrap_or_else(|| panic!("no {code} bar: {errors:?}"));
        assert_eq!(errors[at + 1], with_code(code).to_string(), "{errors:?}");
        drawn.push((at, with_code(code)));
    }
    // The most frequent first.
    drawn.sort();
    assert!(
        drawn.windows(2).all(|pair| pair[0].1 >= pair[1].1),
        "{errors:?}"
    );
    let time_to_final = browser.text_of("#time-to-final").await.unwrap();
    assert!(
        time_to_final.contains("median") && time_to_final.contains("99th percentile"),
        "{time_to_final}"
    );
    screenshot(&browser, "outcomes.png", 1600).await;

    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_dead_letter_found_by_sid_is_replayed_with_its_row_button_and_stored() {
    let pipeline = TestPipeline::start().await;
    let (replayed, kept) = (sid(11), sid(12));
    put_letter(
        &pipeline.broker,
        Some(&replayed),
        "sent",
        failed(
            "retries exhausted after 3 attempts: database error: deadlock detected",
            hour(1),
        ),
    )
    .await;
    put_letter(
        &pipeline.broker,
        Some(&kept),
        "sent",
        failed(
            "retries exhausted after 3 attempts: database error: pool timed out while waiting for an open connection",
            hour(2),
        ),
    )
    .await;
    put_letter(
        &pipeline.broker,
        None,
        "sent",
        failed(
            "not a status callback: body is not form-encoded UTF-8",
            hour(3),
        ),
    )
    .await;
    wait_for_dead_letters(&pipeline.broker, 3).await;
    let base = &pipeline.worker.address;
    let browser = browser().await;

    browser
        .goto(&format!("{base}/console/dead-letters"))
        .await
        .unwrap();
    let letters = browser.text_of("table#letters tbody").await.unwrap();
    assert_eq!(letter_rows(&letters), 3, "{letters}");
    assert!(
        letters.contains(&replayed) && letters.contains(&kept),
        "{letters}"
    );
    screenshot(&browser, "dead-letters.png", WINDOW.1).await;

    browser.fill("input[name=sid]", &replayed).await.unwrap();
    submit(&browser, "form.filters").await;
    let letters = browser.text_of("table#letters tbody").await.unwrap();
    assert_eq!(letter_rows(&letters), 1, "{letters}");
    assert!(letters.contains(&replayed), "{letters}");

    follow(&browser, "table#letters tbody tr button").await;
    assert_eq!(
        browser.text_of("#replayed").await.unwrap(),
        "Replayed 1 dead letter(s)."
    );
    // Back on the same filter, which matches nothing now.
    let url = browser.current_url().await.unwrap();
    assert!(
        url.contains(&format!("sid={replayed}")) && url.ends_with("replayed=1"),
        "{url}"
    );
    assert_eq!(
        browser.text_of("#no-letters").await.unwrap(),
        "No dead letter matches."
    );

    // The other letters stay; the worker stores the replayed callback.
    wait_for_event_rows(&pipeline.db, 1).await;
    assert_eq!(
        message_row(&pipeline.db, &replayed).await.status.as_str(),
        "sent"
    );
    wait_for_dead_letters(&pipeline.broker, 2).await;
    let left: Vec<Option<String>> = dead_letters(&pipeline.broker)
        .await
        .into_iter()
        .map(|letter| letter.message_sid)
        .collect();
    assert_eq!(left, [Some(kept.clone()), None]);
    browser
        .goto(&format!("{base}/console/dead-letters"))
        .await
        .unwrap();
    let letters = browser.text_of("table#letters tbody").await.unwrap();
    assert_eq!(letter_rows(&letters), 2, "{letters}");
    assert!(!letters.contains(&replayed), "{letters}");

    browser.close().await.unwrap();
}
