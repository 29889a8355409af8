//! A real headless Chromium, driven through chromedriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). Tests fail, never skip, without them.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser with its own profile; [`Browser::close`] ends it.
pub struct Browser {
    pub client: Client,
    _driver: tokio::process::Child,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Self {
        // chromedriver picks its port (`--port=0`) and says which on stdout. Once in a
        // while on this VM it exits before that (seen once here, with nothing to say why:
        // its stderr went nowhere): it is started again, twice at most, and what it said
        // goes into the failure.
        let mut why = Vec::new();
        let (mut driver, port, mut lines) = loop {
            let mut driver = tokio::process::Command::new(CHROMEDRIVER)
                .arg("--port=0")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "{CHROMEDRIVER} cannot start ({e}): apt-get install chromium chromium-driver"
                    )
                });
            let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
            let port = tokio::time::timeout(Duration::from_secs(30), async {
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("started successfully on port ").nth(1) {
                        return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                    }
                }
                None
            })
            .await
            .expect("chromedriver starts within 30 s");
            if let Some(port) = port {
                break (driver, port, lines);
            }
            let mut err = String::new();
            if let Some(mut e) = driver.stderr.take() {
                use tokio::io::AsyncReadExt as _;
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
            }
            why.push(format!("{:?}: {}", driver.wait().await, err.trim()));
            assert!(
                why.len() < 3,
                "chromedriver exited before it listened, three times: {why:#?}"
            );
        };
        // Keep reading what it prints, so a full pipe never blocks it.
        let mut errors = BufReader::new(driver.stderr.take().unwrap()).lines();
        tokio::spawn(async move { while let Ok(Some(_)) = errors.next_line().await {} });
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let profile = std::env::temp_dir().join(crate::cloud::unique("ponte-chromium"));
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            // The page's console, for [`Browser::console_errors`].
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver opens a Chromium session");
        crate::mark_uses("chromium");
        Self {
            client,
            _driver: driver,
            profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap()
    }

    /// Runs an async script: it ends by calling `arguments[arguments.length - 1](result)`.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute_async(script, args).await.unwrap()
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_css(css).await;
        e.send_keys(text).await.unwrap();
    }

    /// The text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> String {
        self.wait_css(css).await.text().await.unwrap()
    }

    /// Whether an element matches `css` on the page as it is now.
    pub async fn has(&self, css: &str) -> bool {
        let v = self
            .js(
                "return document.querySelector(arguments[0]) !== null",
                vec![Value::from(css)],
            )
            .await;
        v == Value::Bool(true)
    }

    pub async fn click(&self, css: &str) {
        self.wait_css(css).await.click().await.unwrap();
    }

    pub async fn wait_css(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.url_or_unknown().await),
        }
    }

    async fn url_or_unknown(&self) -> String {
        match self.client.current_url().await {
            Ok(u) => u.to_string(),
            Err(_) => "?".into(),
        }
    }

    /// Waits until the JavaScript expression `expr` is truthy in the page (it is
    /// evaluated again after each navigation); returns its value.
    pub async fn wait_js(&self, expr: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .client
                .execute(
                    &format!("try {{ return ({expr}); }} catch (e) {{ return null; }}"),
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what} ({expr}) on {}",
                self.url_or_unknown().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the browser is at `url` (a navigation the page's script makes, such
    /// as a launch link's confirmation, even onto a page that is only an error).
    pub async fn wait_url(&self, url: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let at = self.url_or_unknown().await;
            if at == url {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {url}; at {at}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every resource the current page loaded and the page itself, as
    /// `[url, status, initiator]` from the Resource Timing API.
    pub async fn requests(&self) -> Vec<(String, u64, String)> {
        let v = self
            .js(
                "return performance.getEntriesByType('navigation')
                   .concat(performance.getEntriesByType('resource'))
                   .map(e => [e.name, e.responseStatus, e.initiatorType || 'navigation']);",
                vec![],
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_str().unwrap().to_owned(),
                    e[1].as_u64().unwrap_or(0),
                    e[2].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    /// The console errors (and failed loads) the browser logged since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver returns the browser log");
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// chromedriver's `POST /session/{id}/se/log {"type": "browser"}` (outside W3C WebDriver,
/// which has no console log).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}
