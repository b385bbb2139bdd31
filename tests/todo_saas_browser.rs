//! The todo_saas page in headless Chromium, driven through WebDriver: a person signs
//! up, makes a list and adds a todo; another user's page never shows that list, not
//! even when they go to its address, until it is shared with them; a third user's
//! never does. User text is shown as typed, never as HTML.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`); without them the test fails and says how to install
//! them. It starts chromedriver on a free port and stops it at the end.

#[path = "../examples/todo_saas/main.rs"]
#[allow(dead_code)]
mod todo_saas;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use metrics_exporter_prometheus::PrometheusBuilder;
use tenants_test_support::{postgres, unique_name};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL_HINT: &str = "\
This test drives the todo_saas page in headless Chromium and needs Debian's chromium
and chromedriver, which were not found at /usr/bin/chromium and /usr/bin/chromedriver.
Install them:
    apt-get install -y chromium chromium-driver
(.ci/run does this when they are missing).";

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A chromedriver process of this test, stopped (and its profiles removed) on drop.
struct Chromedriver {
    child: Child,
    url: String,
    profiles: Vec<PathBuf>,
}

impl Chromedriver {
    fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing.\n\n{INSTALL_HINT}"
            );
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}\n\n{INSTALL_HINT}"));
        let mut driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles: Vec::new(),
        };
        // Ready when it accepts connections: at most 20 s.
        for _ in 0..200 {
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return driver;
            }
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("{CHROMEDRIVER} exited at start ({status})\n\n{INSTALL_HINT}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{CHROMEDRIVER} did not listen on port {port} within 20 s");
    }

    /// A new headless browser with a fresh profile: one person at their computer.
    async fn browser(&mut self) -> Client {
        let profile = std::env::temp_dir().join(unique_name("todo-saas-chromium"));
        std::fs::create_dir_all(&profile).unwrap();
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        self.profiles.push(profile);
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for profile in &self.profiles {
            let _ = std::fs::remove_dir_all(profile);
        }
    }
}

/// The app, served on a free loopback port; its base URL.
async fn serve() -> String {
    let tag = unique_name("browser");
    let config = todo_saas::Config {
        database_url: postgres().fresh_database(),
        app_password: "app-password".into(),
        token_key: b"a test key of the todo_saas browser test".to_vec(),
        token_lifetime: Duration::from_secs(900),
        app_role: Some(format!("todo_app_{tag}")),
        template: Some(format!("todo_template_{tag}")),
    };
    let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
    let app = todo_saas::app(config, prometheus, Arc::new(|_| {}))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

/// What one person does with the page.
struct Person {
    browser: Client,
    email: String,
}

impl Person {
    async fn sign_up(driver: &mut Chromedriver, base: &str, name: &str) -> Self {
        let browser = driver.browser().await;
        browser.goto(&format!("{base}/")).await.unwrap();
        let email = format!("{name}@{}.test", unique_name("b").replace('_', "-"));
        let person = Person { browser, email };
        person.type_into("#email", &person.email).await;
        person.type_into("#password", "correct horse").await;
        person.click("#signup").await;
        person
            .browser
            .wait()
            .for_element(Locator::XPath(&format!(
                "//strong[@id='whoami' and text()='{}']",
                person.email
            )))
            .await
            .unwrap_or_else(|e| panic!("{} was not signed in: {e}", person.email));
        person.lists_loaded().await;
        person
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.browser
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    async fn lists_loaded(&self) {
        self.wait_for("#lists[data-loaded='true']").await;
    }

    async fn todos_loaded(&self) {
        self.wait_for("#todos[data-loaded='true']").await;
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    async fn count(&self, css: &str) -> usize {
        self.browser
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .len()
    }

    async fn source(&self) -> String {
        self.browser.source().await.unwrap()
    }

    /// Goes to a list's address, as if following a link to it, and waits until the
    /// page has tried to show it.
    async fn visit_list(&self, base: &str, list: &str) {
        self.browser
            .execute(
                "document.getElementById('todos').dataset.loaded = 'false';",
                vec![],
            )
            .await
            .unwrap();
        self.browser
            .goto(&format!("{base}/#list={list}"))
            .await
            .unwrap();
        self.todos_loaded().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_page_never_shows_the_list() {
    let mut driver = Chromedriver::start();
    let base = serve().await;

    // Alice makes a list and a todo; both are shown as typed.
    let alice = Person::sign_up(&mut driver, &base, "alice").await;
    let name = "Alice's <i>secret</i> plans";
    alice.type_into("#new-list-name", name).await;
    alice.click("#create-list").await;
    let item = alice.wait_for("#lists li[data-list-id]").await;
    let list = item.attr("data-list-id").await.unwrap().unwrap();
    assert!(list.starts_with("list-"), "{list}");
    assert_eq!(alice.text("#lists li button").await, name);
    assert_eq!(
        alice.count("#lists i").await,
        0,
        "the name is text, not HTML"
    );
    alice.todos_loaded().await;
    let todo = "<b>buy milk</b> for the <img src=x onerror=alert(1)> party";
    alice.type_into("#new-todo", todo).await;
    alice.click("#add-todo").await;
    assert_eq!(alice.text("#todos li .title").await, todo);
    assert_eq!(alice.count("#todos b, #todos img").await, 0);

    // Bob's page lists none of it, not even when he goes to the list's address.
    let bob = Person::sign_up(&mut driver, &base, "bob").await;
    assert_eq!(bob.count("#lists li").await, 0);
    let page = bob.source().await;
    assert!(!page.contains("secret") && !page.contains(&list), "{page}");
    bob.visit_list(&base, &list).await;
    assert_eq!(bob.count("#todos li").await, 0);
    assert!(
        bob.text("#message").await.contains("does not belong to"),
        "bob is told he may not see it"
    );
    let page = bob.source().await;
    assert!(!page.contains("secret") && !page.contains("milk"), "{page}");

    // Shared with bob, the list reaches his page after a refresh (so the page can
    // show it, and did not above because it must not).
    alice.type_into("#share-email", &bob.email).await;
    alice.click("#share").await;
    alice
        .browser
        .wait()
        .for_element(Locator::XPath(
            "//p[@id='message' and starts-with(text(), 'Shared with')]",
        ))
        .await
        .unwrap();
    bob.click("#refresh").await;
    bob.click(&format!("#lists li[data-list-id='{list}'] button"))
        .await;
    bob.todos_loaded().await;
    assert_eq!(bob.text("#todos li .title").await, todo);
    assert!(bob.text("#lists").await.contains("shared with you"));

    // Carol's page never shows it.
    let carol = Person::sign_up(&mut driver, &base, "carol").await;
    assert_eq!(carol.count("#lists li").await, 0);
    let page = carol.source().await;
    assert!(!page.contains("secret") && !page.contains(&list), "{page}");
    carol.visit_list(&base, &list).await;
    assert_eq!(carol.count("#todos li").await, 0);
    let page = carol.source().await;
    assert!(!page.contains("secret") && !page.contains("milk"), "{page}");

    for person in [alice, bob, carol] {
        person.browser.close().await.unwrap();
    }
}
