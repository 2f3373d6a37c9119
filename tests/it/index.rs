//! The index page at `/` over real HTTP: an HTML page under the same Content-Security-Policy as the
//! other pages, whose every link answers 200, so a newcomer's first click never lands on an error.

use crate::helpers::{TOKEN, TestApp};

/// The `href` values of an HTML page, in order.
fn links(html: &str) -> Vec<String> {
    html.split("href=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_page_links_every_page_and_endpoint_and_each_link_answers() {
    let app = TestApp::spawn_admin().await;
    let client = reqwest::Client::new();
    let response = client.get(app.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let content_type = headers["content-type"].to_str().expect("ascii");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let overlay = client.get(app.url("/overlay")).send().await.expect("GET /overlay");
    assert_eq!(
        headers["content-security-policy"],
        overlay.headers()["content-security-policy"],
        "the same policy as the other pages"
    );
    let html = response.text().await.expect("html");
    assert_eq!(html, include_str!("../../overlay/home.html"), "the page in overlay/");
    for part in ["<html lang=\"en\">", "<title>cvbot</title>", "<h1>cvbot</h1>", "<ul>"] {
        assert!(html.contains(part), "{part} in the page");
    }
    // Nothing the policy would block: no script at all, no inline style.
    let lower = html.to_ascii_lowercase();
    for blocked in ["<script", "<style", " style=", " onclick=", " onload="] {
        assert!(!lower.contains(blocked), "{blocked} in the page");
    }

    let links = links(&html);
    for wanted in ["/overlay/home.css", "/overlay", "/admin", "/commands", "/api/state", "/healthz", "/metrics"] {
        assert!(links.iter().any(|l| l == wanted), "{wanted} is linked: {links:?}");
    }
    for link in &links {
        assert!(link.starts_with('/'), "{link}: links stay on this instance");
        // Fetched as a browser following the link would: no token. The admin page loads without one
        // and asks for it; the token only unlocks its writes, checked below.
        let plain = client.get(app.url(link)).send().await.expect("GET link");
        assert_eq!(plain.status(), 200, "{link}");
        assert!(!plain.bytes().await.expect("body").is_empty(), "{link} has a body");
    }
    let session = client.get(app.url("/api/admin/session")).bearer_auth(TOKEN).send().await.expect("session");
    assert_eq!(session.status(), 200, "the admin page's login works with the token");
    let css = client.get(app.url("/overlay/home.css")).send().await.expect("css");
    assert!(css.headers()["content-type"].to_str().expect("ascii").starts_with("text/css"));

    // `/` is one exact route, not a catch-all: an unknown path is still a 404.
    let unknown = client.get(app.url("/no-such-page")).send().await.expect("GET unknown");
    assert_eq!(unknown.status(), 404);
}
