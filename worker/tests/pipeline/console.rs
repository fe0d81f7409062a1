//! The web console over plain HTTP: who may see it, the sign-in cookie,
//! CSRF on replay, the headers that keep personal data out of caches and
//! other sites. (What a person sees and does is driven in a real browser
//! by `worker/tests/pipeline/console_browser.rs`.)

use crate::dead_letters::{failed, hour, put_letter};
use crate::helpers::{at, wait_for_dead_letters, wait_for_event_rows, TestPipeline};
use reqwest::redirect::Policy;
use testkit::{message_sid, status_params};

const FULL: &str = "console-full-token";
const READER: &str = "console-read-token";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn with_tokens() -> TestPipeline {
    TestPipeline::start_with(&["--api-token", FULL, "--api-read-tokens", READER]).await
}

/// Signs in with `token`; the session cookie's `name=value` and its whole
/// `Set-Cookie` header.
async fn sign_in(base: &str, token: &str) -> (String, String) {
    let response = client()
        .post(format!("{base}/console/sign-in"))
        .form(&[("token", token), ("next", "/console/outcomes")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["Location"], "/console/outcomes");
    let set_cookie = response.headers()["Set-Cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (pair, set_cookie)
}

async fn page(base: &str, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut request = client().get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf_in(html: &str) -> String {
    let at = html
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn without_a_credential_every_page_is_a_sign_in_form_showing_nothing_personal() {
    let pipeline = with_tokens().await;
    let sid = message_sid(1);
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "delivered", None), at(1))
        .await;
    wait_for_event_rows(&pipeline.db, 1).await;
    let base = &pipeline.worker.address;
    for path in [
        "/console/".to_owned(),
        "/console/?q=%2B15558675310".to_owned(),
        format!("/console/messages/{sid}"),
        "/console/outcomes".to_owned(),
        "/console/dead-letters".to_owned(),
    ] {
        let response = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["Cache-Control"], "no-store", "{path}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(r#"action="/console/sign-in""#),
            "{path}: {html}"
        );
        // Nothing from the database: the page only echoes the path asked for
        // (to come back to it after signing in).
        assert!(
            !html.contains("+1555") && !html.contains("delivered"),
            "{path} leaked: {html}"
        );
        let (status, _) = page(base, &path, Some("console_session=full.99999999999.AAAA")).await;
        assert_eq!(status, 401, "{path} with a forged cookie");
    }
    // The stylesheet is not personal.
    assert_eq!(page(base, "/console/assets/console.css", None).await.0, 200);
    // A bearer token opens the console as it opens the API.
    let response = client()
        .get(format!("{base}/console/messages/{sid}"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("+15558675310"));
}

#[tokio::test]
async fn signing_in_sets_an_http_only_same_site_cookie_that_opens_the_pages() {
    let pipeline = with_tokens().await;
    let sid = message_sid(2);
    pipeline
        .broker
        .publish_callback(&status_params(&sid, "undelivered", Some(30003)), at(1))
        .await;
    wait_for_event_rows(&pipeline.db, 1).await;
    let base = &pipeline.worker.address;

    let wrong = client()
        .post(format!("{base}/console/sign-in"))
        .form(&[("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("Set-Cookie").is_none());

    let (cookie, set_cookie) = sign_in(base, FULL).await;
    assert!(
        !set_cookie.contains(FULL),
        "the cookie holds the token: {set_cookie}"
    );
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let (status, html) = page(base, &format!("/console/messages/{sid}"), Some(&cookie)).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Unreachable destination handset"), "{html}");
    let (status, html) = page(base, "/console/?q=%2B1%20555%20867%205310", Some(&cookie)).await;
    assert_eq!(status, 200);
    assert!(html.contains(&sid), "{html}");

    // A SID in the search box goes to its page.
    let response = client()
        .get(format!("{base}/console/?q={sid}"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["Location"],
        format!("/console/messages/{sid}")
    );

    // The API itself still wants its bearer token: the cookie is the console's.
    let api = client()
        .get(format!("{base}/messages/{sid}"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    let (status, html) = page(base, "/console/?status=bogus", Some(&cookie)).await;
    assert_eq!(status, 400);
    assert!(html.contains("is not a message status"), "{html}");
    let (status, _) = page(base, "/console/messages/not-a-sid", Some(&cookie)).await;
    assert_eq!(status, 400);
    let (status, _) = page(
        base,
        &format!("/console/messages/{}", message_sid(99)),
        Some(&cookie),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn replay_needs_the_full_token_and_the_page_s_own_csrf_token() {
    let pipeline = with_tokens().await;
    let base = &pipeline.worker.address;
    let doomed = message_sid(7);
    put_letter(
        &pipeline.broker,
        Some(&doomed),
        "sent",
        failed("database refused", hour(1)),
    )
    .await;
    wait_for_dead_letters(&pipeline.broker, 1).await;

    // A read token's session sees the letter but cannot replay it.
    let (reader, _) = sign_in(base, READER).await;
    let (status, html) = page(base, "/console/dead-letters", Some(&reader)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&doomed) && html.contains("database refused"),
        "{html}"
    );
    let refused = client()
        .post(format!("{base}/console/dead-letters/replay"))
        .header("Cookie", &reader)
        .form(&[("csrf", csrf_in(&html).as_str()), ("sid", doomed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let (full, _) = sign_in(base, FULL).await;
    let (_, html) = page(base, "/console/dead-letters", Some(&full)).await;
    let csrf = csrf_in(&html);
    for forged in [
        "",
        "not-the-token",
        csrf_in(&page(base, "/console/dead-letters", Some(&reader)).await.1).as_str(),
    ] {
        let response = client()
            .post(format!("{base}/console/dead-letters/replay"))
            .header("Cookie", &full)
            .form(&[("csrf", forged), ("sid", doomed.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "csrf {forged:?}");
    }
    // Nothing was replayed by the refusals.
    wait_for_dead_letters(&pipeline.broker, 1).await;

    let replayed = client()
        .post(format!("{base}/console/dead-letters/replay"))
        .header("Cookie", &full)
        .form(&[("csrf", csrf.as_str()), ("sid", doomed.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 303);
    assert!(
        replayed.headers()["Location"]
            .to_str()
            .unwrap()
            .ends_with("replayed=1"),
        "{:?}",
        replayed.headers()["Location"]
    );
    // The worker stores the replayed callback.
    wait_for_event_rows(&pipeline.db, 1).await;
    wait_for_dead_letters(&pipeline.broker, 0).await;
}

#[tokio::test]
async fn pages_keep_personal_data_out_of_caches_frames_and_other_sites() {
    let pipeline = TestPipeline::start().await;
    let response = client()
        .get(format!("{}/console/", pipeline.worker.address))
        .send()
        .await
        .unwrap();
    // Loopback without a token: open to local callers.
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["Cache-Control"], "no-store");
    assert_eq!(headers["X-Frame-Options"], "DENY");
    assert_eq!(headers["Referrer-Policy"], "no-referrer");
    let policy = headers["Content-Security-Policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script"), "no script: {html}");
}
