//! The browser harness against a page of its own: a tiny HTTP server in the
//! test serves a form, a script and cookies, and a real headless Chromium
//! reads, fills, submits, screenshots it, with JavaScript on and off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use testkit::{Browser, BrowserOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The page under test. The script builds its text from two pieces, so the
/// sentence appears in the page only if the script ran.
const PAGE: &str = r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>Harness page</title></head>
<body>
<h1 id="heading">Message statuses</h1>
<p id="scripted"></p>
<script>document.getElementById('scripted').textContent = 'written ' + 'by script';</script>
<form id="greet" method="post" action="/greet">
  <label>Name <input name="name" value="to be replaced"></label>
  <button type="submit">Send</button>
</form>
</body>
</html>
"#;

/// Serves `PAGE` at `/` (setting two cookies), answers a POST to `/greet`
/// with a redirect to `/thanks?<the form body>`, which shows that body, how
/// many times a thanks page was served, and a form that posts back to its
/// own address (answered with a redirect to that same address).
async fn serve_site() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let visits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, visits.clone()));
        }
    });
    address
}

async fn answer(mut stream: TcpStream, visits: Arc<AtomicUsize>) -> std::io::Result<()> {
    let (read, mut write) = stream.split();
    let mut reader = BufReader::new(read);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut content_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).await?;
    let body = String::from_utf8_lossy(&body);

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = match (method, target) {
        ("GET", "/") => format!(
            "HTTP/1.1 200 OK\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             Set-Cookie: session=s3cret; Path=/; HttpOnly; SameSite=Strict\r\n\
             Set-Cookie: theme=dark; Path=/; SameSite=Lax\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
            PAGE.len()
        ),
        ("POST", "/greet") => format!(
            "HTTP/1.1 303 See Other\r\nLocation: /thanks?{body}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        ("POST", target) if target.starts_with("/thanks?") => format!(
            "HTTP/1.1 303 See Other\r\nLocation: {target}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        ("GET", target) if target.starts_with("/thanks?") => {
            let received = target.trim_start_matches("/thanks?");
            let visit = visits.fetch_add(1, Ordering::SeqCst) + 1;
            let page = format!(
                "<!doctype html><title>Thanks</title>\
                 <pre id=\"received\">{received}</pre><p id=\"visit\">visit {visit}</p>\
                 <form id=\"again\" method=\"post\" action=\"\">\
                 <button type=\"submit\">Again</button></form>"
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            )
        }
        _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    write.write_all(response.as_bytes()).await?;
    write.shutdown().await
}

#[tokio::test]
async fn a_page_is_read_filled_submitted_and_photographed() {
    let site = serve_site().await;
    let browser = Browser::start(BrowserOptions::default()).await.unwrap();

    browser.goto(&format!("http://{site}/")).await.unwrap();
    assert_eq!(
        browser.text_of("#heading").await.unwrap(),
        "Message statuses"
    );
    assert_eq!(
        browser.text_of("#scripted").await.unwrap(),
        "written by script"
    );
    assert!(browser
        .page_source()
        .await
        .unwrap()
        .contains("written by script"));

    let screenshots = tempfile::tempdir().unwrap();
    let png = screenshots.path().join("page.png");
    browser.screenshot(&png).await.unwrap();
    let png = std::fs::read(&png).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The IHDR chunk: width and height, big-endian, after the signature,
    // the chunk length and its type. The window is 1280x900; the viewport
    // the screenshot shows is as wide and shorter (room for toolbars).
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 1280);
    assert!((600..=900).contains(&height), "{height}");

    browser
        .fill("input[name=name]", "Ada Lovelace")
        .await
        .unwrap();
    browser.submit("form#greet").await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("http://{site}/thanks?name=Ada+Lovelace")
    );
    assert_eq!(
        browser.text_of("#received").await.unwrap(),
        "name=Ada+Lovelace"
    );
    assert_eq!(browser.text_of("#visit").await.unwrap(), "visit 1");

    // A form answered at the page's own address: the next page is waited
    // for all the same, not mistaken for the one it replaces.
    browser.submit("form#again").await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap(),
        format!("http://{site}/thanks?name=Ada+Lovelace")
    );
    assert_eq!(browser.text_of("#visit").await.unwrap(), "visit 2");

    browser.close().await.unwrap();
}

#[tokio::test]
async fn without_javascript_the_script_does_not_run_and_forms_still_work() {
    let site = serve_site().await;
    let browser = Browser::start(BrowserOptions::without_javascript())
        .await
        .unwrap();

    browser.goto(&format!("http://{site}/")).await.unwrap();
    assert_eq!(
        browser.text_of("#heading").await.unwrap(),
        "Message statuses"
    );
    assert_eq!(browser.text_of("#scripted").await.unwrap(), "");
    assert!(!browser
        .page_source()
        .await
        .unwrap()
        .contains("written by script"));

    browser.fill("input[name=name]", "Grace").await.unwrap();
    browser.follow("button[type=submit]").await.unwrap();
    assert_eq!(browser.text_of("#received").await.unwrap(), "name=Grace");

    browser.close().await.unwrap();
}

#[tokio::test]
async fn cookies_show_their_http_only_and_same_site_attributes() {
    let site = serve_site().await;
    let browser = Browser::start(BrowserOptions::default()).await.unwrap();
    browser.goto(&format!("http://{site}/")).await.unwrap();

    let session = browser.cookie("session").await.unwrap().unwrap();
    assert_eq!(session.value(), "s3cret");
    assert_eq!(session.http_only(), Some(true));
    assert!(session.same_site().is_some_and(|s| s.is_strict()));

    let theme = browser.cookie("theme").await.unwrap().unwrap();
    assert_eq!(theme.http_only(), Some(false));
    assert!(theme.same_site().is_some_and(|s| s.is_lax()));
    assert_eq!(browser.cookies().await.unwrap().len(), 2);
    assert!(browser.cookie("absent").await.unwrap().is_none());

    browser.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_element_is_named_in_the_error() {
    let site = serve_site().await;
    let browser = Browser::start(BrowserOptions::default()).await.unwrap();
    browser.goto(&format!("http://{site}/")).await.unwrap();

    let error = browser.click("#no-such-button").await.unwrap_err();
    assert!(error.to_string().contains("#no-such-button"), "{error}");
    browser.close().await.unwrap();
}

/// A test that panics never reaches `close()`: dropping the browser must
/// still leave no Chromium process behind.
#[tokio::test]
async fn a_dropped_browser_leaves_no_process_behind() {
    let browser = Browser::start(BrowserOptions::default()).await.unwrap();
    let chromium = browser.client().capabilities().unwrap()["goog:processID"]
        .as_u64()
        .unwrap();
    let group = process_group(chromium).unwrap();
    assert!(live_members(group) >= 2, "chromedriver and Chromium");

    drop(browser);
    testkit::wait_for(
        "the browser's processes to be gone",
        Duration::from_secs(10),
        || async { (live_members(group) == 0).then_some(()) },
    )
    .await;
}

/// `/proc/<pid>/stat`: `pid (comm) state ppid pgrp ...`; comm may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn stat_fields(pid: u64) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn process_group(pid: u64) -> Option<u64> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// Processes of `group` still running (a killed process whose parent has
/// not reaped it yet is a zombie: gone for this purpose).
fn live_members(group: u64) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter_map(stat_fields)
        .filter(|fields| fields.first().is_some_and(|state| state != "Z"))
        .filter(|fields| fields.get(2).and_then(|g| g.parse::<u64>().ok()) == Some(group))
        .count()
}
