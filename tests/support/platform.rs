//! Both run modes behind one face, for suites that must pass on each: the embedded
//! default (`admit serve`, SQLite) and the production topology (`admit-account` and
//! `admit-oauth` as separate processes on PostgreSQL and Redis, on different
//! origins); plus what an end user's browser does without a browser (cookies, CSRF
//! fields, the consent form) and a redirect-URI endpoint that records what reaches it.

use crate::{admin_cli, free_port, redis_url, unique, Proc, TestDatabase};
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

pub struct Platform {
    pub mode: &'static str,
    /// The authorization server's issuer (`http://127.0.0.1:PORT`).
    pub issuer: String,
    /// Where the account service answers (`/account`, `/login`).
    pub accounts: String,
    /// The database, for checks of what is stored.
    pub db_url: String,
    env: Vec<(String, String)>,
    data_dir: Option<tempfile::TempDir>,
    _db: Option<TestDatabase>,
    _logs: tempfile::TempDir,
    pub procs: Vec<Proc>,
}

impl Platform {
    /// `admit serve` on SQLite in a fresh data directory.
    pub fn embedded(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let logs = tempfile::tempdir()?;
        let port = free_port().to_string();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = data.path().to_str().context("data dir")?.to_owned();
        let server = Proc::start(
            "admit",
            &["serve", "--port", &port, "--data-dir", &dir],
            &env,
            logs.path(),
        )?;
        Ok(Self {
            mode: "embedded",
            issuer: server.url.clone(),
            accounts: server.url.clone(),
            db_url: format!("sqlite://{dir}/admit.db"),
            env,
            data_dir: Some(data),
            _db: None,
            _logs: logs,
            procs: vec![server],
        })
    }

    /// `admit-account` and `admit-oauth` on PostgreSQL and Redis, each on its own port
    /// (so on its own origin, as behind a gateway that splits them by host). The ports
    /// are chosen before the services start (each must know the other's URL); when
    /// another process takes one in between, it tries again with new ones.
    pub fn production(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut attempt = 0;
        loop {
            match Self::production_once(extra) {
                Err(e) if attempt < 5 && format!("{e:#}").contains("Address already in use") => {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn production_once(extra: &[(&str, &str)]) -> anyhow::Result<Self> {
        let db = TestDatabase::postgres()?;
        let logs = tempfile::tempdir()?;
        let (a, o) = (free_port(), free_port());
        let accounts = format!("http://127.0.0.1:{a}");
        let issuer = format!("http://127.0.0.1:{o}");
        let mut env: Vec<(String, String)> = [
            ("ADMIT__DATABASE__URL", db.url.clone()),
            ("ADMIT__REDIS__URL", redis_url()),
            ("ADMIT__REDIS__PREFIX", unique("admit-e2e-")),
            ("ADMIT__ACCOUNT__PORT", a.to_string()),
            ("ADMIT__OAUTH__PORT", o.to_string()),
            ("ADMIT__PUBLIC_BASE_URL", accounts.clone()),
            ("ADMIT__OAUTH__ISSUER", issuer.clone()),
            ("ADMIT__OAUTH__KEY_ENCRYPTION_KEY", crate::test_kek()),
            ("ADMIT__INTERNAL__LINK_KEY", crate::test_kek()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let status = std::process::Command::new(crate::bin("admit"))
            .arg("migrate")
            .envs(env.clone())
            .status()?;
        anyhow::ensure!(status.success(), "admit migrate failed");
        let procs = vec![
            Proc::start("admit-account", &[], &env, logs.path())?,
            Proc::start("admit-oauth", &[], &env, logs.path())?,
        ];
        Ok(Self {
            mode: "production",
            issuer,
            accounts,
            db_url: db.url.clone(),
            env,
            data_dir: None,
            _db: Some(db),
            _logs: logs,
            procs,
        })
    }

    /// Runs an `admit` operator command against this platform's database.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        let dir;
        if let Some(d) = &self.data_dir {
            dir = d.path().to_str().context("data dir")?.to_owned();
            all.extend(["--data-dir", dir.as_str()]);
        }
        admin_cli(&all, &self.env)
    }

    /// The environment its processes were started with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Production topology: starts `admit-mailer`, sending to `smtp` (the embedded
    /// default keeps its mail in `/dev/inbox.json` and needs none).
    pub fn start_mailer(&mut self, smtp: &crate::SmtpCapture) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.mode == "production",
            "the embedded default has its mailer"
        );
        let mut env = self.env.clone();
        env.extend(
            [
                ("ADMIT__MAILER__PORT", free_port().to_string()),
                ("ADMIT__MAILER__SMTP__HOST", "127.0.0.1".to_owned()),
                ("ADMIT__MAILER__SMTP__PORT", smtp.port.to_string()),
                ("ADMIT__MAILER__SMTP__TLS", "none".to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let mailer = Proc::start("admit-mailer", &[], &env, self._logs.path())?;
        self.procs.push(mailer);
        Ok(())
    }

    /// The logs of every process so far.
    pub fn logs(&self) -> String {
        self.procs.iter().map(Proc::log_text).collect()
    }

    /// A partner with one confidential client registered for `grants`, redirecting to
    /// `redirect_uri`, with scopes openid, profile, email and accounts:create.
    pub fn client(
        &self,
        redirect_uri: &str,
        grants: &[&str],
        public: bool,
    ) -> anyhow::Result<Client> {
        let p = self.cli(&["partner", "create", "--name", "Velo Partner"])?;
        let pid = p["partner_id"].as_str().context("partner_id")?.to_owned();
        let mut args = vec![
            "client",
            "create",
            "--partner",
            &pid,
            "--name",
            "Velo App",
            "--redirect-uri",
            redirect_uri,
        ];
        for g in grants {
            args.extend(["--grant", g]);
        }
        for s in ["openid", "profile", "email", "accounts:create"] {
            args.extend(["--scope", s]);
        }
        if public {
            args.push("--public");
        }
        let c = self.cli(&args)?;
        Ok(Client {
            id: c["client_id"].as_str().context("client_id")?.to_owned(),
            secret: c["client_secret"].as_str().map(str::to_owned),
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// Creates an end user's account; returns its id.
    pub async fn user(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let res = crate::http()
            .post(format!("{}/account", self.accounts))
            .json(&serde_json::json!({
                "contacts": [["EMAIL", email, true]],
                "password": password,
                "full_name": "Ada Lovelace",
            }))
            .send()
            .await?;
        anyhow::ensure!(res.status() == 201, "sign-up answered {}", res.status());
        let body: serde_json::Value = res.json().await?;
        Ok(body["account_id"]
            .as_str()
            .context("account_id")?
            .to_owned())
    }

    /// The stored form of every signing key's private part.
    pub async fn stored_signing_keys(&self) -> anyhow::Result<Vec<String>> {
        let db = admit_store::Db::connect(&self.db_url, 1)?;
        let rows = db
            .run(|c| admit_store::partners::published_signing_keys(c, admit_store::now()))
            .await?;
        Ok(rows.into_iter().map(|r| r.private_der).collect())
    }

    /// Every value stored in the database, as text, for "nothing in clear" checks.
    pub fn stored_text(&self) -> anyhow::Result<String> {
        if let Some(d) = &self.data_dir {
            // SQLite: the database file and its write-ahead log, byte for byte.
            let mut all = Vec::new();
            for f in ["admit.db", "admit.db-wal"] {
                if let Ok(bytes) = std::fs::read(d.path().join(f)) {
                    all.extend(bytes);
                }
            }
            return Ok(String::from_utf8_lossy(&all).into_owned());
        }
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let mut conn = diesel::PgConnection::establish(&self.db_url)?;
        let tables: Vec<Row> = diesel::sql_query(
            "SELECT table_name::text AS t FROM information_schema.tables \
             WHERE table_schema = 'public'",
        )
        .load(&mut conn)?;
        let mut out = String::new();
        for table in tables {
            let rows: Vec<Row> =
                diesel::sql_query(format!("SELECT x::text AS t FROM \"{}\" x", table.t))
                    .load(&mut conn)?;
            for r in rows {
                out.push_str(&r.t);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

/// An HTTP endpoint on 127.0.0.1 that answers every request with a short page and
/// reports each request's path and query.
pub struct Callback {
    pub url: String,
    rx: mpsc::Receiver<String>,
}

impl Callback {
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/cb", listener.local_addr()?);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                });
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                // Drain the header block.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                    line.clear();
                }
                let target = first.split(' ').nth(1).unwrap_or_default().to_owned();
                let body = "<!doctype html><title>back at the client</title><p>ok</p>";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                if tx.send(target).is_err() {
                    return;
                }
            }
        });
        Ok(Self { url, rx })
    }

    /// The next request's path and query.
    pub fn next(&self, timeout: Duration) -> anyhow::Result<String> {
        self.rx
            .recv_timeout(timeout)
            .context("nothing reached the redirect URI")
    }
}

/// The parameters of a URL's query (or of any `a=b&c=d` string).
pub fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once(['?', '#']).map(|(_, q)| q).unwrap_or("");
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `name="…" value="…"` pairs of a page's hidden inputs.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = part
            .split("name=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        let value = part
            .split("value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next());
        if let (Some(n), Some(v)) = (name, value) {
            out.push((unescape(n), unescape(v)));
        }
    }
    out
}

/// A user agent without a browser: keeps cookies (including `__Host-` ones on
/// http://127.0.0.1, as browsers do for loopback), follows no redirect by itself.
pub struct Agent {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Agent {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()?,
            cookies: HashMap::new(),
        })
    }

    /// An agent that sends `headers` with every request (`X-Forwarded-For`).
    pub fn with_headers(headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes())?,
                reqwest::header::HeaderValue::from_str(v)?,
            );
        }
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .default_headers(map)
                .build()?,
            cookies: HashMap::new(),
        })
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, res: reqwest::Response) -> anyhow::Result<Page> {
        for c in res.headers().get_all(reqwest::header::SET_COOKIE) {
            let c = c.to_str()?;
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Ok(Page {
            status: res.status().as_u16(),
            location: res
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            headers: res.headers().clone(),
            body: res.text().await?,
        })
    }

    pub async fn get(&mut self, url: &str) -> anyhow::Result<Page> {
        let res = self
            .http
            .get(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await?;
        self.finish(res).await
    }

    pub async fn post(&mut self, url: &str, form: &[(String, String)]) -> anyhow::Result<Page> {
        let res = self
            .http
            .post(url)
            .header(reqwest::header::COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await?;
        self.finish(res).await
    }

    pub fn cookie(&self, name: &str) -> Option<&String> {
        self.cookies.get(name)
    }

    /// Sends `name=value` from now on (as a native app does with a session id).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// Signs in on the account service's login page.
    pub async fn login(
        &mut self,
        accounts: &str,
        login: &str,
        password: &str,
    ) -> anyhow::Result<Page> {
        let page = self.get(&format!("{accounts}/login")).await?;
        let mut form = hidden_fields(&page.body);
        form.push(("login".into(), login.into()));
        form.push(("password".into(), password.into()));
        self.post(&format!("{accounts}/login"), &form).await
    }

    /// Follows an authorization request through login (already done) and consent;
    /// returns where the server finally sent the browser.
    pub async fn authorize(&mut self, url: &str) -> anyhow::Result<String> {
        let page = self.get(url).await?;
        if let Some(loc) = page.location {
            return Ok(loc);
        }
        if page.status != 200 || !page.body.contains("id=\"allow\"") {
            bail!("authorize answered {}: {}", page.status, page.body);
        }
        let mut form = hidden_fields(&page.body);
        form.push(("decision".into(), "allow".into()));
        let issuer = url.split("/oauth/").next().unwrap_or_default();
        let res = self
            .post(&format!("{issuer}/oauth/authorize"), &form)
            .await?;
        res.location.with_context(|| {
            format!(
                "consent answered {} without Location: {}",
                res.status, res.body
            )
        })
    }
}

/// Headless Chromium (`ADMIT_TEST_CHROMIUM`, else /usr/bin/chromium) with a fresh
/// profile; keep the directory as long as the browser.
pub fn chromium() -> anyhow::Result<(headless_chrome::Browser, tempfile::TempDir)> {
    use headless_chrome::{Browser, LaunchOptions};
    use std::ffi::OsStr;
    let chromium =
        std::env::var("ADMIT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let profile = tempfile::tempdir()?;
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium.into()))
            .headless(true)
            .sandbox(false)
            .user_data_dir(Some(profile.path().to_path_buf()))
            .idle_browser_timeout(Duration::from_secs(120))
            .args(vec![
                OsStr::new("--disable-gpu"),
                OsStr::new("--disable-quic"),
                OsStr::new("--no-first-run"),
                OsStr::new("--disable-background-networking"),
                OsStr::new("--disable-component-update"),
                OsStr::new("--disable-sync"),
            ])
            .build()?,
    )?;
    Ok((browser, profile))
}
