//! The pages in the languages the emails have (en, fr, de, nl): the browser's
//! `Accept-Language` chooses, the signed-in account's locale wins over it, and error
//! pages are translated too.

use admit_e2e::platform::{hidden_fields, Agent, Platform};
use admit_e2e::{http, unique};
use serde_json::Value;
use std::time::{Duration, Instant};

async fn get(url: &str, accept: &str, cookie: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut req = http().get(url).header("Accept-Language", accept);
    if let Some(c) = cookie {
        req = req.header("Cookie", c);
    }
    let res = req.send().await?;
    Ok((res.status().as_u16(), res.text().await?))
}

#[tokio::test]
async fn pages_speak_the_browsers_language_and_the_accounts_locale_wins() -> anyhow::Result<()> {
    let p = Platform::embedded(&[])?;
    for (accept, lang, sign_in, gone) in [
        (
            "en-GB, en;q=0.9",
            "en",
            "Sign in",
            "This link no longer works",
        ),
        (
            "fr-CH, fr;q=0.9",
            "fr",
            "Se connecter",
            "Ce lien ne fonctionne plus",
        ),
        (
            "es, de;q=0.8",
            "de",
            "Anmelden",
            "Dieser Link funktioniert nicht mehr",
        ),
        ("nl-BE", "nl", "Inloggen", "Deze link werkt niet meer"),
        ("es, fr;q=0", "en", "Sign in", "This link no longer works"),
    ] {
        let (status, login) = get(&format!("{}/login", p.accounts), accept, None).await?;
        assert_eq!(status, 200);
        assert!(
            login.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
        assert!(
            login.contains(&format!("<h1>{sign_in}</h1>")),
            "{accept}: {login}"
        );
        let (status, error) = get(
            &format!("{}/password/reset?token=no-such-token", p.accounts),
            accept,
            None,
        )
        .await?;
        assert_eq!(status, 410);
        assert!(
            error.contains(&format!("<html lang=\"{lang}\">")),
            "{accept}"
        );
        assert!(error.contains(gone), "{accept}: {error}");
    }
    // The authorization server's error page too.
    let (status, page) = get(&format!("{}/oauth/authorize", p.issuer), "de", None).await?;
    assert_eq!(status, 400);
    assert!(
        page.contains("Dieser Anmeldelink funktioniert nicht"),
        "{page}"
    );

    // A French account in a German browser: its pages are French.
    let email = format!("{}@example.com", unique("fr"));
    let res = http()
        .post(format!("{}/account", p.accounts))
        .json(&serde_json::json!({
            "contacts": [["EMAIL", email, true]],
            "password": "horse-battery-9",
            "full_name": "Marie Curie",
            "locale": "fra-FR",
        }))
        .send()
        .await?;
    assert_eq!(res.status(), 201);
    let mut agent = Agent::new()?;
    let signed_in = agent.login(&p.accounts, &email, "horse-battery-9").await?;
    assert_eq!(signed_in.status, 303);
    let cookie = format!(
        "__Host-admit_session={}",
        agent
            .cookie("__Host-admit_session")
            .cloned()
            .unwrap_or_default()
    );
    let (status, home) = get(&format!("{}/", p.accounts), "de-DE, de", Some(&cookie)).await?;
    assert_eq!(status, 200);
    assert!(home.contains("<html lang=\"fr\">"), "{home}");
    assert!(
        home.contains("Vous êtes connecté en tant que Marie Curie."),
        "{home}"
    );
    let (_, forgot) = get(
        &format!("{}/password/forgot", p.accounts),
        "de",
        Some(&cookie),
    )
    .await?;
    assert!(forgot.contains("Mot de passe oublié ?"), "{forgot}");

    // Someone in a German browser, not signed in, asks for a reset of that account: a
    // German answer (nothing about the account shows), a French email.
    let page = http()
        .get(format!("{}/password/forgot", p.accounts))
        .header("Accept-Language", "de")
        .send()
        .await?;
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-admit_csrf="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let mut form = hidden_fields(&page.text().await?);
    form.push(("email".into(), email.clone()));
    let answer = http()
        .post(format!("{}/password/forgot", p.accounts))
        .header("Accept-Language", "de")
        .header("Cookie", csrf_cookie)
        .form(&form)
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let answer = answer.text().await?;
    assert!(answer.contains("Sehen Sie in Ihre E-Mails"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let subject = loop {
        let all: Vec<Value> = http()
            .get(format!("{}/dev/inbox.json", p.accounts))
            .send()
            .await?
            .json()
            .await?;
        let reset = all.into_iter().find(|m| {
            m["to"] == email.as_str()
                && m["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("/password/reset?token="))
        });
        if let Some(m) = reset {
            break m["subject"].as_str().unwrap_or_default().to_owned();
        }
        anyhow::ensure!(Instant::now() < deadline, "no reset email");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(subject, "Réinitialisez votre mot de passe admit");
    Ok(())
}
