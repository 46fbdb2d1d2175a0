//! The store's contract, run against SQLite and PostgreSQL alike.

use admit_domain::{Envelope, Notification};
use admit_store::accounts::{self, AccountRow, ContactRow};
use admit_store::identities::{self, IdentityRow};
use admit_store::mail::{self, Claim, MailStatus, Wanted};
use admit_store::testing::TestDatabase;
use admit_store::{outbox, Conflict, StoreError};
use anyhow::Context;
use chrono::Duration;

fn account(id: &str, username: Option<&str>) -> AccountRow {
    AccountRow {
        id: id.into(),
        username: username.map(str::to_owned),
        username_normalized: username.map(str::to_ascii_lowercase),
        full_name: None,
        locale: None,
        password_hash: Some("$argon2id$stub".into()),
        account_type: "standard".into(),
        status: "active".into(),
        created_at: admit_store::now(),
        expires_at: None,
    }
}

fn email(account_id: &str, value: &str) -> ContactRow {
    ContactRow {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account_id.into(),
        kind: "EMAIL".into(),
        value: value.into(),
        value_normalized: value.to_ascii_lowercase(),
        is_primary: true,
        verified_at: None,
        created_at: admit_store::now(),
    }
}

fn welcome(to: &str) -> Envelope {
    Envelope::new(Notification::Welcome {
        to: to.into(),
        account_id: "a".into(),
        full_name: None,
        username: None,
        language: "en".into(),
    })
}

#[tokio::test]
async fn unique_contacts_and_usernames_on_every_backend() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| {
            accounts::insert(
                c,
                &account("a1", Some("DocTest")),
                &[email("a1", "Doc@Example.com")],
            )
        })
        .await?;
        let same_email = db
            .write(|c| accounts::insert(c, &account("a2", None), &[email("a2", "doc@EXAMPLE.com")]))
            .await;
        assert!(
            matches!(same_email, Err(StoreError::Conflict(Conflict::Contact))),
            "{backend}: {same_email:?}"
        );
        let same_name = db
            .write(|c| {
                accounts::insert(
                    c,
                    &account("a3", Some("doctest")),
                    &[email("a3", "other@example.com")],
                )
            })
            .await;
        assert!(
            matches!(same_name, Err(StoreError::Conflict(Conflict::Username))),
            "{backend}: {same_name:?}"
        );
        // The refused inserts left nothing behind: all or nothing.
        assert_eq!(db.run(accounts::count).await?, 1, "{backend}");
        let owner = db
            .run(|c| accounts::find_by_contact(c, "EMAIL", "doc@example.com"))
            .await?;
        assert_eq!(owner.as_deref(), Some("a1"), "{backend}");
        assert!(
            db.run(|c| accounts::username_taken(c, "doctest")).await?,
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_rolled_back_change_leaves_no_outbox_row() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let r = db
            .write(|c| {
                outbox::enqueue(c, outbox::MAIL_TOPIC, &welcome("x@example.com"))?;
                Err::<(), _>(StoreError::Internal("the change failed".into()))
            })
            .await;
        assert!(r.is_err());
        assert_eq!(
            db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
                .await?,
            0,
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn outbox_leases_are_exclusive_and_expire() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        for i in 0..3 {
            let e = welcome(&format!("u{i}@example.com"));
            db.write(move |c| outbox::enqueue(c, outbox::MAIL_TOPIC, &e))
                .await?;
        }
        let now = admit_store::now();
        let first = db
            .write(move |c| {
                outbox::lease(c, outbox::MAIL_TOPIC, 2, now, now + Duration::seconds(30))
            })
            .await?;
        assert_eq!(first.len(), 2, "{backend}");
        let second = db
            .write(move |c| {
                outbox::lease(c, outbox::MAIL_TOPIC, 10, now, now + Duration::seconds(30))
            })
            .await?;
        assert_eq!(
            second.len(),
            1,
            "{backend}: a leased row is not handed out twice"
        );
        assert_ne!(second[0].seq, first[0].seq);
        // After the leases run out, unpublished rows come back, with a delivery count.
        let later = now + Duration::seconds(31);
        let seqs = vec![first[0].seq];
        db.write(move |c| outbox::mark_published(c, &seqs, later))
            .await?;
        let again = db
            .write(move |c| {
                outbox::lease(
                    c,
                    outbox::MAIL_TOPIC,
                    10,
                    later,
                    later + Duration::seconds(30),
                )
            })
            .await?;
        assert_eq!(again.len(), 2, "{backend}");
        assert!(again.iter().all(|r| r.deliveries == 2), "{backend}");
        assert_eq!(
            db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
                .await?,
            2
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_message_is_claimed_by_one_sender_and_sent_once() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let now = admit_store::now();
        let lease = now + Duration::seconds(60);
        let claim = |at, until| {
            let db = db.clone();
            async move {
                db.write(move |c| mail::claim(c, "m1", "welcome", "x@example.com", at, until))
                    .await
            }
        };
        assert!(
            matches!(claim(now, lease).await?, Claim::Mine(_)),
            "{backend}"
        );
        assert!(
            matches!(claim(now, lease).await?, Claim::Busy),
            "{backend}: held by the first sender"
        );
        // The first sender died: its lease runs out and the message is available again.
        let later = now + Duration::seconds(61);
        assert!(
            matches!(
                claim(later, later + Duration::seconds(60)).await?,
                Claim::Mine(_)
            ),
            "{backend}"
        );
        db.write(move |c| mail::mark_sent(c, "m1", later)).await?;
        assert!(
            matches!(claim(later, later).await?, Claim::Done),
            "{backend}: sent is final"
        );
        assert_eq!(
            db.run(|c| mail::count_by_status(c, MailStatus::Sent))
                .await?,
            1
        );

        // A failure schedules a retry; before it is due the message is not taken.
        db.write(move |c| mail::claim(c, "m2", "welcome", "y@example.com", now, lease).map(|_| ()))
            .await?;
        let retry_at = now + Duration::seconds(10);
        let attempts = db
            .write(move |c| mail::mark_failed(c, "m2", "421 busy", Some(retry_at), now))
            .await?;
        assert_eq!(attempts, 1);
        let early = db
            .write(move |c| mail::claim(c, "m2", "welcome", "y@example.com", now, lease))
            .await?;
        assert!(matches!(early, Claim::Busy), "{backend}");
        let due = db
            .write(move |c| mail::claim(c, "m2", "welcome", "y@example.com", retry_at, lease))
            .await?;
        assert!(
            matches!(due, Claim::Mine(ref r) if r.attempts == 1),
            "{backend}: {due:?}"
        );
        db.write(move |c| mail::mark_failed(c, "m2", "550 no such user", None, now).map(|_| ()))
            .await?;
        assert_eq!(
            db.run(|c| mail::count_by_status(c, MailStatus::Dead))
                .await?,
            1
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_batch_is_claimed_in_order_new_known_repeated_and_sent_alike() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let now = admit_store::now();
        let lease = now + Duration::seconds(60);
        let wanted = |ids: &[&str]| -> Vec<Wanted> {
            ids.iter()
                .map(|id| Wanted {
                    id: (*id).to_owned(),
                    kind: "welcome".into(),
                    recipient: format!("{id}@example.com"),
                })
                .collect()
        };
        // "sent" was sent before; "held" is leased to another sender.
        db.write(move |c| mail::claim(c, "sent", "welcome", "s@example.com", now, lease))
            .await?;
        db.write(move |c| mail::mark_sent(c, "sent", now)).await?;
        db.write(move |c| mail::claim(c, "held", "welcome", "h@example.com", now, lease))
            .await?;

        let batch = wanted(&["a", "sent", "b", "held", "a", "c"]);
        let claims = db
            .write(move |c| mail::claim_many(c, &batch, now, lease))
            .await?;
        let shape: Vec<&str> = claims
            .iter()
            .map(|c| match c {
                Claim::Mine(r) if r.attempts == 0 && r.status == "processing" => "mine",
                Claim::Mine(_) => "mine?",
                Claim::Done => "done",
                Claim::Busy => "busy",
            })
            .collect();
        assert_eq!(
            shape,
            ["mine", "done", "mine", "busy", "busy", "mine"],
            "{backend}"
        );
        // The new ones are recorded as taken: a second sender gets none of them.
        let again = wanted(&["a", "b", "c"]);
        let second = db
            .write(move |c| mail::claim_many(c, &again, now, lease))
            .await?;
        assert!(
            second.iter().all(|c| matches!(c, Claim::Busy)),
            "{backend}: {second:?}"
        );
        let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        db.write(move |c| mail::mark_sent_many(c, &ids, now))
            .await?;
        // A late failure from a sender whose lease ran out leaves it sent.
        db.write(move |c| mail::mark_failed(c, "a", "connection reset", None, now))
            .await?;
        assert_eq!(
            db.run(|c| mail::count_by_status(c, MailStatus::Sent))
                .await?,
            4,
            "{backend}"
        );
        let later = now + Duration::seconds(120);
        let after = wanted(&["a", "b", "c", "held"]);
        let claims = db
            .write(move |c| mail::claim_many(c, &after, later, later + Duration::seconds(60)))
            .await?;
        // Sent is final; the lease of "held" ran out.
        assert!(
            matches!(
                claims.as_slice(),
                [Claim::Done, Claim::Done, Claim::Done, Claim::Mine(_)]
            ),
            "{backend}: {claims:?}"
        );
    }
    Ok(())
}

/// The recorder's group commit, outside a transaction as the mailer runs it on
/// PostgreSQL (one statement) and inside one on SQLite: sent, failed with a retry, dead;
/// a message named sent and failed in one group is sent; a late failure never undoes a
/// success.
#[tokio::test]
async fn a_group_of_outcomes_is_recorded_at_once() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let now = admit_store::now();
        let lease = now + Duration::seconds(60);
        let batch: Vec<Wanted> = ["s", "f", "d", "both", "late"]
            .iter()
            .map(|id| Wanted {
                id: (*id).to_owned(),
                kind: "welcome".into(),
                recipient: format!("{id}@example.com"),
            })
            .collect();
        db.write(move |c| mail::claim_many(c, &batch, now, lease))
            .await?;
        db.write(move |c| mail::mark_sent(c, "late", now)).await?;
        let retry_at = now + Duration::seconds(10);
        let failed = |id: &str, next| mail::Failed {
            id: id.into(),
            error: "421 busy".into(),
            next_attempt_at: next,
        };
        let sent: Vec<String> = ["s", "both"].map(String::from).to_vec();
        let failures = vec![
            failed("f", Some(retry_at)),
            failed("d", None),
            failed("both", None),
            failed("late", None),
        ];
        let record = move |c: &mut admit_store::AnyConnection| {
            mail::record_outcomes(c, &sent, &failures, now)
        };
        match db.backend() {
            admit_store::Backend::Postgres => db.run(record).await?,
            admit_store::Backend::Sqlite => db.write(record).await?,
        }
        let row = |id: &'static str| {
            let db = db.clone();
            async move { db.run(move |c| mail::find(c, id)).await }
        };
        for (id, status, attempts) in [
            ("s", MailStatus::Sent, 1),
            ("both", MailStatus::Sent, 1),
            ("f", MailStatus::Failed, 1),
            ("d", MailStatus::Dead, 1),
            ("late", MailStatus::Sent, 1),
        ] {
            let r = row(id).await?.expect("recorded");
            assert_eq!(r.status(), status, "{backend}: {id}");
            assert_eq!(r.attempts, attempts, "{backend}: {id}");
        }
        let f = row("f").await?.expect("recorded");
        assert_eq!(f.next_attempt_at, Some(retry_at), "{backend}");
        assert_eq!(f.last_error.as_deref(), Some("421 busy"), "{backend}");
        assert!(row("s").await?.expect("recorded").sent_at.is_some());
        // The retry is taken when due, not before.
        let again = vec![Wanted {
            id: "f".into(),
            kind: "welcome".into(),
            recipient: "f@example.com".into(),
        }];
        let early = again.clone();
        let claims = db
            .write(move |c| mail::claim_many(c, &early, now, lease))
            .await?;
        assert!(matches!(claims[..], [Claim::Busy]), "{backend}: {claims:?}");
        let claims = db
            .write(move |c| mail::claim_many(c, &again, retry_at, retry_at + Duration::seconds(60)))
            .await?;
        assert!(
            matches!(claims[..], [Claim::Mine(ref r)] if r.attempts == 1),
            "{backend}: {claims:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn expired_test_accounts_are_purged_with_their_contacts() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let now = admit_store::now();
        let mut test = account("t1", None);
        test.account_type = "test".into();
        test.expires_at = Some(now - Duration::minutes(1));
        let mut fresh = account("t2", None);
        fresh.account_type = "test".into();
        fresh.expires_at = Some(now + Duration::hours(24));
        db.write(move |c| {
            accounts::insert(c, &test, &[email("t1", "t1@example.com")])?;
            accounts::insert(c, &fresh, &[email("t2", "t2@example.com")])?;
            accounts::insert(c, &account("s1", None), &[email("s1", "s1@example.com")])
        })
        .await?;
        let purged = db
            .write(move |c| admit_store::purge::expired_test_accounts(c, now))
            .await?
            .expect("no other pass holds the lock");
        assert_eq!(purged.accounts, 1, "{backend}");
        assert!(
            purged.rows.contains(&("contacts", 1)),
            "{backend}: {purged:?}"
        );
        assert_eq!(db.run(accounts::count).await?, 2, "{backend}");
        // Idempotent: the next pass finds nothing.
        let again = db
            .write(move |c| admit_store::purge::expired_test_accounts(c, now))
            .await?
            .expect("unlocked");
        assert_eq!(again.total_rows(), 0, "{backend}");
        assert!(db
            .run(|c| accounts::find_by_contact(c, "EMAIL", "t1@example.com"))
            .await?
            .is_none());
    }
    Ok(())
}

/// The relay leases a batch with one statement on PostgreSQL: consumers leasing at
/// the same moment (replicas of the relay) still get disjoint rows, oldest first,
/// and together all of them.
#[tokio::test]
async fn concurrent_outbox_leases_hand_each_row_out_once() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let n = 2_000;
        let mails: Vec<Envelope> = (0..n)
            .map(|i| welcome(&format!("l{i}@example.com")))
            .collect();
        db.write(move |c| outbox::enqueue_many(c, outbox::MAIL_TOPIC, &mails))
            .await?;
        let now = admit_store::now();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let rows = db
                        .write(move |c| {
                            outbox::lease(
                                c,
                                outbox::MAIL_TOPIC,
                                150,
                                now,
                                now + Duration::seconds(30),
                            )
                        })
                        .await?;
                    if rows.is_empty() {
                        return Ok::<_, StoreError>(mine);
                    }
                    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
                    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first");
                    assert!(rows
                        .iter()
                        .all(|r| r.deliveries == 1 && r.lease_until.is_some()));
                    mine.extend(seqs);
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let leased = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), leased, "{backend}: a row was leased twice");
        assert_eq!(leased, n, "{backend}: every row leased");
        // Leased rows are not handed out again before their lease runs out.
        let again = db
            .write(move |c| {
                outbox::lease(c, outbox::MAIL_TOPIC, 10, now, now + Duration::seconds(30))
            })
            .await?;
        assert!(again.is_empty(), "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn batch_inserts_are_all_or_nothing_on_every_backend() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        // 2,500 accounts: more than one multi-row chunk.
        let n = 2_500;
        let rows: Vec<AccountRow> = (0..n).map(|i| account(&format!("b{i}"), None)).collect();
        let contacts: Vec<ContactRow> = (0..n)
            .map(|i| email(&format!("b{i}"), &format!("b{i}@example.com")))
            .collect();
        let mails: Vec<Envelope> = (0..n)
            .map(|i| welcome(&format!("b{i}@example.com")))
            .collect();
        db.write(move |c| {
            accounts::insert_many(c, &rows, &contacts)?;
            outbox::enqueue_many(c, outbox::MAIL_TOPIC, &mails)
        })
        .await?;
        assert_eq!(db.run(accounts::count).await?, n as i64, "{backend}");
        assert_eq!(
            db.run(|c| outbox::count_unpublished(c, outbox::MAIL_TOPIC))
                .await?,
            n as i64,
            "{backend}"
        );
        // A batch whose last row takes a used address writes none of its rows.
        let mut rows: Vec<AccountRow> = (0..1_500)
            .map(|i| account(&format!("c{i}"), None))
            .collect();
        let mut contacts: Vec<ContactRow> = (0..1_500)
            .map(|i| email(&format!("c{i}"), &format!("c{i}@example.com")))
            .collect();
        rows.push(account("c-last", None));
        contacts.push(email("c-last", "B7@example.com"));
        let refused = db
            .write(move |c| accounts::insert_many(c, &rows, &contacts))
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(Conflict::Contact))),
            "{backend}: {refused:?}"
        );
        assert_eq!(db.run(accounts::count).await?, n as i64, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn set_password_links_are_single_use_expiring_and_replaced_by_newer_ones(
) -> anyhow::Result<()> {
    use admit_store::registrations::{self, PasswordTokenRow};
    const SET: &str = registrations::purpose::SET_PASSWORD;
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| accounts::insert(c, &account("p1", None), &[email("p1", "p1@example.com")]))
            .await?;
        let now = admit_store::now();
        let link = |digest: &str, ttl: i64| PasswordTokenRow {
            token_digest: digest.into(),
            account_id: "p1".into(),
            partner_id: None,
            grant_id: None,
            created_at: now,
            expires_at: now + Duration::seconds(ttl),
            used_at: None,
            sent_to: Some("p1@example.com".into()),
            purpose: registrations::purpose::SET_PASSWORD.into(),
        };
        let (old, new, expired) = (link("old", 3600), link("new", 3600), link("gone", -1));
        db.write(move |c| registrations::insert_password_tokens(c, &[old], now))
            .await?;
        db.write(move |c| registrations::insert_password_tokens(c, &[new], now))
            .await?;
        // The newer link replaced the older one.
        let at = admit_store::now();
        assert!(db
            .run(move |c| registrations::live_password_token(c, "old", SET, at))
            .await?
            .is_none());
        assert!(db
            .run(move |c| registrations::live_password_token(c, "new", SET, at))
            .await?
            .is_some());
        // Used once, then never again.
        let first = db
            .write(move |c| registrations::spend_password_token(c, "new", SET, at))
            .await?;
        let first = first.context("the link works once")?;
        assert_eq!(first.account_id, "p1", "{backend}");
        // Whoever used it reads the mailbox it was sent to.
        let confirmed =
            |db: admit_store::Db| async move { db.run(|c| accounts::primary_email(c, "p1")).await };
        assert_eq!(
            confirmed(db.clone()).await?,
            Some(("p1@example.com".to_owned(), false))
        );
        let address = first.sent_to.clone().context("sent_to")?;
        db.write(move |c| registrations::confirm_email(c, "p1", &address, at))
            .await?;
        assert_eq!(
            confirmed(db.clone()).await?,
            Some(("p1@example.com".to_owned(), true)),
            "{backend}"
        );
        let second = db
            .write(move |c| registrations::spend_password_token(c, "new", SET, at))
            .await?;
        assert!(second.is_none(), "{backend}");
        db.write(move |c| registrations::insert_password_tokens(c, &[expired], at))
            .await?;
        assert!(db
            .write(move |c| registrations::spend_password_token(c, "gone", SET, at))
            .await?
            .is_none());
    }
    Ok(())
}

fn identity(account_id: &str, provider: &str, subject: &str) -> IdentityRow {
    IdentityRow {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account_id.into(),
        provider: provider.into(),
        subject: subject.into(),
        created_at: admit_store::now(),
    }
}

#[tokio::test]
async fn one_account_per_social_identity_on_every_backend() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| {
            identities::insert_account(
                c,
                &account("s1", None),
                &[email("s1", "sam@example.com")],
                &identity("s1", "acme", "sub-1"),
            )
        })
        .await?;
        // The same provider and subject again: refused, and nothing of it is kept.
        let again = db
            .write(|c| {
                identities::insert_account(
                    c,
                    &account("s2", None),
                    &[email("s2", "other@example.com")],
                    &identity("s2", "acme", "sub-1"),
                )
            })
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict(Conflict::Identity))),
            "{backend}: {again:?}"
        );
        // A new identity whose address another account has: refused on the contact,
        // and the identity row is rolled back with the rest.
        let taken_email = db
            .write(|c| {
                identities::insert_account(
                    c,
                    &account("s3", None),
                    &[email("s3", "SAM@example.com")],
                    &identity("s3", "acme", "sub-3"),
                )
            })
            .await;
        assert!(
            matches!(taken_email, Err(StoreError::Conflict(Conflict::Contact))),
            "{backend}: {taken_email:?}"
        );
        assert_eq!(db.run(accounts::count).await?, 1, "{backend}");
        assert_eq!(
            db.run(|c| identities::find_account(c, "acme", "sub-3"))
                .await?,
            None,
            "{backend}"
        );
        // The same subject at another provider is another identity; no contact at all
        // is fine too.
        db.write(|c| {
            identities::insert_account(
                c,
                &account("s4", None),
                &[],
                &identity("s4", "facebook", "sub-1"),
            )
        })
        .await?;
        assert_eq!(
            db.run(|c| identities::find_account(c, "acme", "sub-1"))
                .await?
                .as_deref(),
            Some("s1"),
            "{backend}"
        );
        assert_eq!(
            db.run(|c| identities::find_account(c, "facebook", "sub-1"))
                .await?
                .as_deref(),
            Some("s4"),
            "{backend}"
        );
        let linked = db.run(|c| identities::for_account(c, "s1")).await?;
        assert_eq!(linked.len(), 1, "{backend}");
        assert_eq!(
            (linked[0].provider.as_str(), linked[0].subject.as_str()),
            ("acme", "sub-1")
        );

        // Concurrent sign-ups with one identity: exactly one account.
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let id = format!("race{i}");
                    db.write(move |c| {
                        identities::insert_account(
                            c,
                            &account(&id, None),
                            &[],
                            &identity(&id, "acme", "racer"),
                        )
                    })
                    .await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await? {
                Ok(()) => won += 1,
                Err(StoreError::Conflict(Conflict::Identity)) => {}
                // PostgreSQL may report a loser of the race as a serialization
                // failure; SQLite as busy: both are retryable, nothing written.
                Err(StoreError::Unavailable(_)) => {}
                Err(e) => anyhow::bail!("{backend}: {e}"),
            }
        }
        assert_eq!(won, 1, "{backend}");
        assert_eq!(db.run(accounts::count).await?, 3, "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn expired_test_accounts_are_purged_with_their_identities() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let now = admit_store::now();
        let mut test = account("t1", None);
        test.account_type = "test".into();
        test.expires_at = Some(now - Duration::minutes(1));
        db.write(move |c| {
            identities::insert_account(c, &test, &[], &identity("t1", "acme", "tester"))?;
            identities::insert_account(
                c,
                &account("k1", None),
                &[],
                &identity("k1", "acme", "keeper"),
            )
        })
        .await?;
        let purged = db
            .write(move |c| admit_store::purge::expired_test_accounts(c, now))
            .await?
            .expect("unlocked");
        assert_eq!(purged.accounts, 1, "{backend}");
        assert!(
            purged.rows.contains(&("identities", 1)),
            "{backend}: {purged:?}"
        );
        assert!(db
            .run(|c| identities::for_account(c, "t1"))
            .await?
            .is_empty());
        assert_eq!(
            db.run(|c| identities::find_account(c, "acme", "tester"))
                .await?,
            None,
            "{backend}"
        );
        assert_eq!(
            db.run(|c| identities::find_account(c, "acme", "keeper"))
                .await?
                .as_deref(),
            Some("k1"),
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_link_works_only_for_its_purpose_and_a_new_password_retires_every_link(
) -> anyhow::Result<()> {
    use admit_store::registrations::{self, purpose, PasswordTokenRow};
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| accounts::insert(c, &account("r1", None), &[email("r1", "r1@example.com")]))
            .await?;
        let now = admit_store::now();
        let link = |digest: &str, purpose: &str| PasswordTokenRow {
            token_digest: digest.into(),
            account_id: "r1".into(),
            partner_id: None,
            grant_id: None,
            created_at: now,
            expires_at: now + Duration::seconds(3600),
            used_at: None,
            sent_to: Some("r1@example.com".into()),
            purpose: purpose.into(),
        };
        let rows = [
            link("welcome", purpose::SET_PASSWORD),
            link("reset-1", purpose::RESET),
        ];
        db.write(move |c| registrations::insert_password_tokens(c, &rows, now))
            .await?;
        // A newer reset link retires the older reset link, not the welcome's link.
        let newer = [link("reset-2", purpose::RESET)];
        db.write(move |c| registrations::insert_password_tokens(c, &newer, now))
            .await?;
        let live = |digest: &'static str, p: &'static str| {
            let db = db.clone();
            async move {
                db.run(move |c| {
                    registrations::live_password_token(c, digest, p, admit_store::now())
                })
                .await
                .map(|r| r.is_some())
            }
        };
        assert!(!live("reset-1", purpose::RESET).await?, "{backend}");
        assert!(live("reset-2", purpose::RESET).await?, "{backend}");
        assert!(live("welcome", purpose::SET_PASSWORD).await?, "{backend}");
        // Each link works only for its own purpose.
        assert!(!live("reset-2", purpose::SET_PASSWORD).await?, "{backend}");
        assert!(!live("welcome", purpose::RESET).await?, "{backend}");
        let at = admit_store::now();
        let wrong = db
            .write(move |c| {
                registrations::spend_password_token(c, "reset-2", purpose::SET_PASSWORD, at)
            })
            .await?;
        assert!(wrong.is_none(), "{backend}");
        // A new password retires every unused link of the account.
        let spent = db
            .write(move |c| {
                let row = registrations::spend_password_token(c, "reset-2", purpose::RESET, at)?;
                registrations::retire_password_tokens(c, "r1", at)?;
                Ok(row)
            })
            .await?;
        assert_eq!(spent.map(|r| r.purpose).as_deref(), Some(purpose::RESET));
        assert!(!live("welcome", purpose::SET_PASSWORD).await?, "{backend}");
        assert!(!live("reset-2", purpose::RESET).await?, "{backend}");
    }
    Ok(())
}
