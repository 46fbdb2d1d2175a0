//! The revocation log (migration 000014), on SQLite and PostgreSQL: every kind of
//! revocation introspection must honour is logged by the database itself, in commit
//! order, whoever wrote it: a token revoked, a grant revoked (by the revoke endpoint,
//! a replay, a password change), a grant deleted (the grant purge, the test-account
//! purge). Nothing else is.

use admit_store::accounts::{self, AccountRow, ContactRow};
use admit_store::grants::{self, GrantRow, RefreshRow, Spend};
use admit_store::partners::{self, ClientRow, PartnerRow};
use admit_store::revocations::{self, Revoked};
use admit_store::testing::TestDatabase;
use admit_store::Db;
use chrono::Duration;

fn account(id: &str, test: bool) -> AccountRow {
    let now = admit_store::now();
    AccountRow {
        id: id.into(),
        username: None,
        username_normalized: None,
        full_name: None,
        locale: None,
        password_hash: Some("$argon2id$stub".into()),
        account_type: if test { "test" } else { "standard" }.into(),
        status: "active".into(),
        created_at: now,
        expires_at: test.then(|| now - Duration::minutes(1)),
    }
}

fn email(account_id: &str) -> ContactRow {
    ContactRow {
        id: uuid::Uuid::new_v4().to_string(),
        account_id: account_id.into(),
        kind: "EMAIL".into(),
        value: format!("{account_id}@example.com"),
        value_normalized: format!("{account_id}@example.com"),
        is_primary: true,
        verified_at: None,
        created_at: admit_store::now(),
    }
}

fn grant(id: &str, account_id: &str, expires_in: Duration) -> GrantRow {
    let now = admit_store::now();
    GrantRow {
        id: id.into(),
        client_id: "c1".into(),
        account_id: account_id.into(),
        scope: "openid".into(),
        nonce: None,
        auth_time: now,
        created_at: now,
        expires_at: now + expires_in,
        revoked_at: None,
    }
}

async fn setup(db: &Db) -> anyhow::Result<()> {
    db.write(|c| {
        let now = admit_store::now();
        partners::insert_partner(
            c,
            &PartnerRow {
                id: "p1".into(),
                name: "P".into(),
                landing_url: None,
                created_at: now,
                brand_color: None,
            },
        )?;
        partners::insert_client(
            c,
            &ClientRow {
                id: "c1".into(),
                partner_id: "p1".into(),
                name: "C".into(),
                secret_hash: None,
                is_public: false,
                redirect_uris: "[]".into(),
                grants: "[]".into(),
                scopes: "[]".into(),
                access_ttl_secs: 3600,
                created_at: now,
                revoked_at: None,
            },
        )?;
        accounts::insert(c, &account("u1", false), &[email("u1")])?;
        accounts::insert(c, &account("t1", true), &[email("t1")])?;
        for (id, owner) in [
            ("g-endpoint", "u1"),
            ("g-replay", "u1"),
            ("g-pw-a", "u1"),
            ("g-pw-b", "u1"),
            ("g-test", "t1"),
        ] {
            grants::insert_grant(c, &grant(id, owner, Duration::days(30)))?;
        }
        grants::insert_grant(c, &grant("g-expired", "u1", Duration::seconds(-10)))?;
        grants::insert_refresh(
            c,
            &RefreshRow {
                token_digest: "rt1".into(),
                grant_id: "g-replay".into(),
                created_at: now,
                expires_at: now + Duration::days(1),
                used_at: None,
            },
        )
    })
    .await?;
    Ok(())
}

async fn logged_since(db: &Db, after: i64) -> anyhow::Result<Vec<(i64, Revoked)>> {
    Ok(db
        .run(move |c| revocations::since(c, after, 1000))
        .await?
        .into_iter()
        .map(|e| (e.seq, e.revoked))
        .collect())
}

fn grant_of(id: &str) -> Revoked {
    Revoked::Grant(id.into())
}

#[tokio::test]
async fn every_kind_of_revocation_is_logged_by_the_database() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        setup(&db).await?;
        assert!(logged_since(&db, 0).await?.is_empty(), "{backend}: inserts");
        let mut seen = 0;

        // An access token revoked (idempotent: once in the log).
        let exp = admit_store::now() + Duration::hours(1);
        db.write(move |c| partners::revoke_token(c, "jti-1", exp))
            .await?;
        db.write(move |c| partners::revoke_token(c, "jti-1", exp))
            .await?;
        let got = logged_since(&db, seen).await?;
        assert_eq!(
            got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![Revoked::Token("jti-1".into())],
            "{backend}"
        );
        seen = got.last().map_or(seen, |(s, _)| *s);

        // The revoke endpoint ending a grant; again is a no-op.
        for _ in 0..2 {
            db.write(|c| grants::revoke_grant(c, "g-endpoint", admit_store::now()))
                .await?;
        }
        let got = logged_since(&db, seen).await?;
        assert_eq!(
            got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![grant_of("g-endpoint")],
            "{backend}"
        );
        seen = got.last().map_or(seen, |(s, _)| *s);

        // A refresh token spent, then replayed: the replay ends the grant.
        let first = db
            .write(|c| grants::spend_refresh(c, "rt1", "c1", admit_store::now()))
            .await?;
        assert!(matches!(first, Spend::Won(..)), "{backend}: {first:?}");
        assert!(
            logged_since(&db, seen).await?.is_empty(),
            "{backend}: a spend"
        );
        let replay = db
            .write(|c| grants::spend_refresh(c, "rt1", "c1", admit_store::now()))
            .await?;
        assert!(matches!(replay, Spend::Replayed { .. }), "{backend}");
        let got = logged_since(&db, seen).await?;
        assert_eq!(
            got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![grant_of("g-replay")],
            "{backend}"
        );
        seen = got.last().map_or(seen, |(s, _)| *s);

        // A password change: every other grant of the account.
        let (_, revoked) = db
            .write(|c| grants::after_password_change(c, "u1", Some("g-pw-b"), admit_store::now()))
            .await?;
        assert_eq!(revoked, 2, "{backend}: g-pw-a and g-expired");
        let mut got: Vec<Revoked> = logged_since(&db, seen)
            .await?
            .into_iter()
            .map(|(s, r)| {
                seen = seen.max(s);
                r
            })
            .collect();
        got.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            got,
            vec![grant_of("g-expired"), grant_of("g-pw-a")],
            "{backend}"
        );

        // The grant purge deletes ended grants; the test-account purge deletes the
        // grants of the accounts it deletes.
        let now = admit_store::now();
        db.write(move |c| grants::purge_grants(c, now)).await?;
        let got = logged_since(&db, seen).await?;
        assert_eq!(
            got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![grant_of("g-expired")],
            "{backend}"
        );
        seen = got.last().map_or(seen, |(s, _)| *s);
        let purged = db
            .write(move |c| admit_store::purge::expired_test_accounts(c, now))
            .await?;
        assert_eq!(purged.map(|p| p.accounts), Some(1), "{backend}");
        let got = logged_since(&db, seen).await?;
        assert_eq!(
            got.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(),
            vec![grant_of("g-test")],
            "{backend}"
        );

        // A rolled-back revocation leaves nothing.
        let before = db.run(revocations::last_seq).await?;
        let failed = db
            .write(|c| {
                grants::revoke_grant(c, "g-pw-b", admit_store::now())?;
                Err::<(), _>(admit_store::StoreError::Internal("roll back".into()))
            })
            .await;
        assert!(failed.is_err());
        assert!(logged_since(&db, before).await?.is_empty(), "{backend}");

        // What the tables say is revoked, for a replica's first load.
        let all: Vec<Revoked> = db
            .run(|c| revocations::all(c, admit_store::now()))
            .await?
            .into_iter()
            .map(|e| e.revoked)
            .collect();
        for r in [
            Revoked::Token("jti-1".into()),
            grant_of("g-endpoint"),
            grant_of("g-replay"),
            grant_of("g-pw-a"),
        ] {
            assert!(all.contains(&r), "{backend}: {r:?} in {all:?}");
        }
        assert!(!all.contains(&grant_of("g-pw-b")), "{backend}");
        let state = db.run(|c| revocations::grant_state(c, "g-pw-b")).await?;
        assert!(matches!(state, Some((_, false))), "{backend}");
        let state = db.run(|c| revocations::grant_state(c, "g-test")).await?;
        assert!(state.is_none(), "{backend}: deleted");
    }
    Ok(())
}

fn refresh(digest: &str, grant_id: &str) -> RefreshRow {
    let now = admit_store::now();
    RefreshRow {
        token_digest: digest.into(),
        grant_id: grant_id.into(),
        created_at: now,
        expires_at: now + Duration::days(1),
        used_at: None,
    }
}

fn rotation(digest: &str, client_id: &str, next: &str) -> grants::Rotation {
    grants::Rotation {
        digest: digest.into(),
        client_id: client_id.into(),
        next_digest: next.into(),
    }
}

/// The grouped refresh statement (`grants::rotate_refresh`): in one group, a token
/// named twice is spent by the first rotation, another client's token, a token of a revoked or ended
/// grant and an unknown token are left as they were, and only the winners get a
/// successor. A rotation logs no revocation. SQLite has no grouped statement: every
/// rotation is a miss and nothing changes (the caller takes the transaction).
#[tokio::test]
async fn a_group_of_rotations_has_one_winner_per_token_and_leaves_the_rest_as_they_were(
) -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        setup(&db).await?;
        db.write(|c| {
            grants::insert_refresh(c, &refresh("rt-revoked", "g-endpoint"))?;
            grants::insert_refresh(c, &refresh("rt-ended", "g-expired"))?;
            grants::insert_refresh(c, &refresh("rt-a", "g-pw-a"))?;
            grants::insert_refresh(c, &refresh("rt-b", "g-pw-b"))?;
            grants::revoke_grant(c, "g-endpoint", admit_store::now())
        })
        .await?;
        let seen = logged_since(&db, 0).await?.last().map_or(0, |(s, _)| *s);
        let group = vec![
            rotation("rt1", "c1", "n0"),
            rotation("rt1", "c1", "n1"),
            rotation("rt-b", "c-other", "n2"),
            rotation("rt-revoked", "c1", "n3"),
            rotation("rt-ended", "c1", "n4"),
            rotation("rt-unknown", "c1", "n5"),
            rotation("rt-a", "c-other", "n6"),
            rotation("rt-a", "c1", "n7"),
        ];
        let won = db
            .run(move |c| grants::rotate_refresh(c, group, admit_store::now(), 3600))
            .await?;
        let won: Vec<Option<String>> = won.into_iter().map(|g| g.map(|g| g.id)).collect();
        let successor = |d: &'static str| {
            let db = db.clone();
            async move {
                Ok::<_, anyhow::Error>(
                    db.run(move |c| grants::grant_of_refresh(c, d))
                        .await?
                        .map(|g| g.id),
                )
            }
        };
        if backend == "sqlite" {
            assert_eq!(won, vec![None; 8], "{backend}");
            for n in ["n0", "n1", "n7"] {
                assert_eq!(successor(n).await?, None, "{backend}: {n}");
            }
            continue;
        }
        // rt1 is named twice: the first rotation spends it, the second is a miss.
        assert_eq!(won[0].as_deref(), Some("g-replay"), "{backend}: {won:?}");
        assert_eq!(
            &won[1..7],
            &[None, None, None, None, None, None],
            "{backend}"
        );
        assert_eq!(won[7].as_deref(), Some("g-pw-a"), "{backend}");
        assert_eq!(successor("n0").await?.as_deref(), Some("g-replay"));
        assert_eq!(successor("n7").await?.as_deref(), Some("g-pw-a"));
        for n in ["n2", "n3", "n4", "n5", "n6"] {
            assert_eq!(successor(n).await?, None, "{backend}: no successor {n}");
        }
        // Spent: presenting rt1 again is a replay. Left unspent: rt-b, whose grant is
        // still live, is won by its own client now.
        let again = db
            .write(|c| grants::spend_refresh(c, "rt-b", "c1", admit_store::now()))
            .await?;
        assert!(matches!(again, Spend::Won(..)), "{backend}: {again:?}");
        let replay = db
            .write(|c| grants::spend_refresh(c, "rt1", "c1", admit_store::now()))
            .await?;
        assert!(
            matches!(replay, Spend::Replayed { .. }),
            "{backend}: {replay:?}"
        );
        // Only the replay above logged a revocation.
        let got: Vec<Revoked> = logged_since(&db, seen)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(got, vec![grant_of("g-replay")], "{backend}");
    }
    Ok(())
}
