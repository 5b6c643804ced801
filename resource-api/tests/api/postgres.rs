//! The notes scenarios again on PostgreSQL, each in a fresh schema `t_<uuid>`
//! (ignored unless `TEST_DATABASE_URL` was set when the tests were built).

use sea_orm::{ConnectionTrait, Statement};

use crate::helpers::{Backend, spawn_app_with};
use crate::notes::{crud_round_trip, other_users_note_is_not_found};

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn notes_crud_works_on_postgres() {
        let Some(app) = spawn_app_with(Backend::Postgres, |_| {}).await else {
            return;
        };
        crud_round_trip(&app).await;
        app.cleanup();
    }
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn notes_of_another_user_are_not_found_on_postgres() {
        let Some(app) = spawn_app_with(Backend::Postgres, |_| {}).await else {
            return;
        };
        other_users_note_is_not_found(&app).await;
        app.cleanup();
    }
}

test_gates::needs! { [postgres]
    #[tokio::test]
    async fn postgres_schema_is_dropped_on_cleanup() {
        let url =
            migrations::test_support::require_postgres_url("postgres_schema_is_dropped_on_cleanup");
        let Some(app) = spawn_app_with(Backend::Postgres, |_| {}).await else {
            return;
        };
        let schema = app
            .db
            .query_one(Statement::from_string(
                app.db.get_database_backend(),
                "SELECT current_schema() AS s",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "s")
            .unwrap();
        assert!(schema.starts_with("t_"), "{schema}");
        app.cleanup();
        let admin = migrations::db::connect(&url, None).await.unwrap();
        let left = admin
            .query_one(Statement::from_string(
                admin.get_database_backend(),
                format!("SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name = '{schema}'"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(left, 0);
    }
}
