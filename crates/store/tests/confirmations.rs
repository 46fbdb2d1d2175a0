//! Confirmations of pending accounts, against SQLite and PostgreSQL alike.

use admit_store::accounts::{self, AccountRow, ContactRow};
use admit_store::confirmations::{self, CodeCheck, ConfirmationRow, ACTIVE, PENDING};
use admit_store::testing::TestDatabase;
use chrono::Duration;

fn pending_account(id: &str) -> AccountRow {
    AccountRow {
        id: id.into(),
        username: None,
        username_normalized: None,
        full_name: None,
        locale: None,
        password_hash: Some("$argon2id$stub".into()),
        account_type: "standard".into(),
        status: PENDING.into(),
        created_at: admit_store::now(),
        expires_at: None,
    }
}

fn contact(account_id: &str, kind: &str, value: &str) -> ContactRow {
    ContactRow {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account_id.into(),
        kind: kind.into(),
        value: value.into(),
        value_normalized: value.to_ascii_lowercase(),
        is_primary: true,
        verified_at: None,
        created_at: admit_store::now(),
    }
}

fn row(id: &str, account_id: &str, kind: &str, contact: &str, digest: &str) -> ConfirmationRow {
    let now = admit_store::now();
    ConfirmationRow {
        id: id.into(),
        account_id: account_id.into(),
        kind: kind.into(),
        contact: contact.into(),
        digest: digest.into(),
        attempts: 0,
        created_at: now,
        expires_at: now + Duration::minutes(15),
        used_at: None,
    }
}

fn status_and_verified(
    c: &mut admit_store::AnyConnection,
    id: &str,
) -> Result<(String, Option<bool>), admit_store::StoreError> {
    let a = accounts::find(c, id)?;
    Ok((a.status, accounts::primary_email(c, id)?.map(|(_, v)| v)))
}

#[tokio::test]
async fn an_email_link_is_single_use_and_confirms_the_address_and_the_account() -> anyhow::Result<()>
{
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| {
            accounts::insert(
                c,
                &pending_account("p1"),
                &[contact("p1", "EMAIL", "p1@example.com")],
            )?;
            confirmations::insert(
                c,
                &[row("m1", "p1", "EMAIL", "p1@example.com", "d1")],
                admit_store::now(),
            )
        })
        .await?;
        let now = admit_store::now();
        assert!(db
            .run(move |c| confirmations::live_link(c, "d1", now))
            .await?
            .is_some());
        assert!(db
            .run(move |c| confirmations::live_link(c, "nope", now))
            .await?
            .is_none());
        // Expired: not live.
        let later = now + Duration::minutes(16);
        assert!(db
            .run(move |c| confirmations::live_link(c, "d1", later))
            .await?
            .is_none());
        let before = db.run(|c| status_and_verified(c, "p1")).await?;
        assert_eq!(before, (PENDING.to_owned(), Some(false)), "{backend}");
        let spent = db
            .write(|c| confirmations::spend_link(c, "d1", admit_store::now()))
            .await?;
        assert_eq!(
            spent.map(|r| r.account_id).as_deref(),
            Some("p1"),
            "{backend}"
        );
        let after = db.run(|c| status_and_verified(c, "p1")).await?;
        assert_eq!(after, (ACTIVE.to_owned(), Some(true)), "{backend}");
        // Single use.
        let again = db
            .write(|c| confirmations::spend_link(c, "d1", admit_store::now()))
            .await?;
        assert!(again.is_none(), "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn a_code_locks_after_its_attempts_and_a_new_code_replaces_it() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let phone = "+33612345678";
        db.write(move |c| {
            accounts::insert(c, &pending_account("p2"), &[contact("p2", "PHONE", phone)])?;
            confirmations::insert(
                c,
                &[row("c1", "p2", "PHONE", phone, "dc1")],
                admit_store::now(),
            )
        })
        .await?;
        assert_eq!(
            db.run(move |c| confirmations::pending_phone(c, phone))
                .await?
                .map(|a| a.id)
                .as_deref(),
            Some("p2"),
            "{backend}"
        );
        let try_code = |db: admit_store::Db, good: bool| async move {
            db.write(move |c| confirmations::try_code(c, phone, admit_store::now(), 5, |_| good))
                .await
        };
        for left in (1..5).rev() {
            assert_eq!(
                try_code(db.clone(), false).await?,
                CodeCheck::Wrong {
                    attempts_left: left
                },
                "{backend}"
            );
        }
        assert_eq!(
            try_code(db.clone(), false).await?,
            CodeCheck::Wrong { attempts_left: 0 }
        );
        // Locked, even for the right code; the account is still pending, not locked.
        assert_eq!(
            try_code(db.clone(), true).await?,
            CodeCheck::Locked,
            "{backend}"
        );
        assert_eq!(db.run(|c| accounts::find(c, "p2")).await?.status, PENDING);
        // A new code replaces the old one, and works.
        db.write(move |c| {
            confirmations::insert(
                c,
                &[row("c2", "p2", "PHONE", phone, "dc2")],
                admit_store::now(),
            )
        })
        .await?;
        let rows = db.run(|c| confirmations::of_account(c, "p2")).await?;
        let old = rows.iter().find(|r| r.id == "c1").expect("old code");
        assert!(old.used_at.is_some(), "{backend}: the old code is retired");
        let ok = db
            .write(move |c| {
                confirmations::try_code(c, phone, admit_store::now(), 5, |r| r.digest == "dc2")
            })
            .await?;
        assert_eq!(ok, CodeCheck::Confirmed("p2".into()), "{backend}");
        assert_eq!(db.run(|c| accounts::find(c, "p2")).await?.status, ACTIVE);
        // Used: gone, and the phone no longer waits for a code.
        assert_eq!(
            try_code(db.clone(), true).await?,
            CodeCheck::Gone,
            "{backend}"
        );
        assert!(db
            .run(move |c| confirmations::pending_phone(c, phone))
            .await?
            .is_none());
        // An expired code is gone too.
        db.write(move |c| {
            let mut r = row("c3", "p2", "PHONE", phone, "dc3");
            r.expires_at = admit_store::now() - Duration::seconds(1);
            confirmations::insert(c, &[r], admit_store::now())
        })
        .await?;
        assert_eq!(
            try_code(db.clone(), true).await?,
            CodeCheck::Gone,
            "{backend}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn confirmations_of_expired_test_accounts_are_purged() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        db.write(|c| {
            let mut a = pending_account("t1");
            a.account_type = "test".into();
            a.expires_at = Some(admit_store::now() - Duration::hours(1));
            accounts::insert(c, &a, &[contact("t1", "EMAIL", "t1@example.com")])?;
            confirmations::insert(
                c,
                &[row("m9", "t1", "EMAIL", "t1@example.com", "d9")],
                admit_store::now(),
            )
        })
        .await?;
        let purged = db
            .write(|c| admit_store::purge::expired_test_accounts(c, admit_store::now()))
            .await?
            .expect("unlocked");
        assert_eq!(purged.accounts, 1, "{backend}");
        assert!(
            purged.rows.contains(&("confirmations", 1)),
            "{backend}: {purged:?}"
        );
        assert!(db
            .run(|c| confirmations::of_account(c, "t1"))
            .await?
            .is_empty());
    }
    Ok(())
}
