//! The audit log's contract on SQLite and PostgreSQL alike: appended and queried,
//! never changed.

use admit_store::audit::{self, AuditFilter, Origin};
use admit_store::testing::TestDatabase;
use admit_store::StoreError;
use chrono::Duration;
use diesel::connection::SimpleConnection;

fn origin(kind: &str, id: &str) -> Origin {
    Origin {
        actor_kind: kind.into(),
        actor_id: id.into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        source: "203.0.113.9".into(),
    }
}

fn all() -> AuditFilter {
    AuditFilter {
        limit: 100,
        ..AuditFilter::default()
    }
}

#[tokio::test]
async fn events_are_queried_newest_first_by_time_actor_action_and_target() -> anyhow::Result<()> {
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let cli = origin("cli", "alice");
        let admin = origin("admin_token", "internal.admin_token");
        let mut old = cli.event("partner.create", "partner", "p_1");
        old.at -= Duration::hours(3);
        let events = vec![
            old,
            cli.event("client.create", "client", "c_1")
                .detail(serde_json::json!({"partner_id": "p_1"})),
            admin.event("client.delete", "client", "c_1"),
            admin.event("clients_x.create", "client", "c_2"),
            origin("anonymous", "")
                .event("login.failure", "account", "a_1")
                .outcome(audit::FAILURE),
            origin("account", "a_1").event("login.success", "account", "a_1"),
        ];
        db.write(move |c| {
            for e in &events {
                audit::insert(c, e)?;
            }
            Ok(())
        })
        .await?;
        let q = |f: AuditFilter| {
            let db = db.clone();
            async move {
                let rows = db.run(move |c| audit::query(c, &f)).await?;
                Ok::<_, StoreError>(rows.into_iter().map(|e| e.action).collect::<Vec<_>>())
            }
        };
        assert_eq!(
            q(all()).await?,
            [
                "login.success",
                "login.failure",
                "clients_x.create",
                "client.delete",
                "client.create",
                "partner.create"
            ],
            "{backend}"
        );
        let since = AuditFilter {
            since: Some(admit_store::now() - Duration::hours(1)),
            ..all()
        };
        assert_eq!(q(since).await?.len(), 5, "{backend}: since");
        let client = AuditFilter {
            action: Some("client".into()),
            ..all()
        };
        assert_eq!(
            q(client).await?,
            ["client.delete", "client.create"],
            "{backend}: action prefix, not clients_x"
        );
        let exact = AuditFilter {
            action: Some("login.failure".into()),
            ..all()
        };
        assert_eq!(q(exact).await?, ["login.failure"], "{backend}");
        let by_alice = AuditFilter {
            actor: Some("cli:alice".into()),
            ..all()
        };
        assert_eq!(
            q(by_alice).await?,
            ["client.create", "partner.create"],
            "{backend}"
        );
        let by_kind = AuditFilter {
            actor: Some("admin_token".into()),
            ..all()
        };
        assert_eq!(q(by_kind).await?.len(), 2, "{backend}");
        let on_c1 = AuditFilter {
            target: Some("client:c_1".into()),
            limit: 1,
            ..all()
        };
        assert_eq!(q(on_c1).await?, ["client.delete"], "{backend}: limit");
        let row = db
            .run(|c| {
                audit::query(
                    c,
                    &AuditFilter {
                        action: Some("client.create".into()),
                        ..all()
                    },
                )
            })
            .await?
            .remove(0);
        let json = row.to_json();
        assert_eq!(json["actor"]["id"], "alice", "{backend}");
        assert_eq!(json["target"]["kind"], "client", "{backend}");
        assert_eq!(json["detail"]["partner_id"], "p_1", "{backend}");
        assert_eq!(json["source"], "203.0.113.9", "{backend}");
        assert_eq!(json["outcome"], "success", "{backend}");
    }
    Ok(())
}

#[tokio::test]
async fn the_table_refuses_update_and_delete_and_rolls_back_with_its_action() -> anyhow::Result<()>
{
    for (backend, tdb) in TestDatabase::each()? {
        let db = tdb.db()?;
        let e = origin("cli", "bob").event("api_key.revoke", "api_key", "k_1");
        db.write(move |c| audit::insert(c, &e)).await?;
        for sql in [
            "UPDATE audit_events SET outcome = 'failure'",
            "DELETE FROM audit_events",
        ] {
            let refused = db.run(move |c| Ok(c.batch_execute(sql))).await?;
            let e = refused.expect_err(sql).to_string();
            assert!(e.contains("append-only"), "{backend}: {sql}: {e}");
        }
        if backend == "postgres" {
            let refused = db
                .run(|c| Ok(c.batch_execute("TRUNCATE audit_events")))
                .await?;
            assert!(refused.is_err(), "{backend}: truncate");
        }
        // An action that fails takes its event with it.
        let e = origin("cli", "bob").event("api_key.create", "api_key", "k_2");
        let failed = db
            .write(move |c| {
                audit::insert(c, &e)?;
                Err::<(), _>(StoreError::Internal("the action failed".into()))
            })
            .await;
        assert!(failed.is_err());
        let rows = db.run(|c| audit::query(c, &all())).await?;
        assert_eq!(rows.len(), 1, "{backend}");
        assert_eq!(rows[0].outcome, "success", "{backend}: unchanged");
    }
    Ok(())
}
