use reqwest::StatusCode;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn healthz_returns_200() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_returns_200_with_database_and_static_keys() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    for check in ["database", "database_write", "verification_keys"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
}

#[tokio::test]
async fn readyz_names_failed_database_checks_when_database_is_closed() {
    let app = spawn_app().await;
    app.db.clone().close().await.unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        body["checks"]["database"]
            .as_str()
            .unwrap()
            .starts_with("failed")
    );
    assert_eq!(body["checks"]["verification_keys"], "ok");
    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
}

#[tokio::test]
async fn notes_answer_503_problem_with_retry_after_when_database_is_closed() {
    let app = spawn_app().await;
    let token = app.token("alice", shared::contract::SCOPE_NOTES_READ);
    app.db.clone().close().await.unwrap();
    let response = app.get("/api/v2/notes", &token).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "2");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn unknown_path_returns_404_problem() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .client
        .put(app.url("/api/v2/notes"))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
}
