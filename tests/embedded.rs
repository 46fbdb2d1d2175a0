//! The embedded default (`admit serve`): one process, SQLite, the local inbox.

use admit_e2e::{concurrent_same_email, http, post_account, Proc};
use admit_store::{accounts, Db};
use serde_json::{json, Value};
use std::path::Path;

fn serve(data: &Path) -> anyhow::Result<Proc> {
    let dir = data.to_str().unwrap_or_default();
    Proc::start(
        "admit",
        &["serve", "--port", "0", "--data-dir", dir],
        &[],
        data,
    )
}

async fn account_count(data: &Path) -> anyhow::Result<i64> {
    let db = Db::connect(&format!("sqlite://{}", data.join("admit.db").display()), 1)?;
    Ok(db.run(accounts::count).await?)
}

async fn inbox(base: &str) -> anyhow::Result<Vec<Value>> {
    for _ in 0..100 {
        let list: Vec<Value> = http()
            .get(format!("{base}/dev/inbox.json"))
            .send()
            .await?
            .json()
            .await?;
        if !list.is_empty() {
            return Ok(list);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(Vec::new())
}

#[tokio::test]
async fn sign_up_read_the_email_and_survive_a_restart() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = serve(data.path())?;
    let body = json!({"contacts":[["EMAIL","Doc@Example.com",true]],"full_name":"Doc Test","locale":"eng-US","password":"doctest1","username":"doctest"});
    let (status, created) = post_account(&http(), &server.url, &body).await?;
    assert_eq!(status, 201, "{created}");
    assert!(created["account_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(created["creation_time"]
        .as_str()
        .is_some_and(|s| s.ends_with('Z')));
    assert!(created.get("session_id").is_none());

    let mails = inbox(&server.url).await?;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["to"], "Doc@Example.com");
    assert_eq!(mails[0]["subject"], "Welcome to admit");
    let text = mails[0]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("doctest") && !text.contains("doctest1"),
        "no password in email: {text}"
    );
    assert!(
        text.contains(&format!("{}/", server.url)),
        "portal link: {text}"
    );
    let html = mails[0]["html"]
        .as_str()
        .unwrap_or_default()
        .replace("&#x2f;", "/");
    assert!(
        html.contains(&format!("href=\"{}/\"", server.url)),
        "{html}"
    );
    let page = http()
        .get(format!("{}/dev/inbox", server.url))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("Welcome to admit") && page.contains("Doc@Example.com"));

    assert!(
        !server.log_text().contains("doctest1"),
        "no password in the logs"
    );
    let db = Db::connect(
        &format!("sqlite://{}", data.path().join("admit.db").display()),
        1,
    )?;
    let id = created["account_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let row = db.run(move |c| accounts::find(c, &id)).await?;
    let phc = row.password_hash.unwrap_or_default();
    assert!(
        phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "stored as an Argon2id PHC string: {phc}"
    );
    drop(db);

    server.terminate()?;
    let server = serve(data.path())?;
    assert_eq!(
        account_count(data.path()).await?,
        1,
        "the account survived the restart"
    );
    let again = json!({"contacts":[["EMAIL","doc@EXAMPLE.COM",true]],"password":"doctest1"});
    let (status, err) = post_account(&http(), &server.url, &again).await?;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "ContactAlreadyUsedException");
    assert_eq!(err["field"], "contacts[0][1]");
    let (status, err) = post_account(
        &http(),
        &server.url,
        &json!({"username":"DOCTEST","password":"doctest1"}),
    )
    .await?;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("UsernameAlreadyUsedException"))
    );
    assert_eq!(
        inbox(&server.url).await?.len(),
        1,
        "a refused sign-up sends nothing"
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = serve(data.path())?;
    let client = http();
    let cases = admit_e2e::bad_sign_ups();
    for (what, body, field) in cases {
        let (status, err) = post_account(&client, &server.url, &body).await?;
        assert_eq!(status, 400, "{what}: {err}");
        assert_eq!(err["error"], "InvalidArgumentException", "{what}");
        assert_eq!(err["field"], field, "{what}: {err}");
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}"
        );
    }

    let raw = |bytes: Vec<u8>| {
        client
            .post(format!("{}/account", server.url))
            .header("content-type", "application/json")
            .body(bytes)
            .send()
    };
    let res = raw(b"{\"contacts\": [[\"EMAIL\", \"doc@example.com\"".to_vec()).await?;
    assert_eq!(res.status(), 400, "malformed JSON");
    let err: Value = res.json().await?;
    assert_eq!(
        (err["error"].as_str(), err["field"].as_str()),
        (Some("InvalidArgumentException"), Some("body"))
    );
    let res = raw(b"{\"username\":\"doc\xff\xfe\",\"password\":\"doctest1\"}".to_vec()).await?;
    assert_eq!(res.status(), 400, "invalid UTF-8");
    let mut big = b"{\"full_name\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
    big.extend(b"\",\"username\":\"doctest\",\"password\":\"doctest1\"}");
    let res = raw(big).await?;
    assert!(
        matches!(res.status().as_u16(), 400 | 413),
        "2 MB body: {}",
        res.status()
    );
    let err: Value = res.json().await?;
    assert_eq!(err["error"], "InvalidArgumentException");

    assert_eq!(
        account_count(data.path()).await?,
        0,
        "bad input wrote nothing"
    );
    let mails: Vec<Value> = client
        .get(format!("{}/dev/inbox.json", server.url))
        .send()
        .await?
        .json()
        .await?;
    assert!(mails.is_empty(), "bad input sent nothing");
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_sign_ups_with_one_email_make_one_account() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let server = serve(data.path())?;
    let statuses = concurrent_same_email(&server.url, "racer@example.com", 50).await?;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        49,
        "{statuses:?}"
    );
    assert_eq!(account_count(data.path()).await?, 1);
    Ok(())
}
